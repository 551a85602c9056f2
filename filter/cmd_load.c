/* cmd_load.c - `nanguard load`: reads checkpoint envelopes, one JSON value
 * per line, from files or standard input, repairs them and writes them to
 * PostgreSQL through the sink. What cannot be stored goes to a dead-letter
 * file with the reason; PostgreSQL being away is waited out up to a limit,
 * after which the summary says where to resume.
 *
 * A dead-letter entry is written only once every line before it is
 * settled (stored, already there, or dead-lettered), so that resuming
 * from the summary's resume_from_line never writes an entry twice.
 */
#define _GNU_SOURCE
#include "commands.h"
#include "envelope.h"
#include "sanitize.h"

#include "common/backoff.h"
#include "common/buf.h"
#include "common/json_write.h"
#include "common/log.h"
#include "sink/pg_sink.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_MAX_MESSAGE_BYTES (32u * 1024 * 1024)
#define DEFAULT_RETRY_TIMEOUT_S 300
#define RETRY_BASE_MS 100
#define RETRY_CAP_MS 5000
/* Lines refused without a dead-letter file: logged, up to this many. */
#define MAX_LOGGED_REJECTS 20

/* A line in the current batch: the tag of its row is its index here. */
typedef struct {
    uint64_t line;
    size_t off; /* the original bytes, in load.originals */
    size_t len;
    bool settled;
} batch_line;

/* A dead-letter entry waiting for the lines before it to settle. */
typedef struct {
    uint64_t line;
    char code[32];
    char *message;
    size_t off; /* the original bytes, in load.queue_values */
    size_t len;
} queued;

typedef struct {
    /* options */
    pg_sink_options sink_opts;
    const char *dlq_path;
    uint64_t start_line;
    size_t max_message_bytes;
    double retry_timeout_s;

    pg_sink *sink;
    FILE *dlq;
    ng_buf out; /* one dead-letter line */
    ng_backoff backoff;

    batch_line *lines;
    size_t nlines;
    size_t cap_lines;
    size_t first_open; /* lines[0..first_open) are settled */
    ng_buf originals;

    queued *queue;
    size_t nqueue;
    size_t cap_queue;
    ng_buf queue_values;

    /* counts */
    uint64_t next_line; /* number of the next line read (1 based) */
    uint64_t nlines_read;
    uint64_t stored;
    uint64_t duplicates;
    uint64_t dead_lettered;
    uint64_t rewrites;
    uint64_t bytes;
    uint64_t logged_rejects;

    struct timespec started;
    struct timespec last_progress;
    bool progress;
} load;

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: nanguard load [--pg CONNINFO] [--table NAME] "
        "[--create-table]\n"
        "                     [--on-conflict nothing|update] "
        "[--dead-letter FILE]\n"
        "                     [--batch-rows N] [--batch-bytes N] "
        "[--retry-timeout SECONDS]\n"
        "                     [--start-line N] [--max-message-bytes N] "
        "[FILE...]\n\n"
        "Reads checkpoint envelopes, one JSON value per line, from the FILEs "
        "or standard\n"
        "input ('-'), repairs what PostgreSQL jsonb refuses (NaN, Infinity, "
        "...) and\n"
        "writes them to LangGraph's checkpoints table. Writes are idempotent: "
        "loading\n"
        "the same lines again adds no row. Empty lines are skipped.\n\n"
        "options:\n"
        "  --pg CONNINFO          libpq connection string or URI (default: "
        "the PG*\n"
        "                         environment variables)\n"
        "  --table NAME           table, NAME or SCHEMA.NAME (default %s)\n"
        "  --create-table         create the table when it does not exist "
        "(jsonb\n"
        "                         columns with lz4 compression where the "
        "server has it);\n"
        "                         an existing table is never altered "
        "(default: off)\n"
        "  --on-conflict MODE     nothing: keep a row already there; update: "
        "overwrite\n"
        "                         it, as LangGraph does (default nothing)\n"
        "  --dead-letter FILE     append the lines that cannot be stored to "
        "FILE as JSON\n"
        "                         lines {line, error_code, message, value} "
        "(default: none;\n"
        "                         they are then only counted and logged)\n"
        "  --batch-rows N         rows per transaction at most (default %d)\n"
        "  --batch-bytes N        bytes per transaction at most (default "
        "%u)\n"
        "  --retry-timeout SECS   how long PostgreSQL may stay unavailable "
        "before\n"
        "                         giving up with status 75 (default %d)\n"
        "  --start-line N         skip the lines before line N, counted from "
        "1 across\n"
        "                         all FILEs (default 1); to resume after "
        "status 75\n"
        "  --max-message-bytes N  dead-letter longer lines as too_large "
        "(default %u)\n"
        "  -h, --help             show this help\n\n"
        "Progress goes to standard error while it is a terminal; a JSON "
        "summary line\n"
        "(lines, stored, duplicates, dead_lettered, rewrites, seconds, ...) "
        "ends the run.\n\n"
        "exit status: 0 every line stored or already there; 2 some lines "
        "dead-lettered,\n"
        "all others stored; 75 PostgreSQL unavailable beyond "
        "--retry-timeout (the\n"
        "summary's resume_from_line says where to go on); 78 configuration "
        "error\n"
        "(authentication, missing table or column, privileges; nothing is "
        "dead-lettered);\n"
        "64 bad usage; 74 I/O error.\n",
        PG_SINK_DEFAULT_TABLE, PG_SINK_DEFAULT_BATCH_ROWS,
        PG_SINK_DEFAULT_BATCH_BYTES, DEFAULT_RETRY_TIMEOUT_S,
        DEFAULT_MAX_MESSAGE_BYTES);
}

