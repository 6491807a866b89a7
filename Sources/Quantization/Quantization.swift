// Quantization layer: grids, RTN and GPTQ; see docs/ARCHITECTURE.md
