/* schema.c - LangGraph's checkpoint tables as SQL text.
 *
 * The shape is what langgraph-checkpoint-postgres's migrations leave
 * (3.x: migrations 0-9): blob nullable (LangGraph's "empty" channel
 * value), task_path on checkpoint_writes, one thread_id index per table.
 * The index names are LangGraph's when the tables have LangGraph's names,
 * so that its setup() finds them (IF NOT EXISTS) instead of adding more.
 */
#include "sink/schema.h"

#include <string.h>

static const char *const names[SCHEMA_TABLE_COUNT] = {
    "checkpoints", "checkpoint_blobs", "checkpoint_writes"};

/* Columns up to the compressed ones, the compressed ones, then the rest;
 * %C marks where a compression clause goes. */
static const char *const bodies[SCHEMA_TABLE_COUNT] = {
    "  thread_id TEXT NOT NULL,\n"
    "  checkpoint_ns TEXT NOT NULL DEFAULT '',\n"
    "  checkpoint_id TEXT NOT NULL,\n"
    "  parent_checkpoint_id TEXT,\n"
    "  type TEXT,\n"
    "  checkpoint JSONB%C NOT NULL,\n"
    "  metadata JSONB%C NOT NULL DEFAULT '{}',\n"
    "  PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id)\n",

    "  thread_id TEXT NOT NULL,\n"
    "  checkpoint_ns TEXT NOT NULL DEFAULT '',\n"
    "  channel TEXT NOT NULL,\n"
    "  version TEXT NOT NULL,\n"
    "  type TEXT NOT NULL,\n"
    "  blob BYTEA,\n"
    "  PRIMARY KEY (thread_id, checkpoint_ns, channel, version)\n",

    "  thread_id TEXT NOT NULL,\n"
    "  checkpoint_ns TEXT NOT NULL DEFAULT '',\n"
    "  checkpoint_id TEXT NOT NULL,\n"
    "  task_id TEXT NOT NULL,\n"
    "  idx INTEGER NOT NULL,\n"
    "  channel TEXT NOT NULL,\n"
    "  type TEXT,\n"
    "  blob BYTEA NOT NULL,\n"
    "  task_path TEXT NOT NULL DEFAULT '',\n"
    "  PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)\n",
};

const char *schema_table_name(schema_table t)
{
    return (unsigned)t < SCHEMA_TABLE_COUNT ? names[t] : "?";
}

bool schema_langgraph_readable(const char *relname)
{
    return relname != NULL && strcmp(relname, names[SCHEMA_CHECKPOINTS]) == 0;
}

/* name as a PostgreSQL identifier: in double quotes, quotes doubled. */
static int put_ident(ng_buf *b, const char *name)
{
    if (ng_buf_putc(b, '"') != 0) {
        return -1;
    }
    for (const char *p = name; *p; p++) {
        if (ng_buf_putc(b, *p) != 0 || (*p == '"' && ng_buf_putc(b, '"'))) {
            return -1;
        }
    }
    return ng_buf_putc(b, '"');
}

static int put_str(ng_buf *b, const char *s)
{
    return ng_buf_append(b, s, strlen(s));
}

static int put_qualified(ng_buf *b, const char *nspname, const char *relname)
{
    if (nspname != NULL && (put_ident(b, nspname) || ng_buf_putc(b, '.'))) {
        return -1;
    }
    return put_ident(b, relname);
}

static int table_sql(ng_buf *b, schema_table t, const char *nspname,
                     const char *relname, bool lz4)
{
    if (put_str(b, "CREATE TABLE IF NOT EXISTS ") ||
        put_qualified(b, nspname, relname) || put_str(b, " (\n")) {
        return -1;
    }
    for (const char *p = bodies[t]; *p; p++) {
        if (p[0] == '%' && p[1] == 'C') {
            if (lz4 && put_str(b, " COMPRESSION lz4")) {
                return -1;
            }
            p++;
        } else if (ng_buf_putc(b, *p) != 0) {
            return -1;
        }
    }
    /* The index is named after its table, as LangGraph names its own. */
    size_t n = strlen(relname);
    char idx[128];
    if (n > sizeof idx - sizeof "_thread_id_idx") {
        n = sizeof idx - sizeof "_thread_id_idx";
    }
    memcpy(idx, relname, n);
    memcpy(idx + n, "_thread_id_idx", sizeof "_thread_id_idx");
    return put_str(b, ");\nCREATE INDEX IF NOT EXISTS ") || put_ident(b, idx) ||
           put_str(b, " ON ") || put_qualified(b, nspname, relname) ||
           put_str(b, " (thread_id);\n");
}

int schema_table_sql(ng_buf *out, schema_table t, const char *nspname,
                     const char *relname, bool lz4)
{
    if ((unsigned)t >= SCHEMA_TABLE_COUNT) {
        return -1;
    }
    size_t len = out->len;
    if (table_sql(out, t, nspname, relname ? relname : names[t], lz4) != 0 ||
        ng_buf_append_str(out, "", 0) != 0) {
        out->len = len;
        if (out->data != NULL) {
            out->data[len] = '\0';
        }
        return -1;
    }
    return 0;
}

int schema_sql(ng_buf *out, const char *nspname, bool lz4)
{
    size_t len = out->len;
    for (int t = 0; t < SCHEMA_TABLE_COUNT; t++) {
        if (schema_table_sql(out, (schema_table)t, nspname, NULL, lz4) != 0) {
            out->len = len;
            if (out->data != NULL) {
                out->data[len] = '\0';
            }
            return -1;
        }
    }
    return 0;
}
