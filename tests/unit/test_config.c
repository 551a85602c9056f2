/* test_config.c - precedence: command line, environment, file, defaults. */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/config.h"

static const ng_option table[] = {
    {"brokers", NG_OPT_STRING, NULL, "Kafka bootstrap servers"},
    {"batch-rows", NG_OPT_INT, "500", "rows per batch"},
    {"batch-ms", NG_OPT_INT, "200", "batch age"},
    {"group", NG_OPT_STRING, "nanguard", "consumer group"},
    {"create-table", NG_OPT_FLAG, "false", "create the table"},
};

static ng_config *parse(int argc, char **argv, int *rc, ng_error *err)
{
    ng_config *c = ng_config_new(table, sizeof table / sizeof table[0]);
    assert_non_null(c);
    *rc = ng_config_parse(c, argc, argv, err);
    return c;
}

static void test_precedence(void **state)
{
    (void)state;
    char path[] = "/tmp/ng_config_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "# settings\nbatch-rows = 100\nbatch-ms=300\n"
                       "group = from-file\nkafka.session.timeout.ms = 6000\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    setenv("NANGUARD_BATCH_MS", "400", 1);
    setenv("NANGUARD_GROUP", "from-env", 1);
    char *argv[] = {"worker",        "--config", path,       "--group",
                    "from-cli",      "-X",       "acks=all", "--create-table",
                    "--brokers=h:1", "file1",    NULL};
    int rc;
    ng_error err = {0};
    ng_config *c = parse(10, argv, &rc, &err);
    assert_int_equal(rc, 0);
    assert_int_equal(ng_config_int(c, "batch-rows"), 100); /* file */
    assert_int_equal(ng_config_int(c, "batch-ms"), 400);   /* env */
    assert_string_equal(ng_config_get(c, "group"), "from-cli");
    assert_string_equal(ng_config_get(c, "brokers"), "h:1");
    assert_true(ng_config_flag(c, "create-table"));
    assert_int_equal(ng_config_kafka_count(c), 2);
    const char *k, *v;
    ng_config_kafka_at(c, 0, &k, &v);
    assert_string_equal(k, "session.timeout.ms");
    assert_string_equal(v, "6000");
    ng_config_kafka_at(c, 1, &k, &v);
    assert_string_equal(k, "acks");
    assert_int_equal(ng_config_args_count(c), 1);
    assert_string_equal(ng_config_arg(c, 0), "file1");
    ng_config_free(c);
    unsetenv("NANGUARD_BATCH_MS");
    unsetenv("NANGUARD_GROUP");
    unlink(path);
}

static void test_errors(void **state)
{
    (void)state;
    int rc;
    ng_error err = {0};
    char *bad_opt[] = {"w", "--nope", "1", NULL};
    ng_config *c = parse(3, bad_opt, &rc, &err);
    assert_int_equal(rc, -1);
    assert_string_equal(err.code, "usage");
    assert_non_null(strstr(err.message, "--nope"));
    ng_config_free(c);

    char *bad_int[] = {"w", "--batch-rows", "many", NULL};
    c = parse(3, bad_int, &rc, &err);
    assert_int_equal(rc, -1);
    assert_non_null(strstr(err.message, "whole number"));
    ng_config_free(c);

    char *missing_file[] = {"w", "--config", "/nonexistent/x.conf", NULL};
    c = parse(3, missing_file, &rc, &err);
    assert_int_equal(rc, -1);
    assert_int_equal(err.klass, NG_ERR_CONFIG);
    ng_config_free(c);

    char *help[] = {"w", "--batch-rows", "5", "--help", NULL};
    c = parse(4, help, &rc, &err);
    assert_int_equal(rc, 1);
    ng_config_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_precedence),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
