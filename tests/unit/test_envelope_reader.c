/* test_envelope_reader.c - blobs and writes of an envelope, metadata's
 * step and the completeness of its checkpoint (envelope_reader). */
#include "filter/sanitize/envelope.h"
#include "filter/sanitize/sanitize.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

struct fixture {
    sanitize *h;
    envelope_reader *r;
};

static int setup(void **state)
{
    static struct fixture f;
    f.h = sanitize_new(NULL);
    f.r = envelope_reader_new(0);
    *state = &f;
    return f.h && f.r ? 0 : -1;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    sanitize_free(f->h);
    envelope_reader_free(f->r);
    return 0;
}

/* Sanitizes in and reads it; returns envelope_reader_read's result. */
static int read_env(struct fixture *f, const char *in, envelope *env, char *why,
                    size_t why_len)
{
    sanitize_reset(f->h);
    assert_int_equal(sanitize_feed(f->h, in, strlen(in)), SANITIZE_OK);
    assert_int_equal(sanitize_finish(f->h), SANITIZE_OK);
    why[0] = '\0';
    return envelope_reader_read(f->r, f->h, env, why, why_len);
}

#define HEAD "{\"thread_id\": \"t\", \"checkpoint_id\": \"c\", "

static void test_blobs_and_writes(void **state)
{
    struct fixture *f = *state;
    /* "aGk=" is "hi"; "eyJ4IjogTmFOfQ==" is {"x": NaN}; "AAE" is 00 01
     * (no padding). */
    const char *in = HEAD
        "\"checkpoint\": {\"channel_values\": {\"n\": 1.5, \"\\u0061\": 2},"
        " \"channel_versions\": {\"n\": \"1\", \"a\": \"1\", \"m\": \"2\","
        " \"e\": \"3\", \"j\": \"4\"}},"
        " \"metadata\": {\"source\": \"loop\", \"step\": 3},"
        " \"blobs\": [{\"channel\": \"m\", \"version\": \"2\", \"type\":"
        " \"msgpack\", \"blob\": \"aGk=\"}, {\"channel\": \"e\","
        " \"version\": \"3\", \"type\": \"empty\", \"blob\": null},"
        " {\"blob\": \"eyJ4IjogTmFOfQ==\", \"type\": \"json\", \"channel\":"
        " \"j\", \"version\": \"4\"}],"
        " \"writes\": [{\"task_id\": \"k\", \"task_path\": \"~p\", \"idx\":"
        " -1, \"channel\": \"__error__\", \"type\": null, \"blob\":"
        " \"AAE\"}, {\"task_id\": \"k\", \"idx\": 0, \"channel\": \"n\","
        " \"type\": \"msgpack\", \"blob\": \"\"}]}";
    envelope env;
    char why[200];
    assert_int_equal(read_env(f, in, &env, why, sizeof why), 0);
    assert_int_equal(env.nblobs, 3);
    assert_string_equal(env.blobs[0].channel, "m");
    assert_string_equal(env.blobs[0].version, "2");
    assert_string_equal(env.blobs[0].type, "msgpack");
    assert_int_equal(env.blobs[0].blob_len, 2);
    assert_memory_equal(env.blobs[0].blob, "hi", 2);
    assert_null(env.blobs[1].blob);
    assert_string_equal(env.blobs[1].type, "empty");
    /* A json blob is repaired like the checkpoint, and counted. */
    assert_int_equal(env.blobs[2].blob_len, strlen("{\"x\": null}"));
    assert_memory_equal(env.blobs[2].blob, "{\"x\": null}",
                        env.blobs[2].blob_len);
    assert_int_equal(envelope_reader_count(f->r, SANITIZE_NAN), 1);
    assert_int_equal(env.nwrites, 2);
    assert_string_equal(env.writes[0].task_id, "k");
    assert_string_equal(env.writes[0].task_path, "~p");
    assert_int_equal(env.writes[0].idx, -1);
    assert_string_equal(env.writes[0].channel, "__error__");
    assert_null(env.writes[0].type);
    assert_int_equal(env.writes[0].blob_len, 2);
    assert_memory_equal(env.writes[0].blob, "\0\1", 2);
    assert_string_equal(env.writes[1].task_path, "");
    assert_int_equal(env.writes[1].blob_len, 0);
    assert_non_null(env.writes[1].blob);
    assert_true(env.has_step);
    /* "a" is inline (written \u0061), the others are blobs. */
    assert_null(env.missing_channel);
}