static double seconds_since(const struct timespec *t)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t->tv_sec) +
           (double)(now.tv_nsec - t->tv_nsec) / 1e9;
}

static void sleep_ms(uint64_t ms)
{
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000),
                          .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Parses a positive decimal number no larger than max. */
static int parse_count(const char *opt, const char *s, uint64_t max,
                       uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || end == s || s[0] == '-' || v == 0 ||
        v > max) {
        fprintf(stderr,
                "nanguard load: %s wants a number from 1 to %" PRIu64
                ", not '%s'\n",
                opt, max, s);
        return -1;
    }
    *out = v;
    return 0;
}

/* ---- dead letters ------------------------------------------------------ */

static int write_dead_letter(load *l, uint64_t line, const char *code,
                             const char *message, const char *value, size_t len)
{
    l->dead_lettered++;
    if (l->dlq == NULL) {
        if (l->logged_rejects++ < MAX_LOGGED_REJECTS) {
            char n[24];
            snprintf(n, sizeof n, "%" PRIu64, line);
            ng_log(NG_LOG_WARN, "line not stored (no --dead-letter file)",
                   "line#", n, "error_code", code, "reason", message, NULL);
        }
        return 0;
    }
    ng_buf *b = &l->out;
    ng_buf_clear(b);
    int rc = ng_json_raw(b, "{\"line\": ") || ng_json_u64(b, line) ||
             ng_json_raw(b, ", \"error_code\": ") || ng_json_cstr(b, code) ||
             ng_json_raw(b, ", \"message\": ") || ng_json_cstr(b, message) ||
             ng_json_raw(b, ", \"value\": ") || ng_json_string(b, value, len) ||
             ng_json_raw(b, "}\n");
    if (rc != 0) {
        fprintf(stderr, "nanguard load: out of memory\n");
        return EX_SOFTWARE;
    }
    if (fwrite(b->data, 1, b->len, l->dlq) != b->len) {
        fprintf(stderr, "nanguard load: %s: %s\n", l->dlq_path,
                strerror(errno));
        return EX_IOERR;
    }
    return 0;
}

static int cmp_queued(const void *a, const void *b)
{
    const queued *x = a, *y = b;
    return x->line < y->line ? -1 : x->line > y->line;
}

/* Writes the queued entries of lines before `before`, in line order. */
static int write_queue(load *l, uint64_t before)
{
    if (l->nqueue == 0) {
        return 0;
    }
    qsort(l->queue, l->nqueue, sizeof *l->queue, cmp_queued);
    size_t i = 0;
    int rc = 0;
    for (; i < l->nqueue && l->queue[i].line < before && rc == 0; i++) {
        queued *q = &l->queue[i];
        rc = write_dead_letter(l, q->line, q->code,
                               q->message ? q->message : "out of memory",
                               l->queue_values.data + q->off, q->len);
        free(q->message);
        q->message = NULL;
    }
    /* The rest waits (or is dropped on exit: the resumed run redoes it). */
    memmove(l->queue, l->queue + i, (l->nqueue - i) * sizeof *l->queue);
    l->nqueue -= i;
    if (l->nqueue == 0) {
        ng_buf_clear(&l->queue_values);
    }
    if (rc == 0 && l->dlq != NULL && fflush(l->dlq) != 0) {
        fprintf(stderr, "nanguard load: %s: %s\n", l->dlq_path,
                strerror(errno));
        rc = EX_IOERR;
    }
    return rc;
}

static int enqueue(load *l, uint64_t line, const char *code,
                   const char *message, const char *value, size_t len)
{
    if (l->nqueue == l->cap_queue) {
        size_t cap = l->cap_queue ? l->cap_queue * 2 : 64;
        queued *q = realloc(l->queue, cap * sizeof *q);
        if (q == NULL) {
            goto oom;
        }
        l->queue = q;
        l->cap_queue = cap;
    }
    queued *q = &l->queue[l->nqueue];
    memset(q, 0, sizeof *q);
    q->line = line;
    snprintf(q->code, sizeof q->code, "%s", code);
    q->message = strdup(message);
    q->off = l->queue_values.len;
    q->len = len;
    if (q->message == NULL || ng_buf_append(&l->queue_values, value, len)) {
        free(q->message);
        goto oom;
    }
    l->nqueue++;
    return 0;
oom:
    fprintf(stderr, "nanguard load: out of memory\n");
    return EX_SOFTWARE;
}

