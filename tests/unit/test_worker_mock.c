/* test_worker_mock.c - the whole worker against librdkafka's mock cluster:
 * what a real broker cannot stage (refused dead-letter deliveries, failing
 * offset commits, a stop with records in flight).
 *
 * Every message is malformed JSON, so it goes straight to the dead-letter
 * topic and PostgreSQL is never needed (the worker tolerates an unreachable
 * one at start). Each test gets a fresh mock cluster with one broker. */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <yajl/yajl_tree.h>

#include "common/config.h"
#include "common/log.h"
#include "filter/worker.h"

/* Kafka ApiKeys (rdkafka_protocol.h is not installed). */
#define APIKEY_PRODUCE 0
#define APIKEY_OFFSET_COMMIT 8
#define APIKEY_JOIN_GROUP 11

#define SRC_TOPIC "cp"
#define DLQ_TOPIC "cp.dlq"
#define NOTIFY_TOPIC "cp.notifications"
#define SRC_PARTS 2
#define MAX_MSGS 1024

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------------------
 * The mock cluster
 */
struct mock {
    rd_kafka_t *rk; /* owns the cluster */
    rd_kafka_mock_cluster_t *mc;
    char bs[256];
};

static void mock_up(struct mock *m)
{
    char errstr[256];
    m->rk = rd_kafka_new(RD_KAFKA_PRODUCER, rd_kafka_conf_new(), errstr,
                         sizeof errstr);
    assert_non_null(m->rk);
    m->mc = rd_kafka_mock_cluster_new(m->rk, 1);
    assert_non_null(m->mc);
    snprintf(m->bs, sizeof m->bs, "%s",
             rd_kafka_mock_cluster_bootstraps(m->mc));
    assert_int_equal(rd_kafka_mock_topic_create(m->mc, SRC_TOPIC, SRC_PARTS, 1),
                     0);
    assert_int_equal(rd_kafka_mock_topic_create(m->mc, DLQ_TOPIC, 1, 1), 0);
    assert_int_equal(rd_kafka_mock_topic_create(m->mc, NOTIFY_TOPIC, 1, 1), 0);
}

static void mock_down(struct mock *m)
{
    rd_kafka_mock_cluster_destroy(m->mc);
    rd_kafka_destroy(m->rk);
}

static rd_kafka_conf_t *conf_with(const char *bs, ...)
{
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    assert_int_equal(
        rd_kafka_conf_set(conf, "bootstrap.servers", bs, errstr, sizeof errstr),
        RD_KAFKA_CONF_OK);
    va_list ap;
    va_start(ap, bs);
    const char *k;
    while ((k = va_arg(ap, const char *)) != NULL) {
        const char *v = va_arg(ap, const char *);
        assert_int_equal(rd_kafka_conf_set(conf, k, v, errstr, sizeof errstr),
                         RD_KAFKA_CONF_OK);
    }
    va_end(ap);
    return conf;
}

/* k malformed messages, message i on partition i % SRC_PARTS. Returns the
 * end offset of each partition in end[]. */
