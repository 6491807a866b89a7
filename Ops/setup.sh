#!/usr/bin/env bash
# Installs what Kiln needs on a fresh Debian machine of this project's kind:
# system libraries (OpenBLAS, LAPACKE, libzmq), the Python packages the
# cross-checks use, and the model assets. Safe to run twice.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pkg in libopenblas-dev liblapacke-dev libzmq3-dev libdnnl-dev libsqlite3-dev pkg-config protobuf-compiler; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if ((${#need[@]})); then
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  echo "setup: installing ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Independent readers used by the tests' cross-checks (numpy is usually there).
python3 -c "import gguf, numpy" 2>/dev/null || python3 -m pip install --quiet gguf==0.19.0 numpy || \
  echo "setup: python gguf/numpy not installed; the cross-checks that need them are skipped"

Ops/fetch-assets.sh >/dev/null