/* A line that cannot be stored: written now when nothing before it is
 * open, queued otherwise. */
static int reject_line(load *l, uint64_t line, const char *code,
                       const char *message, const char *value, size_t len)
{
    if (pg_sink_pending(l->sink) == 0 && l->nqueue == 0) {
        int rc = write_dead_letter(l, line, code, message, value, len);
        if (rc == 0 && l->dlq != NULL && fflush(l->dlq) != 0) {
            fprintf(stderr, "nanguard load: %s: %s\n", l->dlq_path,
                    strerror(errno));
            rc = EX_IOERR;
        }
        return rc;
    }
    return enqueue(l, line, code, message, value, len);
}

/* ---- batches ----------------------------------------------------------- */

/* The first line not yet settled, or the next line to read. */
static uint64_t first_open_line(load *l)
{
    while (l->first_open < l->nlines && l->lines[l->first_open].settled) {
        l->first_open++;
    }
    return l->first_open < l->nlines ? l->lines[l->first_open].line
                                     : l->next_line;
}

/* Takes the sink's outcomes; queues the rejected rows' lines. */
static int take_results(load *l)
{
    int rc = 0;
    for (size_t i = 0; i < pg_sink_result_count(l->sink) && rc == 0; i++) {
        const pg_row_result *r = pg_sink_result(l->sink, i);
        if (r->tag >= l->nlines) {
            continue;
        }
        batch_line *bl = &l->lines[r->tag];
        bl->settled = true;
        if (r->outcome == PG_ROW_STORED) {
            l->stored++;
        } else if (r->outcome == PG_ROW_DUPLICATE) {
            l->duplicates++;
        } else {
            char code[16];
            snprintf(code, sizeof code, "pg_%s", r->sqlstate);
            rc = enqueue(l, bl->line, code,
                         r->message ? r->message : "refused by PostgreSQL",
                         l->originals.data + bl->off, bl->len);
        }
    }
    pg_sink_results_clear(l->sink);
    return rc;
}

/* Runs `step` (connect or flush) until it succeeds, PostgreSQL stays away
 * longer than --retry-timeout (75), or the error is one of configuration
 * (78). */
static int with_retry(load *l, int (*step)(pg_sink *, ng_error *))
{
    struct timespec since;
    clock_gettime(CLOCK_MONOTONIC, &since);
    ng_backoff_reset(&l->backoff);
    uint64_t failures = 0;
    for (;;) {
        ng_error err;
        ng_error_clear(&err);
        int ok = step(l->sink, &err) == 0;
        int rc = take_results(l);
        if (rc != 0) {
            return rc;
        }
        if (ok) {
            if (failures > 0) {
                char secs[32];
                snprintf(secs, sizeof secs, "%.1f", seconds_since(&since));
                ng_log(NG_LOG_INFO, "PostgreSQL is back", "waited_s#", secs,
                       NULL);
            }
            return 0;
        }
        failures++;
        if (err.klass != NG_ERR_TRANSIENT) {
            ng_log(NG_LOG_ERROR, "configuration error: fix it and run again",
                   "error_code", err.code, "sqlstate", err.sqlstate, "reason",
                   err.message, NULL);
            return EX_CONFIG;
        }
        double waited = seconds_since(&since);
        if (waited >= l->retry_timeout_s) {
            ng_log(NG_LOG_ERROR, "PostgreSQL unavailable, giving up",
                   "error_code", err.code, "sqlstate", err.sqlstate, "reason",
                   err.message, NULL);
            return EX_TEMPFAIL;
        }
        uint64_t delay = ng_backoff_next(&l->backoff);
        double left_ms = (l->retry_timeout_s - waited) * 1000.0;
        if ((double)delay > left_ms) {
            delay = (uint64_t)left_ms + 1;
        }
        char d[24];
        snprintf(d, sizeof d, "%" PRIu64, delay);
        ng_log(failures == 1 ? NG_LOG_WARN : NG_LOG_INFO,
               "PostgreSQL unavailable, retrying", "error_code", err.code,
               "sqlstate", err.sqlstate, "reason", err.message, "retry_in_ms#",
               d, NULL);
        sleep_ms(delay);
    }
}

/* Writes the batch (waiting PostgreSQL out), then the dead letters. */
static int flush(load *l)
{
    int rc = with_retry(l, pg_sink_flush);
    if (rc != 0) {
        return rc;
    }
    rc = write_queue(l, UINT64_MAX);
    l->nlines = 0;
    l->first_open = 0;
    ng_buf_clear(&l->originals);
    return rc;
}

