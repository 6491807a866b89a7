#!/usr/bin/env bash
# A Python venv with llm-compressor (CPU torch, transformers, gguf) for the peer comparison
# (Ops/bench.sh peer, Ops/peer_llmcompressor.py), outside git: ${KILN_PEER_VENV:-$HOME/.cache/kiln/venv-peer}.
# torch is the CPU-only build: a wheel in pip's find-links (/opt/wheels here) if there is one,
# else the CPU wheel index if reachable, else PyPI's default build (CUDA, large, runs on CPU too).
# An existing working venv is kept.
#
#   Ops/setup-peers.sh                 create or check the venv; prints its python
#   LLMCOMPRESSOR_VERSION=0.14.0.1 Ops/setup-peers.sh   pin a version (default: newest)
set -euo pipefail
venv=${KILN_PEER_VENV:-$HOME/.cache/kiln/venv-peer}
version=${LLMCOMPRESSOR_VERSION:-}
die() { echo "setup-peers.sh: $*" >&2; exit 1; }
[[ $# -eq 0 ]] || { echo "usage: Ops/setup-peers.sh (no arguments; env KILN_PEER_VENV, LLMCOMPRESSOR_VERSION)" >&2; exit 2; }

check='import torch, transformers, gguf, llmcompressor'
if [[ -x $venv/bin/python ]] && "$venv/bin/python" -c "$check" >/dev/null 2>&1; then
  echo "llm-compressor already in $venv" >&2
  echo "$venv/bin/python"
  exit 0
fi
command -v python3 >/dev/null || die "python3 is needed"
python3 -m venv "$venv" || die "cannot create a venv at $venv (apt-get install python3-venv?)"
pip=("$venv/bin/pip" install --quiet)
"${pip[@]}" --upgrade pip >&2

# The CPU torch first, so llm-compressor's dependency on torch is already met by it.
local_cpu=$(ls /opt/wheels/torch-*+cpu-*.whl 2>/dev/null | sort -V | tail -1 || true)
if [[ -n $local_cpu ]]; then
  echo "setup-peers.sh: torch from $local_cpu" >&2
  "${pip[@]}" "$local_cpu" >&2 || die "pip install $local_cpu failed"
elif "${pip[@]}" torch --index-url https://download.pytorch.org/whl/cpu >&2 2>/dev/null; then
  echo "setup-peers.sh: torch from the CPU wheel index" >&2
else
  echo "setup-peers.sh: no CPU-only torch reachable; PyPI's default torch (large)" >&2
  "${pip[@]}" torch >&2 || die "pip install torch failed"
fi
torch_version=$("$venv/bin/python" -c 'import torch; print(torch.__version__)')
# Keep that torch: a constraint stops the resolver from swapping in another build.
constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
echo "torch==$torch_version" >"$constraints"
echo "setup-peers.sh: llmcompressor${version:+ $version}, transformers, gguf, datasets" >&2
"${pip[@]}" -c "$constraints" "llmcompressor${version:+==$version}" transformers gguf datasets accelerate >&2 \
  || die "pip install llmcompressor failed (see above)"
"$venv/bin/python" -c "$check" >/dev/null || die "llmcompressor does not import from $venv"
echo "$venv/bin/python"
