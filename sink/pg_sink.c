/* pg_sink.c - batches of checkpoint envelopes into PostgreSQL with libpq.
 *
 * Each row is encoded once, when it is added, as a tuple of PostgreSQL's
 * binary COPY format, into one growing buffer: a flush (or a bisection
 * step) sends the tuples of the rows it wants with no further copy. The
 * staging table's first column is the row's index in the batch, so the
 * INSERT's RETURNING clause, joined back to staging, names the rows that
 * went in.
 */
#define _POSIX_C_SOURCE 200809L
#include "sink/pg_sink.h"

#include "common/buf.h"
#include "common/log.h"
#include "sink/pg_classify.h"
#include "sink/schema.h"

#include <libpq-fe.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STAGING "pg_temp.nanguard_staging"
#define COLUMNS                                                                \
    "thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, "    \
    "checkpoint, metadata"
#define KEY_COLUMNS "thread_id, checkpoint_ns, checkpoint_id"
/* Staging holds three kinds of tuples (the kind column): a checkpoint row,
 * a checkpoint_blobs row, a checkpoint_writes row; each carries n, the
 * index of the envelope it came from, and NULL in the columns of the
 * other kinds. */
#define EXTRA_COLUMNS "channel, version, task_id, task_path, idx, blob"
#define KIND_CHECKPOINT 0
#define KIND_BLOB 1
#define KIND_WRITE 2
#define BLOB_COLUMNS "thread_id, checkpoint_ns, channel, version, type, blob"
#define BLOB_KEY "thread_id, checkpoint_ns, channel, version"
#define WRITE_COLUMNS                                                          \
    "thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, "       \
    "channel, type, blob"
#define WRITE_KEY "thread_id, checkpoint_ns, checkpoint_id, task_id, idx"
#define NFIELDS 15
/* The key fields start after the field count, the row number and the
 * kind. */
#define KEY_START (2 + 4 + 4 + 4 + 2)
/* Per tuple: the field count, n, kind. */
#define TUPLE_HEAD KEY_START
/* The largest field PostgreSQL takes (1 GB - 1, with jsonb's version byte).
 */
#define MAX_FIELD ((size_t)0x3FFFFFFE)
/* COPY data is handed to libpq in pieces of about this size. */
#define SEND_CHUNK (256 * 1024)

static const char copy_header[19] = "PGCOPY\n\377\r\n\0" /* signature */
                                    "\0\0\0\0"           /* flags */
                                    "\0\0\0";            /* extension: 0 */
static const char copy_trailer[2] = "\377\377";

/* The seven columns nanguard writes, in the order of the table and staging.
 */
static const char *const column_names[] = {
    "thread_id", "checkpoint_ns", "checkpoint_id", "parent_checkpoint_id",
    "type",      "checkpoint",    "metadata"};
#define NCOLUMNS 7

typedef enum {
    ROW_PENDING = 0,
    ROW_STORED,
    ROW_DUPLICATE,
    ROW_REJECTED
} row_state;

typedef struct {
    uint64_t tag;
    size_t off;     /* the tuple in s->tuples */
    size_t len;     /* its length, with its blob and write tuples */
    size_t ck_len;  /* the checkpoint tuple's alone (the others follow) */
    size_t key_len; /* key bytes (lengths included) from off + KEY_START */
    uint64_t hash;
    row_state state;
    bool reported; /* its outcome is in the results */
    char sqlstate[6];
    char *message; /* REJECTED: owned, moved to the result */
} row;

/* How one attempt at a set of rows ended. */
typedef enum {
    ATTEMPT_OK = 0,
    ATTEMPT_BAD_ROW, /* a data error: s->row_sqlstate, s->row_message */
    ATTEMPT_FAILED   /* transient or configuration: in err */
} attempt_status;

/* A connection and what is prepared on it. Two sinks of the same table
 * may share one (pg_sink_share). */
struct pg_link {
    PGconn *conn;
    bool ready;      /* table checked and staging created on this connection */
    ng_buf sql_copy; /* BEGIN; COPY staging FROM STDIN */
    ng_buf sql_re_copy;    /* ROLLBACK; BEGIN; COPY ... */
    ng_buf sql_insert;     /* WITH ins AS (INSERT ...) SELECT n ...; COMMIT */
    ng_buf sql_insert_all; /* the same with the blobs and writes too */
    char compression[8];   /* of the checkpoint column */
    bool companions;       /* checkpoint_blobs and checkpoint_writes exist */
};

struct pg_sink {
    /* configuration */
    char *conninfo; /* NULL: the environment */
    char *appname;
    char *schema; /* NULL: the search path */
    char *relname;
    char *table_label; /* for messages: what the user wrote */
    pg_sink_conflict on_conflict;
    bool create_table;
    bool warned_name; /* that LangGraph cannot read the table */
    size_t batch_rows;
    size_t batch_bytes;
    unsigned batch_ms;
    unsigned connect_timeout_s;

    /* connection: its own, or another sink's (pg_sink_share) */
    struct pg_link own;
    struct pg_link *link;

    /* the batch */
    ng_buf tuples;
    row *rows;
    size_t nrows;
    size_t cap_rows;
    size_t nunsettled; /* rows still ROW_PENDING */
    size_t nreported;  /* rows whose outcome is in the results */
    struct timespec first_add;
    uint32_t *slots; /* open addressing: row index + 1, 0 when free */
    size_t nslots;   /* a power of two, at least twice nrows */
    size_t *work;    /* row indexes of an attempt, bisected in place */
    uint32_t *returned;
    size_t cap_work;
    char row_sqlstate[6]; /* the bad row error of the last attempt */
    char row_message[512];
    bool bisecting;

    /* outcomes */
    pg_row_result *results;
    size_t nresults;
    size_t cap_results;

    pg_sink_stats stats;
};

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p != NULL) {
        memcpy(p, s, n);
    }
    return p;
}

static void put_u16(char *p, uint16_t v)
{
    p[0] = (char)(v >> 8);
    p[1] = (char)(v & 0xFF);
}

static void put_u32(char *p, uint32_t v)
{
    p[0] = (char)(v >> 24);
    p[1] = (char)((v >> 16) & 0xFF);
    p[2] = (char)((v >> 8) & 0xFF);
    p[3] = (char)(v & 0xFF);
}

static double elapsed_ms(const struct timespec *since)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - since->tv_sec) * 1e3 +
           (double)(now.tv_nsec - since->tv_nsec) / 1e6;
}

/* ---- creation ---------------------------------------------------------- */

/* Whether libpq would take s as a connection string rather than a plain
 * database name (the rule of expand_dbname). */
static bool is_conninfo(const char *s)
{
    return strchr(s, '=') != NULL || strncmp(s, "postgresql://", 13) == 0 ||
           strncmp(s, "postgres://", 11) == 0;
}

