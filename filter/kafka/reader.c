/* reader.c - reading one topic without joining a consumer group. */
#define _POSIX_C_SOURCE 200809L
#include "filter/kafka/reader.h"

#include "common/clock.h"
#include "common/log.h"
#include "filter/kafka/kafka_conf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct part {
    int32_t id;
    int64_t start, end; /* end: -1 when following */
    int done;           /* reached its end (never when following) */
    int64_t stored;     /* offset noted for commit, -1: none */
    int64_t committed;  /* what the last commit sent, -1: none */
};

struct reader {
    rd_kafka_t *rk;
    char *topic;
    char brokers[256]; /* bootstrap.servers, for messages */
    int follow;
    int has_group;
    struct part *parts;
    int nparts;
    int ndone;
};

/* librdkafka says "cannot reach" in several ways. */
static int unreachable(rd_kafka_resp_err_t e)
{
    return e == RD_KAFKA_RESP_ERR__TRANSPORT ||
           e == RD_KAFKA_RESP_ERR__TIMED_OUT ||
           e == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN ||
           e == RD_KAFKA_RESP_ERR__RESOLVE;
}

static int lookup_failed(reader *r, const char *what, rd_kafka_resp_err_t e,
                         ng_error *err)
{
    if (unreachable(e)) {
        return ng_error_set(err, NG_ERR_TRANSIENT, "broker_unreachable",
                            "no Kafka broker at %s answered (%s for topic "
                            "'%s'): %s",
                            r->brokers, what, r->topic, rd_kafka_err2str(e));
    }
    if (e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
        return ng_error_set(err, NG_ERR_CONFIG, "topic_missing",
                            "topic '%s' does not exist", r->topic);
    }
    return ng_error_set(err, NG_ERR_CONFIG, "kafka_lookup",
                        "%s for topic '%s' failed: %s", what, r->topic,
                        rd_kafka_err2str(e));
}

/* Errors a look-up at start may meet while the broker is busy or moving
 * leaders (a loaded machine, a new broker creating the offsets topic on
 * the first group request): asked again until the limit. */
static int retriable(rd_kafka_resp_err_t e)
{
    switch (e) {
    case RD_KAFKA_RESP_ERR_NOT_COORDINATOR:
    case RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS:
    case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
    case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_FENCED_LEADER_EPOCH:
    case RD_KAFKA_RESP_ERR_UNKNOWN_LEADER_EPOCH:
    case RD_KAFKA_RESP_ERR_OFFSET_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
    case RD_KAFKA_RESP_ERR__WAIT_COORD:
        return 1;
    default:
        return 0;
    }
}

/* Sleeps 200 ms and says 1 when e is retriable and the deadline leaves
 * room for another try. */
static int again(rd_kafka_resp_err_t e, uint64_t deadline)
{
    if (!retriable(e) || ng_now_ms() + 200 >= deadline) {
        return 0;
    }
    struct timespec ts = {.tv_nsec = 200 * 1000000L};
    nanosleep(&ts, NULL);
    return 1;
}

static int left_ms(uint64_t deadline)
{
    uint64_t now = ng_now_ms();
    return now >= deadline ? 1 : (int)(deadline - now);
}

static int find_partitions(reader *r, int timeout_ms, ng_error *err)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(r->rk, r->topic, NULL);
    if (rkt == NULL) {
        return ng_error_set(err, NG_ERR_CONFIG, "kafka_config",
                            "bad topic name '%s'", r->topic);
    }
    const struct rd_kafka_metadata *md = NULL;
    uint64_t deadline = ng_now_ms() + (uint64_t)timeout_ms;
    rd_kafka_resp_err_t e;
    for (;;) {
        e = rd_kafka_metadata(r->rk, 0, rkt, &md, left_ms(deadline));
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1 &&
            retriable(md->topics[0].err) &&
            again(md->topics[0].err, deadline)) {
            rd_kafka_metadata_destroy(md);
            continue;
        }
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR || !again(e, deadline)) {
            break;
        }
    }
    rd_kafka_topic_destroy(rkt);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        return lookup_failed(r, "metadata", e, err);
    }
    int rc = 0;
    if (md->topic_cnt != 1 || md->topics[0].err != 0 ||
        md->topics[0].partition_cnt == 0) {
        e = md->topic_cnt != 1 || md->topics[0].err == 0
                ? RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART
                : md->topics[0].err;
        rc = lookup_failed(r, "metadata", e, err);
    } else {
        int n = md->topics[0].partition_cnt;
        r->parts = calloc((size_t)n, sizeof *r->parts);
        if (r->parts == NULL) {
            rc = ng_error_set(err, NG_ERR_TRANSIENT, "oom", "out of memory");
        } else {
            r->nparts = n;
            for (int i = 0; i < n; i++) {
                r->parts[i].id = md->topics[0].partitions[i].id;
                r->parts[i].stored = r->parts[i].committed = -1;
            }
        }
    }
    rd_kafka_metadata_destroy(md);
    return rc;
}

