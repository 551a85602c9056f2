/* scan_value.c - the scanner outside strings: the grammar (what may come
 * next in each container), and the short ways through the shapes a
 * checkpoint is mostly made of (runs of array numbers, rows of a matrix,
 * plain keys and strings, the token that usually comes next). */
#include "filter/sanitize/block.h"
#include "filter/sanitize/sanitize_impl.h"

#include <stdio.h>

/* The elements of the array top from p, a number byte where a value may
 * stand (value_begins has passed), as long as they are plain numbers:
 * embeddings are most of a checkpoint. An element of an array is never an
 * envelope field and its number ends no top-level value, so only the
 * index moves. Returns where the generic scanner goes on, with
 * top->expect set for that place: p itself when the number at p is not
 * plain. */
static const unsigned char *number_elements(struct frame *top,
                                            const unsigned char *p,
                                            const unsigned char *end,
                                            enum block_isa isa)
{
    uint64_t index = top->index;
    const unsigned char *r = p;
    for (;;) {
        uint64_t commas;
        bool closed;
        r = san_number_run(r, end, &commas, &closed, isa);
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
    return san_halt(h, p, SANITIZE_EMALFORMED, offset_at(h, p), msg);
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
    return san_halt(h, p, SANITIZE_EMALFORMED, offset_at(h, p), msg);
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

/* The scanner outside strings, as steps. Each step reads what stands at
 * s->p, moves on, and says what comes next: often a token it has already
 * seen (a key after ", " in an object, a number after '['), taken without
 * the dispatch on the byte's class, a jump the CPU often mispredicts. The
 * steps are inlined into san_scan_value, so the "next" values fold into
 * direct jumps. */
struct scan {
    sanitize *h;
    const unsigned char *p, *end;
    struct frame *top; /* the innermost container: changes only at '{' '['
                          and at '}' ']' */
};

enum next {
    NEXT_DISPATCH, /* by the class of the byte at p */
    NEXT_COMMA,
    NEXT_KEY,
    NEXT_OPEN,
    NEXT_NUMBER,
    NEXT_RETURN /* san_scan_value returns s->p (NULL on error) */
};

#define STEP static inline __attribute__((always_inline)) enum next

/* Returns from the scan with p. */
STEP leave(struct scan *s, const unsigned char *p)
{
    s->p = p;
    return NEXT_RETURN;
}

/* After a value: a ',' next is taken at once. */
STEP after_value(struct scan *s)
{
    return s->top != NULL && s->p < s->end && *s->p == ',' ? NEXT_COMMA
                                                           : NEXT_DISPATCH;
}

STEP step_comma(struct scan *s)
{
    struct frame *top = s->top;
    if (top == NULL || top->expect != EXP_COMMA_OR_CLOSE) {
        return leave(s, misplaced(s->h, s->p));
    }
    const unsigned char *p = s->p + 1;
    /* json.dumps writes ", " and ": ". */
    p += p < s->end && *p == ' ';
    s->p = p;
    if (top->is_map) {
        top->expect = EXP_KEY;
        return p < s->end && *p == '"' ? NEXT_KEY : NEXT_DISPATCH;
    }
    top->expect = EXP_VALUE;
    top->index++;
    /* rows of a matrix, list of objects */
    return p < s->end && value_class[*p] == V_OPEN ? NEXT_OPEN : NEXT_DISPATCH;
}

STEP step_colon(struct scan *s)
{
    if (s->top == NULL || s->top->expect != EXP_COLON) {
        return leave(s, misplaced(s->h, s->p));
    }
    s->top->expect = EXP_VALUE;
    s->p++;
    s->p += s->p < s->end && *s->p == ' ';
    return NEXT_DISPATCH;
}

STEP step_open(struct scan *s)
{
    sanitize *h = s->h;
    const unsigned char *p = s->p;
    if (value_begins_in(s->top) != 0) {
        return leave(s, misplaced(h, p));
    }
    if (h->nframes >= h->opt.max_depth) {
        char msg[64];
        snprintf(msg, sizeof msg, "nesting deeper than %zu", h->opt.max_depth);
        return leave(s,
                     san_halt(h, p, SANITIZE_ETOO_DEEP, offset_at(h, p), msg));
    }
    if (san_container_open(h, p, *p == '{') != 0) {
        return leave(s, NULL);
    }
    struct frame *top = s->top = top_frame(h);
    s->p = ++p;
    if (p < s->end && (top->is_map ? *p == '"' : value_class[*p] == V_NUMBER)) {
        return top->is_map ? NEXT_KEY : NEXT_NUMBER;
    }
    return NEXT_DISPATCH;
}

STEP step_close(struct scan *s)
{
    struct frame *top = s->top;
    bool brace = *s->p == '}';
    if (top == NULL || top->is_map != brace ||
        (top->expect != EXP_COMMA_OR_CLOSE &&
         top->expect != (brace ? EXP_KEY_OR_CLOSE : EXP_VALUE_OR_CLOSE))) {
        return leave(s, misplaced(s->h, s->p));
    }
    s->p++;
    san_container_close(s->h, s->p);
    s->top = top_frame(s->h);
    return after_value(s);
}

/* A key at p (the grammar wants one), and the ':' after it. */
STEP step_key(struct scan *s)
{
    sanitize *h = s->h;
    struct frame *top = s->top;
    const unsigned char *p = s->p;
    const unsigned char *q = skip_plain(p + 1, s->end);
    if (q < s->end && *q == '"' && h->nframes != 1) {
        /* Plain and whole in the chunk, and no envelope member: all
         * string_end would do. */
        h->keys.len = top->key_start;
        hole_span(h, p + 1, q, FILL_NONE);
        top->key_ptr = p + 1;
        top->key_len = (size_t)(q - (p + 1));
        top->expect = EXP_COLON;
        h->member++;
        p = q + 1;
    } else {
        san_string_begin(h, p, true);
        p = san_scan_string(h, q, s->end);
        if (p == NULL || h->state != ST_VALUE) {
            return leave(s, p);
        }
    }
    if (p < s->end && *p == ':') {
        top->expect = EXP_VALUE;
        p++;
        p += p < s->end && *p == ' ';
    }
    s->p = p;
    return NEXT_DISPATCH;
}

STEP step_string(struct scan *s)
{
    sanitize *h = s->h;
    struct frame *top = s->top;
    const unsigned char *p = s->p;
    if (top != NULL && top->is_map &&
        (top->expect == EXP_KEY || top->expect == EXP_KEY_OR_CLOSE)) {
        return NEXT_KEY;
    }
    if (value_begins_in(top) != 0) {
        return leave(s, misplaced(h, p));
    }
    const unsigned char *q = skip_plain(p + 1, s->end);
    if (q < s->end && *q == '"' && top != NULL && current_field(h) < 0) {
        /* Plain, whole, and no envelope member: nothing to do but go past
         * it. */
        hole_span(h, p + 1, q, FILL_NONE);
        p = q + 1;
    } else {
        san_string_begin(h, p, false);
        /* Most strings end in the chunk: go on here when they do. The
         * bytes up to q are plain. */
        p = san_scan_string(h, q, s->end);
        if (p == NULL || h->state != ST_VALUE) {
            return leave(s, p);
        }
    }
    s->p = p;
    return after_value(s);
}

STEP step_number(struct scan *s)
{
    sanitize *h = s->h;
    struct frame *top = s->top;
    const unsigned char *p = s->p, *q;
    if (value_begins_in(top) != 0) {
        return leave(s, misplaced(h, p));
    }
    if (top != NULL && !top->is_map) {
        q = number_elements(top, p, s->end, (enum block_isa)h->isa);
        if (q != p) {
            /* "0," when it ends before an element left to the token
             * machinery. */
            hole_span(h, p, q,
                      top->expect == EXP_VALUE ? FILL_ZERO_COMMA : FILL_ZERO);
            const unsigned char *row = next_row(h, top, q, s->end);
            s->p = row != NULL ? row : q;
            return row != NULL ? NEXT_NUMBER : NEXT_DISPATCH;
        }
        q = NULL; /* number_elements found the number at p not plain */
    } else {
        q = plain_number(p, s->end);
    }
    if (q != NULL) {
        scalar_done(h, SANITIZE_TYPE_NUMBER);
        s->p = q;
        return after_value(s);
    }
    san_number_begin(h, p);
    p = san_scan_number(h, *p == '-' || *p == '0' ? p + 1 : p, s->end);
    s->p = p;
    return p == NULL || h->state != ST_VALUE ? NEXT_RETURN : NEXT_DISPATCH;
}

STEP step_word(struct scan *s)
{
    sanitize *h = s->h;
    const unsigned char *p = s->p;
    if (value_begins_in(s->top) != 0) {
        return leave(s, misplaced(h, p));
    }
    if (s->end - p > 5) {
        /* null, true, false whole in the chunk, and not run on ("nullx",
         * "true1"): kept as they are. */
        size_t n = memcmp(p, "null", 4) == 0 || memcmp(p, "true", 4) == 0 ? 4
                   : memcmp(p, "false", 5) == 0                           ? 5
                                                                          : 0;
        if (n != 0 && !runs_on(h, p + n)) {
            scalar_done(h, *p == 'n' ? SANITIZE_TYPE_NULL : SANITIZE_TYPE_BOOL);
            s->p = p + n;
            return after_value(s);
        }
    }
    san_tok_begin(h, p);
    h->state = ST_WORD;
    h->word_len = 0;
    h->word_sign = 0;
    if (*p == '+') {
        h->word_sign = '+';
        p++;
    }
    p = san_scan_word(h, p, s->end);
    s->p = p;
    return p == NULL || h->state != ST_VALUE ? NEXT_RETURN : NEXT_DISPATCH;
}

/* The step for the byte at p, by its class (white space skipped). */
STEP dispatch(struct scan *s)
{
    sanitize *h = s->h;
    const unsigned char *p = s->p;
    if (h->nholes >= MAX_HOLES - 1 && san_holes_flush(h, p) != 0) {
        return leave(s, NULL);
    }
    enum vclass cls = value_class[*p];
    if (cls == V_SPACE) {
        s->p++;
        return NEXT_DISPATCH;
    }
    if (s->top == NULL) {
        /* Inside a container these hold already. */
        h->seen_value = true;
        if (h->top_done && !h->opt.multiple_values) {
            return leave(s, san_halt(h, p, SANITIZE_EMALFORMED, offset_at(h, p),
                                     "trailing garbage after the JSON value"));
        }
    }
    switch (cls) {
    case V_PUNCT:
        return *p == ',' ? step_comma(s) : step_colon(s);
    case V_OPEN:
        return step_open(s);
    case V_CLOSE:
        return step_close(s);
    case V_QUOTE:
        return step_string(s);
    case V_NUMBER:
        return step_number(s);
    case V_WORD:
        return step_word(s);
    default:
        return leave(s, unexpected(h, p));
    }
}

const unsigned char *san_scan_value(sanitize *h, const unsigned char *p,
                                    const unsigned char *end)
{
    struct scan s = {.h = h, .p = p, .end = end, .top = top_frame(h)};
    enum next next = NEXT_DISPATCH;
    for (;;) {
        switch (next) {
        case NEXT_DISPATCH:
            if (s.p >= s.end) {
                return s.p;
            }
            next = dispatch(&s);
            break;
        case NEXT_COMMA:
            next = step_comma(&s);
            break;
        case NEXT_KEY:
            next = step_key(&s);
            break;
        case NEXT_OPEN:
            next = step_open(&s);
            break;
        case NEXT_NUMBER:
            next = step_number(&s);
            break;
        case NEXT_RETURN:
            return s.p;
        }
    }
}
