#!/usr/bin/env python3
"""test_http.py - slow clients cannot blind the probes, and /readyz tells
nobody where PostgreSQL is (issue 14, findings 2 and 7). No servers: the
worker's brokers and PostgreSQL are closed loopback ports, which keeps it
not ready (PostgreSQL unavailable) while its main loop turns (healthy).

- 40 clients each send a request line and then one header line every
  4 s (before: 32 connections at most and an idle timer every byte reset,
  so /healthz was unreachable for as long as they kept at it);
- a client that trickles one byte a second (never idle) is cut at the
  whole-request deadline;
- /healthz answers every probe meanwhile, each within 2 s;
- /readyz's reason is short: no host, port or user name (they are in the
  log)."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

BIN = os.environ["NANGUARD_BIN"]
TMP = os.environ.get("NANGUARD_TEST_TMP") or "/tmp/nanguard-test"
USER = "h4probeuser"
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from checks import check, checks, finish  # noqa: E402  (tests/checks.py)


def get(port, path, timeout=2.0):
    """(status, body) of GET path, or (None, error)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as c:
            c.settimeout(timeout)
            c.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                      % path.encode())
            data = b""
            while True:
                chunk = c.recv(65536)
                if not chunk:
                    break
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split()[1]), body.decode(errors="replace")
    except (OSError, IndexError, ValueError) as e:
        return None, repr(e)


class Slow(threading.Thread):
    """A client that sends a request line, then `piece` every `every`
    seconds until the server closes the connection or `limit` seconds."""

    def __init__(self, port, piece, every, limit):
        super().__init__(daemon=True)
        self.port, self.piece, self.every, self.limit = port, piece, every, limit
        self.opened = self.closed_after = None

    def run(self):
        try:
            c = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        except OSError:
            return
        self.opened = time.time()
        c.settimeout(self.every)
        try:
            c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            while time.time() - self.opened < self.limit:
                try:
                    if c.recv(4096) == b"":
                        break  # closed by the server
                except socket.timeout:
                    pass
                c.sendall(self.piece)
            else:
                return  # still open at the end
        except OSError:
            pass
        self.closed_after = time.time() - self.opened
        c.close()


os.makedirs(TMP, exist_ok=True)
log_path = os.path.join(TMP, "hardening-http-%d.log" % os.getpid())
logf = open(log_path, "wb")
p = subprocess.Popen([BIN, "worker", "--brokers", "127.0.0.1:1", "--topic", "t",
                      "--pg", "host=127.0.0.1 port=1 user=%s connect_timeout=1" % USER,
                      "--http-listen", "127.0.0.1:0", "--shutdown-timeout-ms", "1000"],
                     stdin=subprocess.DEVNULL, stdout=logf, stderr=logf)
try:
    port = None
    for _ in range(100):
        time.sleep(0.1)
        with open(log_path, "rb") as f:
            m = re.search(rb'"msg":"serving /metrics[^\n]*"port":(\d+)', f.read())
        if m:
            port = int(m.group(1))
            break
    check(port, "the worker serves HTTP on a free port")

    # /readyz: short reason only.
    status, body = None, ""
    for _ in range(50):
        status, body = get(port, "/readyz")
        if status == 503 and "PostgreSQL" in body:
            break
        time.sleep(0.2)
    reason = json.loads(body).get("reason", "") if status == 503 else body
    check(status == 503 and reason.startswith("PostgreSQL unavailable"),
          "/readyz 503 names PostgreSQL as the reason", body)
    check("127.0.0.1" not in body and USER not in body and "port" not in body,
          "... without host, port or user name: %r" % reason, body)
    with open(log_path, "rb") as f:
        log = f.read().decode(errors="replace")
    check("127.0.0.1" in log and "port 1" in log,
          "the log has the details (host and port)", log[-800:])

    # Slow clients, and probes meanwhile.
    slow = [Slow(port, b"X-Slow: 1\r\n", 4.0, 20.0) for _ in range(40)]
    trickle = Slow(port, b"X", 1.0, 20.0)
    for t in slow + [trickle]:
        t.start()
    time.sleep(1.0)
    probes, bad = 0, []
    t0 = time.time()
    while time.time() - t0 < 16:
        t = time.time()
        st, b = get(port, "/healthz", timeout=2.0)
        probes += 1
        if st != 200:
            bad.append((round(t - t0, 1), st, b[:80]))
        time.sleep(max(0.0, 0.5 - (time.time() - t)))
    check(probes >= 20 and not bad,
          "/healthz answered all %d probes within 2 s while 41 slow clients were "
          "connected" % probes, bad[:5])
    for t in slow + [trickle]:
        t.join(25)
    opened = [t for t in slow if t.opened is not None]
    check(len(opened) == 40, "all 40 slow clients got a connection (%d)" % len(opened))
    late = [t.closed_after for t in slow if t.closed_after is None or t.closed_after > 9]
    check(not late, "every slow client was cut within 9 s", late[:5])
    check(trickle.closed_after is not None and 4 <= trickle.closed_after <= 9,
          "a client trickling a byte a second was cut at the request deadline "
          "(after %s s)" % trickle.closed_after)
    st, _ = get(port, "/healthz")
    check(st == 200, "/healthz after the slow clients left: 200")
finally:
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    logf.close()
check(p.returncode == 0, "the worker stops cleanly (exit %s)" % p.returncode)
if not checks.failed:
    os.unlink(log_path)
finish()
