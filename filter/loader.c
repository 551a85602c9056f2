/* loader.c - the engine of `nanguard load` (see loader.h): one reader
 * thread repairs lines into blocks; the main thread (the dispatcher) hands
 * the blocks to the jobs, each a writer thread with its own pg_sink, keeps
 * the account of which lines are settled, and writes the dead-letter file
 * in line order.
 *
 * Threads and locks: the reader and the dispatcher share `pipeline` (its
 * mutex guards the queue of full blocks and the free list); the dispatcher
 * and the jobs share the rest of `loader` under loader.mu: the ring of
 * dispatched blocks, the open lines, the dead-letter queue, the counts and
 * the stop flag. loader.mu may be held while taking pipeline.mu, never the
 * other way round. Each job's sink, batch and backoff are its own.
 */
#define _GNU_SOURCE
#include "filter/loader.h"
#include "filter/sanitize/envelope.h"
#include "filter/sanitize/sanitize.h"

#include "common/backoff.h"
#include "common/buf.h"
#include "common/clock.h"
#include "common/json_write.h"
#include "common/log.h"
#include "common/utf8.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#define RETRY_BASE_MS 100
#define RETRY_CAP_MS 5000
/* Lines refused without a dead-letter file: logged, up to this many. */
#define MAX_LOGGED_REJECTS 20
/* A job that stopped because another one gave up: not an exit status. */
#define JOB_STOPPED (-1)

static double seconds_since(const struct timespec *t)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t->tv_sec) +
           (double)(now.tv_nsec - t->tv_nsec) / 1e9;
}

/* ---- the reader thread -------------------------------------------------
 *
 * Reading and repairing lines costs about as much CPU as PostgreSQL spends
 * storing them, so a reader thread does it while the jobs write: it hands
 * over blocks of prepared lines to the dispatcher through a short queue.
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
    uint64_t omitted; /* too_large: the line's length (its bytes not kept) */
    char code[24];
    size_t msg_off;        /* rejected: why, NUL terminated */
    size_t text_off[5];    /* the envelope's strings, NUL terminated; */
    size_t cp_off, cp_len; /* SIZE_MAX for a null parent_checkpoint_id */
    size_t md_off, md_len;
    uint64_t rewrites;
    size_t extras_off; /* blobs and writes, as put_extras lays them out */
    size_t nblobs, nwrites;
    bool incomplete; /* see envelope.missing_channel */
    bool no_step;    /* metadata without "step" */
    unsigned job;    /* set by the dispatcher: the job that writes it */
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
    envelope_reader *reader;
    bool require_complete;
    unsigned incomplete_logged; /* the first 20 are logged */
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
    struct timespec until = ng_deadline_in(wait_ms);
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

/* An optional field of a blob or write in a block: a presence byte, then
 * the length and the bytes (and a NUL). */
static int put_opt(ng_buf *b, const char *v, size_t n)
{
    if (v == NULL) {
        return ng_buf_putc(b, 0);
    }
    return ng_buf_putc(b, 1) || ng_buf_append(b, &n, sizeof n) ||
           ng_buf_append(b, v, n) || ng_buf_putc(b, '\0');
}

static const char *get_opt(const char **p, size_t *len)
{
    if (*(*p)++ == 0) {
        *len = 0;
        return NULL;
    }
    memcpy(len, *p, sizeof *len);
    const char *v = *p + sizeof *len;
    *p = v + *len + 1;
    return v;
}