static int add_row(load *l, const envelope *env, uint64_t line,
                   const char *value, size_t len)
{
    if (l->nlines == l->cap_lines) {
        size_t cap = l->cap_lines ? l->cap_lines * 2 : 1024;
        batch_line *b = realloc(l->lines, cap * sizeof *b);
        if (b == NULL) {
            goto oom;
        }
        l->lines = b;
        l->cap_lines = cap;
    }
    batch_line *bl = &l->lines[l->nlines];
    bl->line = line;
    bl->off = l->originals.len;
    bl->len = len;
    bl->settled = false;
    if (ng_buf_append(&l->originals, value, len) != 0) {
        goto oom;
    }
    ng_error err;
    if (pg_sink_add(l->sink, env, l->nlines, &err) != 0) {
        l->originals.len = bl->off;
        if (err.klass == NG_ERR_PERMANENT) {
            return reject_line(l, bl->line, err.code, err.message, value, len);
        }
        goto oom;
    }
    l->nlines++;
    return 0;
oom:
    fprintf(stderr, "nanguard load: out of memory\n");
    return EX_SOFTWARE;
}

/* ---- the reader thread -------------------------------------------------
 *
 * Reading and repairing lines costs about as much CPU as PostgreSQL spends
 * storing them, so a reader thread does it while the main thread writes:
 * it hands over blocks of prepared lines through a short queue. The sink
 * stays on the main thread.
 */

#define BLOCK_ROWS 128
#define BLOCK_BYTES (2u * 1024 * 1024)
#define QUEUE_BLOCKS 3

/* What the reader made of one line. Offsets are into the block's data. */
typedef struct {
    uint64_t line;
    size_t orig_off; /* the line as read */
    size_t orig_len;
    bool rejected;
    char code[16];
    size_t msg_off;        /* rejected: why, NUL terminated */
    size_t text_off[5];    /* the envelope's strings, NUL terminated; */
    size_t cp_off, cp_len; /* SIZE_MAX for a null parent_checkpoint_id */
    size_t md_off, md_len;
    uint64_t rewrites;
} item;

typedef struct block {
    ng_buf data;
    item *items;
    size_t n;
    size_t cap;
    bool last;  /* the reader's last block */
    int status; /* of the last block: 0 at the end of the input */
    struct block *next;
} block;

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    block *head, *tail; /* full blocks, oldest first */
    size_t nfull;
    block *free_list;
    bool stop;    /* the writer gave up: the reader ends */
    bool stopped; /* the reader ended */
    /* the reader's own */
    char **files;
    int nfiles;
    uint64_t start_line;
    size_t max_message_bytes;
    sanitize *san;
} pipeline;

static void block_free(block *b)
{
    if (b != NULL) {
        ng_buf_free(&b->data);
        free(b->items);
        free(b);
    }
}

static block *take_free(pipeline *p)
{
    pthread_mutex_lock(&p->mu);
    block *b = p->free_list;
    if (b != NULL) {
        p->free_list = b->next;
    }
    pthread_mutex_unlock(&p->mu);
    if (b == NULL) {
        b = calloc(1, sizeof *b);
    }
    if (b != NULL) {
        ng_buf_clear(&b->data);
        b->n = 0;
        b->last = false;
        b->status = 0;
        b->next = NULL;
    }
    return b;
}

static void give_back(pipeline *p, block *b)
{
    pthread_mutex_lock(&p->mu);
    b->next = p->free_list;
    p->free_list = b;
    pthread_mutex_unlock(&p->mu);
}

/* Queues a full block; waits while the queue is full. Returns -1 (and
 * keeps the block) when the writer stopped. */
static int push(pipeline *p, block *b)
{
    pthread_mutex_lock(&p->mu);
    while (p->nfull >= QUEUE_BLOCKS && !p->stop && !b->last) {
        pthread_cond_wait(&p->cv, &p->mu);
    }
    if (p->stop) {
        pthread_mutex_unlock(&p->mu);
        return -1;
    }
    b->next = NULL;
    if (p->tail != NULL) {
        p->tail->next = b;
    } else {
        p->head = b;
    }
    p->tail = b;
    p->nfull++;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return 0;
}

/* The next full block, or NULL when none came within wait_ms. */
static block *pop(pipeline *p, unsigned wait_ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += wait_ms / 1000;
    until.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&p->mu);
    while (p->head == NULL) {
        if (pthread_cond_timedwait(&p->cv, &p->mu, &until) != 0) {
            break;
        }
    }
    block *b = p->head;
    if (b != NULL) {
        p->head = b->next;
        if (p->head == NULL) {
            p->tail = NULL;
        }
        p->nfull--;
        pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    return b;
}

static bool blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') {
            return false;
        }
    }
    return true;
}

/* Appends s[0..n) and a NUL that the next append keeps. */
static int put_text(ng_buf *b, const char *s, size_t n, size_t *off)
{
    *off = b->len;
    return ng_buf_append(b, s, n) || ng_buf_putc(b, '\0');
}

static int reject_item(block *b, item *it, const char *code, const char *why)
{
    it->rejected = true;
    snprintf(it->code, sizeof it->code, "%s", code);
    return put_text(&b->data, why, strlen(why), &it->msg_off);
}

