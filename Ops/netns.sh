#!/usr/bin/env bash
# The scaling benchmark (Ops/scale.sh) with every worker behind a rate-limited link: the
# coordinator stays in the root network namespace, worker k runs in namespace kiln-wk joined
# to it by a veth pair (kiln-hk in the root namespace, 10.77.k.1; kiln-nk inside, 10.77.k.2),
# and both ends of each pair get a tc tbf qdisc of RATE, so each worker has a full-duplex
# link of RATE to the coordinator (the coordinator's own side is not limited).
#
#   Ops/netns.sh RATE [N]     set up N (default 2) namespaces, measure the link once (a TCP
#                             transfer, written to $BENCH_OUT/link.json), run Ops/scale.sh
#                             with its SCALE_* settings over them, tear everything down
#   NETNS_PROBE_ONLY=1 Ops/netns.sh RATE   only set up, measure the link and tear down
#   Ops/netns.sh enter CMD..  (used as KILN_WORKER_PREFIX) run CMD in the next namespace
#
# RATE is a tc rate (1gbit, 100mbit). Needs root. Only interfaces and namespaces named
# kiln-* are created or removed, and a trap removes them however the script ends.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
net=10.77
state=${KILN_NETNS_STATE:-/tmp/kiln-netns-$(id -u)}

# enter CMD...: exec CMD in namespace kiln-w(1 + counter mod N), the counter under a lock, so
# workers started one after another land in different namespaces.
if [[ ${1:-} == enter ]]; then
  shift
  n=$(cat "$state/count")
  exec 9>"$state/lock"
  flock 9
  c=$(cat "$state/next" 2>/dev/null || echo 0)
  echo $((c + 1)) >"$state/next"
  exec 9>&-
  exec ip netns exec "kiln-w$((c % n + 1))" "$@"
fi

rate=${1:?usage: Ops/netns.sh RATE [N] | enter CMD...}
n=${2:-2}
[[ $rate =~ ^[0-9]+[kmg]?bit$ ]] || { echo "netns: RATE like 1gbit or 100mbit (got $rate)" >&2; exit 2; }
[[ $n =~ ^[1-9]$ ]] || { echo "netns: 1 to 9 namespaces (got $n)" >&2; exit 2; }
OUT=$(mkdir -p "${BENCH_OUT:-bench-results}" && cd "${BENCH_OUT:-bench-results}" && pwd)

teardown() {
  local k
  # A run stopped half-way leaves its cluster up: stop it (local.sh names its own pids).
  for d in "$OUT"/scale-*/run; do
    [[ -d $d ]] && KILN_RUN_DIR=$d Cluster/local.sh stop >/dev/null 2>&1 || true
  done
  for ((k = 1; k <= n; k++)); do
    ip netns del "kiln-w$k" 2>/dev/null || true  # removes kiln-nk and with it its peer kiln-hk
    ip link del "kiln-h$k" 2>/dev/null || true
  done
  rm -rf "$state"
}
trap teardown EXIT
trap 'exit 130' INT TERM

# tbf needs a bucket of at least one timer tick's worth of bytes at the rate (and a
# full-size packet): rate/1000 bits, at least 32 kbit; tc takes a bare number as bytes.
bits=${rate%bit}
case $bits in *k) bits=$((${bits%k} * 1000)) ;; *m) bits=$((${bits%m} * 1000000)) ;; *g) bits=$((${bits%g} * 1000000000)) ;; esac
burst=$((bits / 8000 > 4000 ? bits / 8000 : 4000))
limit() { tc qdisc add dev "$1" root tbf rate "$rate" burst "$burst" latency 50ms; }

mkdir -p "$state"
echo "$n" >"$state/count"
echo 0 >"$state/next"
for ((k = 1; k <= n; k++)); do
  ip netns add "kiln-w$k"
  ip link add "kiln-h$k" type veth peer name "kiln-n$k" netns "kiln-w$k"
  ip addr add "$net.$k.1/24" dev "kiln-h$k"
  ip link set "kiln-h$k" up
  ip -n "kiln-w$k" addr add "$net.$k.2/24" dev "kiln-n$k"
  ip -n "kiln-w$k" link set lo up
  ip -n "kiln-w$k" link set "kiln-n$k" up
  ip -n "kiln-w$k" route add default via "$net.$k.1"
  limit "kiln-h$k"
  ip netns exec "kiln-w$k" tc qdisc add dev "kiln-n$k" root tbf rate "$rate" burst "$burst" latency 50ms
done

# The link as TCP sees it: 40 MB (4 MB at rates under 50 Mbit) from kiln-w1 to the root namespace.
probe_mb=$((bits >= 50000000 ? 40 : 4))
python3 - "$net.1.1" "$probe_mb" "$OUT/link.json" "$rate" <<'PY' &
import json, socket, sys, time
host, mb, out, rate = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((host, 47999)); s.listen(1)
c, _ = s.accept(); got = 0; t0 = None
while True:
    b = c.recv(1 << 20)
    if not b: break
    if t0 is None: t0 = time.time()
    got += len(b)
dt = time.time() - t0
json.dump({"rate": rate, "bytes": got, "seconds": dt, "bytes_per_s": got / dt}, open(out, "w"))
print(f"netns: link {rate}: {got / dt / 1e6:.1f} MB/s measured ({got / 1e6:.0f} MB in {dt:.1f} s)")
PY
server=$!
sleep 0.5
ip netns exec kiln-w1 python3 -c "
import socket, sys
s = socket.create_connection(('$net.1.1', 47999)); b = bytes(1 << 20)
for _ in range($probe_mb): s.sendall(b)
s.close()"
wait "$server"

[[ -n ${NETNS_PROBE_ONLY:-} ]] && exit 0
echo "netns: $n worker namespaces at $rate; coordinator on $net.1.1; load $(cut -d' ' -f1-3 /proc/loadavg)"
KILN_LISTEN_HOST=$net.1.1 KILN_COORDINATOR_ARGS=--insecure KILN_WORKER_PREFIX="$root/Ops/netns.sh enter" \
  KILN_NETNS_STATE=$state Ops/scale.sh
