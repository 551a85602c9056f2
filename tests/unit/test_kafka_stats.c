/* test_kafka_stats.c - consumer lag from librdkafka's statistics JSON
 * (filter/kafka/stats.h), on documents shaped as librdkafka 2.0.2 writes
 * them (trimmed to the members read and a few around them). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "filter/kafka/stats.h"

#include <string.h>

static const char doc[] =
    "{\"name\": \"nanguard#consumer-1\", \"type\": \"consumer\", "
    "\"topics\": {"
    " \"checkpoints\": {\"topic\": \"checkpoints\", \"partitions\": {"
    "  \"0\": {\"partition\": 0, \"desired\": true, \"fetch_state\": "
    "\"active\", \"committed_offset\": 40, \"lo_offset\": 0, "
    "\"hi_offset\": 50, \"ls_offset\": 50, \"consumer_lag\": 10, "
    "\"consumer_lag_stored\": 2},"
    "  \"1\": {\"partition\": 1, \"desired\": true, \"committed_offset\": "
    "-1001, \"lo_offset\": 5, \"hi_offset\": 12, \"ls_offset\": 12, "
    "\"consumer_lag\": -1},"
    "  \"2\": {\"partition\": 2, \"desired\": false, \"committed_offset\": "
    "-1001, \"lo_offset\": -1, \"hi_offset\": -1, \"consumer_lag\": -1},"
    "  \"3\": {\"partition\": 3, \"desired\": true, \"committed_offset\": "
    "-1001, \"lo_offset\": -1, \"hi_offset\": -1, \"consumer_lag\": -1},"
    "  \"-1\": {\"partition\": -1, \"desired\": false, \"consumer_lag\": -1}"
    " }},"
    " \"other\": {\"topic\": \"other\", \"partitions\": {"
    "  \"7\": {\"partition\": 7, \"desired\": true, \"committed_offset\": 3, "
    "\"lo_offset\": 0, \"hi_offset\": 3, \"ls_offset\": 3, "
    "\"consumer_lag\": 0}}}"
    "}}";

static void test_lag_per_partition(void **state)
{
    (void)state;
    kafka_partition_lag *l = NULL;
    size_t n = 99;
    ng_error err;
    assert_int_equal(kafka_stats_lag(doc, strlen(doc), &l, &n, &err), 0);
    /* 0: librdkafka's lag; 1: nothing committed yet, from the log start;
     * 2: not ours; 3: end unknown; -1: not a partition. */
    assert_int_equal(n, 3);
    assert_string_equal(l[0].topic, "checkpoints");
    assert_int_equal(l[0].partition, 0);
    assert_int_equal(l[0].lag, 10);
    assert_string_equal(l[1].topic, "checkpoints");
    assert_int_equal(l[1].partition, 1);
    assert_int_equal(l[1].lag, 7);
    assert_string_equal(l[2].topic, "other");
    assert_int_equal(l[2].partition, 7);
    assert_int_equal(l[2].lag, 0);
    kafka_stats_lag_free(l, n);
}

static void test_no_topics_and_errors(void **state)
{
    (void)state;
    kafka_partition_lag *l = NULL;
    size_t n = 5;
    ng_error err;
    const char *producer = "{\"name\": \"p\", \"type\": \"producer\"}";
    assert_int_equal(kafka_stats_lag(producer, strlen(producer), &l, &n, &err),
                     0);
    assert_int_equal(n, 0);
    kafka_stats_lag_free(l, n);
    /* Not NUL terminated: only len bytes are read. */
    const char cut[] = "{\"topics\": {}}garbage";
    assert_int_equal(kafka_stats_lag(cut, 14, &l, &n, &err), 0);
    kafka_stats_lag_free(l, n);
    assert_int_equal(kafka_stats_lag("{\"topics\": ", 11, &l, &n, &err), -1);
    assert_null(l);
    assert_string_equal(err.code, "kafka_stats");
    assert_int_equal(kafka_stats_lag("[1]", 3, &l, &n, &err), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lag_per_partition),
        cmocka_unit_test(test_no_topics_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