pg_sink *pg_sink_new(const pg_sink_options *opts, ng_error *err)
{
    pg_sink_options none = {0};
    if (opts == NULL) {
        opts = &none;
    }
    if (opts->conninfo != NULL && is_conninfo(opts->conninfo)) {
        char *why = NULL;
        PQconninfoOption *parsed = PQconninfoParse(opts->conninfo, &why);
        if (parsed == NULL) {
            ng_error_set(err, NG_ERR_CONFIG, "bad_conninfo",
                         "the connection string is not valid: %s",
                         why ? why : "out of memory");
            if (why != NULL) {
                size_t n = strlen(why);
                if (err != NULL && n > 0 && why[n - 1] == '\n') {
                    char *nl = strrchr(err->message, '\n');
                    if (nl != NULL) {
                        *nl = '\0';
                    }
                }
                PQfreemem(why);
            }
            if (err != NULL) {
                /* libpq quotes the token it could not take: it may be the
                 * password ("invalid percent-encoded token"). */
                ng_error_redact_quoted(err->message);
            }
            return NULL;
        }
        PQconninfoFree(parsed);
    }
    const char *table =
        opts->table && opts->table[0] ? opts->table : PG_SINK_DEFAULT_TABLE;
    pg_sink *s = calloc(1, sizeof *s);
    if (s == NULL) {
        ng_error_set(err, NG_ERR_TRANSIENT, "out_of_memory", "out of memory");
        return NULL;
    }
    s->link = &s->own;
    const char *dot = strchr(table, '.');
    bool ok = true;
    if (dot != NULL) {
        size_t n = (size_t)(dot - table);
        s->schema = malloc(n + 1);
        ok = s->schema != NULL;
        if (ok) {
            memcpy(s->schema, table, n);
            s->schema[n] = '\0';
        }
        s->relname = dup_str(dot + 1);
    } else {
        s->relname = dup_str(table);
    }
    s->table_label = dup_str(table);
    s->appname = dup_str(opts->application_name && opts->application_name[0]
                             ? opts->application_name
                             : PG_SINK_DEFAULT_APPLICATION_NAME);
    if (opts->conninfo != NULL && opts->conninfo[0] != '\0') {
        s->conninfo = dup_str(opts->conninfo);
        ok = ok && s->conninfo != NULL;
    }
    if (!ok || s->relname == NULL || s->table_label == NULL ||
        s->appname == NULL) {
        pg_sink_free(s);
        ng_error_set(err, NG_ERR_TRANSIENT, "out_of_memory", "out of memory");
        return NULL;
    }
    if (s->relname[0] == '\0' || (s->schema && s->schema[0] == '\0') ||
        strchr(s->relname, '.') != NULL) {
        ng_error_set(err, NG_ERR_CONFIG, "usage",
                     "the table name '%s' is not NAME or SCHEMA.NAME",
                     s->table_label);
        pg_sink_free(s);
        return NULL;
    }
    /* PostgreSQL cuts longer names to NAMEDATALEN - 1 bytes without a
     * word, so two long names could write one table. */
    if (strlen(s->relname) > PG_SINK_MAX_NAME_BYTES ||
        (s->schema && strlen(s->schema) > PG_SINK_MAX_NAME_BYTES)) {
        ng_error_set(err, NG_ERR_CONFIG, "usage",
                     "the table name is longer than %d bytes (PostgreSQL "
                     "would cut it): %zu bytes",
                     PG_SINK_MAX_NAME_BYTES,
                     strlen(s->relname) > PG_SINK_MAX_NAME_BYTES
                         ? strlen(s->relname)
                         : strlen(s->schema));
        pg_sink_free(s);
        return NULL;
    }
    s->on_conflict = opts->on_conflict;
    s->create_table = opts->create_table != 0;
    s->batch_rows =
        opts->batch_rows ? opts->batch_rows : PG_SINK_DEFAULT_BATCH_ROWS;
    s->batch_bytes =
        opts->batch_bytes ? opts->batch_bytes : PG_SINK_DEFAULT_BATCH_BYTES;
    s->batch_ms = opts->batch_ms ? opts->batch_ms : PG_SINK_DEFAULT_BATCH_MS;
    s->connect_timeout_s = opts->connect_timeout_s
                               ? opts->connect_timeout_s
                               : PG_SINK_DEFAULT_CONNECT_TIMEOUT;
    return s;
}

static void drop_connection(pg_sink *s)
{
    PQfinish(s->link->conn);
    s->link->conn = NULL;
    s->link->ready = false;
}

static void clear_batch(pg_sink *s)
{
    for (size_t i = 0; i < s->nrows; i++) {
        free(s->rows[i].message);
    }
    s->nrows = 0;
    s->nunsettled = 0;
    s->nreported = 0;
    ng_buf_clear(&s->tuples);
    if (s->slots != NULL) {
        memset(s->slots, 0, s->nslots * sizeof *s->slots);
    }
}

void pg_sink_results_clear(pg_sink *s)
{
    for (size_t i = 0; i < s->nresults; i++) {
        free((char *)s->results[i].message);
    }
    s->nresults = 0;
}

void pg_sink_discard(pg_sink *s)
{
    clear_batch(s);
    pg_sink_results_clear(s);
}

void pg_sink_free(pg_sink *s)
{
    if (s == NULL) {
        return;
    }
    s->link = &s->own; /* a shared link is its owner's to close */
    drop_connection(s);
    pg_sink_discard(s);
    free(s->conninfo);
    free(s->appname);
    free(s->schema);
    free(s->relname);
    free(s->table_label);
    ng_buf_free(&s->own.sql_copy);
    ng_buf_free(&s->own.sql_re_copy);
    ng_buf_free(&s->own.sql_insert);
    ng_buf_free(&s->own.sql_insert_all);
    ng_buf_free(&s->tuples);
    free(s->rows);
    free(s->slots);
    free(s->work);
    free(s->returned);
    free(s->results);
    free(s);
}

/* ---- errors ------------------------------------------------------------ */

static void set_sqlstate(ng_error *err, const char *sqlstate)
{
    if (err != NULL) {
        snprintf(err->sqlstate, sizeof err->sqlstate, "%s", sqlstate);
    }
}

/* Copies the server's primary message (and, for data errors, its detail:
 * "Token "NaN" is invalid.") without a trailing newline. */
static void result_message(const PGresult *res, char *out, size_t n)
{
    const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    const char *detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
    const char *sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    if (primary == NULL) {
        primary = PQresultErrorMessage(res);
    }
    /* 23xxx details repeat the row ("Failing row contains ..."): payload. */
    if (detail != NULL && sqlstate != NULL && strncmp(sqlstate, "22", 2) == 0) {
        snprintf(out, n, "%s: %s", primary, detail);
    } else {
        snprintf(out, n, "%s", primary);
    }
    size_t len = strlen(out);
    while (len > 0 && (out[len - 1] == '\n' || out[len - 1] == ' ')) {
        out[--len] = '\0';
    }
}

/* The message libpq holds for the connection, on one line. */
static void conn_message(PGconn *conn, char *out, size_t n)
{
    snprintf(out, n, "%s",
             conn ? PQerrorMessage(conn) : "could not allocate a connection");
    for (char *p = out; *p; p++) {
        if (*p == '\n' || *p == '\t') {
            *p = ' ';
        }
    }
    size_t len = strlen(out);
    while (len > 0 && out[len - 1] == ' ') {
        out[--len] = '\0';
    }
}

/* The connection broke (or was never made): always transient. */
static int fail_connection(pg_sink *s, ng_error *err, const char *doing)
{
    char msg[400];
    conn_message(s->link->conn, msg, sizeof msg);
    drop_connection(s);
    ng_error_set(err, NG_ERR_TRANSIENT, "pg_connection",
                 "PostgreSQL connection lost while %s: %s", doing, msg);
    return -1;
}

