/* sanitize.c - streaming repair of JSON for PostgreSQL jsonb.
 *
 * Two stages run over every chunk:
 *
 *  1. A scanner walks the input once. It handles what yajl cannot lex and
 *     what must be rewritten: bare words (NaN, Infinity), numbers (their
 *     range), escapes and UTF-8 inside strings. It also keeps the light
 *     structure the caller needs: the path of the current value (array
 *     indexes, raw keys) for the report, the nesting depth against its
 *     limit, and the top-level members of an envelope. Runs of clean input
 *     are handed on as they are, with replacements spliced in between, into
 *     the output buffer (with a writer: a scratch buffer, emptied to the
 *     writer once yajl has read it).
 *
 *  2. yajl, with no callbacks, parses exactly what the scanner hands on,
 *     that is the repaired text, once per chunk (yajl_catch_up): the
 *     grammar of the output is checked by yajl. Numbers are never
 *     converted (no double round trip).
 *
 * A token that may be rewritten (a word, a number, an escape, a UTF-8
 * sequence) is held back until its end is seen; when a chunk ends inside
 * one, its bytes so far go to tokbuf.
 *
 * Errors: the scanner's own errors (a bad literal, a bad escape, depth) are
 * raised only after yajl has seen the text before them, so that an earlier
 * grammar error is always the one reported, however the input was cut.
 *
 * Speed: the scanner's cost adds to yajl's, so the common shapes of a
 * checkpoint take short ways, each of which only skips text it has proved
 * needs nothing and leaves everything else to the byte-wise path at a
 * token boundary: runs of array numbers and of escaped string text are
 * checked 64 bytes at a time from bit masks (see "Blocks"), plain keys
 * and short strings end inside scan_value, and the token that usually
 * comes next (',' after a value, a key after ',', '[' after ", " in an
 * array) is taken without the dispatch on its class. The byte-wise path
 * alone decides output and errors, so a short way changes neither; the
 * tests compare whole inputs with the same fed a byte at a time (which
 * never takes a block path).
 */
#include "filter/sanitize/sanitize.h"

#include "common/buf.h"
#include "filter/sanitize/json_text.h"
#include "filter/sanitize/yajl_pool.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

enum scan_state {
    ST_VALUE,   /* outside strings */
    ST_STRING,  /* inside a string */
    ST_ESCAPE,  /* after a backslash */
    ST_UESCAPE, /* in the hex digits of \uXXXX */
    ST_UTF8,    /* inside a multi-byte UTF-8 sequence */
    ST_WORD,    /* a bare word, maybe signed */
    ST_NUMBER
};

enum num_state { N_SIGN, N_ZERO, N_INT, N_DOT, N_FRAC, N_E, N_ESIGN, N_EXP };

/* What the bytes of the current string are collected for. */
enum capture { CAP_NONE, CAP_KEY, CAP_FIELD };

/* PostgreSQL's numeric_in refuses exponents at or beyond INT_MAX / 2 and
 * values with more than NUMERIC_MAX_DISPLAY_SCALE digits after the point. */
#define PG_EXPONENT_LIMIT 1073741823LL
#define PG_MAX_SCALE 16383
/* Decimal digits of 2^1024 - 2^970: the smallest value that a correctly
 * rounding strtod turns into infinity. */
static const char dbl_overflow_digits[] =
    "179769313486231580793728971405303415079934132710037826936173"
    "778980444968292764750946649017977587207096330286416692887910"
    "946555547851940402630657488671505820681908902000708383676273"
    "854845817711531764475730270069855571366959622842914819860834"
    "936475292719074168444365510704342711559699508093042880177904"
    "174497792";

#define NO_OFFSET UINT64_MAX

static const char repl_null[] = "null";
static const char repl_escape[] = "\\ufffd";
static const char repl_utf8[] = "\xEF\xBF\xBD";

/* What may come next inside a container: the grammar, checked here so that
 * errors name the exact byte (yajl checks it again on the output). */
enum expect {
    EXP_VALUE,          /* after ',' in an array, after ':' */
    EXP_VALUE_OR_CLOSE, /* after '[' */
    EXP_COMMA_OR_CLOSE, /* after a value */
    EXP_KEY,            /* after ',' in an object */
    EXP_KEY_OR_CLOSE,   /* after '{' */
    EXP_COLON           /* after a key */
};

struct frame {
    bool is_map;
    unsigned char expect; /* enum expect: what may come next */
    uint64_t index;       /* array: index of the current element */
    size_t key_start;     /* map: the current key, raw, in h->keys */
    size_t key_len;
    /* map: the current key in the chunk, not copied to h->keys yet (it
     * is when a container opens under it or the chunk ends) */
    const unsigned char *key_ptr;
};

/* A piece of output waiting for yajl (see emit()). */
struct piece_rec {
    size_t out_start;         /* where it starts in h->out */
    uint64_t in_off;          /* input offset of its first byte */
    uint64_t straddle_before; /* h->straddle before it */
    unsigned char kind;       /* enum piece */
};

struct sanitize {
    sanitize_options opt;
    bool avx2; /* the block paths use AVX2 */
    yajl_handle yajl;
    yajl_alloc_funcs alloc;
    sanitize_write_fn write;
    void *write_ctx;
    ng_buf out;
    sanitize_error err;
    bool failed;
    bool seen_value; /* any non-space byte at all */

    enum scan_state state;
    bool top_done;              /* a whole top-level value has been read */
    const unsigned char *chunk; /* current chunk */
    const unsigned char *chunk_end;
    uint64_t chunk_off;         /* input offset of chunk[0] */
    const unsigned char *clean; /* first byte of the chunk not handed on */
    uint64_t out_off;           /* bytes handed on so far */
    uint64_t straddle;          /* see emit() */
    struct piece_rec *pieces;   /* output not yet parsed by yajl */
    size_t npieces;
    size_t cap_pieces;

    const unsigned char *tok; /* token start in this chunk, NULL when the
                                 token began in an earlier one (tokbuf) */
    uint64_t tok_off;
    ng_buf tokbuf;

    char word[10];
    size_t word_len;
    char word_sign;

    enum num_state nstate;
    uint64_t int_digits;      /* digits before the point, when not "0" */
    uint64_t frac_digits;     /* digits after the point */
    uint64_t frac_lead_zeros; /* zeros after the point before any other */
    bool nonzero;
    int64_t exp;
    bool exp_neg;

    unsigned uval;
    int udigits;

    int utf8_need;
    unsigned char utf8_lo, utf8_hi;

    bool hi_pending; /* a high surrogate escape waits for its partner */
    const unsigned char *hi_ptr; /* it, in this chunk, not handed on yet */
    char hi[6];
    uint64_t hi_off;
    bool str_dirty; /* the current string was repaired */
    bool str_is_key;
    uint64_t str_off;
    enum capture cap;
    const unsigned char *cap_from; /* capture continues from here */

    /* structure */
    struct frame *frames;
    size_t nframes, frames_cap;
    ng_buf keys;
    int cur_field; /* field named by the current depth-1 key, or -1 */
    sanitize_type root_type;
    sanitize_field fields[SANITIZE_FIELD_COUNT];
    ng_buf field_str[SANITIZE_FIELD_COUNT];
    ng_buf raw;      /* a field string, or a key to decode */
    ng_buf path_key; /* a key decoded for a path */

    /* report */
    uint64_t member;              /* object members seen (keys read) */
    uint64_t key_repaired_member; /* the last one whose key was repaired */
    size_t key_repaired_depth;
    uint64_t values;
    uint64_t counts[SANITIZE_KIND_COUNT];
    ng_buf paths;      /* NUL-terminated pointers, back to back */
    size_t *path_offs; /* where each starts in paths */
    size_t npaths;
};

static const char *const kind_names[SANITIZE_KIND_COUNT] = {
    "nan",        "infinity",       "out_of_range",
    "nul_escape", "lone_surrogate", "invalid_utf8",
};

static const char *const field_names[SANITIZE_FIELD_COUNT] = {
    "thread_id", "checkpoint_ns", "checkpoint_id", "parent_checkpoint_id",
    "type",      "checkpoint",    "metadata",
};

const char *sanitize_kind_name(sanitize_kind kind)
{
    return (unsigned)kind < SANITIZE_KIND_COUNT ? kind_names[kind] : "?";
}

const char *sanitize_field_name(sanitize_field_id id)
{
    return (unsigned)id < SANITIZE_FIELD_COUNT ? field_names[id] : "?";
}

enum vclass {
    V_OTHER,
    V_SPACE,
    V_PUNCT,
    V_OPEN,
    V_CLOSE,
    V_QUOTE,
    V_NUMBER,
    V_WORD
};

