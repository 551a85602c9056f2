#!/usr/bin/env bash
# venv.sh - a Python virtual environment with LangGraph and the Kafka client
# (the versions pinned in requirements.txt beside this script), for the
# LangGraph tests and for trying NanguardSaver by hand (then also
# `DIR/bin/pip install deploy/langgraph`).
#
#   deploy/langgraph/venv.sh [DIR]     prints DIR/bin/python when ready
#
# DIR defaults to ~/.cache/nanguard/langgraph-<hash of requirements.txt>
# (NANGUARD_CACHE moves ~/.cache/nanguard), so a change of pins makes a new
# environment and an unchanged one is reused. Packages come from PyPI with
# pip; nothing is installed system-wide. Safe to run from several tests at
# once (a lock file serialises them).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
req=$here/requirements.txt
cache=${NANGUARD_CACHE:-$HOME/.cache/nanguard}
hash=$(sha256sum <"$req" | cut -c1-12)
dir=${1:-$cache/langgraph-$hash}
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
