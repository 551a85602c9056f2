/* bench_sanitize.c - throughput of the sanitizer against yajl on the same
 * bytes, in one process, over an NDJSON corpus held in memory.
 *
 *   bench_sanitize [--passes N] CORPUS.ndjson
 *
 * Every figure is the best of N passes (default 5) over the whole corpus,
 * in MB/s with MB = 10^6 bytes of the input. yajl cannot lex NaN, so it
 * reads the corpus as the sanitizer repaired it, which differs from the
 * input only at the repaired tokens. Besides the table, one line per
 * figure "RESULT<TAB>key<TAB>MB/s" is printed for scripts.
 */
#define _POSIX_C_SOURCE 200809L
#include "filter/sanitize/sanitize.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <yajl/yajl_parse.h>

#define CHUNK (64 * 1024)

struct corpus {
    char *data;
    size_t len;
    size_t *off; /* start of each non-empty line */
    size_t *n;   /* its length, without the newline */
    size_t lines;
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void corpus_free(struct corpus *c)
{
    free(c->data);
    free(c->off);
    free(c->n);
    memset(c, 0, sizeof *c);
}

/* Indexes the lines of c->data. Returns 0 or -1 (out of memory). */
static int corpus_index(struct corpus *c)
{
    size_t cap = 0;
    for (size_t i = 0; i < c->len;) {
        const char *nl = memchr(c->data + i, '\n', c->len - i);
        size_t end = nl ? (size_t)(nl - c->data) : c->len;
        if (end > i) {
            if (c->lines == cap) {
                size_t ncap = cap ? cap * 2 : 1024;
                size_t *o = realloc(c->off, ncap * sizeof *o);
                if (o == NULL) {
                    return -1;
                }
                c->off = o;
                size_t *n = realloc(c->n, ncap * sizeof *n);
                if (n == NULL) {
                    return -1;
                }
                c->n = n;
                cap = ncap;
            }
            c->off[c->lines] = i;
            c->n[c->lines] = end - i;
            c->lines++;
        }
        i = end + 1;
    }
    return 0;
}

static int corpus_load(struct corpus *c, const char *path)
{
    memset(c, 0, sizeof *c);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "bench_sanitize: %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t cap = 0;
    for (;;) {
        if (c->len == cap) {
            size_t ncap = cap ? cap * 2 : (size_t)1 << 24;
            char *d = realloc(c->data, ncap);
            if (d == NULL) {
                fprintf(stderr, "bench_sanitize: out of memory\n");
                fclose(f);
                return -1;
            }
            c->data = d;
            cap = ncap;
        }
        size_t got = fread(c->data + c->len, 1, cap - c->len, f);
        c->len += got;
        if (got == 0) {
            break;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        fprintf(stderr, "bench_sanitize: %s: read error\n", path);
        return -1;
    }
    if (corpus_index(c) != 0) {
        fprintf(stderr, "bench_sanitize: out of memory\n");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * The passes. Each returns 0, or -1 after saying what went wrong.
 */
struct ctx {
    const struct corpus *in;
    sanitize *h;
    uint64_t out_bytes; /* what the last pass produced */
    uint64_t rewrites;
};

static int lib_error(const struct ctx *x, size_t line)
{
    const sanitize_error *e = sanitize_last_error(x->h);
    fprintf(stderr, "bench_sanitize: line %zu: byte %" PRIu64 ": %s\n",
            line + 1, e->offset, e->message);
    return -1;
}

/* As the worker does: one message per call, output in the handle. */
static int pass_lib_lines(struct ctx *x)
{
    const struct corpus *c = x->in;
    x->out_bytes = 0;
    x->rewrites = 0;
    for (size_t i = 0; i < c->lines; i++) {
        sanitize_reset(x->h);
        if (sanitize_feed(x->h, c->data + c->off[i], c->n[i]) != SANITIZE_OK ||
            sanitize_finish(x->h) != SANITIZE_OK) {
            return lib_error(x, i);
        }
        size_t n;
        sanitize_output(x->h, &n);
        x->out_bytes += n;
        x->rewrites += sanitize_rewrites(x->h);
    }
    return 0;
}

static int count_writer(void *ctx, const char *buf, size_t len)
{
    (void)buf;
    *(uint64_t *)ctx += len;
    return 0;
}

/* As the command line does: a stream of values in 64 KiB reads, the output
 * to a writer (here one that only counts). */
static int pass_lib_chunks(struct ctx *x)
{
    const struct corpus *c = x->in;
    x->out_bytes = 0;
    sanitize_set_writer(x->h, count_writer, &x->out_bytes);
    sanitize_reset(x->h);
    int rc = 0;
    for (size_t i = 0; i < c->len && rc == 0; i += CHUNK) {
        size_t n = c->len - i < CHUNK ? c->len - i : CHUNK;
        if (sanitize_feed(x->h, c->data + i, n) != SANITIZE_OK) {
            rc = lib_error(x, 0);
        }
    }
    if (rc == 0 && sanitize_finish(x->h) != SANITIZE_OK) {
        rc = lib_error(x, 0);
    }
    x->rewrites = sanitize_rewrites(x->h);
    sanitize_set_writer(x->h, NULL, NULL);
    return rc;
}

static int yajl_error(yajl_handle y, const char *what, size_t line)
{
    unsigned char *m = yajl_get_error(y, 0, NULL, 0);
    fprintf(stderr, "bench_sanitize: yajl (%s), line %zu: %s", what, line + 1,
            m ? (const char *)m : "error\n");
    if (m != NULL) {
        yajl_free_error(y, m);
    }
    yajl_free(y);
    return -1;
}

/* yajl as a bare validator: no callbacks, a parser per line. */
static int pass_yajl_lines(struct ctx *x, const yajl_callbacks *cb)
{
    const struct corpus *c = x->in;
    for (size_t i = 0; i < c->lines; i++) {
        yajl_handle y = yajl_alloc(cb, NULL, NULL);
        if (y == NULL) {
            fprintf(stderr, "bench_sanitize: out of memory\n");
            return -1;
        }
        if (yajl_parse(y, (const unsigned char *)c->data + c->off[i],
                       c->n[i]) != yajl_status_ok ||
            yajl_complete_parse(y) != yajl_status_ok) {
            return yajl_error(y, "per line", i);
        }
        yajl_free(y);
    }
    return 0;
}

static int pass_yajl_bare(struct ctx *x)
{
    return pass_yajl_lines(x, NULL);
}

/* Callbacks that do nothing: what yajl costs once strings and keys are
 * decoded for a client, as they are for the sanitizer's. */
static int nop_null(void *ctx)
{
    (void)ctx;
    return 1;
}

static int nop_bool(void *ctx, int b)
{
    (void)ctx;
    (void)b;
    return 1;
}

static int nop_number(void *ctx, const char *s, size_t n)
{
    (void)ctx;
    (void)s;
    (void)n;
    return 1;
}

static int nop_string(void *ctx, const unsigned char *s, size_t n)
{
    (void)ctx;
    (void)s;
    (void)n;
    return 1;
}

static const yajl_callbacks nop_callbacks = {
    .yajl_null = nop_null,
    .yajl_boolean = nop_bool,
    .yajl_number = nop_number,
    .yajl_string = nop_string,
    .yajl_start_map = nop_null,
    .yajl_map_key = nop_string,
    .yajl_end_map = nop_null,
    .yajl_start_array = nop_null,
    .yajl_end_array = nop_null,
};

static int pass_yajl_nop(struct ctx *x)
{
    return pass_yajl_lines(x, &nop_callbacks);
}

/* yajl over the whole file in one call, a stream of values. */
static int pass_yajl_stream(struct ctx *x)
{
    const struct corpus *c = x->in;
    yajl_handle y = yajl_alloc(NULL, NULL, NULL);
    if (y == NULL) {
        fprintf(stderr, "bench_sanitize: out of memory\n");
        return -1;
    }
    yajl_config(y, yajl_allow_multiple_values, 1);
    if (yajl_parse(y, (const unsigned char *)c->data, c->len) !=
            yajl_status_ok ||
        yajl_complete_parse(y) != yajl_status_ok) {
        return yajl_error(y, "whole file", 0);
    }
    yajl_free(y);
    return 0;
}

/* Best of passes runs of fn, in MB/s of mb megabytes. */
static int best_of(int (*fn)(struct ctx *), struct ctx *x, int passes,
                   double mb, double *mbps)
{
    double best = 0;
    for (int i = 0; i < passes; i++) {
        double t0 = now();
        if (fn(x) != 0) {
            return -1;
        }
        double t = now() - t0;
        if (best == 0 || t < best) {
            best = t;
        }
    }
    *mbps = mb / best;
    return 0;
}

/* The repaired corpus, one line per message, built with handle h. */
static int make_sanitized(sanitize *h, const struct corpus *in,
                          struct corpus *out)
{
    memset(out, 0, sizeof *out);
    size_t cap = in->len + in->len / 8 + 1;
    out->data = malloc(cap);
    if (out->data == NULL) {
        fprintf(stderr, "bench_sanitize: out of memory\n");
        return -1;
    }
    for (size_t i = 0; i < in->lines; i++) {
        sanitize_reset(h);
        if (sanitize_feed(h, in->data + in->off[i], in->n[i]) != SANITIZE_OK ||
            sanitize_finish(h) != SANITIZE_OK) {
            struct ctx x = {.h = h};
            return lib_error(&x, i);
        }
        size_t n;
        const char *o = sanitize_output(h, &n);
        if (n + 1 > cap - out->len) {
            size_t ncap =
                cap * 2 > out->len + n + 1 ? cap * 2 : out->len + n + 1;
            char *d = realloc(out->data, ncap);
            if (d == NULL) {
                fprintf(stderr, "bench_sanitize: out of memory\n");
                return -1;
            }
            out->data = d;
            cap = ncap;
        }
        memcpy(out->data + out->len, o, n);
        out->len += n;
        out->data[out->len++] = '\n';
    }
    if (corpus_index(out) != 0) {
        fprintf(stderr, "bench_sanitize: out of memory\n");
        return -1;
    }
    return 0;
}

struct row {
    const char *key;
    const char *what;
    double mbps;
};

int main(int argc, char **argv)
{
    int passes = 5;
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--passes") == 0 && i + 1 < argc) {
            passes = atoi(argv[++i]);
        } else if (path == NULL && argv[i][0] != '-') {
            path = argv[i];
        } else {
            path = NULL;
            break;
        }
    }
    if (path == NULL || passes < 1) {
        fprintf(stderr, "usage: bench_sanitize [--passes N] CORPUS.ndjson\n");
        return 64;
    }

    struct corpus in, clean;
    if (corpus_load(&in, path) != 0) {
        return 1;
    }
    if (in.lines == 0) {
        fprintf(stderr, "bench_sanitize: %s: no lines\n", path);
        return 1;
    }
    double mb = (double)in.len / 1e6;
    printf("corpus: %s: %.1f MB, %zu lines of %.1f KB on average; "
           "best of %d passes\n",
           path, mb, in.lines, (double)in.len / (double)in.lines / 1e3, passes);

    sanitize_options one = {0};
    sanitize_options many = {.multiple_values = 1};
    sanitize *h = sanitize_new(&one);
    sanitize *hm = sanitize_new(&many);
    if (h == NULL || hm == NULL) {
        fprintf(stderr, "bench_sanitize: out of memory\n");
        return 1;
    }
    if (make_sanitized(h, &in, &clean) != 0) {
        return 1;
    }
    struct ctx x = {.in = &in, .h = h};
    if (pass_lib_lines(&x) != 0) {
        return 1;
    }
    printf("sanitized corpus (what yajl reads): %.1f MB; it differs from "
           "the input only at the %" PRIu64 " repaired tokens\n",
           (double)clean.len / 1e6, x.rewrites);

    struct row rows[] = {
        {"lib_lines", "nanguard library, per message (reset+feed+finish)", 0},
        {"lib_chunks", "nanguard library, 64 KiB chunks, multiple_values", 0},
        {"lib_lines_clean",
         "nanguard library, per message, on the "
         "sanitized corpus",
         0},
        {"yajl_bare", "yajl bare validation (NULL callbacks), per message", 0},
        {"yajl_stream", "yajl bare, allow_multiple_values, whole file", 0},
        {"yajl_nop", "yajl with no-op callbacks, per message", 0},
    };
    struct ctx xm = {.in = &in, .h = hm};
    struct ctx xc = {.in = &clean, .h = h};
    struct ctx xy = {.in = &clean};
    int rc = best_of(pass_lib_lines, &x, passes, mb, &rows[0].mbps) ||
             best_of(pass_lib_chunks, &xm, passes, mb, &rows[1].mbps) ||
             best_of(pass_lib_lines, &xc, passes, mb, &rows[2].mbps) ||
             best_of(pass_yajl_bare, &xy, passes, mb, &rows[3].mbps) ||
             best_of(pass_yajl_stream, &xy, passes, mb, &rows[4].mbps) ||
             best_of(pass_yajl_nop, &xy, passes, mb, &rows[5].mbps);
    if (rc != 0) {
        return 1;
    }
    if (xm.rewrites != x.rewrites) {
        fprintf(stderr,
                "bench_sanitize: %" PRIu64 " rewrites in chunks, %" PRIu64
                " per message\n",
                xm.rewrites, x.rewrites);
        return 1;
    }

    double lib = rows[0].mbps;
    printf("\n| %-62s | %8s | %s |\n", "what", "MB/s", "ratio to library");
    printf("|%s|---:|---:|\n", "---");
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        printf("| %-62s | %8.1f | %17.2f |\n", rows[i].what, rows[i].mbps,
               rows[i].mbps / lib);
    }
    printf("\nlibrary / yajl bare (per message): %.2fx (aim >= 0.75x)\n",
           lib / rows[3].mbps);
    printf("library / yajl with no-op callbacks: %.2fx\n", lib / rows[5].mbps);
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        printf("RESULT\t%s\t%.1f\n", rows[i].key, rows[i].mbps);
    }
    sanitize_free(h);
    sanitize_free(hm);
    corpus_free(&in);
    corpus_free(&clean);
    return 0;
}
