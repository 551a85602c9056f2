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
exec bash "$here/../venv.sh" "$here/requirements.txt" langgraph "$@"
