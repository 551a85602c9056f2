# bench_lib.sh - shell functions the benchmarks share (sourced by
# bench_worker.sh, bench_peer.sh, run_sanitize.sh and ratio_sanitize.sh;
# not a program of its own).
#
#   bench_build DIR TARGET...              a Release (-O2) tree in DIR with
#                                          the tests' targets, TARGETs built
#   bench_servers OUT PG_PORT KAFKA_PORT   start PostgreSQL and the broker
#                                          in OUT/pg and OUT/kafka (a fresh
#                                          broker), set $pg and $brokers,
#                                          stop both at exit
#   bench_on_exit CMD                      run CMD at exit too (before the
#                                          servers stop)
#   bench_corpus OUT BYTES SEED NAN_RATE   generate (once) and print the path
#                                          of a corpus of ~20 KB envelopes (its
#                                          name holds the generator's hash, so
#                                          a changed generator makes a new one)
#   bench_produce TOPIC FILE               kcat -P of KEY<TAB>VALUE lines
#   bench_template BIN                     t_template: the table as nanguard
#                                          creates it (lz4 where available)
#   bench_settle TABLE                     drop TABLE, CHECKPOINT, rest 1 s
#   bench_fresh TABLE                      settle, then a copy of t_template
#   bench_watch TABLE ROWS START           wait until TABLE holds ROWS rows;
#                                          print "from_start steady" seconds
#                                          (tests/bench/watch_rows.py)
#   bench_now, bench_median V..., bench_div A B, bench_hwm_mib PID
#   bench_plot TSV PNG TITLE YLABEL        a bar chart of a TSV (header line:
#                                          label, then one column per series)
# Needs: root set to the repository.

bench_now() { date +%s.%N; }

bench_watch() { python3 "$root/tests/bench/watch_rows.py" "$pg" "$@"; }

bench_median() {
    printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {
        print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# A / B with two decimals.
bench_div() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f\n", a / b }'; }

# Peak resident memory (VmHWM) of a running process, in MiB.
bench_hwm_mib() {
    awk '/^VmHWM:/ { printf "%.0f\n", $2 / 1024 }' "/proc/$1/status"
}

_bench_exit=()
bench_on_exit() { _bench_exit+=("$1"); }
_bench_cleanup() {
    local c
    for c in "${_bench_exit[@]}"; do eval "$c" || true; done
    bash "$root/deploy/local/kafka.sh" stop "$_bench_out/kafka" >/dev/null 2>&1 || true
    bash "$root/deploy/local/pg.sh" stop "$_bench_out/pg" >/dev/null 2>&1 || true
}

bench_servers() { # OUT PG_PORT KAFKA_PORT
    _bench_out=$1
    trap _bench_cleanup EXIT
    rm -rf "$1/kafka"
    pg=$(bash "$root/deploy/local/pg.sh" start "$1/pg" "$2")
    brokers=$(bash "$root/deploy/local/kafka.sh" start "$1/kafka" "$3")
}

bench_build() { # DIR TARGET...
    local dir=$1
    shift
    cmake -S "$root" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_C_FLAGS_RELEASE="-O2 -DNDEBUG" -DBUILD_TESTING=ON \
        -DNANGUARD_FUZZ=OFF -DNANGUARD_SANITIZERS= >/dev/null
    ninja -C "$dir" "$@" >/dev/null
}

bench_corpus() { # OUT BYTES SEED NAN_RATE
    local gen=$root/tests/corpus/gen_checkpoints.py
    local f=$1/corpus-$(sha1sum "$gen" | cut -c1-10)-$2-s$3-nan$4.ndjson
    if [[ ! -s $f ]]; then
        python3 "$gen" --total-bytes "$2" \
            --avg-bytes 20000 --nan-rate "$4" --seed "$3" --out "$f.tmp" 2>/dev/null
        mv "$f.tmp" "$f"
    fi
    echo "$f"
}

bench_produce() { # TOPIC FILE
    kcat -P -b "$brokers" -t "$1" -K $'\t' -l "$2" \
        -X queue.buffering.max.kbytes=1048576 -X message.max.bytes=50000000
}

bench_drop() {
    psql "$pg" -qc "SET client_min_messages TO warning" \
        -c "DROP TABLE IF EXISTS $1" >/dev/null
}

bench_template() { # BIN (the corpus is $corpus)
    bench_drop t_template
    head -n 1 "$corpus" |
        "$1" load --pg "$pg" --table t_template --create-table 2>/dev/null
    psql "$pg" -qc "TRUNCATE t_template" >/dev/null
}

# Every run starts from the same state: the last run's table dropped and
# its pages written out, so that no run pays for another's.
bench_settle() {
    bench_drop "$1"
    psql "$pg user=postgres" -qc "CHECKPOINT" >/dev/null
    sleep 1
}

bench_fresh() {
    bench_settle "$1"
    psql "$pg" -qc "CREATE TABLE $1 (LIKE t_template INCLUDING ALL)" >/dev/null
}

bench_plot() { # TSV PNG TITLE YLABEL
    local n w
    n=$(head -n 1 "$1" | awk -F'\t' '{print NF}')
    # wide enough for the labels: 7 px a character, 150 px a group at least
    w=$(awk -F'\t' 'NR > 1 && length($1) > m { m = length($1) }
        END { g = (7 * m > 150) ? 7 * m : 150; w = g * NR; print (w < 900) ? 900 : w }' "$1")
    # Bar j (2..n) of group i is centred at i + (j - 1 - n/2) / n (clustered,
    # gap 1: n - 1 bars and one bar's width of gap per group).
    gnuplot <<GP
set terminal pngcairo size $w,420 font "DejaVu Sans,10" noenhanced
set output "$2"
set datafile separator "\t"
set title "$3"
set ylabel "$4"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set yrange [0:*]
set offsets 0, 0, graph 0.08, 0
set grid ytics
set key top right autotitle columnheader
set xtics norotate
plot for [i=2:$n] "$1" using i:xtic(1), \
     for [i=2:$n] "$1" using (\$0 + (i - 1 - $n / 2.0) / $n):i:(sprintf("%g", column(i))) \
         with labels offset 0, 0.7 notitle
GP
}
