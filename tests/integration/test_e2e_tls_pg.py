#!/usr/bin/env python3
"""End to end: the worker on PostgreSQL over TLS, verified.
A PostgreSQL cluster of the test's own (deploy/local/pg.sh, a free port)
with ssl=on, a server certificate for localhost signed by a CA the test
makes with openssl, and a pg_hba.conf that refuses the role nanguard
without TLS; a fresh random password, which the worker reads from a libpq
password file (PGPASSFILE), never from a setting.
  - the worker on sslmode=verify-full with that CA stores every message
    (and dead-letters the malformed one); pg_stat_ssl shows its
    connection encrypted;
  - with another CA it cannot connect: /readyz 503, nothing stored;
  - the password is in no output: the worker's log, /metrics, /readyz,
    the dead-letter records (values and headers) and the notifications."""
import os
import secrets
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e  # noqa: E402
from e2e import Msg, check  # noqa: E402


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def envelope(i):
    return (b'{"thread_id": "tls-%d", "checkpoint_id": "c%d", "checkpoint": {"v": NaN}}'
            % (i % 3, i))


def as_pg(*cmd):
    return (["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []) + list(cmd)


def body():
    names = e2e.Names("tls_pg")
    d = e2e.workdir("tls_pg")
    os.chmod(d, 0o755)
    names.create(2)
    pgdir = os.path.join(d, "pg")
    port = free_port()
    e2e.pg_sh("start", pgdir, str(port))
    state["pgdir"] = pgdir
    ca = e2e.make_ca(d)
    other_ca = e2e.make_ca(d, "other-ca")
    crt, key = e2e.make_cert(d, "server", ca)
    data = os.path.join(pgdir, "data")
    password = "pw-" + secrets.token_hex(12)
    sock = ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", pgdir, "-p", str(port),
            "-U", "postgres", "-d", "nanguard"]
    e2e.run(sock + ["-c", "ALTER ROLE nanguard PASSWORD '%s'" % password])
    e2e.pg_sh("stop", pgdir)
    for src, dst in ((crt, "server.crt"), (key, "server.key")):
        shutil.copy(src, os.path.join(data, dst))
        os.chmod(os.path.join(data, dst), 0o600)
        if os.geteuid() == 0:
            shutil.chown(os.path.join(data, dst), "postgres", "postgres")
    with open(os.path.join(data, "postgresql.conf"), "a") as f:
        f.write("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
    with open(os.path.join(data, "pg_hba.conf"), "w") as f:
        f.write("local all all trust\n"
                "hostssl all nanguard 127.0.0.1/32 scram-sha-256\n"
                "hostnossl all nanguard 127.0.0.1/32 reject\n")
    e2e.pg_sh("start", pgdir, str(port))
    e2e.run(sock + ["-c", "CREATE TABLE %s (thread_id text, checkpoint_ns text, "
                    "checkpoint_id text, parent_checkpoint_id text, type text, "
                    "checkpoint jsonb NOT NULL, metadata jsonb NOT NULL DEFAULT '{}', "
                    "PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id)); "
                    "ALTER TABLE %s OWNER TO nanguard" % (names.table, names.table)])
    plain = subprocess.run(["psql", "-X", "-At", "-c", "SELECT 1",
                            "host=127.0.0.1 port=%d dbname=nanguard user=nanguard "
                            "sslmode=disable" % port], capture_output=True, text=True,
                           env=dict(os.environ, PGPASSWORD=password))
    check(plain.returncode != 0 and "no encryption" in plain.stderr,
          "the server refuses nanguard without TLS", plain.stderr[-300:])

    passfile = os.path.join(d, "pgpass")
    with open(passfile, "w") as f:
        f.write("localhost:%d:nanguard:nanguard:%s\n" % (port, password))
    os.chmod(passfile, 0o600)
    os.environ["PGPASSFILE"] = passfile  # the workers inherit it

    def pg_args(cafile):
        return ["--pg", "host=localhost port=%d dbname=nanguard user=nanguard "
                "sslmode=verify-full sslrootcert=%s" % (port, cafile)]
    # Wrong CA first: it must not connect.
    bad = e2e.Worker("wrong_ca", d, names.topic, names.group + "_x", names.table,
                     e2e.worker_args_fast() + ["--http-listen", "127.0.0.1:0"])
    bad.args[bad.args.index("--pg"):bad.args.index("--pg") + 2] = pg_args(other_ca[0])
    bad.start()
    bport = e2e.wait_until(lambda: e2e.http_port(bad), 30, interval=0.1, what="port")
    code, text = e2e.wait_until(lambda: (lambda r: r if r[0] == 503 and "PostgreSQL"
                                         in r[1] else None)(e2e.http_get(bport, "/readyz")),
                                30, interval=0.3, what="503") or (0, "")
    check(code == 503, "another CA: /readyz 503 naming PostgreSQL", text)
    check(e2e.wait_until(lambda: any("certificate verify failed" in x.get("reason", "")
                                     for x in bad.lines()), 10),
          "... the log says the certificate was not verified (a configuration error)")
    bad_readyz = text
    bad.term(timeout=30)

    msgs = [Msg("good", b"tls-%d" % (i % 3), envelope(i)) for i in range(20)]
    msgs.append(Msg("malformed", b"tls-x", b'{"thread_id": "tls-x", "checkpoint": [1,]}'))
    e2e.produce(names.topic, msgs, os.path.join(d, "msgs.txt"))
    w = e2e.Worker("a", d, names.topic, names.group, names.table,
                   e2e.worker_args_fast() + ["--http-listen", "127.0.0.1:0"])
    w.args[w.args.index("--pg"):w.args.index("--pg") + 2] = pg_args(ca[0])
    w.start()
    wport = e2e.wait_until(lambda: e2e.http_port(w), 30, interval=0.1, what="port")

    def rows():
        r = subprocess.run(sock + ["-c", "SELECT count(*) FROM %s" % names.table],
                           capture_output=True, text=True)
        return int(r.stdout.strip() or -1) if r.returncode == 0 else -1
    check(e2e.wait_until(lambda: rows() == 20, 60, interval=0.3, what="20 rows"),
          "verify-full with the test's CA: all 20 envelopes stored", rows())
    ssl = e2e.run(sock + ["-c", "SELECT s.ssl, s.version FROM pg_stat_ssl s JOIN "
                          "pg_stat_activity a USING (pid) WHERE a.usename = 'nanguard'"]
                  ).stdout.decode().split()
    check(ssl and all(x.startswith("t|TLS") for x in ssl),
          "pg_stat_ssl: the worker's connection is TLS", ssl)
    check(e2e.wait_until(lambda: e2e.count_records(names.dlq) == 1, 30),
          "the malformed message is dead-lettered")
    _, metrics = e2e.http_get(wport, "/metrics")
    _, readyz = e2e.http_get(wport, "/readyz")
    rc, _ = w.term(timeout=30)
    check(rc == 0, "SIGTERM: exit 0")
    outputs = [open(x.log_path, "rb").read() for x in (w, bad)]
    outputs += [metrics, readyz, bad_readyz]
    outputs += [r.value + repr(r.headers).encode() for r in e2e.consume(names.dlq)]
    outputs += [r.value for r in e2e.consume(names.notify)]
    leaks = e2e.secret_in(password, *outputs)
    check(len(outputs) >= 7 and not leaks,
          "the password is in no log line, metric, /readyz, dead-letter record or "
          "notification (%d outputs)" % len(outputs), leaks)


state = {}


def cleanup():
    if state.get("pgdir"):
        e2e.pg_sh("stop", state["pgdir"])


if __name__ == "__main__":
    e2e.main(body, cleanup=cleanup)
