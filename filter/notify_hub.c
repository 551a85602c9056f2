/* notify_hub.c - kept events and the SSE streams that read them. */
#define _POSIX_C_SOURCE 200809L
#include "filter/notify_hub.h"

#include "common/buf.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A stream catching up takes this much from the kept events at a time. */
#define REFILL_BYTES 65536
static const char HEARTBEAT[] = ": keep-alive\n\n";

struct event {
    uint64_t seq; /* in the order added */
    int32_t partition;
    int64_t offset;
    int64_t ts_ms;
    char *thread;
    size_t len;   /* of frame */
    char frame[]; /* "id: ...\nevent: ...\ndata: ...\n\n" */
};

struct notify_stream {
    notify_hub *hub;
    notify_stream *prev, *next;
    char **threads;
    size_t nthreads;
    int64_t *cursor; /* NULL: the backlog by time */
    int64_t since_ms;
    uint64_t scan_seq; /* catching up: the next kept event to look at */
    bool live;         /* caught up: add() pushes to it */
    bool waiting;      /* its reader is suspended */
    bool ended;        /* dropped or shut down */
    ng_buf buf;
    size_t sent; /* bytes of buf already handed out */
    notify_wake_fn wake;
    void *ctx;
};

struct notify_hub {
    pthread_mutex_t mu;
    notify_hub_options o;
    int64_t *pos; /* next offset per partition */
    /* The kept events, a ring in the order added. */
    struct event **ring;
    size_t cap, head, count;
    uint64_t next_seq;
    size_t kept_bytes;
    notify_stream *streams;
    notify_hub_stats st;
    char *idbuf;
    size_t idcap;
};

notify_hub *notify_hub_new(const notify_hub_options *o)
{
    notify_hub *h = calloc(1, sizeof *h);
    if (h == NULL) {
        return NULL;
    }
    h->o = *o;
    h->o.start = NULL;
    size_t np = o->partitions ? o->partitions : 1;
    h->pos = calloc(np, sizeof *h->pos);
    /* "p:o," is at most 11 + 1 + 20 + 1 bytes per partition. */
    h->idcap = np * 33 + 1;
    h->idbuf = malloc(h->idcap);
    if (h->pos == NULL || h->idbuf == NULL ||
        pthread_mutex_init(&h->mu, NULL) != 0) {
        free(h->pos);
        free(h->idbuf);
        free(h);
        return NULL;
    }
    for (size_t i = 0; i < o->partitions; i++) {
        h->pos[i] = o->start ? o->start[i] : 0;
    }
    return h;
}

static void event_free(struct event *e)
{
    if (e != NULL) {
        free(e->thread);
        free(e);
    }
}

static void pop_oldest(notify_hub *h)
{
    struct event *e = h->ring[h->head];
    h->ring[h->head] = NULL;
    h->head = (h->head + 1) % h->cap;
    h->count--;
    h->kept_bytes -= e->len;
    event_free(e);
}

void notify_hub_free(notify_hub *h)
{
    if (h == NULL) {
        return;
    }
    while (h->count > 0) {
        pop_oldest(h);
    }
    free(h->ring);
    free(h->pos);
    free(h->idbuf);
    pthread_mutex_destroy(&h->mu);
    free(h);
}

int notify_cursor_format(const int64_t *positions, size_t partitions, char *out,
                         size_t cap)
{
    size_t len = 0;
    if (cap == 0) {
        return -1;
    }
    out[0] = '\0';
    for (size_t i = 0; i < partitions; i++) {
        int n = snprintf(out + len, cap - len, "%s%zu:%" PRId64, i ? "," : "",
                         i, positions[i]);
        if (n < 0 || (size_t)n >= cap - len) {
            return -1;
        }
        len += (size_t)n;
    }
    return (int)len;
}

