/* sanitize_impl.h - the sanitizer handle's insides, shared by the files of
 * filter/sanitize/ that make it up (not for other folders: they use
 * sanitize.h). Which file owns what:
 *
 *   sanitize.c       the handle, the feed loop, finish, the accessors and
 *                    the byte classes
 *   scan_value.c     the scanner outside strings: grammar, containers,
 *                    the short ways for common checkpoint shapes
 *   repair_scalar.c  numbers (range) and bare words (NaN, Infinity)
 *   repair_string.c  string bodies: escapes, surrogates, UTF-8
 *   structure.c      frames, keys, envelope fields
 *   paths.c          the report's JSON Pointers
 *   yajl_feed.c      handing text on: to yajl, then to the output; errors
 *                    and their offsets
 *   block*.c/.h      64-byte block scanners, one file per instruction set
 *
 * The scanner's contract, which every file keeps: a short way only skips
 * text it has proved needs nothing (no repair, no error); the byte-wise
 * path alone decides output and errors and their offsets.
 */
#ifndef NANGUARD_SANITIZE_IMPL_H
#define NANGUARD_SANITIZE_IMPL_H

#include "common/buf.h"
#include "filter/sanitize/sanitize.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
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

#define NO_OFFSET UINT64_MAX
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

/* Output that yajl is not given (skeleton.c): [start, end) in output
 * offsets (end HOLE_OPEN while the string is being read), given to yajl
 * as its fill instead. */
enum hole_fill { FILL_NONE, FILL_ZERO, FILL_ZERO_COMMA };
#define HOLE_OPEN UINT64_MAX
struct hole {
    uint64_t start, end;
    unsigned char fill; /* enum hole_fill */
    bool placed;        /* the fill has gone to yajl */
};

/* Where a span of the skeleton came from: output offset out for skeleton
 * offset skel (a fill maps to its hole's start). */
struct skel_span {
    size_t skel;
    uint64_t out;
    bool fill;
};

