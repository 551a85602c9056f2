#!/usr/bin/env bash
# bench_load.sh - how fast `nanguard load` writes checkpoints to PostgreSQL,
# against two references, on the same corpus and the same server:
#
#   seed   the seed's way: one INSERT per checkpoint in autocommit into
#          LangGraph's table as LangGraph creates it (default pglz), by a
#          small libpq program (tests/bench/bench_seed_insert.c) that
#          repairs each line with the same sanitizer first;
#   limit  the server's limit: psql \copy of the already sanitized rows
#          into a temporary staging table, then the same INSERT ... SELECT
#          ... ON CONFLICT DO NOTHING, in one transaction, with the same
#          table settings (lz4, or pglz) as the nanguard run it is
#          compared with.
#
# Goals: nanguard with its defaults (--create-table: lz4; --jobs 2, with
# --jobs 1 shown next to it) at least 4x the seed's way, and at least
# 0.85x the limit with equal table settings.
# One run of each. Not a ctest: it takes a few minutes and ~400 MB of disk.
#
#   tests/bench/bench_load.sh
#
# Environment: BUILD (Release tree, default build-bench-load), WORK (corpus,
# server; default /tmp/nanguard-bench-load), PORT (default 54439),
# TOTAL_BYTES (default 100000000), AVG_BYTES (default 20000).
# Also writes $WORK/load.tsv (rows/s of each method, fsync off and on) and
# the plot of it, $WORK/load.png.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
root=$src
# shellcheck source=bench_lib.sh
. "$here/bench_lib.sh"
BUILD=${BUILD:-$src/build-bench-load}
WORK=${WORK:-/tmp/nanguard-bench-load}
PORT=${PORT:-54439}
TOTAL_BYTES=${TOTAL_BYTES:-100000000}
AVG_BYTES=${AVG_BYTES:-20000}
log() { echo "bench_load: $*" >&2; }

log "building $BUILD (Release)"
cmake -S "$src" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
ninja -C "$BUILD" nanguard bench_seed_insert >/dev/null
NG=$BUILD/nanguard
SEED=$BUILD/tests/bench/bench_seed_insert

mkdir -p "$WORK"
chmod 755 "$WORK"
PG=$(bash "$src/deploy/local/pg.sh" start "$WORK/pg" "$PORT")
trap 'bash "$src/deploy/local/pg.sh" stop "$WORK/pg" >/dev/null 2>&1 || true' EXIT
SU="host=127.0.0.1 port=$PORT user=postgres dbname=nanguard"
q() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$PG" "$@"; }
su() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$SU" "$@"; }

corpus=$WORK/corpus.ndjson
if [[ ! -s $corpus ]]; then
    log "generating the corpus"
    python3 "$src/tests/corpus/gen_checkpoints.py" --total-bytes "$TOTAL_BYTES" \
        --avg-bytes "$AVG_BYTES" --nan-rate 0.01 --seed 1 --out "$corpus"
fi
# The limit's input: the sanitized rows in COPY text format, each field the
# exact text nanguard sends (not jsonb's re-rendering of it).
rows=$WORK/rows.tsv
if [[ ! -s $rows ]]; then
    log "preparing the sanitized rows for \\copy"
    "$NG" sanitize "$corpus" | python3 -c '
import json, sys
from json.decoder import scanstring
dec = json.JSONDecoder()
WS = " \t\r\n,:"
def esc(s):
    return (s.replace("\\", "\\\\").replace("\t", "\\t")
             .replace("\n", "\\n").replace("\r", "\\r"))
out = sys.stdout
for line in sys.stdin:
    s = line.rstrip("\n")
    if not s.strip():
        continue
    pos, raw = s.index("{") + 1, {}
    while True:
        while s[pos] in WS:
            pos += 1
        if s[pos] == "}":
            break
        key, pos = scanstring(s, pos + 1)
        while s[pos] in WS:
            pos += 1
        val, end = dec.raw_decode(s, pos)
        raw[key] = (val, s[pos:end])
        pos = end
    def text(k, default):
        v = raw.get(k)
        return default if v is None or v[0] is None else v[0]
    f = [text("thread_id", None), text("checkpoint_ns", ""),
         text("checkpoint_id", None), text("parent_checkpoint_id", None),
         text("type", "checkpoint"), raw["checkpoint"][1],
         raw["metadata"][1] if "metadata" in raw else "{}"]
    out.write("\t".join("\\N" if x is None else esc(x) for x in f) + "\n")
