/* consumer.c - the Kafka consumer stage. */
#define _POSIX_C_SOURCE 200809L
#include "filter/kafka/consumer.h"

#include "common/clock.h"
#include "common/log.h"
#include "filter/kafka/kafka_conf.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An offset to commit for a partition held, with its metadata. */
struct commit_point {
    char *topic;
    int32_t partition;
    int64_t next;                 /* -1: nothing stored yet */
    char meta[CONSUMER_META_MAX]; /* "" when none */
    int dirty;                    /* changed since last sent */
};

struct consumer {
    rd_kafka_t *rk;
    consumer_options opts;
    int paused;
    /* Assigned partitions that have not delivered a message yet: the first
     * one is logged with its offset (where consuming resumed). */
    rd_kafka_topic_partition_list_t *unstarted;
    int in_group; /* an assignment (maybe empty) came since the last loss */
    /* From a revoke to the assignment that ends the rebalance after it,
     * the group's generation is about to change, and a commit made with
     * the old one is refused (ILLEGAL_GENERATION), which makes librdkafka
     * 2.0.2 drop the whole assignment as lost (later releases ignore that
     * error while rebalancing; its own auto-commit skips such times). No
     * commit goes out then. Eager: the revoke opens the rebalance and its
     * assignment ends it. Cooperative: the revoke closes one rebalance,
     * whose assignment (often empty) follows at once, and the member then
     * rejoins: the assignment after that one ends it. */
    int rebalance_assigns;      /* assignments still to come */
    uint64_t rebalancing_since; /* ng_now_ms() of the revoke */
    /* The same refusal meets a commit sent while the member rejoins with
     * no revoke before it (a new member joins; the broker then moves to
     * the next generation as soon as this member's JoinGroup arrives, and
     * a commit that follows it carries the old one). Only librdkafka knows
     * when it rejoins; it says so in its "cgrp" debug lines, whose
     * CGRPJOINSTATE line ("changed join state A -> B") on_log reads. While
     * the state is not "steady", no commit goes out. */
    int watch_join;           /* librdkafka older than 2.10: watch it */
    int debug_ours;           /* the user asked for no debug lines */
    atomic_int joining;       /* set on librdkafka's thread, read on ours */
    uint64_t joining_seen_ms; /* ng_now_ms() when a commit first waited */
    int nassigned;
    int64_t reset_offset;        /* auto.offset.reset as a logical offset, or
                                  * RD_KAFKA_OFFSET_INVALID for "error" */
    struct commit_point *points; /* stored for commit (consumer_store) */
    size_t npoints, points_cap;
    kafka_partition_lag *lags; /* from the last statistics */
    size_t nlags;
    int stats_warned;
};

/* librdkafka's log lines of the consumer's handle (on its threads): its
 * join state is read from them; the debug lines that are there only for
 * that are dropped, the others go to kafka_log. */
static void on_log(const rd_kafka_t *rk, int level, const char *fac,
                   const char *buf)
{
    consumer *c = rd_kafka_opaque(rk); /* set before rd_kafka_new */
    if (c->watch_join && strcmp(fac, "CGRPJOINSTATE") == 0) {
        /* "Group "NAME" changed join state FROM -> TO (state S)": the
         * name may hold anything, so the last arrow is the one. */
        const char *to = NULL;
        for (const char *p = strstr(buf, " -> "); p;
             p = strstr(p + 1, " -> ")) {
            to = p + 4;
        }
        if (to != NULL) {
            atomic_store(&c->joining, strncmp(to, "steady ", 7) != 0);
        }
    }
    if (c->debug_ours && level >= 7) {
        return;
    }
    kafka_log(rk, level, fac, buf);
}

/* librdkafka's statistics (on the polling thread): the lag table is
 * replaced as a whole. Returns 0: librdkafka frees json. */
static int on_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
    (void)rk;
    consumer *c = opaque;
    kafka_partition_lag *lags;
    size_t n;
    ng_error err;
    if (kafka_stats_lag(json, len, &lags, &n, &err) != 0) {
        if (!c->stats_warned) {
            c->stats_warned = 1;
            ng_log(NG_LOG_WARN, "cannot read librdkafka statistics", "reason",
                   err.message, NULL);
        }
        return 0;
    }
    kafka_stats_lag_free(c->lags, c->nlags);
    c->lags = lags;
    c->nlags = n;
    return 0;
}

/* Logs the partitions; with offsets, where each one starts ("@12",
 * "@beginning", "@end"; nothing when librdkafka will look it up). */
