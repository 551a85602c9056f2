/* fuzz_sanitize.c - libFuzzer target: the sanitizer gives the same answer
 * however its input is cut, and what it accepts it turns into a fixed point.
 *
 * Input layout (the seeds in corpus/ start with a readable header):
 *
 *   byte 0     flags: 0x01 multiple_values, 0x02 max_depth 8,
 *              0x04 max_paths 2, 0x08 chunked run through a writer,
 *              0x10 also run with a writer that fails part way
 *   bytes 1-3  chunk sizes, used in turn (see chunk_size)
 *   the rest   the JSON text
 *
 * Checks, each ending in abort() with a message on stderr:
 *  - chunked run (on a reused, dirtied handle) against a one-shot run on a
 *    fresh handle: same status and error offset; on success the same
 *    output bytes, values, counts, paths, root type and captured fields; on
 *    error the shorter output is a prefix of the longer one;
 *  - on success: values >= 1 (== 1 without multiple_values), counts and
 *    paths agree, root type agrees with the first output byte, captured
 *    object/array spans lie in the output and are themselves accepted
 *    values, captured strings hold no NUL;
 *  - idempotence: the output, sanitized again, comes back byte for byte with
 *    zero rewrites (so no bare NaN/Infinity is left outside strings), and
 *    the same values, root type and fields;
 *  - a small max_depth is never exceeded by accepted output;
 *  - a writer that fails gives SANITIZE_EWRITE;
 *  - the report JSON built from the handle is itself accepted, unchanged;
 *  - the full feed (every byte to yajl), chunked, against the one-shot
 *    skeleton feed: the same as above, and the same error reason.
 */
#include "common/buf.h"
#include "filter/sanitize/envelope.h"
#include "filter/sanitize/report.h"
#include "filter/sanitize/sanitize.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEADER_LEN 4

