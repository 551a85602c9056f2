#!/usr/bin/env python3
"""End to end: crash. As the reconciliation test, with the messages
produced over about 10 s, and one of the two workers killed with SIGKILL
in the middle of the run and started again. Reconciliation still holds:
rows may be replayed but are never duplicated; a bad message has exactly
one dead-letter record (the next owner finds what the killed worker
dead-lettered past its committed offset: filter/handover.h), and each
record one notification."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e  # noqa: E402
from e2e import check, say  # noqa: E402

# A killed member holds its partitions until its session expires.
CRASH_ARGS = ["-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=1000"]


def body():
    names = e2e.Names("crash")
    d = e2e.workdir("crash")
    names.create(4)
    msgs = e2e.make_messages(e2e.scaled(4000), seed=23)
    n_rows, n_bad = e2e.expected_counts(msgs)
    say("messages: %d (%s)" % (len(msgs), e2e.summary(msgs)))
    args = e2e.worker_args_fast() + CRASH_ARGS
    a = e2e.Worker("a", d, names.topic, names.group, names.table, args).start()
    b = e2e.Worker("b", d, names.topic, names.group, names.table, args).start()
    # The last 3 chunks wait for the kill: on a busy machine the workers can
    # fall behind the producer, and the kill must still come mid-production.
    prod = e2e.PacedProducer(names.topic, msgs, chunks=10, interval=1.0, dirpath=d,
                             hold_after=7)
    prod.start()
    mid = e2e.wait_until(lambda: e2e.row_count(names.table) >= 0.4 * n_rows, 60,
                         interval=0.2, what="40% of the rows")
    check(mid, "the run got going (40% of the rows)")
    stored_before = e2e.row_count(names.table)
    a.kill9()
    say("killed worker a with %d/%d rows stored, %d messages produced"
        % (stored_before, n_rows, prod.produced))
    check(prod.produced < len(msgs), "the kill happened while messages were still produced")
    prod.resume()
    time.sleep(1.0)
    a.start()
    prod.join(120)
    check(prod.error is None, "all messages produced", prod.error)
    check(e2e.wait_done(names, msgs, timeout=120 * e2e.SCALE, workers=[a, b], producer=prod),
          "all messages processed after the crash")
    e2e.settle_in_flight([a, b])
    e2e.stop_all([a, b])
    data = e2e.reconcile(names, msgs)
    e2e.check_no_crit(data)
    e2e.check_committed(names, d)
    tot = e2e.worker_totals([a, b], msg="progress", per_start=True)
    dups = sum(1 for m in msgs if m.kind == "dup")
    say("worker totals over all starts (last progress lines): %s; %d duplicates "
        "produced, so about %d replayed rows" % (tot, dups, tot.get("duplicates", 0) - dups))
    e2e.drop_table_if_passed(names.table)


if __name__ == "__main__":
    e2e.main(body)
