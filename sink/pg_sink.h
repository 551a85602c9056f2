/* pg_sink.h - writes checkpoint envelopes to PostgreSQL, in batches, and
 * says what became of every one.
 *
 * A batch is written in one transaction: a binary COPY into a temporary
 * staging table (created once per connection, ON COMMIT DELETE ROWS), then
 * one INSERT ... SELECT ... ON CONFLICT (thread_id, checkpoint_ns,
 * checkpoint_id) DO NOTHING (or DO UPDATE) whose RETURNING clause tells
 * which rows went in. Writes are idempotent: replaying a batch adds no row.
 *
 * Every row ends with an outcome: stored, duplicate (its key was already in
 * the table, or a later row of the same batch had the same key and won), or
 * rejected (PostgreSQL refuses the row: its SQLSTATE and message). When a
 * batch fails on a bad row, the sink finds the bad rows by bisection, each
 * half in its own transaction (see pg_sink_flush), so every good row is
 * committed.
 *
 * A flush that cannot finish returns -1 with an error of class
 *   NG_ERR_TRANSIENT  the connection broke, the server restarts, a
 *                     timeout or deadlock: call pg_sink_flush again later
 *                     (with backoff); the rows not yet committed stay
 *                     pending, those committed keep their outcome
 *   NG_ERR_CONFIG     nothing can be stored until someone acts (missing
 *                     table or column, privileges, authentication); the
 *                     message says what to fix
 * flush never retries by itself: each call is one bounded attempt (plus
 * bisection), so the caller owns the retry loop and its deadline.
 *
 * Ownership: the sink copies what pg_sink_add gives it (the sanitizer's
 * buffers may be reused at once). Results and their messages belong to
 * the sink and stay valid until pg_sink_results_clear, pg_sink_discard or
 * pg_sink_free. Options are copied by pg_sink_new.
 *
 * One sink per thread; it holds one connection.
 */
#ifndef NANGUARD_PG_SINK_H
#define NANGUARD_PG_SINK_H

#include "common/error.h"
#include "filter/sanitize/envelope.h"

#include <stddef.h>
#include <stdint.h>

typedef struct pg_sink pg_sink;

typedef enum {
    PG_SINK_ON_CONFLICT_NOTHING = 0, /* keep the row already there */
    PG_SINK_ON_CONFLICT_UPDATE       /* overwrite it, as LangGraph does */
} pg_sink_conflict;

#define PG_SINK_DEFAULT_TABLE "checkpoints"
#define PG_SINK_DEFAULT_APPLICATION_NAME "nanguard"
#define PG_SINK_DEFAULT_BATCH_ROWS 1000
#define PG_SINK_DEFAULT_BATCH_BYTES (8u * 1024 * 1024)
#define PG_SINK_DEFAULT_BATCH_MS 1000
#define PG_SINK_DEFAULT_CONNECT_TIMEOUT 10
/* NAMEDATALEN - 1: a longer table or schema name is refused ("usage"),
 * as PostgreSQL would cut it without a word. */
#define PG_SINK_MAX_NAME_BYTES 63

typedef struct {
    /* A libpq connection string or URI, used as is (sslmode and every
     * other option pass through); NULL or "" takes everything from the
     * PG* environment variables. nanguard adds only defaults the string
     * and the environment can override (fallback_application_name,
     * connect_timeout, TCP keepalives) and client_encoding=UTF8. */
    const char *conninfo;
    /* [schema.]name of the table; NULL for "checkpoints". Each part is
     * quoted as an identifier (so case and odd characters are kept). */
    const char *table;
    /* application_name when neither conninfo nor PGAPPNAME sets one;
     * NULL for "nanguard". */
    const char *application_name;
    pg_sink_conflict on_conflict;
    /* Create the table (LangGraph's, with lz4 compression of the jsonb
     * columns when the server has it) when it does not exist. An existing
     * table is never altered. */
    int create_table;
    /* When pg_sink_flush_due says a batch is full: 0 takes the default. */
    size_t batch_rows;
    size_t batch_bytes;
    unsigned batch_ms; /* age of the oldest pending row */
    unsigned connect_timeout_s;
} pg_sink_options;

typedef enum {
    PG_ROW_STORED = 0, /* inserted, or overwrote the row (update mode) */
    PG_ROW_DUPLICATE,  /* the key was already there: nothing written */
    PG_ROW_REJECTED    /* PostgreSQL refuses the row: see sqlstate */
} pg_row_outcome;

typedef struct {
    uint64_t tag; /* the caller's, from pg_sink_add */
    pg_row_outcome outcome;
    char sqlstate[6];    /* REJECTED: e.g. "23514"; otherwise "" */
    const char *message; /* REJECTED: the server's message; else NULL */
} pg_row_result;

