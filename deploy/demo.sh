#!/usr/bin/env bash
# The main job, end to end on this machine: installs what is needed, builds
# nanguard, repairs the json.dumps example with `nanguard sanitize` (output
# and report), then starts a private PostgreSQL and a real Kafka broker on loopback,
# creates the topics, produces example checkpoints (the json.dumps NaN case
# among them, plus a malformed message, a bad envelope and a row PostgreSQL
# refuses), runs two workers in one consumer group, and prints what
# happened: rows stored, values repaired, dead-letter records with their
# reasons, notifications, the notification gateway (`nanguard notify`)
# streaming a dead-lettered thread's events with the banner page's URL, and
# ends with `nanguard dlq stats` and `nanguard dlq inspect` of the dead
# letters. Then it stops everything it started.
#
# Usage: deploy/demo.sh
# Environment: NANGUARD_DEMO_DIR (default build/demo), NANGUARD_DEMO_COUNT
# (generated checkpoints, default 500), NANGUARD_DEMO_PG_PORT (54330),
# NANGUARD_DEMO_KAFKA_PORT (19094), NANGUARD_DEMO_HOLD (seconds to keep
# everything running at the end, to open the banner page in a browser; 0).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=${NANGUARD_DEMO_DIR:-$root/build/demo}
count=${NANGUARD_DEMO_COUNT:-500}
pg_port=${NANGUARD_DEMO_PG_PORT:-54330}
kafka_port=${NANGUARD_DEMO_KAFKA_PORT:-19094}
topic=checkpoints
group=nanguard-demo
say() { printf '\n== %s\n' "$*"; }

bin=$(bash "$root/deploy/build.sh")
rm -rf "$dir"
mkdir -p "$dir"
chmod 755 "$dir"

workers=()
gateway=
cleanup() {
    for pid in "${workers[@]}"; do kill "$pid" 2>/dev/null || true; done
    if [[ -n $gateway ]]; then kill "$gateway" 2>/dev/null || true; fi
    bash "$root/deploy/local/kafka.sh" stop "$dir/kafka" >/dev/null 2>&1 || true
    bash "$root/deploy/local/pg.sh" stop "$dir/pg" >/dev/null 2>&1 || true
}
trap cleanup EXIT

say "the sanitizer alone: nanguard sanitize --report on the json.dumps example"
echo "input:"
cat "$root/deploy/examples/checkpoint.json"
echo "output:"
"$bin" sanitize --report "$dir/report.json" "$root/deploy/examples/checkpoint.json"
echo "report:"
cat "$dir/report.json"

say "starting PostgreSQL and Kafka on loopback"
pg=$(bash "$root/deploy/local/pg.sh" start "$dir/pg" "$pg_port")
brokers=$(bash "$root/deploy/local/kafka.sh" start "$dir/kafka" "$kafka_port")
bash "$root/deploy/local/kafka.sh" topics "$dir/kafka" "$topic:4" \
    "$topic.dlq:1" "$topic.notifications:1" 2>/dev/null
echo "PostgreSQL: $pg"
echo "Kafka:      $brokers"

say "producing $count generated checkpoints and 4 special ones"
python3 "$root/tests/corpus/gen_checkpoints.py" --count "$count" \
    --avg-bytes 6000 --nan-rate 0.01 --seed 7 --out "$dir/generated.ndjson" \
    2>/dev/null
python3 - "$root/deploy/examples/checkpoint.json" "$dir/generated.ndjson" \
    >"$dir/produce.tsv" <<'EOF'
import json, secrets, sys
def out(key, value):
    print(key + "\t" + value)
seed = open(sys.argv[1]).read().strip()
out(json.loads(seed)["thread_id"], seed)                       # NaN case
for line in open(sys.argv[2]):
    line = line.rstrip("\n")
    out(json.loads(line)["thread_id"], line)
out("thread-broken", '{"thread_id": "thread-broken", "checkpoint": {')  # malformed
out("thread-noid", '{"thread_id": "thread-noid", "checkpoint": {}}')   # no checkpoint_id
# A key PostgreSQL cannot index (btree rows are limited to 8191 bytes):
huge = "thread-" + secrets.token_hex(10000)
out("thread-huge", json.dumps({"thread_id": huge, "checkpoint_id": "c-1",
                               "checkpoint": {"v": 1}}))
EOF
expected=$(wc -l <"$dir/produce.tsv")
kcat -P -b "$brokers" -t "$topic" -K $'\t' -l "$dir/produce.tsv"
echo "$expected messages on topic $topic"

say "starting the notification gateway (nanguard notify)"
# Streams need a token: hex HMAC-SHA256(secret, thread_id), which the
# application's backend would mint.
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/notify.secret"
"$bin" notify --brokers "$brokers" --topic "$topic.notifications" \
    --http-listen 127.0.0.1:0 --token-secret-file "$dir/notify.secret" \
    --support-url "mailto:support@example.com" 2>"$dir/notify.log" &
gateway=$!
notify_port=
for _ in $(seq 1 50); do
    notify_port=$(grep -o '"msg":"serving /events[^}]*"port":[0-9]*' \
        "$dir/notify.log" | grep -o '[0-9]*$' || true)
    if [[ -n $notify_port ]]; then break; fi
    sleep 0.2
done
echo "gateway on 127.0.0.1:$notify_port"

