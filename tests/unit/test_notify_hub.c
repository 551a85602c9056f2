/* test_notify_hub.c - the gateway's fan-out: cursors, backlog, resume,
 * live events, heartbeats, slow readers, limits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "filter/notify_hub.h"

static int woken, suspended;

static void on_wake(void *ctx)
{
    (void)ctx;
    woken++;
}

static void on_suspend(void *ctx)
{
    (void)ctx;
    suspended++;
}

static notify_hub *hub(size_t client_buffer, size_t max_streams,
                       size_t max_kept)
{
    static const int64_t start[2] = {10, 0};
    notify_hub_options o = {
        .partitions = 2,
        .start = start,
        .backlog_ms = 1000,
        .max_kept_bytes = max_kept,
        .client_buffer_bytes = client_buffer,
        .max_streams = max_streams,
        .retry_ms = 3000,
    };
    notify_hub *h = notify_hub_new(&o);
    assert_non_null(h);
    return h;
}

static void add(notify_hub *h, int32_t p, int64_t off, int64_t ts,
                const char *thread, const char *value)
{
    assert_int_equal(notify_hub_add(h, p, off, ts, thread,
                                    "checkpoint_flush_error", value,
                                    strlen(value)),
                     0);
}

/* Everything the stream has now, as text. */
static void drain(notify_stream *s, char *out, size_t cap)
{
    size_t len = 0;
    long n;
    while ((n = notify_stream_read(s, out + len, cap - 1 - len, on_suspend,
                                   NULL)) > 0) {
        len += (size_t)n;
    }
    out[len] = '\0';
}

static void test_cursor_text(void **state)
{
    (void)state;
    int64_t pos[3] = {0, 43, 9000000000LL}, back[3];
    char text[128];
    assert_int_equal(notify_cursor_format(pos, 3, text, sizeof text), 21);
    assert_string_equal(text, "0:0,1:43,2:9000000000");
    assert_int_equal(notify_cursor_parse(text, back, 3), 0);
    assert_memory_equal(pos, back, sizeof pos);
    /* Partitions not named are 0; unknown ones ignored. */
    assert_int_equal(notify_cursor_parse("1:5,7:9", back, 3), 0);
    assert_int_equal(back[0], 0);
    assert_int_equal(back[1], 5);
    assert_int_equal(back[2], 0);
    static const char *bad[] = {"",     "x",    "1",       "1:",   ":1",
                                "1:-2", "1:2,", "1:2;3:4", "1:2 ", "a:1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(notify_cursor_parse(bad[i], back, 3), -1);
    }
    assert_int_equal(notify_cursor_format(pos, 3, text, 10), -1);
}

static void test_backlog_and_resume(void **state)
{
    (void)state;
    notify_hub *h = hub(1 << 20, 10, 1 << 20);
    add(h, 0, 10, 100, "A", "{\"old\": 1}");   /* before the backlog */
    add(h, 1, 0, 5000, "A", "{\"n\": 1}");     /* id 0:11,1:1 */
    add(h, 0, 11, 5100, "B", "{\"n\": 2}");    /* another thread */
    add(h, 0, 12, 5200, "A", "{\"n\": 3}");    /* id 0:13,1:1 */
    add(h, 0, 5, 5300, "A", "{\"stale\": 1}"); /* offset passed: ignored */
    add(h, 1, 1, 5400, "A", "line1\nline2");   /* spans lines */

    const char *a[] = {"A"};
    bool full;
    notify_stream *s =
        notify_hub_open(h, a, 1, NULL, 5500, on_wake, NULL, &full);
    assert_non_null(s);
    char out[4096];
    drain(s, out, sizeof out);
    assert_string_equal(out, "retry: 3000\n\n"
                             "id: 0:11,1:1\nevent: checkpoint_flush_error\n"
                             "data: {\"n\": 1}\n\n"
                             "id: 0:13,1:1\nevent: checkpoint_flush_error\n"
                             "data: {\"n\": 3}\n\n"
                             "id: 0:13,1:2\nevent: checkpoint_flush_error\n"
                             "data: line1\ndata: line2\n\n");
    notify_hub_close(s);

    /* Resume after the first event: the two after it, none twice. */
    s = notify_hub_open(h, a, 1, "0:11,1:1", 5500, on_wake, NULL, &full);
    drain(s, out, sizeof out);
    assert_null(strstr(out, "{\"n\": 1}"));
    assert_non_null(strstr(out, "{\"n\": 3}"));
    assert_non_null(strstr(out, "line2"));
    notify_hub_close(s);

    /* A resumed stream also gets what came before the backlog window. */
    s = notify_hub_open(h, a, 1, "0:0,1:0", 5500, on_wake, NULL, &full);
    drain(s, out, sizeof out);
    assert_non_null(strstr(out, "{\"old\": 1}"));
    notify_hub_close(s);

    /* Several threads. */
    const char *ab[] = {"B", "A"};
    s = notify_hub_open(h, ab, 2, "0:12", 5500, on_wake, NULL, &full);
    drain(s, out, sizeof out);
    assert_null(strstr(out, "{\"n\": 2}")); /* offset 11 < 12 */
    assert_non_null(strstr(out, "{\"n\": 3}"));
    notify_hub_close(s);

    notify_hub_stats st;
    int64_t pos[2];
    notify_hub_get_stats(h, &st, pos);
    assert_int_equal(pos[0], 13);
    assert_int_equal(pos[1], 2);
    assert_int_equal(st.events_in, 5);
    assert_int_equal(st.streams, 0);
    notify_hub_free(h);
}

