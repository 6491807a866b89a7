#!/usr/bin/env bash
# Installs kiln-client with pytest into a venv outside git and runs its tests against a
# real coordinator and worker. Exit status non-zero if anything fails.
#
#   clients/python/test.sh [PYTEST ARGS...]
#
# Environment: KILN_BIN (default: the repo's .build/release/kiln), KILN_PYCLIENT_VENV
# (default ~/.cache/kiln/venv-pyclient), KILN_ASSETS (the model cache).
set -euo pipefail

die() { echo "clients/python/test.sh: $*" >&2; exit 1; }
[[ ${1:-} == -h || ${1:-} == --help ]] && { echo "usage: clients/python/test.sh [PYTEST ARGS...]"; exit 0; }

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
export KILN_BIN=${KILN_BIN:-$root/.build/release/kiln}
[[ -x $KILN_BIN ]] || die "no kiln binary at $KILN_BIN (swift build -c release, or set KILN_BIN)"
venv=${KILN_PYCLIENT_VENV:-$HOME/.cache/kiln/venv-pyclient}

# The committed generated code must match Protos/ (protoc from Debian's protobuf-compiler).
if ! command -v protoc >/dev/null; then
  apt-get install -y -qq protobuf-compiler >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq protobuf-compiler >/dev/null; } \
    || die "cannot install protobuf-compiler"
fi
"$here/gen.sh" --check

if [[ ! -x $venv/bin/python ]]; then
  python3 -m venv "$venv" || die "cannot make a venv at $venv (apt-get install python3-venv)"
fi
# Not editable: the tests run the package as pip installs it.
"$venv/bin/pip" install --quiet --disable-pip-version-check "$here[test]" || die "pip install failed"
cd "$here"
"$venv/bin/python" -m pytest -q tests -p no:cacheprovider "$@"
