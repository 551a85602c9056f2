/* test_sanitize.c - the sanitizer contract, case by case. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "filter/sanitize/envelope.h"
#include "filter/sanitize/sanitize.h"

/* The result of one run over an input, fed in chunks of `chunk` bytes
 * (0: all at once). */
struct run {
    sanitize_status status;
    uint64_t offset;
    char out[8192];
    size_t out_len;
    uint64_t counts[SANITIZE_KIND_COUNT];
};

static void run_input(sanitize *h, const char *in, size_t len, size_t chunk,
                      struct run *r)
{
    sanitize_reset(h);
    sanitize_status st = SANITIZE_OK;
    size_t step = chunk ? chunk : (len ? len : 1);
    for (size_t i = 0; i < len && st == SANITIZE_OK; i += step) {
        size_t n = len - i < step ? len - i : step;
        st = sanitize_feed(h, in + i, n);
    }
    if (st == SANITIZE_OK) {
        st = sanitize_finish(h);
    }
    r->status = st;
    r->offset = sanitize_last_error(h)->offset;
    size_t out_len;
    const char *out = sanitize_output(h, &out_len);
    assert_true(out_len < sizeof r->out);
    memcpy(r->out, out, out_len);
    r->out[out_len] = '\0';
    r->out_len = out_len;
    for (int k = 0; k < SANITIZE_KIND_COUNT; k++) {
        r->counts[k] = sanitize_count(h, (sanitize_kind)k);
    }
}

/* The feed mode every handle of this run of the suite uses: main runs the
 * whole suite with the skeleton feed, then with the full feed. */
static int full_feed;

static sanitize *new_with(sanitize_options o)
{
    o.full_feed = full_feed;
    sanitize *h = sanitize_new(&o);
    assert_non_null(h);
    return h;
}

static sanitize *new_handle(int multiple)
{
    return new_with((sanitize_options){.multiple_values = multiple});
}

/* ------------------------------------------------------------------------
 * Repairs: input, expected output, kind and count of rewrites.
 */
struct repair_case {
    const char *in;
    const char *out;
    int kind; /* -1: none */
    unsigned count;
};

static const struct repair_case repairs[] = {
    /* bare non-finite literals */
    {"NaN", "null", SANITIZE_NAN, 1},
    {"[NaN]", "[null]", SANITIZE_NAN, 1},
    {"[+NaN, -NaN]", "[null, null]", SANITIZE_NAN, 2},
    {"[Infinity]", "[null]", SANITIZE_INFINITY, 1},
    {"[+Infinity,-Infinity]", "[null,null]", SANITIZE_INFINITY, 2},
    {"{\"a\":-Infinity}", "{\"a\":null}", SANITIZE_INFINITY, 1},
    /* numbers out of range */
    {"[1e400]", "[null]", SANITIZE_OUT_OF_RANGE, 1},
    {"[-1e309]", "[null]", SANITIZE_OUT_OF_RANGE, 1},
    {"[1.7976931348623159e308]", "[null]", SANITIZE_OUT_OF_RANGE, 1},
    {"[1e-16384]", "[null]", SANITIZE_OUT_OF_RANGE, 1},
    {"[1.5e-16383]", "[null]", SANITIZE_OUT_OF_RANGE, 1},
    {"[0e99999999999]", "[null]", SANITIZE_OUT_OF_RANGE, 1},
    {"[1E+400, 2]", "[null, 2]", SANITIZE_OUT_OF_RANGE, 1},
    /* numbers in range stay as they are */
    {"[1.7976931348623157e308]", "[1.7976931348623157e308]", -1, 0},
    {"[1.7976931348623158e308]", "[1.7976931348623158e308]", -1, 0},
    {"[1e-16383, 0e-16383, 1e-400]", "[1e-16383, 0e-16383, 1e-400]", -1, 0},
    {"[0e400]", "[0e400]", -1, 0},
    {"[1.50000000000000000001]", "[1.50000000000000000001]", -1, 0},
    {"[-0, 1E+2, 1e-2, 0.0, -0.0e-0]", "[-0, 1E+2, 1e-2, 0.0, -0.0e-0]", -1, 0},
    {"123456789012345678901234567890", "123456789012345678901234567890", -1, 0},
    /* escapes */
    {"[\"\\u0000\"]", "[\"\\ufffd\"]", SANITIZE_NUL_ESCAPE, 1},
    {"[\"a\\u0000b\\u0000\"]", "[\"a\\ufffdb\\ufffd\"]", SANITIZE_NUL_ESCAPE,
     2},
    {"[\"\\ud800\"]", "[\"\\ufffd\"]", SANITIZE_LONE_SURROGATE, 1},
    {"[\"\\udc00\"]", "[\"\\ufffd\"]", SANITIZE_LONE_SURROGATE, 1},
    {"[\"\\uD800x\"]", "[\"\\ufffdx\"]", SANITIZE_LONE_SURROGATE, 1},
    {"[\"\\ud800\\n\"]", "[\"\\ufffd\\n\"]", SANITIZE_LONE_SURROGATE, 1},
    {"[\"\\ud800\\u0041\"]", "[\"\\ufffd\\u0041\"]", SANITIZE_LONE_SURROGATE,
     1},
    {"[\"\\ud800\\ud800\\udc00\"]", "[\"\\ufffd\\ud800\\udc00\"]",
     SANITIZE_LONE_SURROGATE, 1},
    {"[\"\\udc00\\ud800\"]", "[\"\\ufffd\\ufffd\"]", SANITIZE_LONE_SURROGATE,
     2},
    {"{\"\\ud800\":1}", "{\"\\ufffd\":1}", SANITIZE_LONE_SURROGATE, 1},
    {"[\"\\ud83d\\ude00\"]", "[\"\\ud83d\\ude00\"]", -1, 0},
    {"[\"\\u00e9\\t\\\"\\\\\\/\"]", "[\"\\u00e9\\t\\\"\\\\\\/\"]", -1, 0},
    /* invalid UTF-8: one U+FFFD per maximal invalid subpart */
    {"[\"\xff\"]", "[\"\xEF\xBF\xBD\"]", SANITIZE_INVALID_UTF8, 1},
    {"[\"a\xe2\x82\"]", "[\"a\xEF\xBF\xBD\"]", SANITIZE_INVALID_UTF8, 1},
    {"[\"\xe2\x82x\"]", "[\"\xEF\xBF\xBDx\"]", SANITIZE_INVALID_UTF8, 1},
    {"[\"\xed\xa0\x80\"]", "[\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\"]",
     SANITIZE_INVALID_UTF8, 3},
    {"[\"\xc0\xaf\"]", "[\"\xEF\xBF\xBD\xEF\xBF\xBD\"]", SANITIZE_INVALID_UTF8,
     2},
    {"[\"\xf4\x90\x80\x80\"]",
     "[\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\"]",
     SANITIZE_INVALID_UTF8, 4},
    {"[\"\xf0\x9f\x98\"]", "[\"\xEF\xBF\xBD\"]", SANITIZE_INVALID_UTF8, 1},
    {"[\"caf\xc3\xa9 \xe4\xb8\x96 \xf0\x9f\x98\x80\"]",
     "[\"caf\xc3\xa9 \xe4\xb8\x96 \xf0\x9f\x98\x80\"]", -1, 0},
    /* literal text inside strings is never touched */
    {"[\"NaN\", \"Infinity\", \"-Infinity\"]",
     "[\"NaN\", \"Infinity\", \"-Infinity\"]", -1, 0},
    {"[\"a\\\"NaN\", \"\\\\\", NaN]", "[\"a\\\"NaN\", \"\\\\\", null]",
     SANITIZE_NAN, 1},
    {"{\"NaN\": \"Infinity\", \"Infinity\": NaN}",
     "{\"NaN\": \"Infinity\", \"Infinity\": null}", SANITIZE_NAN, 1},
    {"[true, false, null]", "[true, false, null]", -1, 0},
    /* white space and key order are kept */
    {" {\n\t\"b\" : [ NaN ] ,\r\n \"a\":1 } ",
     " {\n\t\"b\" : [ null ] ,\r\n \"a\":1 } ", SANITIZE_NAN, 1},
};