static int put_extras(ng_buf *b, const envelope *env)
{
    int rc = 0;
    for (size_t i = 0; i < env->nblobs && rc == 0; i++) {
        const envelope_blob *x = &env->blobs[i];
        rc = put_opt(b, x->channel, strlen(x->channel)) ||
             put_opt(b, x->version, strlen(x->version)) ||
             put_opt(b, x->type, strlen(x->type)) ||
             put_opt(b, x->blob, x->blob_len);
    }
    for (size_t i = 0; i < env->nwrites && rc == 0; i++) {
        const envelope_write *x = &env->writes[i];
        char idx[sizeof x->idx];
        memcpy(idx, &x->idx, sizeof idx);
        rc = put_opt(b, x->task_id, strlen(x->task_id)) ||
             put_opt(b, x->task_path, strlen(x->task_path)) ||
             put_opt(b, idx, sizeof idx) ||
             put_opt(b, x->channel, strlen(x->channel)) ||
             put_opt(b, x->type, x->type ? strlen(x->type) : 0) ||
             put_opt(b, x->blob, x->blob_len);
    }
    return rc;
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
    char why[256];
    if (text == NULL || len > p->max_message_bytes) {
        /* Not kept (read_file skipped most of it already): the dead
         * letter gives its length and line number. */
        it->omitted = len;
        b->n++;
        snprintf(why, sizeof why,
                 "the line has %zu bytes, more than --max-message-bytes "
                 "%zu (skipped while read, not kept)",
                 len, p->max_message_bytes);
        return put_text(&b->data, "", 0, &it->orig_off) ||
               reject_item(b, it, "too_large", why);
    }
    it->orig_len = len;
    if (put_text(&b->data, text, len, &it->orig_off) != 0) {
        return -1;
    }
    b->n++;
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
    if (envelope_reader_read(p->reader, p->san, &env, why, sizeof why) != 0) {
        if (strcmp(why, "out of memory") == 0) {
            return -1;
        }
        return reject_item(b, it, "bad_envelope", why);
    }
    if (env.missing_channel != NULL && p->require_complete) {
        snprintf(why, sizeof why,
                 "incomplete checkpoint: channel_versions names channel "
                 "'%.80s', which is neither in channel_values nor in blobs",
                 env.missing_channel);
        return reject_item(b, it, "checkpoint_incomplete", why);
    }
    it->incomplete = env.missing_channel != NULL;
    if (it->incomplete && p->incomplete_logged < 20) {
        char ln[24];
        snprintf(ln, sizeof ln, "%" PRIu64, line);
        p->incomplete_logged++;
        ng_log(NG_LOG_WARN,
               "incomplete checkpoint stored: a channel of "
               "channel_versions is neither inline nor in blobs",
               "line#", ln, "channel", env.missing_channel, NULL);
    }
    it->no_step = !env.has_step;
    it->nblobs = env.nblobs;
    it->nwrites = env.nwrites;
    it->extras_off = b->data.len;
    if (put_extras(&b->data, &env) != 0) {
        return -1;
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
    for (int k = 0; k < SANITIZE_KIND_COUNT; k++) {
        it->rewrites += envelope_reader_count(p->reader, (sanitize_kind)k);
    }
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
    size_t skipped = 0; /* of a line longer than --max-message-bytes */
    bool eof = false;
    int rc = 0;
    while (rc == 0) {
        size_t unseen = lb->end - lb->start - scanned;
        char *nl = unseen > 0
                       ? memchr(lb->buf + lb->start + scanned, '\n', unseen)
                       : NULL;
        if (nl == NULL && !eof) {
            if (skipped > 0 || lb->end - lb->start > p->max_message_bytes) {
                /* Too long to be stored: count its bytes, keep none, so
                 * that memory stays bounded whatever its length. */
                skipped += lb->end - lb->start;
                lb->start = lb->end = 0;
            }
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
        if (nl == NULL && lb->start == lb->end && skipped == 0) {
            break; /* the end, after a final newline */
        }
        /* A line: up to the newline, or the rest at the end. */
        char *text = lb->buf + lb->start;
        size_t len = nl ? (size_t)(nl - text) : lb->end - lb->start;
        lb->start += len + (nl != NULL);
        scanned = 0;
        uint64_t no = ++*line;
        size_t whole = skipped + len;
        skipped = 0;
        if (no < p->start_line || (whole == len && blank(text, len))) {
            continue;
        }
        if (prepare(p, *bp, no, whole == len ? text : NULL, whole) != 0) {
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

/* Stops the reader. It ends at once unless it waits for input that does
 * not come (a pipe kept open): then it is left to the process exit, with
 * what it uses (returns false). */
static bool stop_reader(pipeline *p, pthread_t th)
{
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->cv);
    struct timespec until = ng_deadline_in(2000);
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
    envelope_reader_free(p->reader);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
}

/* ---- the loader's state ------------------------------------------------ */

/* A line read whose outcome may not be known yet; kept in line order. */
typedef struct {
    uint64_t line;
    bool settled;
} open_line;

/* A dead-letter entry waiting for the lines before it to settle. */
typedef struct {
    uint64_t line;
    char code[32];
    char *message;
    size_t off; /* the original bytes, in loader.queue_values */
    size_t len;
    uint64_t omitted; /* too_large: the line's length, its bytes not kept */
} queued;

/* A row of a job's batch: the tag of the row is its index here. */
typedef struct {
    uint64_t line;
    size_t off; /* the original bytes, in job.originals */
    size_t len;
} batch_line;

typedef struct loader loader;

typedef struct {
    loader *lo;
    unsigned index;
    char name[12]; /* index + 1, for the logs */
    pg_sink *sink;
    ng_backoff backoff;
    pthread_t th;
    bool started;
    uint64_t next_block; /* the next block to take (under loader.mu) */
    unsigned flush_seen; /* the last flush request handled */
    batch_line *lines;
    size_t nlines;
    size_t cap_lines;
    ng_buf originals;
    envelope_blob *blobs; /* of the line being added */
    size_t cap_blobs;
    envelope_write *writes;
    size_t cap_writes;
} job;

struct loader {
    const loader_options *opts;
    loader_result *res;
    pipeline p;
    job *jobs;
    unsigned njobs;
    size_t batch_bytes;
    size_t ring_limit; /* bytes dispatched and not yet taken by all jobs */
    FILE *dlq;
    ng_buf out; /* one dead-letter line */
    struct timespec started;
    struct timespec last_progress;

    pthread_mutex_t mu;
    pthread_cond_t to_main; /* outcomes, a block released, a job ended */
    pthread_cond_t to_jobs; /* a block, the end of input, flush, stop */
    /* Under mu from here on. The ring holds the dispatched blocks that
     * some job has not taken yet, ring[0] being block number ring_seq;
     * every job takes every block and writes the rows routed to it. */
    block **ring;
    size_t ring_n;
    size_t ring_cap;
    uint64_t ring_seq;
    size_t ring_bytes;
    bool input_done;
    unsigned flush_gen; /* the dispatcher asks for a flush: dead letters
                           wait for the lines before them */
    bool stop;          /* a job gave up, or the dispatcher failed */
    int status;         /* why */
    unsigned running;   /* jobs not ended */
    open_line *open;    /* lines read, from the first one not settled */
    size_t open_head;
    size_t open_n;
    size_t open_cap;
    uint64_t next_line; /* after the last line read */
    queued *queue;
    size_t nqueue;
    size_t cap_queue;
    ng_buf queue_values;
};

/* ---- open lines (under mu) --------------------------------------------- */

static int open_add(loader *lo, uint64_t line, bool settled)
{
    if (lo->open_head + lo->open_n == lo->open_cap) {
        if (lo->open_n >= lo->open_cap / 2) {
            size_t cap = lo->open_cap ? lo->open_cap * 2 : 1024;
            open_line *o = realloc(lo->open, cap * sizeof *o);
            if (o == NULL) {
                return -1;
            }
            lo->open = o;
            lo->open_cap = cap;
        }
        memmove(lo->open, lo->open + lo->open_head,
                lo->open_n * sizeof *lo->open);
        lo->open_head = 0;
    }
    lo->open[lo->open_head + lo->open_n++] =
        (open_line){.line = line, .settled = settled};
    return 0;
}

static void open_settle(loader *lo, uint64_t line)
{
    size_t lo_i = lo->open_head, hi = lo->open_head + lo->open_n;
    while (lo_i < hi) {
        size_t mid = lo_i + (hi - lo_i) / 2;
        if (lo->open[mid].line < line) {
            lo_i = mid + 1;
        } else {
            hi = mid;
        }
    }
    if (lo_i < lo->open_head + lo->open_n && lo->open[lo_i].line == line) {
        lo->open[lo_i].settled = true;
    }
}

/* The first line not yet settled, or the next line to read. */
static uint64_t first_open_line(loader *lo)
{
    while (lo->open_n > 0 && lo->open[lo->open_head].settled) {
        lo->open_head++;
        lo->open_n--;
    }
    if (lo->open_n == 0) {
        lo->open_head = 0;
        return lo->next_line;
    }
    return lo->open[lo->open_head].line;
}

/* ---- dead letters (under mu; written by the dispatcher) ---------------- */

static int write_dead_letter(loader *lo, const queued *q, const char *value)
{
    lo->res->dead_lettered++;
    const char *message = q->message ? q->message : "out of memory";
    if (lo->dlq == NULL) {
        if (lo->res->dead_lettered <= MAX_LOGGED_REJECTS) {
            char n[24];
            snprintf(n, sizeof n, "%" PRIu64, q->line);
            ng_log(NG_LOG_WARN, "line not stored (no --dead-letter file)",
                   "line#", n, "error_code", q->code, "reason", message, NULL);
        }
        return 0;
    }
    ng_buf *b = &lo->out;
    ng_buf_clear(b);
    int rc =
        ng_json_raw(b, "{\"line\": ") || ng_json_u64(b, q->line) ||
        ng_json_raw(b, ", \"error_code\": ") || ng_json_cstr(b, q->code) ||
        ng_json_raw(b, ", \"message\": ") || ng_json_cstr(b, message) ||
        ng_json_raw(b, q->omitted                  ? ", \"bytes\": "
                       : utf8_valid(value, q->len) ? ", \"value\": "
                                                   : ", \"value_base64\": ");
    /* value: the line as it was; value_base64 when that is not UTF-8 (a
     * JSON string could not give its bytes back); bytes: its length only,
     * for a line too long to keep. */
    rc = rc ||
         (q->omitted                  ? ng_json_u64(b, q->omitted)
          : utf8_valid(value, q->len) ? ng_json_string(b, value, q->len)
                                      : ng_json_base64(b, value, q->len)) ||
         ng_json_raw(b, "}\n");
    if (rc != 0) {
        fprintf(stderr, "nanguard load: out of memory\n");
        return EX_SOFTWARE;
    }
    if (fwrite(b->data, 1, b->len, lo->dlq) != b->len) {
        fprintf(stderr, "nanguard load: %s: %s\n", lo->opts->dead_letter_path,
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

/* Writes the queued entries of lines before `before`, in line order. The
 * rest waits (or is dropped on exit: the resumed run redoes it). */
static int write_queue(loader *lo, uint64_t before)
{
    if (lo->nqueue == 0) {
        return 0;
    }
    qsort(lo->queue, lo->nqueue, sizeof *lo->queue, cmp_queued);
    size_t i = 0;
    int rc = 0;
    for (; i < lo->nqueue && lo->queue[i].line < before && rc == 0; i++) {
        queued *q = &lo->queue[i];
        rc = write_dead_letter(lo, q, lo->queue_values.data + q->off);
        free(q->message);
        q->message = NULL;
    }
    if (i == 0) {
        return rc;
    }
    memmove(lo->queue, lo->queue + i, (lo->nqueue - i) * sizeof *lo->queue);
    lo->nqueue -= i;
    if (lo->nqueue == 0) {
        ng_buf_clear(&lo->queue_values);
    }
    if (rc == 0 && lo->dlq != NULL && fflush(lo->dlq) != 0) {
        fprintf(stderr, "nanguard load: %s: %s\n", lo->opts->dead_letter_path,
                strerror(errno));
        rc = EX_IOERR;
    }
    return rc;
}

/* Writes what can be written: the entries before the first open line. */
static int write_ready(loader *lo)
{
    return write_queue(lo, first_open_line(lo));
}

/* Settles a line that cannot be stored; its entry waits in the queue. */
static int reject_line(loader *lo, uint64_t line, const char *code,
                       const char *message, const char *value, size_t len,
                       uint64_t omitted)
{
    open_settle(lo, line);
    if (lo->nqueue == lo->cap_queue) {
        size_t cap = lo->cap_queue ? lo->cap_queue * 2 : 64;
        queued *q = realloc(lo->queue, cap * sizeof *q);
        if (q == NULL) {
            goto oom;
        }
        lo->queue = q;
        lo->cap_queue = cap;
    }
    queued *q = &lo->queue[lo->nqueue];
    memset(q, 0, sizeof *q);
    q->line = line;
    snprintf(q->code, sizeof q->code, "%s", code);
    q->message = strdup(message);
    q->off = lo->queue_values.len;
    q->len = len;
    q->omitted = omitted;
    if (q->message == NULL || ng_buf_append(&lo->queue_values, value, len)) {
        free(q->message);
        goto oom;
    }
    lo->nqueue++;
    return 0;
oom:
    fprintf(stderr, "nanguard load: out of memory\n");
    return EX_SOFTWARE;
}

/* 128 + the signal that asked the load to stop, or 0. */
static int stop_asked(const loader *lo)
{
    return lo->opts->stop != NULL && *lo->opts->stop != 0
               ? 128 + (int)*lo->opts->stop
               : 0;
}

/* Stops every thread: the first reason wins. */
static void stop_locked(loader *lo, int status)
{
    if (!lo->stop) {
        lo->stop = true;
        lo->status = status;
    }
    pthread_cond_broadcast(&lo->to_jobs);
    pthread_cond_broadcast(&lo->to_main);
}

/* ---- jobs: one connection each ----------------------------------------- */

/* Takes the sink's outcomes into the account. */
static int job_report(job *j)
{
    loader *lo = j->lo;
    size_t n = pg_sink_result_count(j->sink);
    if (n == 0) {
        return 0;
    }
    int rc = 0;
    pthread_mutex_lock(&lo->mu);
    for (size_t i = 0; i < n && rc == 0; i++) {
        const pg_row_result *r = pg_sink_result(j->sink, i);
        if (r->tag >= j->nlines) {
            continue;
        }
        const batch_line *bl = &j->lines[r->tag];
        if (r->outcome == PG_ROW_STORED) {
            lo->res->stored++;
            open_settle(lo, bl->line);
        } else if (r->outcome == PG_ROW_DUPLICATE) {
            lo->res->duplicates++;
            open_settle(lo, bl->line);
        } else {
            char code[16];
            snprintf(code, sizeof code, "pg_%s", r->sqlstate);
            rc = reject_line(lo, bl->line, code,
                             r->message ? r->message : "refused by PostgreSQL",
                             j->originals.data + bl->off, bl->len, 0);
        }
    }
    pthread_cond_broadcast(&lo->to_main);
    pthread_mutex_unlock(&lo->mu);
    pg_sink_results_clear(j->sink);
    return rc;
}

/* Runs `step` (connect or flush) until it succeeds, PostgreSQL stays away
 * longer than the retry timeout counted from *since (75), the error is one
 * of configuration (78), or another job gives up (JOB_STOPPED). since
 * NULL: from now. */
static int job_retry(job *j, int (*step)(pg_sink *, ng_error *),
                     const struct timespec *since)
{
    loader *lo = j->lo;
    struct timespec from;
    if (since != NULL) {
        from = *since;
    } else {
        clock_gettime(CLOCK_MONOTONIC, &from);
    }
    ng_backoff_reset(&j->backoff);
    uint64_t failures = 0;
    for (;;) {
        ng_error err;
        ng_error_clear(&err);
        int ok = step(j->sink, &err) == 0;
        int rc = job_report(j);
        if (rc != 0) {
            return rc;
        }
        if (ok) {
            if (failures > 0) {
                char secs[32];
                snprintf(secs, sizeof secs, "%.1f", seconds_since(&from));
                ng_log(NG_LOG_INFO, "PostgreSQL is back", "job#", j->name,
                       "waited_s#", secs, NULL);
            }
            return 0;
        }
        failures++;
        if (err.klass != NG_ERR_TRANSIENT) {
            ng_log(NG_LOG_ERROR, "configuration error: fix it and run again",
                   "job#", j->name, "error_code", err.code, "sqlstate",
                   err.sqlstate, "reason", err.message, NULL);
            return EX_CONFIG;
        }
        double waited = seconds_since(&from);
        if (waited >= lo->opts->retry_timeout_s) {
            ng_log(NG_LOG_ERROR, "PostgreSQL unavailable, giving up", "job#",
                   j->name, "error_code", err.code, "sqlstate", err.sqlstate,
                   "reason", err.message, NULL);
            return EX_TEMPFAIL;
        }
        uint64_t delay = ng_backoff_next(&j->backoff);
        double left_ms = (lo->opts->retry_timeout_s - waited) * 1000.0;
        if ((double)delay > left_ms) {
            delay = (uint64_t)left_ms + 1;
        }
        char d[24];
        snprintf(d, sizeof d, "%" PRIu64, delay);
        ng_log(failures == 1 ? NG_LOG_WARN : NG_LOG_INFO,
               "PostgreSQL unavailable, retrying", "job#", j->name,
               "error_code", err.code, "sqlstate", err.sqlstate, "reason",
               err.message, "retry_in_ms#", d, NULL);
        /* The pause ends early when another job gives up. */
        struct timespec until = ng_deadline_in(delay);
        pthread_mutex_lock(&lo->mu);
        while (!lo->stop &&
               pthread_cond_timedwait(&lo->to_jobs, &lo->mu, &until) == 0) {
        }
        bool stop = lo->stop;
        pthread_mutex_unlock(&lo->mu);
        if (stop) {
            return JOB_STOPPED;
        }
        if (stop_asked(lo)) {
            return stop_asked(lo); /* a batch that cannot be finished now */
        }
    }
}

/* Writes the batch, waiting PostgreSQL out. */
static int job_flush(job *j)
{
    int rc = job_retry(j, pg_sink_flush, NULL);
    if (rc == 0) {
        j->nlines = 0;
        ng_buf_clear(&j->originals);
    }
    return rc;
}

/* Adds one prepared line to the batch. */
static int job_add(job *j, const block *b, const item *it)
{
    const char *data = b->data.data;
    const char *orig = data + it->orig_off;
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
    if (it->nblobs > j->cap_blobs || it->nwrites > j->cap_writes) {
        size_t nb = it->nblobs > j->cap_blobs ? it->nblobs : j->cap_blobs;
        size_t nw = it->nwrites > j->cap_writes ? it->nwrites : j->cap_writes;
        envelope_blob *xb = realloc(j->blobs, (nb + 1) * sizeof *xb);
        if (xb != NULL) {
            j->blobs = xb;
            j->cap_blobs = nb;
        }
        envelope_write *xw = realloc(j->writes, (nw + 1) * sizeof *xw);
        if (xw != NULL) {
            j->writes = xw;
            j->cap_writes = nw;
        }
        if (xb == NULL || xw == NULL) {
            goto oom;
        }
    }
    const char *x = data + it->extras_off;
    size_t n;
    for (size_t i = 0; i < it->nblobs; i++) {
        envelope_blob *e = &j->blobs[i];
        e->channel = get_opt(&x, &n);
        e->version = get_opt(&x, &n);
        e->type = get_opt(&x, &n);
        e->blob = get_opt(&x, &e->blob_len);
    }
    for (size_t i = 0; i < it->nwrites; i++) {
        envelope_write *e = &j->writes[i];
        e->task_id = get_opt(&x, &n);
        e->task_path = get_opt(&x, &n);
        memcpy(&e->idx, get_opt(&x, &n), sizeof e->idx);
        e->channel = get_opt(&x, &n);
        e->type = get_opt(&x, &n);
        e->blob = get_opt(&x, &e->blob_len);
    }
    env.blobs = j->blobs;
    env.nblobs = it->nblobs;
    env.writes = j->writes;
    env.nwrites = it->nwrites;
    if (j->nlines == j->cap_lines) {
        size_t cap = j->cap_lines ? j->cap_lines * 2 : 1024;
        batch_line *bl = realloc(j->lines, cap * sizeof *bl);
        if (bl == NULL) {
            goto oom;
        }
        j->lines = bl;
        j->cap_lines = cap;
    }
    batch_line *bl = &j->lines[j->nlines];
    bl->line = it->line;
    bl->off = j->originals.len;
    bl->len = it->orig_len;
    if (ng_buf_append(&j->originals, orig, it->orig_len) != 0) {
        goto oom;
    }
    ng_error err;
    if (pg_sink_add(j->sink, &env, j->nlines, &err) != 0) {
        j->originals.len = bl->off;
        if (err.klass != NG_ERR_PERMANENT) {
            goto oom;
        }
        loader *lo = j->lo;
        pthread_mutex_lock(&lo->mu);
        int rc = reject_line(lo, it->line, err.code, err.message, orig,
                             it->orig_len, 0);
        pthread_cond_broadcast(&lo->to_main);
        pthread_mutex_unlock(&lo->mu);
        return rc;
    }
    j->nlines++;
    return 0;
oom:
    fprintf(stderr, "nanguard load: out of memory\n");
    return EX_SOFTWARE;
}

/* Takes the rows of the block routed to this job. */
static int job_take(job *j, const block *b)
{
    int rc = 0;
    for (size_t i = 0; i < b->n && rc == 0; i++) {
        const item *it = &b->items[i];
        if (it->rejected || it->job != j->index) {
            continue;
        }
        rc = job_add(j, b, it);
        if (rc == 0 && pg_sink_flush_due(j->sink)) {
            rc = job_flush(j);
        }
    }
    return rc;
}

/* Gives back to the reader the blocks every job has taken. Under mu. */
static void ring_trim(loader *lo)
{
    uint64_t low = UINT64_MAX;
    for (unsigned i = 0; i < lo->njobs; i++) {
        if (lo->jobs[i].next_block < low) {
            low = lo->jobs[i].next_block;
        }
    }
    size_t k = 0;
    while (k < lo->ring_n && lo->ring_seq + k < low) {
        lo->ring_bytes -= lo->ring[k]->data.len;
        give_back(&lo->p, lo->ring[k]);
        k++;
    }
    if (k > 0) {
        memmove(lo->ring, lo->ring + k, (lo->ring_n - k) * sizeof *lo->ring);
        lo->ring_n -= k;
        lo->ring_seq += k;
        pthread_cond_broadcast(&lo->to_main);
    }
}

/* A job: takes every block in turn and writes its rows; writes a batch
 * when it is due (full, or old in a quiet moment), when the dispatcher
 * asks, and at the end of the input. */
static void *job_main(void *arg)
{
    job *j = arg;
    loader *lo = j->lo;
    int rc = 0;
    while (rc == 0) {
        block *b = NULL;
        bool end = false, asked = false;
        struct timespec until = ng_deadline_in(100);
        pthread_mutex_lock(&lo->mu);
        for (;;) {
            if (lo->stop) {
                rc = JOB_STOPPED;
                break;
            }
            if (j->next_block < lo->ring_seq + lo->ring_n) {
                b = lo->ring[j->next_block - lo->ring_seq];
                break;
            }
            if (lo->input_done) {
                end = true;
                break;
            }
            if (j->flush_seen != lo->flush_gen) {
                j->flush_seen = lo->flush_gen;
                asked = true;
                break;
            }
            if (pthread_cond_timedwait(&lo->to_jobs, &lo->mu, &until) != 0) {
                break; /* a quiet moment */
            }
        }
        pthread_mutex_unlock(&lo->mu);
        if (rc != 0) {
            break;
        }
        if (b != NULL) {
            rc = job_take(j, b);
            pthread_mutex_lock(&lo->mu);
            j->next_block++;
            ring_trim(lo);
            pthread_mutex_unlock(&lo->mu);
        } else if (end || asked) {
            rc = pg_sink_pending(j->sink) > 0 ? job_flush(j) : 0;
            if (end) {
                break;
            }
        } else if (pg_sink_flush_due(j->sink)) {
            rc = job_flush(j);
        }
    }
    pthread_mutex_lock(&lo->mu);
    if (rc != 0 && rc != JOB_STOPPED) {
        stop_locked(lo, rc);
    }
    lo->running--;
    pthread_cond_broadcast(&lo->to_main);
    pthread_mutex_unlock(&lo->mu);
    return NULL;
}

/* ---- the dispatcher (main thread) -------------------------------------- */

/* The job of a thread: FNV-1a of its id. */
static unsigned job_of(const char *thread_id, unsigned njobs)
{
    uint64_t h = UINT64_C(14695981039346656037);
    for (const unsigned char *s = (const unsigned char *)thread_id;
         s != NULL && *s != '\0'; s++) {
        h ^= *s;
        h *= UINT64_C(1099511628211);
    }
    return (unsigned)(h % njobs);
}

/* Under mu. */
static void show_progress(loader *lo, bool force)
{
    if (!lo->opts->progress) {
        return;
    }
    if (!force && seconds_since(&lo->last_progress) < 1.0) {
        return;
    }
    clock_gettime(CLOCK_MONOTONIC, &lo->last_progress);
    const loader_result *r = lo->res;
    double t = seconds_since(&lo->started);
    if (t <= 0) {
        t = 1e-9;
    }
    fprintf(stderr,
            "\rnanguard load: %" PRIu64 " lines, %" PRIu64
            " stored, %.0f rows/s, %.1f MB/s   ",
            r->lines, r->stored, (double)(r->stored + r->duplicates) / t,
            (double)r->bytes / 1e6 / t);
    fflush(stderr);
}

/* Waits up to 100 ms for news from the jobs, then writes what dead
 * letters it can. Under mu. */
static int wait_jobs(loader *lo)
{
    struct timespec until = ng_deadline_in(100);
    pthread_cond_timedwait(&lo->to_main, &lo->mu, &until);
    show_progress(lo, false);
    return write_ready(lo);
}

/* Hands one block from the reader to the jobs (or back, when it holds no
 * row), opening its lines and queueing its rejected ones. Waits while the
 * jobs are ring_limit bytes behind, and while the dead letters waiting
 * for earlier lines hold more than a batch. Returns 0 or an exit status. */
static int dispatch(loader *lo, block *b)
{
    loader_result *res = lo->res;
    bool rows = false;
    for (size_t i = 0; i < b->n; i++) {
        item *it = &b->items[i];
        res->lines++;
        res->bytes += it->omitted ? it->omitted : it->orig_len;
        if (!it->rejected) {
            res->rewrites += it->rewrites;
            res->incomplete += it->incomplete;
            res->without_step += it->no_step;
            it->job = job_of(b->data.data + it->text_off[0], lo->njobs);
            rows = true;
        }
    }
    int rc = 0;
    pthread_mutex_lock(&lo->mu);
    while (rc == 0 && rows && lo->ring_n > 0 &&
           lo->ring_bytes >= lo->ring_limit && !lo->stop) {
        rc = wait_jobs(lo);
    }
    for (size_t i = 0; i < b->n && rc == 0; i++) {
        const item *it = &b->items[i];
        if (open_add(lo, it->line, false) != 0) {
            fprintf(stderr, "nanguard load: out of memory\n");
            rc = EX_SOFTWARE;
        } else if (it->rejected) {
            rc = reject_line(lo, it->line, it->code, b->data.data + it->msg_off,
                             b->data.data + it->orig_off, it->orig_len,
                             it->omitted);
        }
    }
    if (b->n > 0) {
        lo->next_line = b->items[b->n - 1].line + 1;
    }
    if (rc == 0 && rows && lo->ring_n == lo->ring_cap) {
        size_t cap = lo->ring_cap ? lo->ring_cap * 2 : 16;
        block **r = realloc(lo->ring, cap * sizeof *r);
        if (r == NULL) {
            fprintf(stderr, "nanguard load: out of memory\n");
            rc = EX_SOFTWARE;
        } else {
            lo->ring = r;
            lo->ring_cap = cap;
        }
    }
    if (rc == 0 && rows) {
        lo->ring[lo->ring_n++] = b;
        lo->ring_bytes += b->data.len;
        pthread_cond_broadcast(&lo->to_jobs);
    } else {
        give_back(&lo->p, b);
    }
    if (rc == 0) {
        rc = write_ready(lo);
    }
    if (rc == 0 && lo->queue_values.len > lo->batch_bytes) {
        lo->flush_gen++;
        pthread_cond_broadcast(&lo->to_jobs);
        while (rc == 0 && lo->queue_values.len > lo->batch_bytes && !lo->stop) {
            rc = wait_jobs(lo);
        }
    }
    show_progress(lo, false);
    pthread_mutex_unlock(&lo->mu);
    return rc;
}

/* Dispatches what the reader prepares until the input ends (*input_status:
 * 0, or the reader's I/O error) or a job gives up. Returns 0 or an exit
 * status of its own. */
static int dispatch_all(loader *lo, int *input_status)
{
    for (;;) {
        if (stop_asked(lo)) {
            /* As if the input ended here: the jobs write what they have. */
            *input_status = stop_asked(lo);
            return 0;
        }
        block *b = pop(&lo->p, 100);
        int rc = 0;
        pthread_mutex_lock(&lo->mu);
        bool stop = lo->stop;
        if (b == NULL && !stop) {
            show_progress(lo, false);
            rc = write_ready(lo);
        }
        pthread_mutex_unlock(&lo->mu);
        if (stop) {
            if (b != NULL) {
                give_back(&lo->p, b);
            }
            return 0;
        }
        if (b == NULL) {
            if (rc != 0) {
                return rc;
            }
            continue;
        }
        bool last = b->last;
        *input_status = b->status;
        rc = dispatch(lo, b);
        if (rc != 0 || last) {
            return rc;
        }
    }
}

/* Makes the jobs and their sinks (not connected yet). */
static int make_jobs(loader *lo)
{
    for (unsigned i = 0; i < lo->njobs; i++) {
        job *j = &lo->jobs[i];
        j->lo = lo;
        j->index = i;
        snprintf(j->name, sizeof j->name, "%u", i + 1);
        ng_backoff_init(&j->backoff, RETRY_BASE_MS, RETRY_CAP_MS, NULL, NULL);
        ng_error err;
        ng_error_clear(&err);
        j->sink = pg_sink_new(&lo->opts->sink, &err);
        if (j->sink == NULL) {
            fprintf(stderr, "nanguard load: %s\n", err.message);
            return strcmp(err.code, "out_of_memory") == 0 ? EX_SOFTWARE
                                                          : EX_USAGE;
        }
    }
    return 0;
}

/* Starts the jobs. Returns 0, or EX_OSERR with the jobs started so far
 * told to stop. */
static int start_jobs(loader *lo)
{
    for (unsigned i = 0; i < lo->njobs; i++) {
        job *j = &lo->jobs[i];
        pthread_mutex_lock(&lo->mu);
        lo->running++;
        pthread_mutex_unlock(&lo->mu);
        if (pthread_create(&j->th, NULL, job_main, j) != 0) {
            fprintf(stderr, "nanguard load: cannot start a thread\n");
            pthread_mutex_lock(&lo->mu);
            lo->running--;
            stop_locked(lo, EX_OSERR);
            pthread_mutex_unlock(&lo->mu);
            return EX_OSERR;
        }
        j->started = true;
    }
    return 0;
}

/* Waits for the jobs to end (writing dead letters meanwhile), joins them. */
static void end_jobs(loader *lo)
{
    pthread_mutex_lock(&lo->mu);
    lo->input_done = true;
    pthread_cond_broadcast(&lo->to_jobs);
    while (lo->running > 0) {
        int rc = wait_jobs(lo);
        if (rc != 0) {
            stop_locked(lo, rc);
        }
    }
    pthread_mutex_unlock(&lo->mu);
    for (unsigned i = 0; i < lo->njobs; i++) {
        if (lo->jobs[i].started) {
            pthread_join(lo->jobs[i].th, NULL);
            lo->jobs[i].started = false;
        }
    }
}

static void loader_free(loader *lo, bool reader_gone)
{
    for (unsigned i = 0; lo->jobs != NULL && i < lo->njobs; i++) {
        job *j = &lo->jobs[i];
        pg_sink_free(j->sink);
        free(j->lines);
        ng_buf_free(&j->originals);
        free(j->blobs);
        free(j->writes);
    }
    free(lo->jobs);
    for (size_t i = 0; i < lo->ring_n; i++) {
        block_free(lo->ring[i]);
    }
    free(lo->ring);
    free(lo->open);
    for (size_t i = 0; i < lo->nqueue; i++) {
        free(lo->queue[i].message);
    }
    free(lo->queue);
    ng_buf_free(&lo->queue_values);
    ng_buf_free(&lo->out);
    if (reader_gone) {
        pipeline_free(&lo->p);
    }
    pthread_cond_destroy(&lo->to_jobs);
    pthread_cond_destroy(&lo->to_main);
    pthread_mutex_destroy(&lo->mu);
}

static void collect(loader *lo)
{
    memset(&lo->res->sink, 0, sizeof lo->res->sink);
    for (unsigned i = 0; i < lo->njobs; i++) {
        pg_sink_stats st = {0};
        if (lo->jobs[i].sink == NULL) {
            continue;
        }
        pg_sink_get_stats(lo->jobs[i].sink, &st);
        pg_sink_stats *t = &lo->res->sink;
        t->batches += st.batches;
        t->rows_stored += st.rows_stored;
        t->rows_duplicate += st.rows_duplicate;
        t->rows_rejected += st.rows_rejected;
        t->round_trips += st.round_trips;
        t->bisect_round_trips += st.bisect_round_trips;
        t->failed_flushes += st.failed_flushes;
        t->connects += st.connects;
        t->bytes_sent += st.bytes_sent;
    }
    if (lo->jobs[0].sink != NULL) {
        snprintf(lo->res->compression, sizeof lo->res->compression, "%s",
                 pg_sink_table_compression(lo->jobs[0].sink));
    }
}

int loader_run(const loader_options *opts, char **files, int nfiles,
               loader_result *result)
{
    memset(result, 0, sizeof *result);
    loader lo;
    memset(&lo, 0, sizeof lo);
    lo.opts = opts;
    lo.res = result;
    lo.njobs = opts->jobs < 1                 ? 1
               : opts->jobs > LOADER_MAX_JOBS ? LOADER_MAX_JOBS
                                              : opts->jobs;
    lo.batch_bytes = opts->sink.batch_bytes ? opts->sink.batch_bytes
                                            : PG_SINK_DEFAULT_BATCH_BYTES;
    /* Enough for every job to fill a batch while another one writes its
     * own: rows are routed by thread, so each job sees 1/njobs of it. */
    uint64_t limit = (uint64_t)lo.njobs * lo.batch_bytes;
    lo.ring_limit = limit < 4 * BLOCK_BYTES ? 4 * BLOCK_BYTES
                    : limit > (256u << 20)  ? (256u << 20)
                                            : (size_t)limit;
    lo.next_line = opts->start_line;
    clock_gettime(CLOCK_MONOTONIC, &lo.started);
    lo.last_progress = lo.started;
    pthread_mutex_init(&lo.mu, NULL);
    pthread_cond_init(&lo.to_main, NULL);
    pthread_cond_init(&lo.to_jobs, NULL);
    lo.p = (pipeline){.files = files,
                      .nfiles = nfiles,
                      .start_line = opts->start_line,
                      .max_message_bytes = opts->max_message_bytes,
                      .san = sanitize_new(&(sanitize_options){
                          .no_paths = 1}), /* load reports no paths */
                      .reader = envelope_reader_new(0),
                      .require_complete = opts->require_complete};
    lo.jobs = calloc(lo.njobs, sizeof *lo.jobs);
    if (lo.p.san == NULL || lo.p.reader == NULL || lo.jobs == NULL ||
        pthread_mutex_init(&lo.p.mu, NULL) != 0) {
        fprintf(stderr, "nanguard load: out of memory\n");
        sanitize_free(lo.p.san);
        lo.p.san = NULL;
        envelope_reader_free(lo.p.reader);
        lo.p.reader = NULL;
        free(lo.jobs);
        lo.jobs = NULL;
        loader_free(&lo, false);
        return EX_SOFTWARE;
    }
    pthread_cond_init(&lo.p.cv, NULL);

    int status = make_jobs(&lo);
    if (status == 0 && opts->dead_letter_path != NULL) {
        lo.dlq = fopen(opts->dead_letter_path, "a");
        if (lo.dlq == NULL) {
            fprintf(stderr, "nanguard load: %s: %s\n", opts->dead_letter_path,
                    strerror(errno));
            status = EX_IOERR;
        }
    }
    /* Connect every job before reading, one after the other, waiting
     * PostgreSQL out once for all of them: a configuration error stops the
     * load before any line is dead-lettered. */
    struct timespec since;
    clock_gettime(CLOCK_MONOTONIC, &since);
    for (unsigned i = 0; i < lo.njobs && status == 0; i++) {
        status = job_retry(&lo.jobs[i], pg_sink_connect, &since);
    }
    bool reader_gone = true;
    if (status == 0 && start_jobs(&lo) == 0) {
        pthread_t th;
        int input_status = 0;
        int rc;
        if (pthread_create(&th, NULL, reader_main, &lo.p) != 0) {
            fprintf(stderr, "nanguard load: cannot start a thread\n");
            rc = EX_OSERR;
        } else {
            rc = dispatch_all(&lo, &input_status);
            reader_gone = stop_reader(&lo.p, th);
        }
        if (rc != 0) {
            pthread_mutex_lock(&lo.mu);
            stop_locked(&lo, rc);
            pthread_mutex_unlock(&lo.mu);
        }
        end_jobs(&lo);
        status = lo.stop ? lo.status : input_status;
    } else if (status == 0) {
        end_jobs(&lo);
        status = lo.status;
    }

    /* Every thread but a reader stuck on its input has ended. */
    pthread_mutex_lock(&lo.mu);
    if (!lo.stop) {
        /* Every line read is settled (the input may have ended on an I/O
         * error: what was read is written all the same). */
        int rc = write_queue(&lo, UINT64_MAX);
        status = rc ? rc : status;
    }
    if (status == EX_TEMPFAIL || status == EX_CONFIG || status > 128) {
        /* Settled lines before the first open one keep their dead
         * letters; the rest is redone by the resumed run. */
        uint64_t resume = first_open_line(&lo);
        if (resume < opts->start_line) {
            resume = opts->start_line;
        }
        int rc = write_queue(&lo, resume);
        status = rc ? rc : status;
        if (status == EX_CONFIG && resume == opts->start_line) {
            resume = 0; /* nothing happened: no need to mention it */
        }
        result->resume_from_line = resume;
    }
    if (lo.opts->progress) {
        show_progress(&lo, true);
        fputc('\n', stderr);
    }
    pthread_mutex_unlock(&lo.mu);
    if (lo.dlq != NULL && fclose(lo.dlq) != 0 && status == 0) {
        fprintf(stderr, "nanguard load: %s: %s\n", opts->dead_letter_path,
                strerror(errno));
        status = EX_IOERR;
    }
    lo.dlq = NULL;
    collect(&lo);
    loader_free(&lo, reader_gone);
    return status;
}
