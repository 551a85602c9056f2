#!/usr/bin/env python3
"""deploy/grafana/nanguard.json and deploy/prometheus/alerts.yml against the
worker's metrics, without servers:
  - the dashboard is a Grafana dashboard model: unique panel ids, a
    Prometheus data source variable, a job variable, every panel with a
    query, and the panels the issue asks for (throughput, lag per
    partition, latency quantiles, dead letters by code, PostgreSQL
    availability);
  - every query is PromQL that Prometheus parses (promtool check rules on
    a rules file made of them, Grafana's variables filled in);
  - every metric name a query or an alert rule uses is one the worker
    exports: the names in the C sources (histograms with their _bucket,
    _sum and _count series). e2e_metrics makes the same check against a
    real /metrics scrape (exported_from_scrape below).
Usage: test_dashboard.py SOURCE_DIR"""
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from checks import check, checks, finish  # noqa: E402  (tests/checks.py)

NAME = re.compile(r"\bnanguard_[a-z0-9_]+\b")
HIST_SUFFIXES = ("_bucket", "_sum", "_count")


def dashboard_exprs(src):
    with open(os.path.join(src, "deploy", "grafana", "nanguard.json")) as f:
        d = json.load(f)
    return d, [t["expr"] for p in d["panels"] for t in p.get("targets", [])]


def alert_exprs(src):
    with open(os.path.join(src, "deploy", "prometheus", "alerts.yml")) as f:
        return re.findall(r"^\s+expr:\s*(.+)$", f.read(), re.M)


def used_names(src):
    """{metric name: where} over the dashboard's queries and the alerts."""
    out = {}
    for e in dashboard_exprs(src)[1]:
        for n in NAME.findall(e):
            out.setdefault(n, "deploy/grafana/nanguard.json")
    for e in alert_exprs(src):
        for n in NAME.findall(e):
            out.setdefault(n, "deploy/prometheus/alerts.yml")
    return out


def exported_from_code(src):
    names, hists = set(), set()
    for path in glob.glob(os.path.join(src, "*", "**", "*.c"), recursive=True):
        if "/tests/" in path or "/build/" in path:
            continue
        with open(path, errors="replace") as f:
            text = f.read()
        names.update(re.findall(r'"(nanguard_[a-z0-9_]+)"', text))
        hists.update(re.findall(r'ng_histogram_write\([^;]*?"(nanguard_[a-z0-9_]+)"',
                                text, re.S))
    return names | {h + s for h in hists for s in HIST_SUFFIXES}


def exported_from_scrape(text):
    """Names a /metrics text declares (# TYPE lines), histograms with their
    series."""
    out = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M):
        out.add(name)
        if kind == "histogram":
            out.update(name + s for s in HIST_SUFFIXES)
    return out


def main():
    src = sys.argv[1]
    d, exprs = dashboard_exprs(src)
    panels = d.get("panels", [])
    ids = [p.get("id") for p in panels]
    check(d.get("uid") and d.get("title") and isinstance(d.get("schemaVersion"), int),
          "dashboard has a uid, a title and a schema version")
    check(len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids),
          "panel ids are unique integers", ids)
    tvars = {v["name"]: v for v in d.get("templating", {}).get("list", [])}
    check(tvars.get("datasource", {}).get("type") == "datasource" and
          tvars["datasource"].get("query") == "prometheus",
          "a Prometheus data source variable")
    check("job" in tvars, "a job variable")
    bad = [p.get("title") for p in panels if not p.get("targets") or
           p.get("datasource", {}).get("uid") != "${datasource}" or
           not all(t.get("expr") and t.get("refId") for t in p["targets"]) or
           not {"h", "w", "x", "y"} <= set(p.get("gridPos", {}))]
    check(not bad, "every panel has queries on the data source variable and a place", bad)
    titles = " | ".join(p.get("title", "") for p in panels).lower()
    for want in ("throughput", "lag per partition", "latency", "dead letters by code",
                 "postgresql availability"):
        check(want in titles, "a panel for %s" % want, titles)
    check(any("histogram_quantile(0.99" in e and "nanguard_message_latency_seconds_bucket"
              in e for e in exprs), "latency quantiles from the histogram's buckets")
    check(any("by (code)" in e for e in exprs), "dead letters split by code")

    promtool = shutil.which("promtool")
    if promtool:
        with tempfile.TemporaryDirectory() as tmp:
            rules = os.path.join(tmp, "dashboard_rules.yml")
            with open(rules, "w") as f:
                f.write("groups:\n  - name: dashboard\n    rules:\n")
                for i, e in enumerate(exprs):
                    e = e.replace("$__rate_interval", "5m").replace("$job", ".*")
                    f.write("      - record: dashboard:q%d\n        expr: %s\n"
                            % (i, json.dumps(e)))
            r = subprocess.run([promtool, "check", "rules", rules], capture_output=True,
                               text=True)
            check(r.returncode == 0, "promtool parses all %d dashboard queries"
                  % len(exprs), r.stdout + r.stderr)
    else:
        print("skip promtool not installed: queries not parsed")

    used = used_names(src)
    exported = exported_from_code(src)
    missing = {n: w for n, w in used.items() if n not in exported}
    check(used and not missing, "all %d metric names of the dashboard and the alerts "
          "are exported by the worker" % len(used), missing)
    finish()


if __name__ == "__main__":
    sys.exit(main())
