#!/usr/bin/env python3
"""End to end: dead-lettered once across a SIGKILL (filter/handover.h).

Worker a takes up a partition whose first message is a good checkpoint
that cannot be written yet (the table is locked), and after it bad
messages, which it dead-letters and notifies: their offsets are held
behind the unwritten row, so nothing past it is committed. a is killed
with SIGKILL. Worker b takes the partition over: the group's commit says
a may have dead-lettered messages past it, b reads the dead-letter and
notification topics, and dead-letters none of them again. The lock goes,
every row is stored, and the reconciliation finds every bad message
dead-lettered exactly once and notified exactly once.

Then b stops with SIGTERM (a clean commit: nothing dead-lettered past it)
and worker c, taking over, reads nothing (no scan after a clean
handover)."""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e  # noqa: E402
from e2e import check, say  # noqa: E402

ARGS = e2e.worker_args_fast() + ["-X", "session.timeout.ms=6000", "-X",
                                 "heartbeat.interval.ms=1000"]
SCAN_LINE = ("reading the dead-letter topic for what the previous owner of "
             "these partitions left")
FOUND_LINE = "dead letters the previous owner left"


class TableLock:
    """A psql session holding LOCK TABLE ... IN EXCLUSIVE MODE: reads go
    on, the worker's INSERT waits."""

    def __init__(self, table):
        self.p = subprocess.Popen(["psql", e2e.PG, "-X", "-q", "-t", "-v",
                                   "ON_ERROR_STOP=1"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.p.stdin.write(("BEGIN; LOCK TABLE %s IN EXCLUSIVE MODE; "
                            "SELECT 'locked';\n" % table).encode())
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        check(b"locked" in line, "the table is locked", line)

    def release(self):
        self.p.stdin.write(b"COMMIT;\n")
        self.p.stdin.close()
        self.p.wait(30)


def body():
    names = e2e.Names("handover")
    d = e2e.workdir("handover")
    names.create(1)
    msgs = e2e.make_messages(40, seed=97, rates={
        "dup": 0, "malformed": 0.2, "bad_envelope": 0.1, "check": 0,
        "too_large": 0, "tombstone": 0})
    first_good = next(i for i, m in enumerate(msgs) if not m.bad)
    msgs.insert(0, msgs.pop(first_good))  # a row first: the rest waits on it
    n_rows, n_bad = e2e.expected_counts(msgs)
    say("messages: %d (%s)" % (len(msgs), e2e.summary(msgs)))
    lock = TableLock(names.table)
    e2e.produce(names.topic, msgs, os.path.join(d, "msgs.tsv"))
    a = e2e.Worker("a", d, names.topic, names.group, names.table, ARGS).start()
    check(e2e.wait_until(lambda: e2e.count_records(names.dlq) >= n_bad and
                         e2e.count_records(names.notify) >= n_bad, 60,
                         what="a's dead letters and notifications"),
          "worker a dead-lettered and notified every bad message while the "
          "first row waits")
    check(e2e.row_count(names.table) == 0, "no row is written yet (the lock)")
    time.sleep(1.5)  # a's commits go on: they stay at the waiting row
    a.kill9()
    b = e2e.Worker("b", d, names.topic, names.group, names.table, ARGS).start()
    check(e2e.wait_until(lambda: b.last(FOUND_LINE) is not None, 60,
                         what="b's handover"),
          "worker b read what a left when it was given the partition")
    found = b.last(FOUND_LINE)
    check(found is not None and found.get("count") == n_bad,
          "b found a's %d dead letters past the committed offset" % n_bad,
          found)
    lock.release()
    check(e2e.wait_done(names, msgs, timeout=120, workers=[b]),
          "every row stored once the lock is gone")
    e2e.settle_in_flight([b])
    rc, _ = b.term()
    check(rc == 0, "worker b stops on SIGTERM with exit 0", rc)
    data = e2e.reconcile(names, msgs)  # no duplicate dead letter allowed
    e2e.check_committed(names, d)
    check(len(data["dlq"]) == n_bad,
          "dead-letter records: %d for %d bad messages" % (len(data["dlq"]), n_bad))

    c = e2e.Worker("c", d, names.topic, names.group, names.table, ARGS).start()
    check(e2e.wait_until(lambda: c.last("partition started") is not None or
                         c.count("partitions assigned") > 0, 60,
                         what="c's assignment"), "worker c got the partition")
    time.sleep(1.0)
    check(c.count(SCAN_LINE) == 0,
          "after b's clean stop, c reads nothing from the dead-letter topic")
    rc, _ = c.term()
    check(rc == 0, "worker c stops on SIGTERM with exit 0", rc)
    e2e.drop_table_if_passed(names.table)


if __name__ == "__main__":
    e2e.main(body)
