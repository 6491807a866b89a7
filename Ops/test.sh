#!/usr/bin/env bash
# Builds Kiln and runs every test (unit, real-model conformance, CLI end to end,
# cluster). Installs what is missing first. Release mode: the tests run whole models.
set -euo pipefail
cd "$(dirname "$0")/.."
Ops/setup.sh
swift build -c release --build-tests
# protoc-gen-swift (built once, cached) lets the protocol test check that the
# committed generated code matches Protos/.
Ops/gen-protos.sh --print-plugin >/dev/null
# Step: short fault campaign (Ops/chaos.sh --short): small SmolLM2 jobs on a local
# cluster, each with a crash or stall of a worker or the coordinator; every output must
# equal the undisturbed one and nothing may be left behind.
Ops/chaos.sh --short
swift test -c release --skip-build --parallel --num-workers 2 "$@"
