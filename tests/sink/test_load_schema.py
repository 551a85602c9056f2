#!/usr/bin/env python3
"""--create-table makes LangGraph's whole schema (checkpoints,
checkpoint_blobs, checkpoint_writes with task_path, the thread_id indexes)
without checkpoint_migrations rows; `nanguard schema` prints the same DDL;
existing tables are used as they are."""
import os
import subprocess

from pgtest import BIN, check, finish, load, psql, workdir

d = workdir("load_schema")
env = os.path.join(d, "one.ndjson")
with open(env, "w") as f:
    f.write('{"thread_id":"t","checkpoint_id":"c1","checkpoint":'
            '{"v":4,"channel_values":{"x":NaN},"channel_versions":{}},'
            '"metadata":{"step":0}}\n')


def tables_in(nsp):
    return psql("SELECT string_agg(relname || ':' || relkind::text, ' ' ORDER BY "
                "relname) FROM pg_class c JOIN pg_namespace n ON n.oid = "
                "c.relnamespace WHERE nspname = '%s'" % nsp)


def columns_of(nsp, rel):
    return psql("SELECT string_agg(column_name || ' ' || data_type || ' ' || "
                "is_nullable || ' ' || coalesce(column_default, '-'), ', ' "
                "ORDER BY ordinal_position) FROM information_schema.columns "
                "WHERE table_schema = '%s' AND table_name = '%s'" % (nsp, rel))


psql("DROP SCHEMA IF EXISTS lg_made CASCADE; CREATE SCHEMA lg_made;"
     "DROP SCHEMA IF EXISTS lg_printed CASCADE; CREATE SCHEMA lg_printed")
r = load(["--table", "lg_made.checkpoints", "--create-table", env])
check(r.status == 0, "load --create-table exits 0 (%s)" % r.status)
want = ("checkpoint_blobs:r checkpoint_blobs_pkey:i "
        "checkpoint_blobs_thread_id_idx:i checkpoint_writes:r "
        "checkpoint_writes_pkey:i checkpoint_writes_thread_id_idx:i "
        "checkpoints:r checkpoints_pkey:i checkpoints_thread_id_idx:i")
got = tables_in("lg_made")
check(got == want, "the three tables, their keys and thread_id indexes, and "
      "no checkpoint_migrations (%s)" % got)
check(columns_of("lg_made", "checkpoint_writes").endswith(
    "task_path text NO ''::text"), "checkpoint_writes has task_path")
check(" blob bytea YES" in columns_of("lg_made", "checkpoint_blobs"),
      "checkpoint_blobs.blob is nullable (LangGraph's empty channels)")
check(psql("SELECT attcompression FROM pg_attribute WHERE attrelid = "
           "'lg_made.checkpoints'::regclass AND attname = 'checkpoint'")
      == "l", "jsonb columns are lz4")
check(psql("SELECT checkpoint->'channel_values'->'x' FROM "
           "lg_made.checkpoints") == "null", "the row is stored, NaN as null")

p = subprocess.run([BIN, "schema", "--schema", "lg_printed", "--lz4"],
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
check(p.returncode == 0, "nanguard schema exits 0")
psql(p.stdout.decode())
check(tables_in("lg_printed") == want, "nanguard schema's DDL makes the same")
for rel in ("checkpoints", "checkpoint_blobs", "checkpoint_writes"):
    check(columns_of("lg_printed", rel) == columns_of("lg_made", rel),
          "%s: the same columns from both" % rel)
psql(p.stdout.decode())
check(True, "the printed DDL runs again (IF NOT EXISTS)")
p = subprocess.run([BIN, "schema", "extra"], stdout=subprocess.PIPE,
                   stderr=subprocess.PIPE)
check(p.returncode == 64, "an argument is a usage error (64)")

# An existing checkpoints table is used as it is; the missing companions
# are created next to it.
psql("DROP SCHEMA IF EXISTS lg_old CASCADE; CREATE SCHEMA lg_old;"
     "CREATE TABLE lg_old.checkpoints (thread_id text, checkpoint_ns text, "
     "checkpoint_id text, parent_checkpoint_id text, type text, checkpoint "
     "jsonb, metadata jsonb, extra int DEFAULT 7, PRIMARY KEY (thread_id, "
     "checkpoint_ns, checkpoint_id))")
r = load(["--table", "lg_old.checkpoints", "--create-table", env])
check(r.status == 0, "load into an existing table exits 0 (%s)" % r.status)
check(psql("SELECT extra FROM lg_old.checkpoints") == "7",
      "the existing table is not altered")
check("checkpoint_blobs:r" in tables_in("lg_old") and
      "checkpoints_thread_id_idx" not in tables_in("lg_old"),
      "companions created; no index added to the existing table")

# Another name: LangGraph cannot read it, and the log says so.
r = load(["--table", "lg_made.other_cp", "--create-table", env])
check(r.status == 0 and "LangGraph reads only a table named checkpoints"
      in r.stderr, "a table not named checkpoints is written, with a warning")
r = load(["--table", "lg_made.checkpoints", env])
check("LangGraph reads only" not in r.stderr, "no warning for checkpoints")
finish()
