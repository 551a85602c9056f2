#!/usr/bin/env bash
# Benchmark: nanguard against its peer, Kafka Connect (standalone) with the
# Debezium JDBC sink, writing the same checkpoints from the same broker into
# the same PostgreSQL table (upsert on the primary key), side by side; and
# what each does with a checkpoint holding NaN. Opt-in, not in CI.
#
# Usage: tests/bench/bench_peer.sh [OUTDIR]       (default build/bench-peer)
#
# - The peer: org.apache.kafka:connect-runtime at the broker's version
#   (deploy/local/kafka.sh's KAFKA_VERSION) and io.debezium:
#   debezium-connector-jdbc 3.3.1.Final with the PostgreSQL JDBC driver as
#   its plugin, fetched once by Maven (tests/bench/peer/pom.xml) into
#   NANGUARD_CACHE (~/.cache/nanguard)/connect-VERSION.
# - The messages: one corpus (tests/corpus/gen_checkpoints.py, ~20 KB
#   envelopes, no non-finite floats, so that the peer can store every one),
#   on two topics of BENCH_PARTITIONS partitions with the thread id as key:
#   as they are for nanguard, in JsonConverter's schema envelope for the
#   sink (tests/bench/envelope.py; its byte overhead is printed).
# - The table: nanguard's (--create-table: checkpoint and metadata jsonb,
#   lz4), a fresh copy per run after a CHECKPOINT.
# - Upsert: the sink's insert.mode=upsert (INSERT ... ON CONFLICT DO
#   UPDATE), and nanguard's --on-conflict update (not its default, nothing).
# - Rounds: `nanguard load --jobs 1`, one `nanguard worker` and one Connect
#   worker with one task, in turn (the order rotates each round), each
#   timed by tests/bench/watch_rows.py from PostgreSQL's side: from the
#   process' launch to the last row, and the steady rate after the first
#   commit. Medians of the rounds, and the worker/peer ratio round by round.
# - Peak memory: VmHWM of the worker and of the Connect JVM just before
#   they are stopped; GNU time's maximum RSS for load.
# - NaN: one partition, 100 clean checkpoints, one with NaN, 100 clean;
#   the sink with errors.tolerance=none, then =all with a dead-letter
#   topic, then nanguard's worker; rows stored, dead-letter records, state.
# Writes OUTDIR/peer.tsv, peer.png, peer-memory.tsv, peer-memory.png.
#
# Environment: BENCH_BYTES (default 100000000), BENCH_PARTITIONS (4),
# BENCH_ROUNDS (5), BENCH_PG_PORT (54392), BENCH_KAFKA_PORT (29392, and the
# next one), BENCH_CONNECT_HEAP ("-Xms256m -Xmx1g"), KAFKA_VERSION (4.3.1).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=bench_lib.sh
. "$root/tests/bench/bench_lib.sh"
out=${1:-$root/build/bench-peer}
bytes=${BENCH_BYTES:-100000000}
parts=${BENCH_PARTITIONS:-4}
rounds=${BENCH_ROUNDS:-5}
kafka_version=${KAFKA_VERSION:-4.3.1}
debezium_version=3.3.1.Final
read -ra heap <<<"${BENCH_CONNECT_HEAP:--Xms256m -Xmx1g}"
mkdir -p "$out"
chmod 755 "$out"
out=$(cd "$out" && pwd)
log() { echo "bench_peer: $*" >&2; }

# ---- the peer's jars ----------------------------------------------------------
cache=${NANGUARD_CACHE:-$HOME/.cache/nanguard}/connect-$kafka_version
plugin_dir=$cache/plugins/debezium-connector-jdbc-$debezium_version
fetch_peer() { # PROFILE DIR
    [[ -f $2/.complete ]] && return
    log "fetching $1 jars into $2 (Maven)"
    rm -rf "$2.tmp"
    local o
    if ! o=$(mvn -q -B -f "$root/tests/bench/peer/pom.xml" -P "$1" \
        dependency:copy-dependencies -Dkafka.version="$kafka_version" \
        -Ddebezium.version="$debezium_version" -Dlib.dir="$2.tmp" 2>&1); then
        echo "$o" >&2
        log "maven fetch failed"
        exit 1
    fi
    rm -rf "$2" && mv "$2.tmp" "$2" && touch "$2/.complete"
}
bash "$root/deploy/install-deps.sh"
fetch_peer runtime "$cache/lib"
fetch_peer plugin "$plugin_dir"
if ls "$plugin_dir" | grep -q '^jackson-'; then
    log "$plugin_dir carries Jackson jars (the task would die: BlackbirdModule not a subtype)"
    exit 1
