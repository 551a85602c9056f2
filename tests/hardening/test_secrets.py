#!/usr/bin/env python3
"""No secret in any output (issue 14, finding 4), against the real broker
and PostgreSQL: the password, given in every way libpq and librdkafka take
one, is looked for in every log line, /metrics, /readyz, /healthz, every
dead-letter record (key, value, headers), every notification, and every
line `nanguard load` prints.

- A wrong password for the scram-authenticated role `nanguard`, given as a
  conninfo, a URI, PGPASSWORD and a PGPASSFILE: the worker (with a
  checkpoint waiting, so critical notifications and /readyz carry the
  error) and `load` (exit 78) say authentication failed, never the
  password.
- A working run (a role the fixture trusts, the password given anyway in
  the conninfo, and -X sasl.password): rows, dead letters and
  notifications, none with the password.
- Connection strings libpq cannot parse are in hardening_cli."""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "integration"))
import e2e  # noqa: E402
from e2e import check, say  # noqa: E402

SECRET = "Pw-h4-%d-S3cr3t" % os.getpid()


def fields():
    return dict(kv.split("=", 1) for kv in e2e.PG.split())


def conninfo(**over):
    f = fields()
    f.update(over)
    return " ".join("%s=%s" % kv for kv in f.items())


def uri(password):
    f = fields()
    return "postgresql://%s:%s@%s:%s/%s" % (f["user"], password, f["host"],
                                            f["port"], f["dbname"])


def log_text(w):
    """The worker's log, without the "# start" lines the test harness
    writes (they hold the command line the test gave it)."""
    with open(w.log_path, "rb") as f:
        return "".join(l for l in f.read().decode(errors="replace")
                       .splitlines(True) if not l.startswith("# start "))


def outputs(w, port, names):
    """Everything a worker let out, as one text."""
    parts = [log_text(w)]
    if port:
        for path in ("/metrics", "/readyz", "/healthz"):
            parts.append(e2e.http_get(port, path)[1])
    for topic in (names.dlq, names.notify):
        for rec in e2e.consume(topic):
            parts.append(repr((rec.key, rec.headers, rec.value)))
    return "\n".join(parts)


def run_worker(name, d, names, pg, env=None, extra=(), until=None, secs=12):
    old = dict(os.environ)
    for k in ("PGPASSWORD", "PGPASSFILE"):
        os.environ.pop(k, None)
    os.environ.update(env or {})
    try:
        w = e2e.Worker(name, d, names.topic, names.group + name, names.table,
                       ["--pg", pg, "--http-listen", "127.0.0.1:0",
                        "--critical-after-ms", "1000", "--retry-max-ms", "1000",
                        "--batch-ms", "100", "--shutdown-timeout-ms", "2000"]
                       + list(extra)).start()
    finally:
        os.environ.clear()
        os.environ.update(old)
    # the worker's own --pg comes after the fixture's one in Worker.args
    port = e2e.wait_until(lambda: e2e.http_port(w), 20, what="the HTTP port")
    e2e.wait_until(until or (lambda: False), secs, interval=0.5)
    text = outputs(w, port, names)
    e2e.stop_all([w])
    return w, text + log_text(w)


def body():
    names = e2e.Names("secrets")
    d = e2e.workdir("secrets")
    names.create(1)
    good = e2e.Msg("good", b"t-secret", json.dumps(
        {"thread_id": "t-secret", "checkpoint_id": "c1",
         "checkpoint": {"v": 1}}).encode(), rowkey=("t-secret", "", "c1"))
    bad = e2e.Msg("malformed", b"t-secret-bad", b'{"thread_id": "t", NaNa}',
                  code="malformed_json")
    e2e.produce(names.topic, [good, bad], os.path.join(d, "msgs.txt"))

    passfile = os.path.join(d, "pgpass")
    f = fields()
    with open(passfile, "w") as pf:
        pf.write("%s:%s:*:%s:%s\n" % (f["host"], f["port"], f["user"], SECRET))
    os.chmod(passfile, 0o600)
    no_pw = conninfo(password="")
    no_pw = " ".join(kv for kv in no_pw.split() if not kv.startswith("password="))
    ways = [
        ("conninfo", conninfo(password=SECRET), {}),
        ("URI", uri(SECRET), {}),
        ("PGPASSWORD", no_pw, {"PGPASSWORD": SECRET}),
        ("PGPASSFILE", no_pw, {"PGPASSFILE": passfile}),
    ]
    for i, (how, pg, env) in enumerate(ways):
        w, text = run_worker("wrong%d" % i, d, names, pg, env,
                             until=lambda: False, secs=6)
        failed = "password authentication failed" in text
        check(failed, "worker, wrong password as %s: authentication failed, "
              "and says so" % how, w.tail(10))
        check(SECRET not in text, "... the password is in no log line, metric, "
              "probe, dead letter or notification", [
                  l for l in text.splitlines() if SECRET in l][:3])
        crit = [n for _, n in e2e.notifications(names.notify)
                if n and n.get("type") == "checkpoint_flush_critical_error"]
        check(crit, "... a critical notification went out (it carries the error)")
        penv = dict(os.environ)
        penv.pop("PGPASSWORD", None)
        penv.pop("PGPASSFILE", None)
        penv.update(env)
        r = subprocess.run([e2e.BIN, "load", "--pg", pg, "--table", names.table,
                            "--retry-timeout", "5"], input=good.value + b"\n",
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           env=penv, timeout=60)
        out = r.stdout.decode(errors="replace")
        check(r.returncode == 78 and SECRET not in out,
              "load, wrong password as %s: exit 78, the password not printed "
              "(exit %d)" % (how, r.returncode), out[-600:])

    # A run that works: a role the fixture trusts (127.0.0.1 trust for any
    # role but nanguard), the password given all the same.
    su = conninfo(user="postgres", password="")
    e2e.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", su, "-c",
             "DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = "
             "'ng_secret_user') THEN CREATE ROLE ng_secret_user LOGIN; END IF; "
             "END$$"])
    schema = e2e.psql("SELECT schemaname FROM pg_tables WHERE tablename = '%s'"
                      % names.table).strip()
    e2e.psql("GRANT USAGE ON SCHEMA %s TO ng_secret_user; GRANT SELECT, INSERT, "
             "UPDATE ON %s.%s TO ng_secret_user" % (schema, schema, names.table))
    names.table = "%s.%s" % (schema, names.table)
    pg = conninfo(user="ng_secret_user", password=SECRET)
    w, text = run_worker("good", d, names, pg, {},
                         extra=["-X", "sasl.username=u", "-X",
                                "sasl.password=" + SECRET],
                         until=lambda: e2e.row_count(names.table) >= 1, secs=30)
    check(e2e.row_count(names.table) == 1, "the working run stored the row",
          w.tail(10))
    check(SECRET not in text, "... and let the password out nowhere "
          "(logs, metrics, probes, dead letters, notifications)",
          [l for l in text.splitlines() if SECRET in l][:3])
    dl = e2e.consume(names.dlq)
    check(len(dl) >= 1, "... with its dead letter written (%d records)" % len(dl))
    e2e.drop_table_if_passed(names.table)


if __name__ == "__main__":
    e2e.main(body)