/* A failed statement of the sink's own (not a row's): classified by its
 * SQLSTATE; takes res (may be NULL when the connection broke). */
static int fail_result(pg_sink *s, PGresult *res, ng_error *err,
                       const char *doing)
{
    const char *sqlstate =
        res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (res == NULL || sqlstate == NULL ||
        PQstatus(s->link->conn) == CONNECTION_BAD) {
        PQclear(res);
        return fail_connection(s, err, doing);
    }
    char msg[400];
    result_message(res, msg, sizeof msg);
    ng_error_class klass = pg_classify_sqlstate(sqlstate);
    char code[16];
    snprintf(code, sizeof code, "pg_%s", sqlstate);
    if (klass == NG_ERR_CONFIG) {
        ng_error_set(err, klass, code,
                     "%s failed (SQLSTATE %s): %s; to fix: %s", doing, sqlstate,
                     msg, pg_classify_hint(sqlstate));
    } else {
        /* a data error in our own statements is not a row's fault either */
        ng_error_set(err, klass == NG_ERR_PERMANENT ? NG_ERR_CONFIG : klass,
                     code, "%s failed (SQLSTATE %s): %s", doing, sqlstate, msg);
    }
    set_sqlstate(err, sqlstate);
    PQclear(res);
    return -1;
}

/* ---- connection -------------------------------------------------------- */

static void round_trip(pg_sink *s);

static void notice_to_log(void *arg, const char *message)
{
    (void)arg;
    char line[300];
    snprintf(line, sizeof line, "%s", message);
    size_t n = strlen(line);
    while (n > 0 && line[n - 1] == '\n') {
        line[--n] = '\0';
    }
    ng_log(NG_LOG_DEBUG, "postgresql notice", "notice", line, NULL);
}

/* Runs one parameterised statement of the setup. Returns the result, or
 * NULL with err filled. */
static PGresult *setup_exec(pg_sink *s, const char *sql, int nparams,
                            const char *const *params, ng_error *err,
                            const char *doing)
{
    s->stats.round_trips++;
    PGresult *res =
        PQexecParams(s->link->conn, sql, nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        return res;
    }
    fail_result(s, res, err, doing);
    return NULL;
}

static int oom(ng_error *err)
{
    return ng_error_set(err, NG_ERR_TRANSIENT, "out_of_memory",
                        "out of memory");
}

static int append_str(ng_buf *b, const char *str)
{
    return ng_buf_append(b, str, strlen(str));
}

static int append_ident(pg_sink *s, ng_buf *b, const char *name, ng_error *err)
{
    char *q = PQescapeIdentifier(s->link->conn, name, strlen(name));
    if (q == NULL) {
        char msg[300];
        conn_message(s->link->conn, msg, sizeof msg);
        return ng_error_set(err, NG_ERR_CONFIG, "bad_table",
                            "the table name '%s' cannot be quoted: %s",
                            s->table_label, msg);
    }
    int rc = append_str(b, q);
    PQfreemem(q);
    return rc ? oom(err) : 0;
}

/* relname in the sink's schema as SQL: "schema"."name" or "name", NUL
 * terminated. */
static int quoted_name(pg_sink *s, const char *relname, ng_buf *b,
                       ng_error *err)
{
    ng_buf_clear(b);
    if (s->schema != NULL &&
        (append_ident(s, b, s->schema, err) || ng_buf_putc(b, '.'))) {
        return -1;
    }
    if (append_ident(s, b, relname, err) || ng_buf_append_str(b, "", 0) != 0) {
        return -1;
    }
    return 0;
}

static int quoted_table(pg_sink *s, ng_buf *b, ng_error *err)
{
    return quoted_name(s, s->relname, b, err);
}

static int lookup_table(pg_sink *s, const char *qtable, char *oid, size_t n,
                        ng_error *err);

/* The name of schema table t for this sink: the user's for the checkpoints,
 * LangGraph's for the other two (in the same schema). */
static const char *table_relname(const pg_sink *s, schema_table t)
{
    return t == SCHEMA_CHECKPOINTS ? s->relname : schema_table_name(t);
}

/* LangGraph's schema (sink/schema.h): each of its tables that does not
 * exist, with lz4 for the jsonb columns when the server has it (pglz is
 * most of the cost of loading large jsonb values). Existing tables are
 * left as they are. */
static int create_target(pg_sink *s, ng_error *err)
{
    bool lz4 = false;
    if (PQserverVersion(s->link->conn) >= 140000) {
        PGresult *res =
            setup_exec(s,
                       "SELECT 1 FROM pg_settings WHERE name = "
                       "'default_toast_compression' AND 'lz4' = ANY(enumvals)",
                       0, NULL, err, "checking for lz4");
        if (res == NULL) {
            return -1;
        }
        lz4 = PQntuples(res) > 0;
        PQclear(res);
    }
    ng_buf qt = {0};
    ng_buf sql = {0};
    int rc = -1;
    for (int t = 0; t < SCHEMA_TABLE_COUNT; t++) {
        const char *relname = table_relname(s, (schema_table)t);
        char oid[24];
        if (quoted_name(s, relname, &qt, err) != 0 ||
            lookup_table(s, qt.data, oid, sizeof oid, err) != 0) {
            goto done;
        }
        if (oid[0] != '\0') {
            continue;
        }
        ng_buf_clear(&sql);
        if (schema_table_sql(&sql, (schema_table)t, s->schema, relname, lz4)) {
            oom(err);
            goto done;
        }
        s->stats.round_trips++;
        PGresult *res = PQexec(s->link->conn, sql.data);
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            fail_result(s, res, err, "creating the table");
            goto done;
        }
        PQclear(res);
        ng_log(NG_LOG_INFO, "created table", "table",
               t == SCHEMA_CHECKPOINTS ? s->table_label : relname,
               "compression", lz4 ? "lz4" : "default", NULL);
    }
    rc = 0;
done:
    ng_buf_free(&qt);
    ng_buf_free(&sql);
    return rc;
}

/* The oid of the table (as text), or "" when it does not exist. */
static int lookup_table(pg_sink *s, const char *qtable, char *oid, size_t n,
                        ng_error *err)
{
    const char *params[1] = {qtable};
    PGresult *res = setup_exec(s, "SELECT to_regclass($1)::oid::text", 1,
                               params, err, "looking the table up");
    if (res == NULL) {
        return -1;
    }
    snprintf(oid, n, "%s",
             PQntuples(res) == 1 && !PQgetisnull(res, 0, 0)
                 ? PQgetvalue(res, 0, 0)
                 : "");
    PQclear(res);
    return 0;
}

static const char *compression_clause(const char *attcompression)
{
    if (strcmp(attcompression, "l") == 0) {
        return " COMPRESSION lz4";
    }
    if (strcmp(attcompression, "p") == 0) {
        return " COMPRESSION pglz";
    }
    return "";
}

/* Checks the table (columns, privileges), creates it when asked, creates
 * the staging table and the statements of this connection. */