static void check_repair(sanitize *h, const struct repair_case *c, size_t chunk)
{
    struct run r;
    run_input(h, c->in, strlen(c->in), chunk, &r);
    if (r.status != SANITIZE_OK) {
        fail_msg("%s (chunk %zu): status %d: %s", c->in, chunk, r.status,
                 sanitize_last_error(h)->message);
    }
    if (strcmp(r.out, c->out) != 0) {
        fail_msg("%s (chunk %zu): got %s, want %s", c->in, chunk, r.out,
                 c->out);
    }
    for (int k = 0; k < SANITIZE_KIND_COUNT; k++) {
        uint64_t want = k == c->kind ? c->count : 0;
        if (r.counts[k] != want) {
            fail_msg("%s (chunk %zu): %s count %llu, want %llu", c->in, chunk,
                     sanitize_kind_name((sanitize_kind)k),
                     (unsigned long long)r.counts[k], (unsigned long long)want);
        }
    }
}

static void test_repairs(void **state)
{
    (void)state;
    sanitize *h = new_handle(0);
    for (size_t i = 0; i < sizeof repairs / sizeof repairs[0]; i++) {
        check_repair(h, &repairs[i], 0);
    }
    sanitize_free(h);
}

/* Every input of the table, cut into chunks of every size: a literal or an
 * escape split across two chunks gives the same output as one call. */
static void test_repairs_every_chunk_size(void **state)
{
    (void)state;
    sanitize *h = new_handle(0);
    for (size_t i = 0; i < sizeof repairs / sizeof repairs[0]; i++) {
        size_t len = strlen(repairs[i].in);
        for (size_t chunk = 1; chunk <= len; chunk++) {
            check_repair(h, &repairs[i], chunk);
        }
    }
    sanitize_free(h);
}

/* Two chunks, cut at every byte position. */
static void test_split_at_every_position(void **state)
{
    (void)state;
    static const char *const inputs[] = {
        "{\"thread_id\": \"t\\u00e9\", \"v\": [NaN, -Infinity, 1e400, "
        "1.25e-3, \"\\ud800\\udc00\\u0000\", \"\xe2\x82\xac\xff\", true]}",
        "[-NaN,+Infinity,Infinity,\"\\uDBFF\\uDFFF\",\"\\ud800\",-0.5E+10]",
    };
    sanitize *h = new_handle(0);
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
        size_t len = strlen(inputs[i]);
        struct run whole;
        run_input(h, inputs[i], len, 0, &whole);
        assert_int_equal(whole.status, SANITIZE_OK);
        for (size_t cut = 0; cut <= len; cut++) {
            sanitize_reset(h);
            assert_int_equal(sanitize_feed(h, inputs[i], cut), SANITIZE_OK);
            assert_int_equal(sanitize_feed(h, inputs[i] + cut, len - cut),
                             SANITIZE_OK);
            assert_int_equal(sanitize_finish(h), SANITIZE_OK);
            size_t n;
            const char *out = sanitize_output(h, &n);
            assert_int_equal(n, whole.out_len);
            assert_memory_equal(out, whole.out, n);
            for (int k = 0; k < SANITIZE_KIND_COUNT; k++) {
                assert_int_equal(sanitize_count(h, (sanitize_kind)k),
                                 whole.counts[k]);
            }
        }
    }
    sanitize_free(h);
}

