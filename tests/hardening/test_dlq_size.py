#!/usr/bin/env python3
"""Every message has an outcome, whatever its size (issue 14, finding 1).

On the real broker: a source topic that allows 20 MB records, a dead-letter
topic at the broker's default (about 1 MB), and between two good envelopes
a 10 MiB random value (not JSON: it must be dead-lettered). Before, the
dead-letter record was refused for its size and sent again for ever: the
committed offset stayed put and the envelope after it was never stored.
Now the worker says at start that the dead-letter topic takes smaller
records than it consumes, sends the record without the value (headers
nanguard.value.omitted = 10485760 and nanguard.value.sha256, the source
position in __connect.errors.*), and goes on: the committed offset reaches
the end and both envelopes are rows."""
import hashlib
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "integration"))
import e2e  # noqa: E402
from e2e import check, say  # noqa: E402

BIG = 10 * 1024 * 1024


def envelope(tid, cid):
    return e2e.Msg("good", tid.encode(), json.dumps({
        "thread_id": tid, "checkpoint_id": cid,
        "checkpoint": {"v": 1, "x": float("nan")}}).encode(),
        rowkey=(tid, "", cid))


def body():
    names = e2e.Names("dlqsize")
    d = e2e.workdir("dlqsize")
    e2e.kafka_tool("org.apache.kafka.tools.TopicCommand", "--create", "--topic",
                   names.topic, "--partitions", "1", "--replication-factor", "1",
                   "--config", "max.message.bytes=20000000", logdir=d)
    e2e.create_topics("%s:1" % names.dlq, "%s:1" % names.notify)
    e2e.create_table(names.table)
    e2e.Names.all.append(names)

    first = envelope("dlqsize-a-" + e2e.RUN, "c1")
    last = envelope("dlqsize-b-" + e2e.RUN, "c2")
    big = os.urandom(BIG)
    big_path = os.path.join(d, "big.bin")
    with open(big_path, "wb") as f:
        f.write(big)
    e2e.produce(names.topic, [first], os.path.join(d, "first.txt"))
    # kcat sends each FILE argument as one message.
    e2e.run(["kcat", "-P", "-b", e2e.BROKERS, "-t", names.topic, "-k", "big-key",
             "-X", "message.max.bytes=20000000", big_path], timeout=120)
    e2e.produce(names.topic, [last], os.path.join(d, "last.txt"))

    w = e2e.Worker("a", d, names.topic, names.group, names.table,
                   ["--batch-ms", "100", "--retry-max-ms", "2000"]).start()
    moved = e2e.wait_until(
        lambda: (e2e.group_offsets(names.group, names.topic, d).get(0) or (None,))[0] == 3,
        90, interval=3, what="the committed offset to pass the 10 MiB message")
    check(moved, "the committed offset moves past the 10 MiB message (3)",
          e2e.group_offsets(names.group, names.topic, d))
    check(e2e.row_count(names.table) == 2, "both envelopes are rows (the one "
          "after the large message too)", "rows: %d" % e2e.row_count(names.table))
    warn = [x for x in w.lines() if "dead-letter topic takes smaller records"
            in x.get("msg", "")]
    check(warn and warn[0].get("topic_max_message_bytes", 0) < BIG and
          warn[0].get("max_message_bytes") == 33554432,
          "the worker said at start that the dead-letter topic takes smaller "
          "records than it consumes", warn[:1])
    dlq = e2e.consume(names.dlq)
    check(len(dlq) == 1, "one dead-letter record", "found %d" % len(dlq))
    if dlq:
        h = dlq[0].headers
        check(h.get("nanguard.value.omitted") == [str(BIG).encode()],
              "nanguard.value.omitted = %d" % BIG, h.get("nanguard.value.omitted"))
        check(h.get("nanguard.value.sha256") ==
              [hashlib.sha256(big).hexdigest().encode()],
              "nanguard.value.sha256 is the value's", h.get("nanguard.value.sha256"))
        check(h.get("__connect.errors.offset") == [b"1"] and
              h.get("__connect.errors.partition") == [b"0"] and
              h.get("__connect.errors.topic") == [names.topic.encode()],
              "the source position is in the record", h)
        check(h.get("nanguard.error.code") == [b"malformed_json"],
              "the reason is kept (malformed_json)", h.get("nanguard.error.code"))
        check(dlq[0].value == b"" and dlq[0].key == b"big-key",
              "the record has the key and no value")
    notes = [n for _, n in e2e.notifications(names.notify)
             if n and n.get("type") == "checkpoint_flush_error"]
    check(len(notes) == 1 and notes[0]["source"]["offset"] == 1,
          "one checkpoint_flush_error notification for it", notes)
    e2e.stop_all([w])
    st = w.last("stopped") or {}
    check(st.get("dead_lettered") == 1 and st.get("stored") == 2,
          "the worker counted 1 dead letter and 2 rows", st)
    e2e.drop_table_if_passed(names.table)


if __name__ == "__main__":
    e2e.main(body)
