/* test_backoff.c - exponential backoff with full jitter, with an injected
 * random source. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/backoff.h"

/* Hands out the values of a list, in turn. */
typedef struct {
    const uint64_t *values;
    size_t n;
    size_t next;
} script;

static uint64_t scripted(void *ctx)
{
    script *s = ctx;
    uint64_t v = s->values[s->next % s->n];
    s->next++;
    return v;
}

static uint64_t all_ones(void *ctx)
{
    (void)ctx;
    return UINT64_MAX;
}

static uint64_t zero(void *ctx)
{
    (void)ctx;
    return 0;
}

static void test_ceiling_doubles_to_cap(void **state)
{
    (void)state;
    ng_backoff b;
    ng_backoff_init(&b, 100, 5000, zero, NULL);
    const uint64_t want[] = {100, 200, 400, 800, 1600, 3200, 5000, 5000};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        assert_int_equal(ng_backoff_ceiling(&b), want[i]);
        ng_backoff_next(&b);
    }
    ng_backoff_reset(&b);
    assert_int_equal(ng_backoff_ceiling(&b), 100);
}

static void test_full_jitter_range(void **state)
{
    (void)state;
    /* r % (ceiling + 1): the largest random value maps into the range,
     * and a value equal to the ceiling maps onto the ceiling itself. */
    ng_backoff b;
    ng_backoff_init(&b, 100, 1000, zero, NULL);
    assert_int_equal(ng_backoff_next(&b), 0);
    const uint64_t vals[] = {100, 201, 1000, 7};
    script s = {vals, 4, 0};
    ng_backoff_init(&b, 100, 1000, scripted, &s);
    assert_int_equal(ng_backoff_next(&b), 100); /* ceiling 100: 100 % 101 */
    assert_int_equal(ng_backoff_next(&b), 0);   /* ceiling 200: 201 % 201 */
    assert_int_equal(ng_backoff_next(&b), 198); /* ceiling 400: 1000 % 401 */
    assert_int_equal(ng_backoff_next(&b), 7);   /* ceiling 800 */

    ng_backoff_init(&b, 100, 1000, all_ones, NULL);
    for (int i = 0; i < 20; i++) {
        uint64_t c = ng_backoff_ceiling(&b);
        assert_true(ng_backoff_next(&b) <= c);
    }
}

static void test_no_overflow(void **state)
{
    (void)state;
    ng_backoff b;
    ng_backoff_init(&b, UINT64_C(1) << 40, UINT64_MAX, all_ones, NULL);
    uint64_t last = 0;
    for (int i = 0; i < 200; i++) {
        uint64_t c = ng_backoff_ceiling(&b);
        assert_true(c >= last); /* never wraps back to small values */
        last = c;
        ng_backoff_next(&b);
    }
    assert_int_equal(last, UINT64_MAX);
    /* cap 0 and base 0 are taken as 1 ms */
    ng_backoff_init(&b, 0, 0, all_ones, NULL);
    assert_int_equal(ng_backoff_ceiling(&b), 1);
    assert_true(ng_backoff_next(&b) <= 1);
}

static void test_builtin_random_spreads(void **state)
{
    (void)state;
    ng_backoff b;
    ng_backoff_init(&b, 1000, 1000, NULL, NULL);
    uint64_t lo = UINT64_MAX, hi = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t d = ng_backoff_next(&b);
        assert_true(d <= 1000);
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
    }
    assert_true(lo < 100);
    assert_true(hi > 900);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ceiling_doubles_to_cap),
        cmocka_unit_test(test_full_jitter_range),
        cmocka_unit_test(test_no_overflow),
        cmocka_unit_test(test_builtin_random_spreads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