static void log_parts(const char *msg,
                      const rd_kafka_topic_partition_list_t *parts, int offsets)
{
    char list[512] = "";
    size_t used = 0;
    for (int i = 0; i < parts->cnt && used < sizeof list - 64; i++) {
        const rd_kafka_topic_partition_t *p = &parts->elems[i];
        char at[32] = "";
        if (offsets && p->offset >= 0) {
            snprintf(at, sizeof at, "@%lld", (long long)p->offset);
        } else if (offsets && p->offset == RD_KAFKA_OFFSET_BEGINNING) {
            snprintf(at, sizeof at, "@beginning");
        } else if (offsets && p->offset == RD_KAFKA_OFFSET_END) {
            snprintf(at, sizeof at, "@end");
        }
        used += (size_t)snprintf(list + used, sizeof list - used, "%s%s[%d]%s",
                                 i ? "," : "", p->topic, (int)p->partition, at);
    }
    ng_log(NG_LOG_INFO, msg, "partitions", list, NULL);
}

/* Where each newly assigned partition starts, set in parts: its committed
 * offset, asked of the group coordinator now, or auto.offset.reset's
 * logical offset when the group has none. Assigned so, librdkafka starts
 * fetching at once: left to itself (offset INVALID), 2.0.2 fetches the
 * committed offsets and, finding none, waits a fixed 100 ms before it looks
 * up where the log begins. When the coordinator does not answer, the
 * offsets stay INVALID and librdkafka does it its own way. */
#define COMMITTED_TIMEOUT_MS 10000
static void start_offsets(consumer *c, rd_kafka_topic_partition_list_t *parts)
{
    rd_kafka_resp_err_t e =
        rd_kafka_committed(c->rk, parts, COMMITTED_TIMEOUT_MS);
    for (int i = 0; i < parts->cnt; i++) {
        rd_kafka_topic_partition_t *p = &parts->elems[i];
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR || p->err) {
            p->offset = RD_KAFKA_OFFSET_INVALID;
        } else if (p->offset < 0) {
            p->offset = c->reset_offset;
        }
        p->err = RD_KAFKA_RESP_ERR_NO_ERROR;
    }
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        ng_log(NG_LOG_WARN,
               "cannot fetch committed offsets; librdkafka looks them up",
               "error", rd_kafka_err2str(e), NULL);
    }
}

static struct commit_point *point_of(consumer *c, const char *topic,
                                     int32_t partition)
{
    for (size_t i = 0; i < c->npoints; i++) {
        if (c->points[i].partition == partition &&
            strcmp(c->points[i].topic, topic) == 0) {
            return &c->points[i];
        }
    }
    return NULL;
}

static void point_drop(consumer *c, const char *topic, int32_t partition)
{
    struct commit_point *p = point_of(c, topic, partition);
    if (p != NULL) {
        free(p->topic);
        *p = c->points[--c->npoints];
    }
}

/* Commits the points that changed since they were last sent (of parts
 * only, when parts is not NULL): async, or waiting for the broker. The
 * broker's answer goes to on_committed either way (on_commit). Returns
 * librdkafka's error, RD_KAFKA_RESP_ERR__NO_OFFSET when nothing changed. */
static rd_kafka_resp_err_t
commit_points(consumer *c, const rd_kafka_topic_partition_list_t *parts,
              int async)
{
    rd_kafka_topic_partition_list_t *l =
        rd_kafka_topic_partition_list_new((int)c->npoints + 1);
    for (size_t i = 0; i < c->npoints; i++) {
        struct commit_point *p = &c->points[i];
        if (!p->dirty || p->next < 0 ||
            (parts != NULL && rd_kafka_topic_partition_list_find(
                                  parts, p->topic, p->partition) == NULL)) {
            continue;
        }
        rd_kafka_topic_partition_t *e =
            rd_kafka_topic_partition_list_add(l, p->topic, p->partition);
        e->offset = p->next;
        size_t n = strlen(p->meta);
        if (n > 0 && (e->metadata = malloc(n)) != NULL) {
            memcpy(e->metadata, p->meta, n);
            e->metadata_size = n;
        }
        p->dirty = 0;
    }
    rd_kafka_resp_err_t e = l->cnt > 0 ? rd_kafka_commit(c->rk, l, async)
                                       : RD_KAFKA_RESP_ERR__NO_OFFSET;
    rd_kafka_topic_partition_list_destroy(l);
    return e;
}