int notify_cursor_parse(const char *text, int64_t *positions, size_t partitions)
{
    for (size_t i = 0; i < partitions; i++) {
        positions[i] = 0;
    }
    const char *p = text;
    if (*p == '\0') {
        return -1;
    }
    while (*p != '\0') {
        char *end;
        if (*p < '0' || *p > '9') {
            return -1;
        }
        unsigned long long part = strtoull(p, &end, 10);
        if (*end != ':' || end[1] < '0' || end[1] > '9') {
            return -1;
        }
        p = end + 1;
        long long off = strtoll(p, &end, 10);
        if (end == p || (*end != ',' && *end != '\0') || off < 0) {
            return -1;
        }
        if (part < partitions) {
            positions[part] = off;
        }
        p = *end == ',' ? end + 1 : end;
        if (*end == ',' && *p == '\0') {
            return -1;
        }
    }
    return 0;
}

static bool wants(const notify_stream *s, const struct event *e)
{
    if (s->cursor != NULL) {
        if ((size_t)e->partition < s->hub->o.partitions &&
            e->offset < s->cursor[e->partition]) {
            return false;
        }
    } else if (!s->live && e->ts_ms < s->since_ms) {
        return false;
    }
    for (size_t i = 0; i < s->nthreads; i++) {
        if (strcmp(s->threads[i], e->thread) == 0) {
            return true;
        }
    }
    return false;
}

static void wake(notify_stream *s)
{
    if (s->waiting) {
        s->waiting = false;
        s->wake(s->ctx);
    }
}

/* Drops what was handed out, so the buffer holds only what waits. */
static void compact(notify_stream *s)
{
    if (s->sent > 0) {
        memmove(s->buf.data, s->buf.data + s->sent, s->buf.len - s->sent);
        s->buf.len -= s->sent;
        s->sent = 0;
    }
}

static void end_stream(notify_stream *s)
{
    s->ended = true;
    ng_buf_free(&s->buf);
    s->sent = 0;
    wake(s);
}

/* The "data:" lines of value: one per line of it (SSE joins them with
 * "\n"), so a value is sent as it is even if it spans lines. */
static int put_data(ng_buf *b, const char *v, size_t len)
{
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || v[i] == '\n' || v[i] == '\r') {
            if (ng_buf_append(b, "data: ", 6) != 0 ||
                ng_buf_append(b, v + start, i - start) != 0 ||
                ng_buf_putc(b, '\n') != 0) {
                return -1;
            }
            if (i + 1 < len && v[i] == '\r' && v[i + 1] == '\n') {
                i++;
            }
            start = i + 1;
        }
    }
    return ng_buf_putc(b, '\n');
}

/* The event: field holds a name only; anything else is "message". */
static const char *event_name(const char *type)
{
    if (type == NULL || *type == '\0' || strlen(type) > 64) {
        return "message";
    }
    for (const char *p = type; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              (*p >= '0' && *p <= '9') || *p == '_' || *p == '.' ||
              *p == '-')) {
            return "message";
        }
    }
    return type;
}

static int keep(notify_hub *h, struct event *e)
{
    if (h->count == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 256;
        struct event **ring = calloc(cap, sizeof *ring);
        if (ring == NULL) {
            return -1;
        }
        for (size_t i = 0; i < h->count; i++) {
            ring[i] = h->ring[(h->head + i) % h->cap];
        }
        free(h->ring);
        h->ring = ring;
        h->cap = cap;
        h->head = 0;
    }
    h->ring[(h->head + h->count) % h->cap] = e;
    h->count++;
    h->kept_bytes += e->len;
    while (h->count > 1 && h->kept_bytes > h->o.max_kept_bytes) {
        pop_oldest(h);
    }
    return 0;
}

static void push(notify_hub *h, const struct event *e)
{
    for (notify_stream *s = h->streams; s != NULL; s = s->next) {
        if (!s->live || s->ended || !wants(s, e)) {
            continue;
        }
        compact(s);
        if (s->buf.len + e->len > h->o.client_buffer_bytes ||
            ng_buf_append(&s->buf, e->frame, e->len) != 0) {
            h->st.dropped++;
            end_stream(s);
            continue;
        }
        h->st.events_sent++;
        wake(s);
    }
}

