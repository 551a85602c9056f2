#!/usr/bin/env python3
"""Bad envelopes (missing thread_id, checkpoint not an object, malformed
JSON, too large) and rows PostgreSQL refuses (a CHECK constraint, a trigger)
go to the dead-letter file with the right code and the original line;
every other row of their batches is stored; one bad row in a batch of n
costs O(log n) round trips to isolate."""
import json
import math
import os

from pgtest import (check, count, finish, gen, langgraph_table, load,
                    lines_of, psql, workdir)

d = workdir("load_dead_letter")
T = "dl_cp"
langgraph_table(T, ",\n    CONSTRAINT no_reject CHECK (checkpoint_id NOT LIKE "
                "'reject-%')")
psql("""CREATE FUNCTION dl_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.thread_id = 'trigger-reject' THEN
    RAISE EXCEPTION 'thread % is refused by policy', NEW.thread_id;
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER dl_refuse BEFORE INSERT ON %s
  FOR EACH ROW EXECUTE FUNCTION dl_refuse();""".replace("%s", T))

good = lines_of(gen(os.path.join(d, "good.ndjson"), 600, avg_bytes=800,
                    seed=21))


def env(**kw):
    e = {"thread_id": "t-bad", "checkpoint_id": "c", "checkpoint": {"a": 1}}
    e.update(kw)
    return json.dumps(e).encode()


bad = {  # line number (1 based) -> (line, expected code)
    3: (json.dumps({"checkpoint_id": "x", "checkpoint": {}}).encode(),
        "bad_envelope"),
    10: (env(checkpoint_id="c-str", checkpoint="not an object"),
         "bad_envelope"),
    20: (b'{"thread_id": "x", "checkpoint_id": NaNa, "checkpoint": {}}',
         "malformed_json"),
    25: (b'{"thread_id": "x", "checkpoint_id": "y", "checkpoint": {}',
         "malformed_json"),
    30: (env(checkpoint_id="big", checkpoint={"s": "x" * 300000}),
         "too_large"),
    40: (env(checkpoint_id="reject-1", checkpoint={"v": float("nan")}),
         "pg_23514"),
    300: (env(thread_id="trigger-reject", checkpoint_id="c-300"),
          "pg_P0001"),
    550: (env(checkpoint_id="reject-2"), "pg_23514"),
}
lines = []
it = iter(good)
total = len(good) + len(bad)
for i in range(1, total + 1):
    lines.append(bad[i][0] if i in bad else next(it))
text = b"\n".join(lines[:44]) + b"\n\n   \n" + b"\n".join(lines[44:]) + b"\n"
src = os.path.join(d, "input.ndjson")
with open(src, "wb") as f:
    f.write(text)
# physical line numbers: the two blank lines after line 44 shift the rest
phys = {i: (i if i <= 44 else i + 2) for i in bad}

dlq = os.path.join(d, "dead.jsonl")
r = load(["--table", T, "--dead-letter", dlq, "--batch-rows", "256",
          "--max-message-bytes", "200000", src])
check(r.status == 2, "exit status 2 when lines were dead-lettered (got %s)"
      % r.status)
check(r.summary.get("dead_lettered") == len(bad)
      and r.summary.get("stored") == len(good),
      "summary: %d dead-lettered, %d stored (%s)"
      % (len(bad), len(good), r.summary))
check(count(T) == len(good), "every good row stored, in every batch")
with open(dlq, "rb") as f:
    entries = [json.loads(l) for l in f.read().splitlines()]
check(len(entries) == len(bad), "one dead letter per bad line")
check([e["line"] for e in entries] == sorted(phys.values()),
      "dead letters in line order, with physical line numbers")
by_line = {e["line"]: e for e in entries}
for i, (line, code) in sorted(bad.items()):
    e = by_line.get(phys[i], {})
    check(e.get("error_code") == code,
          "line %d: %s (got %s: %s)" % (phys[i], code, e.get("error_code"),
                                        e.get("message", "")[:80]))
    if code == "too_large":
        # Too long to keep (skipped while read): its length instead.
        check("value" not in e and e.get("bytes") == len(line),
              "line %d: too_large gives the byte count, not the value" % phys[i])
    else:
        check(e.get("value", "").encode() == line,
              "line %d: the value is the original line" % phys[i])
check("thread_id" in by_line.get(3, {}).get("message", ""),
      "bad_envelope says which field")
check("no_reject" in by_line.get(phys[40], {}).get("message", ""),
      "pg_23514 carries the server's message")
check("refused by policy" in by_line.get(phys[300], {}).get("message", ""),
      "the trigger's message is kept")

# Loading again: the good rows are duplicates, the bad ones dead-lettered
# again (appended), nothing else happens.
r2 = load(["--table", T, "--dead-letter", dlq, "--batch-rows", "256",
           "--max-message-bytes", "200000", src])
check(r2.status == 2 and r2.summary.get("duplicates") == len(good),
      "reload: good rows are duplicates")
check(len(lines_of(dlq)) == 2 * len(bad), "reload appends to the file")

# Without a dead-letter file the lines are counted and logged, not lost.
r3 = load(["--table", T, "--batch-rows", "256", "--max-message-bytes",
           "200000", src])
check(r3.status == 2 and r3.summary.get("dead_lettered") == len(bad)
      and "line not stored" in r3.stderr,
      "without --dead-letter: logged and counted, status 2")

# One bad row in a batch of n: O(log n) round trips to isolate.
for n, pos in ((1024, 700), (257, 0), (64, 63)):
    psql("TRUNCATE %s" % T)
    rows = lines_of(gen(os.path.join(d, "b%d.ndjson" % n), n, avg_bytes=300,
                        seed=n))
    rows[pos] = env(checkpoint_id="reject-%d" % n)
    path = os.path.join(d, "b%d.ndjson" % n)
    with open(path, "wb") as f:
        f.write(b"\n".join(rows) + b"\n")
    r = load(["--table", T, "--batch-rows", str(n), "--dead-letter",
              os.path.join(d, "b.jsonl"), path])
    levels = math.ceil(math.log2(n))
    rt = r.summary.get("bisect_round_trips", -1)
    check(r.status == 2 and r.summary.get("stored") == n - 1
          and count(T) == n - 1,
          "batch of %d with one bad row: %d stored" % (n, n - 1))
    check(0 < rt <= 6 * levels,
          "batch of %d: %d bisection round trips <= 6*log2(n) = %d"
          % (n, rt, 6 * levels))

# Two bad rows far apart: still far below n.
psql("TRUNCATE %s" % T)
rows = lines_of(gen(os.path.join(d, "two.ndjson"), 1024, avg_bytes=300,
                    seed=99))
rows[100] = env(checkpoint_id="reject-a")
rows[900] = env(checkpoint_id="reject-b")
with open(os.path.join(d, "two.ndjson"), "wb") as f:
    f.write(b"\n".join(rows) + b"\n")
r = load(["--table", T, "--batch-rows", "1024", os.path.join(d, "two.ndjson")])
rt = r.summary.get("bisect_round_trips", -1)
check(r.summary.get("dead_lettered") == 2 and count(T) == 1022
      and rt <= 2 * 6 * 10, "two bad rows in 1024: %d round trips <= 120"
      % rt)
psql("DROP TABLE %s; DROP FUNCTION dl_refuse()" % T)
finish()