static void produce_malformed(const char *bs, int k, int64_t end[SRC_PARTS])
{
    char errstr[256];
    rd_kafka_t *rk =
        rd_kafka_new(RD_KAFKA_PRODUCER, conf_with(bs, "linger.ms", "5", NULL),
                     errstr, sizeof errstr);
    assert_non_null(rk);
    for (int p = 0; p < SRC_PARTS; p++) {
        end[p] = 0;
    }
    for (int i = 0; i < k; i++) {
        char key[32], value[64];
        int kl = snprintf(key, sizeof key, "thread-%d", i);
        int vl = snprintf(value, sizeof value,
                          "{\"thread_id\": \"thread-%d\", NaN", i);
        assert_int_equal(
            rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(SRC_TOPIC),
                              RD_KAFKA_V_PARTITION(i % SRC_PARTS),
                              RD_KAFKA_V_KEY(key, (size_t)kl),
                              RD_KAFKA_V_VALUE(value, (size_t)vl),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                              RD_KAFKA_V_END),
            RD_KAFKA_RESP_ERR_NO_ERROR);
        end[i % SRC_PARTS]++;
    }
    assert_int_equal(rd_kafka_flush(rk, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_destroy(rk);
}

/* ------------------------------------------------------------------------
 * The worker, in a thread
 */
struct run {
    ng_config *cfg;
    worker *w;
    pthread_t th;
    volatile sig_atomic_t stop;
    int rc;
};

static void *run_main(void *arg)
{
    struct run *r = arg;
    r->rc = worker_run(r->w, &r->stop);
    return NULL;
}

/* extra: more worker arguments, NULL-terminated. */
static void run_start(struct run *r, const char *bs, const char *const *extra)
{
    char *argv[64];
    int argc = 0;
    const char *base[] = {"worker",
                          "--brokers",
                          bs,
                          "--topic",
                          SRC_TOPIC,
                          "--group",
                          "g1",
                          "--pg",
                          "host=127.0.0.1 port=1 connect_timeout=1",
                          "--stats-interval-ms",
                          "0",
                          "-X",
                          "session.timeout.ms=6000",
                          "-X",
                          "auto.commit.interval.ms=200",
                          NULL};
    for (const char *const *a = base; *a != NULL; a++) {
        argv[argc++] = (char *)*a;
    }
    for (const char *const *a = extra; a != NULL && *a != NULL; a++) {
        argv[argc++] = (char *)*a;
    }
    argv[argc] = NULL;
    memset(r, 0, sizeof *r);
    r->cfg = ng_config_new(worker_settings, worker_settings_count);
    assert_non_null(r->cfg);
    ng_error err = {0};
    assert_int_equal(ng_config_parse(r->cfg, argc, argv, &err), 0);
    r->w = worker_new(r->cfg, &err);
    if (r->w == NULL) {
        fail_msg("worker_new: %s", err.message);
    }
    assert_int_equal(pthread_create(&r->th, NULL, run_main, r), 0);
}

/* Sets the stop flag and waits for worker_run; returns how long it took. */
static uint64_t run_stop(struct run *r)
{
    uint64_t t0 = now_ms();
    r->stop = 1;
    assert_int_equal(pthread_join(r->th, NULL), 0);
    uint64_t took = now_ms() - t0;
    worker_free(r->w);
    ng_config_free(r->cfg);
    return took;
}

/* ------------------------------------------------------------------------
 * Looking at the cluster from outside
 */

/* A member of the worker's group that never subscribes: it may read the
 * group's committed offsets while the worker is in the group. */
static rd_kafka_t *offset_reader_new(const char *bs)
{
    char errstr[256];
    rd_kafka_t *rk = rd_kafka_new(
        RD_KAFKA_CONSUMER,
        conf_with(bs, "group.id", "g1", "enable.auto.commit", "false", NULL),
        errstr, sizeof errstr);
    assert_non_null(rk);
    return rk;
}

/* The committed offset of each source partition (-1 when none yet, or
 * when the coordinator could not answer in time). */
static void committed(rd_kafka_t *rk, int64_t out[SRC_PARTS])
{
    rd_kafka_topic_partition_list_t *l =
        rd_kafka_topic_partition_list_new(SRC_PARTS);
    for (int p = 0; p < SRC_PARTS; p++) {
        rd_kafka_topic_partition_list_add(l, SRC_TOPIC, p);
        out[p] = -1;
    }
    if (rd_kafka_committed(rk, l, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        for (int p = 0; p < SRC_PARTS; p++) {
            if (l->elems[p].err == RD_KAFKA_RESP_ERR_NO_ERROR &&
                l->elems[p].offset >= 0) {
                out[p] = l->elems[p].offset;
            }
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
}

static bool reached(const int64_t got[SRC_PARTS], const int64_t end[SRC_PARTS])
{
    for (int p = 0; p < SRC_PARTS; p++) {
        if (got[p] < end[p]) {
            return false;
        }
    }
    return true;
}

/* Polls until the committed offsets reach end, or timeout_ms. */
static bool wait_committed(rd_kafka_t *reader, const int64_t end[SRC_PARTS],
                           uint64_t timeout_ms, int64_t got[SRC_PARTS])
{
    uint64_t deadline = now_ms() + timeout_ms;
    do {
        committed(reader, got);
        if (reached(got, end)) {
            return true;
        }
        sleep_ms(200);
    } while (now_ms() < deadline);
    return false;
}

static int64_t high_watermark(rd_kafka_t *rk, const char *topic)
{
    int64_t lo = -1, hi = -1;
    if (rd_kafka_query_watermark_offsets(rk, topic, 0, &lo, &hi, 5000) !=
        RD_KAFKA_RESP_ERR_NO_ERROR) {
        return -1;
    }
    return hi;
}

/* What came out: per source message, how many dead-letter records and
 * checkpoint_flush_error notifications name it. */
struct outcomes {
    int dlq[SRC_PARTS][MAX_MSGS];
    int notified[SRC_PARTS][MAX_MSGS];
    int dlq_records, notifications, other;
};

static long header_long(const rd_kafka_message_t *m, const char *name)
{
    rd_kafka_headers_t *h = NULL;
    const void *v = NULL;
    size_t n = 0;
    if (rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        rd_kafka_header_get_last(h, name, &v, &n) !=
            RD_KAFKA_RESP_ERR_NO_ERROR ||
        n == 0 || n > 20) {
        return -1;
    }
    char buf[24];
    memcpy(buf, v, n);
    buf[n] = '\0';
    return strtol(buf, NULL, 10);
}

static bool header_is(const rd_kafka_message_t *m, const char *name,
                      const char *want)
{
    rd_kafka_headers_t *h = NULL;
    const void *v = NULL;
    size_t n = 0;
    return rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR &&
           rd_kafka_header_get_last(h, name, &v, &n) ==
               RD_KAFKA_RESP_ERR_NO_ERROR &&
           n == strlen(want) && memcmp(v, want, n) == 0;
}

static void note_dlq(struct outcomes *o, const rd_kafka_message_t *m)
{
    long p = header_long(m, "__connect.errors.partition");
    long off = header_long(m, "__connect.errors.offset");
    assert_true(header_is(m, "__connect.errors.topic", SRC_TOPIC));
    assert_true(header_is(m, "nanguard.error.code", "malformed_json"));
    assert_true(p >= 0 && p < SRC_PARTS && off >= 0 && off < MAX_MSGS);
    /* The original bytes, unchanged. */
    assert_true(m->len > 0 && memcmp(m->payload, "{\"thread_id\"", 12) == 0);
    o->dlq[p][off]++;
    o->dlq_records++;
}

static void note_notification(struct outcomes *o, const rd_kafka_message_t *m)
{
    char *text = malloc(m->len + 1);
    assert_non_null(text);
    memcpy(text, m->payload, m->len);
    text[m->len] = '\0';
    char errbuf[128];
    yajl_val doc = yajl_tree_parse(text, errbuf, sizeof errbuf);
    assert_non_null(doc);
    const char *type_path[] = {"type", NULL};
    const char *code_path[] = {"error_code", NULL};
    const char *p_path[] = {"source", "partition", NULL};
    const char *o_path[] = {"source", "offset", NULL};
    yajl_val type = yajl_tree_get(doc, type_path, yajl_t_string);
    const char *type_s = type != NULL ? YAJL_GET_STRING(type) : NULL;
    if (type_s != NULL && strcmp(type_s, "checkpoint_flush_error") == 0) {
        yajl_val code = yajl_tree_get(doc, code_path, yajl_t_string);
        yajl_val p = yajl_tree_get(doc, p_path, yajl_t_number);
        yajl_val off = yajl_tree_get(doc, o_path, yajl_t_number);
        assert_non_null(code);
        assert_string_equal(YAJL_GET_STRING(code), "malformed_json");
        assert_true(p != NULL && off != NULL);
        long long pi = YAJL_GET_INTEGER(p), oi = YAJL_GET_INTEGER(off);
        assert_true(pi >= 0 && pi < SRC_PARTS && oi >= 0 && oi < MAX_MSGS);
        o->notified[pi][oi]++;
        o->notifications++;
    } else {
        o->other++;
    }
    yajl_tree_free(doc);
    free(text);
}

/* Reads a one-partition topic from the beginning to its end. */
static void read_topic(const char *bs, const char *topic, struct outcomes *o,
                       void (*note)(struct outcomes *,
                                    const rd_kafka_message_t *))
{
    char errstr[256];
    rd_kafka_t *rk = rd_kafka_new(
        RD_KAFKA_CONSUMER,
        conf_with(bs, "group.id", "test-reader", "enable.auto.commit", "false",
                  "enable.partition.eof", "true", NULL),
        errstr, sizeof errstr);
    assert_non_null(rk);
    rd_kafka_poll_set_consumer(rk);
    int64_t hi = high_watermark(rk, topic);
    assert_true(hi >= 0);
    if (hi > 0) {
        rd_kafka_topic_partition_list_t *l =
            rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, topic, 0)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
        assert_int_equal(rd_kafka_assign(rk, l), RD_KAFKA_RESP_ERR_NO_ERROR);
        rd_kafka_topic_partition_list_destroy(l);
        int64_t next = 0;
        uint64_t deadline = now_ms() + 15000;
        while (next < hi && now_ms() < deadline) {
            rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
            if (m == NULL) {
                continue;
            }
            if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
                note(o, m);
                next = m->offset + 1;
            }
            rd_kafka_message_destroy(m);
        }
        assert_true(next >= hi);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
}

static void read_outcomes(const char *bs, struct outcomes *o)
{
    memset(o, 0, sizeof *o);
    read_topic(bs, DLQ_TOPIC, o, note_dlq);
    read_topic(bs, NOTIFY_TOPIC, o, note_notification);
}

/* Every source message below end[] has at least one dead-letter record and
 * one notification. Returns the number of duplicated records. */
static int assert_all_dead_lettered(const struct outcomes *o,
                                    const int64_t end[SRC_PARTS])
{
    int dups = 0;
    for (int p = 0; p < SRC_PARTS; p++) {
        for (int64_t i = 0; i < end[p]; i++) {
            if (o->dlq[p][i] < 1 || o->notified[p][i] < 1) {
                fail_msg("message %d/%lld: %d dead-letter records, %d "
                         "notifications",
                         p, (long long)i, o->dlq[p][i], o->notified[p][i]);
            }
            dups += o->dlq[p][i] - 1 + o->notified[p][i] - 1;
        }
    }
    return dups;
}

/* ------------------------------------------------------------------------
 * 1. The broker refuses the first dead-letter deliveries
 */

/* The Produce requests fail with err (4 times) on the broker: the worker
 * must hold the offsets while they fail, then re-send and finish. */
static void dlq_refused(rd_kafka_resp_err_t perr)
{
    enum { K = 20 };
    struct mock m;
    mock_up(&m);
    int64_t end[SRC_PARTS];
    produce_malformed(m.bs, K, end);

    /* Broker-level errors can be counted: while any is left, no Produce
     * request has succeeded yet. */
    assert_int_equal(
        rd_kafka_mock_broker_push_request_error_rtts(
            m.mc, 1, APIKEY_PRODUCE, 4, perr, 0, perr, 0, perr, 0, perr, 0),
        RD_KAFKA_RESP_ERR_NO_ERROR);

    /* The reader first: the worker may use up the errors while a reader
     * made after it is still connecting, and then nothing is sampled. */
    rd_kafka_t *reader = offset_reader_new(m.bs);
    uint64_t t0 = now_ms();
    struct run r;
    run_start(&r, m.bs, NULL);

    size_t left = 4;
    int samples = 0;
    while (left > 0 && now_ms() - t0 < 30000) {
        int64_t got[SRC_PARTS];
        committed(reader, got);
        /* Read the count after the offsets: errors left then were left
         * when the offsets were committed. */
        assert_int_equal(rd_kafka_mock_broker_error_stack_cnt(
                             m.mc, 1, APIKEY_PRODUCE, &left),
                         RD_KAFKA_RESP_ERR_NO_ERROR);
        if (left > 0) {
            samples++;
            for (int p = 0; p < SRC_PARTS; p++) {
                assert_true(got[p] < end[p]);
            }
            assert_int_equal(high_watermark(reader, DLQ_TOPIC), 0);
        }
        sleep_ms(100);
    }
    assert_int_equal(left, 0); /* the worker did try, and was refused */
    assert_true(samples > 0);
    uint64_t t_refused = now_ms() - t0;

    int64_t got[SRC_PARTS];
    if (!wait_committed(reader, end, 30000, got)) {
        fail_msg("committed offsets %lld,%lld never reached %lld,%lld",
                 (long long)got[0], (long long)got[1], (long long)end[0],
                 (long long)end[1]);
    }
    uint64_t t_done = now_ms() - t0;
    assert_int_equal(run_stop(&r) < 35000, 1);
    assert_int_equal(r.rc, 0);

    struct outcomes o;
    read_outcomes(m.bs, &o);
    int dups = assert_all_dead_lettered(&o, end);
    print_message("%s: errors used up after %llu ms, all committed after %llu "
                  "ms, %d dead-letter records, %d notifications, %d "
                  "duplicates\n",
                  rd_kafka_err2name(perr), (unsigned long long)t_refused,
                  (unsigned long long)t_done, o.dlq_records, o.notifications,
                  dups);
    /* Refused records were not written: none should be duplicated. */
    assert_int_equal(dups, 0);
    rd_kafka_destroy(reader);
    mock_down(&m);
}

static void test_dlq_refused_too_large(void **state)
{
    (void)state;
    dlq_refused(RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE);
}

static void test_dlq_refused_not_authorized(void **state)
{
    (void)state;
    dlq_refused(RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
}

/* The first Produce requests are answered after message.timeout.ms: the
 * worker sees _MSG_TIMED_OUT, yet the broker may have written the records,
 * so a re-sent record can be there twice (at least once). */
static void test_dlq_timed_out(void **state)
{
    (void)state;
    enum { K = 20 };
    struct mock m;
    mock_up(&m);
    int64_t end[SRC_PARTS];
    produce_malformed(m.bs, K, end);
    assert_int_equal(rd_kafka_mock_broker_push_request_error_rtts(
                         m.mc, 1, APIKEY_PRODUCE, 2, 0, 3000, 0, 3000),
                     RD_KAFKA_RESP_ERR_NO_ERROR);

    uint64_t t0 = now_ms();
    const char *extra[] = {"-X", "message.timeout.ms=1000", NULL};
    struct run r;
    run_start(&r, m.bs, extra);
    rd_kafka_t *reader = offset_reader_new(m.bs);
    int64_t got[SRC_PARTS];
    if (!wait_committed(reader, end, 30000, got)) {
        fail_msg("committed offsets %lld,%lld never reached %lld,%lld",
                 (long long)got[0], (long long)got[1], (long long)end[0],
                 (long long)end[1]);
    }
    uint64_t t_done = now_ms() - t0;
    assert_int_equal(run_stop(&r) < 35000, 1);
    assert_int_equal(r.rc, 0);
    struct outcomes o;
    read_outcomes(m.bs, &o);
    int dups = assert_all_dead_lettered(&o, end);
    print_message("timed out: all committed after %llu ms, %d dead-letter "
                  "records, %d notifications, %d duplicates\n",
                  (unsigned long long)t_done, o.dlq_records, o.notifications,
                  dups);
    rd_kafka_destroy(reader);
    mock_down(&m);
}

/* ------------------------------------------------------------------------
 * 2. The coordinator refuses offset commits for a while
 */
static void test_commit_refused(void **state)
{
    (void)state;
    enum { K = 40 };
    struct mock m;
    mock_up(&m);
    int64_t end[SRC_PARTS];
    produce_malformed(m.bs, K, end);

    /* On the broker (the group coordinator), so that what is left can be
     * counted: every one of them must have been met. */
    rd_kafka_resp_err_t e1 = RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
                        e2 = RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
                        e3 = RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS,
                        e4 = RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE;
    assert_int_equal(rd_kafka_mock_broker_push_request_error_rtts(
                         m.mc, 1, APIKEY_OFFSET_COMMIT, 8, e1, 0, e2, 0, e3, 0,
                         e4, 0, e1, 0, e2, 0, e3, 0, e2, 0),
                     RD_KAFKA_RESP_ERR_NO_ERROR);

    uint64_t t0 = now_ms();
    struct run r;
    run_start(&r, m.bs, NULL);
    rd_kafka_t *reader = offset_reader_new(m.bs);
    int64_t got[SRC_PARTS];
    if (!wait_committed(reader, end, 30000, got)) {
        fail_msg("committed offsets %lld,%lld never reached %lld,%lld",
                 (long long)got[0], (long long)got[1], (long long)end[0],
                 (long long)end[1]);
    }
    uint64_t t_done = now_ms() - t0;
    size_t left = 99;
    rd_kafka_mock_broker_error_stack_cnt(m.mc, 1, APIKEY_OFFSET_COMMIT, &left);
    assert_int_equal(left, 0);
    uint64_t took = run_stop(&r);
    assert_int_equal(r.rc, 0);
    /* Nothing went past the end either. */
    committed(reader, got);
    assert_int_equal(got[0], end[0]);
    assert_int_equal(got[1], end[1]);

    struct outcomes o;
    read_outcomes(m.bs, &o);
    int dups = assert_all_dead_lettered(&o, end);
    print_message("commit errors: all committed after %llu ms, stop took %llu "
                  "ms, %d dead-letter records, %d duplicates\n",
                  (unsigned long long)t_done, (unsigned long long)took,
                  o.dlq_records, dups);
    rd_kafka_destroy(reader);
    mock_down(&m);
}

/* ------------------------------------------------------------------------
 * 3. Stop while dead-letter records are in flight
 */
static void test_stop_in_flight(void **state)
{
    (void)state;
    enum { K = 600 };
    struct mock m;
    mock_up(&m);
    int64_t end[SRC_PARTS];
    produce_malformed(m.bs, K, end);

    /* Slow acknowledgements, so that records are in flight at the stop. */
    assert_int_equal(rd_kafka_mock_broker_push_request_error_rtts(
                         m.mc, 1, APIKEY_PRODUCE, 8, 0, 300, 0, 300, 0, 300, 0,
                         300, 0, 300, 0, 300, 0, 300, 0, 300),
                     RD_KAFKA_RESP_ERR_NO_ERROR);

    const char *extra[] = {"--shutdown-timeout-ms", "10000", NULL};
    struct run r;
    run_start(&r, m.bs, extra);
    rd_kafka_t *reader = offset_reader_new(m.bs);

    /* Wait for the first dead-letter records, then stop at once. */
    uint64_t t0 = now_ms();
    while (high_watermark(reader, DLQ_TOPIC) < 1 && now_ms() - t0 < 20000) {
        sleep_ms(20);
    }
    assert_true(high_watermark(reader, DLQ_TOPIC) >= 1);
    size_t slow_left = 0;
    rd_kafka_mock_broker_error_stack_cnt(m.mc, 1, APIKEY_PRODUCE, &slow_left);
    int64_t told_at_stop = high_watermark(reader, NOTIFY_TOPIC);
    uint64_t took = run_stop(&r);
    /* The stop did come with messages unfinished. */
    assert_true(told_at_stop >= 0 && told_at_stop < K);
    assert_int_equal(r.rc, 0);
    /* Within the shutdown timeout, plus leaving the group. */
    assert_true(took < 10000 + 5000);

    int64_t got[SRC_PARTS];
    committed(reader, got);
    struct outcomes o;
    read_outcomes(m.bs, &o);
    /* At least once: everything below a committed offset is finished. */
    for (int p = 0; p < SRC_PARTS; p++) {
        for (int64_t i = 0; i < got[p]; i++) {
            if (o.dlq[p][i] < 1 || o.notified[p][i] < 1) {
                fail_msg("committed past unfinished message %d/%lld", p,
                         (long long)i);
            }
        }
        /* And every finished message is covered: the run of finished
         * messages from the start ends at the committed offset. */
        int64_t prefix = 0;
        while (prefix < end[p] && o.notified[p][prefix] > 0) {
            prefix++;
        }
        if (got[p] < prefix) {
            fail_msg("partition %d: committed %lld, finished up to %lld", p,
                     (long long)got[p], (long long)prefix);
        }
    }
    print_message("stop with %zu slow acks left, %lld of %d notified: took "
                  "%llu ms, committed "
                  "%lld,%lld of %lld,%lld, %d dead-letter records\n",
                  slow_left, (long long)told_at_stop, K,
                  (unsigned long long)took, (long long)got[0],
                  (long long)got[1], (long long)end[0], (long long)end[1],
                  o.dlq_records);
    rd_kafka_destroy(reader);
    mock_down(&m);
}

/* ------------------------------------------------------------------------
 * 4. Incoming headers with nanguard's reserved names are renamed
 */

/* The value of the first header called name, as a string ("" if none). */
static const char *first_header(const rd_kafka_message_t *m, const char *name,
                                char *buf, size_t cap)
{
    rd_kafka_headers_t *h = NULL;
    const void *v = NULL;
    size_t n = 0;
    buf[0] = '\0';
    if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        rd_kafka_header_get(h, 0, name, &v, &n) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        v != NULL && n < cap) {
        memcpy(buf, v, n);
        buf[n] = '\0';
    }
    return buf;
}

static size_t header_count(const rd_kafka_message_t *m, const char *name)
{
    rd_kafka_headers_t *h = NULL;
    size_t k = 0;
    const void *v;
    size_t n;
    if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        while (rd_kafka_header_get(h, k, name, &v, &n) ==
               RD_KAFKA_RESP_ERR_NO_ERROR) {
            k++;
        }
    }
    return k;
}

static void note_renamed(struct outcomes *o, const rd_kafka_message_t *m)
{
    char b[64];
    /* nanguard's own headers come first under their names, once each. */
    assert_string_equal(first_header(m, "__connect.errors.topic", b, sizeof b),
                        SRC_TOPIC);
    assert_int_equal(header_count(m, "__connect.errors.topic"), 1);
    assert_string_equal(first_header(m, "nanguard.attempts", b, sizeof b), "0");
    assert_int_equal(header_count(m, "nanguard.attempts"), 1);
    /* The producer's, renamed. */
    assert_string_equal(first_header(m,
                                     "nanguard.original.__connect.errors."
                                     "topic",
                                     b, sizeof b),
                        "evil");
    assert_string_equal(
        first_header(m, "nanguard.original.nanguard.attempts", b, sizeof b),
        "999");
    /* Replay headers and the application's own pass through unchanged. */
    assert_string_equal(first_header(m, "nanguard.replay.count", b, sizeof b),
                        "3");
    assert_int_equal(header_count(m, "nanguard.original.nanguard.replay.count"),
                     0);
    assert_string_equal(first_header(m, "x-app", b, sizeof b), "kept");
    o->dlq_records++;
}

static void test_reserved_headers_renamed(void **state)
{
    (void)state;
    enum { K = 4 };
    struct mock m;
    mock_up(&m);
    char errstr[256];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf_with(m.bs, NULL),
                                  errstr, sizeof errstr);
    assert_non_null(rk);
    int64_t end[SRC_PARTS] = {0};
    for (int i = 0; i < K; i++) {
        static const char value[] = "{\"thread_id\": \"t\", NaN";
        rd_kafka_headers_t *h = rd_kafka_headers_new(4);
        rd_kafka_header_add(h, "__connect.errors.topic", -1, "evil", -1);
        rd_kafka_header_add(h, "nanguard.attempts", -1, "999", -1);
        rd_kafka_header_add(h, "nanguard.replay.count", -1, "3", -1);
        rd_kafka_header_add(h, "x-app", -1, "kept", -1);
        assert_int_equal(
            rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(SRC_TOPIC),
                              RD_KAFKA_V_PARTITION(i % SRC_PARTS),
                              RD_KAFKA_V_VALUE((void *)value, sizeof value - 1),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                              RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END),
            RD_KAFKA_RESP_ERR_NO_ERROR);
        end[i % SRC_PARTS]++;
    }
    assert_int_equal(rd_kafka_flush(rk, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_destroy(rk);

    struct run r;
    run_start(&r, m.bs, NULL);
    rd_kafka_t *reader = offset_reader_new(m.bs);
    int64_t got[SRC_PARTS];
    assert_true(wait_committed(reader, end, 30000, got));
    run_stop(&r);
    assert_int_equal(r.rc, 0);
    struct outcomes *o = calloc(1, sizeof *o);
    assert_non_null(o);
    read_topic(m.bs, DLQ_TOPIC, o, note_renamed);
    assert_int_equal(o->dlq_records, K);
    free(o);
    rd_kafka_destroy(reader);
    mock_down(&m);
}

/* ------------------------------------------------------------------------
 * 5. A member joins while the worker commits
 */

/* Produces malformed messages, one every 5 ms, until stop. */
struct feeder {
    const char *bs;
    pthread_t th;
    volatile int stop;
    int sent;
};

static void *feed(void *arg)
{
    struct feeder *f = arg;
    char errstr[256];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER,
                                  conf_with(f->bs, "linger.ms", "1", NULL),
                                  errstr, sizeof errstr);
    assert_non_null(rk);
    while (!f->stop && f->sent < 100000) {
        static const char value[] = "{\"thread_id\": \"t\", NaN";
        if (rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(SRC_TOPIC),
                              RD_KAFKA_V_VALUE((void *)value, sizeof value - 1),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                              RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            f->sent++;
        }
        rd_kafka_poll(rk, 5);
    }
    rd_kafka_flush(rk, 10000);
    rd_kafka_destroy(rk);
    return NULL;
}

/* How many lines of the file at path hold text. */
static int lines_with(const char *path, const char *text)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[4096];
    int k = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        k += strstr(line, text) != NULL;
    }
    fclose(f);
    return k;
}