/* Counters since pg_sink_new, for tests and metrics. */
typedef struct {
    uint64_t batches;     /* flushes that completed */
    uint64_t rows_stored; /* outcomes, by kind */
    uint64_t rows_duplicate;
    uint64_t rows_rejected;
    uint64_t round_trips;        /* request/response exchanges, all */
    uint64_t bisect_round_trips; /* of which spent isolating bad rows */
    uint64_t failed_flushes;     /* flushes that returned -1 */
    uint64_t connects;           /* connections made (1 + reconnects) */
    uint64_t bytes_sent;         /* COPY data */
} pg_sink_stats;

/* Makes a sink; does not connect. Returns NULL on failure (out of memory,
 * a connection string libpq cannot parse: class NG_ERR_CONFIG, code
 * "bad_conninfo"). */
pg_sink *pg_sink_new(const pg_sink_options *opts, ng_error *err);

/* Closes the connection and frees everything. NULL is allowed. */
void pg_sink_free(pg_sink *s);

/* Connects when not connected, checks the table (creates it when asked),
 * and prepares the staging table. pg_sink_flush calls it as needed, so
 * calling it first only surfaces configuration errors early (and serves a
 * readiness check). Returns 0, or -1 with a transient or configuration
 * error. */
int pg_sink_connect(pg_sink *s, ng_error *err);

/* A cheap check that PostgreSQL still answers on the connection (an empty
 * query: one round trip, no table touched); connects first when not
 * connected (pg_sink_connect). For readiness while nothing is written.
 * Returns 0, or -1 with the error (a lost connection is dropped, so the
 * next call reconnects). */
int pg_sink_ping(pg_sink *s, ng_error *err);

/* Makes s write on with's connection (with must be a sink of the same
 * table and options): two batches, one connection. Only one of the two
 * may connect or flush at a time; adding rows to one while the other
 * flushes is fine. Free s before with. */
void pg_sink_share(pg_sink *s, pg_sink *with);

/* Whether the sink holds a working connection (as far as it knows). */
int pg_sink_connected(const pg_sink *s);

/* Adds a copy of env to the pending batch, with the caller's tag. When a
 * pending row has the same key, that earlier row is settled as a
 * duplicate (the last one wins, as a replay would). Returns 0, or -1
 * (out of memory: NG_ERR_TRANSIENT, code "out_of_memory"; a field longer
 * than PostgreSQL takes: NG_ERR_PERMANENT, code "too_large"), in which
 * case nothing was added. */
int pg_sink_add(pg_sink *s, const envelope *env, uint64_t tag, ng_error *err);

/* Rows added whose outcome is not yet in the results (0 after a flush
 * that returned 0), and the bytes the batch holds. */
size_t pg_sink_pending(const pg_sink *s);
size_t pg_sink_pending_bytes(const pg_sink *s);

/* Whether the batch reached batch_rows, batch_bytes or batch_ms. */
int pg_sink_flush_due(const pg_sink *s);

/* Writes the pending batch: one transaction when every row is good; when
 * PostgreSQL refuses a row (22xxx, 23xxx, ...), the failing set is split
 * in halves, each tried in its own transaction, until each bad row stands
 * alone: O(log n) transactions for one bad row in n, and every good row
 * is committed by the time flush returns 0. (Separate transactions rather
 * than savepoints: a half that succeeds is settled at once, so a transient
 * error in the middle loses no work and a retry resends only what is left;
 * and no transaction stays open holding the batch's locks while bisecting.)
 *
 * Returns 0 when every row added so far is settled: the outcomes are
 * appended to the results, in the order the rows were added, and the
 * batch is empty. Returns -1 with a transient or configuration error
 * otherwise; the rows not yet settled stay pending for the next call, and
 * the outcomes of rows settled before the failure (halves that bisection
 * committed) are appended to the results all the same. A
 * row whose transaction committed but whose COMMIT answer was lost is
 * resent, and then reported as a duplicate (or stored, in update mode). */
int pg_sink_flush(pg_sink *s, ng_error *err);

/* The outcomes of completed flushes, oldest first. */
size_t pg_sink_result_count(const pg_sink *s);
const pg_row_result *pg_sink_result(const pg_sink *s, size_t i);
void pg_sink_results_clear(pg_sink *s);

/* Forgets the pending batch (unsettled rows get no outcome) and the
 * results: for a worker that gives its partitions up. */
void pg_sink_discard(pg_sink *s);

void pg_sink_get_stats(const pg_sink *s, pg_sink_stats *out);

/* The compression of the table's checkpoint column as the server reports
 * it ("lz4", "pglz", or "" for the server default), known once connected.
 */
const char *pg_sink_table_compression(const pg_sink *s);

#endif