/* The broker's answer to a commit (served inside consumer_poll). */
static void on_commit(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                      rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    (void)rk;
    consumer *c = opaque;
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR &&
        err != RD_KAFKA_RESP_ERR__NO_OFFSET) {
        ng_log(NG_LOG_WARN, "commit failed", "error", rd_kafka_err2str(err),
               NULL);
    }
    /* A commit that failed goes again with the next one. */
    for (int i = 0; offsets != NULL && i < offsets->cnt; i++) {
        const rd_kafka_topic_partition_t *e = &offsets->elems[i];
        struct commit_point *p = point_of(c, e->topic, e->partition);
        if ((err || e->err) && p != NULL && p->next == e->offset) {
            p->dirty = 1;
        }
    }
    if (offsets != NULL && c->opts.on_committed) {
        c->opts.on_committed(c->opts.ctx, offsets, err);
    }
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    consumer *c = opaque;
    int cooperative =
        strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;

    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        c->in_group = 1;
        c->rebalance_assigns -= c->rebalance_assigns > 0;
        c->nassigned = cooperative ? c->nassigned + parts->cnt : parts->cnt;
        if (parts->cnt > 0) {
            start_offsets(c, parts);
            log_parts("partitions assigned", parts, 1);
        }
        for (int i = 0; i < parts->cnt; i++) {
            rd_kafka_topic_partition_list_add(
                c->unstarted, parts->elems[i].topic, parts->elems[i].partition);
        }
        if (cooperative) {
            rd_kafka_error_t *e = rd_kafka_incremental_assign(rk, parts);
            if (e != NULL) {
                ng_log(NG_LOG_ERROR, "incremental assign failed", "error",
                       rd_kafka_error_string(e), NULL);
                rd_kafka_error_destroy(e);
            }
        } else {
            rd_kafka_assign(rk, parts);
        }
        if (c->paused) {
            rd_kafka_pause_partitions(rk, parts);
        }
        if (c->opts.on_assign) {
            c->opts.on_assign(c->opts.ctx, parts);
        }
        return;
    }
    int lost = rd_kafka_assignment_lost(rk);
    c->nassigned = cooperative ? c->nassigned - parts->cnt : 0;
    if (lost) {
        c->in_group = 0;
    }
    if (parts->cnt > 0) {
        log_parts(lost ? "partitions lost" : "partitions revoked", parts, 0);
    }
    for (int i = 0; i < parts->cnt; i++) {
        rd_kafka_topic_partition_list_del(c->unstarted, parts->elems[i].topic,
                                          parts->elems[i].partition);
    }
    if (c->opts.on_revoke) {
        c->opts.on_revoke(c->opts.ctx, parts, lost);
    }
    if (!lost) {
        /* What the caller stored for these partitions goes out now, before
         * another member starts from the committed offsets. */
        rd_kafka_resp_err_t ce = commit_points(c, parts, 0);
        if (ce != RD_KAFKA_RESP_ERR_NO_ERROR &&
            ce != RD_KAFKA_RESP_ERR__NO_OFFSET) {
            ng_log(NG_LOG_WARN, "commit before revoke failed", "error",
                   rd_kafka_err2str(ce), NULL);
        }
    }
    for (int i = 0; i < parts->cnt; i++) {
        point_drop(c, parts->elems[i].topic, parts->elems[i].partition);
    }
    if (!lost) {
        c->rebalance_assigns = cooperative ? 2 : 1;
        c->rebalancing_since = ng_now_ms();
    } else {
        c->rebalance_assigns = 0;
    }
    if (cooperative) {
        rd_kafka_error_t *e = rd_kafka_incremental_unassign(rk, parts);
        if (e != NULL) {
            rd_kafka_error_destroy(e);
        }
    } else {
        rd_kafka_assign(rk, NULL);
    }
}

/* auto.offset.reset of conf as the logical offset to assign. */
static int64_t reset_offset_of(const rd_kafka_conf_t *conf)
{
    char v[32];
    size_t n = sizeof v;
    if (rd_kafka_conf_get(conf, "auto.offset.reset", v, &n) !=
        RD_KAFKA_CONF_OK) {
        return RD_KAFKA_OFFSET_END; /* librdkafka's default: largest */
    }
    if (strcmp(v, "largest") == 0 || strcmp(v, "latest") == 0 ||
        strcmp(v, "end") == 0) {
        return RD_KAFKA_OFFSET_END;
    }
    return strcmp(v, "error") == 0 ? RD_KAFKA_OFFSET_INVALID
                                   : RD_KAFKA_OFFSET_BEGINNING;
}

/* The release that no longer drops the assignment for a commit refused
 * while rebalancing (librdkafka's issue 4059, fixed in 2.10.0). */
#define RDKAFKA_KEEPS_ASSIGNMENT 0x020a0000

