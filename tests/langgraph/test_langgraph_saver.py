#!/usr/bin/env python3
"""NanguardSaver end to end, with the real broker, workers and PostgreSQL:
a graph whose state holds messages, a dict and float('nan') runs several
steps on two threads (one sync, one async) with NanguardSaver; a worker is
killed with SIGKILL in the middle and another takes over; after flush()
and the worker catching up, PostgresSaver on that database returns the
same state and history as the NaN-free run of the graph on PostgresSaver
alone (NaN as None, messages as message objects), and no checkpoint,
blob or write is missing."""
import asyncio
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..",
                                "integration"))
import e2e  # noqa: E402
from e2e import check, say  # noqa: E402
from lgtest import human, make_graph, norm, shape  # noqa: E402

from langgraph.checkpoint.postgres import PostgresSaver  # noqa: E402
from nanguard_langgraph import NanguardSaver  # noqa: E402

THREADS = ("saver-sync", "saver-async")
TURNS = 4
ARGS = e2e.worker_args_fast() + ["-X", "session.timeout.ms=6000", "-X",
                                 "heartbeat.interval.ms=1000"]


def conn(schema):
    return e2e.PG + " options=-csearch_path=" + schema


def turn(graph, t, i, use_async=False):
    cfg = {"configurable": {"thread_id": t}}
    inp = human("turn %d of %s" % (i, t), "%s-%d" % (t, i))
    if use_async and t.endswith("async"):
        return asyncio.run(graph.ainvoke(inp, cfg))
    return graph.invoke(inp, cfg)


def history(saver, t):
    g = make_graph(nan=False).compile(checkpointer=saver)
    cfg = {"configurable": {"thread_id": t}}
    ids = []
    hist = [shape(s, ids) for s in reversed(list(g.get_state_history(cfg)))]
    return shape(g.get_state(cfg), ids), hist


def body():
    names = e2e.Names("lgsaver")
    e2e.create_topics("%s:4" % names.topic, "%s:2" % names.dlq,
                      "%s:2" % names.notify)
    e2e.Names.all.append(names)
    ref, nan = names.base + "_ref", names.base + "_nan"
    e2e.psql("CREATE SCHEMA %s; CREATE SCHEMA %s" % (ref, nan))
    d = e2e.workdir("lgsaver")

    # The NaN-free run on PostgresSaver alone (sync: PostgresSaver has no
    # async methods; the results are the same).
    with PostgresSaver.from_conn_string(conn(ref)) as saver:
        saver.setup()
        g = make_graph(nan=False).compile(checkpointer=saver)
        for i in range(TURNS):
            for t in THREADS:
                turn(g, t, i)

    table = nan + ".checkpoints"
    a = e2e.Worker("a", d, names.topic, names.group, table,
                   ARGS + ["--create-table"]).start()
    # The worker makes the tables (NanguardSaver reads them from the start).
    e2e.wait_until(lambda: a.last("connected to PostgreSQL"), 60,
                   what="worker a to connect")
    saver = NanguardSaver(bootstrap_servers=e2e.BROKERS, topic=names.topic,
                          conninfo=conn(nan))
    g = make_graph(nan=True).compile(checkpointer=saver)
    b = None
    for i in range(TURNS):
        for t in THREADS:
            out = turn(g, t, i, use_async=True)
            check(out["count"] == i + 1, "%s turn %d: the graph goes on from "
                  "its own last step (count %s)" % (t, i, out.get("count")))
        if i == 1:
            saver.flush(30)
            a.kill9()
            b = e2e.Worker("b", d, names.topic, names.group, table,
                           ARGS).start()
    saver.flush(30)
    say("flushed; waiting for the worker")

    with PostgresSaver.from_conn_string(conn(ref)) as rs:
        want = {t: history(rs, t) for t in THREADS}
    counts = "SELECT (SELECT count(*) FROM %s.checkpoints), " \
             "(SELECT count(*) FROM %s.checkpoint_blobs WHERE type <> " \
             "'empty'), (SELECT count(*) FROM %s.checkpoint_writes)"
    want_counts = e2e.psql(counts % (ref, ref, ref)).strip()
    e2e.wait_until(lambda: e2e.psql(counts % (nan, nan, nan)).strip()
                   == want_counts, 90, what="the worker to catch up")
    got_counts = e2e.psql(counts % (nan, nan, nan)).strip()
    check(got_counts == want_counts, "checkpoints, blobs and writes: %s "
          "stored, as PostgresSaver alone stores (%s)" % (got_counts,
                                                         want_counts))
    with PostgresSaver.from_conn_string(conn(nan)) as ps:
        for t in THREADS:
            got = history(ps, t)
            check(got[0] == want[t][0], "%s: get_state equals the NaN-free "
                  "run's" % t, (got[0], want[t][0]))
            check(got[1] == want[t][1], "%s: get_state_history equals the "
                  "NaN-free run's (%d snapshots)" % (t, len(got[1])),
                  [x for x in zip(got[1], want[t][1]) if x[0] != x[1]][:1])
            v = got[0]["values"]
            check(v["score"] is None and v["messages"][-1][0] == "msg",
                  "%s: NaN read as None, messages as message objects" % t)
        tup = saver.get_tuple({"configurable": {"thread_id": THREADS[0]}})
        check(tup is not None and norm(tup.checkpoint["channel_values"])
              ["count"] == TURNS, "NanguardSaver.get_tuple reads the thread")
        check(len(list(saver.list({"configurable": {"thread_id": THREADS[0]}})))
              == len(want[THREADS[0]][1]), "NanguardSaver.list reads "
              "PostgreSQL's history")
        # PostgresSaver carries on the threads the workers stored.
        pg = make_graph(nan=False).compile(checkpointer=ps)
        for t in THREADS:
            out = pg.invoke(human("after", t + "-after"),
                            {"configurable": {"thread_id": t}})
            check(out["count"] == TURNS + 1, "%s: graph.invoke on "
                  "PostgresSaver carries the thread on (count %s)"
                  % (t, out.get("count")))
    saver.close()
    rc, _ = b.term()
    check(rc == 0, "the second worker stops cleanly")
    dl = e2e.count_records(names.dlq)
    check(dl == 0, "nothing dead-lettered (%d)" % dl)
    e2e.psql("DROP SCHEMA %s CASCADE; DROP SCHEMA %s CASCADE" % (ref, nan))


e2e.main(body)