/* The worker commits every 50 ms while a second member joins its group and
 * the coordinator holds every JoinGroup answer for 1.5 s. The group moves
 * to its next generation as soon as the worker's JoinGroup arrives; a
 * commit sent behind it carries the old one and is refused
 * (ILLEGAL_GENERATION), which librdkafka before 2.10 answers by dropping
 * the worker's whole assignment as lost: its partitions would be consumed
 * again from the last commit. The worker must send no commit while
 * librdkafka rejoins: its log shows no refused commit and no lost
 * partition, and the partitions move by revoke. */
static void test_member_joins_while_committing(void **state)
{
    (void)state;
    struct mock m;
    mock_up(&m);
    char log_path[] = "/tmp/nanguard-join-XXXXXX";
    int log_fd = mkstemp(log_path);
    assert_true(log_fd >= 0);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    assert_int_equal(dup2(log_fd, STDERR_FILENO), STDERR_FILENO);
    ng_log_set_level(NG_LOG_INFO);

    struct feeder f = {.bs = m.bs};
    assert_int_equal(pthread_create(&f.th, NULL, feed, &f), 0);
    const char *extra[] = {"--commit-interval-ms", "50", "-X",
                           "heartbeat.interval.ms=300", NULL};
    struct run r;
    run_start(&r, m.bs, extra);
    rd_kafka_t *reader = offset_reader_new(m.bs);
    int64_t got[SRC_PARTS], some[SRC_PARTS] = {1, 1};
    assert_true(wait_committed(reader, some, 20000, got));

    assert_int_equal(rd_kafka_mock_broker_push_request_error_rtts(
                         m.mc, 1, APIKEY_JOIN_GROUP, 2, 0, 1500, 0, 1500),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    char errstr[256];
    rd_kafka_conf_t *conf = conf_with(
        m.bs, "group.id", "g1", "partition.assignment.strategy",
        "cooperative-sticky", "session.timeout.ms", "6000",
        "heartbeat.interval.ms", "300", "enable.auto.commit", "false", NULL);
    rd_kafka_t *b =
        rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    assert_non_null(b);
    rd_kafka_poll_set_consumer(b);
    rd_kafka_topic_partition_list_t *topics =
        rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, SRC_TOPIC, RD_KAFKA_PARTITION_UA);
    assert_int_equal(rd_kafka_subscribe(b, topics), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(topics);
    /* b polls until it holds a partition, and 2 s more. */
    int b_parts = 0;
    uint64_t deadline = now_ms() + 25000, settled = 0;
    while (now_ms() < deadline && (settled == 0 || now_ms() < settled)) {
        rd_kafka_message_t *msg = rd_kafka_consumer_poll(b, 100);
        if (msg != NULL) {
            rd_kafka_message_destroy(msg);
        }
        rd_kafka_topic_partition_list_t *a = NULL;
        if (rd_kafka_assignment(b, &a) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            b_parts = a->cnt;
            rd_kafka_topic_partition_list_destroy(a);
        }
        if (b_parts > 0 && settled == 0) {
            settled = now_ms() + 2000;
        }
    }
    f.stop = 1;
    assert_int_equal(pthread_join(f.th, NULL), 0);
    size_t left = 99;
    rd_kafka_mock_broker_error_stack_cnt(m.mc, 1, APIKEY_JOIN_GROUP, &left);
    /* Counted before the stop, whose own revoke would hide a missing one. */
    fflush(stderr);
    int revoked = lines_with(log_path, "\"partitions revoked\"");
    run_stop(&r);
    rd_kafka_consumer_close(b);
    rd_kafka_destroy(b);
    rd_kafka_destroy(reader);

    fflush(stderr);
    assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
    close(saved);
    close(log_fd);
    ng_log_set_level(getenv("NANGUARD_TEST_VERBOSE") ? NG_LOG_DEBUG
                                                     : NG_LOG_ERROR);
    int refused = lines_with(log_path, "generation id is not valid");
    int lost = lines_with(log_path, "\"partitions lost\"");
    print_message("member joined: %d messages, b holds %d partition(s), "
                  "JoinGroup delays left %zu; worker log: %d refused "
                  "commits, %d lost, %d revoked before the stop (%s)\n",
                  f.sent, b_parts, left, refused, lost, revoked, log_path);
    assert_int_equal(left, 0); /* both JoinGroup answers were held */
    assert_int_equal(b_parts, 1);
    assert_int_equal(refused, 0);
    assert_int_equal(lost, 0);
    assert_true(revoked >= 1);
    unlink(log_path);
    mock_down(&m);
}

int main(void)
{
    /* Every message is dead-lettered with a warning: quiet unless asked. */
    ng_log_set_level(getenv("NANGUARD_TEST_VERBOSE") ? NG_LOG_DEBUG
                                                     : NG_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dlq_refused_too_large),
        cmocka_unit_test(test_dlq_refused_not_authorized),
        cmocka_unit_test(test_dlq_timed_out),
        cmocka_unit_test(test_commit_refused),
        cmocka_unit_test(test_stop_in_flight),
        cmocka_unit_test(test_reserved_headers_renamed),
        cmocka_unit_test(test_member_joins_while_committing),
    };
    /* NANGUARD_TEST_FILTER=test_reserved* runs the matching tests only. */
    if (getenv("NANGUARD_TEST_FILTER") != NULL) {
        cmocka_set_test_filter(getenv("NANGUARD_TEST_FILTER"));
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
