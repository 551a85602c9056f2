#!/usr/bin/env bash
# The sanitizer's depth limit against a real PostgreSQL: what passes
# `nanguard sanitize --max-depth 13000` (the highest it allows), jsonb
# stores and gives back, nested objects and nested arrays alike, by COPY
# and by INSERT; and jsonb does refuse nesting of 20000 ("stack depth limit
# exceeded", 54001), which is why --max-depth 20000 is refused.
# Environment: NANGUARD_BIN, NANGUARD_TEST_PG, NANGUARD_TEST_TMP. Uses psql.
# The last line is "N passed, M failed".
set -uo pipefail
BIN=${NANGUARD_BIN:?NANGUARD_BIN must name the nanguard binary}
PG=${NANGUARD_TEST_PG:?NANGUARD_TEST_PG must hold a libpq conninfo}
tmp=${NANGUARD_TEST_TMP:-/tmp/nanguard-test}/jsonb_depth
rm -rf "$tmp" && mkdir -p "$tmp" || exit 1
export PGCONNECT_TIMEOUT=10 PGAPPNAME=nanguard-jsonb-depth
passed=0 failed=0
check() { # name, then a command whose success is the check
    local name=$1
    shift
    if "$@"; then passed=$((passed + 1)); echo "ok    $name"; else failed=$((failed + 1)); echo "FAIL  $name"; fi
}
deep() { # open close depth bottom
    python3 -c "import sys; o,c,d,b=sys.argv[1:]; d=int(d); sys.stdout.write(o*d+b+c*d+'\n')" "$@"
}
psql_q() { psql "$PG" -X -q -At -v ON_ERROR_STOP=1 "$@"; }

deep '{"a":' '}' 13000 NaN >"$tmp/objects.json"
deep '[' ']' 13000 NaN >"$tmp/arrays.json"
for kind in objects arrays; do
    "$BIN" sanitize --max-depth 13000 <"$tmp/$kind.json" >"$tmp/$kind.out"
    check "$kind 13000 deep: sanitize --max-depth 13000 exit 0" test $? -eq 0
    got=$({ echo "CREATE TEMP TABLE t (j jsonb); COPY t FROM STDIN;"
            cat "$tmp/$kind.out"; echo '\.'
            echo "SELECT length(j::text) FROM t;"; } | psql_q 2>&1)
    check "$kind 13000 deep: stored by COPY and read back (${got:0:80})" \
        grep -qx '[0-9]*' <<<"$got"
    got2=$(printf 'SELECT length(%s::jsonb::text);\n' "\$\$$(cat "$tmp/$kind.out")\$\$" |
           psql_q 2>&1)
    check "$kind 13000 deep: taken by a literal too" test "$got2" = "$got"
done
deep '{"a":' '}' 20000 1 >"$tmp/too-deep.json"
err=$({ printf 'SELECT %s::jsonb IS NULL;\n' "\$\$$(cat "$tmp/too-deep.json")\$\$"; } | psql_q 2>&1)
check "jsonb refuses 20000 nested objects (stack depth limit exceeded)" grep -q "stack depth limit exceeded" <<<"$err"
"$BIN" sanitize --max-depth 20000 <"$tmp/too-deep.json" >/dev/null 2>"$tmp/err"
rc=$?
check "sanitize --max-depth 20000 refused (exit 64 naming 13000)" test $rc -eq 64 -a -n "$(grep 13000 "$tmp/err")"
echo "$passed passed, $failed failed"
((failed == 0))
