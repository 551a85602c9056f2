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
  log);
- 1000 slow clients that connect again whenever they are cut, and 4
  clients fetching /metrics in a loop: every /healthz probe (50, five a
  second, from a process of its own) is answered within 1 s (before: 256
  connections at most, and once they were taken the probes waited in the
  kernel's queue behind the slow clients, 10 s and more);
- the same against a worker whose open-file limit is 1024, so its table
  holds 320 connections and the slow clients overfill it: the oldest
  connection is closed for each new one (logged), the probes still answer
  within 1 s;
- 2000 connections open at once each get their answer; a request head of
  4 KB is answered, one of 9 KB refused (431: the memory a connection may
  take is bounded)."""
import json
import os
import resource
import re
import signal
import socket
import subprocess
import sys
import threading
import time

if sys.argv[1:2] == ["--probe"]:
    # test_http.py --probe PORT COUNT: COUNT probes of /healthz, one every
    # 0.2 s, each given 1 s, from a process of its own (the test's threads
    # cannot delay it); prints [[seconds into the run, status or null,
    # seconds], ...]. At most 60 s (a busy machine may run it slowly).
    port, count, out = int(sys.argv[2]), int(sys.argv[3]), []
    t0 = time.time()
    while len(out) < count and time.time() - t0 < 60:
        t, st = time.time(), None
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0) as c:
                c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
                          b"Connection: close\r\n\r\n")
                data = b""
                while True:
                    c.settimeout(max(0.001, 1.0 - (time.time() - t)))
                    chunk = c.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            st = int(data.split()[1])
        except (OSError, IndexError, ValueError):
            pass
        out.append([round(t - t0, 2), st, round(time.time() - t, 4)])
        time.sleep(max(0.0, 0.2 - (time.time() - t)))
    print(json.dumps(out))
    sys.exit(0)

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
    seconds until the server closes the connection or `limit` seconds.
    With `again`, it connects again `again` seconds after each close, until
    `limit` seconds or `stop` (an attacker holding a connection for as long
    as it can); `connections` counts them, `longest` is the longest held."""

    def __init__(self, port, piece, every, limit, again=None):
        super().__init__(daemon=True)
        self.port, self.piece, self.every, self.limit = port, piece, every, limit
        self.again = again
        self.opened = self.closed_after = None
        self.connections, self.longest = 0, 0.0
        self.stop = False

    def run(self):
        start = time.time()
        while self.hold(start) and self.again is not None and not self.stop:
            time.sleep(self.again)

    def hold(self, start):
        """One connection; whether the server closed it before `limit`."""
        try:
            c = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        except OSError:
            return time.time() - start < self.limit
        opened = time.time()
        if self.opened is None:
            self.opened = opened
        self.connections += 1
        c.settimeout(self.every)
        try:
            c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            while time.time() - start < self.limit and not self.stop:
                try:
                    if c.recv(4096) == b"":
                        break  # closed by the server
                except socket.timeout:
                    pass
                c.sendall(self.piece)
            else:
                c.close()
                return False  # still open at the end
        except OSError:
            pass
        self.closed_after = time.time() - opened
        self.longest = max(self.longest, self.closed_after)
        c.close()
        return time.time() - start < self.limit


def start_worker(tag, nofile=None):
    """A worker serving HTTP on a free port (its open-file limit set to
    nofile): (process, port, log path, log file)."""
    log_path = os.path.join(TMP, "hardening-http-%s-%d.log" % (tag, os.getpid()))
    logf = open(log_path, "wb")
    limit = None
    if nofile is not None:
        def limit():
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    p = subprocess.Popen(
        [BIN, "worker", "--brokers", "127.0.0.1:1", "--topic", "t",
         "--pg", "host=127.0.0.1 port=1 user=%s connect_timeout=1" % USER,
         "--http-listen", "127.0.0.1:0", "--shutdown-timeout-ms", "1000"],
        stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, preexec_fn=limit)
    port = None
    for _ in range(100):
        time.sleep(0.1)
        with open(log_path, "rb") as f:
            m = re.search(rb'"msg":"serving /metrics[^\n]*"port":(\d+)', f.read())
        if m:
            port = int(m.group(1))
            break
    return p, port, log_path, logf


def stop_worker(p, logf):
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    logf.close()
    return p.returncode


def read_log(log_path):
    with open(log_path, "rb") as f:
        return f.read().decode(errors="replace")


class Hammer(threading.Thread):
    """GET /metrics in a loop until stopped; counts answers and failures."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port, self.stop, self.ok, self.failed = port, False, 0, []

    def run(self):
        while not self.stop:
            st, b = get(self.port, "/metrics", timeout=5.0)
            if st == 200 and "nanguard_build_info" in b:
                self.ok += 1
            else:
                self.failed.append((st, b[:80]))


def siege(port, n, what):
    """n slow clients that connect again when cut, 4 /metrics hammers, and
    50 probes (10 s) from a process of their own: checks that every probe
    was answered 200 within 1 s. Returns the slow clients and hammers."""
    slow = [Slow(port, b"X-Slow: 1\r\n", 2.0, 70.0, again=0.1)
            for _ in range(n)]
    hammers = [Hammer(port) for _ in range(4)]
    for t in slow + hammers:
        t.start()
    time.sleep(2.0)
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--probe",
                          str(port), "50"], capture_output=True, text=True,
                         timeout=90)
    probes = json.loads(out.stdout) if out.returncode == 0 else []
    bad = [x for x in probes if x[1] != 200]
    worst = max((x[2] for x in probes), default=None)
    check(len(probes) == 50 and not bad,
          "/healthz answered %d of %d probes within 1 s (slowest %s s) while "
          "%d slow clients %s and 4 clients fetched /metrics in a loop"
          % (len(probes) - len(bad), len(probes), worst, n, what),
          bad[:5] or out.stderr[-500:])
    for t in slow + hammers:
        t.stop = True
    for t in slow + hammers:
        t.join(20)
    return slow, hammers


os.makedirs(TMP, exist_ok=True)
# Enough open files here for the slow clients and 2000 connections at once.
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
want = 4096 if hard == resource.RLIM_INFINITY else min(4096, hard)
resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
threading.stack_size(256 * 1024)

p, port, log_path, logf = start_worker("main")
try:
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
    log = read_log(log_path)
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

    # Many more slow clients than the table held before (256).
    slow, hammers = siege(port, 1000, "held connections")
    check(all(t.connections >= 1 for t in slow),
          "every slow client got a connection (%d connections in all)"
          % sum(t.connections for t in slow))
    late = [t.longest for t in slow if t.longest > 7]
    check(not late, "none held one for more than 7 s (the 5 s deadline)",
          late[:5])
    check(all(t.ok >= 10 and not t.failed for t in hammers),
          "each /metrics client was answered every time (%s)"
          % [t.ok for t in hammers], [t.failed[:3] for t in hammers])

    # The memory per connection is bounded: a request head of 4 KB (a long
    # bearer token) is answered, one of 9 KB is refused.
    def head_status(n):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
            c.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: "
                      b"Bearer " + b"t" * n + b"\r\nConnection: close\r\n\r\n")
            return c.recv(64)[:12]
    check(head_status(4000) == b"HTTP/1.1 200",
          "a request with a 4 KB header is answered 200")
    check(head_status(9000) == b"HTTP/1.1 431",
          "one with a 9 KB header gets 431")

    # 2000 ordinary connections at once: each is answered.
    conns = []
    for _ in range(2000):
        try:
            conns.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        except OSError:
            break
    for c in conns:
        c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    answered = 0
    for c in conns:
        data = b""
        try:
            while True:
                chunk = c.recv(65536)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
        answered += data.startswith(b"HTTP/1.1 200")
        c.close()
    check(len(conns) == 2000 and answered == 2000,
          "2000 connections open at once were all answered (%d of %d)"
          % (answered, len(conns)))
finally:
    rc = stop_worker(p, logf)
check(rc == 0, "the worker stops cleanly (exit %s)" % rc)
if not checks.failed:
    os.unlink(log_path)

# A table smaller than the slow clients: the oldest connection makes room.
failed_before = checks.failed
p, port, log_path, logf = start_worker("nofile", nofile=1024)
try:
    check(port, "a worker with an open-file limit of 1024 serves HTTP")
    log = read_log(log_path)
    check(re.search(r'"msg":"the open-file limit is low[^\n]*'
                    r'"http_connection_limit":320', log),
          "... and logs that it holds 320 connections at once", log[-800:])
    siege(port, 1000, "overfilled its table")
    m = re.findall(r'"msg":"HTTP connections at the limit[^\n]*'
                   r'"closed_total":(\d+)', read_log(log_path))
    check(m, "the worker logged that it closed the oldest connections (%s "
          "in the last line)" % (m[-1] if m else None))
    st, _ = get(port, "/healthz")
    check(st == 200, "/healthz after the slow clients left: 200")
finally:
    rc = stop_worker(p, logf)
check(rc == 0, "the worker stops cleanly (exit %s)" % rc)
if checks.failed == failed_before:
    os.unlink(log_path)
finish()