/* ------------------------------------------------------------------------
 * The seed's cases: what json.dumps writes for an agent checkpoint.
 */
static void test_seed_cases(void **state)
{
    (void)state;
    static const struct repair_case seed[] = {
        {"{\"value\": NaN}", "{\"value\": null}", SANITIZE_NAN, 1},
        {"{\"value\": Infinity}", "{\"value\": null}", SANITIZE_INFINITY, 1},
        {"{\"value\": -Infinity}", "{\"value\": null}", SANITIZE_INFINITY, 1},
        {"{\"checkpoint\": {\"channel_values\": {\"data_store\": "
         "{\"neighbor_bounding_box\": [NaN, NaN, 123.45, Infinity]}}}}",
         "{\"checkpoint\": {\"channel_values\": {\"data_store\": "
         "{\"neighbor_bounding_box\": [null, null, 123.45, null]}}}}",
         -1, 0},
        {"{\"ok\": 1.5, \"bad\": NaN, \"list\": [1, NaN, 3], \"s\": \"NaN\"}",
         "{\"ok\": 1.5, \"bad\": null, \"list\": [1, null, 3], \"s\": \"NaN\"}",
         SANITIZE_NAN, 2},
        {"{\"a\": 1, \"b\": 2.5, \"c\": \"text\", \"d\": [true, false, null],"
         " \"e\": {\"f\": -3e-7}}",
         "{\"a\": 1, \"b\": 2.5, \"c\": \"text\", \"d\": [true, false, null],"
         " \"e\": {\"f\": -3e-7}}",
         -1, 0},
    };
    sanitize *h = new_handle(0);
    for (size_t i = 0; i < sizeof seed / sizeof seed[0]; i++) {
        if (seed[i].kind >= 0) {
            check_repair(h, &seed[i], 0);
            continue;
        }
        struct run r;
        run_input(h, seed[i].in, strlen(seed[i].in), 0, &r);
        assert_int_equal(r.status, SANITIZE_OK);
        assert_string_equal(r.out, seed[i].out);
    }
    /* The nested case: 2 nan, 1 infinity, and where they were. */
    run_input(h, seed[3].in, strlen(seed[3].in), 0, &(struct run){0});
    assert_int_equal(sanitize_count(h, SANITIZE_NAN), 2);
    assert_int_equal(sanitize_count(h, SANITIZE_INFINITY), 1);
    assert_int_equal(sanitize_path_count(h), 3);
    const char *base = "/checkpoint/channel_values/data_store/"
                       "neighbor_bounding_box/";
    char want[128];
    static const int idx[] = {0, 1, 3};
    for (size_t i = 0; i < 3; i++) {
        snprintf(want, sizeof want, "%s%d", base, idx[i]);
        assert_string_equal(sanitize_path(h, i), want);
    }
    sanitize_free(h);
}

/* ------------------------------------------------------------------------
 * Malformed input: refused, with a reason and the offset of the fault.
 */
struct bad_case {
    const char *in;
    size_t len; /* 0: strlen */
    sanitize_status status;
    uint64_t offset;
    const char *reason; /* a word the message must hold */
};

static const struct bad_case bad[] = {
    {"nan", 0, SANITIZE_EMALFORMED, 0, "literal"},
    {"[Nan]", 0, SANITIZE_EMALFORMED, 1, "literal"},
    {"[1, Inf]", 0, SANITIZE_EMALFORMED, 4, "Inf"},
    {"NaNa", 0, SANITIZE_EMALFORMED, 0, "NaNa"},
    {"[-nan]", 0, SANITIZE_EMALFORMED, 1, "digit"},
    {"[+1]", 0, SANITIZE_EMALFORMED, 1, "'+'"},
    {"[1,]", 0, SANITIZE_EMALFORMED, 3, "expected a value, not ']'"},
    {"01", 0, SANITIZE_EMALFORMED, 0, "leading zero"},
    {"[1.]", 0, SANITIZE_EMALFORMED, 1, "decimal point"},
    {"[1e]", 0, SANITIZE_EMALFORMED, 1, "exponent"},
    {"\"abc", 0, SANITIZE_EMALFORMED, 0, "unterminated"},
    {"{\"a\": \"b", 0, SANITIZE_EMALFORMED, 6, "unterminated"},
    {"[\"a\tb\"]", 0, SANITIZE_EMALFORMED, 3, "control"},
    {"['a']", 0, SANITIZE_EMALFORMED, 1, "'''"},
    {"[\"\\x\"]", 0, SANITIZE_EMALFORMED, 2, "escape"},
    {"[\"\\u12G4\"]", 0, SANITIZE_EMALFORMED, 2, "escape"},
    {"", 0, SANITIZE_EMALFORMED, 0, "empty"},
    {" \n ", 0, SANITIZE_EMALFORMED, 3, "empty"},
    {"{\"a\" 1}", 0, SANITIZE_EMALFORMED, 5, "expected ':'"},
    {"[1 2]", 0, SANITIZE_EMALFORMED, 3, "expected ',' or ']'"},
    {"{\"a\":1 \"b\"}", 0, SANITIZE_EMALFORMED, 7, "',' or '}'"},
    {"{\"a\":\"b\" \"c\"}", 0, SANITIZE_EMALFORMED, 9, "',' or '}'"},
    {"[1:2]", 0, SANITIZE_EMALFORMED, 2, "not ':'"},
    {"]", 0, SANITIZE_EMALFORMED, 0, "not ']'"},
    {"[}", 0, SANITIZE_EMALFORMED, 1, "not '}'"},
    {"{\"a\":}", 0, SANITIZE_EMALFORMED, 5, "expected a value"},
    {"{\"\xde\":\"a\"4}", 0, SANITIZE_EMALFORMED, 8, "',' or '}'"},
    {"[1true]", 0, SANITIZE_EMALFORMED, 2, "after a value"},
    {"1-1", 0, SANITIZE_EMALFORMED, 1, "after a value"},
    {"{\"a\":1}}", 0, SANITIZE_EMALFORMED, 7, "garbage"},
    {"[1, 2", 0, SANITIZE_EMALFORMED, 5, "end of input: 1 object(s)"},
    {"{\"a\":1} 2", 0, SANITIZE_EMALFORMED, 8, "garbage"},
    {"truefalse", 0, SANITIZE_EMALFORMED, 0, "literal"},
    {"[NaN1]", 0, SANITIZE_EMALFORMED, 4, "expect"},
    {"/* c */ 1", 0, SANITIZE_EMALFORMED, 0, "'/'"},
    {"[\x80]", 0, SANITIZE_EMALFORMED, 1, "0x80"},
    {"{NaN: 1}", 0, SANITIZE_EMALFORMED, 1, "key"},
};