fi

bin=$(NANGUARD_BUILD_DIR=$out/build bash "$root/deploy/build.sh")
bench_servers "$out" "${BENCH_PG_PORT:-54392}" "${BENCH_KAFKA_PORT:-29392}"

# ---- the messages -------------------------------------------------------------
corpus=$(bench_corpus "$out" "$bytes" 11 0)
lines=$(grep -c . "$corpus")
size=$(stat -c %s "$corpus")
topic=bench topic_c=bench-connect
bash "$root/deploy/local/kafka.sh" topics "$out/kafka" "$topic:$parts" \
    "$topic_c:$parts" "$topic.dlq:1" "$topic.notifications:1" 2>/dev/null
envelope=$root/tests/bench/envelope.py
raw_bytes=$(python3 "$envelope" raw "$corpus" 2>&1 >"$out/raw.tsv" | awk '{print $2}')
conn_bytes=$(python3 "$envelope" connect "$corpus" 2>&1 >"$out/connect.tsv" | awk '{print $2}')
bench_produce "$topic" "$out/raw.tsv"
bench_produce "$topic_c" "$out/connect.tsv"
overhead=$(awk -v a="$conn_bytes" -v b="$raw_bytes" 'BEGIN { printf "%.1f", (a / b - 1) * 100 }')
log "$lines messages on $parts partitions: $raw_bytes bytes as they are," \
    "$conn_bytes in the schema envelope (+$overhead%)"
bench_template "$bin"

# ---- the peer's settings --------------------------------------------------------
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
pg_host_port=$(sed -n 's/.*host=\([^ ]*\) port=\([0-9]*\).*/\1:\2/p' <<<"$pg")
cat >"$out/log4j2.xml" <<XML
<Configuration status="warn">
  <Appenders>
    <File name="file" fileName="\${sys:connect.log.file}" append="false">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </File>
  </Appenders>
  <Loggers><Root level="info"><AppenderRef ref="file"/></Root></Loggers>
