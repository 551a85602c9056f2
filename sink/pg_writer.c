/* pg_writer.c - a pg_sink flushed on a thread of its own. */
#define _POSIX_C_SOURCE 200809L
#include "sink/pg_writer.h"

#include "common/clock.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

struct pg_writer {
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pg_sink *job; /* handed over, NULL when none */
    enum { JOB_FLUSH, JOB_CONNECT, JOB_PING } kind;
    uint64_t took_us;    /* of the job that ended */
    double last_seconds; /* the caller's copy, of the job given back */
    bool done;           /* the flush of job ended: rc and err hold the end */
    bool quit;
    int rc;
    ng_error err;
    bool busy; /* the caller's view: job not given back yet */
};

static void *writer_main(void *arg)
{
    pg_writer *wr = arg;
    pthread_mutex_lock(&wr->mu);
    for (;;) {
        while (!wr->quit && (wr->job == NULL || wr->done)) {
            pthread_cond_wait(&wr->cv, &wr->mu);
        }
        if (wr->quit) {
            break;
        }
        pg_sink *sink = wr->job;
        int kind = wr->kind;
        pthread_mutex_unlock(&wr->mu);
        ng_error err = {0};
        uint64_t t0 = ng_now_us();
        int rc = kind == JOB_CONNECT ? pg_sink_connect(sink, &err)
                 : kind == JOB_PING  ? pg_sink_ping(sink, &err)
                                     : pg_sink_flush(sink, &err);
        uint64_t took = ng_since_ms(ng_now_us(), t0);
        pthread_mutex_lock(&wr->mu);
        wr->took_us = took;
        wr->rc = rc;
        wr->err = err;
        wr->done = true;
        pthread_cond_broadcast(&wr->cv);
    }
    pthread_mutex_unlock(&wr->mu);
    return NULL;
}

pg_writer *pg_writer_new(ng_error *err)
{
    pg_writer *wr = calloc(1, sizeof *wr);
    if (wr == NULL) {
        ng_error_set(err, NG_ERR_CONFIG, "oom", "out of memory");
        return NULL;
    }
    if (pthread_mutex_init(&wr->mu, NULL) != 0) {
        goto err_free;
    }
    if (pthread_cond_init(&wr->cv, NULL) != 0) {
        goto err_mu;
    }
    if (pthread_create(&wr->th, NULL, writer_main, wr) != 0) {
        goto err_cv;
    }
    return wr;
err_cv:
    pthread_cond_destroy(&wr->cv);
err_mu:
    pthread_mutex_destroy(&wr->mu);
err_free:
    free(wr);
    ng_error_set(err, NG_ERR_CONFIG, "thread",
                 "cannot start the writer thread");
    return NULL;
}

void pg_writer_free(pg_writer *wr)
{
    if (wr == NULL) {
        return;
    }
    pthread_mutex_lock(&wr->mu);
    wr->quit = true; /* a flush in progress ends first: the join waits */
    pthread_cond_broadcast(&wr->cv);
    pthread_mutex_unlock(&wr->mu);
    pthread_join(wr->th, NULL);
    pthread_cond_destroy(&wr->cv);
    pthread_mutex_destroy(&wr->mu);
    free(wr);
}

static void hand_over(pg_writer *wr, pg_sink *sink, int kind)
{
    pthread_mutex_lock(&wr->mu);
    wr->job = sink;
    wr->kind = kind;
    wr->done = false;
    pthread_cond_broadcast(&wr->cv);
    pthread_mutex_unlock(&wr->mu);
    wr->busy = true;
}

void pg_writer_start(pg_writer *wr, pg_sink *sink)
{
    hand_over(wr, sink, JOB_FLUSH);
}

void pg_writer_start_connect(pg_writer *wr, pg_sink *sink)
{
    hand_over(wr, sink, JOB_CONNECT);
}

void pg_writer_start_ping(pg_writer *wr, pg_sink *sink)
{
    hand_over(wr, sink, JOB_PING);
}

double pg_writer_last_seconds(const pg_writer *wr)
{
    return wr->last_seconds;
}

int pg_writer_busy(const pg_writer *wr)
{
    return wr->busy;
}

pg_writer_state pg_writer_poll(pg_writer *wr, unsigned wait_ms, pg_sink **sink,
                               int *rc, ng_error *err)
{
    if (!wr->busy) {
        return PG_WRITER_IDLE;
    }
    pthread_mutex_lock(&wr->mu);
    if (!wr->done && wait_ms > 0) {
        struct timespec until = ng_deadline_in(wait_ms);
        while (!wr->done &&
               pthread_cond_timedwait(&wr->cv, &wr->mu, &until) == 0) {
        }
    }
    bool done = wr->done;
    if (done) {
        *sink = wr->job;
        *rc = wr->rc;
        *err = wr->err;
        wr->last_seconds = (double)wr->took_us / 1e6;
        wr->job = NULL;
        wr->done = false;
    }
    pthread_mutex_unlock(&wr->mu);
    if (!done) {
        return PG_WRITER_RUNNING;
    }
    wr->busy = false;
    return PG_WRITER_DONE;
}