static void test_incomplete_and_step(void **state)
{
    struct fixture *f = *state;
    envelope env;
    char why[200];
    /* messages is named, held neither inline nor in blobs. */
    assert_int_equal(
        read_env(f,
                 HEAD "\"checkpoint\": {\"channel_versions\": {\"x\": 1, "
                      "\"messages\": \"2\"}, \"channel_values\": {\"x\": "
                      "[{\"channel_versions\": 1}]}}}",
                 &env, why, sizeof why),
        0);
    assert_non_null(env.missing_channel);
    assert_string_equal(env.missing_channel, "messages");
    assert_false(env.has_step);
    /* No channel_versions: nothing to check. A step nested deeper does not
     * count. */
    assert_int_equal(read_env(f,
                              HEAD "\"checkpoint\": {}, \"metadata\": {\"a\": "
                                   "{\"step\": 1}}}",
                              &env, why, sizeof why),
                     0);
    assert_null(env.missing_channel);
    assert_false(env.has_step);
    assert_int_equal(env.nblobs, 0);
    assert_int_equal(env.nwrites, 0);
    /* The reader is reused: the last read's blobs are gone. */
    assert_null(env.blobs);
}

static void test_invalid(void **state)
{
    struct fixture *f = *state;
    static const struct {
        const char *tail;
        const char *why;
    } cases[] = {
        {"\"blobs\": {}}", "field 'blobs' must be an array"},
        {"\"blobs\": [1]}", "blobs[0] must be an object"},
        {"\"blobs\": [{\"channel\": \"a\", \"type\": \"t\", \"blob\": null}]}",
         "blobs[0]: missing required field 'version'"},
        {"\"blobs\": [{\"channel\": \"a\", \"version\": 1, \"type\": \"t\","
         " \"blob\": null}]}",
         "blobs[0]: 'version' must be a string"},
        {"\"blobs\": [{\"channel\": \"a\", \"version\": \"1\", \"type\": "
         "\"t\", \"blob\": \"a*==\"}]}",
         "blobs[0]: 'blob' is not base64"},
        {"\"blobs\": [{\"channel\": \"a\", \"version\": \"1\", \"type\": "
         "\"json\", \"blob\": \"e30=\"}, {\"channel\": \"b\", \"version\": "
         "\"1\", \"type\": \"json\", \"blob\": \"bmFu\"}]}",
         "blobs[1]: a json blob that is not JSON: byte 0: "},
        {"\"writes\": [{\"task_id\": \"k\", \"idx\": 1.5, \"channel\": \"c\","
         " \"blob\": \"\"}]}",
         "writes[0]: 'idx' must be an integer"},
        {"\"writes\": [{\"task_id\": \"k\", \"idx\": 2147483648, \"channel\":"
         " \"c\", \"blob\": \"\"}]}",
         "writes[0]: 'idx' must be an integer"},
        {"\"writes\": [{\"task_id\": \"k\", \"idx\": 1, \"channel\": \"c\","
         " \"blob\": null}]}",
         "writes[0]: 'blob' must be a base64 string"},
        {"\"writes\": [{\"idx\": 1, \"channel\": \"c\", \"blob\": \"\"}]}",
         "writes[0]: missing required field 'task_id'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char in[512];
        snprintf(in, sizeof in, HEAD "\"checkpoint\": {}, %s", cases[i].tail);
        envelope env;
        char why[200];
        assert_int_equal(read_env(f, in, &env, why, sizeof why), -1);
        if (strncmp(why, cases[i].why, strlen(cases[i].why)) != 0) {
            fail_msg("case %zu: got '%s', want '%s'", i, why, cases[i].why);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blobs_and_writes),
        cmocka_unit_test(test_incomplete_and_step),
        cmocka_unit_test(test_invalid),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