say "running two workers in consumer group $group"
# Worker 1 also serves /metrics, /healthz and /readyz on a free port.
for i in 1 2; do
    http=()
    if ((i == 1)); then http=(--http-listen 127.0.0.1:0); fi
    "$bin" worker --brokers "$brokers" --topic "$topic" --group "$group" \
        --pg "$pg" --create-table --instance-id "demo-worker-$i" \
        --stats-interval-ms 2000 "${http[@]}" 2>"$dir/worker$i.log" &
    workers+=($!)
done

# Done when every message is a row or a dead-letter record.
for _ in $(seq 1 120); do
    rows=$(psql "$pg" -tAc "SELECT count(*) FROM checkpoints" 2>/dev/null ||
        echo 0)
    dlq=$(kcat -C -b "$brokers" -t "$topic.dlq" -e -q -f 'x\n' 2>/dev/null |
        wc -l)
    if ((rows + dlq >= expected)); then
        break
    fi
    sleep 1
done
port=$(grep -o '"msg":"serving /metrics[^}]*"port":[0-9]*' "$dir/worker1.log" |
    grep -o '[0-9]*$' || true)
if [[ -n $port ]]; then
    say "worker 1 over HTTP (127.0.0.1:$port): /readyz and /metrics"
    python3 - "$port" <<'EOF'
import sys
import urllib.error
import urllib.request

base = "http://127.0.0.1:%s" % sys.argv[1]
try:
    with urllib.request.urlopen(base + "/readyz", timeout=5) as r:
        print("/readyz", r.status, r.read().decode().strip())
except urllib.error.HTTPError as e:
    print("/readyz", e.code, e.read().decode().strip())
with urllib.request.urlopen(base + "/metrics", timeout=5) as r:
    for line in r.read().decode().splitlines():
        if not line.startswith("#") and not line.endswith(" 0"):
            print("  " + line)
EOF
fi
for pid in "${workers[@]}"; do kill -TERM "$pid"; done
for pid in "${workers[@]}"; do
    wait "$pid" || echo "worker $pid exited with $?"
done
workers=()

say "what the workers did (their last log line)"
for i in 1 2; do
    grep '"msg":"stopped"' "$dir/worker$i.log" || tail -3 "$dir/worker$i.log"
done

say "PostgreSQL: rows stored"
psql "$pg" -c "SELECT count(*) AS rows, count(DISTINCT thread_id) AS threads
               FROM checkpoints"
say "the json.dumps NaN case, as stored (NaN and Infinity became null)"
psql "$pg" -tAc "SELECT jsonb_pretty(checkpoint->'channel_values'->'data_store')
                 FROM checkpoints WHERE thread_id = 'thread-7f3a'"

say "dead-letter topic $topic.dlq: original bytes, reason in the headers"
kcat -C -b "$brokers" -t "$topic.dlq" -e -q \
    -f 'headers: %h\n  value: %s\n' 2>/dev/null | cut -c1-300

say "notification topic $topic.notifications (what the application sees)"
kcat -C -b "$brokers" -t "$topic.notifications" -e -q -f '%s\n' 2>/dev/null |
    cut -c1-400

if [[ -n $notify_port ]]; then
    say "the gateway: thread-broken's events as its browser gets them (SSE)"
    python3 - "$notify_port" "$dir/notify.secret" <<'EOF'
import hashlib, hmac, socket, sys, time
port, secret = int(sys.argv[1]), open(sys.argv[2]).readline().rstrip("\r\n")
thread = "thread-broken"
token = hmac.new(secret.encode(), thread.encode(), hashlib.sha256).hexdigest()
q = "thread_id=%s&token=%s" % (thread, token)
s = socket.create_connection(("127.0.0.1", port), timeout=3)
s.sendall(("GET /events?%s HTTP/1.0\r\nHost: x\r\n\r\n" % q).encode())
data, end = b"", time.time() + 3
while time.time() < end and b"\ndata:" not in data:
    try:
        chunk = s.recv(65536)
    except socket.timeout:
        break
    if not chunk:
        break
    data += chunk
s.close()
head, _, body = data.partition(b"\r\n\r\n")
print(head.split(b"\r\n")[0].decode())
for line in body.decode(errors="replace").splitlines():
    print("  " + line[:400])
print("the banner page for this thread (while the gateway runs):")
print("  http://127.0.0.1:%d/?%s" % (port, q))
EOF
fi
hold=${NANGUARD_DEMO_HOLD:-0}
if ((hold > 0)); then
    echo "keeping everything running for $hold s (NANGUARD_DEMO_HOLD)"
    sleep "$hold"
fi
kill -TERM "$gateway" 2>/dev/null || true
wait "$gateway" 2>/dev/null || true
gateway=

rows=$(psql "$pg" -tAc "SELECT count(*) FROM checkpoints")
dlq=$(kcat -C -b "$brokers" -t "$topic.dlq" -e -q -f 'x\n' 2>/dev/null | wc -l)
say "$expected messages: $rows rows stored, $dlq dead-lettered"
if ((rows + dlq != expected)); then
    echo "demo: some messages are unaccounted for" >&2
    exit 1
fi

say "the failure desk: nanguard dlq stats on $topic.dlq"
"$bin" dlq stats --brokers "$brokers" --topic "$topic.dlq" --format json
"$bin" dlq stats --brokers "$brokers" --topic "$topic.dlq" --format table

say "nanguard dlq inspect --explain: each dead letter, and what today's sanitizer says"
"$bin" dlq inspect --brokers "$brokers" --topic "$topic.dlq" --format table \
    --explain