int notify_hub_add(notify_hub *h, int32_t partition, int64_t offset,
                   int64_t ts_ms, const char *thread, const char *type,
                   const char *value, size_t len)
{
    pthread_mutex_lock(&h->mu);
    int rc = 0;
    if (partition < 0 || (size_t)partition >= h->o.partitions ||
        offset < h->pos[partition]) {
        goto out;
    }
    h->pos[partition] = offset + 1;
    h->st.events_in++;
    if (thread == NULL) {
        goto out; /* nobody's thread: no stream can ask for it */
    }
    ng_buf f = {0};
    notify_cursor_format(h->pos, h->o.partitions, h->idbuf, h->idcap);
    const char *name = event_name(type);
    if (ng_buf_append(&f, "id: ", 4) != 0 ||
        ng_buf_append(&f, h->idbuf, strlen(h->idbuf)) != 0 ||
        ng_buf_append(&f, "\nevent: ", 8) != 0 ||
        ng_buf_append(&f, name, strlen(name)) != 0 ||
        ng_buf_putc(&f, '\n') != 0 || put_data(&f, value, len) != 0) {
        ng_buf_free(&f);
        rc = -1;
        goto out;
    }
    struct event *e = malloc(sizeof *e + f.len);
    char *t = strdup(thread);
    if (e == NULL || t == NULL) {
        free(e);
        free(t);
        ng_buf_free(&f);
        rc = -1;
        goto out;
    }
    e->seq = h->next_seq++;
    e->partition = partition;
    e->offset = offset;
    e->ts_ms = ts_ms;
    e->thread = t;
    e->len = f.len;
    memcpy(e->frame, f.data, f.len);
    ng_buf_free(&f);
    push(h, e);
    if (keep(h, e) != 0) {
        event_free(e);
        rc = -1;
    }
out:
    pthread_mutex_unlock(&h->mu);
    return rc;
}

void notify_hub_expire(notify_hub *h, int64_t now_ms)
{
    pthread_mutex_lock(&h->mu);
    int64_t oldest = now_ms - (int64_t)h->o.backlog_ms;
    while (h->count > 0 && h->ring[h->head]->ts_ms < oldest) {
        pop_oldest(h);
    }
    pthread_mutex_unlock(&h->mu);
}

void notify_hub_heartbeat(notify_hub *h)
{
    pthread_mutex_lock(&h->mu);
    for (notify_stream *s = h->streams; s != NULL; s = s->next) {
        if (s->ended || s->buf.len > s->sent) {
            continue;
        }
        compact(s);
        if (ng_buf_append(&s->buf, HEARTBEAT, sizeof HEARTBEAT - 1) == 0) {
            wake(s);
        }
    }
    pthread_mutex_unlock(&h->mu);
}

void notify_hub_shutdown(notify_hub *h)
{
    pthread_mutex_lock(&h->mu);
    for (notify_stream *s = h->streams; s != NULL; s = s->next) {
        if (!s->ended) {
            end_stream(s);
        }
    }
    pthread_mutex_unlock(&h->mu);
}

static void stream_free(notify_stream *s)
{
    for (size_t i = 0; i < s->nthreads; i++) {
        free(s->threads[i]);
    }
    free(s->threads);
    free(s->cursor);
    ng_buf_free(&s->buf);
    free(s);
}

