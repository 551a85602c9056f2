#!/usr/bin/env python3
"""End to end: reconciliation. N messages (4000; NANGUARD_E2E_SCALE=5:
20000) on a 4-partition topic - NaN/Infinity envelopes, duplicates,
malformed JSON (also nested too deep), bad envelopes, rows a CHECK
constraint refuses, messages above --max-message-bytes, tombstones -
consumed by two workers in one group. Every message must end in exactly
one place: a row, or a dead-letter record with its notification (a
tombstone: nowhere, but counted); the group's committed offsets reach the
end of every partition; SIGTERM exits 0."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e  # noqa: E402
from e2e import check, say  # noqa: E402


def body():
    names = e2e.Names("reconcile")
    d = e2e.workdir("reconcile")
    names.create(4)
    msgs = e2e.make_messages(e2e.scaled(4000), seed=11)
    say("messages: %d (%s)" % (len(msgs), e2e.summary(msgs)))
    e2e.produce(names.topic, msgs, os.path.join(d, "all.txt"))
    say("produced")
    ws = [e2e.Worker(n, d, names.topic, names.group, names.table,
                     e2e.worker_args_fast()).start() for n in ("a", "b")]
    check(e2e.wait_done(names, msgs, timeout=120 * e2e.SCALE, workers=ws),
          "all messages processed")
    e2e.settle_in_flight(ws)
    both = e2e.wait_until(lambda: all(w.count("partitions assigned") for w in ws), 1)
    check(both, "both workers got partitions")
    e2e.stop_all(ws)
    data = e2e.reconcile(names, msgs)
    e2e.check_no_crit(data)
    e2e.check_committed(names, d)
    tot = e2e.worker_totals(ws)
    n_rows, n_bad = e2e.expected_counts(msgs)
    say("worker totals: %s" % tot)
    check(tot.get("dead_lettered") == n_bad,
          "the workers count %d dead letters" % n_bad, tot)
    n_tomb = sum(1 for m in msgs if m.kind == "tombstone")
    check(tot.get("tombstones") == n_tomb, "the workers skip and count %d tombstones" % n_tomb,
          tot)
    e2e.drop_table_if_passed(names.table)


if __name__ == "__main__":
    e2e.main(body)
