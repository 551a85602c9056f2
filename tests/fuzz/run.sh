#!/usr/bin/env bash
# run.sh - build the libFuzzer target with clang, ASan and UBSan, and fuzz the
# sanitizer for a bounded time. This is what CI calls.
#
#   tests/fuzz/run.sh [BUILD_DIR] [SECONDS]
#       configure and build BUILD_DIR (default build-fuzz, relative to the
#       repository), then fuzz for SECONDS (default $NANGUARD_FUZZ_SECONDS,
#       else 60)
#   tests/fuzz/run.sh --run-only FUZZER WORK_DIR
#       only fuzz (the ctest fuzz_sanitize does this)
#
# Environment: NANGUARD_FUZZ_SECONDS, NANGUARD_FUZZ_JOBS (> 1: libFuzzer
# -fork=N), NANGUARD_FUZZ_KEEP_CORPUS=1 (keep WORK_DIR/corpus from the last
# run instead of starting again from the seeds), CC (default clang-14).
#
# Exit status 0 when nothing was found. On a crash, leak, sanitizer report
# or mismatch the reproducer is in WORK_DIR/artifacts/ (replay it with
# FUZZER FILE); copy it into tests/fuzz/corpus/ once the bug is fixed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)

fuzz() {
    local fuzzer=$1 work=$2
    local seconds=${NANGUARD_FUZZ_SECONDS:-60}
    local jobs=${NANGUARD_FUZZ_JOBS:-1}
    local dict
    dict="$(dirname "$fuzzer")/sanitize.dict"

    mkdir -p "$work"
    if [[ ${NANGUARD_FUZZ_KEEP_CORPUS:-0} != 1 || ! -d $work/corpus ]]; then
        rm -rf "$work/corpus"
        mkdir -p "$work/corpus"
        cp "$here"/corpus/* "$work/corpus/"
    fi
    rm -rf "$work/artifacts"
    mkdir -p "$work/artifacts"

    local args=(
        -max_total_time="$seconds"
        -max_len=8192
        -timeout=10
        -rss_limit_mb=2048
        -print_final_stats=1
        -artifact_prefix="$work/artifacts/"
    )
    if [[ -f $dict ]]; then
        args+=(-dict="$dict")
    fi
    if ((jobs > 1)); then
        args+=(-fork="$jobs" -ignore_crashes=0)
    fi
    echo "fuzz: $fuzzer for ${seconds}s on $work/corpus" \
        "($(find "$work/corpus" -type f | wc -l) inputs)"
    local rc=0
    (cd "$work" &&
        UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
            ASAN_OPTIONS=abort_on_error=0:detect_leaks=1 \
            "$fuzzer" "${args[@]}" "$work/corpus") || rc=$?
    if ((rc != 0)); then
        echo "fuzz: FAILED (exit $rc); reproducers:" >&2
        ls -l "$work/artifacts/" >&2 || true
        for f in "$work"/artifacts/*; do
            [[ -f $f ]] && echo "  replay: $fuzzer $f" >&2
        done
        return "$rc"
    fi
    echo "fuzz: no failure in ${seconds}s"
}

if [[ ${1:-} == --run-only ]]; then
    if (($# != 3)); then
        echo "usage: $0 --run-only FUZZER WORK_DIR" >&2
        exit 64
    fi
    fuzz "$2" "$3"
    exit
fi

build=${1:-build-fuzz}
[[ $build == /* ]] || build="$root/$build"
if [[ -n ${2:-} ]]; then
    export NANGUARD_FUZZ_SECONDS=$2
fi
cc=${CC:-clang-14}
command -v "$cc" >/dev/null || cc=clang

CC=$cc cmake -S "$root" -B "$build" -G Ninja -DBUILD_TESTING=ON \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNANGUARD_FUZZ=ON \
    -DNANGUARD_SANITIZERS=address,undefined >/dev/null
ninja -C "$build" fuzz_sanitize
fuzz "$build/tests/fuzz/fuzz_sanitize" "$build/tests/fuzz/work"
