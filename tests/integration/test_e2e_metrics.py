#!/usr/bin/env python3
"""End to end: the production metrics and the idle readiness probe, on a
real broker and PostgreSQL.
  - while a worker consumes 60 envelopes from a 2-partition topic,
    /metrics carries nanguard_consumer_lag{topic,partition} for both
    partitions (librdkafka's statistics, here every 500 ms), both
    histograms (PostgreSQL batch write time, Kafka timestamp to offset
    stored) with their buckets, _sum and _count, and nanguard_build_info;
  - once the group has committed, the lag of each partition is 0 and the
    latency histogram counts every message;
  - on the now idle worker (default --pg-probe-interval-ms, 5 s), /readyz
    turns 503 within 10 s of stopping PostgreSQL, with nothing written, and
    200 again after it returns; nanguard_postgres_reconnects_total counts
    the new connection."""
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e  # noqa: E402
from e2e import Msg, check  # noqa: E402

N = 60


def envelope(i):
    return (b'{"thread_id": "m-%d", "checkpoint_id": "c%d", "checkpoint": '
            b'{"v": NaN, "i": %d}, "metadata": {}}' % (i % 7, i, i))


def histogram(text, name):
    """{le: cumulative count}, sum and count of a histogram in /metrics."""
    buckets = {m.group(1): float(m.group(2)) for m in re.finditer(
        r'^%s_bucket\{le="([^"]+)"\} (\S+)$' % name, text, re.M)}
    s = re.search(r"^%s_sum (\S+)$" % name, text, re.M)
    c = re.search(r"^%s_count (\S+)$" % name, text, re.M)
    return buckets, float(s.group(1)) if s else None, float(c.group(1)) if c else None


def lags(port, topic):
    _, m = e2e.scrape(port)
    out = {}
    for k, v in m.items():
        g = re.match(r'nanguard_consumer_lag\{topic="([^"]+)",partition="(\d+)"\}$', k)
        if g and g.group(1) == topic:
            out[int(g.group(2))] = v
    return out


def body():
    names = e2e.Names("metrics")
    d = e2e.workdir("metrics")
    names.create(2)
    w = e2e.Worker("a", d, names.topic, names.group, names.table,
                   e2e.worker_args_fast() +
                   ["--http-listen", "127.0.0.1:0", "--batch-rows", "10",
                    "-X", "statistics.interval.ms=500",
                    "-X", "auto.commit.interval.ms=500"]).start()
    port = e2e.wait_until(lambda: e2e.http_port(w), 30, interval=0.1, what="the port")
    check(port, "the worker serves HTTP")
    e2e.wait_until(lambda: e2e.http_get(port, "/readyz")[0] == 200, 60, interval=0.2,
                   what="/readyz 200")
    msgs = [Msg("good", b"m-%d" % (i % 7), envelope(i)) for i in range(N)]
    e2e.produce(names.topic, msgs, os.path.join(d, "msgs.txt"))

    seen = {}

    def consuming():
        # while it consumes: lag for both partitions, both histograms
        seen["lag"] = lags(port, names.topic)
        return len(seen["lag"]) == 2
    check(e2e.wait_until(consuming, 30, interval=0.2, what="lag for both partitions"),
          "/metrics: nanguard_consumer_lag for each of the 2 partitions", seen)
    check(e2e.wait_until(lambda: e2e.row_count(names.table) == N, 60, interval=0.2,
                         what="the rows"), "every envelope is a row")
    check(e2e.wait_until(lambda: lags(port, names.topic) == {0: 0, 1: 0}, 30,
                         interval=0.2, what="lag 0"),
          "once committed, the lag of both partitions is 0", lags(port, names.topic))
    offs = e2e.group_offsets(names.group, names.topic, d)
    check(sum(o[0] or 0 for o in offs.values()) == N,
          "... and the group's committed offsets add up to the %d messages" % N, offs)

    _, text = e2e.http_get(port, "/metrics")
    check("# TYPE nanguard_postgres_write_seconds histogram" in text and
          "# TYPE nanguard_message_latency_seconds histogram" in text,
          "both histograms are declared as histograms")
    wb, ws, wc = histogram(text, "nanguard_postgres_write_seconds")
    lb, ls, lc = histogram(text, "nanguard_message_latency_seconds")
    check(len(wb) >= 5 and wb.get("+Inf") == wc and wc >= 1 and ws > 0,
          "batch write time: buckets up to +Inf, count %s, sum %s s" % (wc, ws), wb)
    check(lc == N and lb.get("+Inf") == N and ls > 0,
          "latency: every message observed once (count %s of %d)" % (lc, N), lb)
    cum = [v for _, v in sorted(((float(k), v) for k, v in lb.items()))]
    check(cum == sorted(cum), "latency buckets are cumulative", lb)
    check(re.search(r'^nanguard_build_info\{version="[0-9.]+",librdkafka="[^"]+",'
                    r'libpq="[0-9.]+"\} 1$', text, re.M),
          "nanguard_build_info names the versions")
    sys.path.insert(0, os.path.join(e2e.SOURCE, "tests", "deploy"))
    import test_dashboard  # noqa: E402
    used = test_dashboard.used_names(e2e.SOURCE)
    exported = test_dashboard.exported_from_scrape(text)
    missing = sorted(n for n in used if n not in exported)
    check(used and not missing, "every metric the dashboard and the alerts use is in "
          "this /metrics scrape (%d names)" % len(used), missing)
    _, m = e2e.scrape(port)
    check(m.get("nanguard_postgres_reconnects_total") == 0 and
          m.get("nanguard_dead_letter_produce_failures_total") == 0 and
          m.get("nanguard_notification_produce_failures_total") == 0,
          "no reconnect, no produce failure yet")

    # Idle now: PostgreSQL goes away while nothing is written.
    stored = m.get("nanguard_rows_stored_total")
    time.sleep(1)
    try:
        e2e.pg_sh("stop", e2e.PG_DIR)
        t = time.time()
        check(e2e.wait_until(lambda: e2e.http_get(port, "/readyz")[0] == 503, 10,
                             interval=0.2, what="/readyz 503"),
              "idle worker: /readyz 503 within 10 s of stopping PostgreSQL "
              "(%.1f s)" % (time.time() - t), e2e.http_get(port, "/readyz"))
        status, body_ = e2e.http_get(port, "/readyz")
        check('"reason":"PostgreSQL unavailable' in body_, "... naming PostgreSQL", body_)
        _, m = e2e.scrape(port)
        check(m.get("nanguard_postgres_available") == 0 and
              m.get("nanguard_rows_stored_total") == stored,
              "... nanguard_postgres_available 0, nothing written")
    finally:
        e2e.pg_sh("start", e2e.PG_DIR)
    t = time.time()
    check(e2e.wait_until(lambda: e2e.http_get(port, "/readyz")[0] == 200, 30,
                         interval=0.2, what="/readyz 200"),
          "PostgreSQL back: /readyz 200 (%.1f s)" % (time.time() - t))
    _, m = e2e.scrape(port)
    check(m.get("nanguard_postgres_reconnects_total", 0) >= 1,
          "nanguard_postgres_reconnects_total counts the new connection",
          m.get("nanguard_postgres_reconnects_total"))
    rc, _ = w.term(timeout=30)
    check(rc == 0, "SIGTERM: exit 0")
    e2e.drop_table_if_passed(names.table)


if __name__ == "__main__":
    e2e.main(body, cleanup=e2e.ensure_pg)
