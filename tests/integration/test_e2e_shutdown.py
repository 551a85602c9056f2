#!/usr/bin/env python3
"""End to end: shutdown. A worker works through a backlog; SIGTERM in the
middle of it exits 0 within the shutdown deadline (--shutdown-timeout-ms
10000), and leaves exactly what it finished committed: every message below
the committed offset of its partition is a row or a dead-letter record,
none at or above it is. A worker started again in the same group stores
the rest and replays nothing (duplicates 0); a third start finds nothing to
do: "stored":0 and no new rows."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e  # noqa: E402
from e2e import check, say  # noqa: E402

DEADLINE_S = 10


def body():
    names = e2e.Names("shutdown")
    d = e2e.workdir("shutdown")
    names.create(4)
    # No duplicates on purpose: then a replay after the restart would show.
    msgs = e2e.make_messages(e2e.scaled(4000), seed=67, rates={"dup": 0})
    n_rows, n_bad = e2e.expected_counts(msgs)
    say("messages: %d (%s)" % (len(msgs), e2e.summary(msgs)))
    e2e.produce(names.topic, msgs, os.path.join(d, "all.txt"))
    args = e2e.worker_args_fast() + ["--shutdown-timeout-ms", str(DEADLINE_S * 1000)]
    w = e2e.Worker("a", d, names.topic, names.group, names.table, args).start()
    check(e2e.wait_until(lambda: e2e.row_count(names.table) >= 0.3 * n_rows, 60,
                         interval=0.1, what="30% of the rows"),
          "the run got going (30% of the rows)")
    rc, took = w.term(timeout=DEADLINE_S + 20)
    check(rc == 0, "SIGTERM during the load: exit 0", w.tail(20))
    check(took <= DEADLINE_S + 2, "... within the shutdown deadline (%.1f s <= %d s)"
          % (took, DEADLINE_S + 2))
    stopped = w.last("stopped")
    check(stopped is not None and stopped.get("in_flight") == 0,
          "the worker stopped with nothing in flight", stopped)
    rows1 = e2e.row_keys(names.table)
    say("%d/%d rows stored before the stop" % (len(rows1), n_rows))
    check(len(rows1) < n_rows, "the stop came in the middle of the load")

    # Exactly what was finished is committed.
    offs = e2e.group_offsets(names.group, names.topic, d)
    say("committed after the stop: %s" % offs)
    by_value = {m.value: m for m in msgs}
    src = e2e.consume(names.topic)
    dlq_src = set()
    for rec in e2e.consume(names.dlq):
        h = rec.headers
        dlq_src.add((int(h["__connect.errors.partition"][0]),
                     int(h["__connect.errors.offset"][0])))
    below_missing, above_done = [], []
    for rec in src:
        m = by_value[rec.value]
        if m.kind == "tombstone":
            continue  # skipped: leaves no trace
        committed = (offs.get(rec.partition) or (None,))[0] or 0
        done = (m.rowkey in rows1) if m.rowkey else ((rec.partition, rec.offset) in dlq_src)
        if rec.offset < committed and not done:
            below_missing.append((rec.partition, rec.offset, m.kind))
        if rec.offset >= committed and done:
            above_done.append((rec.partition, rec.offset, m.kind))
    check(sum((o[0] or 0) for o in offs.values()) > 0, "offsets were committed")
    check(not below_missing, "every message below the committed offsets is finished",
          below_missing[:5])
    check(not above_done, "everything finished is committed (nothing finished at or "
          "above the committed offsets)", above_done[:5])

    # A second start does the rest and replays nothing.
    w.start()
    check(e2e.wait_done(names, msgs, timeout=120 * e2e.SCALE, workers=[w]),
          "a worker started again stores the rest")
    e2e.settle_in_flight([w])
    rc, took = w.term(timeout=DEADLINE_S + 20)
    check(rc == 0, "second stop: exit 0 (%.1f s)" % took)
    st = w.last("stopped") or {}
    check(st.get("duplicates") == 0, "the second start replays nothing: duplicates 0", st)
    check(st.get("stored") == n_rows - len(rows1), "the second start stores the %d missing "
          "rows" % (n_rows - len(rows1)), st)
    data = e2e.reconcile(names, msgs)
    e2e.check_no_crit(data)
    e2e.check_committed(names, d)

    # A third start finds nothing to do.
    w.start()
    check(e2e.wait_until(lambda: w.partition_events("partitions assigned")[2:], 30,
                         what="the third start's partitions"),
          "the third start gets the partitions")
    time.sleep(3)
    rc, took = w.term(timeout=DEADLINE_S + 20)
    check(rc == 0, "third stop: exit 0 (%.1f s)" % took)
    st = w.last("stopped") or {}
    check(st.get("stored") == 0 and st.get("consumed") == 0,
          'the third start stores nothing: "stored":0, "consumed":0', st)
    check(e2e.row_count(names.table) == n_rows, "no new rows")
    e2e.drop_table_if_passed(names.table)


if __name__ == "__main__":
    e2e.main(body)