static int setup(pg_sink *s, ng_error *err)
{
    ng_buf qt = {0};
    ng_buf sql = {0};
    PGresult *res = NULL;
    char oid[24];
    if (s->create_table && create_target(s, err) != 0) {
        goto err;
    }
    if (quoted_table(s, &qt, err) != 0 ||
        lookup_table(s, qt.data, oid, sizeof oid, err) != 0) {
        goto err;
    }
    if (oid[0] == '\0') {
        ng_error_set(err, NG_ERR_CONFIG, "pg_42P01",
                     "table %s does not exist; to fix: %s", s->table_label,
                     pg_classify_hint("42P01"));
        set_sqlstate(err, "42P01");
        goto err;
    }

    /* Columns, and the compression of the jsonb ones: staging uses the
     * same, so that a value is compressed once, in staging, and the
     * INSERT moves it compressed. */
    const char *params[1] = {oid};
    bool v14 = PQserverVersion(s->link->conn) >= 140000;
    res = setup_exec(
        s,
        v14 ? "SELECT attname::text, attcompression::text, "
              "current_setting('default_toast_compression') "
              "FROM pg_attribute WHERE attrelid = $1::oid AND attnum > 0 "
              "AND NOT attisdropped"
            : "SELECT attname::text, '', 'pglz' FROM pg_attribute "
              "WHERE attrelid = $1::oid AND attnum > 0 AND NOT attisdropped",
        1, params, err, "reading the table's columns");
    if (res == NULL) {
        goto err;
    }
    char missing[200] = "";
    char comp_cp[2] = "", comp_md[2] = "";
    for (int c = 0; c < NCOLUMNS; c++) {
        bool found = false;
        for (int r = 0; r < PQntuples(res) && !found; r++) {
            if (strcmp(PQgetvalue(res, r, 0), column_names[c]) != 0) {
                continue;
            }
            found = true;
            if (c == 5) {
                snprintf(comp_cp, sizeof comp_cp, "%s", PQgetvalue(res, r, 1));
                const char *eff = comp_cp[0] == 'l'   ? "lz4"
                                  : comp_cp[0] == 'p' ? "pglz"
                                                      : PQgetvalue(res, r, 2);
                snprintf(s->link->compression, sizeof s->link->compression,
                         "%s", eff);
            } else if (c == 6) {
                snprintf(comp_md, sizeof comp_md, "%s", PQgetvalue(res, r, 1));
            }
        }
        if (!found) {
            size_t used = strlen(missing);
            snprintf(missing + used, sizeof missing - used, "%s%s",
                     used ? ", " : "", column_names[c]);
        }
    }
    PQclear(res);
    res = NULL;
    if (missing[0] != '\0') {
        ng_error_set(err, NG_ERR_CONFIG, "pg_42703",
                     "table %s lacks column(s) %s; to fix: %s", s->table_label,
                     missing, pg_classify_hint("42703"));
        set_sqlstate(err, "42703");
        goto err;
    }

    res = setup_exec(s,
                     "SELECT has_table_privilege($1::oid, 'INSERT'), "
                     "has_table_privilege($1::oid, 'SELECT'), "
                     "has_table_privilege($1::oid, 'UPDATE')",
                     1, params, err, "checking privileges");
    if (res == NULL) {
        goto err;
    }
    bool can_insert = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    bool can_select = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
    bool can_update = strcmp(PQgetvalue(res, 0, 2), "t") == 0;
    PQclear(res);
    res = NULL;
    if (!can_insert || !can_select ||
        (!can_update && s->on_conflict == PG_SINK_ON_CONFLICT_UPDATE)) {
        ng_error_set(err, NG_ERR_CONFIG, "pg_42501",
                     "the user %s may not %s table %s; to fix: %s",
                     PQuser(s->link->conn) ? PQuser(s->link->conn) : "?",
                     !can_insert   ? "INSERT into"
                     : !can_select ? "SELECT from"
                                   : "UPDATE",
                     s->table_label, pg_classify_hint("42501"));
        set_sqlstate(err, "42501");
        goto err;
    }

    /* A fresh connection has no staging table; a pooled one may have an
     * old one. */
    if (append_str(&sql,
                   "DROP TABLE IF EXISTS " STAGING ";\n"
                   "CREATE TEMP TABLE nanguard_staging (\n"
                   "  n int4 NOT NULL, kind int2 NOT NULL, thread_id text, "
                   "checkpoint_ns text, checkpoint_id text,\n"
                   "  parent_checkpoint_id text, type text,\n"
                   "  checkpoint jsonb") ||
        append_str(&sql, compression_clause(comp_cp)) ||
        append_str(&sql, ", metadata jsonb") ||
        append_str(&sql, compression_clause(comp_md)) ||
        append_str(&sql, ",\n  channel text, version text, task_id text, "
                         "task_path text, idx int4, blob bytea") ||
        ng_buf_append_str(&sql, ") ON COMMIT DELETE ROWS", 23)) {
        oom(err);
        goto err;
    }
    s->stats.round_trips++;
    res = PQexec(s->link->conn, sql.data);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        fail_result(s, res, err, "creating the staging table");
        res = NULL;
        goto err;
    }
    PQclear(res);
    res = NULL;

    ng_buf_clear(&s->link->sql_copy);
    ng_buf_clear(&s->link->sql_re_copy);
    ng_buf_clear(&s->link->sql_insert);
    /* Blobs and writes go with their checkpoint when LangGraph's other
     * two tables are there (and make a batch that has any fail with a
     * configuration error when they are not). Both are immutable, as in
     * LangGraph (a channel version's value, a task's write): DO NOTHING
     * in either mode. An envelope counts as stored when any of its rows
     * went in. */
    ng_buf qb = {0}, qw = {0};
    char oid_b[24] = "", oid_w[24] = "";
    if (quoted_name(s, schema_table_name(SCHEMA_BLOBS), &qb, err) != 0 ||
        lookup_table(s, qb.data, oid_b, sizeof oid_b, err) != 0 ||
        quoted_name(s, schema_table_name(SCHEMA_WRITES), &qw, err) != 0 ||
        lookup_table(s, qw.data, oid_w, sizeof oid_w, err) != 0) {
        ng_buf_free(&qb);
        ng_buf_free(&qw);
        goto err;
    }
    s->link->companions = oid_b[0] != '\0' && oid_w[0] != '\0';
    const char *copy = "BEGIN; COPY " STAGING " (n, kind, " COLUMNS
                       ", " EXTRA_COLUMNS ") FROM STDIN (FORMAT binary)";
    int rc = ng_buf_append_str(&s->link->sql_copy, copy, strlen(copy)) ||
             append_str(&s->link->sql_re_copy, "ROLLBACK; ") ||
             ng_buf_append_str(&s->link->sql_re_copy, copy, strlen(copy));
    ng_buf_clear(&s->link->sql_insert_all);
    /* Batches without blobs or writes never touch the other two tables
     * (their privileges do not matter to them). */
    for (int all = 0; all < 2 && rc == 0; all++) {
        if (all && !s->link->companions) {
            break;
        }
        ng_buf *ins = all ? &s->link->sql_insert_all : &s->link->sql_insert;
        if (all) {
            rc = append_str(ins, "WITH b AS (INSERT INTO ") ||
                 append_str(ins, qb.data) ||
                 append_str(ins, " (" BLOB_COLUMNS ") SELECT " BLOB_COLUMNS
                                 " FROM " STAGING " WHERE kind = 1"
                                 " ON CONFLICT (" BLOB_KEY ") DO NOTHING"
                                 " RETURNING " BLOB_KEY "),\n"
                                 "w AS (INSERT INTO ") ||
                 append_str(ins, qw.data) ||
                 append_str(ins, " (" WRITE_COLUMNS ") SELECT " WRITE_COLUMNS
                                 " FROM " STAGING " WHERE kind = 2"
                                 " ON CONFLICT (" WRITE_KEY ") DO NOTHING"
                                 " RETURNING " WRITE_KEY "),\n"
                                 "ins AS (INSERT INTO ");
        } else {
            rc = append_str(ins, "WITH ins AS (INSERT INTO ");
        }
        rc =
            rc || append_str(ins, qt.data) ||
            append_str(ins, " (" COLUMNS ") SELECT " COLUMNS " FROM " STAGING
                            " WHERE kind = 0 ON CONFLICT (" KEY_COLUMNS ") ") ||
            append_str(ins,
                       s->on_conflict == PG_SINK_ON_CONFLICT_UPDATE
                           ? "DO UPDATE SET checkpoint = EXCLUDED.checkpoint, "
                             "metadata = EXCLUDED.metadata, "
                             "parent_checkpoint_id = "
                             "EXCLUDED.parent_checkpoint_id, "
                             "type = EXCLUDED.type"
                           : "DO NOTHING") ||
            append_str(ins,
                       " RETURNING " KEY_COLUMNS ")\nSELECT s.n FROM " STAGING
                       " s JOIN ins USING (" KEY_COLUMNS ") WHERE s.kind = 0");
        if (rc == 0 && all) {
            rc = append_str(ins,
                            "\nUNION SELECT s.n FROM " STAGING
                            " s JOIN b USING (" BLOB_KEY ") WHERE s.kind = 1"
                            "\nUNION SELECT s.n FROM " STAGING
                            " s JOIN w USING (" WRITE_KEY ") WHERE s.kind = 2");
        }
        rc = rc || ng_buf_append_str(ins, "; COMMIT", 8);
    }
    ng_buf_free(&qb);
    ng_buf_free(&qw);
    if (rc != 0) {
        oom(err);
        goto err;
    }
    ng_buf_free(&qt);
    ng_buf_free(&sql);
    return 0;