/* enum vclass of every byte. */
static const unsigned char value_class[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 7, 2, 6, 0, 0,
    6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 2, 0, 0, 0, 0, 0, 0, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 3, 0, 4, 0, 0,
    0, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 3, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

/* Bytes that end the fast path inside a string: controls, '"', '\\'
 * and every byte of a multi-byte UTF-8 sequence. */
static const char string_stop[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
};

static const char escape_ok[256] = {
    ['"'] = 1, ['\\'] = 1, ['/'] = 1, ['b'] = 1,
    ['f'] = 1, ['n'] = 1,  ['r'] = 1, ['t'] = 1,
};

/* ------------------------------------------------------------------------
 * Errors
 */
static int yajl_catch_up(sanitize *h);

static sanitize_status fail(sanitize *h, sanitize_status code, uint64_t offset,
                            const char *msg)
{
    /* yajl first reads the text handed on before the fault: an earlier
     * grammar error is the one to report. */
    if (!h->failed && h->npieces > 0) {
        yajl_catch_up(h);
    }
    if (!h->failed) {
        h->failed = true;
        h->err.code = code;
        h->err.offset = offset;
        snprintf(h->err.message, sizeof h->err.message, "%s", msg);
    }
    return h->err.code;
}

static uint64_t offset_at(const sanitize *h, const unsigned char *p)
{
    return h->chunk_off + (uint64_t)(p - h->chunk);
}

/* yajl's message, without its "parse error: " prefix and newline. */
static void fail_from_yajl(sanitize *h, uint64_t offset)
{
    unsigned char *m = yajl_get_error(h->yajl, 0, NULL, 0);
    const char *s = m ? (const char *)m : "invalid JSON";
    const char *colon = strstr(s, ": ");
    if (colon != NULL) {
        s = colon + 2;
    }
    char msg[sizeof h->err.message];
    snprintf(msg, sizeof msg, "%s", s);
    size_t n = strlen(msg);
    while (n > 0 &&
           (msg[n - 1] == '\n' || msg[n - 1] == ' ' || msg[n - 1] == '.')) {
        msg[--n] = '\0';
    }
    if (m != NULL) {
        yajl_free_error(h->yajl, m);
    }
    fail(h, SANITIZE_EMALFORMED, offset, msg);
}

/* ------------------------------------------------------------------------
 * Handing text on: to yajl, then to the writer or the output buffer.
 */

/* yajl stops just after the token it refuses. Returns where in the piece
 * that token starts, or -1 when it starts in an earlier piece. */
static long token_start(const unsigned char *p, size_t end)
{
    if (end == 0) {
        return -1;
    }
    size_t i = end - 1;
    if (p[i] == '"') {
        while (i-- > 0) {
            size_t bs = 0;
            while (bs < i && p[i - 1 - bs] == '\\') {
                bs++;
            }
            if (p[i] == '"' && bs % 2 == 0) {
                return (long)i;
            }
        }
        return -1;
    }
    enum vclass c = value_class[p[i]];
    if (c != V_NUMBER && c != V_WORD && p[i] != '.') {
        return (long)i;
    }
    while (i > 0 && (value_class[p[i - 1]] == V_NUMBER ||
                     value_class[p[i - 1]] == V_WORD || p[i - 1] == '.')) {
        i--;
    }
    return i > 0 ? (long)i : -1;
}

static bool in_string(const sanitize *h)
{
    return h->state == ST_STRING || h->state == ST_ESCAPE ||
           h->state == ST_UESCAPE || h->state == ST_UTF8;
}

enum piece { PIECE_CLEAN, PIECE_REPLACEMENT, PIECE_TOKEN_PREFIX };

/* Pieces waiting for yajl, at most: a bound on the memory a chunk dense
 * with repairs needs, and on the output held back from a writer. */
#define MAX_PIECES 4096
#define MAX_PENDING_BYTES (1u << 20)

/* Hands text on. It goes to h->out at once, but yajl reads it later, in
 * one call per chunk (yajl_catch_up): most of a checkpoint is clean runs
 * between a few repairs, and a yajl_parse call per piece cost about 5%.
 * in_off is the input offset of p[0]; a replacement has no input bytes of
 * its own, so errors in it are placed at in_off itself. A token that yajl
 * refuses may have begun in an earlier piece: h->straddle remembers where
 * the token open at the end of the last piece began. */
static int emit(sanitize *h, const void *p, size_t n, uint64_t in_off,
                enum piece kind)
{
    if (n == 0) {
        return 0;
    }
    if (h->npieces == h->cap_pieces) {
        size_t cap = h->cap_pieces ? h->cap_pieces * 2 : 64;
        struct piece_rec *r = realloc(h->pieces, cap * sizeof *r);
        if (r == NULL) {
            fail(h, SANITIZE_ENOMEM, in_off, "out of memory");
            return -1;
        }
        h->pieces = r;
        h->cap_pieces = cap;
    }
    struct piece_rec *r = &h->pieces[h->npieces];
    r->out_start = h->out.len;
    r->in_off = in_off;
    r->straddle_before = h->straddle;
    r->kind = (unsigned char)kind;
    if (ng_buf_append(&h->out, p, n) != 0) {
        fail(h, SANITIZE_ENOMEM, in_off, "out of memory");
        return -1;
    }
    h->npieces++;
    h->out_off += n;
    h->straddle = in_string(h)                 ? h->str_off
                  : kind == PIECE_TOKEN_PREFIX ? h->tok_off
                                               : NO_OFFSET;
    if (h->npieces >= MAX_PIECES ||
        (h->write != NULL &&
         h->out.len - h->pieces[0].out_start >= MAX_PENDING_BYTES)) {
        return yajl_catch_up(h);
    }
    return 0;
}

/* yajl reads the pieces handed on since its last call; what it accepts
 * goes to the writer (or stays in h->out). On a grammar error, the input
 * offset is found from the piece yajl stopped in, as if it had read the
 * pieces one by one, and the text from that piece on is dropped. */
static int yajl_catch_up(sanitize *h)
{
    if (h->npieces == 0) {
        return 0;
    }
    size_t start = h->pieces[0].out_start;
    const unsigned char *base = (const unsigned char *)h->out.data;
    size_t good_end = h->out.len;
    int rc = 0;
    yajl_status st = yajl_parse(h->yajl, base + start, good_end - start);
    if (st != yajl_status_ok) {
        size_t e = start + yajl_get_bytes_consumed(h->yajl);
        size_t j = 0;
        while (j + 1 < h->npieces && h->pieces[j + 1].out_start < e) {
            j++;
        }
        const struct piece_rec *r = &h->pieces[j];
        uint64_t off = r->in_off;
        if (r->kind != PIECE_REPLACEMENT) {
            long i = token_start(base + r->out_start,
                                 e > r->out_start ? e - r->out_start : 0);
            off = i >= 0                            ? r->in_off + (uint64_t)i
                  : r->straddle_before != NO_OFFSET ? r->straddle_before
                                                    : r->in_off;
        }
        good_end = r->out_start;
        h->npieces = 0;
        fail_from_yajl(h, off);
        rc = -1;
    }
    uint64_t first_in = h->pieces[0].in_off;
    h->npieces = 0;
    if (h->write != NULL) {
        if (good_end > start && h->write(h->write_ctx, h->out.data + start,
                                         good_end - start) != 0) {
            fail(h, SANITIZE_EWRITE, first_in, "cannot write output");
            rc = -1;
        }
        h->out.len = 0;
    } else {
        h->out.len = good_end;
    }
    return rc;
}

/* Hands on the clean input from h->clean up to p. */
static int emit_clean(sanitize *h, const unsigned char *p)
{
    const unsigned char *c = h->clean;
    h->clean = p;
    return emit(h, c, (size_t)(p - c), offset_at(h, c), PIECE_CLEAN);
}

/* Stops on a fault the scanner found at input offset off. yajl first gets
 * the clean text before upto (the fault, or the token holding it), so
 * that an earlier grammar error wins whatever the chunking. Returns NULL
 * for the scan functions. */
static const unsigned char *halt(sanitize *h, const unsigned char *upto,
                                 sanitize_status code, uint64_t off,
                                 const char *msg)
{
    if (!h->failed && h->chunk != NULL && upto != NULL && upto > h->clean &&
        upto <= h->chunk_end) {
        emit_clean(h, upto);
    }
    fail(h, code, off, msg);
    return NULL;
}

/* halt() at the token in progress. */
static const unsigned char *halt_token(sanitize *h, const char *msg)
{
    return halt(h, h->tok, SANITIZE_EMALFORMED, h->tok_off, msg);
}

/* The token in progress stays as it is. */
static int tok_keep(sanitize *h)
{
    int rc = 0;
    if (h->tok == NULL && h->tokbuf.len > 0) {
        rc = emit(h, h->tokbuf.data, h->tokbuf.len, h->tok_off,
                  PIECE_TOKEN_PREFIX);
    }
    h->tokbuf.len = 0;
    return rc;
}

/* The token in progress, which ends before p, becomes repl. */
static int tok_replace(sanitize *h, const unsigned char *p, const char *repl,
                       size_t repl_len, sanitize_kind kind)
{
    if (h->tok != NULL && emit_clean(h, h->tok) != 0) {
        return -1;
    }
    h->tokbuf.len = 0;
    h->clean = p;
    h->counts[kind]++;
    return emit(h, repl, repl_len, h->tok_off, PIECE_REPLACEMENT);
}

static void tok_begin(sanitize *h, const unsigned char *p)
{
    h->tok = p;
    h->tok_off = offset_at(h, p);
    h->tokbuf.len = 0;
}

/* The whole text of the token ending before p, contiguous. */
static const char *tok_text(sanitize *h, const unsigned char *p, size_t *len)
{
    if (h->tok != NULL) {
        *len = (size_t)(p - h->tok);
        return (const char *)h->tok;
    }
    /* The token began in an earlier chunk: gather it in tokbuf, which
     * then holds all of it, so the clean run starts after it. */
    if (ng_buf_append(&h->tokbuf, h->chunk, (size_t)(p - h->chunk)) != 0) {
        return NULL;
    }
    h->clean = p;
    *len = h->tokbuf.len;
    return h->tokbuf.data;
}

/* ------------------------------------------------------------------------
 * Structure: the path of the current value, depth, envelope members
 */
static struct frame *top_frame(sanitize *h)
{
    return h->nframes ? &h->frames[h->nframes - 1] : NULL;
}

/* Whether a value now is a member of the top-level object whose key names
 * an envelope field. */
static int current_field(const sanitize *h)
{
    return h->nframes == 1 && h->frames[0].is_map ? h->cur_field : -1;
}

static int push_frame(sanitize *h, bool is_map)
{
    if (h->nframes == h->frames_cap) {
        size_t cap = h->frames_cap ? h->frames_cap * 2 : 32;
        struct frame *f = realloc(h->frames, cap * sizeof *f);
        if (f == NULL) {
            return -1;
        }
        h->frames = f;
        h->frames_cap = cap;
    }
    struct frame *f = &h->frames[h->nframes++];
    f->is_map = is_map;
    f->expect = is_map ? EXP_KEY_OR_CLOSE : EXP_VALUE_OR_CLOSE;
    f->index = 0;
    f->key_start = h->keys.len;
    f->key_len = 0;
    f->key_ptr = NULL;
    return 0;
}

/* The current key of the map frame f, raw. */
static const char *frame_key(const sanitize *h, const struct frame *f)
{
    return f->key_ptr != NULL ? (const char *)f->key_ptr
                              : h->keys.data + f->key_start;
}

/* Copies the key of f that is still in the chunk into h->keys. */
static int key_keep(sanitize *h, struct frame *f)
{
    if (f->key_ptr == NULL) {
        return 0;
    }
    const unsigned char *k = f->key_ptr;
    f->key_ptr = NULL;
    h->keys.len = f->key_start;
    return ng_buf_append(&h->keys, k, f->key_len);
}

/* Decodes raw JSON string bytes (with the repairs) into dst: returns the
 * text, NUL terminated, or NULL when out of memory. */
static const char *decode_into(ng_buf *dst, const unsigned char *s, size_t n)
{
    ng_buf_clear(dst);
    return json_decode_repaired(s, n, dst) == 0 ? dst->data : NULL;
}

/* Writes s at out as a JSON Pointer token ('~' and '/' become "~0" and
 * "~1"); returns the end. */
static char *put_pointer_token(char *out, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '~' || c == '/') {
            *out++ = '~';
            c = c == '~' ? '0' : '1';
        }
        *out++ = c;
    }
    return out;
}

/* Whether raw key text decodes to itself: no escape, all ASCII. */
static bool key_is_plain(const unsigned char *k, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (k[i] == '\\' || k[i] >= 0x80) {
            return false;
        }
    }
    return true;
}

/* Appends the JSON Pointer of the current value to the report. */
static int record_path(sanitize *h)
{
    size_t max = h->opt.max_paths;
    if (h->npaths >= max) {
        return 0;
    }
    if (h->path_offs == NULL) {
        h->path_offs = malloc(max * sizeof *h->path_offs);
        if (h->path_offs == NULL) {
            return -1;
        }
    }
    /* Room for all of it at once: a raw key decodes to at most 3 bytes
     * a byte (one invalid byte becomes U+FFFD), each doubled at most by
     * "~0"/"~1"; an index has at most 20 digits. */
    size_t need = 1;
    for (size_t i = 0; i < h->nframes; i++) {
        const struct frame *f = &h->frames[i];
        need += 1 + (f->is_map ? 6 * f->key_len : 20);
    }
    if (ng_buf_reserve(&h->paths, need) != 0) {
        return -1;
    }
    char *out = h->paths.data + h->paths.len;
    for (size_t i = 0; i < h->nframes; i++) {
        const struct frame *f = &h->frames[i];
        *out++ = '/';
        if (!f->is_map) {
            char num[20];
            size_t k = sizeof num;
            uint64_t v = f->index;
            do {
                num[--k] = (char)('0' + v % 10);
                v /= 10;
            } while (v != 0);
            memcpy(out, num + k, sizeof num - k);
            out += sizeof num - k;
            continue;
        }
        size_t len = f->key_len;
        if (len == 0) {
            continue; /* "" is an empty token (keys.data may be NULL) */
        }
        const unsigned char *raw = (const unsigned char *)frame_key(h, f);
        const char *key = (const char *)raw;
        if (!key_is_plain(raw, len)) {
            ng_buf *dec = &h->path_key;
            ng_buf_clear(dec);
            if (json_decode_repaired(raw, len, dec) != 0) {
                return -1;
            }
            key = dec->data;
            len = dec->len;
        }
        out = put_pointer_token(out, key, len);
    }
    *out++ = '\0';
    h->path_offs[h->npaths++] = h->paths.len;
    h->paths.len = (size_t)(out - h->paths.data);
    return 0;
}

