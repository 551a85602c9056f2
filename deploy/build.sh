#!/usr/bin/env bash
# Builds nanguard (Release) into build/release and prints the binary's path.
# Usage: deploy/build.sh   (installs the Debian packages it needs first)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/deploy/install-deps.sh"
build=${NANGUARD_BUILD_DIR:-$root/build/release}
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_TESTING=OFF >/dev/null
ninja -C "$build" nanguard >&2
echo "$build/nanguard"
