#!/usr/bin/env bash
# Benchmark: one `nanguard worker` from Kafka into PostgreSQL, against
# `nanguard load --jobs 1` of the same data from a file (the same sink on
# one connection, without Kafka), kcat consuming the topic to /dev/null (the broker's own rate), and
# two workers in one group. One run, one corpus (≈100 MB of ≈20 KB
# envelopes, 1% non-finite floats), the same servers, started here on
# loopback. Prints a markdown table with ratios.
#
# Usage: tests/bench/bench_worker.sh [OUTDIR]
# Environment: BENCH_BYTES (default 100000000), BENCH_PARTITIONS (4).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=${1:-$root/build/bench-worker}
bytes=${BENCH_BYTES:-100000000}
parts=${BENCH_PARTITIONS:-4}
pg_port=54391
kafka_port=29391
mkdir -p "$out"
chmod 755 "$out"
out=$(cd "$out" && pwd)

bin=$(NANGUARD_BUILD_DIR=$out/build bash "$root/deploy/build.sh")
corpus=$out/corpus-$bytes.ndjson
if [[ ! -s $corpus ]]; then
    python3 "$root/tests/corpus/gen_checkpoints.py" --total-bytes "$bytes" \
        --avg-bytes 20000 --nan-rate 0.01 --seed 11 --out "$corpus"
fi
lines=$(wc -l <"$corpus")
size=$(stat -c %s "$corpus")

pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    bash "$root/deploy/local/kafka.sh" stop "$out/kafka" >/dev/null 2>&1 || true
    bash "$root/deploy/local/pg.sh" stop "$out/pg" >/dev/null 2>&1 || true
}
trap cleanup EXIT
rm -rf "$out/kafka"
pg=$(bash "$root/deploy/local/pg.sh" start "$out/pg" "$pg_port")
brokers=$(bash "$root/deploy/local/kafka.sh" start "$out/kafka" "$kafka_port")
topic=bench
bash "$root/deploy/local/kafka.sh" topics "$out/kafka" "$topic:$parts" \
    "$topic.dlq:1" "$topic.notifications:1" 2>/dev/null
# Key = thread id, as the design asks.
python3 -c '
import json, sys
for line in open(sys.argv[1]):
    line = line.rstrip("\n")
    sys.stdout.write(json.loads(line)["thread_id"] + "\t" + line + "\n")
' "$corpus" >"$out/produce.tsv"
kcat -P -b "$brokers" -t "$topic" -K $'\t' -l "$out/produce.tsv" \
    -X queue.buffering.max.kbytes=1048576 -X message.max.bytes=50000000
echo "bench: $lines messages, $size bytes on $parts partitions" >&2

now() { date +%s.%N; }
rate() { python3 -c "import sys; print('%.1f' % (float(sys.argv[1]) / float(sys.argv[2])))" "$@"; }

reset_table() {
    psql "$pg" -qc "DROP TABLE IF EXISTS $1" >/dev/null
}

# Waits until table $1 holds $lines rows; prints the seconds since $2.
wait_rows() {
    while :; do
        n=$(psql "$pg" -tAc "SELECT count(*) FROM $1")
        if ((n >= lines)); then
            break
        fi
        sleep 0.2
    done
    python3 -c "import sys, time; print('%.2f' % (time.time() - float(sys.argv[1])))" "$2"
}

run_workers() { # table count
    local table=$1 n=$2
    reset_table "$table"
    psql "$pg" -qc "CREATE TABLE $table (LIKE t_template INCLUDING ALL)" >/dev/null
    pids=()
    for i in $(seq 1 "$n"); do
        "$bin" worker --brokers "$brokers" --topic "$topic" \
            --group "g-$table" --pg "$pg" --table "$table" \
            --stats-interval-ms 50 2>"$out/$table-$i.log" &
        pids+=($!)
    done
    wait_rows "$table" "$(now)" >/dev/null
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
start = max(assigned)
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
reset_table t_template
head -n 1 "$corpus" |
    "$bin" load --pg "$pg" --table t_template --create-table 2>/dev/null
psql "$pg" -qc "TRUNCATE t_template" >/dev/null

t0=$(now)
kcat -C -b "$brokers" -t "$topic" -e -q -o beginning -f '%s\n' >/dev/null
kcat_s=$(python3 -c "import sys, time; print('%.2f' % (time.time() - float(sys.argv[1])))" "$t0")

reset_table t_load
psql "$pg" -qc "CREATE TABLE t_load (LIKE t_template INCLUDING ALL)" >/dev/null
"$bin" load --jobs 1 --pg "$pg" --table t_load "$corpus" 2>"$out/load.log"
# load's own time, from its start (connecting included) to the last row:
# the process' start-up is not counted, as the workers' is not.
load_s=$(python3 -c "
import json, sys
for line in open(sys.argv[1]):
    if line.startswith('{') and '\"exit_status\"' in line:
        print('%.2f' % json.loads(line)['seconds'])
" "$out/load.log")

one_s=$(run_workers t_one 1)
two_s=$(run_workers t_two 2)

mb=$(python3 -c "print($size / 1e6)")
printf '\n%s, %s cores, %s messages, %.1f MB, %s partitions\n\n' \
    "$(date -u +%Y-%m-%d)" "$(nproc)" "$lines" "$mb" "$parts"
printf '| what | seconds | messages/s | MB/s | ratio to load |\n|---|---|---|---|---|\n'
for row in "kcat -C to /dev/null (broker)|$kcat_s" \
    "nanguard load --jobs 1 (file -> PostgreSQL)|$load_s" \
    "nanguard worker x1 (Kafka -> PostgreSQL)|$one_s" \
    "nanguard worker x2, one group|$two_s"; do
    name=${row%|*}
    s=${row#*|}
    printf '| %s | %s | %s | %s | %s |\n' "$name" "$s" \
        "$(rate "$lines" "$s")" "$(rate "$mb" "$s")" \
        "$(python3 -c "print('%.2f' % ($load_s / $s))")"
done