static int value_repaired(sanitize *h)
{
    /* A repaired key and its repaired value name the same member: once. */
    if (h->key_repaired_member == h->member &&
        h->key_repaired_depth == h->nframes) {
        return 0;
    }
    if (record_path(h) != 0) {
        fail(h, SANITIZE_ENOMEM, h->tok_off, "out of memory");
        return -1;
    }
    return 0;
}

/* A scalar value of this type ends. */
static void scalar_done(sanitize *h, sanitize_type type)
{
    if (h->nframes == 0) {
        h->root_type = type;
        h->values++;
        h->top_done = true;
        return;
    }
    int field = current_field(h);
    if (field >= 0) {
        h->fields[field].type = type;
        h->fields[field].str = NULL;
        h->fields[field].str_len = 0;
    }
}

static uint64_t out_pos(const sanitize *h, const unsigned char *p)
{
    return h->out_off + (uint64_t)(p - h->clean);
}

/* '{' or '[' at p. Returns 0 or -1. */
static int container_open(sanitize *h, const unsigned char *p, bool is_map)
{
    sanitize_type type = is_map ? SANITIZE_TYPE_OBJECT : SANITIZE_TYPE_ARRAY;
    if (h->nframes == 0) {
        h->root_type = type;
        memset(h->fields, 0, sizeof h->fields);
        h->cur_field = -1;
    } else {
        int field = current_field(h);
        if (field >= 0) {
            h->fields[field].type = type;
            h->fields[field].span_off = out_pos(h, p);
            h->fields[field].span_len = 0;
        }
    }
    /* The key this container is under must outlive the chunk. */
    struct frame *parent = top_frame(h);
    if ((parent != NULL && key_keep(h, parent) != 0) ||
        push_frame(h, is_map) != 0) {
        fail(h, SANITIZE_ENOMEM, offset_at(h, p), "out of memory");
        return -1;
    }
    return 0;
}

/* '}' or ']' ends before p. */
static void container_close(sanitize *h, const unsigned char *p)
{
    if (h->nframes == 0) {
        return; /* unbalanced: yajl refuses it */
    }
    struct frame *f = &h->frames[--h->nframes];
    h->keys.len = f->key_start;
    if (h->nframes == 0) {
        h->values++;
        h->top_done = true;
        return;
    }
    int field = current_field(h);
    if (field >= 0) {
        h->fields[field].span_len = out_pos(h, p) - h->fields[field].span_off;
    }
}

/* A value begins here: the grammar must allow one. The container it is in
 * then waits for ',' or its end. Returns 0, or -1 when no value may stand
 * here. */
static int value_begins_in(struct frame *top)
{
    if (top == NULL) {
        return 0;
    }
    if (top->expect != EXP_VALUE && top->expect != EXP_VALUE_OR_CLOSE) {
        return -1;
    }
    top->expect = EXP_COMMA_OR_CLOSE;
    return 0;
}

/* A string (an object key when is_key) begins after the quote at p. */
static void string_begin(sanitize *h, const unsigned char *p, bool is_key)
{
    struct frame *top = top_frame(h);
    h->state = ST_STRING;
    h->str_off = offset_at(h, p);
    h->str_dirty = false;
    h->str_is_key = is_key;
    h->cap = CAP_NONE;
    if (h->str_is_key) {
        h->keys.len = top->key_start;
        top->key_ptr = NULL;
        h->cap = CAP_KEY;
    } else if (current_field(h) >= 0) {
        ng_buf_clear(&h->raw);
        h->cap = CAP_FIELD;
    }
    h->cap_from = p + 1;
}

/* Collects the current string's bytes from cap_from up to p. */
static int capture(sanitize *h, const unsigned char *p)
{
    if (h->cap == CAP_NONE) {
        return 0;
    }
    ng_buf *b = h->cap == CAP_KEY ? &h->keys : &h->raw;
    const unsigned char *from = h->cap_from;
    h->cap_from = p;
    return ng_buf_append(b, from, (size_t)(p - from));
}

static int field_of_key(sanitize *h, const struct frame *f)
{
    size_t len = f->key_len;
    if (len == 0) {
        return -1; /* no field has an empty name */
    }
    const char *k = frame_key(h, f);
    if (memchr(k, '\\', len) != NULL) {
        k = decode_into(&h->raw, (const unsigned char *)k, len);
        if (k == NULL) {
            return -1;
        }
        len = strlen(k);
    }
    for (int i = 0; i < SANITIZE_FIELD_COUNT; i++) {
        if (strlen(field_names[i]) == len &&
            memcmp(field_names[i], k, len) == 0) {
            return i;
        }
    }
    return -1;
}

/* The closing quote of a string is at p. Returns 0 or -1. */
static int string_end(sanitize *h, const unsigned char *p)
{
    h->state = ST_VALUE;
    if (h->str_is_key) {
        struct frame *top = top_frame(h);
        if (h->keys.len == top->key_start) {
            /* All of it in this chunk: no copy for now. */
            top->key_ptr = h->cap_from;
            top->key_len = (size_t)(p - h->cap_from);
        } else {
            if (capture(h, p) != 0) {
                fail(h, SANITIZE_ENOMEM, offset_at(h, p), "out of memory");
                return -1;
            }
            top->key_len = h->keys.len - top->key_start;
        }
        top->expect = EXP_COLON;
        if (h->nframes == 1) {
            h->cur_field = field_of_key(h, top);
        }
        h->member++;
        if (!h->str_dirty || value_repaired(h) != 0) {
            return h->failed ? -1 : 0;
        }
        h->key_repaired_member = h->member;
        h->key_repaired_depth = h->nframes;
        return 0;
    }
    if (capture(h, p) != 0) {
        fail(h, SANITIZE_ENOMEM, offset_at(h, p), "out of memory");
        return -1;
    }
    if (h->str_dirty && value_repaired(h) != 0) {
        return -1;
    }
    int field = current_field(h);
    if (field >= 0 && h->cap == CAP_FIELD) {
        sanitize_field *f = &h->fields[field];
        ng_buf *dst = &h->field_str[field];
        if (decode_into(dst, (const unsigned char *)h->raw.data, h->raw.len) ==
            NULL) {
            fail(h, SANITIZE_ENOMEM, offset_at(h, p), "out of memory");
            return -1;
        }
        f->type = SANITIZE_TYPE_STRING;
        f->str = dst->data;
        f->str_len = dst->len;
        return 0;
    }
    scalar_done(h, SANITIZE_TYPE_STRING);
    return 0;
}

/* ------------------------------------------------------------------------
 * Numbers
 */

/* Whether the number just read is one PostgreSQL or a double cannot hold.
 * Its text is needed only at the double's edge. */
static bool number_out_of_range(sanitize *h, const unsigned char *p)
{
    if (h->exp >= PG_EXPONENT_LIMIT) {
        return true;
    }
    int64_t e = h->exp_neg ? -h->exp : h->exp;
    if ((int64_t)h->frac_digits - e > PG_MAX_SCALE) {
        return true;
    }
    if (!h->nonzero) {
        return false;
    }
    /* Decimal exponent of the first significant digit. */
    int64_t sci = h->int_digits > 0 ? (int64_t)h->int_digits - 1
                                    : -(int64_t)h->frac_lead_zeros - 1;
    sci += e;
    if (sci != 308) {
        return sci > 308;
    }
    size_t len;
    const char *s = tok_text(h, p, &len);
    if (s == NULL) {
        return false;
    }
    /* Compare the significant digits with the overflow threshold. */
    size_t k = 0;
    bool started = false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == 'e' || c == 'E') {
            break;
        }
        if (c < '0' || c > '9' || (!started && c == '0')) {
            continue;
        }
        started = true;
        if (k == sizeof dbl_overflow_digits - 1) {
            return true; /* equal so far, and more digits follow */
        }
        if (c != dbl_overflow_digits[k]) {
            return c > dbl_overflow_digits[k];
        }
        k++;
    }
    return k == sizeof dbl_overflow_digits - 1;
}

/* A number or a literal must not run into another one ("1true", "1-1"):
 * jq and PostgreSQL refuse both. */
static bool runs_on(const sanitize *h, const unsigned char *p)
{
    return p < h->chunk_end && (value_class[*p] == V_NUMBER ||
                                value_class[*p] == V_WORD || *p == '.');
}

static const unsigned char *run_on_error(sanitize *h, const unsigned char *p)
{
    char msg[64];
    snprintf(msg, sizeof msg, "unexpected character '%c' after a value", *p);
    return halt(h, h->tok, SANITIZE_EMALFORMED, offset_at(h, p), msg);
}

/* The number token ends before p. Returns where to go on, NULL on error. */
static const unsigned char *number_end(sanitize *h, const unsigned char *p)
{
    switch (h->nstate) {
    case N_SIGN:
        return halt_token(h, "'-' must be followed by a digit");
    case N_DOT:
        return halt_token(h, "digit expected after the decimal point");
    case N_E:
    case N_ESIGN:
        return halt_token(h, "digit expected in the exponent");
    default:
        break;
    }
    if (runs_on(h, p)) {
        return run_on_error(h, p);
    }
    /* The state changes only after the token is handed on (see emit). */
    if (!number_out_of_range(h, p)) {
        int rc = tok_keep(h);
        h->state = ST_VALUE;
        scalar_done(h, SANITIZE_TYPE_NUMBER);
        return rc == 0 ? p : NULL;
    }
    int rc = tok_replace(h, p, repl_null, 4, SANITIZE_OUT_OF_RANGE);
    h->state = ST_VALUE;
    if (rc != 0 || value_repaired(h) != 0) {
        return NULL;
    }
    scalar_done(h, SANITIZE_TYPE_NULL);
    return p;
}

/* Skips decimal digits, eight at a time where it can. */
static inline __attribute__((always_inline)) const unsigned char *
scan_digits(const unsigned char *p, const unsigned char *end)
{
    const uint64_t hi = UINT64_C(0xF0F0F0F0F0F0F0F0);
    const uint64_t three = UINT64_C(0x3030303030303030);
    const uint64_t six = UINT64_C(0x0606060606060606);
    while (end - p >= 8) {
        uint64_t x;
        memcpy(&x, p, 8);
        /* A byte is a digit when its high nibble is 3, and still is after
         * adding 6 (0x3A-0x3F are not). Carries run only towards later
         * bytes, past the first non-digit, so its position is exact. */
        uint64_t bad = ((x & hi) ^ three) | (((x + six) & hi) ^ three);
        if (bad != 0) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
            return p + (__builtin_ctzll(bad) >> 3);
#else
            break;
#endif
        }
        p += 8;
    }
    while (p < end && (unsigned)(*p - '0') < 10) {
        p++;
    }
    return p;
}

/* The common number, whole in the chunk: -?(0|[1-9][0-9]*)(.[0-9]+)? with
 * no exponent, at most 308 digits before the point and 16383 after, so in
 * range for a double and for PostgreSQL. Returns its end, or NULL when it
 * is anything else (the token machinery then takes it). */
static inline __attribute__((always_inline)) const unsigned char *
plain_number(const unsigned char *p, const unsigned char *end)
{
    const unsigned char *q = p + (*p == '-');
    const unsigned char *digits = q;
    if (q < end && *q == '0') {
        q++;
    } else {
        q = scan_digits(q, end);
        if (q == digits || q - digits > 308) {
            return NULL;
        }
    }
    if (q < end && *q == '.') {
        const unsigned char *f = q + 1;
        q = scan_digits(f, end);
        if (q == f || q - f > PG_MAX_SCALE) {
            return NULL;
        }
    }
    /* The end must be seen, and be no exponent nor a run-on. */
    if (q >= end || value_class[*q] == V_NUMBER || value_class[*q] == V_WORD ||
        *q == '.') {
        return NULL;
    }
    return q;
}

