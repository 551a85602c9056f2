#!/usr/bin/env bash
# PostgreSQL acceptance test: what `nanguard sanitize` writes, jsonb takes.
#
#  1. A 10,000-message corpus (tests/corpus/gen_checkpoints.py: NaN and
#     Infinity floats, \u0000, lone surrogates, invalid UTF-8, mixed
#     ensure_ascii) is sanitized. Raw, jsonb refuses it (COPY fails), and
#     line by line it refuses exactly the lines the sanitizer changed.
#     Sanitized, every line loads into a jsonb column with COPY, without a
#     single error, one row per line.
#  2. Edge cases, one by one: the raw value is refused (with the SQLSTATE
#     PostgreSQL gives), the sanitized one is accepted and stored as the
#     expected jsonb.
#
# Environment: NANGUARD_BIN, NANGUARD_TEST_PG (libpq conninfo of a running
# server), NANGUARD_TEST_TMP (scratch, created), NANGUARD_SOURCE_DIR
# (optional), PYTHON (default python3), NANGUARD_PG_COUNT (default 10000).
# Uses psql. Tables are named ng_accept_<pid>_* and dropped at the end.
# The last line is "N passed, M failed"; exit status 0 only if none failed.
set -uo pipefail

BIN=${NANGUARD_BIN:?NANGUARD_BIN must name the nanguard binary}
PG=${NANGUARD_TEST_PG:?NANGUARD_TEST_PG must hold a libpq conninfo}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=${NANGUARD_SOURCE_DIR:-$(cd "$here/../.." && pwd)}
gen=$root/tests/corpus/gen_checkpoints.py
PY=${PYTHON:-python3}
count=${NANGUARD_PG_COUNT:-10000}
if [[ ! -x $BIN ]]; then
    echo "FAIL  NANGUARD_BIN is not an executable: $BIN"
    echo "0 passed, 1 failed"
    exit 1
fi
tmp=${NANGUARD_TEST_TMP:-/tmp/nanguard-test}/jsonb_acceptance
rm -rf "$tmp" && mkdir -p "$tmp" || exit 1
export PGCLIENTENCODING=UTF8 PGCONNECT_TIMEOUT=10 PGAPPNAME=nanguard-jsonb-acceptance

tag=ng_accept_$$_$RANDOM
corpus_tbl=${tag}_corpus
raw_tbl=${tag}_raw
edge_tbl=${tag}_edge

passed=0 failed=0
ok() { passed=$((passed + 1)); echo "ok    $1"; }
bad() {
    failed=$((failed + 1))
    echo "FAIL  $1"
    [[ -n ${2:-} ]] && printf '%s\n' "$2" | head -n 12 | cut -c1-400 | sed 's/^/      /'
    return 0
}
check() { # NAME DETAIL CONDITION... : runs the condition as a command
    local name=$1 detail=$2
    shift 2
    if "$@"; then ok "$name"; else bad "$name" "$detail"; fi
}

# Runs the psql script on stdin. Sets OUT (stdout), ERR (stderr) and STATE
# (the SQLSTATE of the first error, empty on success).
sql() {
    psql "$PG" -X -q -A -t -v ON_ERROR_STOP=1 -v VERBOSITY=verbose \
        >"$tmp/psql.out" 2>"$tmp/psql.err"
    local rc=$?
    OUT=$(<"$tmp/psql.out")
    ERR=$(<"$tmp/psql.err")
    STATE=
    if ((rc != 0)); then
        STATE=$(grep -o -m1 'ERROR:  [0-9A-Z]\{5\}' "$tmp/psql.err" | cut -c9-)
        STATE=${STATE:-rc$rc}
    fi
}

copy_opts="WITH (FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02')"
load() { # TABLE FILE: COPY every line of FILE into TABLE(doc), verbatim
    sql <<SQL
\\set VERBOSITY verbose
\\copy $1(doc) FROM '$2' $copy_opts
SQL
}

cleanup() {
    psql "$PG" -X -q -v ON_ERROR_STOP=0 >/dev/null 2>&1 <<SQL
DROP TABLE IF EXISTS $corpus_tbl, $raw_tbl, $edge_tbl;
SQL
}
trap cleanup EXIT

