#!/usr/bin/env python3
"""End to end: the notification gateway. A worker (the real broker and
PostgreSQL) and `nanguard notify` with a token secret; SSE clients on raw
sockets:
  - a bad message for thread A reaches the /events?thread_id=A stream as a
    checkpoint_flush_error within 5 s of being produced, with the data
    exactly as the worker published it; the stream of thread B gets
    heartbeats and not that event;
  - a stream closed and reopened with Last-Event-ID gets exactly the
    events it missed (on the same gateway and on a second one);
  - a new stream gets the backlog (also from a gateway started after the
    events, which finds them by the broker's time index);
  - a wrong, missing or misordered token is 401 with no data; CORS; more
    streams than --max-connections: 503;
  - 1,000 idle streams at once: served, memory flat while they idle, little
    CPU; a stalled reader (it never reads) is dropped and does not slow the
    stream of another thread;
  - PostgreSQL stopped past --critical-after-ms: the stream of a thread
    with checkpoints waiting gets checkpoint_flush_critical_error with the
    user's sentence."""
import json
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e  # noqa: E402
from e2e import check, say  # noqa: E402

SECRET = "gateway-test-secret"
CRITICAL_MS = 3000
IDLE_STREAMS = 1000


def bad_envelope(thread, n):
    """A JSON message that is not an envelope (checkpoint is not an object):
    dead-lettered as bad_envelope, thread id from the value."""
    return e2e.Msg("bad_envelope", thread.encode(),
                   json.dumps({"thread_id": thread, "checkpoint_id": "b%d-%s" % (n, e2e.RUN),
                               "checkpoint": [n]}).encode(), code="bad_envelope")


def malformed(thread, n):
    """Not JSON at all: the thread id is the Kafka key."""
    return e2e.Msg("malformed", thread.encode(), b'{"thread_id": "%s", "n": %d, NaNa}'
                   % (thread.encode(), n), code="malformed_json")


def good(thread, n):
    return e2e.Msg("good", thread.encode(), json.dumps(
        {"thread_id": thread, "checkpoint_id": "g%d-%s" % (n, e2e.RUN),
         "checkpoint": {"v": 1, "x": n}}).encode())


def path(threads, secret=SECRET, tokens=None):
    q = "&".join("thread_id=%s" % t for t in threads)
    toks = tokens if tokens is not None else [e2e.token(secret, t) for t in threads]
    return "/events?" + q + "".join("&token=%s" % t for t in toks)


def notes_of(names, thread):
    """The notification records of thread, in topic order, as bytes."""
    return [r.value for r, n in e2e.notifications(names.notify)
            if n and n.get("thread_id") == thread]


