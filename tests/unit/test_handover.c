/* test_handover.c - the bookkeeping of filter/handover.h: commit metadata,
 * when a partition is covered, what a commit says. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "filter/handover.h"

static int parse(const char *s, int64_t *since)
{
    return handover_meta_parse(s, s ? strlen(s) : 0, since);
}

static void test_meta_parse(void **state)
{
    (void)state;
    int64_t since = -7;
    assert_int_equal(parse("nanguard/1 clean", &since), 0);
    assert_int_equal(parse("nanguard/1 since=1764700000123", &since), 1);
    assert_int_equal(since, 1764700000123);
    assert_int_equal(parse(NULL, &since), -1);
    assert_int_equal(parse("", &since), -1);
    assert_int_equal(parse("nanguard/1 since=", &since), -1);
    assert_int_equal(parse("nanguard/1 since=12x", &since), -1);
    assert_int_equal(parse("nanguard/1 since=-5", &since), -1);
    assert_int_equal(parse("nanguard/2 clean", &since), -1);
    assert_int_equal(parse("some other tool", &since), -1);
}

static void meta(const handover *h, int64_t offset, int64_t head_at, bool final,
                 char *out)
{
    handover_meta(h, "cp", 0, offset, head_at, 5000, final, out, 128);
}

/* A new partition (no commit, or a clean one): dead letters wait for a
 * since= commit; clean until a dead letter is wanted, since= after. */
static void test_cover(void **state)
{
    (void)state;
    handover *h = handover_new();
    int64_t since = 0;
    assert_int_equal(handover_assign(h, "cp", 0, -1, NULL, 0, &since), 0);
    assert_false(handover_covered(h, "cp", 0));
    char m[128];
    meta(h, 10, 4000, false, m);
    assert_string_equal(m, HANDOVER_META_CLEAN);
    assert_false(handover_dead_letter(h, "cp", 0, 12)); /* must wait */
    meta(h, 10, 4000, false, m);
    assert_string_equal(m, "nanguard/1 since=4000"); /* the head's time */
    meta(h, 13, -1, false, m);
    assert_string_equal(m, "nanguard/1 since=5000"); /* none in flight: now */
    /* An answer to an earlier clean commit covers nothing, a refused
     * since= commit neither; an accepted since= commit does. */
    assert_false(handover_acked(h, "cp", 0, HANDOVER_META_CLEAN,
                                strlen(HANDOVER_META_CLEAN), true));
    assert_false(
        handover_acked(h, "cp", 0, "nanguard/1 since=4000", 21, false));
    assert_true(handover_acked(h, "cp", 0, "nanguard/1 since=4000", 21, true));
    assert_true(handover_covered(h, "cp", 0));
    assert_true(handover_dead_letter(h, "cp", 0, 14));
    /* Given up: clean once the commit point is past every dead letter. */
    meta(h, 14, 4500, true, m);
    assert_string_equal(m, "nanguard/1 since=4500");
    meta(h, 15, -1, true, m);
    assert_string_equal(m, HANDOVER_META_CLEAN);
    /* Unknown partitions are not ours to hold back. */
    assert_true(handover_dead_letter(h, "cp", 9, 1));
    handover_free(h);
}

/* Assigned with a since= commit: covered at once, to be scanned, and
 * since= from then on (a clean commit would uncover it). */
static void test_assigned_since(void **state)
{
    (void)state;
    handover *h = handover_new();
    int64_t since = 0;
    const char *m0 = "nanguard/1 since=3000";
    assert_int_equal(handover_assign(h, "cp", 0, 40, m0, strlen(m0), &since),
                     1);
    assert_int_equal(since, 3000);
    assert_true(handover_covered(h, "cp", 0));
    char m[128];
    meta(h, 40, 4000, false, m);
    assert_string_equal(m, "nanguard/1 since=4000");
    /* Metadata without an offset committed in the group is not trusted. */
    assert_int_equal(handover_assign(h, "cp", 1, -1, m0, strlen(m0), &since),
                     0);
    assert_false(handover_covered(h, "cp", 1));
    assert_int_equal(handover_count(h), 2);
    handover_forget(h, "cp", 0);
    assert_int_equal(handover_count(h), 1);
    const char *t;
    int32_t p;
    handover_at(h, 0, &t, &p);
    assert_string_equal(t, "cp");
    assert_int_equal(p, 1);
    assert_null(handover_find(h, "cp", 0, 41));
    handover_free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_meta_parse),
        cmocka_unit_test(test_cover),
        cmocka_unit_test(test_assigned_since),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
