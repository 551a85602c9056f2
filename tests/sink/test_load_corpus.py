#!/usr/bin/env python3
"""A generated corpus (thousands of envelopes with NaN / Infinity and
strings jsonb refuses) loads completely, and what is stored equals what
`nanguard sanitize` outputs, compared as jsonb in PostgreSQL."""
import os
import subprocess

from pgtest import (BIN, check, count, finish, gen, load, lines_of, psql,
                    reset_table, start_load_stdin, wait_for, wait_run,
                    workdir)

d = workdir("load_corpus")
corpus = gen(os.path.join(d, "corpus.ndjson"), 4000, avg_bytes=2500,
             nan_rate=0.02, seed=11,
             extra=["--ensure-ascii", "mixed", "--bad-rate", "0.05"])
n = len(lines_of(corpus))

reset_table("corpus_cp")
r = load(["--table", "corpus_cp", "--create-table", "--batch-rows", "500",
          corpus])
s = r.summary
check(r.status == 0, "load exits 0 (got %s)" % r.status)
check(s.get("lines") == n and s.get("stored") == n,
      "summary: %d lines, %d stored (%s)" % (n, n, s))
check(s.get("dead_lettered") == 0 and s.get("duplicates") == 0,
      "nothing dead-lettered, no duplicates")
check(s.get("rewrites", 0) > 100, "summary counts the rewrites (%s)"
      % s.get("rewrites"))
# Two jobs by default, each with batches of at most 500 of its rows.
check((n + 499) // 500 <= s.get("batches", 0) <= (n + 499) // 500 + 1,
      "batches of 500 rows per job (%s)" % s.get("batches"))
check(count("corpus_cp") == n, "the table has one row per line")
check(psql("SELECT count(*) FROM corpus_cp WHERE "
           "pg_column_compression(checkpoint) IS DISTINCT FROM 'lz4' "
           "AND pg_column_size(checkpoint) > 2100") == "0",
      "--create-table made the jsonb columns lz4 (and values stay lz4)")
check(int(psql("SELECT count(*) FROM corpus_cp WHERE "
               "pg_column_compression(checkpoint) = 'lz4'")) > n // 2,
      "most checkpoints are stored lz4-compressed")
check(psql("SELECT attcompression FROM pg_attribute WHERE attrelid = "
           "'corpus_cp'::regclass AND attname IN ('checkpoint','metadata')")
      == "l\nl", "checkpoint and metadata columns use COMPRESSION lz4")

# The sanitizer's own output, one line per envelope, as the reference.
san = os.path.join(d, "sanitized.ndjson")
with open(corpus, "rb") as fin, open(san, "wb") as fout:
    subprocess.run([BIN, "sanitize"], stdin=fin, stdout=fout, check=True)
check(len(lines_of(san)) == n, "nanguard sanitize keeps one line per value")
psql("""DROP TABLE IF EXISTS corpus_ref;
CREATE TABLE corpus_ref (doc jsonb);
\\copy corpus_ref(doc) FROM '%s' WITH (FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02')
""" % san)
check(count("corpus_ref") == n, "reference loaded into a scratch table")
diff = psql("""
SELECT count(*) FROM corpus_ref r
LEFT JOIN corpus_cp c
  ON c.thread_id = r.doc->>'thread_id'
 AND c.checkpoint_ns = coalesce(r.doc->>'checkpoint_ns', '')
 AND c.checkpoint_id = r.doc->>'checkpoint_id'
WHERE c.checkpoint IS DISTINCT FROM r.doc->'checkpoint'
   OR c.metadata IS DISTINCT FROM coalesce(r.doc->'metadata', '{}')
   OR c.parent_checkpoint_id IS DISTINCT FROM r.doc->>'parent_checkpoint_id'
   OR c.type IS DISTINCT FROM coalesce(r.doc->>'type', 'checkpoint')""")
check(diff == "0", "every stored row equals the sanitizer's output as jsonb "
      "(%s differ)" % diff)
nulls = psql("SELECT count(*) FROM corpus_cp WHERE checkpoint::text ~ "
             "'NaN|Infinity'")
check(int(nulls) > 0, "strings holding the words NaN/Infinity are kept")

# A schema-qualified table name, quoted as identifiers.
psql('DROP SCHEMA IF EXISTS "Load Schema" CASCADE; '
     'CREATE SCHEMA "Load Schema"')
few = os.path.join(d, "few.ndjson")
with open(corpus, "rb") as f, open(few, "wb") as g:
    g.write(b"\n".join(f.read().split(b"\n")[:50]) + b"\n\n  \n")
r = load(["--table", "Load Schema.Check Points", "--create-table", few])
check(r.status == 0 and r.summary.get("stored") == 50,
      "schema-qualified, mixed-case table name (%s)" % r.summary)
check(count('"Load Schema"."Check Points"') == 50,
      "rows went to \"Load Schema\".\"Check Points\"")
psql('DROP SCHEMA "Load Schema" CASCADE; DROP TABLE corpus_ref')

# Standard input, and PG* environment variables instead of --pg.
env = dict(os.environ)
fields = dict(kv.split("=", 1) for kv in os.environ["NANGUARD_TEST_PG"].split())
env.update(PGHOST=fields["host"], PGPORT=fields["port"], PGUSER=fields["user"],
           PGPASSWORD=fields["password"], PGDATABASE=fields["dbname"],
           PGAPPNAME="")
with open(few, "rb") as f:
    p = subprocess.run([BIN, "load", "--table", "corpus_cp"], stdin=f,
                       stderr=subprocess.PIPE, env=env)
check(p.returncode == 0 and b'"duplicates": 50' in p.stderr,
      "reads standard input and connects with the PG* variables")

# A slow input: rows go out within the batch time bound (1 s) while the
# pipe stays open.
errp = os.path.join(d, "slow.txt")
p = start_load_stdin(["--table", "corpus_cp"], errp)
psql("TRUNCATE corpus_cp")
with open(few, "rb") as f:
    first = f.read().split(b"\n")[:10]
p.stdin.write(b"\n".join(first) + b"\n")
p.stdin.flush()
check(wait_for(lambda: count("corpus_cp") == 10, limit=5),
      "a stalled input still gets its rows written within the time bound")
p.stdin.close()
r = wait_run(p, errp, timeout=30)
check(r.status == 0 and r.summary.get("stored") == 10, "and then ends cleanly")

h = subprocess.run([BIN, "load", "--help"], stdout=subprocess.PIPE)
text = h.stdout.decode()
opts = ["--pg", "--table", "--create-table", "--on-conflict", "--dead-letter",
        "--batch-rows", "--batch-bytes", "--retry-timeout", "--start-line",
        "--max-message-bytes", "--jobs"]
check(h.returncode == 0 and all(o in text for o in opts)
      and text.count("default") >= len(opts),
      "--help lists every option with its default")
reset_table("corpus_cp")
finish()