static void test_malformed(void **state)
{
    (void)state;
    sanitize *h = new_handle(0);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const struct bad_case *c = &bad[i];
        size_t len = c->len ? c->len : strlen(c->in);
        for (size_t chunk = 0; chunk <= len; chunk++) {
            struct run r;
            run_input(h, c->in, len, chunk, &r);
            const sanitize_error *e = sanitize_last_error(h);
            if (r.status != c->status || r.offset != c->offset ||
                strstr(e->message, c->reason) == NULL) {
                fail_msg("'%s' (chunk %zu): status %d offset %llu '%s'; "
                         "want %d offset %llu '%s'",
                         c->in, chunk, r.status, (unsigned long long)r.offset,
                         e->message, c->status, (unsigned long long)c->offset,
                         c->reason);
            }
            /* After an error the handle refuses more input. */
            assert_int_equal(sanitize_feed(h, "1", 1), c->status);
        }
    }
    sanitize_free(h);
}

/* ------------------------------------------------------------------------
 * Depth: the limit is an error, never a crash or recursion.
 */
static char *nested(size_t depth)
{
    char *s = malloc(2 * depth + 1);
    assert_non_null(s);
    memset(s, '[', depth);
    memset(s + depth, ']', depth);
    s[2 * depth] = '\0';
    return s;
}

static void test_depth(void **state)
{
    (void)state;
    sanitize *h = new_handle(0);
    char *ok = nested(1000);
    struct run r;
    sanitize_reset(h);
    assert_int_equal(sanitize_feed(h, ok, 2000), SANITIZE_OK);
    assert_int_equal(sanitize_finish(h), SANITIZE_OK);
    size_t n;
    sanitize_output(h, &n);
    assert_int_equal(n, 2000);
    free(ok);

    char *deep = nested(100000);
    sanitize_reset(h);
    assert_int_equal(sanitize_feed(h, deep, 200000), SANITIZE_ETOO_DEEP);
    assert_int_equal(sanitize_last_error(h)->offset, 1000);
    free(deep);

    sanitize *small = new_with((sanitize_options){.max_depth = 3});
    run_input(small, "[[[1]]]", 7, 1, &r);
    assert_int_equal(r.status, SANITIZE_OK);
    run_input(small, "[[[[1]]]]", 9, 1, &r);
    assert_int_equal(r.status, SANITIZE_ETOO_DEEP);
    assert_int_equal(r.offset, 3);
    sanitize_free(small);
    sanitize_free(h);
}

/* ------------------------------------------------------------------------
 * Report paths (RFC 6901), envelope capture, streams, reuse.
 */
static void test_paths(void **state)
{
    (void)state;
    sanitize *h = new_handle(0);
    const char *in = "{\"a/b\": {\"m~n\": [1, [NaN]]}, \"s\": \"\\u0000\", "
                     "\"\\ud800\": 1, \"\": Infinity}";
    struct run r;
    run_input(h, in, strlen(in), 0, &r);
    assert_int_equal(r.status, SANITIZE_OK);
    assert_int_equal(sanitize_path_count(h), 4);
    assert_string_equal(sanitize_path(h, 0), "/a~1b/m~0n/1/0");
    assert_string_equal(sanitize_path(h, 1), "/s");
    assert_string_equal(sanitize_path(h, 2), "/\xEF\xBF\xBD");
    assert_string_equal(sanitize_path(h, 3), "/");

    /* The empty key of a fresh handle, whose key buffer is still empty. */
    sanitize *fresh = new_handle(0);
    run_input(fresh, "{\"\":NaN}", 8, 0, &r);
    assert_int_equal(r.status, SANITIZE_OK);
    assert_int_equal(sanitize_path_count(fresh), 1);
    assert_string_equal(sanitize_path(fresh, 0), "/");
    sanitize_free(fresh);

    /* A repaired key with a repaired value: one path. */
    run_input(h, "{\"k\\u0000\": NaN}", 16, 0, &r);
    assert_int_equal(r.status, SANITIZE_OK);
    assert_int_equal(sanitize_path_count(h), 1);
    assert_string_equal(sanitize_path(h, 0), "/k\xEF\xBF\xBD");

    /* A repaired key, then another member whose value is repaired: two
     * paths (the members are told apart, nested and at the top). */
    const char *two = "{\"x\": {\"k\\u0000\": 1, \"b\": NaN}, "
                      "\"k\\u0000\": 2, \"c\": NaN}";
    run_input(h, two, strlen(two), 0, &r);
    assert_int_equal(r.status, SANITIZE_OK);
    assert_int_equal(sanitize_path_count(h), 4);
    assert_string_equal(sanitize_path(h, 0), "/x/k\xEF\xBF\xBD");
    assert_string_equal(sanitize_path(h, 1), "/x/b");
    assert_string_equal(sanitize_path(h, 2), "/k\xEF\xBF\xBD");
    assert_string_equal(sanitize_path(h, 3), "/c");

    /* Only the first max_paths are kept; counts go on. */
    sanitize *few = new_with((sanitize_options){.max_paths = 2});
    run_input(few, "[NaN,NaN,NaN]", 13, 0, &r);
    assert_int_equal(sanitize_path_count(few), 2);
    assert_int_equal(sanitize_count(few, SANITIZE_NAN), 3);
    sanitize_free(few);

    /* no_paths: the counts, and no path at all. */
    sanitize *none = new_with((sanitize_options){.no_paths = 1});
    run_input(none, in, strlen(in), 0, &r);
    assert_int_equal(r.status, SANITIZE_OK);
    assert_int_equal(sanitize_path_count(none), 0);
    assert_null(sanitize_path(none, 0));
    assert_int_equal(sanitize_rewrites(none), 4);
    sanitize_free(none);
    sanitize_free(h);
}