/* ------------------------------------------------------------------------
 * Blocks: 64 bytes looked at together. A classifier turns them into bit
 * masks, bit i standing for byte i, so that a whole run of numbers or of
 * string text is checked with a few word operations and no branch per
 * token. A block path only skips what it has proved needs nothing (no
 * repair, no error); anything else is left to the byte-wise scanner,
 * which stays the one authority on output, errors and their offsets.
 *
 * The masks come from AVX2 (chosen at run time when the CPU has it),
 * SSE2 (every x86-64) or plain C; the checks on them are the same code,
 * instantiated once per way.
 */
#define BLOCK 64

enum block_isa { ISA_C, ISA_SSE2, ISA_AVX2 };

#if defined(__SSE2__) && !defined(NANGUARD_NO_SIMD)
#define BLOCK_SSE2 1
#define ISA_BASE ISA_SSE2
#else
#define ISA_BASE ISA_C
#endif

#if defined(BLOCK_SSE2) && defined(__x86_64__) && defined(__GNUC__) &&         \
    !defined(NANGUARD_NO_AVX2)
#define BLOCK_AVX2 1
#include <immintrin.h>
#define AVX2_TARGET __attribute__((target("avx2,bmi,popcnt")))
/* An instance: everything it calls inlined, so that the masks stay in
 * registers. */
#define AVX2_INSTANCE __attribute__((target("avx2,bmi,popcnt"), flatten))
#endif

static const uint64_t even_bits = UINT64_C(0x5555555555555555);

static inline unsigned popcount_isa(uint64_t x, enum block_isa isa)
{
    if (isa == ISA_AVX2) {
        return (unsigned)__builtin_popcountll(x); /* POPCNT there */
    }
    x -= (x >> 1) & even_bits;
    x = (x & UINT64_C(0x3333333333333333)) +
        ((x >> 2) & UINT64_C(0x3333333333333333));
    x = (x + (x >> 4)) & UINT64_C(0x0F0F0F0F0F0F0F0F);
    return (unsigned)((x * UINT64_C(0x0101010101010101)) >> 56);
}

static inline unsigned lowest_bit(uint64_t x) /* x != 0 */
{
    return (unsigned)__builtin_ctzll(x);
}

static inline unsigned highest_bit(uint64_t x) /* x != 0 */
{
    return 63u - (unsigned)__builtin_clzll(x);
}

/* Bits below bit n (n <= 64). */
static inline uint64_t bits_below(unsigned n)
{
    return n >= 64 ? ~(uint64_t)0 : ((uint64_t)1 << n) - 1;
}

/* The mask of the bytes n places on (1 <= n <= 63): bit i of the result
 * is bit i + n of the block, taken from the next block past the end. */
static inline uint64_t ahead(uint64_t cur, uint64_t next, unsigned n)
{
    return cur >> n | next << (64 - n);
}

/* a + b + carry, the carry out in *carry. */
static inline uint64_t add_carry(uint64_t a, uint64_t b, uint64_t *carry)
{
    uint64_t s1, s2;
    bool c1 = __builtin_add_overflow(a, b, &s1);
    bool c2 = __builtin_add_overflow(s1, *carry, &s2);
    *carry = (uint64_t)(c1 | c2);
    return s2;
}

/* What a block is looked at for. */
struct number_masks {
    uint64_t digit, minus, dot, comma, space, zero;
};

struct string_masks {
    uint64_t quote, bslash;
    uint64_t ctl;      /* a control byte, or not ASCII */
    uint64_t u, hex;   /* 'u'; a hex digit */
    uint64_t d, zero;  /* 'd' or 'D'; '0' */
    uint64_t ge8, gec; /* a hex digit of 8 or more; of 0xC or more */
    uint64_t simple;   /* what may follow a backslash but 'u' (some) */
    /* The classes from u on are set by AVX2 only: the other scanners check
     * escapes one at a time (escapes_bad_each). */
};

/* Plain C, a byte at a time. */
static void number_classify_c(const unsigned char *p, struct number_masks *m)
{
    memset(m, 0, sizeof *m);
    for (unsigned i = 0; i < BLOCK; i++) {
        uint64_t bit = (uint64_t)1 << i;
        unsigned char c = p[i];
        m->digit |= (unsigned)(c - '0') < 10 ? bit : 0;
        m->minus |= c == '-' ? bit : 0;
        m->dot |= c == '.' ? bit : 0;
        m->comma |= c == ',' ? bit : 0;
        m->space |= c == ' ' ? bit : 0;
        m->zero |= c == '0' ? bit : 0;
    }
}

static void string_classify_c(const unsigned char *p, struct string_masks *m)
{
    memset(m, 0, sizeof *m);
    for (unsigned i = 0; i < BLOCK; i++) {
        uint64_t bit = (uint64_t)1 << i;
        unsigned char c = p[i];
        m->quote |= c == '"' ? bit : 0;
        m->bslash |= c == '\\' ? bit : 0;
        m->ctl |= c < 0x20 || c >= 0x80 ? bit : 0;
    }
}

/* The same with vectors: signed byte compares, so that a range test is
 * an add and a compare, and bytes >= 0x80 count as below 0x20. */
#if defined(BLOCK_SSE2)
/* A block in four vectors; a class is looked for in all four at once,
 * which keeps few vectors live. */
struct vblock {
    __m128i a, b, c, d;
};

static inline struct vblock load_block(const unsigned char *p)
{
    struct vblock v;
    v.a = _mm_loadu_si128((const __m128i *)(const void *)p);
    v.b = _mm_loadu_si128((const __m128i *)(const void *)(p + 16));
    v.c = _mm_loadu_si128((const __m128i *)(const void *)(p + 32));
    v.d = _mm_loadu_si128((const __m128i *)(const void *)(p + 48));
    return v;
}

/* The 64 bits of four byte masks (0x00 or 0xFF per byte). */
static inline uint64_t bits64(__m128i a, __m128i b, __m128i c, __m128i d)
{
    return (uint64_t)(unsigned)_mm_movemask_epi8(a) |
           (uint64_t)(unsigned)_mm_movemask_epi8(b) << 16 |
           (uint64_t)(unsigned)_mm_movemask_epi8(c) << 32 |
           (uint64_t)(unsigned)_mm_movemask_epi8(d) << 48;
}

static inline uint64_t block_eq(struct vblock v, char c)
{
    const __m128i k = _mm_set1_epi8(c);
    return bits64(_mm_cmpeq_epi8(v.a, k), _mm_cmpeq_epi8(v.b, k),
                  _mm_cmpeq_epi8(v.c, k), _mm_cmpeq_epi8(v.d, k));
}

/* Bytes below c, signed. */
static inline uint64_t block_lt(struct vblock v, char c)
{
    const __m128i k = _mm_set1_epi8(c);
    return bits64(_mm_cmplt_epi8(v.a, k), _mm_cmplt_epi8(v.b, k),
                  _mm_cmplt_epi8(v.c, k), _mm_cmplt_epi8(v.d, k));
}

/* '0' + 0x50 is -128: '0'..'9' are the ten lowest. */
static inline uint64_t block_digits(struct vblock v)
{
    const __m128i shift = _mm_set1_epi8(0x50);
    v.a = _mm_add_epi8(v.a, shift);
    v.b = _mm_add_epi8(v.b, shift);
    v.c = _mm_add_epi8(v.c, shift);
    v.d = _mm_add_epi8(v.d, shift);
    return block_lt(v, -118);
}

static inline void number_classify_sse2(const unsigned char *p,
                                        struct number_masks *m)
{
    struct vblock v = load_block(p);
    m->digit = block_digits(v);
    m->minus = block_eq(v, '-');
    m->dot = block_eq(v, '.');
    m->comma = block_eq(v, ',');
    m->space = block_eq(v, ' ');
    m->zero = block_eq(v, '0');
}

/* SSE2 looks only for what ends a run of text: escapes are checked one
 * by one there (all the classes would cost more than that loop). */
static inline void string_classify_sse2(const unsigned char *p,
                                        struct string_masks *m)
{
    struct vblock v = load_block(p);
    m->quote = block_eq(v, '"');
    m->bslash = block_eq(v, '\\');
    m->ctl = block_lt(v, 0x20);
}
#endif

#if defined(BLOCK_AVX2)
AVX2_TARGET static inline uint64_t mask32(__m256i x, unsigned shift)
{
    return (uint64_t)(uint32_t)_mm256_movemask_epi8(x) << shift;
}

AVX2_TARGET static inline __m256i eq32(__m256i v, char c)
{
    return _mm256_cmpeq_epi8(v, _mm256_set1_epi8(c));
}

/* a < b, signed bytes */
AVX2_TARGET static inline __m256i lt32(__m256i a, char b)
{
    return _mm256_cmpgt_epi8(_mm256_set1_epi8(b), a);
}

AVX2_TARGET static inline void number_classify32(const unsigned char *p,
                                                 struct number_masks *m,
                                                 unsigned shift)
{
    __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)p);
    __m256i digit = lt32(_mm256_add_epi8(v, _mm256_set1_epi8(0x50)), -118);
    m->digit |= mask32(digit, shift);
    m->minus |= mask32(eq32(v, '-'), shift);
    m->dot |= mask32(eq32(v, '.'), shift);
    m->comma |= mask32(eq32(v, ','), shift);
    m->space |= mask32(eq32(v, ' '), shift);
    m->zero |= mask32(eq32(v, '0'), shift);
}

AVX2_TARGET static inline void number_classify_avx2(const unsigned char *p,
                                                    struct number_masks *m)
{
    *m = (struct number_masks){0};
    number_classify32(p, m, 0);
    number_classify32(p + 32, m, 32);
}

AVX2_TARGET static inline void string_classify32(const unsigned char *p,
                                                 struct string_masks *m,
                                                 unsigned shift)
{
    __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)p);
    __m256i lower = _mm256_or_si256(v, _mm256_set1_epi8(0x20));
    __m256i digit = lt32(_mm256_add_epi8(v, _mm256_set1_epi8(0x50)), -118);
    __m256i letter = lt32(_mm256_add_epi8(lower, _mm256_set1_epi8(0x1F)), -122);
    __m256i quote = eq32(v, '"'), bslash = eq32(v, '\\');
    m->quote |= mask32(quote, shift);
    m->bslash |= mask32(bslash, shift);
    m->ctl |= mask32(lt32(v, 0x20), shift);
    m->u |= mask32(eq32(v, 'u'), shift);
    m->hex |= mask32(_mm256_or_si256(digit, letter), shift);
    m->d |= mask32(eq32(lower, 'd'), shift);
    m->zero |= mask32(eq32(v, '0'), shift);
    m->ge8 |= mask32(
        _mm256_or_si256(_mm256_and_si256(
                            digit, _mm256_cmpgt_epi8(v, _mm256_set1_epi8('7'))),
                        letter),
        shift);
    m->gec |=
        mask32(_mm256_and_si256(
                   letter, _mm256_cmpgt_epi8(lower, _mm256_set1_epi8('b'))),
               shift);
    m->simple |=
        mask32(_mm256_or_si256(
                   _mm256_or_si256(quote, bslash),
                   _mm256_or_si256(_mm256_or_si256(eq32(v, 'n'), eq32(v, 't')),
                                   eq32(v, 'r'))),
               shift);
}

AVX2_TARGET static inline void string_classify_avx2(const unsigned char *p,
                                                    struct string_masks *m)
{
    *m = (struct string_masks){0};
    string_classify32(p, m, 0);
    string_classify32(p + 32, m, 32);
}
#endif

static inline __attribute__((always_inline)) void
number_classify(const unsigned char *p, struct number_masks *m,
                enum block_isa isa)
{
#if defined(BLOCK_AVX2)
    if (isa == ISA_AVX2) {
        number_classify_avx2(p, m);
        return;
    }
#endif
#if defined(BLOCK_SSE2)
    if (isa == ISA_SSE2) {
        number_classify_sse2(p, m);
        return;
    }
#endif
    (void)isa;
    number_classify_c(p, m);
}