err:
    PQclear(res);
    ng_buf_free(&qt);
    ng_buf_free(&sql);
    return -1;
}

void pg_sink_share(pg_sink *s, pg_sink *with)
{
    s->link = with->link;
}

int pg_sink_connected(const pg_sink *s)
{
    return s->link->conn != NULL && s->link->ready &&
           PQstatus(s->link->conn) == CONNECTION_OK;
}

int pg_sink_connect(pg_sink *s, ng_error *err)
{
    if (s->link->conn != NULL && PQstatus(s->link->conn) != CONNECTION_OK) {
        drop_connection(s);
    }
    if (s->link->conn == NULL) {
        /* Defaults first, so that the user's string (expanded from dbname)
         * and the PG* environment override them; the encoding last,
         * since the rows are UTF-8 whatever the user prefers. */
        const char *kw[12];
        const char *val[12];
        int n = 0;
        char timeout[16];
        snprintf(timeout, sizeof timeout, "%u", s->connect_timeout_s);
        kw[n] = "fallback_application_name";
        val[n++] = s->appname;
        if (getenv("PGCONNECT_TIMEOUT") == NULL) {
            kw[n] = "connect_timeout";
            val[n++] = timeout;
        }
        kw[n] = "keepalives";
        val[n++] = "1";
        kw[n] = "keepalives_idle";
        val[n++] = "30";
        kw[n] = "keepalives_interval";
        val[n++] = "10";
        kw[n] = "keepalives_count";
        val[n++] = "3";
        if (s->conninfo != NULL) {
            kw[n] = "dbname";
            val[n++] = s->conninfo;
        }
        kw[n] = "client_encoding";
        val[n++] = "UTF8";
        kw[n] = NULL;
        val[n] = NULL;
        s->link->conn = PQconnectdbParams(kw, val, 1);
        if (s->link->conn == NULL) {
            return oom(err);
        }
        if (PQstatus(s->link->conn) != CONNECTION_OK) {
            char msg[400];
            const char *sqlstate, *hint;
            conn_message(s->link->conn, msg, sizeof msg);
            drop_connection(s);
            if (strncmp(msg, "invalid ", 8) == 0) {
                /* libpq's checks of the options quote the value ("invalid
                 * integer value "..." for connection option "port""). */
                ng_error_redact_quoted(msg);
            }
            ng_error_class k =
                pg_classify_connect_message(msg, &sqlstate, &hint);
            char code[16];
            snprintf(code, sizeof code, "pg_%s",
                     sqlstate[0] ? sqlstate : "connection");
            ng_error_set(err, k, code, "cannot connect to PostgreSQL: %s; %s%s",
                         msg, k == NG_ERR_CONFIG ? "to fix: " : "", hint);
            set_sqlstate(err, sqlstate);
            return -1;
        }
        PQsetNoticeProcessor(s->link->conn, notice_to_log, NULL);
        s->stats.connects++;
    }
    if (!s->link->ready) {
        if (setup(s, err) != 0) {
            if (s->link->conn != NULL &&
                PQstatus(s->link->conn) != CONNECTION_OK) {
                drop_connection(s);
            }
            return -1;
        }
        s->link->ready = true;
        if (!s->warned_name && !schema_langgraph_readable(s->relname)) {
            s->warned_name = true;
            ng_log(NG_LOG_WARN,
                   "LangGraph reads only a table named checkpoints: it "
                   "cannot read this one",
                   "table", s->table_label, NULL);
        }
        char version[16];
        snprintf(version, sizeof version, "%d", PQserverVersion(s->link->conn));
        ng_log(NG_LOG_INFO, "connected to PostgreSQL", "table", s->table_label,
               "server_version#", version, "compression", s->link->compression,
               "on_conflict",
               s->on_conflict == PG_SINK_ON_CONFLICT_UPDATE ? "update"
                                                            : "nothing",
               NULL);
    }
    return 0;
}

int pg_sink_ping(pg_sink *s, ng_error *err)
{
    if (!pg_sink_connected(s)) {
        return pg_sink_connect(s, err);
    }
    PGresult *res = PQexec(s->link->conn, "");
    round_trip(s);
    if (res != NULL && PQresultStatus(res) == PGRES_EMPTY_QUERY) {
        PQclear(res);
        return 0;
    }
    return fail_result(s, res, err, "checking the connection");
}

const char *pg_sink_table_compression(const pg_sink *s)
{
    return s->link->compression;
}

/* ---- the batch --------------------------------------------------------- */

static uint64_t hash_bytes(const char *p, size_t n)
{
    uint64_t h = UINT64_C(14695981039346656037);
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= UINT64_C(1099511628211);
    }
    return h;
}