# --- the server --------------------------------------------------------------
t0=$SECONDS
for ((i = 0; i < 30; i++)); do
    sql <<<'SELECT 1' && [[ -z $STATE ]] && break
    sleep 1
done
if [[ -n $STATE ]]; then
    bad "PostgreSQL answers at '$PG'" "$ERR"
    echo "$passed passed, $failed failed"
    exit 1
fi
sql <<<"SELECT current_setting('server_version'), current_setting('server_encoding')"
ok "PostgreSQL answers (version|encoding: $OUT)"
[[ ${OUT##*|} == UTF8 ]] || bad "server encoding is UTF8" "$OUT"

sql <<SQL
CREATE TABLE $corpus_tbl (id bigserial PRIMARY KEY, doc jsonb NOT NULL);
CREATE TABLE $raw_tbl (id bigint PRIMARY KEY, hex text NOT NULL, changed boolean NOT NULL);
CREATE TABLE $edge_tbl (id bigserial PRIMARY KEY, doc jsonb NOT NULL);
SQL
[[ -z $STATE ]] || { bad "create tables ${tag}_*" "$ERR"; echo "$passed passed, $failed failed"; exit 1; }

# --- 1. the corpus ------------------------------------------------------------
raw=$tmp/corpus.ndjson
clean=$tmp/corpus.clean.ndjson
"$PY" "$gen" --count "$count" --avg-bytes 3000 --nan-rate 0.02 --bad-rate 0.02 \
    --ensure-ascii mixed --seed 4242 --out "$raw" 2>"$tmp/gen.err"
rc=$?
check "generate $count messages ($(tr -d '\n' <"$tmp/gen.err" | sed 's/^gen_checkpoints: //'))" \
    "exit $rc" test "$rc" = 0

"$BIN" sanitize --report "$tmp/report.json" "$raw" >"$clean" 2>"$tmp/sanitize.err"
rc=$?
check "sanitize the corpus: exit 0 ($(head -c 300 "$tmp/report.json" 2>/dev/null))" \
    "exit $rc: $(<"$tmp/sanitize.err")" test "$rc" = 0
nraw=$(wc -l <"$raw")
nclean=$(wc -l <"$clean")
check "sanitized corpus has as many lines ($nclean) as the raw one ($nraw)" "" \
    test "$nraw" = "$nclean" -a "$nraw" = "$count"

# (b) The raw corpus would not load.
load "$corpus_tbl" "$raw"
case $STATE in
22P02 | 22P05 | 22021)
    ok "raw corpus: COPY into jsonb fails (SQLSTATE $STATE: $(grep -m1 -o 'ERROR: .*' <<<"$ERR" | cut -c1-90))" ;;
*)
    bad "raw corpus: COPY into jsonb fails with 22P02, 22P05 or 22021" "state '$STATE' $ERR" ;;
esac

# Line by line: jsonb refuses exactly the lines the sanitizer changed.
"$PY" - "$raw" "$clean" "$tmp/raw.csv" <<'PY'
import sys
raw = open(sys.argv[1], "rb").read().split(b"\n")
clean = open(sys.argv[2], "rb").read().split(b"\n")
with open(sys.argv[3], "w") as f:
    for i, (r, c) in enumerate(zip(raw, clean), 1):
        if r:
            f.write("%d,%s,%s\n" % (i, r.hex(), "t" if r != c else "f"))
PY
sql <<SQL
\\copy $raw_tbl(id, hex, changed) FROM '$tmp/raw.csv' WITH (FORMAT csv)
-- The SQLSTATE jsonb input gives for bytes, NULL when they are accepted.
CREATE FUNCTION pg_temp.jsonb_state(h text) RETURNS text LANGUAGE plpgsql AS \$\$
BEGIN
    PERFORM convert_from(decode(h, 'hex'), 'UTF8')::jsonb;
    RETURN NULL;
EXCEPTION WHEN others THEN
    RETURN SQLSTATE;
END \$\$;
CREATE TEMP TABLE verdict AS SELECT id, changed, pg_temp.jsonb_state(hex) AS state FROM $raw_tbl;
SELECT 'changed=' || count(*) FILTER (WHERE changed)
    || ' refused=' || count(*) FILTER (WHERE state IS NOT NULL)
    || ' mismatched=' || count(*) FILTER (WHERE changed <> (state IS NOT NULL))
    || ' first_mismatch=' || coalesce(min(id) FILTER (WHERE changed <> (state IS NOT NULL))::text, '-')
    || ' states=' || coalesce((SELECT string_agg(state || ':' || n, ',' ORDER BY state)
                      FROM (SELECT state, count(*) n FROM verdict WHERE state IS NOT NULL
                            GROUP BY state) s), '-')
  FROM verdict;
SQL
if [[ -n $STATE ]]; then
    bad "raw corpus line by line" "$ERR"
else
    verdict=$OUT
    [[ $verdict =~ changed=([0-9]+)\ refused=([0-9]+)\ mismatched=([0-9]+) ]]
    nchanged=${BASH_REMATCH[1]:-0} nrefused=${BASH_REMATCH[2]:--1} nmis=${BASH_REMATCH[3]:--1}
    check "raw corpus line by line: jsonb refuses some lines ($nrefused)" "$verdict" \
        test "$nrefused" -gt 0
    check "raw corpus line by line: jsonb refuses exactly the lines sanitize changed ($verdict)" \
        "$verdict" test "$nmis" = 0 -a "$nchanged" = "$nrefused"
fi

# (a) The sanitized corpus loads, every line of it.
sql <<<"TRUNCATE $corpus_tbl"
t1=$SECONDS
load "$corpus_tbl" "$clean"
check "sanitized corpus: COPY of $nclean lines into jsonb without an error ($((SECONDS - t1)) s)" \
    "SQLSTATE $STATE: $ERR" test -z "$STATE"
sql <<SQL
SELECT count(*),
       count(*) FILTER (WHERE jsonb_typeof(doc) = 'object'
                        AND doc ?& array['thread_id', 'checkpoint_ns', 'checkpoint_id',
                                         'parent_checkpoint_id', 'type', 'checkpoint', 'metadata']
                        AND jsonb_array_length(doc #> '{checkpoint,channel_values,data_store,neighbor_bounding_box}') = 4)
  FROM $corpus_tbl;
SQL
IFS='|' read -r nrows nenv <<<"$OUT"
check "sanitized corpus: row count ($nrows) = line count ($nclean)" "$ERR" \
    test "${nrows:-x}" = "$nclean"
check "sanitized corpus: every row is a whole envelope ($nenv)" "$ERR" \
    test "${nenv:-x}" = "$nclean"

# --- 2. edge cases ---------------------------------------------------------------
n=0
# edge NAME RAW WANT_RAW EXPECTED
#   WANT_RAW: the SQLSTATEs jsonb may refuse RAW with ("22P02|22021"),
#   "float8" when jsonb takes it but a cast of the number to double
#   precision fails (22003), or "ok" when RAW is good JSON already.
#   EXPECTED: jsonb the sanitized value must be stored as (SQL literal text).
edge() {
    local name=$1 rawv=$2 want=$3 expected=$4
    n=$((n + 1))
    local rf=$tmp/edge$n.json cf=$tmp/edge$n.clean.json
    printf '%s\n' "$rawv" >"$rf"
    sql <<<"TRUNCATE $edge_tbl"
    load "$edge_tbl" "$rf"
    local raw_state=$STATE
    case $want in
    ok)
        check "edge $name: raw accepted by jsonb" "$raw_state $ERR" test -z "$raw_state" ;;
    float8)
        if [[ -n $raw_state ]]; then
            bad "edge $name: raw accepted by jsonb, refused as double precision" "$raw_state $ERR"
        else
            sql <<<"SELECT (doc->>0)::float8 FROM $edge_tbl"
            check "edge $name: raw accepted by jsonb (numeric) but refused as float8 (SQLSTATE ${STATE:-none})" \
                "$OUT" test "$STATE" = 22003
        fi ;;
    *)
        if [[ -n $raw_state && "|$want|" == *"|$raw_state|"* ]]; then
            ok "edge $name: raw refused by jsonb (SQLSTATE $raw_state)"
        else
            bad "edge $name: raw refused by jsonb with SQLSTATE $want" \
                "got '${raw_state:-accepted}' $(grep -m1 'ERROR' <<<"$ERR")"
        fi ;;
    esac

    if ! "$BIN" sanitize "$rf" >"$cf" 2>"$tmp/edge.err"; then
        bad "edge $name: sanitized and stored as $expected" "sanitize failed: $(<"$tmp/edge.err")"
        return
    fi
    sql <<<"TRUNCATE $edge_tbl"
    load "$edge_tbl" "$cf"
    if [[ -n $STATE ]]; then
        bad "edge $name: sanitized value accepted by jsonb" \
            "SQLSTATE $STATE for $(head -c 200 "$cf") $ERR"
        return
    fi
    sql <<SQL
SELECT count(*) = 1 AND bool_and(doc = '$expected'::jsonb) AND bool_and(doc::text = ('$expected'::jsonb)::text),
       string_agg(doc::text, ' ')
  FROM $edge_tbl;
SQL
    check "edge $name: sanitized value accepted and stored as $expected" \
        "stored ${OUT#*|} (sanitized bytes: $(head -c 200 "$cf"); $STATE $ERR)" \
        test "${OUT%%|*}" = t
    if [[ $want == ok ]]; then
        check "edge $name: sanitize kept the bytes" "$(head -c 200 "$cf")" cmp -s "$rf" "$cf"
    fi
}

