#!/usr/bin/env bash
# Builds Kiln's libFuzzer targets (Fuzz/*.swift) outside SwiftPM and runs each.
#
#   Ops/fuzz.sh [SECONDS] [TARGET...]     default: 60 s each, every target
#   Ops/fuzz.sh --build-only [TARGET...]
#   Ops/fuzz.sh --runs N [TARGET...]      N executions each instead of a time budget
#
# Each Kiln module (and SwiftProtobuf) is compiled once with coverage and ASan
# into .build-fuzz/ (rebuilt when its sources change), so `swift build` and CI's
# normal build never see these flags. A crashing input is copied to
# Tests/Fixtures/fuzz/<target>/, which the FuzzRegression XCTests replay.
# Prints one table row per target; exits 1 if any target crashed.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_EACH=60
RUNS=""
BUILD_ONLY=0
case "${1:-}" in
    --build-only) BUILD_ONLY=1; shift ;;
    --runs) RUNS="$2"; shift 2 ;;
    ''|*[!0-9]*) ;;
    *) SECONDS_EACH="$1"; shift ;;
esac

ALL_TARGETS=(gguf safetensors tokenizer envelope codec imatrix)
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=("${ALL_TARGETS[@]}")

OUT=.build-fuzz
MODS=$OUT/modules
OBJS=$OUT/obj
BINS=$OUT/bin
mkdir -p "$MODS" "$OBJS" "$BINS"

# Same CPU flags as Package.swift's `fast` settings.
FLAGS=(-O -wmo -parse-as-library -sanitize=fuzzer,address -target-cpu haswell
       -I "$MODS" -I Sources/CBLAS -I Sources/CZeroMQ -I Sources/CDNNL)

