/* handover.c - dead-lettered once, across a worker that died. */
#define _GNU_SOURCE /* memmem */
#include "filter/handover.h"

#include "common/clock.h"
#include "common/log.h"
#include "filter/kafka/reader.h"

#include <yajl/yajl_tree.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct hpart {
    char *topic;
    int32_t partition;
    int64_t committed;       /* where the partition started, -1: none */
    bool scan_pending;       /* assigned with since=, not scanned yet */
    bool covered;            /* a since= commit is in the group */
    bool dirty;              /* a dead letter was wanted while held */
    int64_t dl_max;          /* highest offset dead-lettered, -1: none */
    int64_t inherited_since; /* the previous owner's since=, -1: none */
    handover_entry *e;       /* sorted by offset after a scan */
    size_t n, cap;
};

struct handover {
    struct hpart *parts;
    size_t n, cap;
};

handover *handover_new(void)
{
    return calloc(1, sizeof(handover));
}

static void part_free(struct hpart *p)
{
    free(p->topic);
    free(p->e);
}

void handover_free(handover *h)
{
    if (h == NULL) {
        return;
    }
    for (size_t i = 0; i < h->n; i++) {
        part_free(&h->parts[i]);
    }
    free(h->parts);
    free(h);
}

int handover_meta_parse(const void *meta, size_t len, int64_t *since_ms)
{
    static const char since[] = "nanguard/1 since=";
    char s[64];
    if (meta == NULL || len == 0 || len >= sizeof s) {
        return -1;
    }
    memcpy(s, meta, len);
    s[len] = '\0';
    if (strcmp(s, HANDOVER_META_CLEAN) == 0) {
        return 0;
    }
    if (strncmp(s, since, sizeof since - 1) != 0) {
        return -1;
    }
    char *end;
    long long v = strtoll(s + sizeof since - 1, &end, 10);
    if (end == s + sizeof since - 1 || *end != '\0' || v < 0) {
        return -1;
    }
    *since_ms = v;
    return 1;
}

static struct hpart *find(const handover *h, const char *topic,
                          int32_t partition)
{
    for (size_t i = 0; i < h->n; i++) {
        struct hpart *p = &h->parts[i];
        if (p->partition == partition && strcmp(p->topic, topic) == 0) {
            return p;
        }
    }
    return NULL;
}

int handover_assign(handover *h, const char *topic, int32_t partition,
                    int64_t committed, const void *meta, size_t meta_len,
                    int64_t *since_ms)
{
    handover_forget(h, topic, partition);
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 16;
        struct hpart *np = realloc(h->parts, cap * sizeof *np);
        if (np == NULL) {
            return -1;
        }
        h->parts = np;
        h->cap = cap;
    }
    struct hpart *p = &h->parts[h->n];
    memset(p, 0, sizeof *p);
    if ((p->topic = strdup(topic)) == NULL) {
        return -1;
    }
    h->n++;
    p->partition = partition;
    p->committed = committed;
    p->dl_max = -1;
    p->inherited_since = -1;
    int64_t since = -1;
    if (committed >= 0 && handover_meta_parse(meta, meta_len, &since) == 1) {
        /* The group holds a since= commit: it covers our dead letters
         * too (they are produced later still). */
        p->covered = true;
        p->scan_pending = true;
        p->inherited_since = since;
        *since_ms = since;
        return 1;
    }
    return 0;
}

void handover_forget(handover *h, const char *topic, int32_t partition)
{
    struct hpart *p = find(h, topic, partition);
    if (p != NULL) {
        part_free(p);
        *p = h->parts[--h->n];
    }
}

size_t handover_count(const handover *h)
{
    return h->n;
}

void handover_at(const handover *h, size_t i, const char **topic,
                 int32_t *partition)
{
    *topic = h->parts[i].topic;
    *partition = h->parts[i].partition;
}

/* ------------------------------------------------------------------------
 * Reading what the previous owner left
 */
static bool header(const rd_kafka_message_t *m, const char *name, char *out,
                   size_t size)
{
    rd_kafka_headers_t *hdrs = NULL;
    const void *v = NULL;
    size_t n = 0;
    if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        rd_kafka_header_get_last(hdrs, name, &v, &n) !=
            RD_KAFKA_RESP_ERR_NO_ERROR ||
        v == NULL) {
        return false;
    }
    n = n < size - 1 ? n : size - 1;
    memcpy(out, v, n);
    out[n] = '\0';
    return true;
}

static bool header_int(const rd_kafka_message_t *m, const char *name,
                       int64_t *v)
{
    char s[32], *end;
    if (!header(m, name, s, sizeof s)) {
        return false;
    }
    long long x = strtoll(s, &end, 10);
    if (end == s || *end != '\0') {
        return false;
    }
    *v = x;
    return true;
}