/* Repairs one line into the block. Returns 0, or -1 when out of memory. */
static int prepare(pipeline *p, block *b, uint64_t line, const char *text,
                   size_t len)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : BLOCK_ROWS;
        item *items = realloc(b->items, cap * sizeof *items);
        if (items == NULL) {
            return -1;
        }
        b->items = items;
        b->cap = cap;
    }
    item *it = &b->items[b->n];
    memset(it, 0, sizeof *it);
    it->line = line;
    it->orig_len = len;
    if (put_text(&b->data, text, len, &it->orig_off) != 0) {
        return -1;
    }
    b->n++;
    char why[256];
    if (len > p->max_message_bytes) {
        snprintf(why, sizeof why,
                 "the message has %zu bytes, more than --max-message-bytes "
                 "%zu",
                 len, p->max_message_bytes);
        return reject_item(b, it, "too_large", why);
    }
    sanitize_reset(p->san);
    sanitize_status st = sanitize_feed(p->san, text, len);
    if (st == SANITIZE_OK) {
        st = sanitize_finish(p->san);
    }
    if (st == SANITIZE_ENOMEM) {
        return -1;
    }
    if (st != SANITIZE_OK) {
        const sanitize_error *e = sanitize_last_error(p->san);
        snprintf(why, sizeof why, "byte %" PRIu64 ": %s", e->offset,
                 e->message);
        return reject_item(b, it, "malformed_json", why);
    }
    envelope env;
    if (envelope_read(p->san, &env, why, sizeof why) != 0) {
        return reject_item(b, it, "bad_envelope", why);
    }
    const char *strs[5] = {env.thread_id, env.checkpoint_ns, env.checkpoint_id,
                           env.parent_checkpoint_id, env.type};
    for (int i = 0; i < 5; i++) {
        it->text_off[i] = SIZE_MAX;
        if (strs[i] != NULL &&
            put_text(&b->data, strs[i], strlen(strs[i]), &it->text_off[i])) {
            return -1;
        }
    }
    it->cp_len = env.checkpoint_len;
    it->md_len = env.metadata_len;
    it->rewrites = sanitize_rewrites(p->san);
    return put_text(&b->data, env.checkpoint, env.checkpoint_len,
                    &it->cp_off) ||
           put_text(&b->data, env.metadata, env.metadata_len, &it->md_off);
}

/* Hands the block over (when it is not empty) and starts a new one.
 * Returns 0, -1 when the writer stopped, or an exit status. */
static int hand_over(pipeline *p, block **bp)
{
    if ((*bp)->n == 0) {
        return 0;
    }
    if (push(p, *bp) != 0) {
        return -1;
    }
    *bp = take_free(p);
    if (*bp == NULL) {
        fprintf(stderr, "nanguard load: out of memory\n");
        return EX_SOFTWARE;
    }
    return 0;
}

/* The reader's input buffer: lines are found in buf[start..end). */
typedef struct {
    char *buf;
    size_t cap;
    size_t start;
    size_t end;
} linebuf;

#define READ_CHUNK (1024 * 1024)

/* Reads one input into blocks. Lines of any length are read whole. Before
 * a read that may wait (a pipe), the lines prepared so far are handed
 * over, so a slow input does not hold rows back. Returns 0, -1 when the
 * writer stopped, or an exit status. */
static int read_file(pipeline *p, const char *name, block **bp, uint64_t *line,
                     linebuf *lb)
{
    int fd = strcmp(name, "-") == 0 ? STDIN_FILENO : open(name, O_RDONLY);
    const char *label = fd == STDIN_FILENO ? "<stdin>" : name;
    if (fd < 0) {
        fprintf(stderr, "nanguard load: %s: %s\n", name, strerror(errno));
        return EX_IOERR;
    }
    lb->start = lb->end = 0;
    size_t scanned = 0; /* bytes after start known to hold no newline */
    bool eof = false;
    int rc = 0;
    while (rc == 0) {
        size_t unseen = lb->end - lb->start - scanned;
        char *nl = unseen > 0
                       ? memchr(lb->buf + lb->start + scanned, '\n', unseen)
                       : NULL;
        if (nl == NULL && !eof) {
            scanned = lb->end - lb->start;
            /* Make room: move the partial line to the front, then grow. */
            if (lb->start > 0) {
                memmove(lb->buf, lb->buf + lb->start, lb->end - lb->start);
                lb->end -= lb->start;
                lb->start = 0;
            }
            if (lb->cap - lb->end < READ_CHUNK) {
                size_t cap = lb->cap ? lb->cap * 2 : 2 * READ_CHUNK;
                char *buf = cap > lb->cap ? realloc(lb->buf, cap) : NULL;
                if (buf == NULL) {
                    fprintf(stderr, "nanguard load: out of memory\n");
                    rc = EX_SOFTWARE;
                    break;
                }
                lb->buf = buf;
                lb->cap = cap;
            }
            rc = hand_over(p, bp);
            if (rc != 0) {
                break;
            }
            ssize_t n = read(fd, lb->buf + lb->end, lb->cap - lb->end);
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n < 0) {
                fprintf(stderr, "nanguard load: %s: %s\n", label,
                        strerror(errno));
                rc = EX_IOERR;
                break;
            }
            eof = n == 0;
            lb->end += (size_t)n;
            continue;
        }
        if (nl == NULL && lb->start == lb->end) {
            break; /* the end, after a final newline */
        }
        /* A line: up to the newline, or the rest at the end. */
        char *text = lb->buf + lb->start;
        size_t len = nl ? (size_t)(nl - text) : lb->end - lb->start;
        lb->start += len + (nl != NULL);
        scanned = 0;
        uint64_t no = ++*line;
        if (no < p->start_line || blank(text, len)) {
            continue;
        }
        if (prepare(p, *bp, no, text, len) != 0) {
            fprintf(stderr, "nanguard load: out of memory\n");
            rc = EX_SOFTWARE;
            break;
        }
        if ((*bp)->n >= BLOCK_ROWS || (*bp)->data.len >= BLOCK_BYTES) {
            rc = hand_over(p, bp);
        }
    }
    if (fd != STDIN_FILENO) {
        close(fd);
    }
    return rc;
}

