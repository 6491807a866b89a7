#!/usr/bin/env bash
# Regenerates kiln_client/proto/*_pb2.py from Protos/kiln/v1 with protoc (Debian's
# protobuf-compiler, 3.21), importing each other relatively so the package owns them.
#
#   clients/python/gen.sh           regenerate (commit the result)
#   clients/python/gen.sh --check   exit 1 if the committed code differs from Protos/
set -euo pipefail

die() { echo "gen.sh: $*" >&2; exit 1; }
usage() { echo "usage: clients/python/gen.sh [--check]" >&2; exit 2; }

check=0
case ${1:-} in
  --check) check=1 ;;
  "") ;;
  *) usage ;;
esac
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
dest=$here/src/kiln_client/proto
command -v protoc >/dev/null || die "protoc missing: apt-get install protobuf-compiler"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
protoc -I "$root/Protos" --python_out="$tmp" "$root"/Protos/kiln/v1/*.proto \
  || die "protoc failed on $root/Protos/kiln/v1"
mkdir -p "$tmp/out"
for f in "$tmp"/kiln/v1/*_pb2.py; do
  # `from kiln.v1 import x_pb2` would need a top-level `kiln` package: make it relative.
  sed -e 's/^from kiln\.v1 import /from . import /' \
    -e "s/'kiln\.v1\.\([a-z_]*_pb2\)'/'kiln_client.proto.\1'/" "$f" >"$tmp/out/$(basename "$f")"
done
printf '"""Kiln wire protocol messages, generated from Protos/kiln/v1 by gen.sh."""\n' >"$tmp/out/__init__.py"

if ((check)); then
  diff -r "$tmp/out" "$dest" >/dev/null \
    || die "$dest differs from Protos/kiln/v1: run clients/python/gen.sh and commit"
  echo "gen.sh: generated code is current"
else
  rm -rf "$dest"
  mkdir -p "$dest"
  cp "$tmp"/out/* "$dest"/
  echo "gen.sh: wrote $dest"
fi
