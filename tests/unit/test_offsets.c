/* test_offsets.c - offsets are stored only behind a finished prefix. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "filter/kafka/offsets.h"

struct seen {
    int calls;
    char topic[32];
    int32_t partition;
    int64_t next;
};

static void note(void *ctx, const char *topic, int32_t partition, int64_t next)
{
    struct seen *s = ctx;
    s->calls++;
    strncpy(s->topic, topic, sizeof s->topic - 1);
    s->partition = partition;
    s->next = next;
}

static void test_out_of_order(void **state)
{
    (void)state;
    offsets *t = offsets_new();
    uint64_t id[5];
    for (int i = 0; i < 5; i++) {
        assert_int_equal(offsets_begin(t, "cp", 3, 100 + i, &id[i]), 0);
    }
    assert_int_equal(offsets_in_flight(t), 5);
    struct seen s = {0};
    offsets_done(t, id[1]);
    offsets_done(t, id[2]);
    offsets_collect(t, note, &s);
    assert_int_equal(s.calls, 0); /* 100 is not finished */
    offsets_done(t, id[0]);
    offsets_collect(t, note, &s);
    assert_int_equal(s.calls, 1);
    assert_string_equal(s.topic, "cp");
    assert_int_equal(s.partition, 3);
    assert_int_equal(s.next, 103);
    offsets_collect(t, note, &s);
    assert_int_equal(s.calls, 1); /* nothing new */
    offsets_done(t, id[2]);       /* twice: ignored */
    assert_int_equal(offsets_in_flight(t), 2);
    offsets_done(t, id[4]);
    offsets_done(t, id[3]);
    offsets_collect(t, note, &s);
    assert_int_equal(s.next, 105);
    assert_int_equal(offsets_in_flight(t), 0);
    offsets_free(t);
}

static void test_partitions_apart(void **state)
{
    (void)state;
    offsets *t = offsets_new();
    uint64_t a, b;
    assert_int_equal(offsets_begin(t, "cp", 0, 7, &a), 0);
    assert_int_equal(offsets_begin(t, "cp", 1, 9, &b), 0);
    assert_int_equal(offsets_partition_in_flight(t, "cp", 0), 1);
    offsets_done(t, b);
    struct seen s = {0};
    offsets_collect(t, note, &s);
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.partition, 1);
    assert_int_equal(s.next, 10);
    assert_int_equal(offsets_partition_in_flight(t, "cp", 0), 1);
    offsets_free(t);
}

/* After a revoke, late acknowledgements of the old assignment are
 * ignored, and a new assignment starts clean. */
static void test_forget(void **state)
{
    (void)state;
    offsets *t = offsets_new();
    uint64_t old, fresh;
    assert_int_equal(offsets_begin(t, "cp", 0, 50, &old), 0);
    offsets_forget(t, "cp", 0);
    assert_int_equal(offsets_in_flight(t), 0);
    assert_int_equal(offsets_begin(t, "cp", 0, 50, &fresh), 0);
    assert_true(fresh != old);
    offsets_done(t, old);
    struct seen s = {0};
    offsets_collect(t, note, &s);
    assert_int_equal(s.calls, 0);
    offsets_done(t, fresh);
    offsets_collect(t, note, &s);
    assert_int_equal(s.next, 51);
    offsets_free(t);
}

/* Many messages: the ring grows and wraps. */
static void test_many(void **state)
{
    (void)state;
    offsets *t = offsets_new();
    static uint64_t ids[10000];
    struct seen s = {0};
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 10000; i++) {
            assert_int_equal(
                offsets_begin(t, "cp", 0, round * 10000 + i, &ids[i]), 0);
        }
        for (int i = 9999; i >= 0; i--) {
            offsets_done(t, ids[i]);
        }
        offsets_collect(t, note, &s);
        assert_int_equal(s.next, (round + 1) * 10000);
    }
    offsets_free(t);
}

/* offsets_head: the oldest message in flight and when it was taken up,
 * else the next offset to store. */
static void test_head(void **state)
{
    (void)state;
    offsets *t = offsets_new();
    int64_t off = 0;
    uint64_t at = 0;
    assert_int_equal(offsets_head(t, "cp", 0, &off, &at), 0);
    assert_int_equal(off, -1); /* unknown */
    uint64_t a, b, c;
    assert_int_equal(offsets_begin_at(t, "cp", 0, 10, 1000, &a), 0);
    assert_int_equal(offsets_begin_at(t, "cp", 0, 11, 2000, &b), 0);
    assert_int_equal(offsets_begin_at(t, "cp", 0, 12, 3000, &c), 0);
    assert_int_equal(offsets_head(t, "cp", 0, &off, &at), 1);
    assert_int_equal(off, 10);
    assert_int_equal(at, 1000);
    offsets_done(t, b); /* out of order: the head stays */
    assert_int_equal(offsets_head(t, "cp", 0, &off, &at), 1);
    assert_int_equal(off, 10);
    offsets_done(t, a);
    assert_int_equal(offsets_head(t, "cp", 0, &off, &at), 1);
    assert_int_equal(off, 12);
    assert_int_equal(at, 3000);
    offsets_done(t, c);
    assert_int_equal(offsets_head(t, "cp", 0, &off, &at), 0);
    assert_int_equal(off, 13);
    offsets_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_out_of_order),
        cmocka_unit_test(test_partitions_apart),
        cmocka_unit_test(test_forget),
        cmocka_unit_test(test_many),
        cmocka_unit_test(test_head),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