static inline __attribute__((always_inline)) void
string_classify(const unsigned char *p, struct string_masks *m,
                enum block_isa isa)
{
#if defined(BLOCK_AVX2)
    if (isa == ISA_AVX2) {
        string_classify_avx2(p, m);
        return;
    }
#endif
#if defined(BLOCK_SSE2)
    if (isa == ISA_SSE2) {
        string_classify_sse2(p, m);
        return;
    }
#endif
    (void)isa;
    string_classify_c(p, m);
}

/* ------------------------------------------------------------------------
 * Runs of numbers in an array: ", -0.75, 1.5, 3", a block at a time
 */

/* Commas in [p, end). */
static uint64_t count_commas(const unsigned char *p, const unsigned char *end)
{
    uint64_t n = 0;
    for (; p < end; p++) {
        n += *p == ',';
    }
    return n;
}

/* The run of array elements from p, a number where a value may stand:
 * each element -?(0|[1-9][0-9]*)(.[0-9]+)?, then spaces, a comma and
 * spaces. Blocks go on at a fixed stride, so that the work on one does
 * not wait for the last; what a check needs of the block before is
 * carried as one bit. A block of nothing but number bytes ends the run,
 * so a number proved here is shorter than 128 bytes: in range, with no
 * exponent.
 *
 * Returns how far the run is proved, with *commas the commas passed:
 * *closed true, up to the byte after the last element, which is none of
 * the number or word bytes; else up to the start of an element (p itself
 * when none is proved) that the caller takes on. */
static inline __attribute__((always_inline)) const unsigned char *
number_run_isa(const unsigned char *p, const unsigned char *end,
               uint64_t *commas, bool *closed, enum block_isa isa)
{
    const unsigned char *base = p;
    const unsigned char *last = p; /* the last element start seen */
    uint64_t ncommas = 0;          /* commas before base */
    /* Carries: the byte before base was a number byte, a digit, a '-'
     * starting an element, a leading 0, a point; the fraction and the
     * spaces after a comma run on into this block. An element may start
     * at byte 0 as if after a comma. */
    uint64_t c_tok = 0, c_digit = 0, c_minus = 0, c_zero = 0, c_dot = 0;
    uint64_t c_frac = 0, c_comma = 1;
    *closed = false;
    while (end - base >= BLOCK) {
        struct number_masks m;
        number_classify(base, &m, isa);
        uint64_t tok = m.digit | m.minus | m.dot;
        uint64_t other = ~(tok | m.comma | m.space);
        uint64_t starts = tok & ~(tok << 1 | c_tok);
        /* '-' only in front; then a digit; no 0 before another digit. */
        uint64_t bad = m.minus & ~starts;
        uint64_t first =
            (starts & ~m.minus) | (starts & m.minus) << 1 | c_minus;
        bad |= first & ~m.digit;
        bad |= ((first & m.zero) << 1 | c_zero) & m.digit;
        /* A point between digits, and one per element: the carry of
         * adding the bit after a point to the digits runs to the end of
         * the fraction. */
        uint64_t after_dot = m.dot << 1 | c_dot;
        bad |= after_dot & ~m.digit;
        bad |= m.dot & ~(m.digit << 1 | c_digit);
        bad |= add_carry(after_dot, m.digit, &c_frac) & m.dot;
        /* Past the spaces after each comma, an element starts; and every
         * element has a comma before it. */
        uint64_t c_space = 0;
        uint64_t after_comma =
            add_carry(m.comma << 1 | c_comma, m.space, &c_space) & ~m.space;
        bad |= after_comma ^ starts;
        if ((bad | other) != 0 || tok == ~(uint64_t)0) {
            unsigned stop = other != 0 ? lowest_bit(other) : BLOCK;
            if (tok == ~(uint64_t)0) {
                bad |= 1; /* an element this long goes the careful way */
            }
            bad &= stop < BLOCK ? bits_below(stop + 1) : ~(uint64_t)0;
            bool ends = stop < BLOCK &&
                        (stop > 0 ? tok >> (stop - 1) & 1 : c_tok) != 0 &&
                        value_class[base[stop]] != V_WORD;
            if (bad == 0 && ends) {
                *closed = true;
                *commas =
                    ncommas + popcount_isa(m.comma & bits_below(stop), isa);
                return base + stop;
            }
            uint64_t before =
                starts & bits_below(bad != 0 ? lowest_bit(bad) : stop);
            if (before != 0) {
                unsigned at = highest_bit(before);
                *commas = ncommas + popcount_isa(m.comma & bits_below(at), isa);
                return base + at;
            }
            break;
        }
        if (starts != 0) {
            last = base + highest_bit(starts);
        }
        ncommas += popcount_isa(m.comma, isa);
        c_tok = tok >> 63;
        c_digit = m.digit >> 63;
        c_minus = (starts & m.minus) >> 63;
        c_zero = (first & m.zero) >> 63;
        c_dot = m.dot >> 63;
        c_comma = m.comma >> 63 | c_space;
        base += BLOCK;
    }
    /* The last element seen may go on past what was looked at. */
    *commas = ncommas - count_commas(last, base);
    return last;
}

/* ------------------------------------------------------------------------
 * String text a block at a time
 */

/* Of the escapes at check (backslashes followed by something other than a
 * backslash), the ones the block paths do not keep as they are: all but
 * \" \\ \n \t \r, and \u with four hex digits, not 0000, a high surrogate
 * (D800-DBFF) right before a low one (DC00-DFFF) and no other surrogate.
 * From the masks of the block and of the next one. */
static inline uint64_t escapes_bad(const struct string_masks *m,
                                   const struct string_masks *next,
                                   uint64_t check)
{
    uint64_t uesc = check & ahead(m->u, next->u, 1);
    uint64_t bad = check & ~uesc & ~ahead(m->simple, next->simple, 1);
    uint64_t hex = ahead(m->hex, next->hex, 2) & ahead(m->hex, next->hex, 3) &
                   ahead(m->hex, next->hex, 4) & ahead(m->hex, next->hex, 5);
    uint64_t zero =
        ahead(m->zero, next->zero, 2) & ahead(m->zero, next->zero, 3) &
        ahead(m->zero, next->zero, 4) & ahead(m->zero, next->zero, 5);
    bad |= uesc & (~hex | zero);
    uint64_t surrogate =
        uesc & ahead(m->d, next->d, 2) & ahead(m->ge8, next->ge8, 3);
    uint64_t lo = surrogate & ahead(m->gec, next->gec, 3);
    uint64_t hi = surrogate & ~lo;
    return bad | (hi & ~(lo >> 6)) | (lo & ~(hi << 6));
}

/* The same, one escape at a time from the bytes (BLOCK + 16 of them
 * readable at base), without a branch on what they hold. */
static inline uint64_t escapes_bad_each(const unsigned char *base,
                                        uint64_t check)
{
    uint64_t ok = 0, hi = 0, lo = 0;
    for (uint64_t left = check; left != 0; left &= left - 1) {
        unsigned k = lowest_bit(left);
        const unsigned char *e = base + k;
        uint64_t is_u = e[1] == 'u';
        uint32_t v = hex4_or_big(e + 2);
        uint64_t u_ok = uescape_kept(v);
        ok |= ((is_u & u_ok) | ((is_u ^ 1) & escape_ok[e[1]])) << k;
        hi |= (is_u & (v - 0xD800u < 0x400u)) << k;
        lo |= (is_u & (v - 0xDC00u < 0x400u)) << k;
    }
    return (check & ~(ok | hi | lo)) | (hi & ~(lo >> 6)) | (lo & ~(hi << 6));
}

/* String text from p, a backslash that starts an escape, to the first
 * byte the careful path must see: the closing quote, a control or
 * non-ASCII byte, or an escape that is not kept as it is (a bad one,
 * \u0000, a surrogate without its partner in the same block) or that
 * this path leaves to it (\b \f \/). Blocks go at a fixed stride with the
 * masks of the next one at hand, so that an escape running over the end
 * of a block is checked with it; its bytes in the next are no stop.
 * Returns p itself when the escape at p is such a one. */
static inline __attribute__((always_inline)) const unsigned char *
string_blocks_isa(const unsigned char *p, const unsigned char *end,
                  enum block_isa isa)
{
    /* Checking escapes from the masks (AVX2, where all the classes cost
     * little) needs those of the next block; one by one (SSE2, plain C),
     * its first byte and 16 more. */
    const bool pipelined = isa == ISA_AVX2;
    const ptrdiff_t need = pipelined ? 2 * BLOCK : BLOCK + 16;
    if (end - p < need) {
        return p;
    }
    const unsigned char *base = p;
    uint64_t c_esc = 0;   /* byte 0 is escaped by the block before */
    uint64_t prev_es = 0; /* escape starts of the block before */
    struct string_masks m, next = {0};
    if (pipelined) {
        string_classify(base, &m, isa);
    }
    while (end - base >= need) {
        if (pipelined) {
            string_classify(base + BLOCK, &next, isa);
        } else {
            string_classify(base, &m, isa);
            next.bslash = base[BLOCK] == '\\';
        }
        /* A backslash starts an escape when an even number of them stand
         * right before it: in a run of them, every other one from the
         * first. Adding a run's first bit to the run clears it, which
         * tells the runs that start at an even position. */
        uint64_t bs = m.bslash & ~c_esc;
        uint64_t first = bs & ~(bs << 1);
        uint64_t even_runs = bs & ~(bs + (first & even_bits));
        uint64_t es = (even_runs & even_bits) | (bs & ~even_runs & ~even_bits);
        uint64_t stop = (m.quote & ~(es << 1 | c_esc)) | m.ctl;
        uint64_t check = es & ~ahead(m.bslash, next.bslash, 1);
        uint64_t bad = pipelined ? escapes_bad(&m, &next, check)
                                 : escapes_bad_each(base, check);
        if ((stop | bad) != 0) {
            return base + lowest_bit(stop | bad);
        }
        prev_es = es;
        c_esc = es >> 63;
        base += BLOCK;
        if (pipelined) {
            m = next;
        }
    }
    /* Stop at base, or past the escape of the block before that runs
     * into it: \uXXXX is 6 bytes, the others 2. */
    for (unsigned k = BLOCK - 6; k < BLOCK; k++) {
        if ((prev_es >> k & 1) != 0) {
            const unsigned char *e = base - BLOCK + k;
            const unsigned char *after = e + (e[1] == 'u' ? 6 : 2);
            if (after > base) {
                return after;
            }
        }
    }
    return base;
}

/* The instances: the base one, and one built for AVX2. */
static const unsigned char *number_run_base(const unsigned char *p,
                                            const unsigned char *end,
                                            uint64_t *commas, bool *closed)
{
    return number_run_isa(p, end, commas, closed, ISA_BASE);
}

static const unsigned char *string_blocks_base(const unsigned char *p,
                                               const unsigned char *end)
{
    return string_blocks_isa(p, end, ISA_BASE);
}

#if defined(BLOCK_AVX2)
AVX2_INSTANCE static const unsigned char *
number_run_avx2(const unsigned char *p, const unsigned char *end,
                uint64_t *commas, bool *closed)
{
    return number_run_isa(p, end, commas, closed, ISA_AVX2);
}

AVX2_INSTANCE static const unsigned char *
string_blocks_avx2(const unsigned char *p, const unsigned char *end)
{
    return string_blocks_isa(p, end, ISA_AVX2);
}
#endif

/* Whether this CPU (and its OS) runs the AVX2 instances. */
static bool cpu_has_avx2(void)
{
#if defined(BLOCK_AVX2)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("bmi") &&
           __builtin_cpu_supports("popcnt");
#else
    return false;
#endif
}