/* Grows the key table to hold `want` rows at half load. */
static int grow_slots(pg_sink *s, size_t want)
{
    if (want <= s->nslots / 2) {
        return 0;
    }
    size_t n = s->nslots ? s->nslots : 64;
    while (n / 2 < want) {
        if (n > SIZE_MAX / 2 / sizeof(uint32_t)) {
            return -1;
        }
        n *= 2;
    }
    uint32_t *slots = calloc(n, sizeof *slots);
    if (slots == NULL) {
        return -1;
    }
    for (size_t i = 0; i < s->nslots; i++) {
        uint32_t v = s->slots[i];
        if (v == 0) {
            continue;
        }
        size_t j = (size_t)s->rows[v - 1].hash & (n - 1);
        while (slots[j] != 0) {
            j = (j + 1) & (n - 1);
        }
        slots[j] = v;
    }
    free(s->slots);
    s->slots = slots;
    s->nslots = n;
    return 0;
}

static int grow_rows(pg_sink *s)
{
    if (s->nrows < s->cap_rows) {
        return 0;
    }
    size_t cap = s->cap_rows ? s->cap_rows * 2 : 256;
    if (cap > SIZE_MAX / sizeof(row)) {
        return -1;
    }
    row *rows = realloc(s->rows, cap * sizeof *rows);
    if (rows == NULL) {
        return -1;
    }
    s->rows = rows;
    s->cap_rows = cap;
    return 0;
}

static char *put_field(char *p, const char *v, size_t n)
{
    put_u32(p, (uint32_t)n);
    if (n > 0) {
        memcpy(p + 4, v, n);
    }
    return p + 4 + n;
}

static char *put_jsonb(char *p, const char *v, size_t n)
{
    put_u32(p, (uint32_t)(n + 1));
    p[4] = 1; /* jsonb binary format version */
    memcpy(p + 5, v, n);
    return p + 5 + n;
}

/* Field writers for the binary COPY tuples; NULL writes SQL NULL. */
static char *put_null(char *p)
{
    put_u32(p, UINT32_MAX); /* -1: NULL */
    return p + 4;
}

static char *put_text(char *p, const char *v)
{
    return v == NULL ? put_null(p) : put_field(p, v, strlen(v));
}

static char *put_head(char *p, uint32_t n, uint16_t kind)
{
    put_u16(p, NFIELDS);
    put_u32(p + 2, 4);
    put_u32(p + 6, n);
    put_u32(p + 10, 2);
    put_u16(p + 14, kind);
    return p + TUPLE_HEAD;
}

static size_t text_len(const char *v)
{
    return v ? strlen(v) : 0;
}

/* Bytes of the tuples of env's blobs and writes (their NULL fields
 * included), or SIZE_MAX when more than a row may hold. */
static size_t extras_size(const envelope *env)
{
    /* Each tuple repeats the thread and namespace; writes the checkpoint
     * id too. (Each is far below MAX_FIELD: checked by the caller.) */
    size_t key = text_len(env->thread_id) + text_len(env->checkpoint_ns);
    size_t cid = text_len(env->checkpoint_id);
    size_t need = 0;
    for (size_t i = 0; i < env->nblobs; i++) {
        const envelope_blob *b = &env->blobs[i];
        size_t n = TUPLE_HEAD + 13 * 4 + key + text_len(b->channel) +
                   text_len(b->version) + text_len(b->type);
        if (b->blob_len > MAX_FIELD || n > MAX_FIELD - b->blob_len ||
            need > MAX_FIELD - n - b->blob_len) {
            return SIZE_MAX;
        }
        need += n + b->blob_len;
    }
    for (size_t i = 0; i < env->nwrites; i++) {
        const envelope_write *w = &env->writes[i];
        size_t n = TUPLE_HEAD + 13 * 4 + 4 + key + cid + text_len(w->channel) +
                   text_len(w->type) + text_len(w->task_id) +
                   text_len(w->task_path);
        if (w->blob_len > MAX_FIELD || n > MAX_FIELD - w->blob_len ||
            need > MAX_FIELD - n - w->blob_len) {
            return SIZE_MAX;
        }
        need += n + w->blob_len;
    }
    return need;
}

static char *put_extras(char *p, const envelope *env, uint32_t n,
                        const char *const text[5])
{
    for (size_t i = 0; i < env->nblobs; i++) {
        const envelope_blob *b = &env->blobs[i];
        p = put_head(p, n, KIND_BLOB);
        p = put_text(p, text[0]);
        p = put_text(p, text[1]);
        p = put_null(p); /* checkpoint_id */
        p = put_null(p); /* parent_checkpoint_id */
        p = put_text(p, b->type);
        p = put_null(p); /* checkpoint */
        p = put_null(p); /* metadata */
        p = put_text(p, b->channel);
        p = put_text(p, b->version);
        p = put_null(p); /* task_id */
        p = put_null(p); /* task_path */
        p = put_null(p); /* idx */
        p = b->blob ? put_field(p, b->blob, b->blob_len) : put_null(p);
    }
    for (size_t i = 0; i < env->nwrites; i++) {
        const envelope_write *w = &env->writes[i];
        p = put_head(p, n, KIND_WRITE);
        p = put_text(p, text[0]);
        p = put_text(p, text[1]);
        p = put_text(p, text[2]);
        p = put_null(p); /* parent_checkpoint_id */
        p = put_text(p, w->type);
        p = put_null(p); /* checkpoint */
        p = put_null(p); /* metadata */
        p = put_text(p, w->channel);
        p = put_null(p); /* version */
        p = put_text(p, w->task_id);
        p = put_text(p, w->task_path);
        put_u32(p, 4);
        put_u32(p + 4, (uint32_t)w->idx);
        p += 8;
        p = put_field(p, w->blob ? w->blob : "", w->blob ? w->blob_len : 0);
    }
    return p;
}

/* The length of the COPY tuple at p. */
static size_t tuple_size(const char *p)
{
    const unsigned char *u = (const unsigned char *)p;
    unsigned nf = (unsigned)u[0] << 8 | u[1];
    size_t at = 2;
    for (unsigned f = 0; f < nf; f++) {
        uint32_t len = (uint32_t)u[at] << 24 | (uint32_t)u[at + 1] << 16 |
                       (uint32_t)u[at + 2] << 8 | u[at + 3];
        at += 4 + (len == UINT32_MAX ? 0 : len);
    }
    return at;
}

