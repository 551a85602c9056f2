#!/usr/bin/env bash
# The main job, end to end on this machine: builds nanguard and repairs a
# checkpoint message written by Python's json.dumps (NaN and Infinity in
# it), printing the message before and after and the report of what changed.
# Usage: deploy/demo.sh
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=$(bash "$root/deploy/build.sh")
example=$root/deploy/examples/checkpoint.json
report=$(mktemp)
trap 'rm -f "$report"' EXIT

echo "== input ($example), as json.dumps wrote it:"
cat "$example"
echo
echo "== nanguard sanitize --report REPORT $example"
"$bin" sanitize --report "$report" "$example"
echo
echo "== report:"
cat "$report"
echo
echo "== PostgreSQL would refuse the input (Token \"NaN\" is invalid);" \
     "the output above is strict JSON."
