// Calibration layer: calibration text, samplers and the statistics GPTQ needs; see docs/ARCHITECTURE.md
