#!/usr/bin/env bash
# A Kiln coordinator and N workers on this host, for trying the cluster and for tests.
#
#   Cluster/local.sh start N   start a coordinator (if not running) and workers 1..N (those not running)
#   Cluster/local.sh stop      stop every worker, then the coordinator (TERM, then KILL after a timeout)
#   Cluster/local.sh status    list the processes and whether they are alive (exit 0 all alive, 1 some dead, 3 none)
#
# State in $KILN_RUN_DIR (default .kiln-local/ in the current directory): coordinator.pid,
# worker-1.pid ... worker-N.pid, endpoint.txt (the coordinator endpoint), port (kept after stop),
# logs/ (appended to, a "--- started" line per start), data/.
# Environment: KILN_BIN (kiln binary; default: the release build, built if missing),
# KILN_WORKER_THREADS (threads per worker, default 1), KILN_STOP_TIMEOUT (seconds, default 10),
# KILN_READY_TIMEOUT (seconds to wait for the coordinator and workers, default 60),
# KILN_LISTEN_HOST (default 127.0.0.1; another address needs CURVE keys or --insecure in
# KILN_COORDINATOR_ARGS, extra coordinator arguments), KILN_WORKER_PREFIX (words run before
# each worker's command, e.g. "ip netns exec NS" to place workers in a network namespace),
# KILN_WORKER_CPUS (space-separated CPU lists: worker i runs under `taskset -c` of item i, cycling),
# KILN_ALLOW_PATHS (colon-separated directories jobs may use, besides the data directory,
# the current directory and the model asset cache $KILN_ASSETS).
# The coordinator listens on 127.0.0.1 (loopback needs no CURVE keys) on a free port P and
# publishes progress on P+1; clients find it with KILN_COORDINATOR=$(cat "$KILN_RUN_DIR/endpoint.txt").
# A restart (after a crash or a stop) reuses the previous P when P and P+1 are free, so
# workers that survived a coordinator crash find it again at the address they know.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
run_dir=${KILN_RUN_DIR:-.kiln-local}
threads=${KILN_WORKER_THREADS:-1}
stop_timeout=${KILN_STOP_TIMEOUT:-10}
ready_timeout=${KILN_READY_TIMEOUT:-60}
host=${KILN_LISTEN_HOST:-127.0.0.1}
read -r -a coordinator_args <<<"${KILN_COORDINATOR_ARGS:-}"
read -r -a worker_prefix <<<"${KILN_WORKER_PREFIX:-}"
read -r -a worker_cpus <<<"${KILN_WORKER_CPUS:-}"
# Jobs may use files under the model asset cache and KILN_ALLOW_PATHS (colon-separated
# directories), besides the data directory and the directory local.sh is started in.
allow_args=()
assets=${KILN_ASSETS:-$HOME/.cache/kiln/assets}
[[ -d $assets ]] && allow_args+=(--allow-path "$assets")
IFS=: read -r -a extra_allowed <<<"${KILN_ALLOW_PATHS:-}"
for p in ${extra_allowed[@]+"${extra_allowed[@]}"}; do [[ -n $p ]] && allow_args+=(--allow-path "$p"); done

die() { echo "local.sh: $*" >&2; exit 1; }
usage() { echo "usage: Cluster/local.sh start N | stop | status" >&2; exit 2; }

# Alive and still a kiln process (a recycled pid is not ours).
alive() {
  local pid=$1
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  [[ ! -r /proc/$pid/cmdline ]] || tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q kiln
}

pid_of() { [[ -f $1 ]] && cat "$1" || true; }

kiln_bin() {
  if [[ -n ${KILN_BIN:-} ]]; then
    [[ -x $KILN_BIN ]] || die "KILN_BIN=$KILN_BIN is not an executable file"
    echo "$KILN_BIN"; return
  fi
  local dir
  dir=$(swift build -c release --package-path "$root" --show-bin-path 2>/dev/null) || die "cannot ask SwiftPM for the release bin path"
  if [[ ! -x $dir/kiln ]]; then
    echo "local.sh: building kiln (release) once..." >&2
    swift build -c release --package-path "$root" --product kiln >&2 || die "swift build failed"
  fi
  echo "$dir/kiln"
}

