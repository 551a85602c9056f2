/* test_reader.c - filter/kafka/reader against the real broker (the "kafka"
 * fixture): ranges from the beginning, by time (since, until), to the end
 * offsets found at start, following, a group's committed offsets, a
 * missing topic, an unreachable broker. */
#define _POSIX_C_SOURCE 200809L
#include "filter/kafka/reader.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define NPARTS 3
#define PER_PART 10 /* partitions 0 and 1; partition 2 stays empty */

static const char *brokers;
static char topic[128];
static int64_t base_ms; /* record i of a partition: base_ms + i * 1000 */

static rd_kafka_conf_t *conf_for(const char *servers)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[256];
    assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers", servers,
                                       errstr, sizeof errstr),
                     RD_KAFKA_CONF_OK);
    rd_kafka_conf_set(conf, "log_level", "0", errstr, sizeof errstr);
    return conf;
}

static rd_kafka_t *producer(void)
{
    char errstr[256];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf_for(brokers), errstr,
                                  sizeof errstr);
    assert_non_null(rk);
    return rk;
}

static void produce(rd_kafka_t *rk, int32_t partition, int64_t ts, int i)
{
    char value[32];
    snprintf(value, sizeof value, "p%d-%d", (int)partition, i);
    assert_int_equal(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic),
                                       RD_KAFKA_V_PARTITION(partition),
                                       RD_KAFKA_V_VALUE(value, strlen(value)),
                                       RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                       RD_KAFKA_V_TIMESTAMP(ts),
                                       RD_KAFKA_V_END),
                     0);
}

static void create_topic(void)
{
    char errstr[256];
    rd_kafka_t *rk = producer();
    rd_kafka_NewTopic_t *nt =
        rd_kafka_NewTopic_new(topic, NPARTS, 1, errstr, sizeof errstr);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
    assert_non_null(ev);
    const rd_kafka_CreateTopics_result_t *res =
        rd_kafka_event_CreateTopics_result(ev);
    size_t n;
    const rd_kafka_topic_result_t **tr =
        rd_kafka_CreateTopics_result_topics(res, &n);
    assert_int_equal(n, 1);
    assert_int_equal(rd_kafka_topic_result_error(tr[0]), 0);
    rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_NewTopic_destroy(nt);
    rd_kafka_destroy(rk);
}

