#!/usr/bin/env python3
"""`nanguard load` against hostile input and signals (issue 14, findings 3
and 8), on the real PostgreSQL of the "postgres" fixture.

1. A 200 MB line between good ones: skipped while read (before: read whole
   into memory, a 1.5 GB one ended the run out of memory), dead-lettered as
   too_large with its byte count and line number, the lines after it
   loaded; the peak RSS stays far below the line's size.
2. Dead letters give the bytes back exactly: "value" when the line is
   UTF-8, "value_base64" when it is not (before: invalid bytes replaced).
3. SIGTERM and SIGINT while lines stream in: the batch in flight is
   written, the summary and resume_from_line are printed, exit 128+signal
   (before: killed, exit 143 with no summary); exactly the lines before
   resume_from_line are stored, and a rerun from there stores the rest."""
import base64
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "sink"))
from pgtest import (BIN, PG, check, count, finish, langgraph_table,  # noqa: E402
                    reset_table, summary_of, workdir)

d = workdir("hardening-load")
T = "hardening_load_%d" % os.getpid()


def env(tid, cid):
    return json.dumps({"thread_id": tid, "checkpoint_id": cid,
                       "checkpoint": {"v": 1, "x": float("nan")}}).encode()


def run(args, timeout=300):
    p = subprocess.run([BIN, "load", "--pg", PG, "--table", T] + args,
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout)
    return p.returncode, p.stderr.decode(errors="replace")


# 1. A 200 MB line.
langgraph_table(T)
BIG = 200 * 1000 * 1000
src = os.path.join(d, "big.ndjson")
with open(src, "wb") as f:
    f.write(env("t-long", "before") + b"\n")
    chunk = b"x" * (1 << 20)
    left = BIG
    f.write(b'{"thread_id": "t-long", "pad": "')
    left -= len(b'{"thread_id": "t-long", "pad": "')
    while left > 0:
        f.write(chunk[:min(left, len(chunk))])
        left -= min(left, len(chunk))
    f.write(b"\n")
    for i in range(50):
        f.write(env("t-long-%d" % i, "after") + b"\n")
dlq = os.path.join(d, "big.dlq")
before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
rc, err = run(["--jobs", "1", "--max-message-bytes", "1000000",
               "--dead-letter", dlq, src])
peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
s = summary_of(err)
check(rc == 2, "exit 2 (one line dead-lettered), got %s" % rc)
check(s.get("stored") == 51 and s.get("dead_lettered") == 1,
      "the 51 good lines stored, the long one dead-lettered: %s" % s)
check(count(T) == 51, "51 rows, the ones after the long line too")
with open(dlq, "rb") as f:
    entries = [json.loads(x) for x in f.read().splitlines()]
e = entries[0] if entries else {}
check(len(entries) == 1 and e.get("line") == 2 and
      e.get("error_code") == "too_large" and e.get("bytes") == BIG and
      "value" not in e and "value_base64" not in e,
      "dead letter: line 2, too_large, bytes %d, no value (%s)"
      % (BIG, {k: v for k, v in e.items() if k != "value"}))
check(peak_kb > before and peak_kb < 80 * 1024,
      "peak RSS %.0f MB, far below the 200 MB line" % (peak_kb / 1024.0))
os.unlink(src)

# 2. value or value_base64.
reset_table(T)
langgraph_table(T)
bad_utf8 = b'{"thread_id": "t-\xff\xfe", "checkpoint": NaNa}'
bad_ascii = b'{"thread_id": "t-ok", "checkpoint": NaNa}'
src = os.path.join(d, "bytes.ndjson")
with open(src, "wb") as f:
    f.write(bad_utf8 + b"\n" + bad_ascii + b"\n" + env("t-b", "c") + b"\n")
dlq = os.path.join(d, "bytes.dlq")
rc, err = run(["--dead-letter", dlq, src])
with open(dlq, "rb") as f:
    entries = {x["line"]: x for x in map(json.loads, f.read().splitlines())}
e1, e2 = entries.get(1, {}), entries.get(2, {})
check("value" not in e1 and
      base64.b64decode(e1.get("value_base64", "")) == bad_utf8,
      "a line that is not UTF-8: value_base64 gives its bytes back (%s)" % e1)
check("value_base64" not in e2 and e2.get("value", "").encode() == bad_ascii,
      "a UTF-8 line: value as before (%s)" % e2)

# 3. Signals while lines stream in.
for sig, name in ((signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "SIGINT")):
    reset_table(T)
    langgraph_table(T)
    rows = [env("t-sig-%d" % (i % 97), "c%d" % i) for i in range(30000)]
    errpath = os.path.join(d, "sig.err")
    with open(errpath, "wb") as ef:
        p = subprocess.Popen([BIN, "load", "--pg", PG, "--table", T, "--jobs", "2",
                              "--batch-rows", "200"], stdin=subprocess.PIPE,
                             stdout=subprocess.DEVNULL, stderr=ef)
    sent = [0]

    def writer():
        try:
            for i in range(0, len(rows), 100):
                p.stdin.write(b"\n".join(rows[i:i + 100]) + b"\n")
                p.stdin.flush()
                sent[0] = i + 100
                time.sleep(0.005)
        except (BrokenPipeError, ValueError, OSError):
            pass

    th = threading.Thread(target=writer, daemon=True)
    th.start()
    t0 = time.time()
    while count(T) < 1000 and time.time() - t0 < 60:
        time.sleep(0.1)
    p.send_signal(sig)
    try:
        p.wait(60)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    try:
        p.stdin.close()
    except OSError:
        pass
    with open(errpath, "rb") as f:
        err = f.read().decode(errors="replace")
    s = summary_of(err)
    want = 128 + int(sig)
    check(p.returncode == want, "%s: exit %d (got %s) %s"
          % (name, want, p.returncode, "" if p.returncode == want else err[-500:]))
    resume = s.get("resume_from_line", 0)
    stored = count(T)
    check(s and resume > 1 and s.get("stored") == stored == resume - 1,
          "%s: summary printed; the %d lines before resume_from_line %d are "
          "stored, none after (%d rows; %s)" % (name, resume - 1, resume, stored, s))
    if name == "SIGTERM" and resume > 1:
        src = os.path.join(d, "all.ndjson")
        with open(src, "wb") as f:
            f.write(b"\n".join(rows) + b"\n")
        rc, err = run(["--start-line", str(resume), src])
        s2 = summary_of(err)
        check(rc == 0 and count(T) == len(rows) and s2.get("duplicates") == 0,
              "a rerun with --start-line %d stores the rest, no duplicates (%s)"
              % (resume, s2))

reset_table(T)
finish()
