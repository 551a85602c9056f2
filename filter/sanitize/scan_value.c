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
                                            const unsigned char *end, bool avx2)
{
    uint64_t index = top->index;
    const unsigned char *r = p;
    for (;;) {
        uint64_t commas;
        bool closed;
        r = san_number_run(r, end, &commas, &closed, avx2);
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

const unsigned char *san_scan_value(sanitize *h, const unsigned char *p,
                                    const unsigned char *end)
{
    /* The innermost container, kept here: it changes only at '{' '['
     * and at '}' ']'. */
    struct frame *top = top_frame(h);
    while (p < end) {
        if (h->nholes >= MAX_HOLES - 1 && san_holes_flush(h, p) != 0) {
            return NULL;
        }
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
                return san_halt(h, p, SANITIZE_EMALFORMED, offset_at(h, p),
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
                return san_halt(h, p, SANITIZE_ETOO_DEEP, offset_at(h, p), msg);
            }
            if (san_container_open(h, p, c == '{') != 0) {
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
            san_container_close(h, p);
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
                    hole_span(h, p + 1, q, FILL_NONE);
                    top->key_ptr = p + 1;
                    top->key_len = (size_t)(q - (p + 1));
                    top->expect = EXP_COLON;
                    h->member++;
                    p = q + 1;
                } else {
                    san_string_begin(h, p, true);
                    p = san_scan_string(h, q, end);
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
                hole_span(h, p + 1, q, FILL_NONE);
                p = q + 1;
            } else {
                san_string_begin(h, p, false);
                /* Most strings end in the chunk: go on here when they
                 * do. The bytes up to q are plain. */
                p = san_scan_string(h, q, end);
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
                    /* "0," when it ends before an element left to the
                     * token machinery. */
                    hole_span(h, p, q,
                              top->expect == EXP_VALUE ? FILL_ZERO_COMMA
                                                       : FILL_ZERO);
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
            san_number_begin(h, p);
            p = san_scan_number(h, c == '-' || c == '0' ? p + 1 : p, end);
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
            san_tok_begin(h, p);
            h->state = ST_WORD;
            h->word_len = 0;
            h->word_sign = 0;
            if (c == '+') {
                h->word_sign = '+';
                p++;
            }
            p = san_scan_word(h, p, end);
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
