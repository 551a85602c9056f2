#!/usr/bin/env bash
# Runs podman with the two settings a root sandbox like the test machines
# needs (and that are harmless elsewhere):
#  - the OCI runtime runc when it is installed: Debian 12's crun 1.8.1
#    refuses a hybrid cgroup hierarchy that has a controller on its
#    cgroup v2 mount ("cgroups in hybrid mode not supported, drop all
#    controllers from cgroupv2"); NANGUARD_PODMAN_RUNTIME chooses another;
#  - explicit open-file and process limits for `run`, `create` and `build`
#    (RUN steps), at most the hard limits podman itself has: podman's
#    defaults (nofile and nproc of 1048576 and more) need CAP_SYS_RESOURCE
#    to be raised to, and without it the container does not start
#    ("setrlimit `RLIMIT_NOFILE`: Operation not permitted").
#
# Usage: deploy/container/podman.sh COMMAND [ARGS...]   (as `podman`)
set -euo pipefail
cmd=${1:?usage: podman.sh COMMAND [ARGS...]}
shift

global=()
runtime=${NANGUARD_PODMAN_RUNTIME:-}
if [[ -z $runtime ]] && command -v runc >/dev/null 2>&1; then
    runtime=runc
fi
if [[ -n $runtime ]]; then
    global+=(--runtime "$runtime")
fi

# the smaller of the hard limit and CAP (podman runs its runtime with
# nproc at most 32768: a higher value is refused)
limit() {
    local hard=$1 cap=$2
    if [[ $hard == unlimited ]] || ((hard > cap)); then
        echo "$cap"
    else
        echo "$hard"
    fi
}

opts=()
case $cmd in
run | create | build)
    nofile=$(limit "$(ulimit -Hn)" 65536)
    nproc=$(limit "$(ulimit -Hu)" 32768)
    opts=(--ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc")
    ;;
esac
exec podman "${global[@]}" "$cmd" "${opts[@]}" "$@"