static int add_entry(struct hpart *p, const handover_entry *e)
{
    for (size_t i = 0; i < p->n; i++) {
        if (p->e[i].offset == e->offset) {
            return 0; /* dead-lettered twice already: the first counts */
        }
    }
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 16;
        handover_entry *ne = realloc(p->e, cap * sizeof *ne);
        if (ne == NULL) {
            return -1;
        }
        p->e = ne;
        p->cap = cap;
    }
    p->e[p->n++] = *e;
    return 0;
}

/* A dead-letter record: noted when it is of a partition being scanned, at
 * or after where the partition starts. */
static int note_dead_letter(handover *h, const rd_kafka_message_t *m,
                            size_t *found)
{
    char topic[256];
    int64_t partition, offset;
    if (!header(m, "__connect.errors.topic", topic, sizeof topic) ||
        !header_int(m, "__connect.errors.partition", &partition) ||
        !header_int(m, "__connect.errors.offset", &offset)) {
        return 0;
    }
    struct hpart *p = find(h, topic, (int32_t)partition);
    if (p == NULL || !p->scan_pending || offset < p->committed) {
        return 0;
    }
    handover_entry e = {.offset = offset,
                        .dlq_partition = m->partition,
                        .dlq_offset = m->offset};
    header(m, "nanguard.error.code", e.code, sizeof e.code);
    header(m, "__connect.errors.exception.message", e.message,
           sizeof e.message);
    header(m, "__connect.errors.exception.class.name", e.exception,
           sizeof e.exception);
    size_t before = p->n;
    if (add_entry(p, &e) != 0) {
        return -1;
    }
    *found += p->n - before;
    return 0;
}

static handover_entry *find_entry(const struct hpart *p, int64_t offset)
{
    size_t lo = 0, hi = p->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (p->e[mid].offset < offset) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo < p->n && p->e[lo].offset == offset ? &p->e[lo] : NULL;
}

/* A notification: marks the entry its source names as notified. */
static void note_notification(handover *h, const rd_kafka_message_t *m,
                              char *buf, size_t size)
{
    static const char kind[] = "checkpoint_flush_error";
    if (m->payload == NULL || m->len >= size ||
        memmem(m->payload, m->len, kind, sizeof kind - 1) == NULL) {
        return;
    }
    memcpy(buf, m->payload, m->len);
    buf[m->len] = '\0';
    yajl_val root = yajl_tree_parse(buf, NULL, 0);
    static const char *type_path[] = {"type", NULL};
    static const char *topic_path[] = {"source", "topic", NULL};
    static const char *part_path[] = {"source", "partition", NULL};
    static const char *off_path[] = {"source", "offset", NULL};
    yajl_val type = yajl_tree_get(root, type_path, yajl_t_string);
    yajl_val topic = yajl_tree_get(root, topic_path, yajl_t_string);
    yajl_val part = yajl_tree_get(root, part_path, yajl_t_number);
    yajl_val off = yajl_tree_get(root, off_path, yajl_t_number);
    const char *type_s = type ? YAJL_GET_STRING(type) : NULL;
    const char *topic_s = topic ? YAJL_GET_STRING(topic) : NULL;
    if (type_s && topic_s && part && off && YAJL_IS_INTEGER(part) &&
        YAJL_IS_INTEGER(off) && strcmp(type_s, kind) == 0) {
        struct hpart *p = find(h, topic_s, (int32_t)YAJL_GET_INTEGER(part));
        handover_entry *e =
            p && p->scan_pending ? find_entry(p, YAJL_GET_INTEGER(off)) : NULL;
        if (e != NULL) {
            e->notified = true;
        }
    }
    yajl_tree_free(root);
}

static int cmp_entry(const void *a, const void *b)
{
    const handover_entry *x = a, *y = b;
    return (x->offset > y->offset) - (x->offset < y->offset);
}

/* Longest a scan may take before it gives up. */
#define SCAN_TIMEOUT_MS 60000
/* Notifications are small JSON objects; larger records are not ours. */
#define NOTIFICATION_MAX 65536

/* Reads topic from since_ms to its end, handing each record to note.
 * A topic that does not exist yet holds nothing: 0. */