static rd_kafka_topic_partition_list_t *part_list(const reader *r,
                                                  int64_t offset)
{
    rd_kafka_topic_partition_list_t *l =
        rd_kafka_topic_partition_list_new(r->nparts);
    for (int i = 0; i < r->nparts; i++) {
        rd_kafka_topic_partition_list_add(l, r->topic, r->parts[i].id)->offset =
            offset;
    }
    return l;
}

/* Offsets of the first record at or after ts_ms, per partition (-1 when
 * there is none), by the broker's time index. out[i] for parts[i]. */
static int offsets_for_time(reader *r, int64_t ts_ms, int timeout_ms,
                            int64_t *out, ng_error *err)
{
    uint64_t deadline = ng_now_ms() + (uint64_t)timeout_ms;
    rd_kafka_topic_partition_list_t *l;
    rd_kafka_resp_err_t e;
    for (;;) {
        l = part_list(r, ts_ms);
        e = rd_kafka_offsets_for_times(r->rk, l, left_ms(deadline));
        for (int i = 0; e == RD_KAFKA_RESP_ERR_NO_ERROR && i < l->cnt; i++) {
            e = l->elems[i].err;
        }
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR || !again(e, deadline)) {
            break;
        }
        rd_kafka_topic_partition_list_destroy(l);
    }
    int rc = 0;
    for (int i = 0; rc == 0 && i < r->nparts; i++) {
        rd_kafka_topic_partition_t *p = &l->elems[i];
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            rc = lookup_failed(r, "offsets for times", e, err);
        } else {
            out[i] = p->offset < 0 ? -1 : p->offset;
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
    return rc;
}

static rd_kafka_resp_err_t
committed(rd_kafka_t *rk, rd_kafka_topic_partition_list_t *l, int timeout_ms)
{
    uint64_t deadline = ng_now_ms() + (uint64_t)timeout_ms;
    rd_kafka_resp_err_t e;
    do {
        e = rd_kafka_committed(rk, l, left_ms(deadline));
    } while (e != RD_KAFKA_RESP_ERR_NO_ERROR && again(e, deadline));
    return e;
}

static int find_range(reader *r, const reader_options *o, int timeout_ms,
                      ng_error *err)
{
    int64_t *at = calloc((size_t)r->nparts, sizeof *at);
    if (at == NULL) {
        return ng_error_set(err, NG_ERR_TRANSIENT, "oom", "out of memory");
    }
    int rc = 0;
    for (int i = 0; rc == 0 && i < r->nparts; i++) {
        int64_t lo, hi;
        uint64_t deadline = ng_now_ms() + (uint64_t)timeout_ms;
        rd_kafka_resp_err_t e;
        do {
            e = rd_kafka_query_watermark_offsets(
                r->rk, r->topic, r->parts[i].id, &lo, &hi, left_ms(deadline));
        } while (e != RD_KAFKA_RESP_ERR_NO_ERROR && again(e, deadline));
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            rc = lookup_failed(r, "watermark offsets", e, err);
            break;
        }
        r->parts[i].start = lo;
        r->parts[i].end = hi; /* -1 when following, below */
    }
    if (rc == 0 && o->since_ms >= 0 &&
        (rc = offsets_for_time(r, o->since_ms, timeout_ms, at, err)) == 0) {
        for (int i = 0; i < r->nparts; i++) {
            /* No record at or after the time yet: start at the end. */
            r->parts[i].start = at[i] >= 0 ? at[i] : r->parts[i].end;
        }
    }
    if (rc == 0 && !o->follow && o->until_ms >= 0 &&
        (rc = offsets_for_time(r, o->until_ms, timeout_ms, at, err)) == 0) {
        for (int i = 0; i < r->nparts; i++) {
            if (at[i] >= 0 && at[i] < r->parts[i].end) {
                r->parts[i].end = at[i];
            }
        }
    }
    if (rc == 0 && o->group != NULL) {
        rd_kafka_topic_partition_list_t *l =
            part_list(r, RD_KAFKA_OFFSET_INVALID);
        rd_kafka_resp_err_t e = committed(r->rk, l, timeout_ms);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            rc = lookup_failed(r, "committed offsets", e, err);
        }
        for (int i = 0; rc == 0 && i < r->nparts; i++) {
            if (l->elems[i].offset >= 0) {
                /* Resume after the committed offset, but never before the
                 * first record (older ones deleted) or since_ms. */
                if (l->elems[i].offset > r->parts[i].start) {
                    r->parts[i].start = l->elems[i].offset;
                }
                r->parts[i].committed = l->elems[i].offset;
            }
        }
        rd_kafka_topic_partition_list_destroy(l);
    }
    for (int i = 0; o->follow && i < r->nparts; i++) {
        r->parts[i].end = -1;
    }
    free(at);
    return rc;
}