static const unsigned char *number_run(const unsigned char *p,
                                       const unsigned char *end,
                                       uint64_t *commas, bool *closed,
                                       bool avx2)
{
#if defined(BLOCK_AVX2)
    if (avx2) {
        return number_run_avx2(p, end, commas, closed);
    }
#endif
    (void)avx2;
    return number_run_base(p, end, commas, closed);
}

static const unsigned char *string_blocks(const unsigned char *p,
                                          const unsigned char *end, bool avx2)
{
#if defined(BLOCK_AVX2)
    if (avx2) {
        return string_blocks_avx2(p, end);
    }
#endif
    (void)avx2;
    return string_blocks_base(p, end);
}

/* The elements of the array top from p, a number byte where a value may
 * stand (value_begins has passed), as long as they are plain numbers:
 * embeddings are most of a checkpoint. An element of an array is never an
 * envelope field and its number ends no top-level value, so only the
 * index moves. Returns where the generic scanner goes on, with
 * top->expect set for that place: p itself when the number at p is not
 * plain. */
static const unsigned char *number_elements(struct frame *top,
                                            const unsigned char *p,
                                            const unsigned char *end, bool avx2)
{
    uint64_t index = top->index;
    const unsigned char *r = p;
    for (;;) {
        uint64_t commas;
        bool closed;
        r = number_run(r, end, &commas, &closed, avx2);
        index += commas;
        if (closed) {
            break;
        }
        const unsigned char *q = plain_number(r, end);
        if (q == NULL) {
            if (r != p) {
                /* The element at r is for the token machinery. */
                top->expect = EXP_VALUE;
            }
            break;
        }
        /* The usual ", " before the next one. */
        const unsigned char *n = q;
        if (n < end && *n == ',') {
            n++;
            while (n < end && *n == ' ') {
                n++;
            }
        }
        if (n == q || n == end || value_class[*n] != V_NUMBER) {
            r = q;
            break;
        }
        index++;
        r = n;
    }
    top->index = index;
    return r;
}

/* Reads number bytes from p; returns where it stopped (the number may
 * have ended there, see h->state), NULL on error. */
static const unsigned char *scan_number(sanitize *h, const unsigned char *p,
                                        const unsigned char *end)
{
    while (p < end) {
        unsigned char c = *p;
        bool digit = (unsigned)(c - '0') < 10;
        switch (h->nstate) {
        case N_SIGN:
            if (c == '0') {
                h->nstate = N_ZERO;
                p++;
            } else if (digit) {
                h->nstate = N_INT;
            } else if (c == 'N' || c == 'I') {
                /* -NaN, -Infinity: a word after all */
                h->state = ST_WORD;
                h->word_sign = '-';
                h->word_len = 0;
                return p;
            } else {
                return number_end(h, p);
            }
            break;
        case N_ZERO:
            if (digit) {
                return halt_token(h,
                                  "leading zeros are not allowed in numbers");
            }
            goto after_int;
        case N_INT: {
            const unsigned char *q = scan_digits(p, end);
            h->int_digits += (uint64_t)(q - p);
            h->nonzero = true;
            p = q;
            if (p == end) {
                return p;
            }
            c = *p;
        }
        after_int:
            if (c == '.') {
                h->nstate = N_DOT;
                p++;
            } else if (c == 'e' || c == 'E') {
                h->nstate = N_E;
                p++;
            } else {
                return number_end(h, p);
            }
            break;
        case N_DOT:
            if (!digit) {
                return number_end(h, p);
            }
            h->nstate = N_FRAC;
            break;
        case N_FRAC: {
            if (!h->nonzero) {
                while (p < end && *p == '0') {
                    h->frac_lead_zeros++;
                    h->frac_digits++;
                    p++;
                }
                if (p < end && *p >= '1' && *p <= '9') {
                    h->nonzero = true;
                }
            }
            const unsigned char *q = scan_digits(p, end);
            h->frac_digits += (uint64_t)(q - p);
            p = q;
            if (p == end) {
                return p;
            }
            c = *p;
            if (c == 'e' || c == 'E') {
                h->nstate = N_E;
                p++;
            } else {
                return number_end(h, p);
            }
            break;
        }
        case N_E:
            if (c == '+' || c == '-') {
                h->exp_neg = c == '-';
                h->nstate = N_ESIGN;
                p++;
                break;
            }
            /* fall through */
        case N_ESIGN:
            if (!digit) {
                return number_end(h, p);
            }
            h->nstate = N_EXP;
            break;
        case N_EXP:
            while (p < end && (unsigned)(*p - '0') < 10) {
                if (h->exp < PG_EXPONENT_LIMIT) {
                    h->exp = h->exp * 10 + (*p - '0');
                }
                p++;
            }
            if (p == end) {
                return p;
            }
            return number_end(h, p);
        }
    }
    return p;
}

static void number_begin(sanitize *h, const unsigned char *p)
{
    tok_begin(h, p);
    h->state = ST_NUMBER;
    h->nstate = *p == '-' ? N_SIGN : *p == '0' ? N_ZERO : N_INT;
    h->int_digits = 0;
    h->frac_digits = 0;
    h->frac_lead_zeros = 0;
    h->nonzero = false;
    h->exp = 0;
    h->exp_neg = false;
}

/* ------------------------------------------------------------------------
 * Bare words
 */
static bool is_letter(unsigned char c)
{
    return (unsigned)((c | 0x20) - 'a') < 26;
}

static const unsigned char *word_end(sanitize *h, const unsigned char *p)
{
    h->word[h->word_len] = '\0';
    const char *w = h->word;
    if (strcmp(w, "NaN") == 0 || strcmp(w, "Infinity") == 0) {
        if (runs_on(h, p)) {
            return run_on_error(h, p);
        }
        sanitize_kind kind = w[0] == 'N' ? SANITIZE_NAN : SANITIZE_INFINITY;
        int rc = tok_replace(h, p, repl_null, 4, kind);
        h->state = ST_VALUE;
        if (rc != 0 || value_repaired(h) != 0) {
            return NULL;
        }
        scalar_done(h, SANITIZE_TYPE_NULL);
        return p;
    }
    if (h->word_sign == 0) {
        sanitize_type type = strcmp(w, "null") == 0    ? SANITIZE_TYPE_NULL
                             : strcmp(w, "true") == 0  ? SANITIZE_TYPE_BOOL
                             : strcmp(w, "false") == 0 ? SANITIZE_TYPE_BOOL
                                                       : SANITIZE_ABSENT;
        if (type != SANITIZE_ABSENT) {
            if (runs_on(h, p)) {
                return run_on_error(h, p);
            }
            int rc = tok_keep(h);
            h->state = ST_VALUE;
            scalar_done(h, type);
            return rc == 0 ? p : NULL;
        }
    }
    char msg[64];
    snprintf(msg, sizeof msg, "invalid literal '%s%s'",
             h->word_sign == '-'   ? "-"
             : h->word_sign == '+' ? "+"
                                   : "",
             w);
    return halt_token(h, msg);
}

static const unsigned char *scan_word(sanitize *h, const unsigned char *p,
                                      const unsigned char *end)
{
    while (p < end && is_letter(*p)) {
        if (h->word_len == sizeof h->word - 1) {
            return halt_token(
                h, "invalid literal (not true, false, null, NaN or Infinity)");
        }
        h->word[h->word_len++] = (char)*p++;
    }
    if (p == end) {
        return p;
    }
    if (h->word_len == 0) {
        return halt_token(h, "'+' must be followed by NaN or Infinity");
    }
    return word_end(h, p);
}

/* ------------------------------------------------------------------------
 * Strings
 */

/* A pending high surrogate turned out to stand alone. */
static int hi_lone(sanitize *h)
{
    if (h->hi_ptr != NULL) {
        if (emit_clean(h, h->hi_ptr) != 0) {
            return -1;
        }
        h->clean = h->hi_ptr + 6;
        h->hi_ptr = NULL;
    }
    h->hi_pending = false;
    h->str_dirty = true;
    h->counts[SANITIZE_LONE_SURROGATE]++;
    return emit(h, repl_escape, 6, h->hi_off, PIECE_REPLACEMENT);
}

/* Settles a pending high surrogate before the escape token in progress,
 * which is not its partner. */
static int hi_lone_before_token(sanitize *h)
{
    if (h->hi_ptr != NULL) {
        return hi_lone(h);
    }
    if (h->tok != NULL && emit_clean(h, h->tok) != 0) {
        return -1;
    }
    return hi_lone(h);
}

/* A complete \uXXXX escape ends before p. */
static int uescape_end(sanitize *h, const unsigned char *p)
{
    unsigned v = h->uval;
    h->state = ST_STRING;
    if (h->hi_pending) {
        if (v >= 0xDC00 && v <= 0xDFFF) {
            h->hi_pending = false;
            if (h->hi_ptr != NULL) {
                h->hi_ptr = NULL;
                return tok_keep(h);
            }
            if (h->tok != NULL && emit_clean(h, h->tok) != 0) {
                return -1;
            }
            if (emit(h, h->hi, 6, h->hi_off, PIECE_CLEAN) != 0) {
                return -1;
            }
            return tok_keep(h);
        }
        if (hi_lone_before_token(h) != 0) {
            return -1;
        }
    }
    if (v == 0) {
        h->str_dirty = true;
        return tok_replace(h, p, repl_escape, 6, SANITIZE_NUL_ESCAPE);
    }
    if (v >= 0xDC00 && v <= 0xDFFF) {
        h->str_dirty = true;
        return tok_replace(h, p, repl_escape, 6, SANITIZE_LONE_SURROGATE);
    }
    if (v >= 0xD800 && v <= 0xDBFF) {
        /* Hold it back until the next escape says whether it pairs. */
        h->hi_pending = true;
        h->hi_off = h->tok_off;
        if (h->tok != NULL) {
            /* In this chunk: it stays in the clean run unless it turns
             * out to stand alone. */
            memcpy(h->hi, h->tok, 6);
            h->hi_ptr = h->tok;
            h->tokbuf.len = 0;
            return 0;
        }
        size_t len;
        const char *s = tok_text(h, p, &len);
        if (s == NULL || len != 6) {
            fail(h, SANITIZE_ENOMEM, h->tok_off, "out of memory");
            return -1;
        }
        memcpy(h->hi, s, 6);
        h->tokbuf.len = 0;
        h->clean = p;
        return 0;
    }
    return tok_keep(h);
}

/* Replaces the invalid UTF-8 bytes [s, p) of the current chunk, or the
 * held token when s is NULL. */
static int utf8_invalid(sanitize *h, const unsigned char *s,
                        const unsigned char *p)
{
    h->str_dirty = true;
    if (s != NULL) {
        h->tok = s;
        h->tok_off = offset_at(h, s);
    }
    h->state = ST_STRING;
    return tok_replace(h, p, repl_utf8, 3, SANITIZE_INVALID_UTF8);
}

/* Continues a UTF-8 sequence; returns where it stopped, NULL on error. */
static const unsigned char *scan_utf8(sanitize *h, const unsigned char *p,
                                      const unsigned char *end)
{
    while (p < end) {
        if (*p < h->utf8_lo || *p > h->utf8_hi) {
            /* The sequence so far is one maximal invalid subpart; the byte
             * at p is read again as a new start. */
            return utf8_invalid(h, NULL, p) == 0 ? p : NULL;
        }
        p++;
        h->utf8_lo = 0x80;
        h->utf8_hi = 0xBF;
        if (--h->utf8_need == 0) {
            h->state = ST_STRING;
            return tok_keep(h) == 0 ? p : NULL;
        }
    }
    return p;
}

/* Skips plain string bytes: everything but controls, '"', '\\' and
 * non-ASCII. */
