#!/usr/bin/env bash
# The layers of DESIGN.md, checked on the tree and on a binary:
# - a program linked against the sanitizer target alone works and has no
#   librdkafka, libpq or libmicrohttpd on its link line or among the
#   libraries it loads;
# - the nanguard executable (its `sanitize`) loads none of them either;
# - no file in filter/sanitize/ or filter/kafka/ includes a header from
#   sink/ or filter/cli/, filter/sanitize/ includes nothing from
#   filter/kafka/ or the drivers, common/ includes nothing above it, and
#   nothing below filter/cli/ includes from it.
# Usage: test_layers.sh SANITIZE_ONLY_BINARY BUILD_DIR
set -euo pipefail
bin=$1 build=$2
root=${NANGUARD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
fail=0
bad() { echo "FAIL: $*" >&2; fail=1; }

out=$("$bin")
[[ $out == '{"x": null}' ]] || bad "sanitize_only printed '$out'"

needed=$(readelf -d "$bin" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p')
echo "sanitize_only needs: $(echo $needed)"
for lib in librdkafka libpq libmicrohttpd libssl libcrypto; do
    grep -q "^$lib" <<<"$needed" && bad "sanitize_only loads $lib"
done
# The nanguard executable itself holds only `sanitize`: the other commands
# are in nanguard-commands.so, loaded when one of them runs.
if [[ -x $build/nanguard ]]; then
    needed=$(readelf -d "$build/nanguard" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p')
    echo "nanguard needs: $(echo $needed)"
    for lib in librdkafka libpq libmicrohttpd libssl libcrypto; do
        grep -q "^$lib" <<<"$needed" && bad "nanguard loads $lib"
    done
    [[ -f $build/nanguard-commands.so ]] || bad "no nanguard-commands.so beside nanguard"
fi
# The link command itself, as the build wrote it.
link=$(grep -A3 'build tests/layers/sanitize_only' "$build/build.ninja" |
       grep -m1 'LINK_LIBRARIES' || true)
[[ -n $link ]] || bad "no link line for sanitize_only in build.ninja"
for lib in rdkafka -lpq microhttpd libng_sink libng_kafka libng_common_http; do
    grep -q -- "$lib" <<<"$link" && bad "link line names $lib: $link"
done

# Includes, by folder. A rule: files under DIR may not include PATTERN.
check() {
    local dir=$1 pattern=$2 hits
    hits=$(cd "$root" && grep -rnE "^#include \"($pattern)" "$dir" || true)
    [[ -z $hits ]] || bad "$dir includes from above its layer:"$'\n'"$hits"
}
check common 'filter/|sink/'
check filter/sanitize 'sink/|filter/cli/|filter/kafka/|filter/worker|filter/loader|filter/dlq|filter/notify'
check filter/kafka 'sink/|filter/cli/|filter/sanitize/|filter/worker|filter/loader|filter/dlq|filter/notify'
check sink 'filter/cli/|filter/kafka/|filter/worker|filter/loader|filter/dlq|filter/notify'
for f in "$root"/filter/*.c "$root"/filter/*.h; do
    check "${f#"$root"/}" 'filter/cli/'
done
# Every include names its folder from the root.
hits=$(cd "$root" && grep -rnE '^#include "[^/"]+"' common filter sink || true)
[[ -z $hits ]] || bad "includes that do not name their folder:"$'\n'"$hits"

((fail == 0)) && echo "layers hold"
exit $fail
