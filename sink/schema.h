/* schema.h - LangGraph's PostgreSQL schema (langgraph-checkpoint-postgres's
 * PostgresSaver) in its current final shape, as SQL text.
 *
 * LangGraph reads three tables with hard-coded names: `checkpoints`,
 * `checkpoint_blobs` (channel values kept out of line) and
 * `checkpoint_writes` (task outputs, with `task_path`), each with a
 * `thread_id` index. nanguard writes the same tables and never writes
 * `checkpoint_migrations` rows, so LangGraph's own setup() run on top
 * still applies its migrations, all of which are no-ops on this schema.
 *
 * Pure text: no connection is needed (`nanguard schema` prints it; the
 * sink runs it for --create-table). Every statement is IF NOT EXISTS, and
 * none is CONCURRENTLY, so the text may run as one transaction.
 */
#ifndef NANGUARD_SCHEMA_H
#define NANGUARD_SCHEMA_H

#include "common/buf.h"

#include <stdbool.h>

typedef enum {
    SCHEMA_CHECKPOINTS = 0,
    SCHEMA_BLOBS,
    SCHEMA_WRITES,
    SCHEMA_TABLE_COUNT
} schema_table;

/* The name LangGraph gives table t: "checkpoints", "checkpoint_blobs",
 * "checkpoint_writes". */
const char *schema_table_name(schema_table t);

/* Whether a (schema-less) table name is the one LangGraph reads for
 * checkpoints: only then can LangGraph read what nanguard writes. */
bool schema_langgraph_readable(const char *relname);

/* Appends to out (NUL terminated) the statements that create table t and
 * its thread_id index when they do not exist: in namespace nspname (NULL
 * for the search path), named relname (NULL for LangGraph's name), with
 * `COMPRESSION lz4` on the jsonb columns when lz4 is set.
 * Names are quoted as identifiers. Returns 0, or -1 when out of memory
 * (out is then unchanged but for its capacity). */
int schema_table_sql(ng_buf *out, schema_table t, const char *nspname,
                     const char *relname, bool lz4);

/* All three tables, in order, as schema_table_sql writes them. */
int schema_sql(ng_buf *out, const char *nspname, bool lz4);

#endif
