#!/usr/bin/env python3
"""Configuration errors (wrong password, unknown database, missing table,
missing column, missing privilege, missing schema) end with status 78 and
a message that says what to fix, and nothing is dead-lettered; bad usage is
64, unusable files 74."""
import os

from pgtest import (check, conninfo, finish, gen, langgraph_table, load,
                    psql, superuser_conn, workdir)

d = workdir("load_config")
src = os.path.join(d, "input.ndjson")
gen(src, 20, avg_bytes=500, seed=3)
with open(src, "ab") as f:
    f.write(b'{"not": "an envelope"}\n{broken\n')
dlq = os.path.join(d, "dead.jsonl")
langgraph_table("cfg_cp")


def config_case(what, args, conn, words):
    if os.path.exists(dlq):
        os.unlink(dlq)
    r = load(["--dead-letter", dlq, "--retry-timeout", "20"] + args + [src],
             conn=conn, timeout=60)
    check(r.status == 78, "%s: exit 78 (got %s)" % (what, r.status))
    low = r.stderr.lower()
    missing = [w for w in words if w.lower() not in low]
    check(not missing, "%s: the message says what to fix %s" % (what, words)
          + ("" if not missing else " -- missing %s in: %s"
             % (missing, r.stderr[-600:])))
    check(os.path.getsize(dlq) == 0, "%s: nothing dead-lettered" % what)
    check(r.summary.get("exit_status") == 78
          and r.summary.get("dead_lettered") == 0,
          "%s: the summary line says so" % what)


config_case("wrong password", ["--table", "cfg_cp"],
            conninfo(password="wrong"), ["password", "PGPASSWORD"])
config_case("unknown database", ["--table", "cfg_cp"],
            conninfo(dbname="no_such_db"), ["no_such_db", "dbname"])
config_case("unknown user", ["--table", "cfg_cp"],
            conninfo(user="no_such_user"), ["no_such_user"])
config_case("missing table", ["--table", "no_such_table"], None,
            ["no_such_table", "does not exist", "--create-table"])
config_case("missing schema with --create-table",
            ["--table", "no_such_schema.cp", "--create-table"], None,
            ["no_such_schema", "schema"])
psql("DROP TABLE IF EXISTS cfg_nocol; CREATE TABLE cfg_nocol (thread_id "
     "text, checkpoint_ns text, checkpoint_id text, checkpoint jsonb, "
     "metadata jsonb, PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id))")
config_case("missing columns", ["--table", "cfg_nocol", "--create-table"],
            None, ["parent_checkpoint_id", "type", "never alters"])
check(psql("SELECT count(*) FROM pg_attribute WHERE attrelid = "
           "'cfg_nocol'::regclass AND attnum > 0") == "5",
      "an existing table is never altered, even with --create-table")
psql("DROP TABLE IF EXISTS cfg_nokey; CREATE TABLE cfg_nokey (thread_id "
     "text, checkpoint_ns text, checkpoint_id text, parent_checkpoint_id "
     "text, type text, checkpoint jsonb, metadata jsonb)")
config_case("no unique key for ON CONFLICT", ["--table", "cfg_nokey"], None,
            ["42P10", "unique"])

su = superuser_conn()
psql("DROP OWNED BY ng_noperm; DROP ROLE ng_noperm", conn=su, check_ok=False)
psql("CREATE ROLE ng_noperm LOGIN "
     "PASSWORD 'noperm'; GRANT CONNECT ON DATABASE nanguard TO ng_noperm;",
     conn=su)
config_case("no privilege", ["--table", "cfg_cp"],
            conninfo(user="ng_noperm", password="noperm"),
            ["GRANT", "INSERT", "cfg_cp"])
psql("GRANT SELECT, INSERT ON cfg_cp TO ng_noperm", conn=su)
config_case("no UPDATE privilege in update mode",
            ["--table", "cfg_cp", "--on-conflict", "update"],
            conninfo(user="ng_noperm", password="noperm"), ["UPDATE"])
r = load(["--table", "cfg_cp", src],
         conn=conninfo(user="ng_noperm", password="noperm"))
check(r.status == 2 and r.summary.get("stored") == 20,
      "with INSERT and SELECT granted, the load goes through")
psql("DROP TABLE cfg_cp, cfg_nocol, cfg_nokey", conn=su)
psql("DROP OWNED BY ng_noperm; DROP ROLE ng_noperm", conn=su)

# Bad usage: 64. Unusable files: 74.
for what, args, want in (
        ("unknown option", ["--frobnicate"], 64),
        ("bad --on-conflict", ["--on-conflict", "replace"], 64),
        ("bad --batch-rows", ["--batch-rows", "0"], 64),
        ("bad --retry-timeout", ["--retry-timeout", "soon"], 64),
        ("unparsable connection string", ["--pg", "host=x nosuchoption=1"],
         64),
        ("unreadable input", [os.path.join(d, "missing.ndjson")], 74),
        ("dead-letter file in a missing directory",
         ["--dead-letter", os.path.join(d, "no", "dir.jsonl")], 74)):
    r = load(args + ([src] if want == 64 or "dead" in what else []),
             conn="" if "connection" in what else None, timeout=30)
    check(r.status == want, "%s: exit %d (got %s)" % (what, want, r.status))
finish()
