#!/usr/bin/env bash
# run.sh TEST.py - runs a LangGraph test in the virtual environment of
# deploy/langgraph/venv.sh (made on first use: LangGraph from PyPI).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
py=$(bash "$here/../../deploy/langgraph/venv.sh")
exec "$py" "$@"
