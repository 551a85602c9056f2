#!/usr/bin/env python3
"""End to end: what an operator sees over `--http-listen`. A worker on a
free loopback port (port 0; the port is read from its log):
  - /healthz is 200 and /readyz turns 200 once it is in the group;
  - /metrics counts exactly what it was given: five envelopes holding
    2 NaN, 1 Infinity, 1 -Infinity and 1 \\u0000, one malformed message
    and one tombstone, as Prometheus text;
  - while PostgreSQL is stopped and a write fails, /readyz is 503 naming
    PostgreSQL and nanguard_postgres_available is 0 (/healthz stays 200:
    the process is alive, a restart would not help); both return after
    PostgreSQL does; a second worker started during the outage, with
    nothing to write, turns ready too when PostgreSQL returns;
  - unknown paths are 404, other methods 405; SIGTERM exits 0;
  - a taken --http-listen address is a configuration error (exit 78), a
    malformed one bad usage (exit 64).
The worker reads deploy/systemd/worker.conf, the shipped example settings,
so a setting there that the worker does not know fails this test."""
import json
import os
import re
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e  # noqa: E402
from e2e import Msg, check  # noqa: E402


get = e2e.http_get
metrics = e2e.scrape


def envelope(thread, n, checkpoint_text):
    return (b'{"thread_id": "%s", "checkpoint_ns": "", "checkpoint_id": "c%d", '
            b'"type": "checkpoint", "checkpoint": %s, "metadata": {}}'
            % (thread.encode(), n, checkpoint_text))


def messages():
    good = [
        envelope("t-1", 1, b'{"v": [NaN, 1.5, Infinity]}'),
        envelope("t-2", 1, b'{"v": NaN, "s": "NaN is text"}'),
        envelope("t-3", 1, b'{"v": -Infinity}'),
        envelope("t-4", 1, b'{"v": "a\\u0000b"}'),
        envelope("t-5", 1, b'{"v": 1}'),
    ]
    msgs = [Msg("good", ("t-%d" % (i + 1)).encode(), v) for i, v in enumerate(good)]
    msgs.append(Msg("malformed", b"t-6", b'{"thread_id": "t-6", "checkpoint": [1,]}'))
    msgs.append(Msg("tombstone", b"t-7", b""))
    return msgs


port_of = e2e.http_port


def refused(args, what, status):
    """Runs a worker that must stop at once with status, naming what."""
    r = subprocess.run([e2e.BIN, "worker", "--brokers", e2e.BROKERS, "--topic", "x",
                        "--pg", e2e.PG] + args, capture_output=True, timeout=60)
    err = r.stderr.decode(errors="replace")
    check(r.returncode == status and what in err,
          "--http-listen %s: exit %d naming it (got %d)" % (args[-1], status, r.returncode),
          err[-300:])


