/* repair_string.c - string bodies: plain text, escapes (\u0000 and lone
 * surrogates become \ufffd), UTF-8 (each maximal invalid subpart becomes
 * U+FFFD), control characters (refused). */
#include "filter/sanitize/block.h"
#include "filter/sanitize/json_text.h"
#include "filter/sanitize/sanitize_impl.h"

#include <string.h>

static const char repl_escape[] = "\\ufffd";
static const char repl_utf8[] = "\xEF\xBF\xBD";
/* ------------------------------------------------------------------------
 * Strings
 */

/* A pending high surrogate turned out to stand alone. */
static int hi_lone(sanitize *h)
{
    if (h->hi_ptr != NULL) {
        if (san_emit_clean(h, h->hi_ptr) != 0) {
            return -1;
        }
        h->clean = h->hi_ptr + 6;
        h->hi_ptr = NULL;
    }
    h->hi_pending = false;
    h->str_dirty = true;
    h->counts[SANITIZE_LONE_SURROGATE]++;
    return san_emit(h, repl_escape, 6, h->hi_off, PIECE_REPLACEMENT);
}

/* Settles a pending high surrogate before the escape token in progress,
 * which is not its partner. */
static int hi_lone_before_token(sanitize *h)
{
    if (h->hi_ptr != NULL) {
        return hi_lone(h);
    }
    if (h->tok != NULL && san_emit_clean(h, h->tok) != 0) {
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
                return san_tok_keep(h);
            }
            if (h->tok != NULL && san_emit_clean(h, h->tok) != 0) {
                return -1;
            }
            if (san_emit(h, h->hi, 6, h->hi_off, PIECE_CLEAN) != 0) {
                return -1;
            }
            return san_tok_keep(h);
        }
        if (hi_lone_before_token(h) != 0) {
            return -1;
        }
    }
    if (v == 0) {
        h->str_dirty = true;
        return san_tok_replace(h, p, repl_escape, 6, SANITIZE_NUL_ESCAPE);
    }
    if (v >= 0xDC00 && v <= 0xDFFF) {
        h->str_dirty = true;
        return san_tok_replace(h, p, repl_escape, 6, SANITIZE_LONE_SURROGATE);
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
        const char *s = san_tok_text(h, p, &len);
        if (s == NULL || len != 6) {
            san_fail(h, SANITIZE_ENOMEM, h->tok_off, "out of memory");
            return -1;
        }
        memcpy(h->hi, s, 6);
        h->tokbuf.len = 0;
        h->clean = p;
        return 0;
    }
    return san_tok_keep(h);
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
    return san_tok_replace(h, p, repl_utf8, 3, SANITIZE_INVALID_UTF8);
}

/* Continues a UTF-8 sequence; returns where it stopped, NULL on error. */
const unsigned char *san_scan_utf8(sanitize *h, const unsigned char *p,
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
            return san_tok_keep(h) == 0 ? p : NULL;
        }
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
const unsigned char *san_scan_string(sanitize *h, const unsigned char *p,
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
            if (san_string_end(h, p) != 0) {
                return NULL;
            }
            return p + 1;
        }
        if (c == '\\') {
            if (!h->hi_pending) {
                const unsigned char *q =
                    san_string_blocks(p, end, (enum block_isa)h->isa);
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
            san_tok_begin(h, p);
            h->state = ST_ESCAPE;
            return p + 1;
        }
        if (c < 0x20) {
            return san_halt(h, p, SANITIZE_EMALFORMED, offset_at(h, p),
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
        san_tok_begin(h, s);
        h->utf8_need = need;
        h->utf8_lo = lo;
        h->utf8_hi = hi;
        h->state = ST_UTF8;
        return p;
    }
    return p;
}

const unsigned char *san_scan_escape(sanitize *h, const unsigned char *p)
{
    unsigned char c = *p;
    if (c == 'u') {
        h->state = ST_UESCAPE;
        h->uval = 0;
        h->udigits = 0;
        return p + 1;
    }
    if (!escape_ok[c]) {
        return san_halt_token(h, "invalid escape in string");
    }
    if (h->hi_pending && hi_lone_before_token(h) != 0) {
        return NULL;
    }
    h->state = ST_STRING;
    return san_tok_keep(h) == 0 ? p + 1 : NULL;
}

const unsigned char *san_scan_uescape(sanitize *h, const unsigned char *p,
                                      const unsigned char *end)
{
    while (p < end && h->udigits < 4) {
        unsigned char c = *p;
        int v = (unsigned)(c - '0') < 10           ? c - '0'
                : (unsigned)((c | 0x20) - 'a') < 6 ? (c | 0x20) - 'a' + 10
                                                   : -1;
        if (v < 0) {
            return san_halt_token(
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
