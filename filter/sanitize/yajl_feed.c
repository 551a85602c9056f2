/* yajl_feed.c - handing text on: into the output (the handle's buffer or
 * the writer) and to yajl, which checks the grammar of what it is given;
 * errors, and the input offsets they are placed at. */
#include "filter/sanitize/sanitize_impl.h"

#include <stdio.h>
#include <stdlib.h>

sanitize_status san_fail(sanitize *h, sanitize_status code, uint64_t offset,
                         const char *msg)
{
    /* yajl first reads the text handed on before the fault: an earlier
     * grammar error is the one to report. */
    if (!h->failed && h->npieces > 0) {
        san_yajl_catch_up(h);
    }
    if (!h->failed) {
        h->failed = true;
        h->err.code = code;
        h->err.offset = offset;
        snprintf(h->err.message, sizeof h->err.message, "%s", msg);
    }
    return h->err.code;
}
/* yajl's message, without its "parse error: " prefix and newline. */
void san_fail_from_yajl(sanitize *h, uint64_t offset)
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
    san_fail(h, SANITIZE_EMALFORMED, offset, msg);
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
int san_emit(sanitize *h, const void *p, size_t n, uint64_t in_off,
             enum piece kind)
{
    if (n == 0) {
        return 0;
    }
    if (h->npieces == h->cap_pieces) {
        size_t cap = h->cap_pieces ? h->cap_pieces * 2 : 64;
        struct piece_rec *r = realloc(h->pieces, cap * sizeof *r);
        if (r == NULL) {
            san_fail(h, SANITIZE_ENOMEM, in_off, "out of memory");
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
        san_fail(h, SANITIZE_ENOMEM, in_off, "out of memory");
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
        return san_yajl_catch_up(h);
    }
    return 0;
}

/* yajl reads the pieces handed on since its last call; what it accepts
 * goes to the writer (or stays in h->out). On a grammar error, the input
 * offset is found from the piece yajl stopped in, as if it had read the
 * pieces one by one, and the text from that piece on is dropped. */
int san_yajl_catch_up(sanitize *h)
{
    if (h->npieces == 0) {
        return 0;
    }
    size_t start = h->pieces[0].out_start;
    const unsigned char *base = (const unsigned char *)h->out.data;
    size_t good_end = h->out.len;
    int rc = 0;
    size_t e = 0;
    int st;
    if (h->opt.full_feed) {
        st = yajl_parse(h->yajl, base + start, good_end - start) ==
                     yajl_status_ok
                 ? 0
                 : -1;
        e = start + yajl_get_bytes_consumed(h->yajl);
    } else {
        st = san_skeleton_parse(h, start, &e);
    }
    if (st == -2) {
        h->npieces = 0;
        return -1;
    }
    if (st != 0) {
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
        san_fail_from_yajl(h, off);
        rc = -1;
    }
    uint64_t first_in = h->pieces[0].in_off;
    h->npieces = 0;
    if (h->write != NULL) {
        if (good_end > start && h->write(h->write_ctx, h->out.data + start,
                                         good_end - start) != 0) {
            san_fail(h, SANITIZE_EWRITE, first_in, "cannot write output");
            rc = -1;
        }
        h->out.len = 0;
    } else {
        h->out.len = good_end;
    }
    return rc;
}

/* Hands on the clean input from h->clean up to p. */
int san_emit_clean(sanitize *h, const unsigned char *p)
{
    const unsigned char *c = h->clean;
    h->clean = p;
    return san_emit(h, c, (size_t)(p - c), offset_at(h, c), PIECE_CLEAN);
}

/* Stops on a fault the scanner found at input offset off. yajl first gets
 * the clean text before upto (the fault, or the token holding it), so
 * that an earlier grammar error wins whatever the chunking. Returns NULL
 * for the scan functions. */
const unsigned char *san_halt(sanitize *h, const unsigned char *upto,
                              sanitize_status code, uint64_t off,
                              const char *msg)
{
    if (!h->failed && h->chunk != NULL && upto != NULL && upto > h->clean &&
        upto <= h->chunk_end) {
        san_emit_clean(h, upto);
    }
    san_fail(h, code, off, msg);
    return NULL;
}

/* san_halt() at the token in progress. */
const unsigned char *san_halt_token(sanitize *h, const char *msg)
{
    return san_halt(h, h->tok, SANITIZE_EMALFORMED, h->tok_off, msg);
}

/* The token in progress stays as it is. */
int san_tok_keep(sanitize *h)
{
    int rc = 0;
    if (h->tok == NULL && h->tokbuf.len > 0) {
        rc = san_emit(h, h->tokbuf.data, h->tokbuf.len, h->tok_off,
                      PIECE_TOKEN_PREFIX);
    }
    h->tokbuf.len = 0;
    return rc;
}

/* The token in progress, which ends before p, becomes repl. */
int san_tok_replace(sanitize *h, const unsigned char *p, const char *repl,
                    size_t repl_len, sanitize_kind kind)
{
    if (h->tok != NULL && san_emit_clean(h, h->tok) != 0) {
        return -1;
    }
    h->tokbuf.len = 0;
    h->clean = p;
    h->counts[kind]++;
    return san_emit(h, repl, repl_len, h->tok_off, PIECE_REPLACEMENT);
}

void san_tok_begin(sanitize *h, const unsigned char *p)
{
    h->tok = p;
    h->tok_off = offset_at(h, p);
    h->tokbuf.len = 0;
}

/* The whole text of the token ending before p, contiguous. */
const char *san_tok_text(sanitize *h, const unsigned char *p, size_t *len)
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