static void *reader_main(void *arg)
{
    pipeline *p = arg;
    block *b = take_free(p);
    linebuf lb = {0};
    uint64_t line = 0;
    int rc = b == NULL ? EX_SOFTWARE : 0;
    if (rc == 0 && p->nfiles == 0) {
        rc = read_file(p, "-", &b, &line, &lb);
    }
    for (int i = 0; i < p->nfiles && rc == 0; i++) {
        rc = read_file(p, p->files[i], &b, &line, &lb);
    }
    free(lb.buf);
    if (b == NULL) {
        b = calloc(1, sizeof *b); /* the end must reach the writer */
    }
    if (rc >= 0 && b != NULL) {
        b->last = true;
        b->status = rc;
        if (push(p, b) == 0) {
            b = NULL;
        }
    }
    block_free(b);
    pthread_mutex_lock(&p->mu);
    p->stopped = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* ---- the writer (main thread) ------------------------------------------ */

static void show_progress(load *l, bool force)
{
    if (!l->progress) {
        return;
    }
    if (!force && seconds_since(&l->last_progress) < 1.0) {
        return;
    }
    clock_gettime(CLOCK_MONOTONIC, &l->last_progress);
    double t = seconds_since(&l->started);
    if (t <= 0) {
        t = 1e-9;
    }
    fprintf(stderr,
            "\rnanguard load: %" PRIu64 " lines, %" PRIu64
            " stored, %.0f rows/s, %.1f MB/s   ",
            l->nlines_read, l->stored, (double)(l->stored + l->duplicates) / t,
            (double)l->bytes / 1e6 / t);
    fflush(stderr);
}

/* Takes one prepared line: a dead letter, or a row for the batch. */
static int consume(load *l, const block *b, const item *it)
{
    const char *data = b->data.data;
    const char *orig = data + it->orig_off;
    l->next_line = it->line + 1;
    l->nlines_read++;
    l->bytes += it->orig_len;
    if (it->rejected) {
        return reject_line(l, it->line, it->code, data + it->msg_off, orig,
                           it->orig_len);
    }
    const char *strs[5];
    for (int i = 0; i < 5; i++) {
        strs[i] = it->text_off[i] == SIZE_MAX ? NULL : data + it->text_off[i];
    }
    envelope env = {.thread_id = strs[0],
                    .checkpoint_ns = strs[1],
                    .checkpoint_id = strs[2],
                    .parent_checkpoint_id = strs[3],
                    .type = strs[4],
                    .checkpoint = data + it->cp_off,
                    .checkpoint_len = it->cp_len,
                    .metadata = data + it->md_off,
                    .metadata_len = it->md_len};
    l->rewrites += it->rewrites;
    int rc = add_row(l, &env, it->line, orig, it->orig_len);
    if (rc == 0 && (pg_sink_flush_due(l->sink) ||
                    l->queue_values.len > l->sink_opts.batch_bytes)) {
        rc = flush(l);
    }
    return rc;
}

/* Writes what the reader prepares until the input ends. Returns 0 or an
 * exit status. */
static int write_all(load *l, pipeline *p)
{
    for (;;) {
        block *b = pop(p, 100);
        if (b == NULL) {
            /* a slow input: the batch still goes out in time */
            if (pg_sink_flush_due(l->sink)) {
                int rc = flush(l);
                if (rc != 0) {
                    return rc;
                }
            }
            continue;
        }
        int rc = 0;
        for (size_t i = 0; i < b->n && rc == 0; i++) {
            rc = consume(l, b, &b->items[i]);
            show_progress(l, false);
        }
        bool last = b->last;
        int status = b->status;
        give_back(p, b);
        if (rc != 0) {
            return rc;
        }
        if (last) {
            /* what was read before an I/O error is written all the same */
            rc = pg_sink_pending(l->sink) > 0 ? flush(l) : 0;
            return rc != 0 ? rc : status;
        }
    }
}

/* Stops the reader. It ends at once unless it waits for input that does
 * not come (a pipe kept open): then it is left to the process exit, with
 * what it uses (returns false). */
static bool stop_reader(pipeline *p, pthread_t th)
{
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->cv);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 2;
    while (!p->stopped) {
        if (pthread_cond_timedwait(&p->cv, &p->mu, &until) != 0) {
            break;
        }
    }
    bool stopped = p->stopped;
    pthread_mutex_unlock(&p->mu);
    if (stopped) {
        pthread_join(th, NULL);
    } else {
        pthread_detach(th);
    }
    return stopped;
}