edge 'NUL escape "a\u0000b"'      '{"s":"a\u0000b"}'        22P05  '{"s":"a\ufffdb"}'
edge 'lone high surrogate \ud800' '["\ud800"]'              22P02  '["\ufffd"]'
edge 'lone low surrogate \udc00'  '["\udc00"]'              22P02  '["\ufffd"]'
edge '\ud800 followed by x'       '["\ud800x"]'             22P02  '["\ufffdx"]'
edge '\ud800 before a good pair'  '["\ud800\ud83d\ude00"]'  22P02  '["\ufffd\ud83d\ude00"]'
edge 'invalid UTF-8 0xFF'         $'["\xff"]'               22021  '["\ufffd"]'
edge 'truncated UTF-8 E2 82'      $'["a\xe2\x82"]'          22021  '["a\ufffd"]'
edge 'encoded surrogate ED A0 80' $'["\xed\xa0\x80"]'       22021  '["\ufffd\ufffd\ufffd"]'
edge 'overlong C0 AF'             $'["\xc0\xaf"]'           22021  '["\ufffd\ufffd"]'
edge 'invalid UTF-8 in a key'     $'{"k\xff":1}'            22021  '{"k\ufffd":1}'
edge 'number 1e400'               '[1e400]'                 float8 '[null]'
edge 'number -1e309'              '[-1e309]'                float8 '[null]'
edge 'number 1e-16384'            '[1e-16384]'              22003  '[null]'
edge 'number 0e99999999999'       '[0e99999999999]'         '22003|22P02' '[null]'
edge 'NaN'                        '[NaN]'                   22P02  '[null]'
edge '-Infinity and Infinity'     '[-Infinity,Infinity]'    22P02  '[null,null]'
edge 'keys and strings named NaN' '{"NaN":NaN,"Infinity":"-Infinity","s":"a\"NaN"}' \
    22P02 '{"NaN":null,"Infinity":"-Infinity","s":"a\"NaN"}'
edge 'good JSON is kept'          '{"x":[1.5,-0,1E+2,1e-16383,1.7976931348623157e308,"\ud83d\ude00","NaN","\\u0000"]}' \
    ok '{"x":[1.5,-0,1E+2,1e-16383,1.7976931348623157e308,"\ud83d\ude00","NaN","\\u0000"]}'

# Keep the corpus only as evidence of a failure.
((failed == 0)) && rm -f "$raw" "$clean" "$tmp/raw.csv"
echo "jsonb acceptance: $((SECONDS - t0)) s"
echo "$passed passed, $failed failed"
((failed == 0))
