#!/usr/bin/env python3
"""--jobs: the same corpus loaded with one connection and with three gives
the same table and the same summary counts; with three, the dead-letter
file is in line order with each bad line once; PostgreSQL stopped in the
middle of a three-job load gives 75, and resuming from resume_from_line
completes the set with no line missing."""
import json
import os
import threading
import time

from pgtest import (check, count, feed, finish, gen, langgraph_table, load,
                    lines_of, pg_ctl, psql, start_load_stdin, wait_for,
                    wait_pg_up, wait_run, workdir)

d = workdir("load_jobs")
rows = lines_of(gen(os.path.join(d, "gen.ndjson"), 3000, avg_bytes=1200,
                    nan_rate=0.02, seed=51))
# Bad lines spread over the input (one of each kind PostgreSQL or the
# sanitizer refuses), and the same key three times (the last copy wins).
bad = {}
for i in range(7, len(rows), 97):
    kind = (i // 97) % 3
    if kind == 0:
        rows[i] = b'{"thread_id": "x", "checkpoint": {}}'  # no checkpoint_id
    elif kind == 1:
        rows[i] = b'{"broken'
    else:  # refused by the CHECK constraint
        rows[i] = json.dumps({"thread_id": "t-rej-%d" % i,
                              "checkpoint_id": "reject-%d" % i,
                              "checkpoint": {"v": 1}}).encode()
    bad[i + 1] = kind
for k in range(3):
    rows[1000 + 500 * k] = json.dumps(
        {"thread_id": "t-same", "checkpoint_id": "c-same",
         "checkpoint": {"copy": k}}).encode()
src = os.path.join(d, "input.ndjson")
with open(src, "wb") as f:
    f.write(b"\n".join(rows) + b"\n")
n = len(rows)
nbad = len(bad)
T = "jobs_cp"
CHECK = ",\n    CONSTRAINT no_reject CHECK (checkpoint_id NOT LIKE 'reject-%')"
ROWS = ("SELECT md5(string_agg(thread_id || '|' || checkpoint_ns || '|' || "
        "checkpoint_id || '|' || coalesce(parent_checkpoint_id, '-') || '|' "
        "|| coalesce(type, '-') || '|' || checkpoint::text || '|' || "
        "metadata::text, E'\\n' ORDER BY thread_id, checkpoint_ns, "
        "checkpoint_id)) FROM %s" % T)
KEYS = ("lines", "stored", "duplicates", "dead_lettered", "rewrites", "bytes")

runs = {}
for jobs in (1, 3):
    langgraph_table(T, CHECK)
    dlq = os.path.join(d, "dead-%d.jsonl" % jobs)
    r = load(["--table", T, "--jobs", str(jobs), "--batch-rows", "200",
              "--on-conflict", "update", "--dead-letter", dlq, src])
    runs[jobs] = (r, psql(ROWS), count(T), dlq)
    check(r.status == 2, "--jobs %d: status 2 (got %s)" % (jobs, r.status))
    check(r.summary.get("connects") == jobs,
          "--jobs %d: %d connections (%s)" % (jobs, jobs,
                                              r.summary.get("connects")))
(r1, h1, c1, dl1), (r3, h3, c3, dl3) = runs[1], runs[3]
check(c1 == c3 == n - nbad - 2, "same row count, %d (%d, %d)"
      % (n - nbad - 2, c1, c3))
check(h1 == h3, "identical table contents with --jobs 1 and --jobs 3")
check(all(r1.summary.get(k) == r3.summary.get(k) for k in KEYS),
      "identical summary counts (%s / %s)"
      % ({k: r1.summary.get(k) for k in KEYS},
         {k: r3.summary.get(k) for k in KEYS}))
check(r3.summary.get("stored") == n - nbad
      and r3.summary.get("duplicates") == 0
      and r3.summary.get("dead_lettered") == nbad,
      "every line has one outcome (%s)" % r3.summary)
check(psql("SELECT checkpoint->>'copy' FROM %s WHERE thread_id = 't-same'"
           % T) == "2", "one thread's rows keep their order: the last copy won")
for jobs, dlq in ((1, dl1), (3, dl3)):
    with open(dlq) as f:
        dead = [json.loads(l) for l in f]
    lines = [e["line"] for e in dead]
    check(lines == sorted(bad), "--jobs %d: dead letters in line order, each "
          "bad line once (%d of %d)" % (jobs, len(lines), nbad))
    codes = {e["line"]: e["error_code"] for e in dead}
    want = {1: "malformed_json", 0: "bad_envelope", 2: "pg_23514"}
    check(all(codes.get(l) == want[k] for l, k in bad.items()),
          "--jobs %d: each with its reason" % jobs)

# Loading again with three jobs: every good row is a duplicate (update
# mode: stored again), nothing is added.
r = load(["--table", T, "--jobs", "3", src])
check(r.status == 2 and r.summary.get("duplicates") == n - nbad
      and count(T) == c3, "a reload with --jobs 3 adds nothing (%s)"
      % r.summary)

# An outage with three jobs: 75, then resume.
langgraph_table(T, CHECK)
dlq = os.path.join(d, "dead-outage.jsonl")
errp = os.path.join(d, "outage.txt")
p = start_load_stdin(["--table", T, "--jobs", "3", "--retry-timeout", "2",
                      "--on-conflict", "update",
                      "--batch-rows", "50", "--dead-letter", dlq], errp)
result = {}
writer = threading.Thread(
    target=lambda: result.update(fed=feed(p, rows, 60, 0.03)))
writer.start()
try:
    def some():
        v = psql("SELECT count(*) FROM %s" % T, check_ok=False)
        return v.isdigit() and int(v) >= 600
    check(wait_for(some, limit=30), "the load is under way")
    pg_ctl("stop")
    t0 = time.time()
    r = wait_run(p, errp, timeout=60)
    took = time.time() - t0
    writer.join(timeout=10)
finally:
    pg_ctl("start")
    wait_pg_up()
check(r.status == 75, "--jobs 3: exit 75 when down longer than "
      "--retry-timeout (got %s)" % r.status)
check(took < 15, "all jobs stopped soon after (%.1f s)" % took)
resume = r.summary.get("resume_from_line", 0)
check(1 < resume <= n, "the summary says where to resume (line %s)" % resume)
keys = set(psql("SELECT thread_id || '|' || checkpoint_id FROM %s" % T)
           .split("\n"))


def key(i):
    e = json.loads(rows[i])
    return "%s|%s" % (e.get("thread_id"), e.get("checkpoint_id"))


missing = [i + 1 for i in range(resume - 1)
           if (i + 1) not in bad and key(i) not in keys]
check(not missing, "every good line before the resume point is stored "
      "(missing %s)" % missing[:10])
with open(dlq) as f:
    first = [json.loads(l)["line"] for l in f]
check(first == sorted(l for l in bad if l < resume),
      "dead letters so far: the bad lines before the resume point, in order")

r2 = load(["--table", T, "--jobs", "3", "--on-conflict", "update",
           "--dead-letter", dlq,
           "--start-line", str(resume), src])
check(r2.status == 2, "the resumed load completes (status %s)" % r2.status)
check(count(T) == n - nbad - 2, "the set is complete: %d rows (%d)"
      % (n - nbad - 2, count(T)))
check(psql(ROWS) == h1, "and equals the --jobs 1 load")
with open(dlq) as f:
    dead = [json.loads(l)["line"] for l in f]
check(dead == sorted(bad), "each bad line dead-lettered once, in order "
      "(%d entries, %d bad lines)" % (len(dead), nbad))
psql("DROP TABLE %s" % T)
finish()
