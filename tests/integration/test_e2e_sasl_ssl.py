#!/usr/bin/env python3
"""End to end: the worker on Kafka over SASL_SSL.
A broker of the test's own (deploy/local/kafka.sh, free ports) with a
SASL_SSL listener, a certificate for localhost signed by a CA the test
makes with openssl, and a user whose random password lives in a file.
Two ways (ctest runs both), KAFKA_VERSION not set (kafka.sh chooses):
  - e2e_sasl_ssl (no argument): KAFKA_SASL_PLAIN=1, so Kafka 4 (kafka.sh's
    default) offering SCRAM-SHA-512 and PLAIN; the worker uses PLAIN
    (librdkafka 2.0.2 cannot do SCRAM with Kafka 4, see the README);
  - e2e_sasl_scram (--scram): a listener offering SCRAM-SHA-512 only;
    kafka.sh runs KAFKA_SCRAM_VERSION (3.9.x, which accepts librdkafka
    2.0.2's SCRAM) when this machine's librdkafka is older than 2.6.1 and
    says so, its default otherwise; the worker uses SCRAM-SHA-512, and the
    password is nowhere in the broker's directory (SCRAM keeps salted keys
    only).
The worker connects with -X security.protocol=SASL_SSL
-X sasl.mechanisms=PLAIN|SCRAM-SHA-512 -X sasl.username=nanguard
-X sasl.password.file=FILE -X ssl.ca.location=CA (consumer and the
dead-letter/notification producer alike):
  - a wrong password: authentication fails, the worker never joins the
    group (/readyz 503), nothing is stored;
  - the right one: every envelope is stored in PostgreSQL, the malformed
    message is dead-lettered with its notification;
  - the password is in no output: the worker's logs, /metrics, /readyz,
    the dead-letter records (values and headers), the notifications,
    kafka.sh's output and the broker's logs."""
import os
import secrets
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e  # noqa: E402
from e2e import Msg, check  # noqa: E402

state = {}
SCRAM = sys.argv[1:] == ["--scram"]
MECHANISM = "SCRAM-SHA-512" if SCRAM else "PLAIN"
TEST = "sasl_scram" if SCRAM else "sasl_ssl"