int pg_sink_add(pg_sink *s, const envelope *env, uint64_t tag, ng_error *err)
{
    const char *text[5] = {env->thread_id, env->checkpoint_ns,
                           env->checkpoint_id, env->parent_checkpoint_id,
                           env->type};
    size_t len[5];
    /* Head, five lengths, two lengths + version bytes, six NULLs; then
     * the values, added one at a time so the sum cannot overflow (each is
     * checked against the 1 GB PostgreSQL takes for a row). */
    size_t need = TUPLE_HEAD + 5 * 4 + 2 * 5 + 6 * 4;
    for (int i = 0; i < 7; i++) {
        size_t n = i < 5    ? (len[i] = text[i] ? strlen(text[i]) : 0)
                   : i == 5 ? env->checkpoint_len
                            : env->metadata_len;
        if (n > MAX_FIELD || need + n > MAX_FIELD) {
            return ng_error_set(err, NG_ERR_PERMANENT, "too_large",
                                "the row is larger than PostgreSQL takes "
                                "(1 GB, at field '%s')",
                                column_names[i]);
        }
        need += n;
    }
    size_t extra = extras_size(env);
    if (extra == SIZE_MAX || need + extra > MAX_FIELD) {
        return ng_error_set(err, NG_ERR_PERMANENT, "too_large",
                            "the row is larger than PostgreSQL takes "
                            "(1 GB, with its blobs and writes)");
    }
    need += extra;
    if (s->nrows >= (size_t)INT32_MAX) {
        return ng_error_set(err, NG_ERR_TRANSIENT, "batch_full",
                            "the batch is full: flush it first");
    }
    if (grow_rows(s) != 0 || grow_slots(s, s->nrows + 1) != 0 ||
        ng_buf_reserve(&s->tuples, need) != 0) {
        return oom(err);
    }

    size_t off = s->tuples.len;
    char *p = s->tuples.data + off;
    p = put_head(p, (uint32_t)s->nrows, KIND_CHECKPOINT);
    for (int i = 0; i < 5; i++) {
        p = text[i] == NULL ? put_null(p) : put_field(p, text[i], len[i]);
    }
    p = put_jsonb(p, env->checkpoint, env->checkpoint_len);
    p = put_jsonb(p, env->metadata, env->metadata_len);
    for (int i = 0; i < 6; i++) {
        p = put_null(p);
    }
    size_t ck_len = (size_t)(p - (s->tuples.data + off));
    p = put_extras(p, env, (uint32_t)s->nrows, text);

    row *r = &s->rows[s->nrows];
    memset(r, 0, sizeof *r);
    r->tag = tag;
    r->off = off;
    r->len = (size_t)(p - (s->tuples.data + off));
    r->ck_len = ck_len;
    r->key_len = 12 + len[0] + len[1] + len[2];
    r->hash = hash_bytes(s->tuples.data + off + KEY_START, r->key_len);
    r->state = ROW_PENDING;

    /* The last row with a key wins, as a replay would; the blobs and
     * writes of the row it replaces are not lost with it: they move to
     * the winner (copied after its own, with its row number). */
    size_t mask = s->nslots - 1;
    size_t j = (size_t)r->hash & mask;
    for (; s->slots[j] != 0; j = (j + 1) & mask) {
        row *o = &s->rows[s->slots[j] - 1];
        if (o->hash == r->hash && o->key_len == r->key_len &&
            memcmp(s->tuples.data + o->off + KEY_START,
                   s->tuples.data + off + KEY_START, r->key_len) == 0) {
            if (o->state == ROW_PENDING) {
                size_t moved = o->len - o->ck_len;
                if (moved > 0) {
                    if (moved > MAX_FIELD - r->len ||
                        ng_buf_reserve(&s->tuples, r->len + moved) != 0) {
                        return oom(err); /* nothing added yet */
                    }
                    char *dst = s->tuples.data + off + r->len;
                    memcpy(dst, s->tuples.data + o->off + o->ck_len, moved);
                    for (size_t t = 0; t < moved; t += tuple_size(dst + t)) {
                        put_u32(dst + t + 6, (uint32_t)s->nrows);
                    }
                    r->len += moved;
                }
                o->state = ROW_DUPLICATE;
                s->nunsettled--;
            }
            break;
        }
    }
    s->tuples.len += r->len;
    s->slots[j] = (uint32_t)(s->nrows + 1);
    if (s->nrows == 0) {
        clock_gettime(CLOCK_MONOTONIC, &s->first_add);
    }
    s->nrows++;
    s->nunsettled++;
    return 0;
}

size_t pg_sink_pending(const pg_sink *s)
{
    return s->nrows - s->nreported;
}

size_t pg_sink_pending_bytes(const pg_sink *s)
{
    return s->tuples.len;
}

int pg_sink_flush_due(const pg_sink *s)
{
    if (s->nrows == 0) {
        return 0;
    }
    return s->nrows >= s->batch_rows || s->tuples.len >= s->batch_bytes ||
           elapsed_ms(&s->first_add) >= (double)s->batch_ms;
}

/* ---- flushing ---------------------------------------------------------- */

static void round_trip(pg_sink *s)
{
    s->stats.round_trips++;
    if (s->bisecting) {
        s->stats.bisect_round_trips++;
    }
}

/* A statement of an attempt failed: a bad row, or a failure of the whole
 * attempt. Takes res (NULL when the connection broke). */
static attempt_status statement_failed(pg_sink *s, PGresult *res, ng_error *err,
                                       const char *doing)
{
    const char *sqlstate =
        res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (sqlstate != NULL && PQstatus(s->link->conn) == CONNECTION_OK &&
        pg_classify_sqlstate(sqlstate) == NG_ERR_PERMANENT) {
        snprintf(s->row_sqlstate, sizeof s->row_sqlstate, "%s", sqlstate);
        result_message(res, s->row_message, sizeof s->row_message);
        PQclear(res);
        return ATTEMPT_BAD_ROW;
    }
    fail_result(s, res, err, doing);
    return ATTEMPT_FAILED;
}

/* Reads the results of the statement sent last, keeping the first error.
 * Stops early at COPY IN (then *copy_in is set). */
static PGresult *drain(PGconn *conn, bool *copy_in)
{
    PGresult *res, *bad = NULL;
    while ((res = PQgetResult(conn)) != NULL) {
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_COPY_IN && copy_in != NULL && bad == NULL) {
            PQclear(res);
            *copy_in = true;
            break;
        }
        if (st != PGRES_COMMAND_OK && bad == NULL) {
            bad = res;
        } else {
            PQclear(res);
        }
    }
    return bad;
}

/* One transaction for the rows idx[0..k): COPY into staging, INSERT ...
 * ON CONFLICT, COMMIT. Settles the rows on success. */
