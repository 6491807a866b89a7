#!/usr/bin/env bash
# Regenerates Sources/KilnProtocol/Generated/*.pb.swift from Protos/kiln/v1/*.proto.
#
#   Ops/gen-protos.sh                 regenerate in place (commit the result)
#   Ops/gen-protos.sh --out DIR       generate into DIR instead (the staleness test uses this)
#   Ops/gen-protos.sh --print-plugin  print the protoc-gen-swift path this script uses
#
# protoc comes from the system (apt-get install protobuf-compiler). protoc-gen-swift
# is $KILN_PROTOC_GEN_SWIFT if set, else it is built once from the swift-protobuf
# checkout SwiftPM made (same version as the library the package links) into
# $KILN_TOOLS_CACHE (default ~/.cache/kiln/tools), outside git, and linked at
# $KILN_TOOLS_CACHE/protoc-gen-swift. swift-protobuf's build plugin is not used:
# it compiles protoc from C++.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

out="$root/Sources/KilnProtocol/Generated"
print_plugin=0
while (($#)); do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --print-plugin) print_plugin=1; shift ;;
    *) echo "gen-protos: unknown argument $1" >&2; exit 2 ;;
  esac
done

cache="${KILN_TOOLS_CACHE:-$HOME/.cache/kiln/tools}"
plugin="${KILN_PROTOC_GEN_SWIFT:-}"
if [[ -z "$plugin" ]]; then
  plugin="$cache/protoc-gen-swift"
  if [[ ! -x "$plugin" ]]; then
    checkout=""
    for d in "$root"/.build*/checkouts/swift-protobuf "$root"/.build/checkouts/swift-protobuf; do
      [[ -f "$d/Package.swift" ]] && { checkout="$d"; break; }
    done
    if [[ -z "$checkout" ]]; then
      echo "gen-protos: no swift-protobuf checkout found; run 'swift package resolve' first" >&2
      exit 1
    fi
    version=$(git -C "$checkout" describe --tags --always 2>/dev/null || echo unknown)
    build="$cache/swift-protobuf-$version"
    echo "gen-protos: building protoc-gen-swift $version from $checkout (once, ~1 min)" >&2
    swift build -c release --product protoc-gen-swift --package-path "$checkout" --scratch-path "$build" >&2
    mkdir -p "$cache"
    ln -sf "$build/release/protoc-gen-swift" "$plugin"
  fi
fi
if ((print_plugin)); then echo "$plugin"; exit 0; fi

command -v protoc >/dev/null || { echo "gen-protos: protoc not found (apt-get install protobuf-compiler)" >&2; exit 1; }

mkdir -p "$out"
rm -f "$out"/*.pb.swift
# Sorted file list so the output never depends on directory order.
mapfile -t protos < <(cd Protos && find kiln -name '*.proto' | LC_ALL=C sort)
protoc --plugin=protoc-gen-swift="$plugin" \
  --swift_out="$out" \
  --swift_opt=Visibility=Public \
  --swift_opt=FileNaming=DropPath \
  -I Protos "${protos[@]}"
echo "gen-protos: wrote ${#protos[@]} files to $out" >&2