def free_pair():
    """A free port p with p+1 free too (kafka.sh's controller)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            p = s.getsockname()[1]
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p + 1))
                return p
            except OSError:
                continue
    raise RuntimeError("no free port pair")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scram_release_chosen():
    """Whether kafka.sh, without KAFKA_VERSION, runs KAFKA_SCRAM_VERSION
    rather than its default: for a SCRAM-only listener where librdkafka
    is older than 2.6.1."""
    rk = subprocess.run(["pkg-config", "--modversion", "rdkafka"], capture_output=True,
                        text=True).stdout.strip()
    return SCRAM and tuple(int(x) for x in rk.split(".")[:3]) < (2, 6, 1)


def envelope(i):
    return (b'{"thread_id": "sasl-%d", "checkpoint_id": "c%d", "checkpoint": {"v": NaN}}'
            % (i % 3, i))


def body():
    d = e2e.workdir(TEST)
    names = e2e.Names(TEST)
    ca = e2e.make_ca(d)
    crt, key = e2e.make_cert(d, "broker", ca)
    password = "pw-" + secrets.token_hex(12)
    pwfile, wrongfile = os.path.join(d, "kafka.password"), os.path.join(d, "wrong.password")
    for path, pw in ((pwfile, password), (wrongfile, "not-" + password[3:])):
        with open(path, "w") as f:
            f.write(pw + "\n")
        os.chmod(path, 0o600)
    kdir = os.path.join(d, "kafka")
    port, sport = free_pair(), free_port()
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_VERSION"}
    env.update(KAFKA_SASL_SSL_PORT=str(sport), KAFKA_SSL_CERT=crt,
               KAFKA_SSL_KEY=key, KAFKA_SCRAM_USER="nanguard",
               KAFKA_SCRAM_PASSWORD_FILE=pwfile, KAFKA_HEAP="-Xms128m -Xmx512m")
    if not SCRAM:
        env["KAFKA_SASL_PLAIN"] = "1"
    state["kdir"] = kdir
    r = subprocess.run(["bash", e2e.KAFKA_SH, "start", kdir, str(port)], env=env,
                       capture_output=True, timeout=240)
    state["kafka_sh_out"] = r.stdout + r.stderr
    if not check(r.returncode == 0, "kafka.sh starts a broker with a SASL_SSL listener",
                 r.stderr.decode(errors="replace")[-1500:]):
        return
    chosen = scram_release_chosen()
    version = (os.environ.get("KAFKA_SCRAM_VERSION", "3.9.2") if chosen
               else e2e.kafka_default_version())
    with open(os.path.join(kdir, "kafka.pid")) as f:
        cmdline = open("/proc/%s/cmdline" % f.read().strip(), "rb").read()
    check(b"/kafka-%s/lib/" % version.encode() in cmdline
          and e2e.kafka_version(kdir) == version,
          "the broker runs Kafka %s, recorded in its directory for restart" % version)
    if SCRAM:
        said = b"Kafka %s for the SCRAM listener" % version.encode()
        check((said in r.stderr) == chosen,
              "kafka.sh says why it chose Kafka %s" % version, r.stderr.decode()[-600:])
        with open(os.path.join(kdir, "server.properties")) as f:
            props = f.read()
        check("sasl.enabled.mechanisms=SCRAM-SHA-512\n" in props,
              "the SASL_SSL listener offers SCRAM-SHA-512 only")
    e2e.BROKERS, e2e.KAFKA_DIR = "127.0.0.1:%d" % port, kdir  # produce/consume: PLAINTEXT
    e2e.create_topics("%s:2" % names.topic, "%s:1" % names.dlq, "%s:1" % names.notify)
    e2e.create_table(names.table)

    def worker(name, pwf):
        w = e2e.Worker(name, d, names.topic, names.group, names.table,
                       e2e.worker_args_fast() + [
                           "--http-listen", "127.0.0.1:0",
                           "-X", "security.protocol=SASL_SSL",
                           "-X", "sasl.mechanisms=" + MECHANISM,
                           "-X", "sasl.username=nanguard",
                           "-X", "sasl.password.file=" + pwf,
                           "-X", "ssl.ca.location=" + ca[0]])
        w.args[w.args.index("--brokers") + 1] = "localhost:%d" % sport
        return w

    msgs = [Msg("good", b"sasl-%d" % (i % 3), envelope(i)) for i in range(20)]
    msgs.append(Msg("malformed", b"sasl-x", b'{"thread_id": "sasl-x", "checkpoint": [1,]}'))
    e2e.produce(names.topic, msgs, os.path.join(d, "msgs.txt"))

    bad = worker("wrong_password", wrongfile).start()
    check(e2e.wait_until(lambda: any("uthentication" in x.get("msg", "") for x in bad.lines()),
                         60, interval=0.5, what="an authentication failure"),
          "a wrong password: the worker logs the authentication failure")
    bport = e2e.http_port(bad)
    check(bport and e2e.http_get(bport, "/readyz")[0] == 503 and
          e2e.row_count(names.table) == 0, "... is not ready and stores nothing")
    bad_out = [e2e.http_get(bport, "/readyz")[1], e2e.http_get(bport, "/metrics")[1]] \
        if bport else []
    bad.term(timeout=30)

    w = worker("a", pwfile).start()
    check(e2e.wait_until(lambda: e2e.row_count(names.table) == 20, 90, interval=0.3,
                         what="20 rows"), "SASL_SSL (%s): all 20 envelopes stored" % MECHANISM,
          e2e.row_count(names.table))
    check(e2e.wait_until(lambda: e2e.count_records(names.notify) >= 1, 30),
          "the malformed message is dead-lettered and notified over SASL_SSL")
    wport = e2e.http_port(w)
    outs = [e2e.http_get(wport, "/metrics")[1], e2e.http_get(wport, "/readyz")[1]]
    rc, _ = w.term(timeout=30)
    check(rc == 0, "SIGTERM: exit 0")
    dlq = e2e.consume(names.dlq)
    check(len(dlq) == 1, "one dead-letter record", len(dlq))
    outs += bad_out + [open(x.log_path, "rb").read() for x in (w, bad)]
    outs += [rec.value + repr(rec.headers).encode() for rec in dlq]
    outs += [rec.value for rec in e2e.consume(names.notify)]
    outs.append(state["kafka_sh_out"])
    st = os.stat(os.path.join(kdir, "server.properties"))
    check(not st.st_mode & 0o077, "the broker's server.properties%s is mode 0600"
          % ("" if SCRAM else " (it holds the PLAIN password)"))
    for f in ("kafka.out", "kafka.log"):
        p = os.path.join(kdir, f)
        if os.path.exists(p):
            outs.append(open(p, "rb").read())
    if SCRAM:  # no PLAIN: the password is in none of the broker's files
        broker_files = [os.path.join(r, f) for r, _, fs in os.walk(kdir) for f in fs]
        leaks = e2e.secret_in(password, *[open(p, "rb").read() for p in broker_files])
        check(len(broker_files) >= 5 and not leaks, "the password is in none of the "
              "broker's %d files (properties, metadata log, segments)" % len(broker_files),
              leaks)
    leaks = e2e.secret_in(password, *outs)
    check(len(outs) >= 8 and not leaks, "the password is in no output (%d outputs: logs, "
          "metrics, readyz, records, kafka.sh, broker logs)" % len(outs), leaks)
    e2e.drop_table_if_passed(names.table)


def cleanup():
    if state.get("kdir"):
        subprocess.run(["bash", e2e.KAFKA_SH, "stop", state["kdir"]], capture_output=True,
                       timeout=120)


if __name__ == "__main__":
    e2e.main(body, cleanup=cleanup)