enum {
    F_MULTIPLE = 0x01,
    F_DEPTH8 = 0x02,
    F_PATHS2 = 0x04,
    F_WRITER = 0x08,
    F_WRITE_FAIL = 0x10,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What one run produced, copied out of the handle. */
struct result {
    sanitize_status status;
    uint64_t offset;
    char message[sizeof(((sanitize_error *)0)->message)];
    ng_buf out;
    uint64_t values;
    uint64_t counts[SANITIZE_KIND_COUNT];
    ng_buf paths; /* NUL-terminated, back to back */
    size_t npaths;
    sanitize_type root_type;
    sanitize_field fields[SANITIZE_FIELD_COUNT];
    ng_buf field_str[SANITIZE_FIELD_COUNT];
};

__attribute__((format(printf, 1, 2), noreturn)) static void die(const char *fmt,
                                                                ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("fuzz_sanitize: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

static void check_alloc(int rc)
{
    if (rc != 0) {
        die("out of memory in the harness");
    }
}

static void result_free(struct result *r)
{
    ng_buf_free(&r->out);
    ng_buf_free(&r->paths);
    for (int i = 0; i < SANITIZE_FIELD_COUNT; i++) {
        ng_buf_free(&r->field_str[i]);
    }
}

/* Chunk size from one header byte: 0x00-0x3F 1..16, 0x40-0x7F 17..80,
 * 0x80-0xEF 1..7169 in steps of 64, 0xF0-0xFF the whole input. */
static size_t chunk_size(uint8_t b, size_t whole)
{
    size_t n;
    if (b < 0x40) {
        n = 1 + (b & 0x0F);
    } else if (b < 0x80) {
        n = 17 + (b & 0x3F);
    } else if (b < 0xF0) {
        n = 1 + (size_t)(b - 0x80) * 64;
    } else {
        n = whole;
    }
    return n == 0 ? 1 : n;
}

struct writer {
    ng_buf *out;
    size_t fail_at; /* fail the write that would go past this many bytes */
    size_t written;
};

static int write_cb(void *ctx, const char *buf, size_t len)
{
    struct writer *w = ctx;
    if (len == 0) {
        die("writer called with 0 bytes");
    }
    if (w->written + len > w->fail_at) {
        return -1;
    }
    w->written += len;
    if (w->out != NULL) {
        check_alloc(ng_buf_append(w->out, buf, len));
    }
    return 0;
}

/* Feeds in[0..len) in chunks (sizes cycle over sizes[0..nsizes), or the
 * whole input when nsizes is 0), finishes, and copies the result out. With
 * a writer the output is what the writer received. */
static void run(sanitize *h, const char *in, size_t len, const uint8_t *sizes,
                size_t nsizes, struct writer *w, struct result *r)
{
    memset(r, 0, sizeof *r);
    sanitize_reset(h);
    sanitize_set_writer(h, w != NULL ? write_cb : NULL, w);
    if (w != NULL) {
        w->out = &r->out;
        w->written = 0;
    }
    sanitize_status st = SANITIZE_OK;
    size_t i = 0, k = 0;
    while (i < len && st == SANITIZE_OK) {
        size_t n = nsizes ? chunk_size(sizes[k++ % nsizes], len) : len;
        if (n > len - i) {
            n = len - i;
        }
        st = sanitize_feed(h, in + i, n);
        i += n;
    }
    if (st == SANITIZE_OK) {
        st = sanitize_finish(h);
    }
    if (st != SANITIZE_OK && sanitize_finish(h) != st) {
        die("status %d not sticky after an error", (int)st);
    }
    const sanitize_error *err = sanitize_last_error(h);
    if (err->code != st) {
        die("status %d but last error code %d", (int)st, (int)err->code);
    }
    if (memchr(err->message, '\0', sizeof err->message) == NULL) {
        die("error message not NUL-terminated");
    }
    r->status = st;
    r->offset = err->offset;
    memcpy(r->message, err->message, sizeof r->message);
    if (w == NULL) {
        size_t n;
        const char *o = sanitize_output(h, &n);
        check_alloc(ng_buf_append(&r->out, o, n));
    }
    sanitize_set_writer(h, NULL, NULL);
    r->values = sanitize_values(h);
    for (int k2 = 0; k2 < SANITIZE_KIND_COUNT; k2++) {
        r->counts[k2] = sanitize_count(h, (sanitize_kind)k2);
    }
    r->npaths = sanitize_path_count(h);
    for (size_t p = 0; p < r->npaths; p++) {
        const char *s = sanitize_path(h, p);
        if (s == NULL) {
            die("path %zu of %zu is NULL", p, r->npaths);
        }
        check_alloc(ng_buf_append(&r->paths, s, strlen(s) + 1));
    }
    if (sanitize_path(h, r->npaths) != NULL) {
        die("path past the end is not NULL");
    }
    r->root_type = sanitize_root_type(h);
    for (int f = 0; f < SANITIZE_FIELD_COUNT; f++) {
        const sanitize_field *fl = sanitize_field_get(h, (sanitize_field_id)f);
        r->fields[f] = *fl;
        r->fields[f].str = NULL;
        if (fl->type == SANITIZE_TYPE_STRING) {
            if (fl->str == NULL) {
                die("field %s: string with NULL str",
                    sanitize_field_name((sanitize_field_id)f));
            }
            check_alloc(
                ng_buf_append_str(&r->field_str[f], fl->str, fl->str_len));
        }
    }
}

static const char *type_name(sanitize_type t)
{
    static const char *const names[] = {"absent", "null",   "bool", "number",
                                        "string", "object", "array"};
    return (unsigned)t < sizeof names / sizeof names[0] ? names[t] : "?";
}

/* Dumps an input to stderr in a copy-paste friendly form. */
static void dump(const char *what, const char *s, size_t n)
{
    fprintf(stderr, "%s (%zu bytes): \"", what, n);
    for (size_t i = 0; i < n && i < 2000; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            fprintf(stderr, "\\%c", c);
        } else if (c >= 0x20 && c < 0x7F) {
            fputc(c, stderr);
        } else {
            fprintf(stderr, "\\x%02X\"\"", c);
        }
    }
    fprintf(stderr, "%s\"\n", n > 2000 ? "..." : "");
}

static void compare(const struct result *a, const struct result *b,
                    const char *what, const char *in, size_t len)
{
    const char *diff = NULL;
    if (a->status != b->status) {
        diff = "status";
    } else if (a->offset != b->offset) {
        diff = "error offset";
    } else if (a->status != SANITIZE_OK) {
        /* What was handed on before the error is a prefix of the repaired
         * text in both runs. */
        size_t n = a->out.len < b->out.len ? a->out.len : b->out.len;
        if (n > 0 && memcmp(a->out.data, b->out.data, n) != 0) {
            diff = "output before the error";
        }
    } else if (a->out.len != b->out.len ||
               (a->out.len > 0 &&
                memcmp(a->out.data, b->out.data, a->out.len) != 0)) {
        diff = "output";
    } else if (a->values != b->values) {
        diff = "values";
    } else if (memcmp(a->counts, b->counts, sizeof a->counts) != 0) {
        diff = "counts";
    } else if (a->npaths != b->npaths || a->paths.len != b->paths.len ||
               (a->paths.len > 0 &&
                memcmp(a->paths.data, b->paths.data, a->paths.len) != 0)) {
        diff = "paths";
    } else if (a->root_type != b->root_type) {
        diff = "root type";
    }
    for (int f = 0;
         f < SANITIZE_FIELD_COUNT && diff == NULL && a->status == SANITIZE_OK;
         f++) {
        const sanitize_field *x = &a->fields[f], *y = &b->fields[f];
        if (x->type != y->type || x->str_len != y->str_len ||
            x->span_off != y->span_off || x->span_len != y->span_len ||
            (x->type == SANITIZE_TYPE_STRING &&
             memcmp(a->field_str[f].data, b->field_str[f].data, x->str_len) !=
                 0)) {
            diff = "captured field";
        }
    }
    if (diff == NULL) {
        return;
    }
    dump("input", in, len);
    fprintf(stderr,
            "one-shot: status %d offset %llu '%s' values %llu type %s\n",
            (int)a->status, (unsigned long long)a->offset, a->message,
            (unsigned long long)a->values, type_name(a->root_type));
    dump("one-shot output", a->out.data, a->out.len);
    fprintf(stderr, "%s: status %d offset %llu '%s' values %llu type %s\n",
            what, (int)b->status, (unsigned long long)b->offset, b->message,
            (unsigned long long)b->values, type_name(b->root_type));
    dump("its output", b->out.data, b->out.len);
    die("%s differs between one-shot and %s", diff, what);
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static sanitize_type type_of_first_byte(char c)
{
    switch (c) {
    case '{':
        return SANITIZE_TYPE_OBJECT;
    case '[':
        return SANITIZE_TYPE_ARRAY;
    case '"':
        return SANITIZE_TYPE_STRING;
    case 'n':
        return SANITIZE_TYPE_NULL;
    case 't':
    case 'f':
        return SANITIZE_TYPE_BOOL;
    default:
        return (c == '-' || (c >= '0' && c <= '9')) ? SANITIZE_TYPE_NUMBER
                                                    : SANITIZE_ABSENT;
    }
}

/* Deepest nesting of JSON text, strings skipped. */
static size_t max_nesting(const char *s, size_t n)
{
    size_t depth = 0, max = 0;
    bool in_str = false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\') {
                i++;
            } else if (c == '"') {
                in_str = false;
            }
        } else if (c == '"') {
            in_str = true;
        } else if (c == '[' || c == '{') {
            if (++depth > max) {
                max = depth;
            }
        } else if ((c == ']' || c == '}') && depth > 0) {
            depth--;
        }
    }
    return max;
}

