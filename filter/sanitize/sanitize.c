/* sanitize.c - the sanitizer handle: its life (new, reset, free), the
 * feed loop that hands each chunk to the scanner of the current state,
 * the end of input, and the accessors of sanitize.h. The byte classes
 * every scanner file reads are here too.
 *
 * Two stages run over every chunk:
 *
 *  1. A scanner walks the input once (scan_value.c outside strings,
 *     repair_string.c inside them, repair_scalar.c for numbers and bare
 *     words). It handles what yajl cannot lex and what must be rewritten,
 *     and keeps the light structure the caller needs (structure.c,
 *     paths.c). Runs of clean input are handed on as they are, with
 *     replacements spliced in between (yajl_feed.c).
 *
 *  2. yajl, with no callbacks, parses what the scanner hands on, once per
 *     chunk: the grammar of the output is checked by yajl too. Numbers are
 *     never converted (no double round trip).
 *
 * A token that may be rewritten (a word, a number, an escape, a UTF-8
 * sequence) is held back until its end is seen; when a chunk ends inside
 * one, its bytes so far go to tokbuf.
 *
 * Errors: the scanner's own errors (a bad literal, a bad escape, depth) are
 * raised only after yajl has seen the text before them, so that an earlier
 * grammar error is always the one reported, however the input was cut.
 *
 * Speed: the common shapes of a checkpoint take short ways (scan_value.c,
 * block*.c), each of which only skips text it has proved needs nothing;
 * the tests compare whole inputs with the same fed a byte at a time (which
 * never takes a short way).
 */
#include "filter/sanitize/sanitize.h"

#include "filter/sanitize/block.h"
#include "filter/sanitize/sanitize_impl.h"
#include "filter/sanitize/yajl_pool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>

static const char *const kind_names[SANITIZE_KIND_COUNT] = {
    "nan",        "infinity",       "out_of_range",
    "nul_escape", "lone_surrogate", "invalid_utf8",
};

static const char *const field_names[SANITIZE_FIELD_COUNT] = {
    "thread_id", "checkpoint_ns", "checkpoint_id", "parent_checkpoint_id",
    "type",      "checkpoint",    "metadata",      "blobs",
    "writes",
};

const char *sanitize_kind_name(sanitize_kind kind)
{
    return (unsigned)kind < SANITIZE_KIND_COUNT ? kind_names[kind] : "?";
}

const char *sanitize_field_name(sanitize_field_id id)
{
    return (unsigned)id < SANITIZE_FIELD_COUNT ? field_names[id] : "?";
}

/* ------------------------------------------------------------------------
 * Byte classes
 */
/* enum vclass of every byte. */
const unsigned char value_class[256] = {
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
const char string_stop[256] = {
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

const char escape_ok[256] = {
    ['"'] = 1, ['\\'] = 1, ['/'] = 1, ['b'] = 1,
    ['f'] = 1, ['n'] = 1,  ['r'] = 1, ['t'] = 1,
};

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
    h->isa = (unsigned char)san_block_isa();
    if (yajl_pool_init(&h->alloc) != 0) {
        free(h);
        return NULL;
    }
    sanitize_reset(h);
    if (h->yajl == NULL || san_skeleton_init(h) != 0) {
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
    san_skeleton_free(h);
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
    h->nholes = 0;
    h->str_hole = false;
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

/* The chunk ends at end (p: where the scanner stopped, NULL after an
 * error): what must outlive the chunk is kept (the string or key so far, a
 * pending high surrogate, a token in progress), the rest is handed on. */
static void keep_across_chunks(sanitize *h, const unsigned char *p,
                               const unsigned char *end)
{
    if (p != NULL && in_string(h) && san_capture(h, end) != 0) {
        san_fail(h, SANITIZE_ENOMEM, offset_at(h, end), "out of memory");
        p = NULL;
    }
    /* Only the innermost key can still be in the chunk. */
    struct frame *top = top_frame(h);
    if (p != NULL && top != NULL && san_key_keep(h, top) != 0) {
        san_fail(h, SANITIZE_ENOMEM, offset_at(h, end), "out of memory");
        p = NULL;
    }
    if (p != NULL && h->hi_ptr != NULL) {
        /* The chunk ends before the partner: hand on what precedes the
         * high surrogate and keep it (in h->hi). */
        if (san_emit_clean(h, h->hi_ptr) != 0) {
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
            if (san_emit_clean(h, t) == 0 &&
                ng_buf_append(&h->tokbuf, t, (size_t)(end - t)) != 0) {
                san_fail(h, SANITIZE_ENOMEM, h->tok_off, "out of memory");
            }
            h->clean = end;
        } else {
            san_emit_clean(h, end);
        }
    }
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
            p = san_scan_value(h, p, end);
            break;
        case ST_STRING:
            p = san_scan_string(h, p, end);
            break;
        case ST_ESCAPE:
            p = san_scan_escape(h, p);
            break;
        case ST_UESCAPE:
            p = san_scan_uescape(h, p, end);
            break;
        case ST_UTF8:
            p = san_scan_utf8(h, p, end);
            break;
        case ST_WORD:
            p = san_scan_word(h, p, end);
            break;
        case ST_NUMBER:
            p = san_scan_number(h, p, end);
            break;
        }
    }
    keep_across_chunks(h, p, end);
    if (!h->failed) {
        san_yajl_catch_up(h);
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
        san_number_end(h, none);
        break;
    case ST_WORD:
        if (h->word_len == 0) {
            san_fail(h, SANITIZE_EMALFORMED, h->tok_off,
                     "'+' must be followed by NaN or Infinity");
        } else {
            san_word_end(h, none);
        }
        break;
    case ST_VALUE:
        break;
    default:
        san_fail(h, SANITIZE_EMALFORMED, h->str_off, "unterminated string");
        break;
    }
    h->chunk = NULL;
    h->chunk_end = NULL;
    h->clean = NULL;
    if (!h->failed) {
        san_yajl_catch_up(h);
    }
    if (h->failed) {
        return h->err.code;
    }
    if (!h->seen_value) {
        return san_fail(h, SANITIZE_EMALFORMED, h->chunk_off,
                        "empty input: no JSON value");
    }
    if (h->nframes > 0) {
        char msg[96];
        snprintf(msg, sizeof msg,
                 "unexpected end of input: %zu object(s) or array(s) not "
                 "closed",
                 h->nframes);
        return san_fail(h, SANITIZE_EMALFORMED, h->chunk_off, msg);
    }
    yajl_status st = yajl_complete_parse(h->yajl);
    if (st != yajl_status_ok) {
        san_fail_from_yajl(h, h->chunk_off);
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