static int read_topic(handover *h, rd_kafka_conf_t *conf, const char *topic,
                      int64_t since_ms, bool dead_letters, size_t *found,
                      ng_error *err)
{
    reader_options ro = {.since_ms = since_ms, .until_ms = -1};
    reader *r = reader_new(conf, topic, &ro, err);
    if (r == NULL) {
        return strcmp(err->code, "topic_missing") == 0 ? 0 : -1;
    }
    char *buf = dead_letters ? NULL : malloc(NOTIFICATION_MAX);
    int rc = !dead_letters && buf == NULL
                 ? ng_error_set(err, NG_ERR_TRANSIENT, "oom", "out of memory")
                 : 0;
    uint64_t deadline = ng_now_ms() + SCAN_TIMEOUT_MS;
    while (rc == 0) {
        rd_kafka_message_t *m = NULL;
        reader_status st = reader_next(r, 500, &m, err);
        if (st == READER_END) {
            break;
        }
        if (st == READER_ERROR) {
            rc = -1;
        } else if (st == READER_TIMEOUT && ng_now_ms() > deadline) {
            rc = ng_error_set(err, NG_ERR_TRANSIENT, "handover_timeout",
                              "reading %s took longer than %d s", topic,
                              SCAN_TIMEOUT_MS / 1000);
        } else if (st == READER_MESSAGE) {
            if (dead_letters) {
                rc = note_dead_letter(h, m, found) != 0
                         ? ng_error_set(err, NG_ERR_TRANSIENT, "oom",
                                        "out of memory")
                         : 0;
            } else {
                note_notification(h, m, buf, NOTIFICATION_MAX);
            }
            rd_kafka_message_destroy(m);
        }
    }
    free(buf);
    reader_free(r);
    return rc;
}

int handover_scan(handover *h, rd_kafka_conf_t *conf, const char *dlq_topic,
                  const char *notify_topic, int64_t since_ms, size_t *found,
                  ng_error *err)
{
    *found = 0;
    int64_t from =
        since_ms > HANDOVER_MARGIN_MS ? since_ms - HANDOVER_MARGIN_MS : 0;
    rd_kafka_conf_t *nconf = rd_kafka_conf_dup(conf);
    int rc = read_topic(h, conf, dlq_topic, from, true, found, err);
    for (size_t i = 0; i < h->n; i++) {
        struct hpart *p = &h->parts[i];
        if (p->scan_pending && p->n > 1) {
            qsort(p->e, p->n, sizeof *p->e, cmp_entry);
        }
    }
    if (rc == 0 && *found > 0) {
        rc = read_topic(h, nconf, notify_topic, from, false, found, err);
    } else {
        rd_kafka_conf_destroy(nconf);
    }
    for (size_t i = 0; i < h->n; i++) {
        struct hpart *p = &h->parts[i];
        if (p->scan_pending && p->n > 0) {
            p->dl_max = p->e[p->n - 1].offset;
        }
        p->scan_pending = false;
    }
    return rc;
}

const handover_entry *handover_find(const handover *h, const char *topic,
                                    int32_t partition, int64_t offset)
{
    const struct hpart *p = find(h, topic, partition);
    return p && p->n > 0 ? find_entry(p, offset) : NULL;
}

/* ------------------------------------------------------------------------
 * Dead letters and commits of the partitions held
 */
bool handover_dead_letter(handover *h, const char *topic, int32_t partition,
                          int64_t offset)
{
    struct hpart *p = find(h, topic, partition);
    if (p == NULL) {
        return true; /* not held any more: nothing to protect */
    }
    p->dirty = true;
    if (offset > p->dl_max) {
        p->dl_max = offset;
    }
    return p->covered;
}

bool handover_covered(const handover *h, const char *topic, int32_t partition)
{
    const struct hpart *p = find(h, topic, partition);
    return p == NULL || p->covered;
}

bool handover_acked(handover *h, const char *topic, int32_t partition,
                    const void *meta, size_t meta_len, bool ok)
{
    struct hpart *p = find(h, topic, partition);
    int64_t since;
    if (p == NULL || p->covered || !ok ||
        handover_meta_parse(meta, meta_len, &since) != 1) {
        return false;
    }
    p->covered = true;
    return true;
}

void handover_meta(const handover *h, const char *topic, int32_t partition,
                   int64_t offset, int64_t head_at_ms, int64_t now_ms,
                   bool final, char *out, size_t size)
{
    const struct hpart *p = find(h, topic, partition);
    bool inherited = p && p->n > 0 && p->e[p->n - 1].offset >= offset;
    /* While the partition is held, since= stays once it covers the
     * partition or a dead letter was wanted: a clean commit would uncover
     * it again. */
    bool clean = p == NULL || (final ? p->dl_max < offset && !inherited
                                     : !p->dirty && !p->covered && !inherited);
    if (clean) {
        snprintf(out, size, "%s", HANDOVER_META_CLEAN);
        return;
    }
    int64_t since = head_at_ms >= 0 ? head_at_ms : now_ms;
    if (inherited && p->inherited_since >= 0 && p->inherited_since < since) {
        since = p->inherited_since;
    }
    snprintf(out, size, "nanguard/1 since=%" PRId64, since);
}
