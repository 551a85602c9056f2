#!/usr/bin/env python3
"""Loading the same input twice adds no row, in both conflict modes; update
mode overwrites (change a value, reload, see it); the same key twice in one
batch does not break DO UPDATE, and the last copy wins."""
import json
import os

from pgtest import (check, count, finish, gen, langgraph_table, load,
                    lines_of, psql, workdir)

d = workdir("load_idempotent")
corpus = gen(os.path.join(d, "corpus.ndjson"), 1500, avg_bytes=1500, seed=5)
n = len(lines_of(corpus))
T = "idem_cp"
langgraph_table(T)

for mode in ("nothing", "update"):
    psql("TRUNCATE %s" % T)
    a = load(["--table", T, "--on-conflict", mode, "--batch-rows", "400",
              corpus])
    b = load(["--table", T, "--on-conflict", mode, "--batch-rows", "400",
              corpus])
    check(a.status == 0 and a.summary.get("stored") == n,
          "%s: first load stores %d rows (%s)" % (mode, n, a.summary))
    check(count(T) == n, "%s: %d rows after the first load" % (mode, n))
    if mode == "nothing":
        check(b.status == 0 and b.summary.get("duplicates") == n
              and b.summary.get("stored") == 0,
              "nothing: the reload reports every row as a duplicate")
    else:
        check(b.status == 0 and b.summary.get("stored") == n,
              "update: the reload overwrites (stored) every row")
    check(count(T) == n, "%s: still %d rows after the reload" % (mode, n))

# Change one value, reload: update mode shows it, nothing mode does not.
rows = lines_of(corpus)
env = json.loads(rows[7].decode().replace("NaN", "null")
                 .replace("-Infinity", "null").replace("Infinity", "null"))
key = (env["thread_id"], env.get("checkpoint_ns", ""), env["checkpoint_id"])
changed = os.path.join(d, "changed.ndjson")
rows[7] = rows[7].replace(b'"checkpoint": {',
                          b'"checkpoint": {"marker": "v2", ', 1)
with open(changed, "wb") as f:
    f.write(b"\n".join(rows) + b"\n")
where = ("thread_id = '%s' AND checkpoint_ns = '%s' AND checkpoint_id = '%s'"
         % key)

r = load(["--table", T, changed])
check(r.status == 0 and r.summary.get("duplicates") == n,
      "nothing mode: the changed row is a duplicate")
check(count(T, where + " AND checkpoint->>'marker' = 'v2'") == 0,
      "nothing mode keeps the row that was there")
r = load(["--table", T, "--on-conflict", "update", changed])
check(r.status == 0 and r.summary.get("stored") == n,
      "update mode: every row stored")
check(count(T, where + " AND checkpoint->>'marker' = 'v2'") == 1,
      "update mode overwrote the changed row")
check(count(T) == n, "no row added by the update")

# The same key three times in one batch (and in one line each).
psql("TRUNCATE %s" % T)
dup = os.path.join(d, "dup.ndjson")
base = {"thread_id": "t-dup", "checkpoint_id": "c-1", "checkpoint": {"v": 1},
        "metadata": {"step": 1}}
with open(dup, "w") as f:
    for i in range(3):
        base["checkpoint"] = {"v": i, "x": float("nan")}
        f.write(json.dumps(base) + "\n")
    f.write(json.dumps(dict(base, checkpoint_id="c-2")) + "\n")
for mode in ("update", "nothing"):
    r = load(["--table", T, "--on-conflict", mode, dup])
    check(r.status == 0, "%s: repeated keys in one batch load (status %s)"
          % (mode, r.status))
    if mode == "update":
        check(r.summary.get("stored") == 2 and r.summary.get("duplicates") == 2,
              "update: the earlier copies are duplicates (%s)" % r.summary)
    else:
        check(r.summary.get("stored") == 0 and r.summary.get("duplicates") == 4,
              "nothing: everything already there")
    check(psql("SELECT checkpoint::text FROM %s WHERE checkpoint_id = 'c-1'"
               % T) == '{"v": 2, "x": null}',
          "%s: the last copy won, NaN stored as null" % mode)
    check(count(T) == 2, "%s: two rows" % mode)
psql("DROP TABLE %s" % T)
finish()