port_free() { ! (exec 3<>"/dev/tcp/$host/$1") 2>/dev/null; }

# A port P with P and P+1 free (listen and publish).
free_port_pair() {
  local p i
  for i in $(seq 1 200); do
    p=$((20000 + RANDOM % 12000))  # below the ephemeral range (32768+): no outgoing socket holds it
    if port_free "$p" && port_free $((p + 1)); then echo "$p"; return; fi
  done
  die "no free pair of TCP ports found on $host"
}

# The port of the last start (endpoint.txt, else the port file) if it and the next are free,
# else a new free pair.
coordinator_port() {
  local p=""
  [[ -s $run_dir/endpoint.txt ]] && p=$(cat "$run_dir/endpoint.txt")
  p=${p#"tcp://$host:"}
  [[ -z $p && -s $run_dir/port ]] && p=$(cat "$run_dir/port")
  if [[ $p =~ ^[0-9]+$ ]] && ((p >= 1024 && p < 65535)) && port_free "$p" && port_free $((p + 1)); then
    echo "$p"
  else
    free_port_pair
  fi
}

# Appends a dated separator to a log (a crash's log stays readable above it).
log_separator() { echo "--- started $(date -u '+%Y-%m-%dT%H:%M:%SZ') ---" >>"$1"; }

# Polls `kiln workers --json` until it answers with at least $2 workers; prints the count.
wait_workers() {
  local bin=$1 want=$2 deadline=$((SECONDS + ready_timeout)) n json
  while :; do
    if json=$("$bin" workers --coordinator "$endpoint" --timeout 1 --json 2>/dev/null); then
      n=$(grep -c '"worker_id"' <<<"$json" || true)
      if ((n >= want)); then echo "$n"; return 0; fi
    fi
    alive "$(pid_of "$run_dir/coordinator.pid")" || { echo 0; return 1; }
    ((SECONDS < deadline)) || { echo "${n:-0}"; return 1; }
    sleep 0.3
  done
}

start() {
  local n=${1:-}
  [[ $n =~ ^[1-9][0-9]*$ ]] || die "start needs a worker count >= 1 (got '${n}')"
  mkdir -p "$run_dir/logs" "$run_dir/data"
  run_dir=$(cd "$run_dir" && pwd)
  export KILN_TOKEN_FILE="$run_dir/data/token"  # the coordinator's token (made at its start): workers, wait_workers
  local bin; bin=$(kiln_bin)
  # (`kiln coordinator --help` prints the root help without the command: look at the list.)
  "$bin" --help 2>/dev/null | grep -Eq '^[[:space:]]+coordinator[[:space:]]' \
    || die "$bin has no 'coordinator' command (build the cluster branch)"

  local cpid; cpid=$(pid_of "$run_dir/coordinator.pid")
  if alive "$cpid" && [[ -s $run_dir/endpoint.txt ]]; then
    endpoint=$(cat "$run_dir/endpoint.txt")
    echo "coordinator already running: pid $cpid at $endpoint"
  else
    local port; port=$(coordinator_port)
    endpoint="tcp://$host:$port"
    log_separator "$run_dir/logs/coordinator.log"
    nohup "$bin" coordinator --listen "$endpoint" --data-dir "$run_dir/data" ${allow_args[@]+"${allow_args[@]}"} ${coordinator_args[@]+"${coordinator_args[@]}"} \
      </dev/null >>"$run_dir/logs/coordinator.log" 2>&1 &
    echo $! >"$run_dir/coordinator.pid"
    echo "$endpoint" >"$run_dir/endpoint.txt"
    echo "$port" >"$run_dir/port"
    if ! wait_workers "$bin" 0 >/dev/null; then
      tail -n 20 "$run_dir/logs/coordinator.log" >&2 || true
      die "the coordinator at $endpoint did not answer within ${ready_timeout}s (log: $run_dir/logs/coordinator.log)"
    fi
    echo "coordinator: pid $(cat "$run_dir/coordinator.pid") at $endpoint"
  fi

  local i wpid
  for i in $(seq 1 "$n"); do
    wpid=$(pid_of "$run_dir/worker-$i.pid")
    if alive "$wpid"; then echo "worker $i already running: pid $wpid"; continue; fi
    log_separator "$run_dir/logs/worker-$i.log"
    local -a pin=()
    ((${#worker_cpus[@]})) && pin=(taskset -c "${worker_cpus[$(((i - 1) % ${#worker_cpus[@]}))]}")
    nohup ${worker_prefix[@]+"${worker_prefix[@]}"} ${pin[@]+"${pin[@]}"} "$bin" worker --coordinator "$endpoint" --threads "$threads" \
      </dev/null >>"$run_dir/logs/worker-$i.log" 2>&1 &
    echo $! >"$run_dir/worker-$i.pid"
    echo "worker $i: pid $!"
  done
  local got
  if ! got=$(wait_workers "$bin" "$n"); then
    die "only $got of $n workers registered within ${ready_timeout}s (logs: $run_dir/logs/worker-*.log)"
  fi
  echo "ready: $got workers; export KILN_COORDINATOR=$endpoint"
}

# TERM to every process of the group at once, then KILL whatever is left after the
# timeout; removes the pid files either way.
stop_group() {
  local f pid t left
  local -a files=() pids=()
  for f in "$@"; do
    [[ -f $f ]] || continue
    pid=$(pid_of "$f")
    if alive "$pid"; then
      kill -TERM "$pid" 2>/dev/null || true
      files+=("$f"); pids+=("$pid")
    else
      echo "$(basename "$f" .pid): not running"
      rm -f "$f"
    fi
  done
  ((${#pids[@]})) || return 0
  for ((t = 0; t < stop_timeout * 10; t++)); do
    left=0
    for pid in "${pids[@]}"; do alive "$pid" && left=1; done
    ((left)) || break
    sleep 0.1
  done
  local i
  for i in "${!pids[@]}"; do
    if alive "${pids[$i]}"; then
      kill -KILL "${pids[$i]}" 2>/dev/null || true
      echo "$(basename "${files[$i]}" .pid): pid ${pids[$i]} killed (still running ${stop_timeout}s after TERM)"
    else
      echo "$(basename "${files[$i]}" .pid): pid ${pids[$i]} stopped"
    fi
    rm -f "${files[$i]}"
  done
}

stop() {
  [[ -d $run_dir ]] || { echo "nothing running: $run_dir does not exist"; return 0; }
  local -a workers=("$run_dir"/worker-*.pid)
  if [[ ! -e ${workers[0]} && ! -f $run_dir/coordinator.pid ]]; then
    echo "nothing running in $run_dir"
  else
    # Workers first, so they leave while the coordinator can still hear their goodbye.
    [[ -e ${workers[0]} ]] && stop_group "${workers[@]}"
    stop_group "$run_dir/coordinator.pid"
  fi
  rm -f "$run_dir/endpoint.txt"
}

status() {
  local f pid total=0 up=0
  [[ -d $run_dir ]] && [[ -f $run_dir/endpoint.txt ]] && echo "endpoint: $(cat "$run_dir/endpoint.txt")"
  for f in "$run_dir"/coordinator.pid "$run_dir"/worker-*.pid; do
    [[ -f $f ]] || continue
    pid=$(pid_of "$f")
    total=$((total + 1))
    if alive "$pid"; then up=$((up + 1)); echo "$(basename "$f" .pid): pid $pid alive"
    else echo "$(basename "$f" .pid): pid $pid dead (see $run_dir/logs/$(basename "$f" .pid).log)"; fi
  done
  ((total > 0)) || { echo "nothing running in $run_dir"; return 3; }
  ((up == total)) || return 1
}

case ${1:-} in
  start) shift; [[ $# -le 1 ]] || usage; start "${1:-}" ;;
  stop) [[ $# -eq 1 ]] || usage; stop ;;
  status) [[ $# -eq 1 ]] || usage; status ;;
  *) usage ;;
esac
