#!/usr/bin/env bash
# A Python venv with llama-cpp-python (llama.cpp built from source, CPU only) for
# Ops/check_llama_cpp.py, outside git: ${KILN_LLAMA_VENV:-$HOME/.cache/kiln/venv-llama}.
# Only libllama and ggml are built (no llava/mtmd, tools, server, examples, tests, curl):
# about a third of the full build's time on 2 cores. An existing working venv is kept.
#
#   Ops/setup-llama-cpp.sh            create or check the venv; prints its python
#   LLAMA_CPP_PYTHON_VERSION=0.3.16 Ops/setup-llama-cpp.sh   pin a version (default: newest)
set -euo pipefail
venv=${KILN_LLAMA_VENV:-$HOME/.cache/kiln/venv-llama}
version=${LLAMA_CPP_PYTHON_VERSION:-}
die() { echo "setup-llama-cpp.sh: $*" >&2; exit 1; }
[[ $# -eq 0 ]] || { echo "usage: Ops/setup-llama-cpp.sh (no arguments; env KILN_LLAMA_VENV, LLAMA_CPP_PYTHON_VERSION)" >&2; exit 2; }

if [[ -x $venv/bin/python ]] && "$venv/bin/python" -c 'import llama_cpp, numpy' 2>/dev/null; then
  echo "llama-cpp-python $("$venv/bin/python" -c 'import llama_cpp; print(llama_cpp.__version__)') already in $venv" >&2
  echo "$venv/bin/python"
  exit 0
fi
command -v python3 >/dev/null || die "python3 is needed"
python3 -m venv "$venv" || die "cannot create a venv at $venv (apt-get install python3-venv?)"
"$venv/bin/pip" install --quiet --upgrade pip >&2
# GGML_NATIVE: this machine's instruction set; no GPU backends. The build runs in pip's
# isolated environment (scikit-build-core and cmake come from PyPI).
flags="-DGGML_NATIVE=ON -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF"
flags+=" -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF"
echo "setup-llama-cpp.sh: building llama-cpp-python${version:+ $version} from source (minutes)..." >&2
start=$SECONDS
CMAKE_ARGS="${CMAKE_ARGS:-$flags}" \
  CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)} \
  "$venv/bin/pip" install --no-binary llama-cpp-python "llama-cpp-python${version:+==$version}" numpy >&2 \
  || die "pip install llama-cpp-python failed (see above; a C/C++ compiler is needed)"
"$venv/bin/python" -c 'import llama_cpp' || die "llama_cpp does not import from $venv"
echo "setup-llama-cpp.sh: built and installed in $((SECONDS - start)) s" >&2
echo "$venv/bin/python"
