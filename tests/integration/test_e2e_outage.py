#!/usr/bin/env python3
"""End to end: PostgreSQL outage. While one worker consumes a load
produced over about 20 s, PostgreSQL is stopped for about 15 s (the worker
runs with --critical-after-ms 3000). Then:
  - nothing is dead-lettered because of the outage: only the intentionally
    bad messages, each exactly once;
  - the group does not rebalance (no "partitions revoked"/"lost" before the
    final SIGTERM): the worker keeps polling while paused;
  - checkpoint_flush_critical_error: at least one for every thread whose
    row waited in the batch during the outage, at most one per thread, and
    only after the threshold;
  - all data arrives after PostgreSQL returns (full reconciliation).
The shared PostgreSQL is always started again (finally)."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e  # noqa: E402
from e2e import check, say  # noqa: E402

OUTAGE_S = 15
CRITICAL_MS = 3000


def body():
    names = e2e.Names("outage")
    d = e2e.workdir("outage")
    names.create(4)
    msgs = e2e.make_messages(e2e.scaled(4000), seed=37)
    n_rows, n_bad = e2e.expected_counts(msgs)
    say("messages: %d (%s)" % (len(msgs), e2e.summary(msgs)))
    w = e2e.Worker("a", d, names.topic, names.group, names.table,
                   e2e.worker_args_fast() + ["--critical-after-ms", str(CRITICAL_MS)]).start()
    prod = e2e.PacedProducer(names.topic, msgs, chunks=28, interval=1.0, dirpath=d)
    prod.start()
    check(e2e.wait_until(lambda: e2e.row_count(names.table) >= 0.2 * n_rows, 60,
                         interval=0.2, what="20% of the rows"),
          "the run got going (20% of the rows)")
    t_stop = time.time()
    try:
        e2e.pg_sh("stop", e2e.PG_DIR)
        produced_before = prod.produced
        say("PostgreSQL stopped (%d messages produced so far)" % produced_before)
        time.sleep(OUTAGE_S)
        check(w.alive(), "the worker keeps running while PostgreSQL is down")
        produced_during = prod.produced
    finally:
        t_start = time.time()
        e2e.pg_sh("start", e2e.PG_DIR)
    say("PostgreSQL started again after %.1f s (%d messages produced)"
        % (time.time() - t_stop, prod.produced))
    check(produced_before < produced_during < len(msgs),
          "the load goes on during the outage and after it")
    prod.join(120)
    check(prod.error is None, "all messages produced", prod.error)
    check(e2e.wait_done(names, msgs, timeout=120 * e2e.SCALE, workers=[w], producer=prod),
          "all data arrives after PostgreSQL returns")
    e2e.settle_in_flight([w])
    t_term = time.time()

    paused = [x for x in w.lines() if x.get("msg") == "PostgreSQL unavailable, partitions paused"]
    back = [x for x in w.lines() if x.get("msg") == "PostgreSQL is back, resuming"]
    check(paused and t_stop - 1 <= paused[0]["_t"] <= t_start,
          "the worker saw the outage (partitions paused)", paused[:1])
    check(back and back[-1]["_t"] >= t_start, "the worker resumed after PostgreSQL returned",
          back[-1:])
    rebal = [x for x in w.lines() if x.get("msg") in ("partitions revoked", "partitions lost")
             and x["_t"] < t_term]
    check(not rebal, "no rebalance: no partitions revoked or lost before shutdown", rebal[:2])
    check(w.count("partitions assigned") == 1, "partitions assigned once")

    e2e.stop_all([w])
    # Per-message lines are rate limited (20 per 10 s), and every line held
    # back is counted in a "log lines suppressed" line.
    dl = [x for x in w.lines() if x.get("msg") == "dead-lettering message"]
    held = sum(x.get("count", 0) for x in w.lines()
               if x.get("msg") == "log lines suppressed"
               and x.get("kind") == "dead-lettering message")
    stopped = w.last("stopped") or {}
    check(len(dl) + held == stopped.get("dead_lettered"),
          "dead-lettering lines logged (%d) + suppressed (%d) = dead letters (%s)"
          % (len(dl), held, stopped.get("dead_lettered")))
    burst = max((sum(1 for y in dl if x["_t"] <= y["_t"] < x["_t"] + 9.9) for x in dl),
                default=0)
    check(burst <= 20, "at most 20 dead-lettering lines in any 10 s (%d)" % burst)
    data = e2e.reconcile(names, msgs)
    e2e.check_committed(names, d)

    # Critical notifications.
    crit = data["crit"]
    per_thread = {}
    for rec, n in crit:
        per_thread.setdefault(n.get("thread_id"), []).append((rec, n))
    say("checkpoint_flush_critical_error: %d for %d threads" % (len(crit), len(per_thread)))
    check(crit, "checkpoint_flush_critical_error sent")
    twice = {t: len(v) for t, v in per_thread.items() if len(v) > 1}
    check(not twice, "at most one checkpoint_flush_critical_error per thread", twice)
    keys = {m.key.decode() for m in msgs}
    check(all(t in keys for t in per_thread), "critical events name threads of the load",
          [t for t in per_thread if t not in keys][:3])
    first_fail = paused[0]["_t"] if paused else t_stop
    early = [n for _, n in crit if e2e._parse_ts(n["timestamp"]) < first_fail + CRITICAL_MS / 1000 - 0.05]
    check(not early, "critical events only after --critical-after-ms of outage",
          early[:2])
    bad_shape = [n for r, n in crit if n.get("severity") != "critical"
                 or n.get("message") != e2e.CRITICAL_MESSAGE
                 or not isinstance(n.get("error_details"), str) or not n["error_details"]
                 or len(n["error_details"]) > 500
                 or r.key.decode() != n.get("thread_id")]
    check(not bad_shape, "critical events: severity critical, the user's sentence as "
          "message, the reason in error_details (<= 500 characters), key = thread id",
          bad_shape[:2])
    # The batch that waited through the outage is the first transaction
    # after the restart (loaded_at = now() of the inserting transaction).
    after = sorted({t for t in data["rows"].values() if t >= t_start})
    waited = {k[0] for k, t in data["rows"].items() if after and t == after[0]}
    missing = sorted(waited - set(per_thread))
    say("the first transaction after the restart stored %d rows of %d threads"
        % (sum(1 for t in data["rows"].values() if after and t == after[0]), len(waited)))
    check(waited and not missing, "every thread whose row waited in the batch got a "
          "checkpoint_flush_critical_error", missing[:5])
    e2e.drop_table_if_passed(names.table)


if __name__ == "__main__":
    e2e.main(body, cleanup=e2e.ensure_pg)