</Configuration>
XML
# connect_worker_props REST_PORT: the worker's settings. Batches: the
# consumer hands the task up to 1000 records per poll, fetching up to 8 MB
# per partition (nanguard's max.partition.fetch.bytes).
connect_worker_props() {
    cat <<PROPS
bootstrap.servers=$brokers
key.converter=org.apache.kafka.connect.storage.StringConverter
value.converter=org.apache.kafka.connect.json.JsonConverter
value.converter.schemas.enable=true
offset.storage.file.filename=$out/connect.offsets
plugin.path=$cache/plugins
plugin.discovery=service_load
listeners=http://127.0.0.1:$1
consumer.max.poll.records=1000
consumer.max.partition.fetch.bytes=8388608
PROPS
}
# connect_sink_props NAME TOPIC TABLE [MORE...]: the Debezium JDBC sink,
# one task, upsert on the primary key taken from the value, into an
# existing table (no schema evolution), batch.size 1000.
connect_sink_props() {
    local name=$1 t=$2 table=$3
    shift 3
    cat <<PROPS
name=$name
connector.class=io.debezium.connector.jdbc.JdbcSinkConnector
tasks.max=1
topics=$t
connection.url=jdbc:postgresql://$pg_host_port/nanguard
connection.username=nanguard
connection.password=nanguard
insert.mode=upsert
primary.key.mode=record_value
primary.key.fields=thread_id,checkpoint_ns,checkpoint_id
schema.evolution=none
collection.name.format=$table
batch.size=1000
PROPS
    printf '%s\n' "$@"
}
connect_pid=
stop_connect() {
    [[ -n $connect_pid ]] || return 0
    kill -TERM "$connect_pid" 2>/dev/null || true
    local i
    for ((i = 0; i < 300; i++)); do
        kill -0 "$connect_pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$connect_pid" 2>/dev/null || true
    wait "$connect_pid" 2>/dev/null || true
    connect_pid=
}
bench_on_exit stop_connect
start_connect() { # TAG SINK-PROPS...: sets connect_pid and rest
    local tag=$1
    shift
    rest=$(free_port)
    connect_worker_props "$rest" >"$out/$tag-worker.properties"
    connect_sink_props "$@" >"$out/$tag-sink.properties"
    chmod 600 "$out/$tag-sink.properties"
    java "${heap[@]}" -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$out/log4j2.xml" -Dconnect.log.file="$out/$tag.log" \
        -cp "$cache/lib/*" org.apache.kafka.connect.cli.ConnectStandalone \
        "$out/$tag-worker.properties" "$out/$tag-sink.properties" \
        >"$out/$tag.out" 2>&1 &
    connect_pid=$!
}

watch() { bench_watch "$@"; }

# ---- the rounds -----------------------------------------------------------------
declare -A from steady mem
add() { from[$1]+="${2% *} " steady[$1]+="${2#* } " mem[$1]+="$3 "; }

run_load() { # ROUND
    local t0 w
    bench_fresh t_load
    t0=$(bench_now)
    watch t_load "$lines" "$t0" >"$out/watch" &
    w=$!
    /usr/bin/time -f %M -o "$out/load.rss" "$bin" load --jobs 1 --on-conflict update --pg "$pg" \
        --table t_load "$corpus" 2>"$out/load-$1.log"
    wait "$w"
    add load "$(cat "$out/watch")" "$(($(tail -n 1 "$out/load.rss") / 1024))"
}

run_worker() { # ROUND
    local t0 p
    bench_fresh t_worker
    t0=$(bench_now)
    # A new group each run: it starts from the beginning of the topic.
    "$bin" worker --brokers "$brokers" --topic "$topic" --group "g-$1-$RANDOM" \
        --on-conflict update --pg "$pg" --table t_worker 2>"$out/worker-$1.log" &
    p=$!
    watch t_worker "$lines" "$t0" >"$out/watch"
    sleep 0.2
    local rss
    rss=$(bench_hwm_mib "$p")
    kill -TERM "$p"
    wait "$p" || true
    add worker "$(cat "$out/watch")" "$rss"
}

run_peer() { # ROUND
    local t0
    bench_fresh t_peer
    t0=$(bench_now)
    # A new connector name each run: a new consumer group, from the start.
    start_connect "peer-$1" "peer-$1-$RANDOM" "$topic_c" t_peer
    watch t_peer "$lines" "$t0" >"$out/watch"
    sleep 0.2
    local rss
    rss=$(bench_hwm_mib "$connect_pid")
    stop_connect
    add peer "$(cat "$out/watch")" "$rss"
}

# A warm-up of each, not counted: the first consumer group creates the
# broker's __consumer_offsets topic (seconds), and the page cache fills.
log "warm-up"
for w in load worker peer; do "run_$w" 0; done
unset from steady mem
declare -A from steady mem
order=(load worker peer)
for r in $(seq 1 "$rounds"); do
    for w in "${order[@]}"; do "run_$w" "$r"; done
    log "round $r (${order[*]}): from start / steady seconds:" \
        "load $(awk '{print $NF}' <<<"${from[load]}")/$(awk '{print $NF}' <<<"${steady[load]}")," \
        "worker $(awk '{print $NF}' <<<"${from[worker]}")/$(awk '{print $NF}' <<<"${steady[worker]}")," \
        "peer $(awk '{print $NF}' <<<"${from[peer]}")/$(awk '{print $NF}' <<<"${steady[peer]}")"
    order=("${order[@]:1}" "${order[0]}")
done

# ---- the side-by-side table -------------------------------------------------------
med() { bench_median $1; }
rps() { [[ $1 == - ]] && echo - || awk -v n="$lines" -v s="$1" 'BEGIN { printf "%.0f", n / s }'; }
mbs() { [[ $1 == - ]] && echo - || awk -v b="$size" -v s="$1" 'BEGIN { printf "%.1f", b / 1e6 / s }'; }
pairs() { # A B: A/B per round
    local a=(${from[$1]}) b=(${from[$2]}) i
    [[ $3 == steady ]] && a=(${steady[$1]}) b=(${steady[$2]})
    for i in "${!a[@]}"; do
        if [[ ${a[$i]} == - || ${b[$i]} == - ]]; then echo -; else bench_div "${b[$i]}" "${a[$i]}"; fi
    done | paste -sd ' '
}
java_version=$(java -version 2>&1 | head -n 1)
printf '\n%s, %s cores (%s), %s messages, %.1f MB (%s in the schema envelope: +%s%%), %s partitions, median of %s rounds\n\n' \
    "$(date -u '+%Y-%m-%d %H:%M UTC')" "$(nproc)" \
    "$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)" "$lines" \
    "$(awk -v b="$size" 'BEGIN { print b / 1e6 }')" \
    "$(awk -v b="$conn_bytes" 'BEGIN { printf "%.1f MB", b / 1e6 }')" "$overhead" \
    "$parts" "$rounds"
printf '| what | from start s | rows/s from start | steady s | rows/s steady | MB/s steady | peak RSS |\n'
printf '|---|---:|---:|---:|---:|---:|---:|\n'
{
    printf 'label\tsteady rows/s\trows/s from start\n' >"$out/peer.tsv"
    printf 'label\tpeak RSS (MiB)\n' >"$out/peer-memory.tsv"
}
for row in "load|nanguard load --jobs 1 (file)|nanguard load" \
    "worker|nanguard worker x1|nanguard worker" \
    "peer|Kafka Connect $kafka_version + Debezium JDBC sink $debezium_version, 1 task|Kafka Connect + Debezium"; do
    IFS='|' read -r k name short <<<"$row"
    f=$(med "${from[$k]}") s=$(med "${steady[$k]}") m=$(med "${mem[$k]}")
    printf '| %s | %s | %s | %s | %s | %s | %s MiB |\n' "$name" "$f" "$(rps "$f")" \
        "$s" "$(rps "$s")" "$(mbs "$s")" "$m"
    printf '%s\t%s\t%s\n' "$short" "$(rps "$s")" "$(rps "$f")" >>"$out/peer.tsv"
    printf '%s\t%s\n' "$short" "$m" >>"$out/peer-memory.tsv"
done
wp_steady=$(pairs worker peer steady) wp_from=$(pairs worker peer from)
printf '\nworker / peer, round by round: steady %s (median %s); from start %s (median %s)\n' \
    "$wp_steady" "$(med "$wp_steady")" "$wp_from" "$(med "$wp_from")"
printf 'worker / load, round by round: steady %s (median %s)\n' \
    "$(pairs worker load steady)" "$(med "$(pairs worker load steady)")"
printf 'peak RSS, round by round (MiB): load %s; worker %s; peer %s\n' \
    "${mem[load]}" "${mem[worker]}" "${mem[peer]}"
printf 'batches: nanguard with its defaults (500 rows or 8 MiB, i.e. ~420 of these rows, or 200 ms);\n'
printf 'the sink with consumer.max.poll.records=1000, consumer.max.partition.fetch.bytes=8388608, batch.size=1000 (Debezium: 500 and 500 by default), tasks.max=1;\n'
printf '%s, %s\n' "$java_version" "${heap[*]}"
bench_plot "$out/peer.tsv" "$out/peer.png" \
    "Kafka to PostgreSQL, $lines checkpoints of ~20 KB ($(date -u +%Y-%m-%d), $(nproc) shared cores, median of $rounds rounds)" \
    "rows per second"
bench_plot "$out/peer-memory.tsv" "$out/peer-memory.png" \
    "Peak resident memory, the same runs" "MiB"

# ---- NaN ---------------------------------------------------------------------------
# One partition, so that the order is known: 100 clean checkpoints, one
# whose checkpoint holds NaN (as json.dumps writes it), 100 clean.
nan_corpus=$(bench_corpus "$out" 400000 5 0.05)
head -n 100 "$corpus" >"$out/nan.ndjson"
python3 -c '
import json, math, sys
def nan(v):
    if isinstance(v, float):
        return math.isnan(v)
    items = v.values() if isinstance(v, dict) else v if isinstance(v, list) else ()
    return any(nan(x) for x in items)
for line in open(sys.argv[1]):
    if nan(json.loads(line)["checkpoint"]):
        sys.stdout.write(line)
        break
' "$nan_corpus" >>"$out/nan.ndjson"
sed -n '101,200p' "$corpus" >>"$out/nan.ndjson"
nan_lines=$(grep -c . "$out/nan.ndjson")
bash "$root/deploy/local/kafka.sh" topics "$out/kafka" nan:1 nan-connect:1 \
    nan-connect.dlq:1 nan.dlq:1 nan.notifications:1 2>/dev/null
python3 "$envelope" raw "$out/nan.ndjson" 2>/dev/null >"$out/nan-raw.tsv"
python3 "$envelope" connect "$out/nan.ndjson" 2>/dev/null >"$out/nan-connect.tsv"
bench_produce nan "$out/nan-raw.tsv"
bench_produce nan-connect "$out/nan-connect.tsv"
count() { psql "$pg" -tAc "SELECT count(*) FROM $1"; }
topic_count() { kcat -C -b "$brokers" -t "$1" -e -q -o beginning -f 'x\n' -X fetch.wait.max.ms=10 | grep -c x || true; }
task_state() { python3 - "http://127.0.0.1:$rest/connectors/$1/status" <<'PY'
import json, sys, urllib.request
try:
    t = json.load(urllib.request.urlopen(sys.argv[1], timeout=5))["tasks"][0]
    print(t["state"] + "\t" + t.get("trace", "").split("\n")[0])
except Exception:
    print("-\t")
PY
}
# Runs until the task has FAILED or every row is stored (300 s at most:
# the sink retries a failed flush for about a minute first), then 3 s
# more; prints "rows|dead letters|state|seconds to that state|cause".
nan_peer() { # TAG MORE-SINK-PROPS...
    local tag=$1 name=nan-$1-$RANDOM st i t0 t
    shift
    bench_fresh t_nan
    t0=$(bench_now)
    start_connect "nan-$tag" "$name" nan-connect t_nan "$@"
    for ((i = 0; i < 600; i++)); do
        st=$(task_state "$name")
        [[ ${st%%$'\t'*} == FAILED || $(count t_nan) -ge $nan_lines ]] && break
        sleep 0.5
    done
    t=$(awk -v a="$(bench_now)" -v b="$t0" 'BEGIN { printf "%.0f", a - b }')
    sleep 3
    st=$(task_state "$name")
    # The root cause, as PostgreSQL gave it (the last one the log has).
    local cause
    cause=$(grep -A1 '^Caused by: org.postgresql' "$out/nan-$tag.log" | tail -n 2 |
        sed 's/^Caused by: //; s/^ *//' | paste -sd ' ')
    echo "$(count t_nan)|$(topic_count nan-connect.dlq)|${st%%$'\t'*}|$t|$cause"
    stop_connect
}
log "NaN: the sink with errors.tolerance=none"
none=$(nan_peer none errors.tolerance=none)
log "NaN: the sink with errors.tolerance=all and a dead-letter topic"
all=$(nan_peer all errors.tolerance=all errors.deadletterqueue.topic.name=nan-connect.dlq \
    errors.deadletterqueue.topic.replication.factor=1 \
    errors.deadletterqueue.context.headers.enable=true errors.log.enable=true)
