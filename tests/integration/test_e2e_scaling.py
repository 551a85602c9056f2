#!/usr/bin/env python3
"""End to end: scaling. One worker consumes a load produced over about
20 s; a second joins the group in the middle of it (partitions move:
"partitions revoked" in the first, "partitions assigned" in the second);
then the first leaves with SIGTERM (exit 0) and its partitions move to the
second. Nothing is lost (full reconciliation) and no message is processed
twice: over the final "stopped" lines of both workers, consumed = the
messages produced, stored + duplicates = the good messages (the duplicates
produced on purpose count as duplicates), dead_lettered = the bad ones."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e  # noqa: E402
from e2e import check, say  # noqa: E402


def body():
    names = e2e.Names("scaling")
    d = e2e.workdir("scaling")
    names.create(4)
    msgs = e2e.make_messages(e2e.scaled(4000), seed=53)
    n_rows, n_bad = e2e.expected_counts(msgs)
    n_good = sum(1 for m in msgs if m.kind in ("good", "dup"))
    say("messages: %d (%s)" % (len(msgs), e2e.summary(msgs)))
    args = e2e.worker_args_fast()
    a = e2e.Worker("a", d, names.topic, names.group, names.table, args).start()
    b = e2e.Worker("b", d, names.topic, names.group, names.table, args)
    prod = e2e.PacedProducer(names.topic, msgs, chunks=20, interval=1.0, dirpath=d)
    prod.start()
    check(e2e.wait_until(lambda: a.partition_events("partitions assigned"), 30,
                         what="a's partitions"),
          "worker a gets the partitions")
    check(e2e.wait_until(lambda: e2e.row_count(names.table) >= 0.25 * n_rows, 60,
                         interval=0.2, what="25% of the rows"),
          "the run got going (25% of the rows)")
    b.start()
    moved = e2e.wait_until(lambda: b.partition_events("partitions assigned") and
                           a.partition_events("partitions revoked"), 60, what="a rebalance")
    check(moved, "partitions move when b joins (revoked in a, assigned in b)")
    for w in (a, b):
        say("%s: %s" % (w.name, [(x["msg"], x["partitions"]) for x in w.lines()
                                 if x.get("msg", "").startswith("partitions")]))
    check(e2e.wait_until(lambda: e2e.row_count(names.table) >= 0.6 * n_rows, 60,
                         interval=0.2, what="60% of the rows"), "60% of the rows")
    check(prod.produced < len(msgs), "a leaves while messages are still produced")
    assigned_b = len(b.partition_events("partitions assigned"))
    rc, took = a.term(timeout=60)
    check(rc == 0, "worker a exits 0 on SIGTERM (%.1f s)" % took, a.tail(20))
    check(e2e.wait_until(lambda: len(b.partition_events("partitions assigned")) > assigned_b, 60,
                         what="b takes over"), "b takes a's partitions over")
    prod.join(120)
    check(prod.error is None, "all messages produced", prod.error)
    check(e2e.wait_done(names, msgs, timeout=120 * e2e.SCALE, workers=[b], producer=prod),
          "all messages processed")
    e2e.settle_in_flight([b])
    e2e.stop_all([b])
    data = e2e.reconcile(names, msgs)
    e2e.check_no_crit(data)
    e2e.check_committed(names, d)
    ta = e2e.worker_totals([a])
    tb = e2e.worker_totals([b])
    say("stopped a: %s" % ta)
    say("stopped b: %s" % tb)
    check(ta.get("consumed", 0) > 0 and tb.get("consumed", 0) > 0, "both workers did work")
    tot = e2e.worker_totals([a, b])
    check(tot.get("consumed") == len(msgs), "no message consumed twice: consumed %s = %d"
          % (tot.get("consumed"), len(msgs)))
    check(tot.get("stored", 0) + tot.get("duplicates", 0) == n_good,
          "no message processed twice: stored + duplicates = %d good messages "
          "(%d produced twice on purpose)" % (n_good, n_good - n_rows), tot)
    check(tot.get("stored") == n_rows, "stored = %d rows" % n_rows, tot)
    check(tot.get("dead_lettered") == n_bad, "dead_lettered = %d bad messages" % n_bad, tot)
    n_tomb = sum(1 for m in msgs if m.kind == "tombstone")
    check(tot.get("tombstones") == n_tomb, "tombstones = %d" % n_tomb, tot)
    e2e.drop_table_if_passed(names.table)


if __name__ == "__main__":
    e2e.main(body)