struct sanitize {
    sanitize_options opt;
    unsigned char isa; /* enum block_isa: what the block paths use */
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
    struct hole *holes;         /* output yajl is not given, in order */
    size_t nholes, cap_holes;
    ng_buf skel; /* what yajl is given, at a catch-up */
    struct skel_span *spans;
    size_t nspans, cap_spans;
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
    bool str_hole;  /* its body is a hole (skeleton.c) */
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

enum piece { PIECE_CLEAN, PIECE_REPLACEMENT, PIECE_TOKEN_PREFIX };

/* Byte classes (sanitize.c). */
extern const unsigned char value_class[256]; /* enum vclass of every byte */
/* Bytes that end the fast path inside a string: controls, '"', '\\'
 * and every byte of a multi-byte UTF-8 sequence. */
extern const char string_stop[256];
/* What may follow a backslash but 'u'. */
extern const char escape_ok[256];

/* Of a key, the raw bytes kept for its path: a longer key appears in a
 * path cut, with a marker (paths.c). */
#define KEY_KEEP 256

/* PostgreSQL's numeric_in refuses values with more than
 * NUMERIC_MAX_DISPLAY_SCALE digits after the point. */
#define PG_MAX_SCALE 16383

/* ------------------------------------------------------------------------
 * yajl_feed.c: handing text on, errors
 */
sanitize_status san_fail(sanitize *h, sanitize_status code, uint64_t offset,
                         const char *msg);
void san_fail_from_yajl(sanitize *h, uint64_t offset);
int san_yajl_catch_up(sanitize *h);
int san_emit(sanitize *h, const void *p, size_t n, uint64_t in_off,
             enum piece kind);
int san_emit_clean(sanitize *h, const unsigned char *p);
const unsigned char *san_halt(sanitize *h, const unsigned char *upto,
                              sanitize_status code, uint64_t off,
                              const char *msg);
const unsigned char *san_halt_token(sanitize *h, const char *msg);
int san_tok_keep(sanitize *h);
int san_tok_replace(sanitize *h, const unsigned char *p, const char *repl,
                    size_t repl_len, sanitize_kind kind);
void san_tok_begin(sanitize *h, const unsigned char *p);
const char *san_tok_text(sanitize *h, const unsigned char *p, size_t *len);

/* structure.c: frames, keys, envelope fields */
int san_container_open(sanitize *h, const unsigned char *p, bool is_map);
void san_container_close(sanitize *h, const unsigned char *p);
const char *san_frame_key(const sanitize *h, const struct frame *f);
int san_key_keep(sanitize *h, struct frame *f);
void san_string_begin(sanitize *h, const unsigned char *p, bool is_key);
int san_capture(sanitize *h, const unsigned char *p);
int san_string_end(sanitize *h, const unsigned char *p);

/* skeleton.c: what yajl is given */
#define MAX_HOLES 4096 /* holes waiting for yajl, at most */
#ifndef HOLE_MIN
#define HOLE_MIN 24 /* the shortest span worth a hole */
#endif
/* The hole and span arrays (fixed: no allocation per message). */
int san_skeleton_init(sanitize *h);
void san_skeleton_free(sanitize *h);
/* Records a hole (end may be HOLE_OPEN); false when there is no room. */
bool san_hole_add(sanitize *h, uint64_t start, uint64_t end,
                  enum hole_fill fill);
/* Ends the open hole, the last one (dropped when short and not used). */
void san_hole_close(sanitize *h, uint64_t end);
/* Hands on the clean text up to p and lets yajl read it: at a value
 * boundary, when the holes are nearly all taken. */
int san_holes_flush(sanitize *h, const unsigned char *p);
/* yajl reads the output from h->out.data[start] on, as a skeleton. Returns
 * 0; -1 on a grammar error, with *err_at where in h->out yajl stopped; -2
 * when out of memory (failed already). */
int san_skeleton_parse(sanitize *h, size_t start, size_t *err_at);

/* paths.c: a repaired value's path goes to the report */
int san_value_repaired(sanitize *h);

/* repair_scalar.c: numbers and bare words. Each scan function returns
 * where it stopped (the token may have ended there, see h->state), NULL
 * on error. */
void san_number_begin(sanitize *h, const unsigned char *p);
const unsigned char *san_scan_number(sanitize *h, const unsigned char *p,
                                     const unsigned char *end);
const unsigned char *san_number_end(sanitize *h, const unsigned char *p);
const unsigned char *san_scan_word(sanitize *h, const unsigned char *p,
                                   const unsigned char *end);
const unsigned char *san_word_end(sanitize *h, const unsigned char *p);

/* repair_string.c: string bodies */
const unsigned char *san_scan_string(sanitize *h, const unsigned char *p,
                                     const unsigned char *end);
const unsigned char *san_scan_escape(sanitize *h, const unsigned char *p);
const unsigned char *san_scan_uescape(sanitize *h, const unsigned char *p,
                                      const unsigned char *end);
const unsigned char *san_scan_utf8(sanitize *h, const unsigned char *p,
                                   const unsigned char *end);

/* scan_value.c: outside strings */
const unsigned char *san_scan_value(sanitize *h, const unsigned char *p,
                                    const unsigned char *end);

/* ------------------------------------------------------------------------
 * Small and hot: inlined where they are used.
 */

/* The output offset the byte at p of the chunk will have: the text from
 * h->clean up to p is handed on as it is. */
static inline uint64_t out_pos(const sanitize *h, const unsigned char *p);

/* [from, to) of the chunk, proven valid, need not reach yajl. */
static inline void hole_span(sanitize *h, const unsigned char *from,
                             const unsigned char *to, enum hole_fill fill)
{
    if (!h->opt.full_feed && to - from >= HOLE_MIN) {
        san_hole_add(h, out_pos(h, from), out_pos(h, to), fill);
    }
}
static inline uint64_t offset_at(const sanitize *h, const unsigned char *p)
{
    return h->chunk_off + (uint64_t)(p - h->chunk);
}

static inline bool in_string(const sanitize *h)
{
    return h->state == ST_STRING || h->state == ST_ESCAPE ||
           h->state == ST_UESCAPE || h->state == ST_UTF8;
}

static inline struct frame *top_frame(sanitize *h)
{
    return h->nframes ? &h->frames[h->nframes - 1] : NULL;
}

/* Whether a value now is a member of the top-level object whose key names
 * an envelope field. */
static inline int current_field(const sanitize *h)
{
    return h->nframes == 1 && h->frames[0].is_map ? h->cur_field : -1;
}

/* A scalar value of this type ends. */
static inline void scalar_done(sanitize *h, sanitize_type type)
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

static inline uint64_t out_pos(const sanitize *h, const unsigned char *p)
{
    return h->out_off + (uint64_t)(p - h->clean);
}
/* A value begins here: the grammar must allow one. The container it is in
 * then waits for ',' or its end. Returns 0, or -1 when no value may stand
 * here. */
static inline int value_begins_in(struct frame *top)
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

/* A number or a literal must not run into another one ("1true", "1-1"):
 * jq and PostgreSQL refuse both. */
static inline bool runs_on(const sanitize *h, const unsigned char *p)
{
    return p < h->chunk_end && (value_class[*p] == V_NUMBER ||
                                value_class[*p] == V_WORD || *p == '.');
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

#endif