/* text must be accepted as it is: same bytes out, nothing rewritten. */
static void check_fixed_point(sanitize *h, const char *text, size_t len,
                              const char *what, struct result *r)
{
    run(h, text, len, NULL, 0, NULL, r);
    if (r->status != SANITIZE_OK) {
        dump(what, text, len);
        die("%s refused: status %d offset %llu '%s'", what, (int)r->status,
            (unsigned long long)r->offset, r->message);
    }
    if (r->out.len != len || (len > 0 && memcmp(r->out.data, text, len) != 0)) {
        dump(what, text, len);
        dump("sanitized again", r->out.data, r->out.len);
        die("%s changed when sanitized again", what);
    }
    uint64_t rewrites = 0;
    for (int k = 0; k < SANITIZE_KIND_COUNT; k++) {
        rewrites += r->counts[k];
    }
    if (rewrites != 0 || r->npaths != 0) {
        dump(what, text, len);
        die("%s: %llu rewrites when sanitized again", what,
            (unsigned long long)rewrites);
    }
}

/* Everything that must hold of an accepted input. h is a spare handle with
 * the same options. */
static void check_accepted(const struct result *r, const sanitize_options *o,
                           sanitize *h, sanitize *plain, const char *in,
                           size_t len)
{
    const char *out = r->out.data ? r->out.data : "";
    size_t out_len = r->out.len;
    if (r->values < 1 || (!o->multiple_values && r->values != 1)) {
        dump("input", in, len);
        die("accepted with %llu values", (unsigned long long)r->values);
    }
    uint64_t rewrites = 0;
    for (int k = 0; k < SANITIZE_KIND_COUNT; k++) {
        rewrites += r->counts[k];
    }
    size_t max_paths = o->max_paths ? o->max_paths : SANITIZE_DEFAULT_MAX_PATHS;
    if (r->npaths > max_paths || r->npaths > rewrites ||
        (rewrites > 0 && r->npaths == 0)) {
        dump("input", in, len);
        die("%zu paths for %llu rewrites (max %zu)", r->npaths,
            (unsigned long long)rewrites, max_paths);
    }
    const char *p = r->paths.data;
    for (size_t i = 0; i < r->npaths; i++) {
        if (p[0] != '\0' && p[0] != '/') {
            dump("input", in, len);
            die("path '%s' is not a JSON Pointer", p);
        }
        p += strlen(p) + 1;
    }
    if (r->root_type == SANITIZE_ABSENT) {
        dump("input", in, len);
        die("accepted, but no root type");
    }
    size_t lead = 0;
    while (lead < out_len && is_space(out[lead])) {
        lead++;
    }
    if (!o->multiple_values) {
        if (lead == out_len || type_of_first_byte(out[lead]) != r->root_type) {
            dump("input", in, len);
            die("root type %s but the output starts with '%c'",
                type_name(r->root_type), lead < out_len ? out[lead] : '?');
        }
    }
    bool any_field = false;
    for (int f = 0; f < SANITIZE_FIELD_COUNT; f++) {
        const sanitize_field *fl = &r->fields[f];
        const char *name = sanitize_field_name((sanitize_field_id)f);
        if (fl->type != SANITIZE_ABSENT) {
            any_field = true;
        }
        if (fl->type == SANITIZE_TYPE_STRING) {
            const char *s = r->field_str[f].data ? r->field_str[f].data : "";
            if (memchr(s, '\0', fl->str_len) != NULL) {
                dump("input", in, len);
                die("field %s holds a NUL byte", name);
            }
        }
        if (fl->type != SANITIZE_TYPE_OBJECT &&
            fl->type != SANITIZE_TYPE_ARRAY) {
            continue;
        }
        char open = fl->type == SANITIZE_TYPE_OBJECT ? '{' : '[';
        char close = fl->type == SANITIZE_TYPE_OBJECT ? '}' : ']';
        if (fl->span_len < 2 || fl->span_off > out_len ||
            fl->span_len > out_len - fl->span_off ||
            out[fl->span_off] != open ||
            out[fl->span_off + fl->span_len - 1] != close) {
            dump("input", in, len);
            dump("output", out, out_len);
            die("field %s: span %llu+%llu is not a %s in the output", name,
                (unsigned long long)fl->span_off,
                (unsigned long long)fl->span_len, type_name(fl->type));
        }
        /* The span is one whole value of its own. */
        struct result span;
        check_fixed_point(plain, out + fl->span_off, (size_t)fl->span_len,
                          "captured span", &span);
        if (span.values != 1 || span.root_type != fl->type) {
            dump("output", out, out_len);
            die("field %s: span holds %llu values of type %s", name,
                (unsigned long long)span.values, type_name(span.root_type));
        }
        result_free(&span);
    }
    if (any_field && !o->multiple_values &&
        r->root_type != SANITIZE_TYPE_OBJECT) {
        dump("input", in, len);
        die("fields captured, but the root is %s", type_name(r->root_type));
    }
    if (o->max_depth != 0 && max_nesting(out, out_len) > o->max_depth) {
        dump("input", in, len);
        die("accepted nesting deeper than max_depth %zu", o->max_depth);
    }

    /* Idempotence: sanitizing the output again changes nothing. */
    struct result again;
    check_fixed_point(h, out, out_len, "output", &again);
    if (again.values != r->values || again.root_type != r->root_type) {
        dump("input", in, len);
        die("sanitized again: %llu values of type %s, first time %llu %s",
            (unsigned long long)again.values, type_name(again.root_type),
            (unsigned long long)r->values, type_name(r->root_type));
    }
    for (int f = 0; f < SANITIZE_FIELD_COUNT; f++) {
        const sanitize_field *x = &r->fields[f], *y = &again.fields[f];
        if (x->type != y->type || x->str_len != y->str_len ||
            x->span_off != y->span_off || x->span_len != y->span_len ||
            (x->type == SANITIZE_TYPE_STRING &&
             memcmp(r->field_str[f].data, again.field_str[f].data,
                    x->str_len) != 0)) {
            dump("input", in, len);
            die("field %s differs when the output is sanitized again",
                sanitize_field_name((sanitize_field_id)f));
        }
    }
    result_free(&again);
}

