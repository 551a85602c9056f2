/* test_sanitize_alloc.c - a reused handle allocates nothing per message.
 * Linked with -Wl,--wrap for malloc, calloc and realloc, which count. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "filter/sanitize/envelope.h"
#include "filter/sanitize/sanitize.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t m);
void *__wrap_realloc(void *p, size_t n);

static size_t allocations;

void *__wrap_malloc(size_t n)
{
    allocations++;
    return __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t m)
{
    allocations++;
    return __real_calloc(n, m);
}

void *__wrap_realloc(void *p, size_t n)
{
    allocations++;
    return __real_realloc(p, n);
}

static void run(sanitize *h, const char *in)
{
    sanitize_reset(h);
    assert_int_equal(sanitize_feed(h, in, strlen(in)), SANITIZE_OK);
    assert_int_equal(sanitize_finish(h), SANITIZE_OK);
    envelope env;
    char why[128];
    assert_int_equal(envelope_read(h, &env, why, sizeof why), 0);
}

static void test_steady_state(void **state)
{
    (void)state;
    const char *msg =
        "{\"thread_id\": \"t-\\u00e9\", \"checkpoint_id\": \"c1\", "
        "\"checkpoint\": {\"v\": [NaN, 1.5, -Infinity], \"s\": \"\\u0000\", "
        "\"k/\\ud800\": 1e400, \"deep\": [[[{\"x\": \"\xff\"}]]]}, "
        "\"metadata\": {\"step\": 1}}";
    sanitize *h = sanitize_new(NULL);
    assert_non_null(h);
    for (int i = 0; i < 3; i++) { /* buffers grow to their size */
        run(h, msg);
    }
    assert_int_equal(sanitize_path_count(h), 5);
    size_t before = allocations;
    for (int i = 0; i < 200; i++) {
        run(h, msg);
    }
    assert_int_equal(allocations, before);
    sanitize_free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_steady_state),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