/* Below that release, turns on librdkafka's "cgrp" debug context so that
 * on_log sees the join state; when the user asked for no debug lines at
 * all, on_log drops them. */
static int watch_join_state(consumer *c, rd_kafka_conf_t *conf, ng_error *err)
{
    if (rd_kafka_version() >= RDKAFKA_KEEPS_ASSIGNMENT) {
        return 0;
    }
    char debug[512] = "";
    size_t n = sizeof debug;
    if (rd_kafka_conf_get(conf, "debug", debug, &n) != RD_KAFKA_CONF_OK) {
        debug[0] = '\0';
    }
    c->watch_join = 1;
    c->debug_ours = debug[0] == '\0';
    if (strstr(debug, "cgrp") != NULL || strstr(debug, "all") != NULL) {
        return 0;
    }
    char with[sizeof debug + 8];
    snprintf(with, sizeof with, "%s%scgrp", debug, debug[0] ? "," : "");
    return kafka_conf_set(conf, "debug", with, err);
}

consumer *consumer_new(rd_kafka_conf_t *conf, const consumer_options *opts,
                       ng_error *err)
{
    consumer *c = calloc(1, sizeof *c);
    if (c == NULL) {
        rd_kafka_conf_destroy(conf);
        ng_error_set(err, NG_ERR_TRANSIENT, "oom", "out of memory");
        return NULL;
    }
    c->opts = *opts;
    /* These carry the delivery guarantee: not overridable. Offsets are
     * committed by consumer_commit_changed, with their metadata (librdkafka
     * 2.0.2's auto-commit cannot carry any). */
    if (kafka_conf_set(conf, "group.id", opts->group, err) ||
        kafka_conf_set(conf, "enable.auto.offset.store", "false", err) ||
        kafka_conf_set(conf, "enable.auto.commit", "false", err) ||
        (opts->instance_id && *opts->instance_id &&
         kafka_conf_set(conf, "group.instance.id", opts->instance_id, err))) {
        rd_kafka_conf_destroy(conf);
        free(c);
        return NULL;
    }
    c->reset_offset = reset_offset_of(conf);
    if (watch_join_state(c, conf, err) != 0) {
        rd_kafka_conf_destroy(conf);
        free(c);
        return NULL;
    }
    rd_kafka_conf_set_opaque(conf, c);
    rd_kafka_conf_set_log_cb(conf, on_log);
    rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    rd_kafka_conf_set_offset_commit_cb(conf, on_commit);
    rd_kafka_conf_set_stats_cb(conf, on_stats);
    char errstr[512];
    c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (c->rk == NULL) {
        rd_kafka_conf_destroy(conf);
        free(c);
        ng_error_set(err, NG_ERR_CONFIG, "kafka_config",
                     "cannot create the consumer: %s", errstr);
        return NULL;
    }
    c->unstarted = rd_kafka_topic_partition_list_new(8);
    rd_kafka_poll_set_consumer(c->rk);
    return c;
}

void consumer_free(consumer *c)
{
    if (c == NULL) {
        return;
    }
    rd_kafka_consumer_close(c->rk);
    rd_kafka_destroy(c->rk);
    rd_kafka_topic_partition_list_destroy(c->unstarted);
    for (size_t i = 0; i < c->npoints; i++) {
        free(c->points[i].topic);
    }
    free(c->points);
    kafka_stats_lag_free(c->lags, c->nlags);
    free(c);
}

int consumer_subscribe(consumer *c, const char *topics, ng_error *err)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(4);
    const char *p = topics;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        char name[256];
        if (n > 0 && n < sizeof name) {
            memcpy(name, p, n);
            name[n] = '\0';
            rd_kafka_topic_partition_list_add(l, name, RD_KAFKA_PARTITION_UA);
        }
        p += n + (comma != NULL);
    }
    rd_kafka_resp_err_t e =
        l->cnt ? rd_kafka_subscribe(c->rk, l) : RD_KAFKA_RESP_ERR__INVALID_ARG;
    rd_kafka_topic_partition_list_destroy(l);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        return ng_error_set(err, NG_ERR_CONFIG, "kafka_subscribe",
                            "cannot subscribe to '%s': %s", topics,
                            rd_kafka_err2str(e));
    }
    return 0;
}

/* The first message of a partition since it was assigned. */
static void partition_started(consumer *c, const rd_kafka_message_t *m)
{
    const char *topic = rd_kafka_topic_name(m->rkt);
    if (rd_kafka_topic_partition_list_del(c->unstarted, topic, m->partition)) {
        char part[300], off[24];
        snprintf(part, sizeof part, "%s[%d]", topic, (int)m->partition);
        snprintf(off, sizeof off, "%lld", (long long)m->offset);
        ng_log(NG_LOG_INFO, "partition started", "partition", part, "offset#",
               off, NULL);
    }
}

