#!/usr/bin/env bash
# A Python venv with the GPTQ runtime a user installs to serve Kiln's gptq-safetensors output
# with transformers (optimum + gptqmodel, CPU), for Ops/check_gptq_transformers.py, outside
# git: ${KILN_GPTQ_VENV:-$HOME/.cache/kiln/venv-gptq}. Its own venv: gptqmodel pins torch and
# transformers versions that clash with llm-compressor's (Ops/setup-peers.sh).
# gptqmodel's kernels are compiled on first use, not at install. An existing working venv is kept.
#
#   Ops/setup-gptq-runtime.sh        create or check the venv; prints its python
#   GPTQMODEL_VERSION=7.7.0 OPTIMUM_VERSION=2.3.0 Ops/setup-gptq-runtime.sh   (the defaults)
set -euo pipefail
venv=${KILN_GPTQ_VENV:-$HOME/.cache/kiln/venv-gptq}
gptqmodel=${GPTQMODEL_VERSION:-7.7.0}
optimum=${OPTIMUM_VERSION:-2.3.0}
die() { echo "setup-gptq-runtime.sh: $*" >&2; exit 1; }
[[ $# -eq 0 ]] || {
  echo "usage: Ops/setup-gptq-runtime.sh (no arguments; env KILN_GPTQ_VENV, GPTQMODEL_VERSION, OPTIMUM_VERSION)" >&2
  exit 2
}

check="import torch, transformers, optimum, gptqmodel
from importlib.metadata import version
assert version('gptqmodel') == '$gptqmodel' and version('optimum') == '$optimum', 'other versions'"
if [[ -x $venv/bin/python ]] && "$venv/bin/python" -c "$check" >/dev/null 2>&1; then
  echo "gptqmodel $gptqmodel and optimum $optimum already in $venv" >&2
  echo "$venv/bin/python"
  exit 0
fi
command -v python3 >/dev/null || die "python3 is needed"
rm -rf "$venv"
python3 -m venv "$venv" || die "cannot create a venv at $venv (apt-get install python3-venv?)"
pip=("$venv/bin/pip" install --quiet --disable-pip-version-check)
"${pip[@]}" --upgrade pip >&2
start=$SECONDS
echo "setup-gptq-runtime.sh: gptqmodel $gptqmodel, optimum $optimum (with the torch and transformers they need)" >&2
"${pip[@]}" "gptqmodel==$gptqmodel" "optimum==$optimum" >&2 \
  || die "pip install gptqmodel==$gptqmodel optimum==$optimum failed (see above)"
"$venv/bin/python" -c "$check" >/dev/null || die "gptqmodel or optimum does not import from $venv"
echo "setup-gptq-runtime.sh: installed in $((SECONDS - start)) s" >&2
echo "$venv/bin/python"