' >"$rows"
fi
bytes=$(stat -c %s "$corpus")
lines=$(grep -c . "$corpus")
log "corpus: $lines envelopes, $bytes bytes"

# LangGraph's table; $1 is "" (LangGraph: the server default, pglz) or
# " COMPRESSION lz4" (what nanguard --create-table makes).
table_sql() {
    cat <<SQL
DROP TABLE IF EXISTS checkpoints;
CREATE TABLE checkpoints (
    thread_id TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL DEFAULT '',
    checkpoint_id TEXT NOT NULL,
    parent_checkpoint_id TEXT,
    type TEXT,
    checkpoint JSONB$1 NOT NULL,
    metadata JSONB$1 NOT NULL DEFAULT '{}',
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id)
);
SQL
}
fresh() { # "" | " COMPRESSION lz4" | none (no table: nanguard creates it)
    q -c "DROP TABLE IF EXISTS checkpoints"
    if [[ $1 != none ]]; then table_sql "$1" | q; fi
    su -c "CHECKPOINT"
}
now() { date +%s.%N; }
stored() { q -c "SELECT count(*) FROM checkpoints"; }
check_count() {
    local n
    n=$(stored)
    [[ $n == "$lines" ]] || { log "$1: $n rows stored, not $lines"; exit 1; }
}
compression() { q -c "SELECT coalesce(pg_column_compression(checkpoint), 'none') FROM checkpoints WHERE pg_column_compression(checkpoint) IS NOT NULL LIMIT 1"; }

declare -A secs rss
run_nanguard() { # label table-setup extra-args...
    local label=$1 setup=$2
    shift 2
    fresh "$setup"
    /usr/bin/time -v -o "$WORK/time-$label.txt" "$NG" load --pg "$PG" "$@" \
        "$corpus" 2>"$WORK/load-$label.txt"
    secs[$label]=$(tail -n 1 "$WORK/load-$label.txt" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["seconds"])')
    rss[$label]=$(awk -F': ' '/Maximum resident/ {printf "%.0f", $2/1024}' \
        "$WORK/time-$label.txt")
    check_count "$label"
    log "$label: ${secs[$label]} s, peak RSS ${rss[$label]} MB, checkpoint compression $(compression)"
}
run_limit() { # label compression-clause
    local label=$1 comp=$2 t0 t1
    fresh "$comp"
    t0=$(now)
    q <<SQL
BEGIN;
CREATE TEMP TABLE staging (thread_id text, checkpoint_ns text,
    checkpoint_id text, parent_checkpoint_id text, type text,
    checkpoint jsonb$comp, metadata jsonb$comp) ON COMMIT DROP;
\\copy staging FROM '$rows'
INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id,
    parent_checkpoint_id, type, checkpoint, metadata)
SELECT * FROM staging
ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id) DO NOTHING;
COMMIT;
SQL
    t1=$(now)
    secs[$label]=$(echo "$t1 - $t0" | bc -l)
    check_count "$label"
    log "$label: ${secs[$label]} s, checkpoint compression $(compression)"
}

rate() { echo "$lines / $1" | bc -l; }
mbs() { echo "$bytes / $1 / 1000000" | bc -l; }
ratio() { echo "$1 / $2" | bc -l; }
row() { # label method table rss
    local s=${secs[$1]}
    printf '| %s | %s | %.2f | %.0f | %.1f | %s |\n' "$2" "$3" "$s" \
        "$(rate "$s")" "$(mbs "$s")" "$4"
}