static inline __attribute__((always_inline)) const unsigned char *
skip_plain(const unsigned char *p, const unsigned char *end)
{
#if defined(__SSE2__)
    const __m128i quote = _mm_set1_epi8('"');
    const __m128i bslash = _mm_set1_epi8('\\');
    const __m128i space = _mm_set1_epi8(0x20);
    while (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
        /* Signed compare: bytes >= 0x80 are negative, so below 0x20. */
        __m128i stop = _mm_or_si128(
            _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bslash)),
            _mm_cmplt_epi8(v, space));
        int mask = _mm_movemask_epi8(stop);
        if (mask != 0) {
            return p + __builtin_ctz((unsigned)mask);
        }
        p += 16;
    }
#endif
    while (p < end && !string_stop[*p]) {
        p++;
    }
    return p;
}

/* Length of an escape at p that stays exactly as it is and lies whole in
 * the chunk (a pair of surrogates counts as one), or 0. */
static inline __attribute__((always_inline)) size_t
plain_escape(const unsigned char *p, const unsigned char *end)
{
    if (end - p >= 2 && p[1] != 'u') {
        return escape_ok[p[1]] ? 2 : 0;
    }
    if (end - p < 6) {
        return 0;
    }
    int v = hex4(p + 2);
    if (uescape_kept((uint32_t)v)) {
        return 6;
    }
    if (v >= 0xD800 && v <= 0xDBFF && end - p >= 12 && p[6] == '\\' &&
        p[7] == 'u') {
        int lo = hex4(p + 8);
        return lo >= 0xDC00 && lo <= 0xDFFF ? 12 : 0;
    }
    return 0;
}

/* Reads string bytes from p; returns where it stopped, NULL on error. */
static const unsigned char *scan_string(sanitize *h, const unsigned char *p,
                                        const unsigned char *end)
{
    while (p < end) {
        if (h->hi_pending && *p != '\\' && hi_lone(h) != 0) {
            return NULL;
        }
        p = skip_plain(p, end);
        if (p == end) {
            return p;
        }
        unsigned char c = *p;
        if (c == '"') {
            if (string_end(h, p) != 0) {
                return NULL;
            }
            return p + 1;
        }
        if (c == '\\') {
            if (!h->hi_pending) {
                const unsigned char *q = string_blocks(p, end, h->avx2);
                if (q != p) {
                    p = q;
                    continue;
                }
            }
            size_t n = h->hi_pending ? 0 : plain_escape(p, end);
            if (n > 0) {
                /* Text written with ensure_ascii is runs of \uXXXX. */
                do {
                    p += n;
                } while (p < end && *p == '\\' &&
                         (n = plain_escape(p, end)) > 0);
                continue;
            }
            tok_begin(h, p);
            h->state = ST_ESCAPE;
            return p + 1;
        }
        if (c < 0x20) {
            return halt(h, p, SANITIZE_EMALFORMED, offset_at(h, p),
                        "control character in string (must be escaped)");
        }
        /* c >= 0x80 */
        unsigned char lo, hi;
        int need = utf8_lead(c, &lo, &hi);
        if (need == 0) {
            if (utf8_invalid(h, p, p + 1) != 0) {
                return NULL;
            }
            p++;
            continue;
        }
        const unsigned char *s = p++;
        while (need > 0 && p < end && *p >= lo && *p <= hi) {
            p++;
            need--;
            lo = 0x80;
            hi = 0xBF;
        }
        if (need == 0) {
            continue;
        }
        if (p < end) {
            if (utf8_invalid(h, s, p) != 0) {
                return NULL;
            }
            continue;
        }
        /* The chunk ends inside the sequence. */
        tok_begin(h, s);
        h->utf8_need = need;
        h->utf8_lo = lo;
        h->utf8_hi = hi;
        h->state = ST_UTF8;
        return p;
    }
    return p;
}

static const unsigned char *scan_escape(sanitize *h, const unsigned char *p)
{
    unsigned char c = *p;
    if (c == 'u') {
        h->state = ST_UESCAPE;
        h->uval = 0;
        h->udigits = 0;
        return p + 1;
    }
    if (!escape_ok[c]) {
        return halt_token(h, "invalid escape in string");
    }
    if (h->hi_pending && hi_lone_before_token(h) != 0) {
        return NULL;
    }
    h->state = ST_STRING;
    return tok_keep(h) == 0 ? p + 1 : NULL;
}

static const unsigned char *scan_uescape(sanitize *h, const unsigned char *p,
                                         const unsigned char *end)
{
    while (p < end && h->udigits < 4) {
        unsigned char c = *p;
        int v = (unsigned)(c - '0') < 10           ? c - '0'
                : (unsigned)((c | 0x20) - 'a') < 6 ? (c | 0x20) - 'a' + 10
                                                   : -1;
        if (v < 0) {
            return halt_token(
                h, "invalid \\u escape in string (4 hex digits expected)");
        }
        h->uval = h->uval << 4 | (unsigned)v;
        h->udigits++;
        p++;
    }
    if (h->udigits == 4) {
        return uescape_end(h, p) == 0 ? p : NULL;
    }
    return p;
}

/* ------------------------------------------------------------------------
 * Outside strings
 */
static const unsigned char *unexpected(sanitize *h, const unsigned char *p)
{
    char msg[48];
    unsigned char c = *p;
    if (c > 0x20 && c < 0x7F) {
        snprintf(msg, sizeof msg, "unexpected character '%c'", c);
    } else {
        snprintf(msg, sizeof msg, "unexpected byte 0x%02X", c);
    }
    return halt(h, p, SANITIZE_EMALFORMED, offset_at(h, p), msg);
}

/* A byte the grammar does not allow here: say what was expected. */
static const unsigned char *misplaced(sanitize *h, const unsigned char *p)
{
    static const char *const wanted[] = {
        [EXP_VALUE] = "a value",
        [EXP_VALUE_OR_CLOSE] = "a value or ']'",
        [EXP_COMMA_OR_CLOSE] = NULL,
        [EXP_KEY] = "a string (object key)",
        [EXP_KEY_OR_CLOSE] = "a string (object key) or '}'",
        [EXP_COLON] = "':' after the object key",
    };
    const struct frame *top = top_frame(h);
    const char *want = top == NULL ? "a value"
                       : top->expect == EXP_COMMA_OR_CLOSE
                           ? (top->is_map ? "',' or '}' after an object member"
                                          : "',' or ']' after an array element")
                           : wanted[top->expect];
    char msg[96];
    unsigned char c = *p;
    if (c > 0x20 && c < 0x7F) {
        snprintf(msg, sizeof msg, "expected %s, not '%c'", want, c);
    } else {
        snprintf(msg, sizeof msg, "expected %s", want);
    }
    return halt(h, p, SANITIZE_EMALFORMED, offset_at(h, p), msg);
}

/* Rows of a matrix (embeddings): q is just after the last number of the
 * array top, itself an element of an array. When "], [" and a number
 * follow, the row's frame is reused for the next row in place, which is
 * what closing one and opening the other would leave (neither is an
 * envelope field, the depth is the same). Returns the number, or NULL. */
static const unsigned char *next_row(sanitize *h, struct frame *top,
                                     const unsigned char *q,
                                     const unsigned char *end)
{
    if (end - q < 5 || q[0] != ']' || q[1] != ',' ||
        top->expect != EXP_COMMA_OR_CLOSE || h->nframes < 2) {
        return NULL;
    }
    struct frame *parent = &h->frames[h->nframes - 2];
    const unsigned char *r = q + 2;
    r += *r == ' ';
    if (parent->is_map || parent->expect != EXP_COMMA_OR_CLOSE || end - r < 2 ||
        r[0] != '[' || value_class[r[1]] != V_NUMBER) {
        return NULL;
    }
    parent->index++;
    top->index = 0;
    top->expect = EXP_VALUE_OR_CLOSE;
    return r + 1;
}

static const unsigned char *scan_value(sanitize *h, const unsigned char *p,
                                       const unsigned char *end)
{
    /* The innermost container, kept here: it changes only at '{' '['
     * and at '}' ']'. */
    struct frame *top = top_frame(h);
    while (p < end) {
        unsigned char c = *p;
        enum vclass cls = value_class[c];
        const unsigned char *q;
        if (cls == V_SPACE) {
            p++;
            continue;
        }
        if (top == NULL) {
            /* Inside a container these hold already. */
            h->seen_value = true;
            if (h->top_done && !h->opt.multiple_values) {
                return halt(h, p, SANITIZE_EMALFORMED, offset_at(h, p),
                            "trailing garbage after the JSON value");
            }
        }
        /* What usually comes next is taken at once (goto), without this
         * dispatch on the class, a jump the CPU often mispredicts. */
        switch (cls) {
        case V_PUNCT:
            if (c == ',') {
            comma:
                if (top == NULL || top->expect != EXP_COMMA_OR_CLOSE) {
                    return misplaced(h, p);
                }
                p++;
                /* json.dumps writes ", " and ": ". */
                p += p < end && *p == ' ';
                if (top->is_map) {
                    top->expect = EXP_KEY;
                    if (p < end && *p == '"') {
                        goto key;
                    }
                } else {
                    top->expect = EXP_VALUE;
                    top->index++;
                    if (p < end && value_class[*p] == V_OPEN) {
                        c = *p;
                        goto open; /* rows of a matrix, list of objects */
                    }
                }
            } else {
                if (top == NULL || top->expect != EXP_COLON) {
                    return misplaced(h, p);
                }
                top->expect = EXP_VALUE;
                p++;
                p += p < end && *p == ' ';
            }
            continue;
        case V_OPEN:
        open:
            if (value_begins_in(top) != 0) {
                return misplaced(h, p);
            }
            if (h->nframes >= h->opt.max_depth) {
                char msg[64];
                snprintf(msg, sizeof msg, "nesting deeper than %zu",
                         h->opt.max_depth);
                return halt(h, p, SANITIZE_ETOO_DEEP, offset_at(h, p), msg);
            }
            if (container_open(h, p, c == '{') != 0) {
                return NULL;
            }
            top = top_frame(h);
            p++;
            if (p < end) {
                c = *p;
                if (top->is_map ? c == '"' : value_class[c] == V_NUMBER) {
                    if (top->is_map) {
                        goto key;
                    }
                    goto number;
                }
            }
            continue;
        case V_CLOSE:
            if (top == NULL || top->is_map != (c == '}') ||
                (top->expect != EXP_COMMA_OR_CLOSE &&
                 top->expect !=
                     (top->is_map ? EXP_KEY_OR_CLOSE : EXP_VALUE_OR_CLOSE))) {
                return misplaced(h, p);
            }
            p++;
            container_close(h, p);
            top = top_frame(h);
            if (top != NULL && p < end && *p == ',') {
                goto comma;
            }
            continue;
        case V_QUOTE:
            if (top != NULL && top->is_map &&
                (top->expect == EXP_KEY || top->expect == EXP_KEY_OR_CLOSE)) {
            key:
                q = skip_plain(p + 1, end);
                if (q < end && *q == '"' && h->nframes != 1) {
                    /* Plain and whole in the chunk, and no envelope
                     * member: all string_end would do. */
                    h->keys.len = top->key_start;
                    top->key_ptr = p + 1;
                    top->key_len = (size_t)(q - (p + 1));
                    top->expect = EXP_COLON;
                    h->member++;
                    p = q + 1;
                } else {
                    string_begin(h, p, true);
                    p = scan_string(h, q, end);
                    if (p == NULL || h->state != ST_VALUE) {
                        return p;
                    }
                }
                /* The ':' that follows, and its space. */
                if (p < end && *p == ':') {
                    top->expect = EXP_VALUE;
                    p++;
                    p += p < end && *p == ' ';
                }
                continue;
            }
            if (value_begins_in(top) != 0) {
                return misplaced(h, p);
            }
            q = skip_plain(p + 1, end);
            if (q < end && *q == '"' && top != NULL && current_field(h) < 0) {
                /* Plain, whole, and no envelope member: nothing to do
                 * but go past it. */
                p = q + 1;
            } else {
                string_begin(h, p, false);
                /* Most strings end in the chunk: go on here when they
                 * do. The bytes up to q are plain. */
                p = scan_string(h, q, end);
                if (p == NULL || h->state != ST_VALUE) {
                    return p;
                }
            }
            if (top != NULL && p < end && *p == ',') {
                goto comma;
            }
            continue;
        case V_NUMBER: {
        number:
            if (value_begins_in(top) != 0) {
                return misplaced(h, p);
            }
            if (top != NULL && !top->is_map) {
                q = number_elements(top, p, end, h->avx2);
                if (q != p) {
                    p = q;
                    q = next_row(h, top, p, end);
                    if (q != NULL) {
                        p = q;
                        c = *p;
                        goto number;
                    }
                    continue;
                }
                q = NULL; /* number_elements found the number at p not plain */
            } else {
                q = plain_number(p, end);
            }
            if (q != NULL) {
                scalar_done(h, SANITIZE_TYPE_NUMBER);
                p = q;
                if (top != NULL && p < end && *p == ',') {
                    goto comma;
                }
                continue;
            }
            number_begin(h, p);
            p = scan_number(h, c == '-' || c == '0' ? p + 1 : p, end);
            if (p == NULL || h->state != ST_VALUE) {
                return p;
            }
            continue;
        }
        case V_WORD:
            if (value_begins_in(top) != 0) {
                return misplaced(h, p);
            }
            if (end - p > 5) {
                /* null, true, false whole in the chunk, and not run on
                 * ("nullx", "true1"): kept as they are. */
                size_t n =
                    memcmp(p, "null", 4) == 0 || memcmp(p, "true", 4) == 0 ? 4
                    : memcmp(p, "false", 5) == 0                           ? 5
                                                                           : 0;
                if (n != 0 && !runs_on(h, p + n)) {
                    scalar_done(h, c == 'n' ? SANITIZE_TYPE_NULL
                                            : SANITIZE_TYPE_BOOL);
                    p += n;
                    if (top != NULL && p < end && *p == ',') {
                        goto comma;
                    }
                    continue;
                }
            }
            tok_begin(h, p);
            h->state = ST_WORD;
            h->word_len = 0;
            h->word_sign = 0;
            if (c == '+') {
                h->word_sign = '+';
                p++;
            }
            p = scan_word(h, p, end);
            if (p == NULL || h->state != ST_VALUE) {
                return p;
            }
            continue;
        default:
            return unexpected(h, p);
        }
    }
    return p;
}

