#!/usr/bin/env python3
"""PostgreSQL down when the load starts and up 10 s later: the load waits
and completes. Down longer than --retry-timeout: exit 75 with a resume
point; resuming from there completes the set, and no dead letter is
written twice."""
import json
import os
import threading
import time

from pgtest import (check, count, feed, finish, gen, langgraph_table, load,
                    lines_of, load_background, pg_ctl, psql, start_load_stdin,
                    wait_for, wait_pg_up, wait_run, workdir)

d = workdir("load_outage")
src = gen(os.path.join(d, "input.ndjson"), 3000, avg_bytes=1500, seed=41)
rows = lines_of(src)
# one bad line early, one at the very end
rows[4] = b'{"thread_id": "x", "checkpoint": {}}'
rows[-1] = b'{"broken'
with open(src, "wb") as f:
    f.write(b"\n".join(rows) + b"\n")
n = len(rows)
T = "out_cp"
langgraph_table(T)

# 1. Down at the start, up 10 s later.
errp = os.path.join(d, "a.txt")
pg_ctl("stop")
try:
    t0 = time.time()
    p = load_background(["--table", T, "--retry-timeout", "60", src], errp)
    time.sleep(10)
    check(p.poll() is None, "the load waits while PostgreSQL is down")
    pg_ctl("start")
    r = wait_run(p, errp, timeout=60)
finally:
    pg_ctl("start")
    wait_pg_up()
took = time.time() - t0
check(r.status == 2, "it completes once PostgreSQL is up (status %s, "
      "2 for the two bad lines)" % r.status)
check(r.summary.get("stored") == n - 2 and count(T) == n - 2,
      "every good row stored (%s)" % r.summary)
check("PostgreSQL unavailable, retrying" in r.stderr
      and "PostgreSQL is back" in r.stderr, "the wait was logged")
check(10 <= took < 25, "it went on soon after the server came back (%.1f s)"
      % took)

# 2. Down longer than --retry-timeout in the middle: 75, then resume.
psql("TRUNCATE %s" % T)
dlq = os.path.join(d, "dead.jsonl")
errp = os.path.join(d, "b.txt")
p = start_load_stdin(["--table", T, "--retry-timeout", "3", "--batch-rows",
                      "100", "--dead-letter", dlq], errp)
result = {}
writer = threading.Thread(
    target=lambda: result.update(fed=feed(p, rows, 60, 0.03)))
writer.start()
try:
    def some():
        v = psql("SELECT count(*) FROM %s" % T, check_ok=False)
        return v.isdigit() and int(v) >= 500
    check(wait_for(some, limit=30), "the load is under way")
    pg_ctl("stop")
    t0 = time.time()
    r = wait_run(p, errp, timeout=60)
    took = time.time() - t0
    writer.join(timeout=10)
finally:
    pg_ctl("start")
    wait_pg_up()
check(r.status == 75, "exit 75 when down longer than --retry-timeout "
      "(got %s)" % r.status)
check(2 <= took < 15, "it gave up after about --retry-timeout (%.1f s)" % took)
resume = r.summary.get("resume_from_line", 0)
settled = count(T)
check(1 < resume <= n, "the summary says where to resume (line %s)" % resume)
check(settled >= resume - 2,
      "every line before the resume point is stored (%d rows, resume %d)"
      % (settled, resume))
check(r.summary.get("dead_lettered") == 1,
      "the early bad line is dead-lettered already")

r2 = load(["--table", T, "--dead-letter", dlq, "--start-line", str(resume),
           src])
check(r2.status == 2, "the resumed load completes (status %s)" % r2.status)
check(r2.summary.get("lines") == n - resume + 1,
      "it read from line %d on (%s)" % (resume, r2.summary))
check(count(T) == n - 2, "the set is complete: %d rows" % (n - 2))
with open(dlq) as f:
    dead = [json.loads(l)["line"] for l in f]
check(dead == [5, n], "each bad line dead-lettered once (%s)" % dead)
psql("DROP TABLE %s" % T)
finish()
