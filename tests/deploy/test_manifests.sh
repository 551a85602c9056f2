#!/usr/bin/env bash
# Runs test_manifests.py (the Kubernetes files, the compose file, the
# Containerfile) with kubernetes-validate and PyYAML from the venv that
# deploy/venv.sh makes (pinned in deploy/k8s/requirements.txt; the first
# run fetches them from PyPI, later runs reuse it).
#
# Usage: test_manifests.sh SOURCE_DIR NANGUARD_BIN
set -euo pipefail
src=$1
python=$(bash "$src/deploy/venv.sh" "$src/deploy/k8s/requirements.txt" deploy-check)
exec "$python" "$src/tests/deploy/test_manifests.py" "$src" "$2"