/* ------------------------------------------------------------------------
 * The handle
 */
sanitize *sanitize_new(const sanitize_options *opts)
{
    sanitize *h = calloc(1, sizeof *h);
    if (h == NULL) {
        return NULL;
    }
    if (opts != NULL) {
        h->opt = *opts;
    }
    if (h->opt.max_depth == 0) {
        h->opt.max_depth = SANITIZE_DEFAULT_MAX_DEPTH;
    }
    if (h->opt.max_paths == 0) {
        h->opt.max_paths = SANITIZE_DEFAULT_MAX_PATHS;
    }
    h->avx2 = cpu_has_avx2();
    if (yajl_pool_init(&h->alloc) != 0) {
        free(h);
        return NULL;
    }
    sanitize_reset(h);
    if (h->yajl == NULL) {
        sanitize_free(h);
        return NULL;
    }
    return h;
}

void sanitize_free(sanitize *h)
{
    if (h == NULL) {
        return;
    }
    if (h->yajl != NULL) {
        yajl_free(h->yajl);
    }
    yajl_pool_destroy(&h->alloc);
    ng_buf_free(&h->out);
    free(h->pieces);
    ng_buf_free(&h->tokbuf);
    ng_buf_free(&h->keys);
    ng_buf_free(&h->raw);
    ng_buf_free(&h->path_key);
    ng_buf_free(&h->paths);
    for (int i = 0; i < SANITIZE_FIELD_COUNT; i++) {
        ng_buf_free(&h->field_str[i]);
    }
    free(h->frames);
    free(h->path_offs);
    free(h);
}

void sanitize_set_writer(sanitize *h, sanitize_write_fn write, void *ctx)
{
    h->write = write;
    h->write_ctx = ctx;
}

void sanitize_reset(sanitize *h)
{
    if (h->yajl != NULL) {
        yajl_free(h->yajl);
    }
    /* No callbacks: yajl only checks the grammar. */
    h->yajl = yajl_alloc(NULL, &h->alloc, NULL);
    if (h->yajl != NULL && h->opt.multiple_values) {
        yajl_config(h->yajl, yajl_allow_multiple_values, 1);
    }
    memset(&h->err, 0, sizeof h->err);
    h->failed = h->yajl == NULL;
    if (h->failed) {
        h->err.code = SANITIZE_ENOMEM;
        snprintf(h->err.message, sizeof h->err.message, "out of memory");
    }
    h->seen_value = false;
    h->state = ST_VALUE;
    h->top_done = false;
    h->chunk = NULL;
    h->chunk_end = NULL;
    h->chunk_off = 0;
    h->clean = NULL;
    h->out_off = 0;
    h->straddle = NO_OFFSET;
    h->npieces = 0;
    h->tok = NULL;
    h->tokbuf.len = 0;
    h->hi_pending = false;
    h->hi_ptr = NULL;
    h->str_dirty = false;
    h->cap = CAP_NONE;
    h->out.len = 0;
    h->nframes = 0;
    h->keys.len = 0;
    h->cur_field = -1;
    memset(h->fields, 0, sizeof h->fields);
    h->root_type = SANITIZE_ABSENT;
    h->member = 0;
    h->key_repaired_member = UINT64_MAX;
    h->values = 0;
    memset(h->counts, 0, sizeof h->counts);
    h->paths.len = 0;
    h->npaths = 0;
}

sanitize_status sanitize_feed(sanitize *h, const char *buf, size_t len)
{
    if (h->failed) {
        return h->err.code;
    }
    const unsigned char *p = (const unsigned char *)buf;
    const unsigned char *end = p + len;
    h->chunk = p;
    h->chunk_end = end;
    h->clean = p;
    h->tok = NULL; /* a token in progress began in an earlier chunk */
    if (in_string(h)) {
        h->cap_from = p;
    }
    while (p != NULL && p < end) {
        switch (h->state) {
        case ST_VALUE:
            p = scan_value(h, p, end);
            break;
        case ST_STRING:
            p = scan_string(h, p, end);
            break;
        case ST_ESCAPE:
            p = scan_escape(h, p);
            break;
        case ST_UESCAPE:
            p = scan_uescape(h, p, end);
            break;
        case ST_UTF8:
            p = scan_utf8(h, p, end);
            break;
        case ST_WORD:
            p = scan_word(h, p, end);
            break;
        case ST_NUMBER:
            p = scan_number(h, p, end);
            break;
        }
    }
    if (p != NULL && in_string(h) && capture(h, end) != 0) {
        fail(h, SANITIZE_ENOMEM, h->chunk_off + len, "out of memory");
        p = NULL;
    }
    /* Only the innermost key can still be in the chunk. */
    struct frame *top = top_frame(h);
    if (p != NULL && top != NULL && key_keep(h, top) != 0) {
        fail(h, SANITIZE_ENOMEM, h->chunk_off + len, "out of memory");
        p = NULL;
    }
    if (p != NULL && h->hi_ptr != NULL) {
        /* The chunk ends before the partner: hand on what precedes the
         * high surrogate and keep it (in h->hi). */
        if (emit_clean(h, h->hi_ptr) != 0) {
            p = NULL;
        } else {
            h->clean = h->hi_ptr + 6;
        }
    }
    h->hi_ptr = NULL;
    if (p != NULL) {
        bool in_token = h->state == ST_NUMBER || h->state == ST_WORD ||
                        h->state == ST_ESCAPE || h->state == ST_UESCAPE ||
                        h->state == ST_UTF8;
        if (in_token) {
            /* Hand on what precedes the token; keep the token itself. */
            const unsigned char *t = h->tok != NULL ? h->tok : h->chunk;
            if (emit_clean(h, t) == 0 &&
                ng_buf_append(&h->tokbuf, t, (size_t)(end - t)) != 0) {
                fail(h, SANITIZE_ENOMEM, h->tok_off, "out of memory");
            }
            h->clean = end;
        } else {
            emit_clean(h, end);
        }
    }
    if (!h->failed) {
        yajl_catch_up(h);
    }
    h->chunk_off += len;
    h->chunk = NULL;
    h->chunk_end = NULL;
    h->clean = NULL;
    h->tok = NULL;
    return h->failed ? h->err.code : SANITIZE_OK;
}

sanitize_status sanitize_finish(sanitize *h)
{
    if (h->failed) {
        return h->err.code;
    }
    static const unsigned char none[1];
    /* Tokens end at the end of input: finish them on an empty chunk. */
    h->chunk = none;
    h->chunk_end = none;
    h->clean = none;
    h->tok = NULL;
    switch (h->state) {
    case ST_NUMBER:
        number_end(h, none);
        break;
    case ST_WORD:
        if (h->word_len == 0) {
            fail(h, SANITIZE_EMALFORMED, h->tok_off,
                 "'+' must be followed by NaN or Infinity");
        } else {
            word_end(h, none);
        }
        break;
    case ST_VALUE:
        break;
    default:
        fail(h, SANITIZE_EMALFORMED, h->str_off, "unterminated string");
        break;
    }
    h->chunk = NULL;
    h->chunk_end = NULL;
    h->clean = NULL;
    if (!h->failed) {
        yajl_catch_up(h);
    }
    if (h->failed) {
        return h->err.code;
    }
    if (!h->seen_value) {
        return fail(h, SANITIZE_EMALFORMED, h->chunk_off,
                    "empty input: no JSON value");
    }
    if (h->nframes > 0) {
        char msg[96];
        snprintf(msg, sizeof msg,
                 "unexpected end of input: %zu object(s) or array(s) not "
                 "closed",
                 h->nframes);
        return fail(h, SANITIZE_EMALFORMED, h->chunk_off, msg);
    }
    yajl_status st = yajl_complete_parse(h->yajl);
    if (st != yajl_status_ok) {
        fail_from_yajl(h, h->chunk_off);
        return h->err.code;
    }
    return SANITIZE_OK;
}

const sanitize_error *sanitize_last_error(const sanitize *h)
{
    return &h->err;
}

const char *sanitize_output(const sanitize *h, size_t *len)
{
    *len = h->out.len;
    return h->out.data ? h->out.data : "";
}

uint64_t sanitize_values(const sanitize *h)
{
    return h->values;
}

uint64_t sanitize_count(const sanitize *h, sanitize_kind kind)
{
    return (unsigned)kind < SANITIZE_KIND_COUNT ? h->counts[kind] : 0;
}

uint64_t sanitize_rewrites(const sanitize *h)
{
    uint64_t n = 0;
    for (int i = 0; i < SANITIZE_KIND_COUNT; i++) {
        n += h->counts[i];
    }
    return n;
}

size_t sanitize_path_count(const sanitize *h)
{
    return h->npaths;
}

const char *sanitize_path(const sanitize *h, size_t i)
{
    return i < h->npaths ? h->paths.data + h->path_offs[i] : NULL;
}

sanitize_type sanitize_root_type(const sanitize *h)
{
    return h->root_type;
}

const sanitize_field *sanitize_field_get(const sanitize *h,
                                         sanitize_field_id id)
{
    static const sanitize_field absent;
    return (unsigned)id < SANITIZE_FIELD_COUNT ? &h->fields[id] : &absent;
}