notify_stream *notify_hub_open(notify_hub *h, const char *const *threads,
                               size_t n, const char *cursor, int64_t now_ms,
                               notify_wake_fn wake_fn, void *ctx, bool *full)
{
    *full = false;
    notify_stream *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return NULL;
    }
    s->hub = h;
    s->wake = wake_fn;
    s->ctx = ctx;
    s->since_ms = now_ms - (int64_t)h->o.backlog_ms;
    s->threads = calloc(n ? n : 1, sizeof *s->threads);
    if (s->threads == NULL) {
        stream_free(s);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if ((s->threads[i] = strdup(threads[i])) == NULL) {
            stream_free(s);
            return NULL;
        }
        s->nthreads++;
    }
    if (cursor != NULL && h->o.partitions > 0) {
        s->cursor = malloc(h->o.partitions * sizeof *s->cursor);
        if (s->cursor == NULL) {
            stream_free(s);
            return NULL;
        }
        if (notify_cursor_parse(cursor, s->cursor, h->o.partitions) != 0) {
            free(s->cursor);
            s->cursor = NULL;
        }
    }
    char retry[64];
    int rl = snprintf(retry, sizeof retry, "retry: %llu\n\n",
                      (unsigned long long)h->o.retry_ms);
    if (ng_buf_append(&s->buf, retry, (size_t)rl) != 0) {
        stream_free(s);
        return NULL;
    }
    pthread_mutex_lock(&h->mu);
    if (h->st.streams >= h->o.max_streams) {
        h->st.refused_full++;
        pthread_mutex_unlock(&h->mu);
        *full = true;
        stream_free(s);
        return NULL;
    }
    s->scan_seq = h->count ? h->ring[h->head]->seq : h->next_seq;
    s->next = h->streams;
    if (h->streams != NULL) {
        h->streams->prev = s;
    }
    h->streams = s;
    h->st.streams++;
    pthread_mutex_unlock(&h->mu);
    return s;
}

/* Catching up: moves kept events the stream wants into its buffer, up to
 * REFILL_BYTES; live once every kept event was looked at. */
static void refill(notify_hub *h, notify_stream *s)
{
    uint64_t first = h->count ? h->ring[h->head]->seq : h->next_seq;
    if (s->scan_seq < first) {
        s->scan_seq = first; /* forgotten meanwhile */
    }
    while (s->scan_seq < h->next_seq) {
        const struct event *e =
            h->ring[(h->head + (s->scan_seq - first)) % h->cap];
        if (wants(s, e)) {
            if (s->buf.len > 0 && s->buf.len + e->len > REFILL_BYTES) {
                return;
            }
            if (ng_buf_append(&s->buf, e->frame, e->len) != 0) {
                h->st.dropped++;
                end_stream(s);
                return;
            }
            h->st.events_sent++;
        }
        s->scan_seq++;
    }
    s->live = true;
}

long notify_stream_read(notify_stream *s, char *out, size_t max,
                        notify_wake_fn suspend, void *ctx)
{
    notify_hub *h = s->hub;
    long n = -1;
    pthread_mutex_lock(&h->mu);
    if (s->ended) {
        goto out;
    }
    if (s->buf.len == s->sent) {
        ng_buf_clear(&s->buf);
        s->sent = 0;
        if (!s->live) {
            refill(h, s);
            if (s->ended) {
                goto out;
            }
        }
    }
    size_t avail = s->buf.len - s->sent;
    if (avail == 0) {
        s->waiting = true;
        suspend(ctx);
        n = 0;
        goto out;
    }
    size_t take = avail < max ? avail : max;
    memcpy(out, s->buf.data + s->sent, take);
    s->sent += take;
    h->st.bytes_sent += take;
    n = (long)take;
    if (s->sent == s->buf.len && s->buf.cap > REFILL_BYTES) {
        ng_buf_free(&s->buf); /* an idle stream holds no big buffer */
        s->sent = 0;
    }
out:
    pthread_mutex_unlock(&h->mu);
    return n;
}

void notify_hub_close(notify_stream *s)
{
    if (s == NULL) {
        return;
    }
    notify_hub *h = s->hub;
    pthread_mutex_lock(&h->mu);
    if (s->prev != NULL) {
        s->prev->next = s->next;
    } else {
        h->streams = s->next;
    }
    if (s->next != NULL) {
        s->next->prev = s->prev;
    }
    h->st.streams--;
    pthread_mutex_unlock(&h->mu);
    stream_free(s);
}

void notify_hub_get_stats(notify_hub *h, notify_hub_stats *st,
                          int64_t *positions)
{
    pthread_mutex_lock(&h->mu);
    *st = h->st;
    st->kept_events = h->count;
    st->kept_bytes = h->kept_bytes;
    if (positions != NULL) {
        memcpy(positions, h->pos, h->o.partitions * sizeof *positions);
    }
    pthread_mutex_unlock(&h->mu);
}
