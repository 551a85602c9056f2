#!/usr/bin/env bash
# Installs every Debian package that building, testing and running nanguard
# needs. Idempotent: packages already present are not fetched again.
set -euo pipefail

packages=(
    build-essential cmake ninja-build pkg-config
    librdkafka-dev libyajl-dev libpq-dev libcmocka-dev
    postgresql postgresql-contrib kcat libmicrohttpd-dev libssl-dev
    clang-14 libclang-rt-14-dev clang-format
    python3 python3-venv maven openjdk-17-jdk-headless openssl
    chromium chromium-driver python3-selenium
    prometheus
    gnuplot-nox
    yajl-tools time
    podman runc debootstrap
)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done

if ((${#missing[@]} == 0)); then
    echo "install-deps: all ${#packages[@]} packages present" >&2
    exit 0
fi

SUDO=
if [[ $(id -u) -ne 0 ]]; then
    SUDO=sudo
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done" >&2
