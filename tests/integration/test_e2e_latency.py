#!/usr/bin/env python3
"""End to end: a quiet topic is not held back by the batch timer. With
--batch-ms 60000, a worker that has read everything there is writes its
partial batch at once (the writer is idle, the consumer has nothing
waiting): a few messages are rows within seconds, not after a minute.
Each assigned partition is logged once as "partition started" with the
offset of its first message (0 on a new topic), and a second burst
produced while the worker runs is also stored without the timer. The
worker holds one PostgreSQL connection (its two batches share it)."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e  # noqa: E402
from e2e import check, say  # noqa: E402

PARTITIONS = 2
GOOD_ONLY = {"dup": 0, "malformed": 0, "bad_envelope": 0, "check": 0,
             "too_large": 0, "tombstone": 0}
# Well below --batch-ms: only the idle-writer rule can make it. The first
# limit includes joining the group; the second is for a running worker.
LIMIT_S = 20
LIMIT_RUNNING_S = 5


def body():
    names = e2e.Names("latency")
    d = e2e.workdir("latency")
    names.create(PARTITIONS)
    first = e2e.make_messages(12, seed=71, rates=GOOD_ONLY)
    e2e.produce(names.topic, first, os.path.join(d, "first.txt"))
    args = ["--batch-ms", "60000", "--retry-max-ms", "2000"]
    w = e2e.Worker("a", d, names.topic, names.group, names.table, args).start()
    t0 = time.time()
    check(e2e.wait_until(lambda: e2e.row_count(names.table) >= len(first), LIMIT_S + 30,
                         interval=0.2, what="the first burst's rows"),
          "the first burst is stored")
    took = time.time() - t0
    check(took < LIMIT_S, "... long before --batch-ms (60 s): %.1f s from the start, "
          "joining the group included" % took)

    # The design's "one PostgreSQL connection" per worker: both batches
    # (one filling, one being written) go over the same one.
    conns = e2e.psql_rows("SELECT count(*) FROM pg_stat_activity WHERE "
                          "application_name = 'nanguard' AND "
                          "datname = current_database()")
    check(conns == [["1"]], "the worker holds one PostgreSQL connection", conns)

    started = [x for x in w.lines() if x.get("msg") == "partition started"]
    parts = sorted(x.get("partition") for x in started)
    want = sorted("%s[%d]" % (names.topic, p) for p in range(PARTITIONS))
    check(parts == want, "one \"partition started\" line per assigned partition",
          parts)
    check(all(x.get("offset") == 0 for x in started),
          "... each at offset 0, the start of a new topic", started)

    second = e2e.make_messages(6, seed=72, rates=GOOD_ONLY)
    t1 = time.time()
    e2e.produce(names.topic, second, os.path.join(d, "second.txt"))
    total = len(first) + len(second)
    check(e2e.wait_until(lambda: e2e.row_count(names.table) >= total, LIMIT_S + 30,
                         interval=0.2, what="the second burst's rows"),
          "a second burst is stored too")
    took = time.time() - t1
    check(took < LIMIT_RUNNING_S, "... also without waiting for the timer: %.1f s "
          "(limit %d s)" % (took, LIMIT_RUNNING_S))
    rc, _ = w.term(timeout=30)
    check(rc == 0, "SIGTERM: exit 0")
    st = w.last("stopped") or {}
    check(st.get("stored") == total and st.get("in_flight") == 0,
          "the worker stored all %d and stopped with nothing in flight" % total, st)
    check(len([x for x in w.lines() if x.get("msg") == "partition started"]) == PARTITIONS,
          "no partition is \"started\" twice without a new assignment")
    e2e.drop_table_if_passed(names.table)


if __name__ == "__main__":
    e2e.main(body)