# Objects built with other flags are rebuilt.
if [ "$(cat "$OUT/flags" 2>/dev/null)" != "${FLAGS[*]}" ]; then
    rm -f "$OBJS"/*.o "$BINS"/fuzz-*
    echo "${FLAGS[*]}" >"$OUT/flags"
fi

PROTOBUF=.build/checkouts/swift-protobuf/Sources/SwiftProtobuf
if [ ! -d "$PROTOBUF" ]; then
    swift package resolve >/dev/null
fi

# Module -> dependencies (modules built first).
deps_of() {
    case "$1" in
        SwiftProtobuf|Tensor|Tokenizers|ZeroMQ) echo "" ;;
        ModelIO) echo "Tensor" ;;
        Models) echo "Tensor ModelIO Tokenizers" ;;
        Calibration|Quantization) echo "Tensor" ;;
        Int8GEMM) echo "Tensor" ;;
        Jobs) echo "Tensor ModelIO Tokenizers Models Calibration Quantization Int8GEMM" ;;
        KilnProtocol) echo "SwiftProtobuf ZeroMQ" ;;
        Cluster) echo "Tensor ModelIO Tokenizers Models Calibration Quantization Int8GEMM Jobs SwiftProtobuf ZeroMQ KilnProtocol" ;;
    esac
}

sources_of() {
    case "$1" in
        SwiftProtobuf) ls "$PROTOBUF"/*.swift ;;
        KilnProtocol) ls Sources/KilnProtocol/*.swift Sources/KilnProtocol/Generated/*.swift ;;
        *) ls Sources/"$1"/*.swift ;;
    esac
}

# Modules each target links, in dependency order.
modules_of() {
    case "$1" in
        gguf) echo "Tensor ModelIO Tokenizers Models" ;;
        safetensors) echo "Tensor ModelIO" ;;
        tokenizer) echo "Tensor ModelIO Tokenizers" ;;
        envelope) echo "SwiftProtobuf ZeroMQ KilnProtocol" ;;
        codec) echo "Tensor ModelIO Tokenizers Models Calibration Quantization Int8GEMM Jobs SwiftProtobuf ZeroMQ KilnProtocol Cluster" ;;
        imatrix) echo "Tensor ModelIO" ;;
        *) echo "unknown fuzz target '$1' (known: ${ALL_TARGETS[*]})" >&2
           exit 2 ;;
    esac
}

# Largest input per target: room for the seeds, small enough to mutate quickly.
max_len_of() {
    case "$1" in
        gguf) echo 24576 ;;
        safetensors) echo 8192 ;;
        tokenizer) echo 16384 ;;
        envelope) echo 8192 ;;
        codec) echo 16384 ;;
        imatrix) echo 4096 ;;
    esac
}

# True when $1 is missing or older than any of the following files.
stale() {
    local out=$1
    shift
    [ -e "$out" ] || return 0
    local f
    for f in "$@"; do
        [ "$f" -nt "$out" ] && return 0
    done
    return 1
}

build_module() {
    local m=$1 d
    local srcs deps_objs=()
    mapfile -t srcs < <(sources_of "$m")
    for d in $(deps_of "$m"); do
        build_module "$d"
        deps_objs+=("$OBJS/$d.o")
    done
    if stale "$OBJS/$m.o" "${srcs[@]}" "${deps_objs[@]}"; then
        echo "fuzz: compiling module $m" >&2
        # Kiln's modules build in Swift 6 mode, as in Package.swift; swift-protobuf with its
        # own settings (Swift 6 mode, ExistentialAny).
        local extra=(-swift-version 6)
        [ "$m" = SwiftProtobuf ] && extra=(-swift-version 6 -enable-upcoming-feature ExistentialAny -package-name swift_protobuf)
        swiftc "${FLAGS[@]}" "${extra[@]}" -module-name "$m" -emit-module -emit-module-path "$MODS/$m.swiftmodule" \
            -c -o "$OBJS/$m.o" "${srcs[@]}"
        # swiftc leaves an unchanged output's old timestamp; the staleness check needs it fresh.
        touch "$OBJS/$m.o"
    fi
}

build_target() {
    local t=$1 m objs=()
    for m in $(modules_of "$t"); do
        build_module "$m"
        objs+=("$OBJS/$m.o")
    done
    if stale "$BINS/fuzz-$t" "Fuzz/$t.swift" "${objs[@]}"; then
        echo "fuzz: linking fuzz-$t" >&2
        swiftc "${FLAGS[@]}" -swift-version 6 -module-name "fuzz_$t" "Fuzz/$t.swift" "${objs[@]}" \
            -lopenblas -llapacke -lzmq -ldnnl -o "$BINS/fuzz-$t" 2>&1 | { grep -v 'Cannot export local symbol' >&2 || true; }
        touch "$BINS/fuzz-$t"
    fi
}

for t in "${TARGETS[@]}"; do build_target "$t"; done
[ "$BUILD_ONLY" = 1 ] && exit 0

status=0
ROWS=()
for t in "${TARGETS[@]}"; do
    corpus=$OUT/corpus/$t
    crashes=$OUT/crashes/$t
    log=$OUT/logs/$t.log
    mkdir -p "$corpus" "$crashes" "$(dirname "$log")" "Tests/Fixtures/fuzz/$t"
    rm -f "$crashes"/*
    budget=(-max_total_time="$SECONDS_EACH")
    [ -n "$RUNS" ] && budget=(-runs="$RUNS")
    # -timeout: an input that takes over 10 s is a hang; the rest are libFuzzer's
    # defaults made explicit. The working corpus comes first (written to), then seeds.
    set +e
    # Short allocation stacks: recording full ones costs more than the decoders themselves.
    # Swift's own crash handler would race ASan's report: off.
    SWIFT_BACKTRACE=enable=no ASAN_OPTIONS=${ASAN_OPTIONS:-malloc_context_size=2} \
        "$BINS/fuzz-$t" "${budget[@]}" -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=10 \
        -max_len="$(max_len_of "$t")" -print_final_stats=1 -artifact_prefix="$crashes/" \
        "$corpus" "Fuzz/seeds/$t" "Tests/Fixtures/fuzz/$t" >"$log" 2>&1
    rc=$?
    set -e
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    found=0
    for f in "$crashes"/*; do
        [ -e "$f" ] || continue
        found=$((found + 1))
        cp "$f" "Tests/Fixtures/fuzz/$t/"
    done
    if [ "$rc" -ne 0 ] && [ "$found" -eq 0 ]; then
        found=1  # died without an artifact (e.g. a build or startup failure): see the log
    fi
    [ "$found" -gt 0 ] && status=1
    ROWS+=("$(printf '%-12s %14s %10s %8s %8s' "$t" "${execs:-?}" "${speed:-?}" "${cov:-?}" "$found")")
    if [ "$found" -gt 0 ]; then
        echo "fuzz: $t crashed (rc $rc); inputs in Tests/Fixtures/fuzz/$t, log $log" >&2
        grep -m1 -A12 'ERROR: \|Fatal error\|deadly signal' "$log" >&2 || tail -20 "$log" >&2
    fi
done

printf '%-12s %14s %10s %8s %8s\n' target executions exec/s coverage crashes
for r in "${ROWS[@]}"; do echo "$r"; done
exit $status