static void test_envelope(void **state)
{
    (void)state;
    sanitize *h = new_handle(0);
    const char *in =
        "{\"thread_id\": \"t-\\u00e9\\\"1\", \"checkpoint_id\": \"c1\", "
        "\"extra\": {\"checkpoint\": 5}, "
        "\"checkpoint\": {\"v\": [NaN, 1], \"s\": \"\\u0000\"}, "
        "\"parent_checkpoint_id\": null, \"metadata\": {\"step\": Infinity}}";
    struct run r;
    run_input(h, in, strlen(in), 3, &r);
    assert_int_equal(r.status, SANITIZE_OK);
    envelope env;
    char why[128];
    assert_int_equal(envelope_read(h, &env, why, sizeof why), 0);
    assert_string_equal(env.thread_id, "t-\xc3\xa9\"1");
    assert_string_equal(env.checkpoint_id, "c1");
    assert_string_equal(env.checkpoint_ns, "");
    assert_null(env.parent_checkpoint_id);
    assert_string_equal(env.type, "checkpoint");
    const char *cp = "{\"v\": [null, 1], \"s\": \"\\ufffd\"}";
    assert_int_equal(env.checkpoint_len, strlen(cp));
    assert_memory_equal(env.checkpoint, cp, strlen(cp));
    assert_int_equal(env.metadata_len, strlen("{\"step\": null}"));
    assert_memory_equal(env.metadata, "{\"step\": null}", env.metadata_len);

    static const struct {
        const char *in;
        const char *why;
    } invalid[] = {
        {"[1]", "the message must be a JSON object, not an array"},
        {"{\"checkpoint_id\": \"c\", \"checkpoint\": {}}",
         "missing required field 'thread_id'"},
        {"{\"thread_id\": \"t\", \"checkpoint\": {}}",
         "missing required field 'checkpoint_id'"},
        {"{\"thread_id\": \"t\", \"checkpoint_id\": \"c\"}",
         "missing required field 'checkpoint'"},
        {"{\"thread_id\": 1, \"checkpoint_id\": \"c\", \"checkpoint\": {}}",
         "field 'thread_id' must be a string, not a number"},
        {"{\"thread_id\": \"t\", \"checkpoint_id\": \"c\", \"checkpoint\": []}",
         "field 'checkpoint' must be an object, not an array"},
        {"{\"thread_id\": \"t\", \"checkpoint_id\": \"c\", \"checkpoint\": {},"
         " \"metadata\": NaN}",
         "field 'metadata' must be an object, not null"},
    };
    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
        run_input(h, invalid[i].in, strlen(invalid[i].in), 0, &r);
        assert_int_equal(r.status, SANITIZE_OK);
        assert_int_equal(envelope_read(h, &env, why, sizeof why), -1);
        assert_string_equal(why, invalid[i].why);
    }
    sanitize_free(h);
}

static void test_stream_of_values(void **state)
{
    (void)state;
    sanitize *h = new_handle(1);
    const char *in = "{\"a\":NaN}\n[1]\n\"s\" 2 true{\"b\":{}}[]";
    for (size_t chunk = 0; chunk <= strlen(in); chunk++) {
        struct run r;
        run_input(h, in, strlen(in), chunk, &r);
        assert_int_equal(r.status, SANITIZE_OK);
        assert_string_equal(r.out,
                            "{\"a\":null}\n[1]\n\"s\" 2 true{\"b\":{}}[]");
        assert_int_equal(sanitize_values(h), 7);
    }
    sanitize_free(h);
}

/* A handle is reused: the same input gives the same output every time,
 * after errors too. */
static void test_reuse(void **state)
{
    (void)state;
    sanitize *h = new_handle(0);
    const char *good = "{\"x\": [NaN, \"\\ud800\"]}";
    struct run first, again;
    run_input(h, good, strlen(good), 0, &first);
    for (int i = 0; i < 100; i++) {
        run_input(h, "[1, 2", 5, 0, &again);
        assert_int_equal(again.status, SANITIZE_EMALFORMED);
        run_input(h, good, strlen(good), 0, &again);
        assert_int_equal(again.status, SANITIZE_OK);
        assert_string_equal(again.out, first.out);
        assert_int_equal(sanitize_path_count(h), 2);
    }
    sanitize_free(h);
}