def body():
    names = e2e.Names("http")
    d = e2e.workdir("http")
    names.create(2)
    # The example settings shipped for systemd, with this run's names and
    # servers on the command line (which wins over the file).
    conf = os.path.join(e2e.SOURCE, "deploy", "systemd", "worker.conf")
    w = e2e.Worker("a", d, names.topic, names.group, names.table,
                   ["--config", conf] + e2e.worker_args_fast() +
                   ["--http-listen", "127.0.0.1:0"]).start()
    check(e2e.wait_until(lambda: port_of(w), 30, interval=0.1, what="the port in the log"),
          "the worker logs the port it serves on")
    port = port_of(w)
    status, text = get(port, "/healthz")
    check(status == 200 and json.loads(text)["status"] == "ok", "/healthz: 200", text)
    check(e2e.wait_until(lambda: get(port, "/readyz")[0] == 200, 60, interval=0.2,
                         what="/readyz 200"), "/readyz: 200 once in the group",
          get(port, "/readyz"))

    msgs = messages()
    e2e.produce(names.topic, msgs, os.path.join(d, "msgs.txt"))
    want = {
        "nanguard_messages_consumed_total": 7,
        "nanguard_rows_stored_total": 5,
        "nanguard_rows_duplicate_total": 0,
        "nanguard_dead_lettered_total": 1,
        'nanguard_dead_lettered_by_code_total{code="malformed_json"}': 1,
        "nanguard_tombstones_total": 1,
        'nanguard_rewrites_total{kind="nan"}': 2,
        'nanguard_rewrites_total{kind="infinity"}': 2,
        'nanguard_rewrites_total{kind="nul_escape"}': 1,
        'nanguard_rewrites_total{kind="out_of_range"}': 0,
        'nanguard_rewrites_total{kind="lone_surrogate"}': 0,
        'nanguard_rewrites_total{kind="invalid_utf8"}': 0,
        "nanguard_in_flight_messages": 0,
        "nanguard_postgres_available": 1,
        "nanguard_postgres_unavailable_seconds": 0,
        "nanguard_partitions_assigned": 2,
        "nanguard_ready": 1,
    }

    def settled():
        _, m = metrics(port)
        return all(m.get(k) == v for k, v in want.items())
    e2e.wait_until(settled, 60, interval=0.2, what="the counters")
    status, m = metrics(port)
    wrong = {k: (m.get(k), v) for k, v in want.items() if m.get(k) != v}
    check(status == 200 and not wrong, "/metrics counts what happened", wrong)
    check(e2e.row_count(names.table) == 5, "the five envelopes are rows")
    _, text = get(port, "/metrics")
    check("# TYPE nanguard_rows_stored_total counter" in text and
          "# TYPE nanguard_in_flight_messages gauge" in text,
          "/metrics declares counters and gauges")
    check(m.get("nanguard_bytes_consumed_total") ==
          sum(len(x.value) for x in msgs), "bytes consumed: the sum of the values",
          m.get("nanguard_bytes_consumed_total"))

    check(get(port, "/nothing")[0] == 404, "unknown path: 404")
    check(get(port, "/metrics", method="POST")[0] == 405, "POST: 405")

    # PostgreSQL away: one more message makes a write fail.
    names_b = e2e.Names("http_b")  # made while PostgreSQL is there
    names_b.create(1)
    b = None
    try:
        e2e.pg_sh("stop", e2e.PG_DIR)
        e2e.produce(names.topic, [Msg("good", b"t-8", envelope("t-8", 1, b'{"v": 2}'))],
                    os.path.join(d, "more.txt"))
        check(e2e.wait_until(lambda: get(port, "/readyz")[0] == 503, 30, interval=0.2,
                             what="/readyz 503"), "PostgreSQL down: /readyz 503")
        status, text = get(port, "/readyz")
        reason = json.loads(text).get("reason", "")
        check(status == 503 and reason.startswith("PostgreSQL unavailable"),
              "... naming PostgreSQL as the reason", text)
        _, m = metrics(port)
        check(m.get("nanguard_postgres_available") == 0 and m.get("nanguard_ready") == 0,
              "... nanguard_postgres_available 0, nanguard_ready 0")
        check(get(port, "/healthz")[0] == 200, "... /healthz stays 200 (alive)")
        # A worker started while PostgreSQL is away, on a topic with
        # nothing to write: it must still find out when it is back.
        b = e2e.Worker("b", d, names_b.topic, names_b.group, names_b.table,
                       e2e.worker_args_fast() + ["--http-listen", "127.0.0.1:0"]).start()
        check(e2e.wait_until(lambda: port_of(b), 30, interval=0.1, what="b's port"),
              "worker b (started during the outage) serves HTTP")
        port_b = port_of(b)
        check(e2e.wait_until(lambda: get(port_b, "/readyz")[0] == 503 and
                             json.loads(get(port_b, "/readyz")[1]).get("reason", "")
                             .startswith("PostgreSQL unavailable"), 30, interval=0.2,
                             what="b: /readyz 503 naming PostgreSQL"),
              "worker b: /readyz 503 naming PostgreSQL", get(port_b, "/readyz"))
    finally:
        e2e.pg_sh("start", e2e.PG_DIR)
    check(e2e.wait_until(lambda: get(port, "/readyz")[0] == 200, 60, interval=0.2,
                         what="/readyz 200 again"), "PostgreSQL back: /readyz 200")
    check(b is not None and e2e.wait_until(lambda: get(port_b, "/readyz")[0] == 200, 30,
                                           interval=0.2, what="b: /readyz 200"),
          "worker b, with nothing to write, turns ready when PostgreSQL is back")
    if b is not None:
        rc, _ = b.term(timeout=30)
        check(rc == 0, "worker b: SIGTERM exit 0")
    check(e2e.wait_until(lambda: e2e.row_count(names.table) == 6, 30, interval=0.2,
                         what="the sixth row"), "the message that waited is stored")
    _, m = metrics(port)
    check(m.get("nanguard_rows_stored_total") == 6 and
          m.get("nanguard_postgres_available") == 1, "metrics: 6 stored, PostgreSQL back")

    # Taken and malformed addresses.
    refused(["--http-listen", "127.0.0.1:%d" % port], "127.0.0.1:%d" % port, 78)
    refused(["--http-listen", "9090"], "9090", 64)

    rc, _ = w.term(timeout=30)
    check(rc == 0, "SIGTERM: exit 0")
    with socket.socket() as s:
        check(s.connect_ex(("127.0.0.1", port)) != 0, "the port is closed after exit")
    e2e.drop_table_if_passed(names.table)
    e2e.drop_table_if_passed(names_b.table)


if __name__ == "__main__":
    e2e.main(body, cleanup=e2e.ensure_pg)