/* The report of an accepted input is valid JSON that needs no repair. */
static void check_report(sanitize *h, sanitize *plain, size_t max_paths)
{
    sanitize_report rep;
    sanitize_report_init(&rep, max_paths);
    check_alloc(sanitize_report_add(&rep, h));
    ng_buf json = {0};
    check_alloc(sanitize_report_json(&rep, &json));
    struct result r;
    check_fixed_point(plain, json.data, json.len, "report", &r);
    result_free(&r);
    ng_buf_free(&json);
    sanitize_report_free(&rep);
}

/* Leaves a handle in the middle of things (open containers, a held token,
 * a pending surrogate, maybe an error) so that reset is put to the test. */
static void dirty(sanitize *h, const char *in, size_t len)
{
    static const char prelude[] =
        "{\"thread_id\":\"t\",\"checkpoint\":{\"a\":[NaN,1e400,\"\\ud800";
    sanitize_reset(h);
    sanitize_feed(h, prelude, sizeof prelude - 1);
    sanitize_reset(h);
    sanitize_feed(h, in, len / 2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < HEADER_LEN) {
        return 0;
    }
    uint8_t flags = data[0];
    const uint8_t *sizes = data + 1;
    const char *in = (const char *)data + HEADER_LEN;
    size_t len = size - HEADER_LEN;

    sanitize_options o = {
        .multiple_values = (flags & F_MULTIPLE) != 0,
        .max_depth = (flags & F_DEPTH8) ? 8 : 0,
        .max_paths = (flags & F_PATHS2) ? 2 : 0,
    };
    sanitize *fresh = sanitize_new(&o);
    sanitize *reused = sanitize_new(&o);
    sanitize *plain = sanitize_new(NULL);
    sanitize_options fo = o;
    fo.full_feed = 1;
    sanitize *full = sanitize_new(&fo);
    if (fresh == NULL || reused == NULL || plain == NULL || full == NULL) {
        die("sanitize_new failed");
    }

    struct result whole, chunked;
    run(fresh, in, len, NULL, 0, NULL, &whole);

    dirty(reused, in, len);
    struct writer w = {.fail_at = SIZE_MAX};
    run(reused, in, len, sizes, HEADER_LEN - 1, (flags & F_WRITER) ? &w : NULL,
        &chunked);
    compare(&whole, &chunked, "chunked", in, len);

    /* The full feed (every byte to yajl), chunked the same way: the same
     * answer as the skeleton feed, to the reason of an error. */
    struct result fed;
    struct writer w2 = {.fail_at = SIZE_MAX};
    run(full, in, len, sizes, HEADER_LEN - 1, (flags & F_WRITER) ? &w2 : NULL,
        &fed);
    compare(&whole, &fed, "full feed", in, len);
    if (strcmp(whole.message, fed.message) != 0) {
        dump("input", in, len);
        die("full feed: reason '%s', skeleton feed: '%s'", fed.message,
            whole.message);
    }
    result_free(&fed);

    if (whole.status == SANITIZE_OK) {
        check_accepted(&whole, &o, reused, plain, in, len);
        /* The report of the one-shot run, taken again from a handle. */
        struct result again;
        run(fresh, in, len, NULL, 0, NULL, &again);
        result_free(&again);
        check_report(fresh, plain, o.max_paths ? o.max_paths : 100);
        if (!o.multiple_values && whole.root_type == SANITIZE_TYPE_OBJECT) {
            envelope env;
            char why[256];
            if (envelope_read(fresh, &env, why, sizeof why) == 0) {
                if (env.thread_id == NULL || env.checkpoint_id == NULL ||
                    env.checkpoint == NULL || env.metadata == NULL) {
                    die("envelope accepted without a required field");
                }
            }
        }
    }

    if ((flags & F_WRITE_FAIL) && whole.status == SANITIZE_OK &&
        whole.out.len > 0) {
        struct writer fw = {.fail_at = sizes[0] % whole.out.len};
        struct result failed;
        run(reused, in, len, sizes, HEADER_LEN - 1, &fw, &failed);
        if (failed.status != SANITIZE_EWRITE) {
            dump("input", in, len);
            die("writer failed at byte %zu, status %d", fw.fail_at,
                (int)failed.status);
        }
        result_free(&failed);
    }

    result_free(&whole);
    result_free(&chunked);
    sanitize_free(fresh);
    sanitize_free(reused);
    sanitize_free(plain);
    sanitize_free(full);
    return 0;
}