# Every method once, with the server's fsync as it is now; then the table.
measure() {
    log "seed: one INSERT per checkpoint, autocommit, LangGraph's table (pglz)"
    fresh ""
    local out
    out=$("$SEED" "$PG" checkpoints "$corpus")
    secs[seed]=$(awk '{print $4}' <<<"$out")
    check_count seed
    log "seed: ${secs[seed]} s"
    log "nanguard load, defaults (--create-table: lz4, --jobs 2)"
    run_nanguard nanguard_lz4 none --create-table
    log "nanguard load --jobs 1 (--create-table: lz4)"
    run_nanguard nanguard_lz4_j1 none --create-table --jobs 1
    log "nanguard load into LangGraph's table (pglz)"
    run_nanguard nanguard_pglz ""
    log "limit: \\copy + INSERT ... ON CONFLICT, lz4"
    run_limit limit_lz4 " COMPRESSION lz4"
    log "limit: \\copy + INSERT ... ON CONFLICT, pglz"
    run_limit limit_pglz ""

    echo
    echo "### fsync=$(q -c 'SHOW fsync'), synchronous_commit=$(q -c 'SHOW synchronous_commit')"
    echo
    echo "| method | table | seconds | rows/s | MB/s | peak RSS |"
    echo "|---|---|---:|---:|---:|---:|"
    row seed "seed: INSERT per row, autocommit" "LangGraph (pglz)" "-"
    row nanguard_lz4 "nanguard load (defaults: --jobs 2)" "created by nanguard (lz4)" "${rss[nanguard_lz4]} MB"
    row nanguard_lz4_j1 "nanguard load --jobs 1" "created by nanguard (lz4)" "${rss[nanguard_lz4_j1]} MB"
    row nanguard_pglz "nanguard load" "LangGraph (pglz)" "${rss[nanguard_pglz]} MB"
    row limit_lz4 "limit: \\copy + INSERT ON CONFLICT" "lz4" "-"
    row limit_pglz "limit: \\copy + INSERT ON CONFLICT" "LangGraph (pglz)" "-"
    echo
    printf '| comparison | ratio | goal |\n|---|---:|---:|\n'
    printf '| nanguard (defaults) / seed | %.2fx | >= 4x |\n' \
        "$(ratio "${secs[seed]}" "${secs[nanguard_lz4]}")"
    printf '| nanguard --jobs 1 / seed | %.2fx | |\n' \
        "$(ratio "${secs[seed]}" "${secs[nanguard_lz4_j1]}")"
    printf '| nanguard / limit, lz4 | %.2fx | >= 0.85x |\n' \
        "$(ratio "${secs[limit_lz4]}" "${secs[nanguard_lz4]}")"
    printf '| nanguard / limit, pglz | %.2fx | >= 0.85x |\n' \
        "$(ratio "${secs[limit_pglz]}" "${secs[nanguard_pglz]}")"
    printf '| nanguard lz4 / nanguard pglz (speed) | %.2fx | |\n' \
        "$(ratio "${secs[nanguard_pglz]}" "${secs[nanguard_lz4]}")"
    local k
    for k in seed nanguard_lz4 nanguard_lz4_j1 nanguard_pglz limit_lz4 limit_pglz; do
        plot_rps[$k]+=$'\t'$(printf '%.0f' "$(rate "${secs[$k]}")")
    done
}
declare -A plot_rps

echo
echo "Corpus: $lines envelopes, $(echo "$bytes / 1000000" | bc) MB (avg $((bytes / lines)) B), nan-rate 0.01."
echo "Server: PostgreSQL $(q -c 'SHOW server_version'), a deploy/local/pg.sh cluster; $(nproc) cores shared by client and server."
# pg.sh runs its clusters with fsync=off (tests); PostgreSQL's default is
# on, where each autocommit INSERT waits for a WAL flush. Both are shown.
su -c "ALTER SYSTEM SET fsync = off" -c "SELECT pg_reload_conf()" >/dev/null
measure
su -c "ALTER SYSTEM SET fsync = on" -c "SELECT pg_reload_conf()" >/dev/null
sleep 1
measure
su -c "ALTER SYSTEM RESET fsync" -c "SELECT pg_reload_conf()" >/dev/null

{
    printf 'label\tfsync off\tfsync on\n'
    printf 'seed, pglz%s\n' "${plot_rps[seed]}"
    printf 'load, lz4%s\n' "${plot_rps[nanguard_lz4]}"
    printf 'load --jobs 1, lz4%s\n' "${plot_rps[nanguard_lz4_j1]}"
    printf 'copy limit, lz4%s\n' "${plot_rps[limit_lz4]}"
    printf 'load, pglz%s\n' "${plot_rps[nanguard_pglz]}"
    printf 'copy limit, pglz%s\n' "${plot_rps[limit_pglz]}"
} >"$WORK/load.tsv"
bench_plot "$WORK/load.tsv" "$WORK/load.png" \
    "Checkpoints into PostgreSQL: the seed's INSERT per row, nanguard load, psql's copy; $lines of ~20 KB ($(date -u +%Y-%m-%d), $(nproc) shared cores)" \
    "rows per second"
