#!/usr/bin/env python3
"""PostgreSQL restarted in the middle of a load (twice: once wherever the
load happens to be, once while an INSERT is in flight): the load completes,
nothing lost, nothing duplicated, nothing dead-lettered."""
import os
import threading

from pgtest import (PG_DIR, check, count, feed, finish, gen, langgraph_table,
                    lines_of, pg_ctl, psql, start_load_stdin, wait_for,
                    wait_pg_up, wait_run, workdir)

d = workdir("load_restart")
rows = lines_of(gen(os.path.join(d, "input.ndjson"), 8000, avg_bytes=2000,
                    seed=31))
n = len(rows)
T = "rs_cp"
langgraph_table(T)
# The 12th INSERT statement sleeps (once: a sequence remembers), so that
# the second restart surely hits a transaction in flight.
psql("""DROP SEQUENCE IF EXISTS rs_stmt; CREATE SEQUENCE rs_stmt;
CREATE FUNCTION rs_slow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF nextval('rs_stmt') = 12 THEN
    PERFORM pg_sleep(15);
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER rs_slow BEFORE INSERT ON %s
  FOR EACH STATEMENT EXECUTE FUNCTION rs_slow();""".replace("%s", T))

events = []


def sleeping():
    return psql("SELECT count(*) FROM pg_stat_activity WHERE application_name "
                "= 'nanguard' AND wait_event = 'PgSleep'",
                check_ok=False) == "1"


def stored_at_least(k):
    v = psql("SELECT count(*) FROM %s" % T, check_ok=False)
    return v.isdigit() and int(v) >= k


errp = os.path.join(d, "stderr.txt")
p = start_load_stdin(["--table", T, "--batch-rows", "200", "--retry-timeout",
                      "60"], errp)
result = {}
writer = threading.Thread(
    target=lambda: result.update(fed=feed(p, rows, 80, 0.05)))
writer.start()
try:
    # once wherever the load is, once during the sleeping INSERT
    if wait_for(lambda: stored_at_least(600), limit=30):
        pg_ctl("restart")
        events.append("restart")
    if wait_for(sleeping, limit=30):
        pg_ctl("restart")
        events.append("restart during an INSERT")
    writer.join(timeout=90)
    r = wait_run(p, errp, timeout=90)
finally:
    pg_ctl("start")
    wait_pg_up()
fed = result.get("fed")
check(fed, "the load read its whole input")
check(events == ["restart", "restart during an INSERT"],
      "PostgreSQL was restarted twice mid-load (%s)" % events)
check(r.status == 0, "the load completes with status 0 (got %s)" % r.status)
s = r.summary
check(s.get("lines") == n and s.get("stored", 0) + s.get("duplicates", 0) == n,
      "every line settled (%s)" % s)
check(s.get("dead_lettered") == 0, "nothing dead-lettered")
check(s.get("connects", 0) >= 3, "it reconnected after each restart (%s)"
      % s.get("connects"))
check("PostgreSQL unavailable, retrying" in r.stderr
      and "PostgreSQL is back" in r.stderr,
      "the outage and the recovery were logged")
check(count(T) == n, "nothing lost: %d rows" % n)
check(psql("SELECT count(DISTINCT (thread_id, checkpoint_ns, checkpoint_id)) "
           "FROM %s" % T) == str(n), "nothing duplicated")
psql("DROP TABLE %s; DROP FUNCTION rs_slow(); DROP SEQUENCE rs_stmt" % T)
finish()
