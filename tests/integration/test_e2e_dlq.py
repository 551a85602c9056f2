#!/usr/bin/env python3
"""End to end: nanguard dlq inspect | stats | replay against the real broker
and PostgreSQL. A worker run dead-letters a mixed set (rows a CHECK
constraint refuses, malformed JSON, one of it not UTF-8, bad envelopes,
values too large); then:
- inspect shows every dead letter with its dead-letter and source
  positions, code and class; each filter (--code exact and prefix, --class,
  --thread-id, --source-topic, --since, --until) selects exactly its
  records; --values and --explain;
- stats counts match what the topic holds;
- replay --dry-run sends nothing (the source topic's end offsets stay);
- after the constraint is dropped, replay --code pg_23514 and the worker
  store exactly those rows; a second replay adds no row;
- a malformed message replayed twice comes back with nanguard.replay.count
  1, then 2, and replay --max-replays 2 skips it;
- a --group replay SIGKILLed in the middle and run again sends every
  record at least once, and resumes after what it committed;
- exit statuses 64 (usage) and 69 (topic missing, broker unreachable)."""
import base64
import collections
import json
import os
import pty
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e  # noqa: E402
from e2e import check, say  # noqa: E402

BIN, BROKERS = e2e.BIN, e2e.BROKERS
# The broker may be slow to answer on a loaded machine: the look-ups at
# start get 60 s, not 10 (from the environment, as a user could set it;
# the unreachable-broker check gives its own --timeout-ms).
os.environ["NANGUARD_TIMEOUT_MS"] = "60000"


def dlq(*args, timeout=120):
    """Runs nanguard dlq ARGS; returns (exit status, stdout lines, stderr)."""
    r = subprocess.run([BIN, "dlq"] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout)
    return r.returncode, r.stdout.decode(), r.stderr.decode(errors="replace")


