#!/usr/bin/env bash
# Benchmark: one `nanguard worker` from Kafka into PostgreSQL, against
# `nanguard load --jobs 1` of the same data from a file (the same sink on
# one connection, without Kafka), kcat consuming the topic to /dev/null (the broker's own rate), and
# two workers in one group. One run, one corpus (≈100 MB of ≈20 KB
# envelopes, 1% non-finite floats), the same servers, started here on
# loopback. Prints a markdown table with ratios.
#
# Usage: tests/bench/bench_worker.sh [OUTDIR]
# Environment: BENCH_BYTES (default 100000000), BENCH_PARTITIONS (4),
# BENCH_WORKER_ARGS (more `nanguard worker` arguments, e.g. "-X
# queued.max.messages.kbytes=16384", to try settings), BENCH_ROUNDS (5:
# load, one worker and two workers each run that many times, in turn),
# BENCH_PG_PORT (54391), BENCH_KAFKA_PORT (29391, and the next one).
# Also writes OUTDIR/worker.tsv and the plot of it, OUTDIR/worker.png.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=bench_lib.sh
. "$root/tests/bench/bench_lib.sh"
out=${1:-$root/build/bench-worker}
bytes=${BENCH_BYTES:-100000000}
parts=${BENCH_PARTITIONS:-4}
mkdir -p "$out"
chmod 755 "$out"
out=$(cd "$out" && pwd)

bin=$(NANGUARD_BUILD_DIR=$out/build bash "$root/deploy/build.sh")
corpus=$(bench_corpus "$out" "$bytes" 11 0.01)
lines=$(wc -l <"$corpus")
size=$(stat -c %s "$corpus")

pids=()
bench_on_exit 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done'
bench_servers "$out" "${BENCH_PG_PORT:-54391}" "${BENCH_KAFKA_PORT:-29391}"
topic=bench
bash "$root/deploy/local/kafka.sh" topics "$out/kafka" "$topic:$parts" \
    "$topic.dlq:1" "$topic.notifications:1" 2>/dev/null
# Key = thread id, as the design asks.
python3 "$root/tests/bench/envelope.py" raw "$corpus" >"$out/produce.tsv" 2>/dev/null
bench_produce "$topic" "$out/produce.tsv"
echo "bench: $lines messages, $size bytes on $parts partitions" >&2

now() { bench_now; }
rate() { python3 -c "import sys; print('%.1f' % (float(sys.argv[1]) / float(sys.argv[2])))" "$@"; }

run_workers() { # table count
    local table=$1 n=$2
    # A new group each run: it starts from the beginning of the topic.
    local group=g-$table-$RANDOM$RANDOM
    bench_fresh "$table"
    pids=()
    for i in $(seq 1 "$n"); do
        "$bin" worker --brokers "$brokers" --topic "$topic" \
            --group "$group" --pg "$pg" --table "$table" \
            --stats-interval-ms 50 ${BENCH_WORKER_ARGS:-} \
            2>"$out/$table-$i.log" &
        pids+=($!)
    done
    bench_watch "$table" "$lines" "$(now)" >/dev/null
    sleep 0.2
    for p in "${pids[@]}"; do kill -TERM "$p"; wait "$p" || true; done
    pids=()
    # Throughput, not start-up (joining the group takes seconds, and a new
    # group waits librdkafka's fixed 100 ms before it looks up where to
    # start): from the workers' own log lines, the rate between the moment
    # every worker has received its first message ("partition started")
    # and the moment the last row is stored, as the time the whole corpus
    # takes at that rate.
    python3 - "$lines" "$out/$table"-*.log <<'PY'
import datetime, json, sys
lines = int(sys.argv[1])
def ts(s):
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()
events, assigned = [], []
for i, path in enumerate(sys.argv[2:]):
    first = None
    for line in open(path):
        if not line.startswith("{"):
            continue
        e = json.loads(line)
        if e["msg"] == "partition started" and first is None:
            first = ts(e["ts"])
        if e["msg"] in ("progress", "stopped"):
            events.append((ts(e["ts"]), i, e["stored"]))
    assigned.append(first)
# (a worker that joined after the work was done has no first message)
start = max(t for t in assigned if t is not None)
latest, at_start, done = {}, None, None
for t, i, stored in sorted(events):
    if t >= start and at_start is None:
        at_start = sum(latest.values())
    latest[i] = stored
    if sum(latest.values()) >= lines:
        done = t
        break
at_start = at_start or 0
print("%.2f" % ((done - start) * lines / max(1, lines - at_start)))
PY
}