/* Sanitizing the output again changes nothing. */
static void test_idempotent(void **state)
{
    (void)state;
    sanitize *h = new_handle(0);
    for (size_t i = 0; i < sizeof repairs / sizeof repairs[0]; i++) {
        struct run once, twice;
        run_input(h, repairs[i].in, strlen(repairs[i].in), 0, &once);
        run_input(h, once.out, once.out_len, 0, &twice);
        assert_int_equal(twice.status, SANITIZE_OK);
        assert_string_equal(twice.out, once.out);
        for (int k = 0; k < SANITIZE_KIND_COUNT; k++) {
            assert_int_equal(twice.counts[k], 0);
        }
    }
    sanitize_free(h);
}

/* The writer callback gets the same bytes as the buffer, and its failure
 * stops the handle. */
static int collect(void *ctx, const char *buf, size_t len)
{
    char *dst = ctx;
    strncat(dst, buf, len);
    return 0;
}

static int refuse(void *ctx, const char *buf, size_t len)
{
    (void)ctx;
    (void)buf;
    (void)len;
    return -1;
}

static void test_writer(void **state)
{
    (void)state;
    sanitize *h = new_handle(0);
    char got[256] = "";
    sanitize_set_writer(h, collect, got);
    const char *in = "[NaN, \"\\u0000\", 1e999, 2]";
    sanitize_reset(h);
    for (size_t i = 0; i < strlen(in); i++) {
        assert_int_equal(sanitize_feed(h, in + i, 1), SANITIZE_OK);
    }
    assert_int_equal(sanitize_finish(h), SANITIZE_OK);
    assert_string_equal(got, "[null, \"\\ufffd\", null, 2]");

    sanitize_set_writer(h, refuse, NULL);
    sanitize_reset(h);
    assert_int_equal(sanitize_feed(h, in, strlen(in)), SANITIZE_EWRITE);
    sanitize_free(h);
}

/* ------------------------------------------------------------------------
 * Long inputs: the scanner skips runs of numbers and of string text a
 * block (64 bytes) at a time when the chunk holds enough of them, and
 * goes byte by byte otherwise. Fed one byte at a time it never takes the
 * block paths, so that run is the reference for the others: the same
 * status, offset, message, output, counts and paths. The inputs look like
 * checkpoints (number arrays, strings dense with escapes), with a repair
 * or a fault dropped in at a random place.
 */
static uint32_t lcg_next(uint32_t *seed)
{
    *seed = *seed * 1664525u + 1013904223u;
    return *seed >> 8;
}

static const char *pick(uint32_t *seed, const char *const *list, size_t n)
{
    return list[lcg_next(seed) % n];
}

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static const char *const good_numbers[] = {
    "-0.7570101556621237",
    "1.4790773355136182",
    "0",
    "-0",
    "0.5",
    "12",
    "-3",
    "100",
    "0.007828015784195765",
    "-1.0",
    "123456789",
    "-0.0",
    "9.5",
    "-1.1035552832915223",
    "0.34558644010168516",
    "2.091914325874625",
};

/* In range, with an exponent: less usual. */
static const char *const exp_numbers[] = {
    "2.2250738585072014e-308",
    "1e+300",
    "5e-324",
    "-4.7261734955766826e-05",
};

static const char *const odd_numbers[] = {
    "NaN",
    "-Infinity",
    "Infinity",
    "+NaN",
    "-NaN",
    "1e400",
    "01",
    "1.",
    "-",
    "1.2.3",
    "--1",
    "-.5",
    ".5",
    "1-2",
    "0x1",
    "1e",
    "00",
    "-01",
    "1.5.",
    "true",
    "null",
    "\"s\"",
    "[]",
    "{}",
    "1E5",
    "",
    "1 2",
    "nan",
    "1.5e",
    "-I",
    "0.",
    "1..2",
    "2-",
    "- 1",
    "1,",
    "Inf",
    "1]",
    "[1",
    "1}",
    "1:",
    "1\"",
    "0e400",
    "-0.0e-0",
    "1.5E+3",
    "7e-16384",
    "1234567890123456789012345678901234567890123456789012345678901234567890",
};

static const char *const separators[] = {
    ", ", ", ", ", ", ", ", ", ", ", ", ",", " , ", ",  ", ",\n", "\t,", ", ",
};

static const char *const good_text[] = {
    "word ",
    "abc",
    "\\u00e9",
    "\\u4e16\\u754c",
    "\\ud83d\\ude00",
    "\\n",
    "\\t",
    "\\\\",
    "\\\"",
    "\\/",
    "\\b",
    "\\f",
    "\\r",
    " ",
    "\\u0041",
    "\\uFFFF",
    "\\uD7FF",
    "\\uE000",
    "x\\\\\\\"y",
    "NaN",
    "\\u043c\\u0438\\u0440 ",
    "a\\\\\\\"NaN",
    "\\\\NaN\\\\",
    "\\uDBFF\\uDFFF",
};

static const char *const odd_text[] = {
    "\\u0000",
    "\\ud800",
    "\\udc00",
    "\\ud800\\u0041",
    "\\ud83d\\ud83d",
    "\\x",
    "\\u12G4",
    "\\u12",
    "\x01",
    "\xc3\xa9",
    "\xff",
    "\xe2\x82",
    "\\",
    "\"",
    "\\u",
    "\\uD800\\\\",
    "\\U0041",
    "\x7f",
    "\\'",
    "\xed\xa0\x80",
    "\\ud83d\\ude00\\udc00",
    "\\\\\\",
    "\\u00",
};

static void put(char *buf, size_t *len, size_t cap, const char *s)
{
    size_t n = strlen(s);
    if (*len + n < cap) {
        memcpy(buf + *len, s, n);
        *len += n;
        buf[*len] = '\0';
    }
}