static void test_live_wake_heartbeat(void **state)
{
    (void)state;
    notify_hub *h = hub(1 << 20, 10, 1 << 20);
    const char *a[] = {"A"};
    bool full;
    notify_stream *s = notify_hub_open(h, a, 1, NULL, 0, on_wake, NULL, &full);
    char out[4096];
    drain(s, out, sizeof out);
    assert_string_equal(out, "retry: 3000\n\n");
    suspended = woken = 0;
    assert_int_equal(notify_stream_read(s, out, sizeof out, on_suspend, NULL),
                     0);
    assert_int_equal(suspended, 1);
    add(h, 1, 0, 10, "B", "{}");
    assert_int_equal(woken, 0); /* not its thread */
    add(h, 1, 1, 10, "A", "{\"live\": 1}");
    assert_int_equal(woken, 1);
    drain(s, out, sizeof out);
    assert_non_null(strstr(out, "data: {\"live\": 1}\n\n"));
    notify_hub_heartbeat(h);
    assert_int_equal(woken, 2);
    drain(s, out, sizeof out);
    assert_string_equal(out, ": keep-alive\n\n");
    notify_hub_close(s);
    notify_hub_free(h);
}

static void test_slow_reader_dropped(void **state)
{
    (void)state;
    notify_hub *h = hub(4096, 10, 1 << 20);
    const char *a[] = {"A"}, *b[] = {"B"};
    bool full;
    notify_stream *slow =
        notify_hub_open(h, a, 1, NULL, 0, on_wake, NULL, &full);
    notify_stream *fast =
        notify_hub_open(h, b, 1, NULL, 0, on_wake, NULL, &full);
    char out[8192];
    drain(slow, out, sizeof out);
    drain(fast, out, sizeof out);
    char big[1000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    for (int i = 0; i < 10; i++) {
        add(h, 0, 10 + 2 * i, 0, "A", big);
        add(h, 0, 11 + 2 * i, 0, "B", "{}");
        drain(fast, out, sizeof out);
        assert_non_null(strstr(out, "data: {}"));
    }
    assert_int_equal(
        notify_stream_read(slow, out, sizeof out, on_suspend, NULL), -1);
    notify_hub_stats st;
    notify_hub_get_stats(h, &st, NULL);
    assert_int_equal(st.dropped, 1);
    notify_hub_close(slow);
    notify_hub_close(fast);
    notify_hub_free(h);
}

static void test_limits(void **state)
{
    (void)state;
    notify_hub *h = hub(1 << 20, 2, 300);
    const char *a[] = {"A"};
    bool full;
    notify_stream *s1 = notify_hub_open(h, a, 1, NULL, 0, on_wake, NULL, &full);
    notify_stream *s2 = notify_hub_open(h, a, 1, NULL, 0, on_wake, NULL, &full);
    assert_non_null(s1);
    assert_non_null(s2);
    assert_null(notify_hub_open(h, a, 1, NULL, 0, on_wake, NULL, &full));
    assert_true(full);
    notify_hub_close(s2);
    /* Kept bytes: the oldest events go beyond max_kept_bytes. */
    for (int i = 0; i < 20; i++) {
        add(h, 1, i, 5000, "A", "{\"some\": \"event text\"}");
    }
    notify_hub_stats st;
    notify_hub_get_stats(h, &st, NULL);
    assert_true(st.kept_bytes <= 300);
    assert_true(st.kept_events < 20 && st.kept_events > 0);
    /* Expiry by time. */
    notify_hub_expire(h, 5000 + 1001);
    notify_hub_get_stats(h, &st, NULL);
    assert_int_equal(st.kept_events, 0);
    /* Shutdown ends open streams. */
    notify_hub_shutdown(h);
    char out[64];
    assert_int_equal(notify_stream_read(s1, out, sizeof out, on_suspend, NULL),
                     -1);
    notify_hub_close(s1);
    notify_hub_free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cursor_text),
        cmocka_unit_test(test_backlog_and_resume),
        cmocka_unit_test(test_live_wake_heartbeat),
        cmocka_unit_test(test_slow_reader_dropped),
        cmocka_unit_test(test_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
