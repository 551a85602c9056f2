/* pg_writer.h - flushes a pg_sink on a thread of its own, so that its
 * caller goes on consuming and sanitizing while PostgreSQL writes.
 *
 * One flush at a time. The caller hands a sink over (pg_writer_start) and
 * must not touch it until pg_writer_poll gives the flush's result back;
 * then the sink, with its row results, is the caller's again. */
#ifndef NANGUARD_PG_WRITER_H
#define NANGUARD_PG_WRITER_H

#include "common/error.h"
#include "sink/pg_sink.h"

typedef struct pg_writer pg_writer;

typedef enum {
    PG_WRITER_IDLE,    /* nothing handed over */
    PG_WRITER_RUNNING, /* the flush goes on */
    PG_WRITER_DONE     /* it ended: the result is given back, now idle */
} pg_writer_state;

/* Starts the thread. NULL with err when it cannot. */
pg_writer *pg_writer_new(ng_error *err);
/* Stops the thread and frees: a flush in progress ends first, one handed
 * over and not started yet is dropped. Either way the sink is the caller's
 * again. NULL is fine. */
void pg_writer_free(pg_writer *wr);

/* Hands sink over to be flushed. The writer must be idle. */
void pg_writer_start(pg_writer *wr, pg_sink *sink);
/* Hands sink over only to connect (pg_sink_connect): with no rows to
 * write, a flush would not touch the server. The writer must be idle. */
void pg_writer_start_connect(pg_writer *wr, pg_sink *sink);

/* Hands sink over only to check that PostgreSQL answers (pg_sink_ping).
 * The writer must be idle. */
void pg_writer_start_ping(pg_writer *wr, pg_sink *sink);

/* Whether a flush was handed over and not given back yet. */
int pg_writer_busy(const pg_writer *wr);

/* Waits up to wait_ms for the flush handed over. On PG_WRITER_DONE, *sink
 * is the sink, *rc and err what pg_sink_flush (or pg_sink_connect)
 * returned (or pg_sink_ping). */
pg_writer_state pg_writer_poll(pg_writer *wr, unsigned wait_ms, pg_sink **sink,
                               int *rc, ng_error *err);

/* How long the job given back last took, in seconds (for metrics). */
double pg_writer_last_seconds(const pg_writer *wr);

#endif
