/* test_dlq.c - the pure parts of nanguard dlq: --since/--until times,
 * --code patterns, which headers a replay leaves out, the settings each
 * subcommand takes. */
#include "filter/dlq.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

static void test_times(void **state)
{
    (void)state;
    const int64_t now = 1796300000000; /* 2026-12-03T12:13:20Z */
    struct {
        const char *in;
        int64_t want;
    } good[] = {
        {"2026-12-03T12:13:20Z", now},
        {"2026-12-03t12:13:20z", now},
        {"2026-12-03 12:13:20Z", now},
        {"2026-12-03T12:13:20.5Z", now + 500},
        {"2026-12-03T12:13:20.123456Z", now + 123},
        {"2026-12-03T13:13:20+01:00", now},
        {"2026-12-03T10:43:20-01:30", now},
        {"1970-01-01T00:00:00Z", 0},
        {"2000-02-29T00:00:00Z", 951782400000},
        {"90s", now - 90000},
        {"90m", now - 5400000},
        {"24h", now - 86400000},
        {"7d", now - 604800000},
        {"0s", now},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        int64_t ms = -1;
        if (dlq_parse_time(good[i].in, now, &ms) != 0 || ms != good[i].want) {
            fail_msg("%s: got %lld, want %lld", good[i].in, (long long)ms,
                     (long long)good[i].want);
        }
    }
    const char *bad[] = {"",
                         "yesterday",
                         "90",
                         "90 m",
                         "-5m",
                         "5w",
                         "2026-12-03",
                         "2026-12-03T12:13:20",
                         "2026-13-03T12:53:20Z",
                         "2026-12-03T24:00:00Z",
                         "2026-12-03T12:13:20.Z",
                         "2026-12-03T12:13:20+0100",
                         "2026-12-03T12:13:20Zjunk",
                         "99999999999999999999d"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t ms;
        if (dlq_parse_time(bad[i], now, &ms) == 0) {
            fail_msg("'%s' was accepted", bad[i]);
        }
    }
}

static void test_code_patterns(void **state)
{
    (void)state;
    assert_true(dlq_code_matches("pg_23514", "pg_23514"));
    assert_false(dlq_code_matches("pg_23514", "pg_235140"));
    assert_false(dlq_code_matches("pg_2351", "pg_23514"));
    assert_true(dlq_code_matches("pg_23*", "pg_23514"));
    assert_true(dlq_code_matches("pg_23*", "pg_23"));
    assert_false(dlq_code_matches("pg_23*", "pg_22P02"));
    assert_true(dlq_code_matches("*", "malformed_json"));
    assert_false(dlq_code_matches("*", NULL));
    assert_false(dlq_code_matches("malformed_json", NULL));
}

static void test_added_headers(void **state)
{
    (void)state;
    const char *added[] = {
        "__connect.errors.topic", "__connect.errors.exception.message",
        "nanguard.error.code",    "nanguard.error.sqlstate",
        "nanguard.worker",        "nanguard.attempts",
        "nanguard.failed_at",     "nanguard.replay.count",
        "nanguard.replay.from"};
    for (size_t i = 0; i < sizeof added / sizeof added[0]; i++) {
        assert_true(dlq_header_is_added(added[i]));
    }
    const char *kept[] = {
        "e2e.run",           "traceparent",     "nanguard.workerx", "nanguard",
        "__connect.errorsx", "nanguard.errors", "x.nanguard.worker"};
    for (size_t i = 0; i < sizeof kept / sizeof kept[0]; i++) {
        assert_false(dlq_header_is_added(kept[i]));
    }
}

static void test_original_names(void **state)
{
    (void)state;
    assert_string_equal(dlq_header_original_name("nanguard.original.nanguard."
                                                 "worker"),
                        "nanguard.worker");
    assert_string_equal(
        dlq_header_original_name("nanguard.original.__connect.errors.topic"),
        "__connect.errors.topic");
    /* one level: a producer's own nanguard.original.x was renamed once */
    assert_string_equal(
        dlq_header_original_name("nanguard.original.nanguard.original.x"),
        "nanguard.original.x");
    assert_string_equal(dlq_header_original_name("e2e.run"), "e2e.run");
    assert_string_equal(dlq_header_original_name("nanguard.original."),
                        "nanguard.original.");
}

static int has(const ng_option *t, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(t[i].name, name) == 0) {
            return 1;
        }
    }
    return 0;
}

static void test_settings_per_command(void **state)
{
    (void)state;
    ng_option t[64];
    assert_true(dlq_settings_count <= 64);
    size_t n = dlq_settings_for(DLQ_INSPECT, t);
    assert_true(has(t, n, "brokers") && has(t, n, "explain") &&
                has(t, n, "since") && has(t, n, "follow"));
    assert_false(has(t, n, "to") || has(t, n, "group") || has(t, n, "top"));
    n = dlq_settings_for(DLQ_STATS, t);
    assert_true(has(t, n, "top") && has(t, n, "format"));
    assert_false(has(t, n, "explain") || has(t, n, "dry-run"));
    n = dlq_settings_for(DLQ_REPLAY, t);
    assert_true(has(t, n, "to") && has(t, n, "max-replays") &&
                has(t, n, "dry-run") && has(t, n, "rate") &&
                has(t, n, "group") && has(t, n, "code"));
    assert_false(has(t, n, "format") || has(t, n, "values"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_times),
        cmocka_unit_test(test_code_patterns),
        cmocka_unit_test(test_added_headers),
        cmocka_unit_test(test_original_names),
        cmocka_unit_test(test_settings_per_command),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
