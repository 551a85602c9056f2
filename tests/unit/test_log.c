/* test_log.c - the JSON log lines: untrusted text is cut to
 * NG_LOG_MAX_FIELD bytes with its full length noted, and every line stays
 * valid JSON. */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yajl/yajl_tree.h>

#include "common/log.h"

/* What one ng_log call wrote on stderr, as a NUL-terminated line. */
static char *captured;

static void capture_begin(FILE **f, int *saved)
{
    fflush(stderr);
    *f = tmpfile();
    assert_non_null(*f);
    *saved = dup(STDERR_FILENO);
    assert_true(*saved >= 0);
    assert_true(dup2(fileno(*f), STDERR_FILENO) >= 0);
}

static void capture_end(FILE *f, int saved)
{
    fflush(stderr);
    assert_true(dup2(saved, STDERR_FILENO) >= 0);
    close(saved);
    long n = ftell(f);
    assert_true(n > 0);
    free(captured);
    captured = malloc((size_t)n + 1);
    assert_non_null(captured);
    rewind(f);
    assert_int_equal(fread(captured, 1, (size_t)n, f), (size_t)n);
    captured[n] = '\0';
    fclose(f);
}

static yajl_val parse_line(void)
{
    char err[128];
    size_t n = strlen(captured);
    assert_true(n > 0 && captured[n - 1] == '\n');
    assert_null(memchr(captured, '\n', n - 1)); /* one line */
    yajl_val doc = yajl_tree_parse(captured, err, sizeof err);
    if (doc == NULL) {
        fail_msg("not JSON: %s", err);
    }
    return doc;
}

static const char *get_string(yajl_val doc, const char *key)
{
    const char *path[] = {key, NULL};
    yajl_val v = yajl_tree_get(doc, path, yajl_t_string);
    return v ? YAJL_GET_STRING(v) : NULL;
}

static long long get_int(yajl_val doc, const char *key)
{
    const char *path[] = {key, NULL};
    yajl_val v = yajl_tree_get(doc, path, yajl_t_number);
    return v ? YAJL_GET_INTEGER(v) : -1;
}

static void test_short_fields_whole(void **state)
{
    (void)state;
    FILE *f;
    int saved;
    capture_begin(&f, &saved);
    ng_log(NG_LOG_WARN, "dead-lettering message", "thread_id", "t-1", "offset#",
           "42", "sqlstate", NULL, NULL);
    capture_end(f, saved);
    yajl_val doc = parse_line();
    assert_string_equal(get_string(doc, "msg"), "dead-lettering message");
    assert_string_equal(get_string(doc, "thread_id"), "t-1");
    assert_int_equal(get_int(doc, "offset"), 42);
    assert_int_equal(get_int(doc, "thread_id_bytes"), -1);
    assert_null(strstr(captured, "_bytes"));
    yajl_tree_free(doc);
}

/* A 100 KB Kafka key does not make a 100 KB line. */
static void test_long_value_cut(void **state)
{
    (void)state;
    enum { N = 100 * 1024 };
    char *key = malloc(N + 1);
    assert_non_null(key);
    memset(key, 'k', N);
    key[N] = '\0';
    FILE *f;
    int saved;
    capture_begin(&f, &saved);
    ng_log(NG_LOG_WARN, "dead-lettering message", "thread_id", key, "topic",
           "cp", NULL);
    capture_end(f, saved);
    assert_true(strlen(captured) < NG_LOG_MAX_FIELD + 300);
    yajl_val doc = parse_line();
    const char *tid = get_string(doc, "thread_id");
    assert_non_null(tid);
    assert_int_equal(strlen(tid), NG_LOG_MAX_FIELD);
    assert_memory_equal(tid, key, NG_LOG_MAX_FIELD);
    assert_int_equal(get_int(doc, "thread_id_bytes"), N);
    assert_string_equal(get_string(doc, "topic"), "cp");
    yajl_tree_free(doc);
    free(key);
}

/* The cut never splits a character: no U+FFFD appears. */
static void test_cut_at_character(void **state)
{
    (void)state;
    enum { CHARS = 1000 }; /* "€" is 3 bytes: 3000 bytes */
    char *v = malloc(CHARS * 3 + 1);
    assert_non_null(v);
    for (int i = 0; i < CHARS; i++) {
        memcpy(v + 3 * i, "\xe2\x82\xac", 3);
    }
    v[CHARS * 3] = '\0';
    FILE *f;
    int saved;
    capture_begin(&f, &saved);
    ng_log(NG_LOG_ERROR, v, "reason", v, NULL);
    capture_end(f, saved);
    yajl_val doc = parse_line();
    const char *msg = get_string(doc, "msg");
    const char *reason = get_string(doc, "reason");
    assert_non_null(msg);
    assert_non_null(reason);
    size_t want = NG_LOG_MAX_FIELD / 3 * 3;
    assert_int_equal(strlen(msg), want);
    assert_int_equal(strlen(reason), want);
    assert_null(strstr(reason, "\xef\xbf\xbd"));
    assert_int_equal(get_int(doc, "msg_bytes"), CHARS * 3);
    assert_int_equal(get_int(doc, "reason_bytes"), CHARS * 3);
    yajl_tree_free(doc);
    free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_short_fields_whole),
        cmocka_unit_test(test_long_value_cut),
        cmocka_unit_test(test_cut_at_character),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    free(captured);
    return rc;
}
