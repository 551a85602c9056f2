#!/usr/bin/env bash
# The shipped systemd unit (deploy/systemd/nanguard-worker@.service), checked
# by systemd itself: `systemd-analyze verify` of an instance, with ExecStart
# pointed at the binary just built, must print nothing (systemd reports an
# unknown key or a bad value as a warning and still exits 0, so the output
# is what is checked). The command line of ExecStart must be one the worker
# takes (run with --help). The example settings it reads are run for real
# by e2e_http. Exit 77 (skipped) where systemd-analyze is not installed.
#
# Usage: test_systemd_unit.sh SOURCE_DIR NANGUARD_BIN
set -euo pipefail
src=$1
bin=$2
unit=$src/deploy/systemd/nanguard-worker@.service
if ! command -v systemd-analyze >/dev/null; then
    echo "systemd-analyze not installed: skipped"
    exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
grep -q '^ExecStart=/usr/local/bin/nanguard worker ' "$unit" || {
    echo "FAIL ExecStart does not run /usr/local/bin/nanguard worker"
    exit 1
}
sed "s#/usr/local/bin/nanguard#$bin#" "$unit" >"$tmp/nanguard-worker@.service"
out=$(cd "$tmp" && systemd-analyze verify --man=no \
    "./nanguard-worker@checkpoints.service" 2>&1) || {
    echo "FAIL systemd-analyze verify exited non-zero:"
    echo "$out"
    exit 1
}
if [[ -n $out ]]; then
    echo "FAIL systemd-analyze verify has remarks:"
    echo "$out"
    exit 1
fi
echo "ok   systemd-analyze verify: no remarks"

# The arguments of ExecStart (%i, %H expanded), with --help added: the
# worker must know every option there.
args=$(sed -n 's#^ExecStart=/usr/local/bin/nanguard ##p' "$unit" |
    sed -e "s#%i#checkpoints#g" -e "s#%H#host#g")
# shellcheck disable=SC2086
if ! "$bin" $args --help >/dev/null; then
    echo "FAIL the worker refuses ExecStart's arguments: $args"
    exit 1
fi
echo "ok   the worker takes ExecStart's arguments ($args)"
grep -q '^RestartPreventExitStatus=64$' "$unit" &&
    grep -q '^KillSignal=SIGTERM$' "$unit" || {
    echo "FAIL the unit must stop with SIGTERM and not restart after exit 64"
    exit 1
}
stop=$(sed -n 's/^TimeoutStopSec=//p' "$unit")
default_ms=$("$bin" worker --help | sed -n 's/.*--shutdown-timeout-ms.*(default: \([0-9]*\)).*/\1/p')
if ! ((stop * 1000 > default_ms)); then
    echo "FAIL TimeoutStopSec=$stop does not leave room above --shutdown-timeout-ms ($default_ms)"
    exit 1
fi
echo "ok   TimeoutStopSec=$stop s > the worker's --shutdown-timeout-ms ($default_ms ms)"