def jsonl(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def inspect(names, *args):
    rc, out, err = dlq("inspect", "--brokers", BROKERS, "--topic", names.dlq,
                       "--format", "json", *args)
    if rc != 0:
        say("inspect %s: exit %d: %s" % (" ".join(args), rc, err[-1000:]))
    return rc, jsonl(out) if rc == 0 else []


def positions(records):
    return sorted((r["dlq"]["partition"], r["dlq"]["offset"]) for r in records)


def timestamps(topic):
    """{(partition, offset): timestamp in ms} of every record (kcat %T)."""
    r = e2e.run(["kcat", "-C", "-b", BROKERS, "-t", topic, "-o", "beginning", "-e",
                 "-q", "-f", "%p\t%o\t%T\n"])
    out = {}
    for line in r.stdout.decode().splitlines():
        p, o, t = line.split("\t")
        out[(int(p), int(o))] = int(t)
    return out


def end_offsets(topic):
    """{partition: end offset} (kcat -Q cannot give them; count per
    partition from kcat's %p)."""
    r = e2e.run(["kcat", "-C", "-b", BROKERS, "-t", topic, "-o", "beginning", "-e",
                 "-q", "-f", "%p %o\n"])
    ends = {}
    for line in r.stdout.decode().splitlines():
        p, o = map(int, line.split())
        ends[p] = max(ends.get(p, 0), o + 1)
    return ends


def rfc3339(ms):
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (ms % 1000)


def h1(rec, name):
    v = rec.headers.get(name)
    return v[-1].decode() if v else None


def body():
    names = e2e.Names("dlq")
    d = e2e.workdir("dlq")
    names.create(2)
    msgs = e2e.make_messages(400, seed=31, rates={
        "check": 0.04, "malformed": 0.03, "bad_envelope": 0.02, "too_large": 0.005,
        "dup": 0.01, "tombstone": 0.005})
    # A malformed value that is not UTF-8 either (--values gives base64).
    msgs.append(e2e.Msg("malformed", b"e2e-dlq-binary", b'{"thread_id": "\xff\xfe',
                        code="malformed_json"))
    say("messages: %d (%s)" % (len(msgs), e2e.summary(msgs)))
    e2e.produce(names.topic, msgs, os.path.join(d, "all.txt"))
    # A refused row whose producer set headers of reserved names: the worker
    # keeps them renamed (nanguard.original.<name>); a replay gives
    # nanguard.note its name back and leaves the Connect one out.
    doc = {"thread_id": "e2e-dlq-hdr", "checkpoint_id": "hdr-" + e2e.RUN,
           "checkpoint": {"v": 999}}
    hdr_msg = e2e.Msg("check", b"e2e-dlq-hdr", json.dumps(doc).encode(),
                      code="pg_23514", doc=doc)
    msgs.append(hdr_msg)
    path = os.path.join(d, "hdr.txt")
    with open(path, "wb") as f:
        f.write(hdr_msg.key + b"\t" + hdr_msg.value + b"\n")
    e2e.run(["kcat", "-P", "-b", BROKERS, "-t", names.topic, "-K", "\t", "-H",
             e2e.KCAT_HEADER, "-H", "nanguard.note=kept", "-H",
             "__connect.errors.topic=spoof", "-l", path])
    worker = e2e.Worker("a", d, names.topic, names.group, names.table,
                        e2e.worker_args_fast()).start()
    check(e2e.wait_done(names, msgs, timeout=120, workers=[worker]),
          "the worker processed every message")
    e2e.settle_in_flight([worker])
    e2e.stop_all([worker])

    src = {(r.partition, r.offset): r for r in e2e.consume(names.topic)}
    dl = e2e.consume(names.dlq)
    dl_pos = {(r.partition, r.offset): r for r in dl}
    n_bad = sum(1 for m in msgs if m.bad)
    check(len(dl) == n_bad, "the dead-letter topic holds %d records" % n_bad, len(dl))
    by_value = {m.value: m for m in msgs}

    # --- inspect: every dead letter, with its positions, code and class.
    rc, recs = inspect(names)
    check(rc == 0 and positions(recs) == sorted(dl_pos),
          "inspect lists every dead-letter record once (%d)" % len(dl),
          "exit %d, %d records" % (rc, len(recs)))
    wrong = []
    for r in recs:
        k = (r["dlq"]["partition"], r["dlq"]["offset"])
        rec = dl_pos.get(k)
        s = r["source"]
        srec = src.get((s["partition"], s["offset"]))
        m = by_value.get(rec.value) if rec else None
        if (rec is None or srec is None or m is None or srec.value != rec.value or
                r["dlq"]["topic"] != names.dlq or s["topic"] != names.topic or
                r["error"]["code"] != m.code or
                r["error"]["class"] != h1(rec, "__connect.errors.exception.class.name") or
                r["error"]["message"] != h1(rec, "__connect.errors.exception.message") or
                r["failed_at"] != h1(rec, "nanguard.failed_at") or
                r["worker"] != h1(rec, "nanguard.worker") or
                r["attempts"] != int(h1(rec, "nanguard.attempts")) or
                r["replays"] != 0 or r["value_bytes"] != len(rec.value) or
                r["key"] != rec.key.decode(errors="replace") or
                (m.code == "pg_23514") != (r["error"]["sqlstate"] == "23514") or
                not isinstance(r["dlq"]["timestamp"], str)):
            wrong.append((k, r))
    check(not wrong, "each record: source position, code, class, message, "
          "failed_at, worker, attempts, replays 0, value_bytes", wrong[:2])
    classes = {m: {r["error"]["class"] for r in recs if r["error"]["code"] == m}
               for m in ("malformed_json", "bad_envelope", "pg_23514", "too_large")}
    check(classes == {"malformed_json": {"nanguard.MalformedJson"},
                      "bad_envelope": {"nanguard.BadEnvelope"},
                      "pg_23514": {"nanguard.PgDataError"},
                      "too_large": {"nanguard.TooLarge"}},
          "classes by code", classes)
    check(all(r["thread_id"] == r["key"] for r in recs if r["error"]["code"] == "pg_23514")
          and all(r["checkpoint_id"] for r in recs if r["error"]["code"] == "pg_23514"),
          "thread_id and checkpoint_id of refused rows come from the envelope")

    # --- filters, each against what the topic holds.
    def want(pred):
        return sorted(k for k, rec in dl_pos.items() if pred(rec))

    def code_of(rec):
        return h1(rec, "nanguard.error.code")

    some_thread = next(r["thread_id"] for r in recs if r["error"]["code"] == "pg_23514")
    ts = timestamps(names.dlq)
    mid = sorted(ts.values())[len(ts) // 2]
    cases = [
        (["--code", "pg_23514"], want(lambda r: code_of(r) == "pg_23514")),
        (["--code", "pg_23*"], want(lambda r: code_of(r).startswith("pg_23"))),
        (["--code", "malformed_json"], want(lambda r: code_of(r) == "malformed_json")),
        (["--code", "pg_2351"], []),
        (["--class", "nanguard.BadEnvelope"],
         want(lambda r: h1(r, "__connect.errors.exception.class.name") ==
              "nanguard.BadEnvelope")),
        (["--thread-id", some_thread], sorted(
            (r["dlq"]["partition"], r["dlq"]["offset"]) for r in recs
            if r["thread_id"] == some_thread)),
        (["--source-topic", names.topic], sorted(dl_pos)),
        (["--source-topic", names.topic + "x"], []),
        (["--since", rfc3339(mid)], sorted(k for k, t in ts.items() if t >= mid)),
        (["--until", rfc3339(mid)], sorted(k for k, t in ts.items() if t < mid)),
        (["--since", "1h"], sorted(dl_pos)),
        (["--until", "1h"], []),
        (["--code", "pg_*", "--since", rfc3339(mid)],
         sorted(k for k, t in ts.items() if t >= mid and code_of(dl_pos[k]).startswith("pg_"))),
    ]
    for args, expect in cases:
        rc, got = inspect(names, *args)
        check(rc == 0 and positions(got) == expect,
              "inspect %s selects exactly its %d records" % (" ".join(args), len(expect)),
              "exit %d, got %d: %s" % (rc, len(got), positions(got)[:5]))
    check(len(cases[5][1]) >= 1 and 0 < len(cases[8][1]) < len(dl),
          "the thread and time filters were not trivial")

    # --values and --explain.
    # (the limit the worker ran with: --explain judges by the settings given)
    rc, got = inspect(names, "--values", "--explain", "--max-message-bytes",
                      str(e2e.MAX_MESSAGE_BYTES))
    vals_ok, b64_ok, explain_bad = True, False, []
    for r in got:
        rec = dl_pos[(r["dlq"]["partition"], r["dlq"]["offset"])]
        if "value" in r:
            vals_ok &= r["value"].encode() == rec.value
        else:
            b64_ok = base64.b64decode(r["value_base64"]) == rec.value
        x = r.get("explain") or {}
        code = r["error"]["code"]
        verdict = {"pg_23514": "would_be_stored", "malformed_json": "malformed_json",
                   "bad_envelope": "bad_envelope", "too_large": "too_large"}[code]
        if x.get("verdict") != verdict or not x.get("summary") or \
                (verdict == "malformed_json" and not isinstance(x.get("offset"), int)):
            explain_bad.append((code, x))
    check(rc == 0 and vals_ok and b64_ok,
          "--values: the original bytes, as a string or (not UTF-8) base64")
    check(rc == 0 and not explain_bad,
          "--explain says what today's sanitizer says (would be stored, "
          "malformed at byte N, not an envelope, too large)", explain_bad[:3])
    rc, out, err = dlq("inspect", "--brokers", BROKERS, "--topic", names.dlq,
                       "--format", "table")
    check(rc == 0 and len(out.splitlines()) == len(dl) + 1 and "pg_23514" in out,
          "--format table: a header and one line per record", out[:500])

    # stdout on a terminal: a table by default.
    master, slave = pty.openpty()
    p = subprocess.Popen([BIN, "dlq", "inspect", "--brokers", BROKERS, "--topic",
                          names.dlq, "--code", "too_large"], stdout=slave,
                         stderr=subprocess.PIPE)
    os.close(slave)
    tty_out = b""
    try:
        while True:
            chunk = os.read(master, 4096)
            if not chunk:
                break
            tty_out += chunk
    except OSError:
        pass
    os.close(master)
    rc = p.wait(60)
    n_large = sum(1 for r in dl if code_of(r) == "too_large")
    check(rc == 0 and tty_out.startswith(b"PART/OFFSET") and
          tty_out.count(b"too_large") == n_large,
          "on a terminal inspect prints a table", tty_out[:300])
    # --follow: the records so far, then waits; SIGINT ends it with 0.
    p = subprocess.Popen([BIN, "dlq", "inspect", "--brokers", BROKERS, "--topic",
                          names.dlq, "--follow", "--format", "json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(3)
    alive = p.poll() is None
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=30)
    check(alive and p.returncode == 0 and len(jsonl(out.decode())) == len(dl),
          "--follow keeps reading after the end, prints what there is, "
          "exits 0 on SIGINT", (alive, p.returncode, len(out.splitlines())))

    # --- stats.
    rc, out, err = dlq("stats", "--brokers", BROKERS, "--topic", names.dlq,
                       "--format", "json", "--top", "3")
    st = json.loads(out) if rc == 0 else {}
    threads = collections.Counter(r["thread_id"] for r in recs)
    top = sorted(threads.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
    failed = sorted(h1(r, "nanguard.failed_at") for r in dl)
    check(st.get("records") == len(dl) and
          st.get("by_code") == dict(collections.Counter(code_of(r) for r in dl)) and
          st.get("by_class") == dict(collections.Counter(
              h1(r, "__connect.errors.exception.class.name") for r in dl)) and
          st.get("by_source_topic") == {names.topic: len(dl)} and
          st.get("top_threads") == [{"thread_id": t, "records": n} for t, n in top] and
          st.get("first_failed_at") == failed[0] and
          st.get("last_failed_at") == failed[-1],
          "stats: records, by_code, by_class, by_source_topic, top_threads, "
          "first and last failed_at match the topic", st)
    rc, out, _ = dlq("stats", "--brokers", BROKERS, "--topic", names.dlq,
                     "--format", "json", "--code", "malformed_json")
    st = json.loads(out) if rc == 0 else {}
    n_mal = sum(1 for r in dl if code_of(r) == "malformed_json")
    check(st.get("records") == n_mal and st.get("by_code") == {"malformed_json": n_mal},
          "stats with a filter counts only its records", st)

    # --- exit statuses.
    rc, _, err = dlq("inspect", "--brokers", BROKERS, "--topic", names.dlq + "-none")
    check(rc == 69 and "does not exist" in err, "a missing topic: exit 69", (rc, err[-300:]))
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    free = s.getsockname()[1]
    s.close()
    rc, _, err = dlq("stats", "--brokers", "127.0.0.1:%d" % free, "--topic", names.dlq,
                     "--timeout-ms", "1500")
    check(rc == 69 and "broker" in err, "an unreachable broker: exit 69", (rc, err[-300:]))
    for args in (["--since", "yesterday"], ["--format", "xml"], ["--bogus"], []):
        rc, _, err = dlq("inspect", "--brokers", BROKERS, *(
            ["--topic", names.dlq] if args else []), *args)
        check(rc == 64, "usage error %s: exit 64" % (args or "no --topic"), (rc, err[-200:]))
    # The worker's configuration rules: command line > environment > file,
    # -X and kafka.* to librdkafka.
    conf = os.path.join(d, "dlq.conf")
    with open(conf, "w") as f:
        f.write("topic = %s\nformat = json\nkafka.fetch.wait.max.ms = 10\n" % names.dlq)

    def stats_with(args, env):
        r = subprocess.run([BIN, "dlq", "stats"] + args, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60,
                           env=dict(os.environ, **env))
        n = json.loads(r.stdout).get("records") if r.returncode == 0 else None
        return r.returncode, n
    got = [
        stats_with(["--config", conf], {"NANGUARD_BROKERS": BROKERS}),
        stats_with(["--config", conf], {"NANGUARD_BROKERS": BROKERS,
                                        "NANGUARD_TOPIC": names.dlq + "-none"}),
        stats_with(["--config", conf, "--topic", names.dlq],
                   {"NANGUARD_BROKERS": BROKERS, "NANGUARD_TOPIC": names.dlq + "-none"}),
        stats_with(["--config", conf, "-X", "no.such.property=1"],
                   {"NANGUARD_BROKERS": BROKERS}),
        stats_with(["--config", conf, "-X", "fetch.wait.max.ms=x"],
                   {"NANGUARD_BROKERS": BROKERS}),
    ]
    check(got == [(0, len(dl)), (69, None), (0, len(dl)), (64, None), (64, None)],
          "settings from the file, the environment over it, the command line "
          "over both; -X checked by librdkafka", got)
    rc, _, _ = dlq("replay", "--brokers", BROKERS, "--topic", names.dlq, "--to",
                   names.topic + "-none", "--code", "pg_23514")
    check(rc == 1, "replay to a missing topic: exit 1 (sends failed)", rc)

    # --- replay --dry-run: prints, sends nothing.
    n_check = sum(1 for m in msgs if m.kind == "check")
    before = end_offsets(names.topic)
    rc, out, err = dlq("replay", "--brokers", BROKERS, "--topic", names.dlq,
                       "--code", "pg_23514", "--dry-run")
    lines = jsonl(out) if rc == 0 else []
    summ = lines[-1] if lines else {}
    would = [x for x in lines[:-1] if "would_send" in x]
    hdrs_ok = all(
        dict(x["would_send"]["headers"]).get("nanguard.replay.count") == "1" and
        not any(h[0].startswith(("__connect.errors.", "nanguard.error."))
                for h in x["would_send"]["headers"]) and
        dict(x["would_send"]["headers"]).get("e2e.run") == e2e.RUN
        for x in would)
    check(rc == 0 and summ == {"matched": n_check, "replayed": n_check,
                               "skipped_max_replays": 0, "failed": 0, "dry_run": True}
          and len(would) == n_check and hdrs_ok,
          "--dry-run prints the %d records it would send and the summary" % n_check,
          (rc, summ, err[-300:]))
    time.sleep(1)
    check(end_offsets(names.topic) == before, "--dry-run leaves the source topic's end "
          "offsets unchanged", (before, end_offsets(names.topic)))

    # --- fix the table, replay the refused rows, run the worker: stored.
    e2e.psql("ALTER TABLE %s DROP CONSTRAINT %s_v_not_999" % (names.table, names.table))
    rows_before = e2e.row_keys(names.table)
    rc, out, err = dlq("replay", "--brokers", BROKERS, "--topic", names.dlq,
                       "--code", "pg_23514")
    summ = jsonl(out)[-1] if rc == 0 and out.strip() else {}
    check(rc == 0 and summ == {"matched": n_check, "replayed": n_check,
                               "skipped_max_replays": 0, "failed": 0, "dry_run": False},
          "replay --code pg_23514 sends the %d refused rows" % n_check, (rc, summ, err[-500:]))
    fresh = [r for r in e2e.consume(names.topic) if (r.partition, r.offset) not in src]
    dl_by_from = {"%s/%d/%d" % (names.dlq, p, o): rec for (p, o), rec in dl_pos.items()}
    bad = []
    for r in fresh:
        orig = dl_by_from.get(h1(r, "nanguard.replay.from") or "")
        if (orig is None or r.value != orig.value or r.key != orig.key or
                h1(r, "nanguard.replay.count") != "1" or h1(r, "e2e.run") != e2e.RUN or
                any(k.startswith(("__connect.errors.", "nanguard.error.")) or
                    k in ("nanguard.worker", "nanguard.attempts", "nanguard.failed_at")
                    for k in r.headers) or
                r.partition != int(h1(orig, "__connect.errors.partition"))):
            bad.append((r.partition, r.offset, {k: v[0][:50] for k, v in r.headers.items()}))
    hdr_back = [r for r in fresh if r.key == hdr_msg.key]
    check(len(hdr_back) == 1 and h1(hdr_back[0], "nanguard.note") == "kept" and
          not any(k.startswith("nanguard.original.") for k in hdr_back[0].headers),
          "a producer's header of a reserved name comes back under its own name",
          [r.headers for r in hdr_back])
    check(len(fresh) == n_check and not bad,
          "replayed records: original key, value and headers, no error headers, "
          "nanguard.replay.count 1 and .from, back on their source partition",
          (len(fresh), bad[:2]))
    worker = e2e.Worker("b", d, names.topic, names.group, names.table,
                        e2e.worker_args_fast()).start()
    check_keys = {(m.doc["thread_id"], m.doc.get("checkpoint_ns", ""),
                   m.doc["checkpoint_id"]) for m in msgs if m.kind == "check"}
    want_rows = set(rows_before) | check_keys
    e2e.wait_until(lambda: e2e.row_count(names.table) >= len(want_rows), 60,
                   what="the replayed rows")
    e2e.settle_in_flight([worker])
    rows = e2e.row_keys(names.table)
    check(set(rows) == want_rows and len(check_keys) == n_check,
          "after the replay the worker stored exactly the %d refused rows" % n_check,
          "missing %s extra %s" % (list(want_rows - set(rows))[:3],
                                   list(set(rows) - want_rows)[:3]))
    check(e2e.count_records(names.dlq) == len(dl), "and dead-lettered nothing new")

    # --- a second replay: no duplicate rows.
    rc, out, _ = dlq("replay", "--brokers", BROKERS, "--topic", names.dlq,
                     "--code", "pg_23514")
    check(rc == 0 and jsonl(out)[-1]["replayed"] == n_check, "a second replay sends them again")
    e2e.wait_until(lambda: worker.last("progress") and
                   worker.last("progress").get("duplicates", 0) >= n_check, 30,
                   what="the duplicates")
    e2e.settle_in_flight([worker])
    dups = e2e.psql("SELECT count(*) FROM (SELECT 1 FROM %s GROUP BY thread_id, "
                    "checkpoint_ns, checkpoint_id HAVING count(*) > 1) d" % names.table)
    check(e2e.row_count(names.table) == len(want_rows) and dups.strip() == "0",
          "the second replay creates no duplicate rows (%d rows)" % len(want_rows))

    # --- a malformed message replayed twice: count 1, then 2, then skipped.
    mal = next(m for m in msgs if m.kind == "malformed" and m.key != b"e2e-dlq-binary")
    tid = mal.key.decode()
    group = names.base + "_replay_loop"
    loop = ["--brokers", BROKERS, "--topic", names.dlq, "--code", "malformed_json",
            "--thread-id", tid, "--group", group]
    counts = []
    for round_ in (1, 2):
        n_before = e2e.count_records(names.dlq)
        rc, out, err = dlq("replay", *loop)
        summ = jsonl(out)[-1] if out.strip() else {}
        check(rc == 0 and summ.get("matched") == 1 and summ.get("replayed") == 1,
              "malformed replay %d sends the one record" % round_, (rc, summ, err[-300:]))
        e2e.wait_until(lambda: e2e.count_records(names.dlq) > n_before, 30,
                       what="the record back on the dead-letter topic")
        back = [r for r in e2e.consume(names.dlq) if r.key == mal.key]
        counts.append(sorted(int(h1(r, "nanguard.replay.count") or 0) for r in back))
    check(counts == [[0, 1], [0, 1, 2]],
          "the malformed message came back with nanguard.replay.count 1, then 2",
          counts)
    rc, out, err = dlq("replay", *loop, "--max-replays", "2")
    summ = jsonl(out)[-1] if out.strip() else {}
    check(rc == 0 and summ == {"matched": 1, "replayed": 0, "skipped_max_replays": 1,
                               "failed": 0, "dry_run": False},
          "a third replay with --max-replays 2 skips it", (rc, summ, err[-300:]))
    rc, got = inspect(names, "--thread-id", tid)
    check(sorted(r["replays"] for r in got) == [0, 1, 2], "inspect shows replays 0, 1, 2",
          [r["replays"] for r in got])
    e2e.stop_all([worker])

    # --- --group: killed in the middle, run again: every record at least once.
    target = names.base + ".replay"
    e2e.create_topics(target + ":2")
    all_from = {"%s/%d/%d" % (names.dlq, p, o) for p, o in dl_pos} | {
        "%s/%d/%d" % (names.dlq, r.partition, r.offset) for r in e2e.consume(names.dlq)}
    kgroup = names.base + "_replay_kill"
    args = [BIN, "dlq", "replay", "--brokers", BROKERS, "--topic", names.dlq,
            "--to", target, "--group", kgroup]
    # stderr on a terminal: the progress line.
    master, slave = pty.openpty()
    t0 = time.time()
    p = subprocess.Popen(args + ["--rate", "10"], stdout=subprocess.PIPE,
                         stderr=slave)
    os.close(slave)
    e2e.wait_until(lambda: e2e.count_records(target) >= 12, 20, interval=0.2,
                   what="a dozen sends")
    p.send_signal(signal.SIGKILL)
    p.wait(30)
    took = time.time() - t0
    progress = b""
    try:
        while True:
            chunk = os.read(master, 4096)
            if not chunk:
                break
            progress += chunk
    except OSError:
        pass
    os.close(master)
    first = {h1(r, "nanguard.replay.from") for r in e2e.consume(target)}
    say("killed after %d of %d sends, %.1f s" % (len(first), len(all_from), took))
    check(len(first) <= 10 * took + 1, "--rate 10: at most 10 sends a second "
          "(%d in %.1f s)" % (len(first), took))
    check(b"replay: read " in progress and b"replayed " in progress,
          "progress on stderr when it is a terminal", progress[-300:])
    rc, out, err = dlq("replay", *args[3:])
    summ = jsonl(out)[-1] if out.strip() else {}
    got = collections.Counter(h1(r, "nanguard.replay.from") for r in e2e.consume(target))
    check(0 < len(first) < len(all_from), "the first run was killed in the middle",
          (len(first), len(all_from)))
    check(rc == 0 and set(got) == all_from,
          "after the restart every one of the %d records was replayed at least once"
          % len(all_from), (rc, len(got), sorted(all_from - set(got))[:3], err[-300:]))
    check(rc == 0 and summ.get("matched", 0) < len(all_from),
          "the restart resumed after the committed offsets (%s of %d matched again)"
          % (summ.get("matched"), len(all_from)))
    e2e.drop_table_if_passed(names.table)


if __name__ == "__main__":
    e2e.main(body)
