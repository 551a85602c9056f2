/* test_ratelimit.c - log lines per window, and the count of those held
 * back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/ratelimit.h"

static void test_burst_then_held_back(void **state)
{
    (void)state;
    ng_ratelimit r;
    ng_ratelimit_init(&r, "t", 3, 1000);
    uint64_t n = 99;
    for (int i = 0; i < 3; i++) {
        assert_true(ng_ratelimit_allow(&r, 5000 + (uint64_t)i, &n));
        assert_int_equal(n, 0);
    }
    for (int i = 0; i < 7; i++) {
        assert_false(ng_ratelimit_allow(&r, 5500, &n));
        assert_int_equal(n, 0);
    }
    /* The window ends 1000 ms after its first line. */
    assert_false(ng_ratelimit_allow(&r, 5999, &n));
    assert_true(ng_ratelimit_allow(&r, 6000, &n));
    assert_int_equal(n, 8); /* reported once, with the first line let out */
    assert_true(ng_ratelimit_allow(&r, 6001, &n));
    assert_int_equal(n, 0);
}

static void test_take_reports_once(void **state)
{
    (void)state;
    ng_ratelimit r;
    ng_ratelimit_init(&r, "t", 1, 1000);
    uint64_t n;
    assert_true(ng_ratelimit_allow(&r, 0, &n));
    assert_false(ng_ratelimit_allow(&r, 1, &n));
    assert_false(ng_ratelimit_allow(&r, 2, &n));
    assert_int_equal(ng_ratelimit_take(&r), 2);
    assert_int_equal(ng_ratelimit_take(&r), 0);
    assert_true(ng_ratelimit_allow(&r, 1000, &n));
    assert_int_equal(n, 0);
}

static void test_quiet_lines_all_pass(void **state)
{
    (void)state;
    ng_ratelimit r;
    ng_ratelimit_init(&r, "t", 2, 1000);
    uint64_t n;
    for (uint64_t t = 0; t < 100000; t += 600) {
        assert_true(ng_ratelimit_allow(&r, t, &n));
        assert_int_equal(n, 0);
    }
    /* A clock that steps back starts a new window rather than stalling. */
    assert_true(ng_ratelimit_allow(&r, 10, &n));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_then_held_back),
        cmocka_unit_test(test_take_reports_once),
        cmocka_unit_test(test_quiet_lines_all_pass),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
