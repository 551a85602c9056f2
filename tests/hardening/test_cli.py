"""test_cli.py - settings that must be refused, and refused without
echoing a secret: table names PostgreSQL would cut (exit 64 for load and
worker), connection strings libpq cannot parse, -X values librdkafka
refuses. No servers: every case ends before a connection is made (the
worker's brokers are a closed loopback port, and it is stopped)."""
import os
import signal
import subprocess
import sys
import time

BIN = os.environ["NANGUARD_BIN"]
SECRET = "S3cr3tPW"
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from checks import check, checks, finish  # noqa: E402  (tests/checks.py)


def run(args, timeout=20, stop_after=None):
    """(exit status, stdout+stderr). stop_after: SIGTERM after that many
    seconds (for a worker that started)."""
    p = subprocess.Popen([BIN] + args, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if stop_after is not None:
        try:
            out, _ = p.communicate(timeout=stop_after)
            return p.returncode, out.decode(errors="replace")
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGTERM)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
        return None, out.decode(errors="replace")
    return p.returncode, out.decode(errors="replace")


WORKER = ["worker", "--brokers", "127.0.0.1:1", "--topic", "t",
          "--shutdown-timeout-ms", "1000"]
LOAD = ["load", "--retry-timeout", "1"]

# 1. Table names longer than 63 bytes (NAMEDATALEN - 1): exit 64.
long64 = "t" * 64
long63 = "t" * 63
for name in (long64, "public." + long64, "s" * 64 + ".checkpoints"):
    for cmd in (WORKER, LOAD):
        rc, out = run(cmd + ["--table", name, "--pg", "host=127.0.0.1 port=1"],
                      stop_after=5 if cmd is WORKER else None)
        check(rc == 64 and "63 bytes" in out,
              "%s --table of %d bytes (%s...): exit 64 (got %s)"
              % (cmd[0], len(name), name[:12], rc), out)
# 63 bytes is a valid name: not refused as usage (load then cannot
# connect: 75 after its retry timeout).
rc, out = run(LOAD + ["--table", long63, "--pg",
                      "host=127.0.0.1 port=1 connect_timeout=1"], timeout=60)
check(rc not in (64, None) and "63 bytes" not in out,
      "load --table of 63 bytes is taken (exit %s)" % rc, out)

# 2. Connection strings libpq cannot parse: no token echoed.
bad_pg = [
    "postgresql://u:%s%%zz@127.0.0.1:1/db" % SECRET,        # invalid percent-encoding
    "postgresql://u:%s@127.0.0.1:1/db?x=%%zz" % SECRET,
    "host=127.0.0.1 password='%s" % SECRET,              # unterminated quote
    "host=127.0.0.1 password %s" % SECRET,               # missing "="
    "host=127.0.0.1 passw0rd=%s" % SECRET,               # unknown option
    "host=127.0.0.1 password=%s port=abc" % SECRET,      # refused at connect
]
for pg in bad_pg:
    for cmd in (WORKER, LOAD):
        rc, out = run(cmd + ["--pg", pg], stop_after=3 if cmd is WORKER else None,
                      timeout=60)
        # (a worker is not stopped by PostgreSQL errors: it exits 0 on
        # SIGTERM; load exits 64 or 78)
        check(SECRET not in out and rc is not None and
              (rc != 0 or cmd is WORKER),
              "%s --pg %r: exit %s, the password not in the output"
              % (cmd[0], pg.replace(SECRET, "<pw>"), rc), out)

# 3. -X values librdkafka refuses, and -X without a name.
for x in ("security.protocol=" + SECRET, "linger.ms=" + SECRET,
          SECRET):
    rc, out = run(WORKER + ["-X", x], stop_after=3)
    check(SECRET not in out,
          "worker -X %s: exit %s, the value not in the output"
          % (x.replace(SECRET, "<pw>"), rc), out)
# An unknown option whose value is a secret.
rc, out = run(WORKER + ["--pgpassword=" + SECRET])
check(rc == 64 and SECRET not in out, "worker --pgpassword=<pw>: exit 64, "
      "the value not echoed (got %s)" % rc, out)

finish()