static int setup(void **state)
{
    (void)state;
    brokers = getenv("NANGUARD_TEST_KAFKA");
    if (brokers == NULL) {
        brokers = "127.0.0.1:19092";
    }
    snprintf(topic, sizeof topic, "test_reader_%d_%ld", (int)getpid(),
             (long)time(NULL));
    create_topic();
    base_ms = (int64_t)time(NULL) * 1000 - 60000;
    rd_kafka_t *rk = producer();
    for (int i = 0; i < PER_PART; i++) {
        produce(rk, 0, base_ms + i * 1000, i);
        produce(rk, 1, base_ms + i * 1000, i);
    }
    assert_int_equal(rd_kafka_flush(rk, 30000), 0);
    rd_kafka_destroy(rk);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    rd_kafka_t *rk = producer();
    rd_kafka_DeleteTopic_t *dt = rd_kafka_DeleteTopic_new(topic);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_DeleteTopics(rk, &dt, 1, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
    if (ev != NULL) {
        rd_kafka_event_destroy(ev);
    }
    rd_kafka_queue_destroy(q);
    rd_kafka_DeleteTopic_destroy(dt);
    rd_kafka_destroy(rk);
    return 0;
}

static reader *open_reader(int64_t since, int64_t until, int follow,
                           const char *group)
{
    reader_options o = {.since_ms = since,
                        .until_ms = until,
                        .follow = follow,
                        .group = group,
                        .timeout_ms = 60000};
    ng_error err = {0};
    reader *r = reader_new(conf_for(brokers), topic, &o, &err);
    if (r == NULL) {
        fail_msg("reader_new: %s: %s", err.code, err.message);
    }
    return r;
}

/* Reads to the end; seen[p][offset] counts deliveries. Returns the count,
 * or -1 when the end did not come within 30 s. */
static int read_all(reader *r, int seen[NPARTS][64], int limit)
{
    int n = 0;
    int64_t last[NPARTS] = {-1, -1, -1};
    for (int turns = 0; turns < 300; turns++) {
        rd_kafka_message_t *m;
        ng_error err = {0};
        reader_status st = reader_next(r, 100, &m, &err);
        if (st == READER_END) {
            return n;
        }
        assert_int_not_equal(st, READER_ERROR);
        if (st == READER_MESSAGE) {
            assert_true(m->partition >= 0 && m->partition < NPARTS);
            assert_true(m->offset >= 0 && m->offset < 64);
            assert_true(m->offset > last[m->partition]); /* in order */
            last[m->partition] = m->offset;
            seen[m->partition][m->offset]++;
            rd_kafka_message_destroy(m);
            if (++n == limit) {
                return n;
            }
        }
    }
    return -1;
}

static void expect_range(int seen[NPARTS][64], int from, int to)
{
    for (int p = 0; p < NPARTS; p++) {
        for (int o = 0; o < 64; o++) {
            int want = p < 2 && o >= from && o < to && o < PER_PART;
            if (seen[p][o] != want) {
                fail_msg("partition %d offset %d seen %d times, want %d", p, o,
                         seen[p][o], want);
            }
        }
    }
}

static void test_from_beginning(void **state)
{
    (void)state;
    reader *r = open_reader(-1, -1, 0, NULL);
    assert_int_equal(reader_partition_count(r), NPARTS);
    assert_int_equal(reader_total(r), 2 * PER_PART);
    int seen[NPARTS][64] = {{0}};
    assert_int_equal(read_all(r, seen, 0), 2 * PER_PART);
    expect_range(seen, 0, PER_PART);
    reader_free(r);
}

static void test_since_until(void **state)
{
    (void)state;
    struct {
        int64_t since, until;
        int from, to;
    } cases[] = {
        {base_ms + 5000, -1, 5, PER_PART},
        {base_ms + 4500, -1, 5, PER_PART},
        {-1, base_ms + 3000, 0, 3},
        {base_ms + 5000, base_ms + 7000, 5, 7},
        {base_ms + 60000, -1, 0, 0},
        {base_ms - 60000, base_ms, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        reader *r = open_reader(cases[i].since, cases[i].until, 0, NULL);
        int seen[NPARTS][64] = {{0}};
        int want = 2 * (cases[i].to - cases[i].from);
        assert_int_equal(reader_total(r), want);
        assert_int_equal(read_all(r, seen, 0), want);
        expect_range(seen, cases[i].from, cases[i].to);
        reader_free(r);
    }
}

/* Records produced after the start are beyond the range; a follower sees
 * them. Runs after the others (it adds records to partition 0). */
static void test_end_found_at_start_and_follow(void **state)
{
    (void)state;
    reader *r = open_reader(-1, -1, 0, NULL);
    reader *f = open_reader(base_ms + (PER_PART - 1) * 1000, -1, 1, NULL);
    rd_kafka_t *rk = producer();
    for (int i = 0; i < 5; i++) {
        produce(rk, 0, base_ms + 30000, PER_PART + i);
    }
    assert_int_equal(rd_kafka_flush(rk, 30000), 0);
    rd_kafka_destroy(rk);
    int seen[NPARTS][64] = {{0}};
    assert_int_equal(read_all(r, seen, 0), 2 * PER_PART);
    expect_range(seen, 0, PER_PART);
    reader_free(r);

    /* The follower: offset 9 of partitions 0 and 1, then the 5 new ones. */
    int fseen[NPARTS][64] = {{0}};
    assert_int_equal(read_all(f, fseen, 7), 7);
    assert_int_equal(fseen[0][PER_PART - 1] + fseen[1][PER_PART - 1], 2);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(fseen[0][PER_PART + i], 1);
    }
    rd_kafka_message_t *m;
    ng_error err = {0};
    assert_int_equal(reader_next(f, 300, &m, &err), READER_TIMEOUT);
    reader_free(f);
}

static void test_group(void **state)
{
    (void)state;
    char group[160];
    snprintf(group, sizeof group, "%s_g", topic);
    /* Reading alone commits nothing. */
    reader *r = open_reader(-1, -1, 0, group);
    int seen[NPARTS][64] = {{0}};
    assert_int_equal(read_all(r, seen, 0), 2 * PER_PART);
    reader_free(r);
    r = open_reader(-1, -1, 0, group);
    assert_int_equal(reader_total(r), 2 * PER_PART);
    /* Commit partition 0 up to offset 7 (next 7), partition 1 up to 3. */
    reader_store(r, 0, 7);
    reader_store(r, 1, 3);
    ng_error err = {0};
    assert_int_equal(reader_commit(r, &err), 0);
    assert_int_equal(reader_commit(r, &err), 0); /* nothing new: no-op */
    reader_free(r);
    r = open_reader(-1, -1, 0, group);
    int32_t p;
    int64_t start, end;
    for (int i = 0; i < reader_partition_count(r); i++) {
        reader_range(r, i, &p, &start, &end);
        assert_int_equal(start, p == 0 ? 7 : p == 1 ? 3 : 0);
    }
    assert_int_equal(reader_total(r), 3 + 7);
    reader_free(r);
    /* Without a group reader_commit refuses. */
    r = open_reader(-1, -1, 0, NULL);
    reader_store(r, 0, 1);
    assert_int_not_equal(reader_commit(r, &err), 0);
    reader_free(r);
}

static void test_topic_missing(void **state)
{
    (void)state;
    reader_options o = {.since_ms = -1, .until_ms = -1, .timeout_ms = 60000};
    ng_error err = {0};
    reader *r =
        reader_new(conf_for(brokers), "test_reader_no_such_topic", &o, &err);
    assert_null(r);
    assert_string_equal(err.code, "topic_missing");
}

static void test_unreachable(void **state)
{
    (void)state;
    /* A loopback port that nothing listens on: bind port 0, close. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", ntohs(a.sin_port));
    reader_options o = {.since_ms = -1, .until_ms = -1, .timeout_ms = 1500};
    ng_error err = {0};
    reader *r = reader_new(conf_for(addr), topic, &o, &err);
    assert_null(r);
    assert_string_equal(err.code, "broker_unreachable");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_from_beginning),
        cmocka_unit_test(test_since_until),
        cmocka_unit_test(test_group),
        cmocka_unit_test(test_topic_missing),
        cmocka_unit_test(test_unreachable),
        cmocka_unit_test(test_end_found_at_start_and_follow),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