static attempt_status attempt(pg_sink *s, const size_t *idx, size_t k,
                              ng_error *err)
{
    PGconn *conn = s->link->conn;
    if (PQstatus(conn) != CONNECTION_OK) {
        fail_connection(s, err, "starting a batch");
        return ATTEMPT_FAILED;
    }
    /* After a failed attempt the transaction is still open: close it in
     * the same round trip. */
    const ng_buf *sql = PQtransactionStatus(conn) == PQTRANS_IDLE
                            ? &s->link->sql_copy
                            : &s->link->sql_re_copy;
    round_trip(s);
    if (!PQsendQuery(conn, sql->data)) {
        fail_connection(s, err, "starting a batch");
        return ATTEMPT_FAILED;
    }
    bool copy_in = false;
    PGresult *bad = drain(conn, &copy_in);
    if (!copy_in) {
        /* No row has been sent yet: whatever this is, it is no row's. */
        fail_result(s, bad, err, "starting the COPY");
        return ATTEMPT_FAILED;
    }

    round_trip(s);
    bool ok = PQputCopyData(conn, copy_header, sizeof copy_header) == 1;
    for (size_t i = 0; i < k && ok;) {
        const row *r = &s->rows[idx[i]];
        size_t start = r->off, end = r->off + r->len;
        /* Rows side by side in the buffer go in one piece. */
        for (i++;
             i < k && s->rows[idx[i]].off == end && end - start < SEND_CHUNK;
             i++) {
            end += s->rows[idx[i]].len;
        }
        ok = PQputCopyData(conn, s->tuples.data + start, (int)(end - start)) ==
             1;
        s->stats.bytes_sent += end - start;
    }
    ok = ok && PQputCopyData(conn, copy_trailer, sizeof copy_trailer) == 1;
    if (PQputCopyEnd(conn, ok ? NULL : "nanguard could not send the batch") !=
        1) {
        fail_connection(s, err, "sending the batch");
        return ATTEMPT_FAILED;
    }
    bad = drain(conn, NULL);
    if (bad != NULL || !ok) {
        return statement_failed(s, bad, err, "copying the batch");
    }

    bool extras = false;
    for (size_t i = 0; i < k && !extras; i++) {
        extras = s->rows[idx[i]].len > s->rows[idx[i]].ck_len;
    }
    round_trip(s);
    if (!PQsendQuery(conn, extras ? s->link->sql_insert_all.data
                                  : s->link->sql_insert.data)) {
        fail_connection(s, err, "inserting the batch");
        return ATTEMPT_FAILED;
    }
    size_t nret = 0;
    bool committed = false;
    PGresult *res;
    bad = NULL;
    while ((res = PQgetResult(conn)) != NULL) {
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_TUPLES_OK && bad == NULL) {
            int nt = PQntuples(res);
            for (int t = 0; t < nt && nret < k; t++) {
                unsigned long v = strtoul(PQgetvalue(res, t, 0), NULL, 10);
                if (v < s->nrows) {
                    s->returned[nret++] = (uint32_t)v;
                }
            }
        } else if (st == PGRES_COMMAND_OK && bad == NULL &&
                   strcmp(PQcmdStatus(res), "COMMIT") == 0) {
            committed = true;
        } else if (st != PGRES_COMMAND_OK && bad == NULL) {
            bad = res;
            continue;
        }
        PQclear(res);
    }
    if (bad != NULL || !committed) {
        return statement_failed(s, bad, err, "inserting the batch");
    }

    for (size_t i = 0; i < nret; i++) {
        row *r = &s->rows[s->returned[i]];
        if (r->state == ROW_PENDING) {
            r->state = ROW_STORED;
            s->nunsettled--;
        }
    }
    for (size_t i = 0; i < k; i++) {
        row *r = &s->rows[idx[i]];
        if (r->state == ROW_PENDING) {
            r->state = ROW_DUPLICATE;
            s->nunsettled--;
        }
    }
    return ATTEMPT_OK;
}

static attempt_status settle(pg_sink *s, size_t *idx, size_t k, ng_error *err);

/* The rows idx[0..k) failed together on a bad row: try each half alone,
 * down to single rows, which are then the bad ones. */
static attempt_status bisect(pg_sink *s, size_t *idx, size_t k, ng_error *err)
{
    if (k == 1) {
        row *r = &s->rows[idx[0]];
        r->state = ROW_REJECTED;
        snprintf(r->sqlstate, sizeof r->sqlstate, "%s", s->row_sqlstate);
        r->message = dup_str(s->row_message);
        s->nunsettled--;
        return ATTEMPT_OK;
    }
    bool outer = s->bisecting;
    s->bisecting = true;
    size_t half = k / 2;
    attempt_status st = settle(s, idx, half, err);
    if (st == ATTEMPT_OK) {
        st = settle(s, idx + half, k - half, err);
    }
    s->bisecting = outer;
    return st;
}

static attempt_status settle(pg_sink *s, size_t *idx, size_t k, ng_error *err)
{
    attempt_status st = attempt(s, idx, k, err);
    if (st == ATTEMPT_BAD_ROW) {
        st = bisect(s, idx, k, err);
    }
    return st;
}

/* Moves the outcomes of the settled rows not yet reported to the results,
 * in the order the rows were added. */
static int emit_results(pg_sink *s, ng_error *err)
{
    size_t n = s->nrows - s->nreported - s->nunsettled;
    if (n > s->cap_results - s->nresults) {
        size_t cap = s->cap_results ? s->cap_results : 256;
        while (cap - s->nresults < n) {
            if (cap > SIZE_MAX / 2 / sizeof(pg_row_result)) {
                return oom(err);
            }
            cap *= 2;
        }
        pg_row_result *r = realloc(s->results, cap * sizeof *r);
        if (r == NULL) {
            return oom(err);
        }
        s->results = r;
        s->cap_results = cap;
    }
    for (size_t i = 0; i < s->nrows; i++) {
        row *r = &s->rows[i];
        if (r->reported || r->state == ROW_PENDING) {
            continue;
        }
        pg_row_result *out = &s->results[s->nresults++];
        memset(out, 0, sizeof *out);
        out->tag = r->tag;
        r->reported = true;
        s->nreported++;
        switch (r->state) {
        case ROW_STORED:
            out->outcome = PG_ROW_STORED;
            s->stats.rows_stored++;
            break;
        case ROW_REJECTED:
            out->outcome = PG_ROW_REJECTED;
            memcpy(out->sqlstate, r->sqlstate, sizeof out->sqlstate);
            out->message = r->message;
            r->message = NULL;
            s->stats.rows_rejected++;
            break;
        default:
            out->outcome = PG_ROW_DUPLICATE;
            s->stats.rows_duplicate++;
            break;
        }
    }
    return 0;
}

int pg_sink_flush(pg_sink *s, ng_error *err)
{
    if (s->nunsettled > 0) {
        if (pg_sink_connect(s, err) != 0) {
            s->stats.failed_flushes++;
            return -1;
        }
        if (s->cap_work < s->nrows) {
            size_t *work = realloc(s->work, s->cap_rows * sizeof *work);
            if (work != NULL) {
                s->work = work;
            }
            uint32_t *ret =
                realloc(s->returned, s->cap_rows * sizeof *s->returned);
            if (ret != NULL) {
                s->returned = ret;
            }
            if (work == NULL || ret == NULL) {
                s->stats.failed_flushes++;
                return oom(err);
            }
            s->cap_work = s->cap_rows;
        }
        size_t k = 0;
        bool extras = false;
        for (size_t i = 0; i < s->nrows; i++) {
            if (s->rows[i].state == ROW_PENDING) {
                s->work[k++] = i;
                extras = extras || s->rows[i].len > s->rows[i].ck_len;
            }
        }
        if (extras && !s->link->companions) {
            ng_error_set(err, NG_ERR_CONFIG, "pg_42P01",
                         "envelopes carry blobs or writes, and table %s or %s "
                         "does not exist next to %s; to fix: run with "
                         "--create-table, or apply `nanguard schema`",
                         schema_table_name(SCHEMA_BLOBS),
                         schema_table_name(SCHEMA_WRITES), s->table_label);
            set_sqlstate(err, "42P01");
            s->link->ready = false; /* look again at the next attempt */
            s->stats.failed_flushes++;
            return -1;
        }
        if (settle(s, s->work, k, err) != ATTEMPT_OK) {
            /* What bisection settled before the failure is final. */
            emit_results(s, NULL);
            s->stats.failed_flushes++;
            return -1;
        }
    }
    if (emit_results(s, err) != 0) {
        s->stats.failed_flushes++;
        return -1;
    }
    if (s->nrows > 0) {
        s->stats.batches++;
    }
    clear_batch(s);
    return 0;
}

size_t pg_sink_result_count(const pg_sink *s)
{
    return s->nresults;
}

const pg_row_result *pg_sink_result(const pg_sink *s, size_t i)
{
    return i < s->nresults ? &s->results[i] : NULL;
}

void pg_sink_get_stats(const pg_sink *s, pg_sink_stats *out)
{
    *out = s->stats;
}