# The table as nanguard creates it (lz4 where available), as a template.
bench_template "$bin"

t0=$(now)
# fetch.wait.max.ms: kcat -e stops at the end of the partitions, which it
# learns from a fetch that comes back empty; by default the broker holds
# that fetch 500 ms, a third of the whole run.
kcat -C -b "$brokers" -t "$topic" -e -q -o beginning -f '%s\n' \
    -X fetch.wait.max.ms=10 >/dev/null
kcat_s=$(python3 -c "import sys, time; print('%.2f' % (time.time() - float(sys.argv[1])))" "$t0")

run_load() { # table
    bench_fresh "$1"
    "$bin" load --jobs 1 --pg "$pg" --table "$1" "$corpus" 2>"$out/$1.log"
    # load's own time, from its start (connecting included) to the last
    # row: the process' start-up is not counted, as the workers' is not.
    python3 -c "
import json, sys
for line in open(sys.argv[1]):
    if line.startswith('{') and '\"exit_status\"' in line:
        print('%.2f' % json.loads(line)['seconds'])
" "$out/$1.log"
}

# Rounds of load, one worker and two workers in turn; each row of the
# table is the median of its rounds. The ratio of one worker to load is
# also given round by round (each round a pair run back to back) with the
# median of those pairs: one round can be off by 10% or more on a shared
# machine, and a pair shares its moment's noise.
rounds=${BENCH_ROUNDS:-5}
load_all=() one_all=() two_all=()
for r in $(seq 1 "$rounds"); do
    # Every run starts from the same state (bench_fresh: the last run's
    # table dropped and its pages written out), so that no run pays for
    # another's.
    load_all+=("$(run_load t_load)")
    one_all+=("$(run_workers t_one 1)")
    two_all+=("$(run_workers t_two 2)")
    echo "bench: round $r: load ${load_all[-1]} s, one worker ${one_all[-1]} s," \
        "two workers ${two_all[-1]} s" >&2
done
median() { bench_median "$@"; }
load_s=$(median "${load_all[@]}")
one_s=$(median "${one_all[@]}")
two_s=$(median "${two_all[@]}")
per_round=$(for i in "${!load_all[@]}"; do
    python3 -c "import sys; print('%.2f' % (float(sys.argv[1]) / float(sys.argv[2])))" \
        "${load_all[$i]}" "${one_all[$i]}"
done | paste -sd ' ')

mb=$(python3 -c "print($size / 1e6)")
printf '\n%s, %s cores, %s messages, %.1f MB, %s partitions, median of %s rounds\n\n' \
    "$(date -u +%Y-%m-%d)" "$(nproc)" "$lines" "$mb" "$parts" "$rounds"
printf '| what | seconds | messages/s | MB/s | ratio to load |\n|---|---|---|---|---|\n'
printf 'label\tmessages/s\n' >"$out/worker.tsv"
for row in "kcat -C to /dev/null (broker)|kcat -C (broker)|$kcat_s" \
    "nanguard load --jobs 1 (file -> PostgreSQL)|load --jobs 1|$load_s" \
    "nanguard worker x1 (Kafka -> PostgreSQL)|worker x1|$one_s" \
    "nanguard worker x2, one group|worker x2|$two_s"; do
    IFS='|' read -r name short s <<<"$row"
    printf '| %s | %s | %s | %s | %s |\n' "$name" "$s" \
        "$(rate "$lines" "$s")" "$(rate "$mb" "$s")" \
        "$(python3 -c "print('%.2f' % ($load_s / $s))")"
    printf '%s\t%s\n' "$short" "$(rate "$lines" "$s")" >>"$out/worker.tsv"
done
bench_plot "$out/worker.tsv" "$out/worker.png" \
    "nanguard worker against load, $lines checkpoints of ~20 KB ($(date -u +%Y-%m-%d), $(nproc) shared cores, median of $rounds rounds)" \
    "messages per second"
printf '\none worker / load, round by round: %s; median %s\n' "$per_round" \
    "$(median $per_round)"
