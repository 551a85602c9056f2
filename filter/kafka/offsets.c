/* offsets.c - which Kafka offsets may be stored for commit. */
#define _POSIX_C_SOURCE 200809L
#include "filter/kafka/offsets.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* One partition: a ring of messages in flight, oldest first. */
struct part {
    char *topic;
    int32_t partition;
    uint32_t generation; /* bumped when forgotten, so stale ids miss */
    bool live;
    int64_t *off;
    uint64_t *at; /* when each was registered (offsets_begin_at) */
    bool *done;
    size_t cap, head, len;
    uint64_t head_seq; /* sequence number of the oldest entry */
    int64_t next;      /* next offset to store, -1 when none yet */
    bool moved;        /* next changed since the last collect */
};

struct offsets {
    struct part *parts;
    size_t nparts, cap;
    size_t in_flight;
};

/* An id: 16 bits partition slot, 8 bits generation, 40 bits sequence. */
#define SEQ_BITS 40
#define GEN_BITS 8
#define SEQ_MASK ((UINT64_C(1) << SEQ_BITS) - 1)
#define GEN_MASK ((UINT64_C(1) << GEN_BITS) - 1)
#define MAX_PARTS (1u << 16)

offsets *offsets_new(void)
{
    return calloc(1, sizeof(offsets));
}

void offsets_free(offsets *t)
{
    if (t == NULL) {
        return;
    }
    for (size_t i = 0; i < t->nparts; i++) {
        free(t->parts[i].topic);
        free(t->parts[i].off);
        free(t->parts[i].at);
        free(t->parts[i].done);
    }
    free(t->parts);
    free(t);
}

static struct part *find(const offsets *t, const char *topic, int32_t partition)
{
    for (size_t i = 0; i < t->nparts; i++) {
        struct part *p = &t->parts[i];
        if (p->partition == partition && strcmp(p->topic, topic) == 0) {
            return p;
        }
    }
    return NULL;
}

static struct part *find_or_add(offsets *t, const char *topic,
                                int32_t partition)
{
    struct part *p = find(t, topic, partition);
    if (p != NULL) {
        return p;
    }
    if (t->nparts == MAX_PARTS) {
        return NULL;
    }
    if (t->nparts == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 8;
        struct part *np = realloc(t->parts, cap * sizeof *np);
        if (np == NULL) {
            return NULL;
        }
        t->parts = np;
        t->cap = cap;
    }
    p = &t->parts[t->nparts];
    memset(p, 0, sizeof *p);
    p->topic = strdup(topic);
    if (p->topic == NULL) {
        return NULL;
    }
    p->partition = partition;
    p->next = -1;
    t->nparts++;
    return p;
}

static int grow(struct part *p)
{
    size_t cap = p->cap ? p->cap * 2 : 64;
    int64_t *off = malloc(cap * sizeof *off);
    uint64_t *at = malloc(cap * sizeof *at);
    bool *done = malloc(cap * sizeof *done);
    if (off == NULL || at == NULL || done == NULL) {
        free(off);
        free(at);
        free(done);
        return -1;
    }
    for (size_t i = 0; i < p->len; i++) {
        off[i] = p->off[(p->head + i) % p->cap];
        at[i] = p->at[(p->head + i) % p->cap];
        done[i] = p->done[(p->head + i) % p->cap];
    }
    free(p->off);
    free(p->at);
    free(p->done);
    p->off = off;
    p->at = at;
    p->done = done;
    p->cap = cap;
    p->head = 0;
    return 0;
}

int offsets_begin(offsets *t, const char *topic, int32_t partition,
                  int64_t offset, uint64_t *id)
{
    return offsets_begin_at(t, topic, partition, offset, 0, id);
}

int offsets_begin_at(offsets *t, const char *topic, int32_t partition,
                     int64_t offset, uint64_t at, uint64_t *id)
{
    struct part *p = find_or_add(t, topic, partition);
    if (p == NULL || (p->len == p->cap && grow(p) != 0)) {
        return -1;
    }
    if (!p->live) {
        p->live = true;
        p->len = 0;
        p->head = 0;
    }
    p->off[(p->head + p->len) % p->cap] = offset;
    p->at[(p->head + p->len) % p->cap] = at;
    p->done[(p->head + p->len) % p->cap] = false;
    uint64_t seq = (p->head_seq + p->len) & SEQ_MASK;
    p->len++;
    t->in_flight++;
    *id = (uint64_t)(p - t->parts) << (SEQ_BITS + GEN_BITS) |
          (uint64_t)(p->generation & GEN_MASK) << SEQ_BITS | seq;
    return 0;
}

void offsets_done(offsets *t, uint64_t id)
{
    size_t slot = (size_t)(id >> (SEQ_BITS + GEN_BITS));
    if (slot >= t->nparts) {
        return;
    }
    struct part *p = &t->parts[slot];
    uint64_t gen = (id >> SEQ_BITS) & GEN_MASK;
    uint64_t pos = ((id & SEQ_MASK) - p->head_seq) & SEQ_MASK;
    if (!p->live || gen != (p->generation & GEN_MASK) || pos >= p->len) {
        return;
    }
    size_t i = (p->head + pos) % p->cap;
    if (p->done[i]) {
        return;
    }
    p->done[i] = true;
    t->in_flight--;
    /* Pop the finished prefix. */
    while (p->len > 0 && p->done[p->head]) {
        p->next = p->off[p->head] + 1;
        p->moved = true;
        p->head = (p->head + 1) % p->cap;
        p->head_seq = (p->head_seq + 1) & SEQ_MASK;
        p->len--;
    }
}

void offsets_collect(offsets *t, offsets_ready_fn fn, void *ctx)
{
    for (size_t i = 0; i < t->nparts; i++) {
        struct part *p = &t->parts[i];
        if (p->live && p->moved) {
            p->moved = false;
            fn(ctx, p->topic, p->partition, p->next);
        }
    }
}

void offsets_forget(offsets *t, const char *topic, int32_t partition)
{
    struct part *p = find(t, topic, partition);
    if (p == NULL || !p->live) {
        return;
    }
    for (size_t i = 0; i < p->len; i++) {
        if (!p->done[(p->head + i) % p->cap]) {
            t->in_flight--;
        }
    }
    p->live = false;
    p->moved = false;
    p->len = 0;
    p->head = 0;
    p->head_seq = 0;
    p->next = -1;
    p->generation++;
}

int offsets_head(const offsets *t, const char *topic, int32_t partition,
                 int64_t *offset, uint64_t *at)
{
    const struct part *p = find(t, topic, partition);
    if (p == NULL || !p->live) {
        *offset = -1;
        return 0;
    }
    if (p->len == 0) {
        *offset = p->next;
        return 0;
    }
    *offset = p->off[p->head];
    *at = p->at[p->head];
    return 1;
}

size_t offsets_in_flight(const offsets *t)
{
    return t->in_flight;
}

size_t offsets_partition_in_flight(const offsets *t, const char *topic,
                                   int32_t partition)
{
    const struct part *p = find(t, topic, partition);
    if (p == NULL || !p->live) {
        return 0;
    }
    size_t n = 0;
    for (size_t i = 0; i < p->len; i++) {
        n += !p->done[(p->head + i) % p->cap];
    }
    return n;
}