rd_kafka_message_t *consumer_poll(consumer *c, int timeout_ms)
{
    rd_kafka_message_t *rkm = rd_kafka_consumer_poll(c->rk, timeout_ms);
    if (rkm == NULL) {
        return NULL;
    }
    if (rkm->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (c->unstarted->cnt > 0) {
            partition_started(c, rkm);
        }
        return rkm;
    }
    /* Consumer errors are informational: librdkafka recovers by itself. */
    if (rkm->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        ng_log(NG_LOG_WARN, "consumer error", "error",
               rd_kafka_message_errstr(rkm), NULL);
    }
    rd_kafka_message_destroy(rkm);
    return NULL;
}

static void pause_or_resume(consumer *c, int pause)
{
    rd_kafka_topic_partition_list_t *parts = NULL;
    if (rd_kafka_assignment(c->rk, &parts) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        return;
    }
    if (pause) {
        rd_kafka_pause_partitions(c->rk, parts);
    } else {
        rd_kafka_resume_partitions(c->rk, parts);
    }
    rd_kafka_topic_partition_list_destroy(parts);
}

void consumer_pause(consumer *c)
{
    if (!c->paused) {
        c->paused = 1;
        pause_or_resume(c, 1);
    }
}

void consumer_resume(consumer *c)
{
    if (c->paused) {
        c->paused = 0;
        pause_or_resume(c, 0);
    }
}

int consumer_paused(const consumer *c)
{
    return c->paused;
}

int consumer_store(consumer *c, const char *topic, int32_t partition,
                   int64_t next, const char *meta)
{
    struct commit_point *p = point_of(c, topic, partition);
    if (p == NULL) {
        if (c->npoints == c->points_cap) {
            size_t cap = c->points_cap ? c->points_cap * 2 : 16;
            struct commit_point *np = realloc(c->points, cap * sizeof *np);
            if (np == NULL) {
                return -1;
            }
            c->points = np;
            c->points_cap = cap;
        }
        p = &c->points[c->npoints];
        memset(p, 0, sizeof *p);
        if ((p->topic = strdup(topic)) == NULL) {
            return -1;
        }
        p->partition = partition;
        p->next = -1;
        c->npoints++;
    }
    meta = meta ? meta : "";
    if (p->next != next || strcmp(p->meta, meta) != 0) {
        p->next = next;
        snprintf(p->meta, sizeof p->meta, "%s", meta);
        p->dirty = 1;
    }
    return 0;
}

/* Longest a rebalance may hold commits back (it normally ends within the
 * group's rebalance timeout, max.poll.interval.ms). */
#define REBALANCE_HOLD_MS 30000

int consumer_commit_changed(consumer *c)
{
    uint64_t now = ng_now_ms();
    if (c->rebalance_assigns > 0 &&
        ng_since_ms(now, c->rebalancing_since) < REBALANCE_HOLD_MS) {
        return 0; /* after the assignment that ends the rebalance */
    }
    if (!atomic_load(&c->joining)) {
        c->joining_seen_ms = 0;
    } else {
        if (c->joining_seen_ms == 0) {
            c->joining_seen_ms = now;
        }
        if (ng_since_ms(now, c->joining_seen_ms) < REBALANCE_HOLD_MS) {
            return 0; /* librdkafka is rejoining the group */
        }
    }
    rd_kafka_resp_err_t e = commit_points(c, NULL, 1);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR && e != RD_KAFKA_RESP_ERR__NO_OFFSET) {
        ng_log(NG_LOG_WARN, "cannot commit", "error", rd_kafka_err2str(e),
               NULL);
        return -1;
    }
    return 0;
}

int consumer_commit(consumer *c, ng_error *err)
{
    rd_kafka_resp_err_t e = commit_points(c, NULL, 0);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR && e != RD_KAFKA_RESP_ERR__NO_OFFSET) {
        return ng_error_set(err, NG_ERR_TRANSIENT, "kafka_commit",
                            "commit failed: %s", rd_kafka_err2str(e));
    }
    return 0;
}

int consumer_in_group(const consumer *c)
{
    return c->in_group;
}

int consumer_assigned_now(const consumer *c)
{
    return c->nassigned;
}

size_t consumer_lag_count(const consumer *c)
{
    return c->nlags;
}

const kafka_partition_lag *consumer_lag_at(const consumer *c, size_t i)
{
    return i < c->nlags ? &c->lags[i] : NULL;
}
