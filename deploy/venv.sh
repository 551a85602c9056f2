#!/usr/bin/env bash
# venv.sh - a Python virtual environment with the packages pinned in a
# requirements file, for the tests and tools that need PyPI packages.
#
#   deploy/venv.sh REQUIREMENTS NAME [DIR]   prints DIR/bin/python when ready
#
# DIR defaults to ~/.cache/nanguard/NAME-<hash of REQUIREMENTS>
# (NANGUARD_CACHE moves ~/.cache/nanguard), so a change of pins makes a new
# environment and an unchanged one is reused. Packages come from PyPI with
# pip; nothing is installed system-wide. Safe to run from several tests at
# once (a lock file serialises them).
set -euo pipefail
req=$1
name=$2
cache=${NANGUARD_CACHE:-$HOME/.cache/nanguard}
hash=$(sha256sum <"$req" | cut -c1-12)
dir=${3:-$cache/$name-$hash}
python=${NANGUARD_PYTHON:-python3}

mkdir -p "$(dirname "$dir")"
exec 9>"$dir.lock"
flock 9
if [ ! -f "$dir/.ready" ]; then
    rm -rf "$dir"
    "$python" -m venv "$dir" >&2
    "$dir/bin/pip" install --quiet --disable-pip-version-check \
        --no-input -r "$req" >&2
    touch "$dir/.ready"
fi
echo "$dir/bin/python"