log "NaN: nanguard worker"
bench_fresh t_nan
t0=$(bench_now)
"$bin" worker --brokers "$brokers" --topic nan --group "g-nan-$RANDOM" --pg "$pg" \
    --table t_nan 2>"$out/nan-worker.log" &
p=$!
t=$(watch t_nan "$nan_lines" "$t0" | awk '{printf "%.0f", $1}')
sleep 1
kill -TERM "$p"
wait "$p" || true
rewrites=$(grep '"msg":"stopped"' "$out/nan-worker.log" | grep -o '"rewrites":[0-9]*' | cut -d: -f2)
ng="$(count t_nan)|$(topic_count nan.dlq)|all stored; exit 0 after SIGTERM|$t|none: $rewrites non-finite values repaired to null"
printf '\nNaN: %s checkpoints on one partition, the 101st with NaN in its checkpoint\n\n' "$nan_lines"
printf '| writer | rows stored | dead-letter records | state after | seconds | cause |\n|---|---:|---:|---|---:|---|\n'
for row in "Debezium JDBC sink, errors.tolerance=none|$none" \
    "Debezium JDBC sink, errors.tolerance=all, errors.deadletterqueue.topic.name=nan-connect.dlq|$all" \
    "nanguard worker (defaults)|$ng"; do
    IFS='|' read -r name rows dlq st secs cause <<<"$row"
    printf '| %s | %s of %s | %s | %s | %s | %s |\n' "$name" "$rows" "$nan_lines" "$dlq" "$st" \
        "$secs" "$(cut -c1-200 <<<"$cause" | sed 's/|/\\|/g')"
done
