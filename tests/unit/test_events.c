/* test_events.c - notification events as the application expects them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sink/events.h"

/* The timestamp differs per run: blank it out ("...Z"). */
static void blank_timestamp(char *s)
{
    char *t = strstr(s, "\"timestamp\": \"");
    assert_non_null(t);
    t += strlen("\"timestamp\": \"");
    assert_int_equal(strlen(t) > 24, 1);
    assert_int_equal(t[4], '-');
    assert_int_equal(t[10], 'T');
    assert_int_equal(t[23], 'Z');
    memset(t, 'X', 24);
}

static void test_flush_error(void **state)
{
    (void)state;
    ng_buf b = {0};
    event_flush_error ev = {
        .thread_id = "t-1",
        .checkpoint_id = "c\"1",
        .checkpoint_ns = "",
        .message = EVENT_FLUSH_ERROR_MESSAGE,
        .details = "PostgreSQL refused the row",
        .error_code = "pg_23514",
        .dlq = {"cp.dlq", 0, 42},
        .source = {"cp", 3, 1234},
    };
    assert_int_equal(event_flush_error_json(&b, &ev), 0);
    assert_int_equal(ng_buf_putc(&b, '\0'), 0);
    blank_timestamp(b.data);
    assert_string_equal(
        b.data,
        "{\"thread_id\": \"t-1\", \"type\": \"checkpoint_flush_error\", "
        "\"severity\": \"warning\", \"message\": \"Failed to save execution "
        "logs to database. The workflow completed but logs may be incomplete. "
        "Please contact support if you need detailed execution history.\", "
        "\"error_details\": \"PostgreSQL refused the row\", "
        "\"timestamp\": \"XXXXXXXXXXXXXXXXXXXXXXXX\", "
        "\"checkpoint_id\": \"c\\\"1\", \"checkpoint_ns\": \"\", "
        "\"error_code\": \"pg_23514\", \"dlq\": {\"topic\": \"cp.dlq\", "
        "\"partition\": 0, \"offset\": 42}, \"source\": {\"topic\": \"cp\", "
        "\"partition\": 3, \"offset\": 1234}}");
    ng_buf_free(&b);

    /* Unreadable message: no thread or checkpoint id; no details. */
    ev.thread_id = NULL;
    ev.checkpoint_id = NULL;
    ev.details = NULL;
    assert_int_equal(event_flush_error_json(&b, &ev), 0);
    assert_int_equal(ng_buf_putc(&b, '\0'), 0);
    assert_non_null(strstr(b.data, "{\"thread_id\": null, "));
    assert_non_null(strstr(b.data, "\"checkpoint_id\": null, "));
    assert_non_null(strstr(b.data, "\"error_details\": \"\", "));
    ng_buf_free(&b);
}

/* Database error text is user data: it is escaped, and cut at 500
 * characters on the warning event too. */
static void test_flush_error_details_cut(void **state)
{
    (void)state;
    char details[700];
    memset(details, 'x', sizeof details - 1);
    details[sizeof details - 1] = '\0';
    memcpy(details, "<img \"a\">", 9);
    event_flush_error ev = {
        .thread_id = "t",
        .checkpoint_ns = "",
        .message = "custom sentence",
        .details = details,
        .error_code = "malformed_json",
        .dlq = {"d", 1, 2},
        .source = {"s", 3, 4},
    };
    ng_buf b = {0};
    assert_int_equal(event_flush_error_json(&b, &ev), 0);
    assert_int_equal(ng_buf_putc(&b, '\0'), 0);
    assert_non_null(strstr(b.data, "\"message\": \"custom sentence\", "));
    const char *d = strstr(b.data, "\"error_details\": \"<img \\\"a\\\">");
    assert_non_null(d);
    d += strlen("\"error_details\": \"");
    const char *end = strstr(d, "\", \"timestamp\"");
    assert_non_null(end);
    assert_int_equal(end - d, 500 + 2); /* two escaped quotes */
    ng_buf_free(&b);
}

static void test_critical_details_cut(void **state)
{
    (void)state;
    char details[1200];
    /* 600 two-byte characters: the cut must fall between characters. */
    for (int i = 0; i < 600; i++) {
        details[2 * i] = (char)0xC3;
        details[2 * i + 1] = (char)0xA9;
    }
    details[1200 - 1] = '\0';
    details[1198] = '\0';
    ng_buf b = {0};
    assert_int_equal(
        event_critical_json(&b, "t-9", EVENT_CRITICAL_MESSAGE, details), 0);
    assert_int_equal(ng_buf_putc(&b, '\0'), 0);
    blank_timestamp(b.data);
    const char *d = strstr(b.data, "\"error_details\": \"");
    assert_non_null(d);
    d += strlen("\"error_details\": \"");
    const char *end = strchr(d, '"');
    assert_int_equal(end - d, 1000); /* 500 characters of 2 bytes */
    assert_non_null(strstr(b.data, "{\"thread_id\": \"t-9\", \"type\": "
                                   "\"checkpoint_flush_critical_error\", "
                                   "\"severity\": \"critical\", "
                                   "\"message\": \"Failed to save execution "
                                   "data. Please contact support "
                                   "immediately. This workflow's logs may be "
                                   "lost.\", \"error_details\": \""));
    ng_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flush_error),
        cmocka_unit_test(test_flush_error_details_cut),
        cmocka_unit_test(test_critical_details_cut),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
