#!/usr/bin/env python3
"""End to end: broker restart. Two workers consume a load produced over
about 15 s; in the middle of it the Kafka broker is restarted (kafka.sh
restart: controlled shutdown, then start). The workers reconnect by
themselves (they keep running, exit 0 on SIGTERM at the end) and the
reconciliation holds: every message in exactly one place."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e  # noqa: E402
from e2e import check, say  # noqa: E402


def body():
    names = e2e.Names("broker")
    d = e2e.workdir("broker")
    names.create(4)
    msgs = e2e.make_messages(e2e.scaled(4000), seed=41)
    n_rows, n_bad = e2e.expected_counts(msgs)
    say("messages: %d (%s)" % (len(msgs), e2e.summary(msgs)))
    ws = [e2e.Worker(n, d, names.topic, names.group, names.table,
                     e2e.worker_args_fast()).start() for n in ("a", "b")]
    prod = e2e.PacedProducer(names.topic, msgs, chunks=15, interval=1.0, dirpath=d)
    prod.start()
    check(e2e.wait_until(lambda: e2e.row_count(names.table) >= 0.3 * n_rows, 60,
                         interval=0.2, what="30% of the rows"),
          "the run got going (30% of the rows)")
    # kcat gives up when the broker is away: no producing during the restart.
    prod.pause()
    t = time.time()
    try:
        e2e.kafka_sh("restart", e2e.KAFKA_DIR)
    finally:
        if not e2e.kafka_running():
            e2e.kafka_sh("start", e2e.KAFKA_DIR)
        prod.resume()
    t_back = time.time()
    say("broker restarted in %.1f s (%d messages produced so far)"
        % (t_back - t, prod.produced))
    check(prod.produced < len(msgs), "messages are still to be produced after the restart")
    check(all(w.alive() for w in ws), "the workers survive the broker restart")
    prod.join(300)
    check(prod.error is None, "all messages produced", prod.error)
    check(e2e.wait_done(names, msgs, timeout=180 * e2e.SCALE, workers=ws, producer=prod),
          "all messages processed after the broker restart")
    e2e.settle_in_flight(ws)
    for w in ws:
        progress_after = [x for x in w.lines() if x.get("msg") == "progress"
                          and x["_t"] > t_back]
        check(progress_after, "worker %s keeps running after the restart" % w.name)
    e2e.stop_all(ws)
    data = e2e.reconcile(names, msgs)
    e2e.check_no_crit(data)
    e2e.check_committed(names, d)
    say("worker totals: %s" % e2e.worker_totals(ws))
    e2e.drop_table_if_passed(names.table)


if __name__ == "__main__":
    e2e.main(body, cleanup=e2e.ensure_kafka)
