/* test_status.c - the metrics text, liveness and readiness (common/status.h)
 * and the HTTP server in front of them (common/status_server.h), over a
 * real loopback socket. */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/clock.h"
#include "common/status.h"
#include "common/status_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static const ng_metric table[] = {
    {"t_messages_total", NULL, NG_METRIC_COUNTER, "messages seen"},
    {"t_rewrites_total", "kind=\"nan\"", NG_METRIC_COUNTER, "by kind"},
    {"t_rewrites_total", "kind=\"infinity\"", NG_METRIC_COUNTER, ""},
    {"t_lag_seconds", NULL, NG_METRIC_GAUGE, "how far behind"},
};
#define N (sizeof table / sizeof table[0])

static char *text(ng_buf *b)
{
    ng_buf_putc(b, '\0');
    return b->data;
}

static void test_metrics_text(void **state)
{
    (void)state;
    ng_status *st = ng_status_new(table, N, 1000);
    assert_non_null(st);
    double v[N] = {12345678, 3, 0, 0.25};
    ng_status_publish(st, v, true, NULL, 10);
    ng_buf b = {0};
    assert_int_equal(ng_status_metrics(st, &b), 0);
    assert_string_equal(
        text(&b), "# HELP nanguard_ready 1 when the process can do its work "
                  "now (see /readyz)\n"
                  "# TYPE nanguard_ready gauge\n"
                  "nanguard_ready 1\n"
                  "# HELP t_messages_total messages seen\n"
                  "# TYPE t_messages_total counter\n"
                  "t_messages_total 12345678\n"
                  "# HELP t_rewrites_total by kind\n"
                  "# TYPE t_rewrites_total counter\n"
                  "t_rewrites_total{kind=\"nan\"} 3\n"
                  "t_rewrites_total{kind=\"infinity\"} 0\n"
                  "# HELP t_lag_seconds how far behind\n"
                  "# TYPE t_lag_seconds gauge\n"
                  "t_lag_seconds 0.25\n");
    ng_buf_free(&b);
    ng_status_free(st);
}

/* A histogram's buckets are cumulative, +Inf last, with _sum and _count;
 * the extra text follows the table. */
static void test_histogram_and_extra(void **state)
{
    (void)state;
    static const double bounds[] = {0.01, 0.1, 1};
    ng_histogram h;
    ng_histogram_init(&h, bounds, 3);
    ng_histogram_observe(&h, 0.005);
    ng_histogram_observe(&h, 0.1); /* on a bound: in that bucket */
    ng_histogram_observe(&h, 0.5);
    ng_histogram_observe(&h, 7);
    ng_buf b = {0};
    assert_int_equal(
        ng_histogram_write(&b, &h, "t_write_seconds", "sink=\"pg\"", "time"),
        0);
    assert_int_equal(ng_metrics_series(&b, "t_lag", "partition=\"3\"", 42), 0);
    ng_status *st = ng_status_new(table, 1, 1000);
    double v[1] = {1};
    ng_status_publish(st, v, true, NULL, 10);
    assert_int_equal(ng_status_set_extra(st, b.data, b.len), 0);
    ng_buf_free(&b);
    assert_int_equal(ng_status_metrics(st, &b), 0);
    const char *want = "t_messages_total 1\n"
                       "# HELP t_write_seconds time\n"
                       "# TYPE t_write_seconds histogram\n"
                       "t_write_seconds_bucket{sink=\"pg\",le=\"0.01\"} 1\n"
                       "t_write_seconds_bucket{sink=\"pg\",le=\"0.1\"} 2\n"
                       "t_write_seconds_bucket{sink=\"pg\",le=\"1\"} 3\n"
                       "t_write_seconds_bucket{sink=\"pg\",le=\"+Inf\"} 4\n"
                       "t_write_seconds_sum{sink=\"pg\"} 7.6050000000000004\n"
                       "t_write_seconds_count{sink=\"pg\"} 4\n"
                       "t_lag{partition=\"3\"} 42\n";
    const char *all = text(&b);
    assert_non_null(strstr(all, want));
    assert_string_equal(strstr(all, want), want); /* and nothing after */
    ng_buf_free(&b);
    /* Replaced, not appended; empty clears it. */
    assert_int_equal(ng_status_set_extra(st, "", 0), 0);
    assert_int_equal(ng_status_metrics(st, &b), 0);
    assert_null(strstr(text(&b), "t_write_seconds"));
    ng_buf_free(&b);
    ng_status_free(st);
}