def body():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    names = e2e.Names("notify")
    names.create(partitions=2)
    d = e2e.workdir("notify")
    secret_file = os.path.join(d, "secret")
    with open(secret_file, "w") as f:
        f.write(SECRET + "\n")
    A, B, C = ("notify-%s-%s" % (x, e2e.RUN) for x in "ABC")
    w = e2e.Worker("w", d, names.topic, names.group, names.table,
                   e2e.worker_args_fast() + ["--critical-after-ms", str(CRITICAL_MS)]).start()
    gw_args = ["--token-secret-file", secret_file, "--heartbeat-ms", "1000",
               "--allow-origin", "http://app.example", "--client-buffer-bytes", "65536",
               "--max-connections", str(IDLE_STREAMS + 50)]
    gw = e2e.Gateway("g1", d, names.notify, gw_args).start()
    check(gw.port, "the gateway listens (port %s)" % gw.port, gw.tail())

    # --- A gets its event within 5 s, B does not.
    sa = e2e.SseStream(gw.port, path([A]))
    sb = e2e.SseStream(gw.port, path([B]))
    check(sa.status == 200 and sa.headers.get("content-type", "").startswith("text/event-stream"),
          "GET /events?thread_id=A is a text/event-stream", sa.head)
    e2e.wait_until(lambda: sa.retry is not None and sb.retry is not None, 5, 0.05)
    check(sa.retry == 3000, "the stream starts with retry: 3000", sa.retry)
    # Warm up: the worker joins its group and the pipe is running before
    # the clock starts (a new group's join is not what is measured).
    W = "notify-warmup-%s" % e2e.RUN
    sw = e2e.SseStream(gw.port, path([W]))
    e2e.produce(names.topic, [bad_envelope(W, 0)], os.path.join(d, "p0.txt"))
    check(sw.wait_events(1, 90), "warm-up: the pipe delivers an event", w.tail(20))
    sw.close()
    t0 = time.time()
    e2e.produce(names.topic, [bad_envelope(A, 1)], os.path.join(d, "p1.txt"))
    sa.wait_events(1, 15)
    got = sa.got()
    took = got[0].t - t0 if got else None
    check(got and took < 5.0, "a bad message for A reaches A's stream within 5 s (%.2f s)"
          % (took or -1), [e.data for e in got])
    first = got[0] if got else None
    if first:
        ev = first.json()
        check(first.event == "checkpoint_flush_error" and ev["thread_id"] == A and
              ev["message"] == e2e.FLUSH_ERROR_MESSAGE and ev["error_code"] == "bad_envelope"
              and ev.get("error_details"),
              "it is a checkpoint_flush_error for A with the user's sentence and the reason",
              first.data)
        recs = notes_of(names, A)
        check(recs and first.data.encode() == recs[0],
              "data: is the notification exactly as the worker published it",
              (first.data[:200], recs[:1]))
    time.sleep(2.5)
    check(not sb.got(), "B's stream does not get A's event", [e.data for e in sb.got()])
    check(sb.comments >= 2, "B's idle stream gets heartbeat comments (%d)" % sb.comments)

    # --- Last-Event-ID: exactly the missed events.
    sa.close()
    e2e.produce(names.topic, [malformed(A, 2), bad_envelope(B, 3), bad_envelope(A, 4)],
                os.path.join(d, "p2.txt"))
    check(sb.wait_events(1, 15), "B's stream gets B's event")
    e2e.wait_until(lambda: len(notes_of(names, A)) >= 3, 15, 0.5)
    recs_a = notes_of(names, A)
    check(len(recs_a) == 3, "the topic holds 3 notifications for A", len(recs_a))
    sr = e2e.SseStream(gw.port, path([A]), headers={"Last-Event-ID": first.id})
    sr.wait_events(2, 10)
    time.sleep(1.5)
    check([e.data.encode() for e in sr.got()] == recs_a[1:],
          "reopened with Last-Event-ID: exactly the 2 events missed, in order",
          ([e.data[:80] for e in sr.got()], len(recs_a)))
    check(sr.got() and sr.got()[0].json().get("error_code") == "malformed_json",
          "the missed events include the malformed message (thread from the key)")
    last_id = sr.got()[-1].id if sr.got() else None

    # --- Backlog: a new stream, and a gateway started after the events.
    sn = e2e.SseStream(gw.port, path([A]))
    sn.wait_events(3, 10)
    time.sleep(1)
    check([e.data.encode() for e in sn.got()] == recs_a,
          "a new stream gets the backlog: A's 3 events", len(sn.got()))
    gw2 = e2e.Gateway("g2", d, names.notify,
                      ["--token-secret-file", secret_file, "--max-connections", "3",
                       "--heartbeat-ms", "1000"]).start()
    s2 = e2e.SseStream(gw2.port, path([A]))
    s2.wait_events(3, 10)
    time.sleep(1)
    check([e.data.encode() for e in s2.got()] == recs_a,
          "a gateway started later finds the backlog by time: A's 3 events", len(s2.got()))
    s2r = e2e.SseStream(gw2.port, path([A]), headers={"Last-Event-ID": first.id})
    s2r.wait_events(2, 10)
    time.sleep(1)
    check([e.data.encode() for e in s2r.got()] == recs_a[1:],
          "a cursor from one gateway resumes exactly on another", len(s2r.got()))
    s2e = e2e.SseStream(gw2.port, path([A]), headers={"Last-Event-ID": last_id})
    time.sleep(1.5)
    check(s2e.status == 200 and not s2e.got(),
          "a stream resumed at the last event gets nothing again", [e.data for e in s2e.got()])
    full = e2e.SseStream(gw2.port, path([A]))
    check(full.status == 503, "beyond --max-connections (3): 503", full.head)
    for s in (s2, s2r, s2e, full):
        s.close()

    # --- Tokens and CORS.
    for what, p in (("a wrong token", path([A], tokens=[e2e.token(SECRET, B)])),
                    ("no token", "/events?thread_id=" + A),
                    ("a token made with another secret", path([A], secret="other")),
                    ("tokens in the wrong order", path([A, B], tokens=[
                        e2e.token(SECRET, B), e2e.token(SECRET, A)])),
                    ("an upper-case token", path([A], tokens=[e2e.token(SECRET, A).upper()]))):
        st, _, b = gw.get(p)
        check(st == 401 and b"data:" not in b and A.encode() not in b,
              "%s: 401 and no data" % what, (st, b[:200]))
    s2t = e2e.SseStream(gw.port, path([A, B]), headers={"Origin": "http://app.example"})
    s2t.wait_events(4, 10)
    check(s2t.status == 200 and len(s2t.got()) == 4,
          "two threads, one token each in order: their 4 events", len(s2t.got()))
    check(s2t.headers.get("access-control-allow-origin") == "http://app.example",
          "--allow-origin: the allowed origin is named", s2t.headers)
    s2t.close()
    evil = e2e.SseStream(gw.port, path([A]), headers={"Origin": "http://evil.example"},
                         read=False)
    check(evil.status == 200 and "access-control-allow-origin" not in evil.headers,
          "another origin is not named (the browser keeps the stream from its page)",
          evil.headers)
    evil.close()
    st, _, b = gw.get("/healthz")
    check(st == 200, "/healthz is 200", b)
    st, hdrs, b = gw.get("/?thread_id=" + A)
    check(st == 200 and hdrs.get("Content-Type", "").startswith("text/html") and
          b"notify.js" in b and "default-src 'self'" in hdrs.get("Content-Security-Policy", ""),
          "GET / is the banner page, with a same-origin Content-Security-Policy",
          (st, hdrs))
    st, _, b = gw.get("/notify.js")
    check(st == 200 and b"textContent" in b and b"innerHTML" not in b,
          "the page's script puts event text in with textContent, never innerHTML")
    import urllib.request
    req = urllib.request.Request(gw.url("/events"), method="OPTIONS",
                                 headers={"Origin": "http://app.example"})
    with urllib.request.urlopen(req, timeout=10) as r:
        check(r.status == 204 and r.headers.get("Access-Control-Allow-Origin") ==
              "http://app.example" and "Last-Event-ID" in
              (r.headers.get("Access-Control-Allow-Headers") or ""),
              "OPTIONS: the CORS preflight answer", dict(r.headers))

    # --- 1,000 idle streams, memory flat, little CPU.
    rss0 = gw.rss_kib()
    t = time.time()
    idle = []
    for i in range(IDLE_STREAMS):
        idle.append(e2e.SseStream(gw.port, path(["idle-%d-%s" % (i, e2e.RUN)]), read=False))
    ok = sum(1 for s in idle if s.status == 200)
    say("opened %d streams in %.1f s" % (len(idle), time.time() - t))
    check(ok == IDLE_STREAMS, "%d idle streams open at once: all 200" % IDLE_STREAMS, ok)
    conns = e2e.wait_until(lambda: gw.metrics().get("nanguard_notify_connections", 0)
                           >= IDLE_STREAMS, 5, 0.2)  # published every 100 ms
    check(conns, "/metrics counts them (nanguard_notify_connections %s)"
          % gw.metrics().get("nanguard_notify_connections"))
    time.sleep(2)
    rss1, cpu1 = gw.rss_kib(), gw.cpu_seconds()
    time.sleep(8)
    rss2, cpu2 = gw.rss_kib(), gw.cpu_seconds()
    say("gateway RSS %d KiB before, %d with %d streams, %d after 8 s idle; CPU %.2f s in 8 s"
        % (rss0, rss1, IDLE_STREAMS, rss2, cpu2 - cpu1))
    check(rss1 - rss0 < 64 * 1024, "1,000 streams cost less than 64 MiB (%d KiB)" % (rss1 - rss0))
    check(rss2 - rss1 < 1024, "memory is flat while they idle (%+d KiB in 8 s)" % (rss2 - rss1))
    check(cpu2 - cpu1 < 1.0, "idle streams cost little CPU (%.2f s in 8 s, heartbeats each "
          "second)" % (cpu2 - cpu1))

    # --- A stalled reader is dropped and does not slow another thread.
    S, F = "stall-%s" % e2e.RUN, "fast-%s" % e2e.RUN
    stalled = e2e.SseStream(gw.port, path([S]), read=False, rcvbuf=4096)
    fast = e2e.SseStream(gw.port, path([F]))
    check(stalled.status == 200 and fast.status == 200, "a stalled and a reading stream open")
    def fast_event(i):
        t = time.time()
        e2e.produce(names.notify, [e2e.Msg("note", F.encode(), json.dumps({
            "thread_id": F, "type": "checkpoint_flush_error", "severity": "warning",
            "message": "fast %d" % i}).encode())], os.path.join(d, "fast%d.txt" % i))
        fast.wait_events(i, 20)
        got = fast.got()
        return got[i - 1].t - t if len(got) >= i else None

    # The same measure before and during the stall (kcat's start and the
    # broker are in both, so a loaded machine does not fail the test).
    base = fast_event(1)
    big = "x" * 8000
    flood = [e2e.Msg("note", S.encode(), json.dumps({
        "thread_id": S, "type": "checkpoint_flush_error", "severity": "warning",
        "message": "flood %d" % i, "error_details": big}).encode()) for i in range(800)]
    e2e.produce(names.notify, flood, os.path.join(d, "flood.txt"))
    lat = fast_event(2)
    say("another thread's event: %.2f s before the stall, %.2f s with a stalled reader "
        "behind a flood of %d KB" % (base or -1, lat or -1, len(flood) * 8))
    check(base is not None and lat is not None and lat < base + 3.0,
          "a stalled reader does not slow another thread's stream (%.2f s, %.2f s before)"
          % (lat or -1, base or -1))
    dropped = e2e.wait_until(lambda: gw.metrics().get(
        "nanguard_notify_clients_dropped_total", 0) >= 1, 10, 0.5)
    check(dropped, "the stalled reader is dropped (nanguard_notify_clients_dropped_total)",
          gw.metrics().get("nanguard_notify_clients_dropped_total"))
    rss3 = gw.rss_kib()
    say("gateway RSS %d KiB after the flood of %d KB to the stalled stream"
        % (rss3, len(flood) * 8))
    check(rss3 - rss2 < 48 * 1024, "memory after the flood: the kept events, not a growing "
          "buffer (%+d KiB)" % (rss3 - rss2))
    stalled.close()
    fast.close()
    for s in idle:
        s.close()

    # --- PostgreSQL outage past --critical-after-ms: critical on C's stream.
    sc = e2e.SseStream(gw.port, path([C]))
    e2e.produce(names.topic, [good(C, 1)], os.path.join(d, "c0.txt"))
    e2e.wait_until(lambda: e2e.row_count(names.table) >= 1, 20, 0.5)
    say("stopping PostgreSQL")
    e2e.pg_sh("stop", e2e.PG_DIR)
    try:
        t2 = time.time()
        e2e.produce(names.topic, [good(C, 2), good(C, 3)], os.path.join(d, "c1.txt"))
        crit = e2e.wait_until(lambda: [e for e in sc.got()
                                       if e.event == "checkpoint_flush_critical_error"], 40, 0.2)
        check(crit, "a PostgreSQL outage past --critical-after-ms gives "
              "checkpoint_flush_critical_error on C's stream (after %.1f s)"
              % ((crit[0].t - t2) if crit else -1), [e.data for e in sc.got()])
        if crit:
            ev = crit[0].json()
            check(ev["severity"] == "critical" and ev["message"] == e2e.CRITICAL_MESSAGE
                  and ev["thread_id"] == C and ev.get("error_details"),
                  "critical event: the user's sentence, the reason in error_details", ev)
    finally:
        e2e.ensure_pg()
    check(e2e.wait_until(lambda: e2e.row_count(names.table) >= 3, 60, 1),
          "the waiting checkpoints are stored once PostgreSQL is back")
    sc.close()
    sa.close()
    sb.close()
    sr.close()
    sn.close()
    for g in (gw, gw2):
        rc, took = g.term(30)
        check(rc == 0, "gateway %s exits 0 on SIGTERM (%.1f s)" % (g.name, took), g.tail())
    rc, _ = w.term(60)
    check(rc == 0, "worker exits 0")
    e2e.drop_table_if_passed(names.table)


def insecure():
    """Without a secret the gateway listens on loopback only (exit 78),
    unless --insecure-public."""
    r = e2e.run([e2e.BIN, "notify", "--brokers", e2e.BROKERS, "--topic", "x",
                 "--http-listen", ":0"], check_rc=False, timeout=30)
    check(r.returncode == 78 and b"--insecure-public" in r.stderr,
          "no secret, every interface: refused (exit 78)", (r.returncode, r.stderr[-300:]))
    r = e2e.run([e2e.BIN, "notify", "--brokers", e2e.BROKERS, "--topic", "x",
                 "--backlog", "1 day"], check_rc=False, timeout=30)
    check(r.returncode == 64, "a bad --backlog is bad usage (exit 64)", r.returncode)


if __name__ == "__main__":
    e2e.main(lambda: (insecure(), body()))