static void pipeline_free(pipeline *p)
{
    while (p->head != NULL) {
        block *b = p->head;
        p->head = b->next;
        block_free(b);
    }
    while (p->free_list != NULL) {
        block *b = p->free_list;
        p->free_list = b->next;
        block_free(b);
    }
    sanitize_free(p->san);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
}

static void summary(load *l, int status, uint64_t resume)
{
    pg_sink_stats st = {0};
    if (l->sink != NULL) {
        pg_sink_get_stats(l->sink, &st);
    }
    if (l->progress) {
        show_progress(l, true);
        fputc('\n', stderr);
    }
    ng_buf b = {0};
    char secs[32];
    snprintf(secs, sizeof secs, "%.3f", seconds_since(&l->started));
    int rc =
        ng_json_raw(&b, "{\"lines\": ") || ng_json_u64(&b, l->nlines_read) ||
        ng_json_raw(&b, ", \"stored\": ") || ng_json_u64(&b, l->stored) ||
        ng_json_raw(&b, ", \"duplicates\": ") ||
        ng_json_u64(&b, l->duplicates) ||
        ng_json_raw(&b, ", \"dead_lettered\": ") ||
        ng_json_u64(&b, l->dead_lettered) ||
        ng_json_raw(&b, ", \"rewrites\": ") || ng_json_u64(&b, l->rewrites) ||
        ng_json_raw(&b, ", \"bytes\": ") || ng_json_u64(&b, l->bytes) ||
        ng_json_raw(&b, ", \"seconds\": ") || ng_json_raw(&b, secs) ||
        ng_json_raw(&b, ", \"batches\": ") || ng_json_u64(&b, st.batches) ||
        ng_json_raw(&b, ", \"round_trips\": ") ||
        ng_json_u64(&b, st.round_trips) ||
        ng_json_raw(&b, ", \"bisect_round_trips\": ") ||
        ng_json_u64(&b, st.bisect_round_trips) ||
        ng_json_raw(&b, ", \"connects\": ") || ng_json_u64(&b, st.connects) ||
        ng_json_raw(&b, ", \"compression\": ") ||
        ng_json_cstr(&b, l->sink ? pg_sink_table_compression(l->sink) : "") ||
        ng_json_raw(&b, ", \"exit_status\": ") ||
        ng_json_u64(&b, (uint64_t)status);
    if (rc == 0 && resume != 0) {
        rc = ng_json_raw(&b, ", \"resume_from_line\": ") ||
             ng_json_u64(&b, resume);
    }
    if (rc == 0 && ng_json_raw(&b, "}\n") == 0) {
        fwrite(b.data, 1, b.len, stderr);
        fflush(stderr);
    }
    ng_buf_free(&b);
}

static void load_free(load *l)
{
    pg_sink_free(l->sink);
    for (size_t i = 0; i < l->nqueue; i++) {
        free(l->queue[i].message);
    }
    free(l->queue);
    free(l->lines);
    ng_buf_free(&l->queue_values);
    ng_buf_free(&l->originals);
    ng_buf_free(&l->out);
}