static int assign(reader *r, ng_error *err)
{
    rd_kafka_topic_partition_list_t *l =
        rd_kafka_topic_partition_list_new(r->nparts);
    for (int i = 0; i < r->nparts; i++) {
        struct part *p = &r->parts[i];
        if (!r->follow && p->start >= p->end) {
            p->done = 1;
            r->ndone++;
            continue;
        }
        rd_kafka_topic_partition_list_add(l, r->topic, p->id)->offset =
            p->start;
    }
    rd_kafka_resp_err_t e = rd_kafka_assign(r->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        return ng_error_set(err, NG_ERR_CONFIG, "kafka_assign",
                            "cannot assign the partitions of '%s': %s",
                            r->topic, rd_kafka_err2str(e));
    }
    return 0;
}

reader *reader_new(rd_kafka_conf_t *conf, const char *topic,
                   const reader_options *opts, ng_error *err)
{
    reader_options dflt = {.since_ms = -1, .until_ms = -1};
    const reader_options *o = opts ? opts : &dflt;
    int timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 10000;
    reader *r = calloc(1, sizeof *r);
    if (r == NULL || (r->topic = strdup(topic)) == NULL) {
        rd_kafka_conf_destroy(conf);
        free(r);
        ng_error_set(err, NG_ERR_TRANSIENT, "oom", "out of memory");
        return NULL;
    }
    r->follow = o->follow;
    r->has_group = o->group != NULL;
    /* Without a group librdkafka 2.0 still wants a group.id to assign
     * partitions (else "Unknown group"); a name of its own that is never
     * joined nor committed to. */
    if (kafka_conf_set(conf, "group.id",
                       o->group ? o->group : "nanguard-reader", err) ||
        kafka_conf_set(conf, "enable.auto.commit", "false", err) ||
        kafka_conf_set(conf, "enable.auto.offset.store", "false", err) ||
        kafka_conf_set(conf, "enable.partition.eof", "true", err) ||
        kafka_conf_set(conf, "auto.offset.reset", "earliest", err)) {
        rd_kafka_conf_destroy(conf);
        reader_free(r);
        return NULL;
    }
    size_t blen = sizeof r->brokers;
    if (rd_kafka_conf_get(conf, "bootstrap.servers", r->brokers, &blen) !=
        RD_KAFKA_CONF_OK) {
        snprintf(r->brokers, sizeof r->brokers, "(bootstrap.servers)");
    }
    char errstr[512];
    r->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (r->rk == NULL) {
        rd_kafka_conf_destroy(conf);
        ng_error_set(err, NG_ERR_CONFIG, "kafka_config",
                     "cannot create the consumer: %s", errstr);
        reader_free(r);
        return NULL;
    }
    rd_kafka_poll_set_consumer(r->rk);
    if (find_partitions(r, timeout_ms, err) != 0 ||
        find_range(r, o, timeout_ms, err) != 0 || assign(r, err) != 0) {
        reader_free(r);
        return NULL;
    }
    return r;
}

void reader_free(reader *r)
{
    if (r == NULL) {
        return;
    }
    if (r->rk != NULL) {
        rd_kafka_assign(r->rk, NULL);
        rd_kafka_consumer_close(r->rk);
        rd_kafka_destroy(r->rk);
    }
    free(r->parts);
    free(r->topic);
    free(r);
}

static struct part *find_part(reader *r, int32_t id)
{
    for (int i = 0; i < r->nparts; i++) {
        if (r->parts[i].id == id) {
            return &r->parts[i];
        }
    }
    return NULL;
}

/* A partition reached its end: stop fetching it. */
static void finish(reader *r, struct part *p)
{
    if (p->done) {
        return;
    }
    p->done = 1;
    r->ndone++;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, r->topic, p->id);
    rd_kafka_pause_partitions(r->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
}

