#!/usr/bin/env bash
# Builds the nanguard image with podman, without an image registry: the base
# of both stages is a minimal Debian 12 (debootstrap --variant=minbase from
# the Debian mirror apt uses), imported as localhost/nanguard-base:12 and
# passed to the Containerfile as BASE. The stages' apt-get reach the same
# mirror through the host's network (--network=host).
#
# Usage: deploy/container/build.sh [base | image [TAG]]
#   base         makes the base image only (kept when it is up to date)
#   image [TAG]  the base, then the image (default: image
#                localhost/nanguard:VERSION, VERSION from CMakeLists.txt)
# Environment: NANGUARD_DEBIAN_MIRROR (default: the first Debian mirror of
# /etc/apt/sources.list*, else http://deb.debian.org/debian),
# NANGUARD_DEBIAN_SECURITY (likewise, debian-security),
# NANGUARD_BASE_MAX_AGE_DAYS (default 30: an older base tarball is made
# again), XDG_CACHE_HOME. Needs root (debootstrap, rootful podman).
#
# The base tarball is cached in ~/.cache/nanguard/container, and podman
# keeps the stages' layers: a rerun with unchanged sources takes seconds.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
podman_sh=$root/deploy/container/podman.sh
what=${1:-image}
version=$(sed -n 's/^project(nanguard VERSION \([0-9.]*\).*/\1/p' "$root/CMakeLists.txt")
tag=${2:-localhost/nanguard:$version}
base=localhost/nanguard-base:12
cache=${XDG_CACHE_HOME:-$HOME/.cache}/nanguard/container
tarball=$cache/debian-12-minbase.tar
say() { echo "container/build.sh: $*" >&2; }
die() {
    say "$*"
    exit 1
}

[[ $what == base || $what == image ]] || die "usage: build.sh [base | image [TAG]]"
command -v podman >/dev/null || die "podman is not installed (deploy/install-deps.sh)"
((EUID == 0)) || die "needs root (debootstrap and rootful podman)"

# The first URI of the host's apt sources that ends in /SUITE_DIR.
host_mirror() {
    grep -hsE '^(URIs:|deb) ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
        /etc/apt/sources.list.d/*.sources |
        grep -oE "https?://[^ ]+/$1/?( |$)" | head -n 1 | tr -d ' ' || true
}
mirror=${NANGUARD_DEBIAN_MIRROR:-$(host_mirror debian)}
mirror=${mirror:-http://deb.debian.org/debian}
security=${NANGUARD_DEBIAN_SECURITY:-$(host_mirror debian-security)}
security=${security:-http://deb.debian.org/debian-security}

make_tarball() {
    command -v debootstrap >/dev/null ||
        die "debootstrap is not installed (deploy/install-deps.sh)"
    local t0=$SECONDS rootfs=$cache/rootfs.tmp
    mkdir -p "$cache"
    rm -rf "$rootfs"
    say "debootstrap --variant=minbase bookworm from $mirror"
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$cache/debootstrap.log" 2>&1 ||
        die "debootstrap failed (log: $cache/debootstrap.log): $(tail -n 3 "$cache/debootstrap.log")"
    # What debian:12-slim has: the three suites, and no documentation,
    # manual pages or translations in later installs.
    rm -f "$rootfs/etc/apt/sources.list"
    cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/nanguard-slim" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
DPKG
    find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    rm -rf "$rootfs"/usr/share/{man,info,locale,lintian}/* \
        "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
        "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log
    tar --numeric-owner -C "$rootfs" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$rootfs"
    say "base tarball $tarball made in $((SECONDS - t0)) s"
}

max_age=${NANGUARD_BASE_MAX_AGE_DAYS:-30}
if [[ ! -s $tarball ]] || [[ -n $(find "$tarball" -mtime "+$max_age") ]]; then
    make_tarball
fi
# Imported again only when the tarball changed: a new import is a new base
# image, and every layer built on the old one would be built again.
sum=$(sha256sum "$tarball" | cut -c1-64)
have=$(podman image inspect --format '{{index .Labels "nanguard.base.sha256"}}' "$base" \
    2>/dev/null || true)
if [[ $have != "$sum" ]]; then
    podman import --quiet --change "LABEL nanguard.base.sha256=$sum" \
        --change 'CMD ["/bin/bash"]' "$tarball" "$base" >/dev/null
    say "imported $tarball as $base"
fi
[[ $what == base ]] && exit 0

t0=$SECONDS
bash "$podman_sh" build --network=host --pull=never --build-arg "BASE=$base" \
    -f "$root/deploy/container/Containerfile" -t "$tag" "$root" >&2
say "image $tag built in $((SECONDS - t0)) s"