static void test_health(void **state)
{
    (void)state;
    ng_status *st = ng_status_new(table, N, 1000);
    double v[N] = {0};
    ng_buf b = {0};
    /* Before the first turn: alive, not ready. */
    assert_int_equal(ng_status_health(st, false, 5, &b), 200);
    assert_string_equal(text(&b), "{\"status\":\"ok\",\"last_turn_ms\":0}\n");
    ng_buf_clear(&b);
    assert_int_equal(ng_status_health(st, true, 5, &b), 503);
    assert_string_equal(text(&b), "{\"status\":\"unavailable\",\"reason\":"
                                  "\"starting\",\"last_turn_ms\":0}\n");
    ng_buf_clear(&b);

    ng_status_publish(st, v, false, "PostgreSQL \"down\"", 100);
    assert_int_equal(ng_status_health(st, false, 600, &b), 200);
    ng_buf_clear(&b);
    assert_int_equal(ng_status_health(st, true, 600, &b), 503);
    assert_string_equal(text(&b),
                        "{\"status\":\"unavailable\",\"reason\":\"PostgreSQL "
                        "\\\"down\\\"\",\"last_turn_ms\":500}\n");
    ng_buf_clear(&b);

    ng_status_publish(st, v, true, "ignored when ready", 700);
    assert_int_equal(ng_status_health(st, true, 1700, &b), 200);
    assert_string_equal(text(&b),
                        "{\"status\":\"ok\",\"last_turn_ms\":1000}\n");
    ng_buf_clear(&b);
    /* A loop that stopped turning: not alive, and so not ready either. */
    assert_int_equal(ng_status_health(st, false, 1701, &b), 503);
    assert_string_equal(text(&b), "{\"status\":\"unavailable\",\"reason\":"
                                  "\"the main loop has not turned for 1001 "
                                  "ms\",\"last_turn_ms\":1001}\n");
    ng_buf_clear(&b);
    assert_int_equal(ng_status_health(st, true, 1701, &b), 503);
    /* A clock that reads earlier than the last turn is no age at all. */
    ng_buf_clear(&b);
    assert_int_equal(ng_status_health(st, false, 1, &b), 200);
    ng_buf_free(&b);
    ng_status_free(st);
}

