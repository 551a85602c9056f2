#!/usr/bin/env bash
# run_sanitize.sh - how fast the sanitizer is, against yajl and the Python
# way, and how much memory `nanguard sanitize` needs for one huge value.
#
#   tests/bench/run_sanitize.sh [OUTDIR]
#
# OUTDIR (default build-bench, relative to the repository) gets a Release
# build (-O2) in OUTDIR/build and the corpora, which are kept and reused:
#   - ~100 MB NDJSON of ~20 KB checkpoint envelopes, 1% non-finite floats,
#     from tests/corpus/gen_checkpoints.py;
#   - ~300 MB single JSON array of those envelopes, for the memory figure.
# Prints one markdown table. Environment: NANGUARD_BENCH_PASSES (best of N,
# default 5; Python and the process: best of 3), NANGUARD_BENCH_MB (corpus
# size, default 100), NANGUARD_BENCH_BIG_MB (default 300).
# Also writes OUTDIR/sanitize.tsv and the plot of it, OUTDIR/sanitize.png.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=bench_lib.sh
. "$here/bench_lib.sh"
out=${1:-build-bench}
[[ $out == /* ]] || out="$root/$out"
passes=${NANGUARD_BENCH_PASSES:-5}
corpus_mb=${NANGUARD_BENCH_MB:-100}
big_mb=${NANGUARD_BENCH_BIG_MB:-300}
mkdir -p "$out"

log() { echo "run_sanitize: $*" >&2; }

# ---- build ------------------------------------------------------------------
build="$out/build"
log "building $build (Release, -O2)"
bench_build "$build" nanguard bench_sanitize
nanguard="$build/nanguard"
bench="$build/tests/bench/bench_sanitize"

# ---- corpora ------------------------------------------------------------------
gen="$root/tests/corpus/gen_checkpoints.py"
tag="$(basename "$gen" .py)-$(sha1sum "$gen" | cut -c1-10)"
log "the corpus (${corpus_mb} MB, made once with $gen)"
corpus=$(bench_corpus "$out" $((corpus_mb * 1000000)) 1 0.01)
big="$out/big-$tag-${big_mb}MB-array.json"
if [[ ! -s $big ]]; then
    log "writing $big: one JSON array of the corpus' envelopes"
    python3 - "$corpus" "$big.tmp" $((big_mb * 1000000)) <<'EOF'
import sys
src, dst, target = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open(dst, "wb") as out:
    out.write(b"[")
    written, first = 1, True
    while written < target:
        with open(src, "rb") as f:
            for line in f:
                line = line.rstrip(b"\n")
                if not line:
                    continue
                out.write(line if first else b",\n" + line)
                written += len(line) + (0 if first else 2)
                first = False
                if written >= target:
                    break
    out.write(b"]\n")
EOF
    mv "$big.tmp" "$big"
fi

# ---- measurements -------------------------------------------------------------
declare -A mbps
collect() { # reads RESULT lines from stdin into mbps[]
    local tag key value
    while IFS=$'\t' read -r tag key value; do
        [[ $tag == RESULT ]] && mbps[$key]=$value
    done
}

log "bench_sanitize (best of $passes)"
bench_out=$("$bench" --passes "$passes" "$corpus")
echo "$bench_out" | grep -v '^RESULT' >&2
collect <<<"$bench_out"

log "Python sanitize_for_json (best of 3)"
py_out=$(python3 "$here/sanitize_for_json.py" --passes 3 "$corpus")
collect <<<"$py_out"

log "nanguard sanitize < corpus > /dev/null (best of 3)"
size=$(stat -c %s "$corpus")
best=
for _ in 1 2 3; do
    t0=$(date +%s%N)
    "$nanguard" sanitize <"$corpus" >/dev/null
    t1=$(date +%s%N)
    dt=$((t1 - t0))
    if [[ -z $best ]] || ((dt < best)); then best=$dt; fi
done
mbps[process]=$(awk -v b="$size" -v ns="$best" 'BEGIN { printf "%.1f", b / 1e6 / (ns / 1e9) }')

log "peak memory of nanguard sanitize on $(($(stat -c %s "$big") / 1000000)) MB"
peak_kb() { # peak RSS in KiB of "$@" with stdout to /dev/null
    if [[ -x /usr/bin/time ]]; then
        local t
        t=$(mktemp)
        /usr/bin/time -v "$@" >/dev/null 2>"$t" || {
            cat "$t" >&2
            rm -f "$t"
            return 1
        }
        awk -F': ' '/Maximum resident set size/ { print $2 }' "$t"
        rm -f "$t"
    else
        # No GNU time: poll VmHWM until the process ends.
        "$@" >/dev/null &
        local pid=$! hwm=0 v
        while v=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status" 2>/dev/null); do
            [[ -n $v ]] && hwm=$v
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.05
        done
        wait "$pid" || return 1
        echo "$hwm"
    fi
}
small=$(mktemp)
head -n 1 "$corpus" >"$small"
rss_big=$(peak_kb "$nanguard" sanitize "$big")
rss_small=$(peak_kb "$nanguard" sanitize "$small")
rm -f "$small"

# ---- table --------------------------------------------------------------------
lib=${mbps[lib_lines]}
row() { # key, description
    local v=${mbps[$1]:-}
    if [[ -z $v ]]; then
        printf '| %s | n/a | n/a |\n' "$2"
        return
    fi
    printf '| %s | %s | %s |\n' "$2" "$v" \
        "$(awk -v a="$v" -v b="$lib" 'BEGIN { printf "%.2f", a / b }')"
}
lines=$(grep -c '' "$corpus")
echo
echo "sanitize benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), nproc $(nproc)," \
    "$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)," \
    "$(cc --version | head -n 1), -O2"
echo
echo "corpus: $(basename "$corpus"): $((size / 1000000)) MB, $lines lines" \
    "(~$((size / lines / 1000)) KB envelopes, 1% non-finite floats)," \
    "generated by $(basename "$gen"); MB = 10^6 bytes of input; yajl reads" \
    "the sanitized corpus (it cannot lex NaN), which differs from the" \
    "input only at the repaired tokens"
echo
echo "| what | MB/s | ratio to library |"
echo "|---|---:|---:|"
row lib_lines "nanguard library, per message (reset + feed whole line + finish, output in the handle)"
row lib_chunks "nanguard library, 64 KiB chunks over the file, multiple_values"
row lib_lines_clean "nanguard library, per message, on the sanitized corpus"
row yajl_bare "yajl bare validation (NULL callbacks), per message"
row yajl_stream "yajl bare, allow_multiple_values, whole file in one call"
row yajl_nop "yajl with no-op callbacks, per message"
row process "\`nanguard sanitize < corpus > /dev/null\` (process, best of 3)"
row python "Python json.loads + sanitize_for_json + json.dumps, per line"
echo
awk -v a="$lib" -v b="${mbps[yajl_bare]}" 'BEGIN {
    printf "library / yajl bare: %.2fx (aim >= 0.75x)\n", a / b }'
echo
echo "memory: \`nanguard sanitize\` on one $(($(stat -c %s "$big") / 1000000)) MB" \
    "JSON array: maximum resident set size $((rss_big / 1024)) MiB" \
    "($rss_big KiB; goal < 16 MB); on a single ~20 KB envelope:" \
    "$((rss_small / 1024)) MiB ($rss_small KiB)"

# ---- plot ---------------------------------------------------------------------
{
    printf 'label\tMB/s\n'
    printf 'nanguard library\t%s\n' "${mbps[lib_lines]}"
    printf 'nanguard sanitize (process)\t%s\n' "${mbps[process]}"
    printf "yajl bare (json_verify's parse)\t%s\n" "${mbps[yajl_bare]}"
    printf "seed's Python\t%s\n" "${mbps[python]}"
} >"$out/sanitize.tsv"
bench_plot "$out/sanitize.tsv" "$out/sanitize.png" \
    "Sanitizer throughput, $((size / 1000000)) MB of ~20 KB checkpoints ($(date -u +%Y-%m-%d), $(nproc) shared cores)" \
    "MB/s of input"
