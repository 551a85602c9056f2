#!/usr/bin/env python3
"""End to end: a rebalance during a PostgreSQL outage. Worker a holds a
batch it cannot write (PostgreSQL stopped); worker b joins the group with
eager assignment (range), so a gives up every partition and drops the
rows of its batch (b, or a again, replays them from the committed
offsets). When PostgreSQL returns, both workers resume and every message
ends up a row: a worker left with no rows to retry must not stay paused.
Then the usual reconciliation."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e  # noqa: E402
from e2e import check, say  # noqa: E402

GOOD_ONLY = {"dup": 0, "malformed": 0, "bad_envelope": 0, "check": 0,
             "too_large": 0, "tombstone": 0}
EAGER = ["-X", "partition.assignment.strategy=range"]


def body():
    names = e2e.Names("rebal_outage")
    d = e2e.workdir("rebal_outage")
    names.create(2)
    first = e2e.make_messages(40, seed=81, rates=GOOD_ONLY)
    second = e2e.make_messages(40, seed=82, rates=GOOD_ONLY, thread_prefix="b-")
    args = e2e.worker_args_fast() + EAGER
    a = e2e.Worker("a", d, names.topic, names.group, names.table, args).start()
    e2e.produce(names.topic, first, os.path.join(d, "first.txt"))
    check(e2e.wait_until(lambda: e2e.row_count(names.table) >= len(first), 60,
                         interval=0.2, what="the first rows"), "worker a stores the first burst")
    try:
        e2e.pg_sh("stop", e2e.PG_DIR)
        e2e.produce(names.topic, second, os.path.join(d, "second.txt"))
        check(e2e.wait_until(lambda: a.count("PostgreSQL unavailable, partitions paused") > 0,
                             30, interval=0.2, what="a's failed write"),
              "worker a fails to write its batch and pauses")
        b = e2e.Worker("b", d, names.topic, names.group, names.table, args).start()
        check(e2e.wait_until(lambda: a.count("partitions revoked") > 0, 60, interval=0.2,
                             what="a's revocation"),
              "worker b joins: a gives up its partitions (eager assignment)")
        check(e2e.wait_until(lambda: b.count("partitions assigned") > 0 and
                             a.count("partitions assigned") > 1, 60, interval=0.2,
                             what="the new assignment"),
              "both workers get partitions")
        time.sleep(2)
    finally:
        e2e.pg_sh("start", e2e.PG_DIR)
    msgs = first + second
    check(e2e.wait_done(names, msgs, timeout=60, workers=[a, b]),
          "after PostgreSQL returns every message is a row (no worker stays paused)")
    e2e.settle_in_flight([a, b])
    e2e.stop_all([a, b])
    e2e.reconcile(names, msgs)
    e2e.check_committed(names, d)
    e2e.drop_table_if_passed(names.table)


if __name__ == "__main__":
    e2e.main(body, cleanup=e2e.ensure_pg)
