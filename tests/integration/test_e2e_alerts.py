#!/usr/bin/env python3
"""End to end: deploy/prometheus/alerts.yml in a real Prometheus (Debian's
prometheus, on a free loopback port, scraping and evaluating every second)
scraping a real worker (--http-listen on a free port). The rules are the
shipped ones with every `for:` cut to 2 s, nothing else changed.
  - Prometheus scrapes the worker: nanguard_ready 1 and the lag of its
    partition are there, and no alert fires;
  - a malformed message fires NanguardDeadLetters;
  - PostgreSQL stopped on the idle worker fires NanguardWorkerNotReady
    (and it is gone again once PostgreSQL is back)."""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e  # noqa: E402
from e2e import Msg, check  # noqa: E402

RULES = os.path.join(e2e.SOURCE, "deploy", "prometheus", "alerts.yml")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(port, path, **params):
    url = "http://127.0.0.1:%d%s" % (port, path)
    if params:
        url += "?" + urllib.parse.urlencode(params)
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.loads(r.read())
    except Exception:  # noqa: BLE001 - not up yet
        return None


def query(port, expr):
    r = api(port, "/api/v1/query", query=expr)
    return r["data"]["result"] if r and r.get("status") == "success" else None


def firing(port):
    r = api(port, "/api/v1/alerts")
    if not r:
        return set()
    return {a["labels"]["alertname"] for a in r["data"]["alerts"] if a["state"] == "firing"}


def body():
    prom_bin = shutil.which("prometheus")
    if not check(prom_bin, "Debian's prometheus is installed"):
        return
    names = e2e.Names("alerts")
    d = e2e.workdir("alerts")
    names.create(1)
    w = e2e.Worker("a", d, names.topic, names.group, names.table,
                   e2e.worker_args_fast() +
                   ["--http-listen", "127.0.0.1:0", "--pg-probe-interval-ms", "1000",
                    "-X", "statistics.interval.ms=1000"]).start()
    wport = e2e.wait_until(lambda: e2e.http_port(w), 30, interval=0.1, what="the port")

    with open(RULES) as f:
        rules = f.read()
    short, n = re.subn(r"for: \d+m", "for: 2s", rules)
    check(n == 5, "the shipped rules have 5 alerts with a for: (%d)" % n)
    rules_path = os.path.join(d, "alerts.yml")
    with open(rules_path, "w") as f:
        f.write(short)
    pport = free_port()
    conf = os.path.join(d, "prometheus.yml")
    with open(conf, "w") as f:
        f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                "rule_files:\n  - %s\n"
                "scrape_configs:\n  - job_name: nanguard\n"
                "    static_configs:\n      - targets: ['127.0.0.1:%d']\n"
                % (rules_path, wport))
    log = open(os.path.join(d, "prometheus.log"), "wb")
    prom = subprocess.Popen([prom_bin, "--config.file=" + conf,
                             "--storage.tsdb.path=" + os.path.join(d, "tsdb"),
                             "--web.listen-address=127.0.0.1:%d" % pport,
                             "--log.level=warn"], stdout=log, stderr=log)
    try:
        check(e2e.wait_until(lambda: query(pport, 'nanguard_ready{job="nanguard"} == 1'),
                             60, interval=0.5, what="Prometheus to scrape a ready worker"),
              "Prometheus scrapes the worker: nanguard_ready 1")
        check(e2e.wait_until(lambda: query(pport, 'nanguard_consumer_lag{topic="%s"}'
                                           % names.topic), 30, interval=0.5,
                             what="the lag in Prometheus"),
              "... and nanguard_consumer_lag of its partition")
        time.sleep(3)
        check(not firing(pport), "no alert fires on a healthy worker", firing(pport))

        e2e.produce(names.topic, [Msg("malformed", b"t-1", b'{"thread_id": [1,]}')],
                    os.path.join(d, "bad.txt"))
        check(e2e.wait_until(lambda: "NanguardDeadLetters" in firing(pport), 30,
                             interval=0.5, what="NanguardDeadLetters"),
              "a malformed message fires NanguardDeadLetters")

        try:
            e2e.pg_sh("stop", e2e.PG_DIR)
            t = time.time()
            check(e2e.wait_until(lambda: "NanguardWorkerNotReady" in firing(pport), 40,
                                 interval=0.5, what="NanguardWorkerNotReady"),
                  "PostgreSQL stopped: NanguardWorkerNotReady fires (%.1f s)"
                  % (time.time() - t), firing(pport))
        finally:
            e2e.pg_sh("start", e2e.PG_DIR)
        check(e2e.wait_until(lambda: "NanguardWorkerNotReady" not in firing(pport), 40,
                             interval=0.5, what="the alert to end"),
              "PostgreSQL back: NanguardWorkerNotReady ends")
    finally:
        prom.terminate()
        try:
            prom.wait(30)
        except subprocess.TimeoutExpired:
            prom.kill()
        log.close()
    rc, _ = w.term(timeout=30)
    check(rc == 0, "SIGTERM: exit 0")
    e2e.drop_table_if_passed(names.table)


if __name__ == "__main__":
    e2e.main(body, cleanup=e2e.ensure_pg)