/* One element list: numbers, or strings, maybe with one odd piece. */
static void put_numbers(char *buf, size_t *len, size_t cap, uint32_t *seed,
                        bool odd)
{
    size_t n = 2 + lcg_next(seed) % 40;
    size_t odd_at = odd ? lcg_next(seed) % n : n;
    put(buf, len, cap, "[");
    for (size_t i = 0; i < n; i++) {
        if (i > 0) {
            put(buf, len, cap,
                lcg_next(seed) % 8 ? ", "
                                   : pick(seed, separators, COUNT(separators)));
        }
        put(buf, len, cap,
            i == odd_at ? pick(seed, odd_numbers, COUNT(odd_numbers))
            : lcg_next(seed) % 30 == 0
                ? pick(seed, exp_numbers, COUNT(exp_numbers))
                : pick(seed, good_numbers, COUNT(good_numbers)));
    }
    put(buf, len, cap, "]");
}

static void put_string(char *buf, size_t *len, size_t cap, uint32_t *seed,
                       bool odd)
{
    size_t n = 1 + lcg_next(seed) % 120;
    size_t odd_at = odd ? lcg_next(seed) % n : n;
    put(buf, len, cap, "\"");
    for (size_t i = 0; i < n; i++) {
        put(buf, len, cap,
            i == odd_at ? pick(seed, odd_text, COUNT(odd_text))
                        : pick(seed, good_text, COUNT(good_text)));
    }
    put(buf, len, cap, "\"");
}

static void make_document(char *buf, size_t cap, uint32_t *seed)
{
    size_t len = 0;
    size_t members = 1 + lcg_next(seed) % 6;
    size_t odd_member = lcg_next(seed) % (members + 1); /* maybe none */
    buf[0] = '\0';
    put(buf, &len, cap, "{");
    for (size_t m = 0; m < members; m++) {
        bool odd = m == odd_member;
        put(buf, &len, cap, m ? ", " : "");
        if (lcg_next(seed) % 4 == 0) {
            put_string(buf, &len, cap, seed, odd && lcg_next(seed) % 3 == 0);
        } else {
            put(buf, &len, cap, "\"k\"");
        }
        put(buf, &len, cap, ": ");
        switch (lcg_next(seed) % 4) {
        case 0:
            put_numbers(buf, &len, cap, seed, odd);
            break;
        case 1:
            put_string(buf, &len, cap, seed, odd);
            break;
        case 2: /* an array of arrays, as embeddings are */
            put(buf, &len, cap, "[");
            for (int i = 0; i < 3; i++) {
                put(buf, &len, cap, i ? ", " : "");
                put_numbers(buf, &len, cap, seed, odd && i == 1);
            }
            put(buf, &len, cap, "]");
            break;
        default: /* strings in an array */
            put(buf, &len, cap, "[");
            for (int i = 0; i < 3; i++) {
                put(buf, &len, cap, i ? ", " : "");
                put_string(buf, &len, cap, seed, odd && i == 2);
            }
            put(buf, &len, cap, "]");
            break;
        }
    }
    put(buf, &len, cap, "}");
}

/* cmocka cuts long messages: the whole case goes to a file. */
static void dump_failure(const char *in, const char *detail)
{
    FILE *f = fopen("test_sanitize_long_failure.txt", "w");
    if (f != NULL) {
        fprintf(f, "%s\n%s\n", in, detail);
        fclose(f);
    }
}

/* in fed in chunks of each size in chunks[] (0: whole) gives what it gives
 * fed a byte at a time (which never takes a block path): the same output,
 * status, offset, message, counts and paths. */
static void check_chunkings(sanitize *h, const char *in, size_t len,
                            const size_t *chunks, size_t nchunks)
{
    static struct run ref;
    static char ref_msg[sizeof(((sanitize_error *)0)->message)];
    static char ref_paths[SANITIZE_DEFAULT_MAX_PATHS][2048];
    run_input(h, in, len, 1, &ref);
    snprintf(ref_msg, sizeof ref_msg, "%s", sanitize_last_error(h)->message);
    size_t ref_npaths = sanitize_path_count(h);
    for (size_t i = 0; i < ref_npaths; i++) {
        snprintf(ref_paths[i], sizeof ref_paths[i], "%s", sanitize_path(h, i));
    }
    /* The other feed mode, fed whole and in each chunk size too. */
    static sanitize *other[2];
    if (other[full_feed] == NULL) {
        other[full_feed] =
            sanitize_new(&(sanitize_options){.full_feed = !full_feed});
        assert_non_null(other[full_feed]);
    }
    for (size_t c = 0; c < 2 * nchunks; c++) {
        size_t chunk = chunks[c % nchunks];
        sanitize *hc = c < nchunks ? h : other[full_feed];
        static struct run r;
        run_input(hc, in, len, chunk, &r);
        const char *msg = sanitize_last_error(hc)->message;
        if (r.status != ref.status || r.offset != ref.offset ||
            strcmp(msg, ref_msg) != 0 || r.out_len != ref.out_len ||
            memcmp(r.out, ref.out, r.out_len) != 0 ||
            memcmp(r.counts, ref.counts, sizeof r.counts) != 0 ||
            sanitize_path_count(hc) != ref_npaths) {
            static char detail[3 * sizeof r.out];
            snprintf(detail, sizeof detail,
                     "%s, chunk %zu: status %d offset %llu '%s'\n"
                     "byte by byte: status %d offset %llu '%s'\n"
                     "out:  %s\nwant: %s",
                     hc == h ? "this mode" : "other mode", chunk, r.status,
                     (unsigned long long)r.offset, msg, ref.status,
                     (unsigned long long)ref.offset, ref_msg, r.out, ref.out);
            dump_failure(in, detail);
            fail_msg("%s, chunk %zu: status %d offset %llu '%s'; byte by "
                     "byte: status %d offset %llu '%s' "
                     "(test_sanitize_long_failure.txt)",
                     hc == h ? "this mode" : "other mode", chunk, r.status,
                     (unsigned long long)r.offset, msg, ref.status,
                     (unsigned long long)ref.offset, ref_msg);
        }
        for (size_t i = 0; i < ref_npaths; i++) {
            if (strncmp(sanitize_path(hc, i), ref_paths[i], 2047) != 0) {
                dump_failure(in, "a path differs");
                fail_msg("chunk %zu: path %zu %s, want %s "
                         "(test_sanitize_long_failure.txt)",
                         chunk, i, sanitize_path(hc, i), ref_paths[i]);
            }
        }
    }
}

