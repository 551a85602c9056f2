#!/usr/bin/env bash
# Sets up and runs every test on this machine: installs the Debian packages,
# builds with warnings as errors, runs the whole ctest suite (unit, property,
# PostgreSQL and Kafka tests start their own servers on loopback), runs the
# unit tests again under AddressSanitizer and UndefinedBehaviorSanitizer, and
# fuzzes the sanitizer for a bounded time.
#
# Usage: tests/run.sh
# Environment: NANGUARD_FUZZ_SECONDS (default 60), NANGUARD_BUILD_DIR
# (default build/test), NANGUARD_CTEST_ARGS (extra ctest arguments, e.g.
# "-L unit").
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${NANGUARD_BUILD_DIR:-$root/build/test}
step() { printf '\n== %s\n' "$*" >&2; }

step "dependencies"
bash "$root/deploy/install-deps.sh"

step "build ($build)"
cmake -S "$root" -B "$build" -G Ninja -DBUILD_TESTING=ON \
    -DNANGUARD_WERROR=ON >/dev/null
ninja -C "$build"

step "test suite"
# shellcheck disable=SC2086
ctest --test-dir "$build" --output-on-failure ${NANGUARD_CTEST_ARGS:-}

step "unit tests under AddressSanitizer and UndefinedBehaviorSanitizer"
cmake -S "$root" -B "$build-asan" -G Ninja -DBUILD_TESTING=ON \
    -DNANGUARD_WERROR=ON -DCMAKE_BUILD_TYPE=Debug \
    -DNANGUARD_SANITIZERS=address,undefined >/dev/null
ninja -C "$build-asan"
ctest --test-dir "$build-asan" -L unit --output-on-failure

if [[ -f $root/tests/fuzz/run.sh ]]; then
    step "fuzzing the sanitizer for ${NANGUARD_FUZZ_SECONDS:-60} s"
    bash "$root/tests/fuzz/run.sh" "$build-fuzz" "${NANGUARD_FUZZ_SECONDS:-60}"
fi
step "all tests passed"
