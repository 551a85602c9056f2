#!/usr/bin/env python3
"""End to end: where a worker starts on the partitions it is assigned.
The worker asks the group coordinator for the committed offsets in the
rebalance callback and assigns explicit offsets, so librdkafka 2.0.2 never
takes its slow path for a new group (fetch committed offsets, find none,
wait a fixed 100 ms, then look up the log start), which it logs (debug,
facility OFFSET) as "no previously committed offset available".
  - a new group: `partitions assigned` names each partition @beginning,
    librdkafka never logs the slow path, and every message is stored;
  - the same group after a stop and 6 more messages: each partition is
    assigned @<its committed offset> (as Kafka's ConsumerGroupCommand
    reports it), `partition started` begins there, and nothing is
    replayed (no duplicates)."""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e  # noqa: E402
from e2e import Msg, check  # noqa: E402

SLOW = "no previously committed offset available"


def envelope(i):
    return (b'{"thread_id": "s-%d", "checkpoint_id": "c%d", "checkpoint": {"i": %d}}'
            % (i % 5, i, i))


def msgs(a, b):
    return [Msg("good", b"s-%d" % (i % 5), envelope(i)) for i in range(a, b)]


def assigned(w):
    """{partition: "@..."} of the worker's last `partitions assigned`."""
    line = w.last("partitions assigned")
    out = {}
    for m in re.finditer(r"\[(\d+)\](@\w+)?", (line or {}).get("partitions", "")):
        out[int(m.group(1))] = m.group(2) or ""
    return out


def run_until(w, names, n_rows):
    w.start()
    ok = e2e.wait_until(lambda: e2e.row_count(names.table) == n_rows, 60, interval=0.2,
                        what="%d rows" % n_rows)
    rc, _ = w.term(timeout=30)
    return ok and rc == 0


def body():
    names = e2e.Names("start_offsets")
    d = e2e.workdir("start_offsets")
    names.create(2)
    e2e.produce(names.topic, msgs(0, 10), os.path.join(d, "first.txt"))
    args = e2e.worker_args_fast() + ["--log-level", "debug", "-X", "debug=topic"]
    w = e2e.Worker("a", d, names.topic, names.group, names.table, args)
    check(run_until(w, names, 10), "new group: all 10 messages stored, exit 0")
    check(assigned(w) == {0: "@beginning", 1: "@beginning"},
          "new group: both partitions assigned @beginning", assigned(w))
    slow = [x["msg"] for x in w.lines() if SLOW in x.get("msg", "")]
    offset_lines = [x for x in w.lines() if x.get("facility") == "OFFSET"]
    check(offset_lines and not slow, "librdkafka never took the slow path (%d OFFSET "
          "debug lines, none '%s')" % (len(offset_lines), SLOW), slow[:2])

    committed = {p: o[0] for p, o in e2e.group_offsets(names.group, names.topic, d).items()}
    check(sum(committed.values()) == 10, "committed offsets add up to 10", committed)
    e2e.produce(names.topic, msgs(10, 16), os.path.join(d, "second.txt"))
    w2 = e2e.Worker("b", d, names.topic, names.group, names.table, args)
    check(run_until(w2, names, 16), "same group: the 6 new messages stored, exit 0")
    want = {p: "@%d" % o for p, o in committed.items()}
    check(assigned(w2) == want, "same group: each partition assigned @its committed "
          "offset", (assigned(w2), want))
    started = {}
    for x in w2.lines():
        m = re.match(r".*\[(\d+)\]$", x.get("partition", ""))
        if x.get("msg") == "partition started" and m:
            started[int(m.group(1))] = x.get("offset")
    check(all(started.get(p) == o for p, o in committed.items() if o < 16),
          "partition started at the committed offsets", (started, committed))
    tot = e2e.worker_totals([w2])
    check(tot.get("stored") == 6 and tot.get("duplicates") == 0,
          "nothing replayed: 6 stored, 0 duplicates", tot)
    e2e.drop_table_if_passed(names.table)


if __name__ == "__main__":
    e2e.main(body)