int cmd_load(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"pg", required_argument, NULL, 'p'},
        {"table", required_argument, NULL, 't'},
        {"create-table", no_argument, NULL, 'c'},
        {"on-conflict", required_argument, NULL, 'o'},
        {"dead-letter", required_argument, NULL, 'd'},
        {"batch-rows", required_argument, NULL, 'r'},
        {"batch-bytes", required_argument, NULL, 'b'},
        {"retry-timeout", required_argument, NULL, 'T'},
        {"start-line", required_argument, NULL, 's'},
        {"max-message-bytes", required_argument, NULL, 'm'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    load l;
    memset(&l, 0, sizeof l);
    l.sink_opts.batch_rows = PG_SINK_DEFAULT_BATCH_ROWS;
    l.sink_opts.batch_bytes = PG_SINK_DEFAULT_BATCH_BYTES;
    l.start_line = 1;
    l.max_message_bytes = DEFAULT_MAX_MESSAGE_BYTES;
    l.retry_timeout_s = DEFAULT_RETRY_TIMEOUT_S;
    uint64_t v;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'p':
            l.sink_opts.conninfo = optarg;
            break;
        case 't':
            l.sink_opts.table = optarg;
            break;
        case 'c':
            l.sink_opts.create_table = 1;
            break;
        case 'o':
            if (strcmp(optarg, "nothing") == 0) {
                l.sink_opts.on_conflict = PG_SINK_ON_CONFLICT_NOTHING;
            } else if (strcmp(optarg, "update") == 0) {
                l.sink_opts.on_conflict = PG_SINK_ON_CONFLICT_UPDATE;
            } else {
                fprintf(stderr,
                        "nanguard load: --on-conflict wants nothing or "
                        "update, not '%s'\n",
                        optarg);
                return EX_USAGE;
            }
            break;
        case 'd':
            l.dlq_path = optarg;
            break;
        case 'r':
            if (parse_count("--batch-rows", optarg, 1000000, &v) != 0) {
                return EX_USAGE;
            }
            l.sink_opts.batch_rows = (size_t)v;
            break;
        case 'b':
            if (parse_count("--batch-bytes", optarg, UINT64_C(1) << 34, &v)) {
                return EX_USAGE;
            }
            l.sink_opts.batch_bytes = (size_t)v;
            break;
        case 'T':
            if (parse_count("--retry-timeout", optarg, 1000000000, &v)) {
                return EX_USAGE;
            }
            l.retry_timeout_s = (double)v;
            break;
        case 's':
            if (parse_count("--start-line", optarg, UINT64_MAX, &v) != 0) {
                return EX_USAGE;
            }
            l.start_line = v;
            break;
        case 'm':
            if (parse_count("--max-message-bytes", optarg, UINT64_C(1) << 30,
                            &v) != 0) {
                return EX_USAGE;
            }
            l.max_message_bytes = (size_t)v;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return EX_USAGE;
        }
    }

    /* Inputs and the dead-letter file first: nothing is written to
     * PostgreSQL when one of them is unusable. */
    for (int i = optind; i < argc; i++) {
        if (strcmp(argv[i], "-") != 0) {
            int fd = open(argv[i], O_RDONLY);
            if (fd < 0) {
                fprintf(stderr, "nanguard load: %s: %s\n", argv[i],
                        strerror(errno));
                return EX_IOERR;
            }
            close(fd);
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &l.started);
    l.last_progress = l.started;
    l.progress = isatty(STDERR_FILENO) != 0;
    l.next_line = 1;
    ng_backoff_init(&l.backoff, RETRY_BASE_MS, RETRY_CAP_MS, NULL, NULL);

    ng_error err;
    ng_error_clear(&err);
    l.sink = pg_sink_new(&l.sink_opts, &err);
    if (l.sink == NULL) {
        fprintf(stderr, "nanguard load: %s\n", err.message);
        return strcmp(err.code, "out_of_memory") == 0 ? EX_SOFTWARE : EX_USAGE;
    }
    pipeline p = {.files = argv + optind,
                  .nfiles = argc - optind,
                  .start_line = l.start_line,
                  .max_message_bytes = l.max_message_bytes,
                  .san = sanitize_new(NULL)};
    if (p.san == NULL || pthread_mutex_init(&p.mu, NULL) != 0) {
        fprintf(stderr, "nanguard load: out of memory\n");
        sanitize_free(p.san);
        load_free(&l);
        return EX_SOFTWARE;
    }
    pthread_cond_init(&p.cv, NULL);
    if (l.dlq_path != NULL) {
        l.dlq = fopen(l.dlq_path, "a");
        if (l.dlq == NULL) {
            fprintf(stderr, "nanguard load: %s: %s\n", l.dlq_path,
                    strerror(errno));
            pipeline_free(&p);
            load_free(&l);
            return EX_IOERR;
        }
    }

    /* Connect before reading: a configuration error stops the load before
     * any line is dead-lettered. */
    int status = with_retry(&l, pg_sink_connect);
    bool reader_gone = true;
    if (status == 0) {
        pthread_t th;
        if (pthread_create(&th, NULL, reader_main, &p) != 0) {
            fprintf(stderr, "nanguard load: cannot start a thread\n");
            status = EX_OSERR;
        } else {
            status = write_all(&l, &p);
            reader_gone = stop_reader(&p, th);
        }
    }
    if (status == 0) {
        status = write_queue(&l, UINT64_MAX);
    }
    uint64_t resume = 0;
    if (status == EX_TEMPFAIL || status == EX_CONFIG) {
        /* Settled lines before the first open one keep their dead
         * letters; the rest is redone by the resumed run. */
        resume = first_open_line(&l);
        if (resume < l.start_line) {
            resume = l.start_line;
        }
        int rc = write_queue(&l, resume);
        status = rc ? rc : status;
        if (status == EX_CONFIG && resume == l.start_line) {
            resume = 0; /* nothing happened: no need to mention it */
        }
    }
    if (l.dlq != NULL && fclose(l.dlq) != 0 && status == 0) {
        fprintf(stderr, "nanguard load: %s: %s\n", l.dlq_path, strerror(errno));
        status = EX_IOERR;
    }
    l.dlq = NULL;
    if (status == 0 && l.dead_lettered > 0) {
        status = 2;
    }
    summary(&l, status, resume);
    if (reader_gone) {
        pipeline_free(&p);
    }
    load_free(&l);
    return status;
}