/* A TCP connection to 127.0.0.1:port. */
static int connect_local(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

/* One HTTP/1.0 request to 127.0.0.1:port; returns the status code and
 * copies the body (after the blank line) into body. */
static int http(int port, const char *method, const char *path, char *body,
                size_t cap)
{
    int fd = connect_local(port);
    char req[256];
    int n = snprintf(req, sizeof req, "%s %s HTTP/1.0\r\nHost: x\r\n\r\n",
                     method, path);
    assert_int_equal(write(fd, req, (size_t)n), n);
    char resp[8192];
    size_t got = 0;
    ssize_t r;
    while (got < sizeof resp - 1 &&
           (r = read(fd, resp + got, sizeof resp - 1 - got)) > 0) {
        got += (size_t)r;
    }
    resp[got] = '\0';
    close(fd);
    int code = 0;
    assert_int_equal(sscanf(resp, "HTTP/1.%*d %d", &code), 1);
    const char *sep = strstr(resp, "\r\n\r\n");
    snprintf(body, cap, "%s", sep ? sep + 4 : "");
    return code;
}

static void test_answer(void **state)
{
    (void)state;
    ng_status *st = ng_status_new(table, N, 1000);
    ng_buf b = {0};
    const char *type = NULL;
    assert_int_equal(ng_status_answer(st, "/events", 5, &b, &type), 0);
    assert_int_equal(b.len, 0);
    assert_int_equal(ng_status_answer(st, "/metrics", 5, &b, &type), 200);
    assert_string_equal(type, "text/plain; version=0.0.4; charset=utf-8");
    assert_non_null(strstr(text(&b), "# TYPE nanguard_ready gauge"));
    ng_buf_clear(&b);
    assert_int_equal(ng_status_answer(st, "/livez", 5, &b, &type), 200);
    assert_string_equal(type, "application/json");
    ng_buf_clear(&b);
    /* Not ready before the first turn. */
    assert_int_equal(ng_status_answer(st, "/readyz", 5, &b, &type), 503);
    ng_buf_free(&b);
    ng_status_free(st);
}

static void test_server(void **state)
{
    (void)state;
    ng_status *st = ng_status_new(table, N, 60000);
    ng_error err = {0};
    ng_status_server *s = ng_status_server_start("127.0.0.1:0", st, &err);
    assert_non_null(s);
    int port = ng_status_server_port(s);
    assert_true(port > 0);
    char body[8192];

    assert_int_equal(http(port, "GET", "/healthz", body, sizeof body), 200);
    assert_int_equal(http(port, "GET", "/readyz", body, sizeof body), 503);
    assert_non_null(strstr(body, "\"reason\":\"starting\""));

    double v[N] = {7, 1, 2, 0};
    ng_status_publish(st, v, true, NULL, ng_now_ms());
    assert_int_equal(http(port, "GET", "/readyz", body, sizeof body), 200);
    assert_int_equal(http(port, "GET", "/metrics", body, sizeof body), 200);
    assert_non_null(strstr(body, "\nt_messages_total 7\n"));
    assert_non_null(strstr(body, "\nt_rewrites_total{kind=\"infinity\"} 2\n"));
    assert_non_null(strstr(body, "\nnanguard_ready 1\n"));

    assert_int_equal(http(port, "GET", "/nothing", body, sizeof body), 404);
    assert_int_equal(http(port, "POST", "/metrics", body, sizeof body), 405);

    /* The port is taken now: a second server on it is refused. */
    char taken[32];
    snprintf(taken, sizeof taken, "127.0.0.1:%d", port);
    ng_error err2 = {0};
    assert_null(ng_status_server_start(taken, st, &err2));
    assert_int_equal(err2.klass, NG_ERR_CONFIG);
    assert_non_null(strstr(err2.message, taken));

    ng_status_server_stop(s);
    ng_status_free(st);
}

static void test_listen_addresses(void **state)
{
    (void)state;
    ng_status *st = ng_status_new(table, N, 60000);
    const char *bad[] = {"8080",
                         "localhost",
                         ":",
                         "127.0.0.1:port",
                         "127.0.0.1:99999",
                         "[::1]8080",
                         "no.such.host.:80"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ng_error err = {0};
        ng_status_server *s = ng_status_server_start(bad[i], st, &err);
        if (s != NULL) {
            fail_msg("\"%s\" was taken", bad[i]);
        }
        assert_int_equal(err.klass, NG_ERR_CONFIG);
        assert_non_null(strstr(err.message, bad[i]));
    }
    const char *good[] = {":0", "127.0.0.1:0", "[::1]:0", "localhost:0"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        ng_error err = {0};
        ng_status_server *s = ng_status_server_start(good[i], st, &err);
        if (s == NULL) {
            /* a machine without IPv6 on loopback cannot take [::1] */
            if (strcmp(good[i], "[::1]:0") == 0) {
                continue;
            }
            fail_msg("\"%s\" refused: %s", good[i], err.message);
        }
        assert_true(ng_status_server_port(s) > 0);
        ng_status_server_stop(s);
    }
    ng_status_free(st);
}

static int connect_idle(int port)
{
    int fd = connect_local(port);
    static const char part[] = "GET /healthz HTTP/1.1\r\n";
    assert_int_equal(write(fd, part, sizeof part - 1), sizeof part - 1);
    struct timeval tv = {.tv_sec = 0, .tv_usec = 500000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

/* With an open-file limit of 400 the table holds 16 connections: more idle
 * clients than libmicrohttpd's own table (16 + 64) close the oldest, and a
 * probe is answered at once instead of after a slow client's deadline.
 * Last, since the hard limit cannot be raised back. */
static void test_server_full(void **state)
{
    (void)state;
    struct rlimit rl = {.rlim_cur = 400, .rlim_max = 400};
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
    assert_int_equal(ng_fd_limit_raise(100000), 400);
    ng_status *st = ng_status_new(table, N, 60000);
    ng_error err = {0};
    ng_status_server *s = ng_status_server_start("127.0.0.1:0", st, &err);
    assert_non_null(s);
    int port = ng_status_server_port(s);
    int idle[100];
    for (size_t i = 0; i < 100; i++) {
        idle[i] = connect_idle(port);
    }
    char body[8192];
    uint64_t t0 = ng_now_ms();
    assert_int_equal(http(port, "GET", "/healthz", body, sizeof body), 200);
    assert_true(ng_since_ms(ng_now_ms(), t0) < 1000);
    char c;
    assert_int_equal(read(idle[0], &c, 1), 0);   /* the oldest: closed */
    assert_int_equal(read(idle[99], &c, 1), -1); /* the newest: waiting */
    for (size_t i = 0; i < 100; i++) {
        close(idle[i]);
    }
    ng_status_server_stop(s);
    ng_status_free(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metrics_text),
        cmocka_unit_test(test_histogram_and_extra),
        cmocka_unit_test(test_health),
        cmocka_unit_test(test_answer),
        cmocka_unit_test(test_server),
        cmocka_unit_test(test_listen_addresses),
        cmocka_unit_test(test_server_full),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
