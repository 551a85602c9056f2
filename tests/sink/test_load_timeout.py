#!/usr/bin/env python3
"""A statement_timeout hit (57014) is transient: the batch is retried and
the load succeeds. The timeout comes from the user's connection string
(options=-c statement_timeout=...), which nanguard passes through, as it
does application_name (default "nanguard")."""
import os

from pgtest import (PG, check, count, finish, gen, langgraph_table, load,
                    lines_of, psql, workdir)

d = workdir("load_timeout")
src = gen(os.path.join(d, "input.ndjson"), 300, avg_bytes=600, seed=8)
n = len(lines_of(src))
T = "to_cp"
langgraph_table(T)
# The first INSERT statement sleeps past the timeout; a sequence remembers
# the attempts (it is not rolled back with the transaction). Each statement
# that commits records the session's settings.
psql("""DROP SEQUENCE IF EXISTS to_attempts; CREATE SEQUENCE to_attempts;
DROP TABLE IF EXISTS to_seen;
CREATE TABLE to_seen (app text, timeout text);
CREATE FUNCTION to_slow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF nextval('to_attempts') = 1 THEN
    PERFORM pg_sleep(3);
  END IF;
  INSERT INTO to_seen VALUES (current_setting('application_name'),
                              current_setting('statement_timeout'));
  RETURN NULL;
END $$;
CREATE TRIGGER to_slow BEFORE INSERT ON %s
  FOR EACH STATEMENT EXECUTE FUNCTION to_slow();""".replace("%s", T))

conn = PG + " options='-c statement_timeout=1000' application_name=ng_to_test"
r = load(["--table", T, "--batch-rows", "1000", src], conn=conn, timeout=60)
check(r.status == 0, "the load succeeds after the timeout (status %s)"
      % r.status)
check(r.summary.get("stored") == n and count(T) == n,
      "every row stored once (%s)" % r.summary)
check('"sqlstate":"57014"' in r.stderr and "retrying" in r.stderr,
      "the timeout was logged as transient (57014, retrying)")
check(r.summary.get("dead_lettered") == 0, "nothing dead-lettered")
check(int(psql("SELECT last_value FROM to_attempts")) >= 2,
      "the INSERT ran again after the timeout")
check(psql("SELECT DISTINCT app || ' ' || timeout FROM to_seen")
      == "ng_to_test 1s",
      "the connection string's options and application_name reach the "
      "server")

psql("TRUNCATE %s, to_seen" % T)
r = load(["--table", T, src])
check(r.status == 0 and psql("SELECT DISTINCT app FROM to_seen") == "nanguard",
      "application_name defaults to nanguard")
psql("DROP TABLE %s, to_seen; DROP FUNCTION to_slow(); "
     "DROP SEQUENCE to_attempts" % T)
finish()
