#!/usr/bin/env bash
# ratio_sanitize.sh - `nanguard sanitize` against yajl's own validation
# (`json_verify -s`, on the same bytes with the non-finite values already
# nulled, since yajl cannot lex NaN) and against the seed's Python, in CPU
# time, as medians of interleaved rounds (the machine is shared: each round
# runs every command once, in turn, so that load slows them alike).
#
#   tests/bench/ratio_sanitize.sh [OUTDIR]
#
# OUTDIR (default build-bench) gets a Release build (-O2) in OUTDIR/build and
# the corpus (kept): ~40 MB NDJSON of ~20 KB checkpoint envelopes with 1%
# non-finite floats (tests/corpus/gen_checkpoints.py, seed 1). Environment:
# NANGUARD_BENCH_ROUNDS (default 9), NANGUARD_BENCH_MB (default 40).
# Needs json_verify (Debian yajl-tools, deploy/install-deps.sh).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=bench_lib.sh
. "$here/bench_lib.sh"
out=${1:-build-bench}
[[ $out == /* ]] || out="$root/$out"
rounds=${NANGUARD_BENCH_ROUNDS:-9}
mb=${NANGUARD_BENCH_MB:-40}
mkdir -p "$out"
log() { echo "ratio_sanitize: $*" >&2; }

build="$out/build"
log "building $build (Release, -O2)"
bench_build "$build" nanguard
nanguard="$build/nanguard"

log "the corpus (${mb} MB, made once)"
corpus=$(bench_corpus "$out" $((mb * 1000000)) 1 0.01)
nulled="$corpus.nulled"
"$nanguard" sanitize <"$corpus" >"$nulled"
json_verify -s <"$nulled" >/dev/null
"$nanguard" sanitize --full-feed <"$corpus" | cmp - "$nulled"

log "$rounds interleaved rounds, CPU time (user + system) of each process"
python3 "$here/cpu_rounds.py" --rounds "$rounds" >"$out/ratio_sanitize.md" \
    "nanguard sanitize=$corpus=$nanguard sanitize" \
    "json_verify -s (pre-nulled)=$nulled=json_verify -s" \
    "nanguard sanitize --full-feed=$corpus=$nanguard sanitize --full-feed" \
    "seed Python (sanitize_for_json.py)=$corpus=python3 $here/sanitize_for_json.py --passes 1 /dev/stdin"
cat "$out/ratio_sanitize.md"
echo "corpus: $(wc -c <"$corpus") bytes, $(wc -l <"$corpus") lines; $(nproc) cores; $(date -u '+%Y-%m-%d %H:%M UTC'); load average $(cut -d' ' -f1-3 /proc/loadavg)"

# The plot: MB of input per CPU second (the corpus over each median), from
# the table above, into OUTDIR/sanitize-cpu.tsv and sanitize-cpu.png.
awk -F' [|] ' -v b="$(wc -c <"$corpus")" 'BEGIN { print "label\tMB per CPU second" }
    NR > 2 { sub(/^[|] /, "", $1); printf "%s\t%.1f\n", $1, b / 1e6 / $2 }' \
    "$out/ratio_sanitize.md" >"$out/sanitize-cpu.tsv"
bench_plot "$out/sanitize-cpu.tsv" "$out/sanitize-cpu.png" \
    "Sanitizer: MB of input per CPU second, median of $rounds interleaved rounds ($(date -u +%Y-%m-%d), $(nproc) shared cores)" \
    "MB per CPU second"
