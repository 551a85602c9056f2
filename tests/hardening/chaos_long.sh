#!/usr/bin/env bash
# chaos_long.sh BUILD_DIR - the long version of the chaos test (opt-in, not
# run by CI): ROUNDS rounds (default 5) of a PostgreSQL outage, a broker
# restart and a SIGKILL, over SCALE times the messages (default 3), through
# ctest so the fixtures start the servers. BUILD_DIR is a build configured
# with -DBUILD_TESTING=ON (e.g. build/test after tests/run.sh).
# About 1 minute per round plus the load.
set -euo pipefail
build=${1:?usage: chaos_long.sh BUILD_DIR}
rounds=${ROUNDS:-5}
scale=${SCALE:-3}
timeout=$((300 + rounds * 120 * scale))
cmake -S "$(dirname "$0")/../.." -B "$build" -DNANGUARD_CHAOS_TIMEOUT="$timeout" >/dev/null
NANGUARD_CHAOS_ROUNDS=$rounds NANGUARD_E2E_SCALE=$scale \
    ctest --test-dir "$build" -R '^hardening_chaos$' --output-on-failure
