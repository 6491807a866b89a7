#!/usr/bin/env bash
# Builds Kiln and runs every test (unit, real-model conformance, CLI end to end).
# Installs what is missing first. Release mode: the tests run whole models.
set -euo pipefail
cd "$(dirname "$0")/.."
Ops/setup.sh
swift build -c release
swift test -c release --parallel --num-workers 2 "$@"