/* A key longer than 256 bytes (as written) is cut in a path, on a
 * character, with U+2026 after it; the same fed whole or a byte at a time
 * and whatever the characters at the cut. */
static void test_long_key_paths(void **state)
{
    (void)state;
    sanitize *h = new_handle(0);
    static char in[4096];
    static char want[4096];
    static const char *const tails[] = {
        "x", "\\u00e9", "\\ud83d\\ude00", "\xC3\xA9", "\xF0\x9F\x98\x80", "~/"};
    for (size_t t = 0; t < COUNT(tails); t++) {
        for (size_t pad = 240; pad < 262; pad++) {
            /* {"a": {"kkk...<tail>...": [NaN]}} */
            size_t len = 0;
            in[0] = '\0';
            put(in, &len, sizeof in, "{\"a\": {\"");
            for (size_t i = 0; i < pad; i++) {
                put(in, &len, sizeof in, "k");
            }
            for (int i = 0; i < 4; i++) {
                put(in, &len, sizeof in, tails[t]);
            }
            put(in, &len, sizeof in, "\": [NaN]}}");
            struct run r;
            run_input(h, in, len, 0, &r);
            assert_int_equal(r.status, SANITIZE_OK);
            assert_int_equal(sanitize_path_count(h), 1);
            snprintf(want, sizeof want, "%s", sanitize_path(h, 0));
            size_t n = strlen(want);
            bool cut = strstr(want, "\xE2\x80\xA6/0") != NULL;
            size_t key_raw = pad + 4 * strlen(tails[t]);
            assert_true(cut == (key_raw > 256));
            assert_true(n < 3 + 256 * 2 + 3 + 2 + 1);
            static const size_t chunks[] = {0, 1, 7, 97};
            check_chunkings(h, in, len, chunks, COUNT(chunks));
        }
    }
    sanitize_free(h);
}

static void test_long_inputs_any_chunking(void **state)
{
    (void)state;
    sanitize *h = new_handle(0);
    static char in[7000];
    uint32_t seed = 12345;
    for (int n = 0; n < 4000; n++) {
        make_document(in, sizeof in, &seed);
        static const size_t chunks[] = {0, 97, 200};
        check_chunkings(h, in, strlen(in), chunks, COUNT(chunks));
    }
    sanitize_free(h);
}

/* Every odd piece at every position in a block: the checks that carry a
 * bit from one block to the next see each piece across the boundary. */
static void test_block_edges(void **state)
{
    (void)state;
    sanitize *h = new_handle(0);
    static char in[2048];
    for (size_t pad = 0; pad < 70; pad++) {
        for (size_t kind = 0; kind < 2; kind++) {
            size_t count = kind == 0 ? COUNT(odd_numbers) : COUNT(odd_text);
            for (size_t i = 0; i < count; i++) {
                size_t len = 0;
                in[0] = '\0';
                if (kind == 0) {
                    /* [0.1111, 1.5, ..., odd, 1.5, ...] */
                    put(in, &len, sizeof in, "[0.");
                    for (size_t k = 0; k <= pad; k++) {
                        put(in, &len, sizeof in, "1");
                    }
                    for (int k = 0; k < 8; k++) {
                        put(in, &len, sizeof in, ", 1.5");
                    }
                    put(in, &len, sizeof in, ", ");
                    put(in, &len, sizeof in, odd_numbers[i]);
                    for (int k = 0; k < 12; k++) {
                        put(in, &len, sizeof in, ", -0.25");
                    }
                    put(in, &len, sizeof in, "]");
                } else {
                    /* ["\naaaa\u00e9...odd\u00e9..."] */
                    put(in, &len, sizeof in, "[\"\\n");
                    for (size_t k = 0; k < pad; k++) {
                        put(in, &len, sizeof in, "a");
                    }
                    for (int k = 0; k < 8; k++) {
                        put(in, &len, sizeof in, "\\u00e9");
                    }
                    put(in, &len, sizeof in, odd_text[i]);
                    for (int k = 0; k < 12; k++) {
                        put(in, &len, sizeof in, "\\ud83d\\ude00\\\\");
                    }
                    put(in, &len, sizeof in, "\"]");
                }
                static const size_t whole[] = {0};
                check_chunkings(h, in, len, whole, 1);
            }
        }
    }
    sanitize_free(h);
}

int main(void)
{
    static const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_repairs),
        cmocka_unit_test(test_repairs_every_chunk_size),
        cmocka_unit_test(test_split_at_every_position),
        cmocka_unit_test(test_seed_cases),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_envelope),
        cmocka_unit_test(test_stream_of_values),
        cmocka_unit_test(test_reuse),
        cmocka_unit_test(test_idempotent),
        cmocka_unit_test(test_writer),
        cmocka_unit_test(test_long_inputs_any_chunking),
        cmocka_unit_test(test_block_edges),
        cmocka_unit_test(test_long_key_paths),
    };
    full_feed = 0;
    int failed =
        cmocka_run_group_tests_name("skeleton feed", tests, NULL, NULL);
    full_feed = 1;
    failed += cmocka_run_group_tests_name("full feed", tests, NULL, NULL);
    return failed;
}
