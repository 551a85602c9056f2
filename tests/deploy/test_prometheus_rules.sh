#!/usr/bin/env bash
# deploy/prometheus/alerts.yml: promtool (Debian's prometheus package)
# checks the rules and runs their unit tests, alerts_test.yml, which make
# each alert fire on the series that should fire it and not on the others.
# A real Prometheus scraping a real worker is e2e_alerts. Exit 77 (skipped)
# where promtool is not installed.
#
# Usage: test_prometheus_rules.sh SOURCE_DIR
set -euo pipefail
dir=$1/deploy/prometheus
if ! command -v promtool >/dev/null; then
    echo "promtool not installed: skipped"
    exit 77
fi
cd "$dir"
promtool check rules alerts.yml
promtool test rules alerts_test.yml
echo "ok   promtool check rules and test rules"