static int fatal(rd_kafka_resp_err_t e)
{
    return e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
           e == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
           e == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION ||
           e == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
           e == RD_KAFKA_RESP_ERR__FATAL;
}

reader_status reader_next(reader *r, int timeout_ms, rd_kafka_message_t **msg,
                          ng_error *err)
{
    *msg = NULL;
    uint64_t deadline =
        ng_now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
    for (;;) {
        if (!r->follow && r->ndone == r->nparts) {
            return READER_END;
        }
        uint64_t now = ng_now_ms();
        int left = now >= deadline ? 0 : (int)(deadline - now);
        rd_kafka_message_t *rkm = rd_kafka_consumer_poll(r->rk, left);
        if (rkm == NULL) {
            return READER_TIMEOUT;
        }
        struct part *p = find_part(r, rkm->partition);
        if (rkm->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            /* The end offset may name no record (compaction, aborted
             * transactions, control records): EOF at or past it ends. */
            if (p != NULL && !r->follow && rkm->offset >= p->end) {
                finish(r, p);
            }
            rd_kafka_message_destroy(rkm);
            continue;
        }
        if (rkm->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            if (fatal(rkm->err)) {
                ng_error_set(err, NG_ERR_CONFIG,
                             rkm->err == RD_KAFKA_RESP_ERR__FATAL
                                 ? "kafka_fatal"
                                 : "topic_missing",
                             "cannot read topic '%s': %s", r->topic,
                             rd_kafka_message_errstr(rkm));
                rd_kafka_message_destroy(rkm);
                return READER_ERROR;
            }
            ng_log(NG_LOG_WARN, "consumer error", "topic", r->topic, "error",
                   rd_kafka_message_errstr(rkm), NULL);
            rd_kafka_message_destroy(rkm);
            continue;
        }
        if (p == NULL || (!r->follow && (p->done || rkm->offset >= p->end))) {
            /* Beyond the range found at start. */
            if (p != NULL) {
                finish(r, p);
            }
            rd_kafka_message_destroy(rkm);
            continue;
        }
        if (!r->follow && rkm->offset + 1 >= p->end) {
            finish(r, p);
        }
        *msg = rkm;
        return READER_MESSAGE;
    }
}

int64_t reader_total(const reader *r)
{
    int64_t n = 0;
    for (int i = 0; !r->follow && i < r->nparts; i++) {
        if (r->parts[i].end > r->parts[i].start) {
            n += r->parts[i].end - r->parts[i].start;
        }
    }
    return n;
}

int reader_partition_count(const reader *r)
{
    return r->nparts;
}

void reader_range(const reader *r, int i, int32_t *partition, int64_t *start,
                  int64_t *end)
{
    *partition = r->parts[i].id;
    *start = r->parts[i].start;
    *end = r->parts[i].end;
}

void reader_store(reader *r, int32_t partition, int64_t next)
{
    struct part *p = find_part(r, partition);
    if (p != NULL && next > p->stored) {
        p->stored = next;
    }
}

int reader_commit(reader *r, ng_error *err)
{
    if (!r->has_group) {
        return ng_error_set(err, NG_ERR_CONFIG, "usage",
                            "reader_commit needs a group");
    }
    rd_kafka_topic_partition_list_t *l =
        rd_kafka_topic_partition_list_new(r->nparts);
    for (int i = 0; i < r->nparts; i++) {
        struct part *p = &r->parts[i];
        if (p->stored > p->committed) {
            rd_kafka_topic_partition_list_add(l, r->topic, p->id)->offset =
                p->stored;
        }
    }
    int rc = 0;
    if (l->cnt > 0) {
        rd_kafka_resp_err_t e;
        for (int tries = 0;; tries++) {
            e = rd_kafka_commit(r->rk, l, 0);
            for (int i = 0; e == 0 && i < l->cnt; i++) {
                e = l->elems[i].err;
            }
            if (!retriable(e) || tries == 50) {
                break;
            }
            struct timespec ts = {.tv_nsec = 200 * 1000000L};
            nanosleep(&ts, NULL);
        }
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            rc = ng_error_set(err, NG_ERR_TRANSIENT, "kafka_commit",
                              "commit in topic '%s' failed: %s", r->topic,
                              rd_kafka_err2str(e));
        } else {
            for (int i = 0; i < l->cnt; i++) {
                find_part(r, l->elems[i].partition)->committed =
                    l->elems[i].offset;
            }
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
    return rc;
}
