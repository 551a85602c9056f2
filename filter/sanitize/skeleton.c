/* skeleton.c - the skeleton feed: what yajl is given, and how a place in
 * it maps back to the output.
 *
 * yajl checks the grammar of the repaired text. The scanner has proven
 * much of that text valid already, because it had to read it to repair it:
 * a string's body (every escape, every UTF-8 sequence, no control byte),
 * a run of plain numbers in an array. Such spans are "holes": yajl gets a
 * placeholder instead (nothing for a string body, so that it sees "";
 * "0" or "0," for a run of numbers), and does much less work. A string
 * body that runs over many chunks is a hole from its first byte on, so
 * yajl never holds a growing partial token (it would lex it again on every
 * call: quadratic time).
 *
 * Holes are optional: a hole not made (too short to be worth its record,
 * or no room left) only means yajl reads those bytes. The full feed
 * (sanitize_options.full_feed) makes none.
 *
 * Offsets: each span of the skeleton remembers the output offset it came
 * from, so that where yajl stops maps back to the output, and from there
 * (yajl_feed.c) to the input.
 */
#include "filter/sanitize/sanitize_impl.h"

#include <stdlib.h>

int san_skeleton_init(sanitize *h)
{
    h->holes = malloc(MAX_HOLES * sizeof *h->holes);
    h->cap_spans = 2 * MAX_HOLES + 2;
    h->spans = malloc(h->cap_spans * sizeof *h->spans);
    return h->holes != NULL && h->spans != NULL ? 0 : -1;
}

void san_skeleton_free(sanitize *h)
{
    free(h->holes);
    free(h->spans);
    ng_buf_free(&h->skel);
}

bool san_hole_add(sanitize *h, uint64_t start, uint64_t end,
                  enum hole_fill fill)
{
    if (h->nholes >= MAX_HOLES) {
        return false; /* yajl reads it: slower, as correct */
    }
    h->holes[h->nholes++] =
        (struct hole){.start = start, .end = end, .fill = (unsigned char)fill};
    return true;
}

void san_hole_close(sanitize *h, uint64_t end)
{
    struct hole *o = &h->holes[h->nholes - 1];
    if (!o->placed && end - o->start < HOLE_MIN) {
        h->nholes--; /* short: not worth it */
        return;
    }
    o->end = end;
}

int san_holes_flush(sanitize *h, const unsigned char *p)
{
    return san_emit_clean(h, p) == 0 ? san_yajl_catch_up(h) : -1;
}

/* Appends output [from, to) (output offsets; the window starts at out
 * offset abs, at h->out.data[start]) to the skeleton. */
static int skel_copy(sanitize *h, size_t start, uint64_t abs, uint64_t from,
                     uint64_t to)
{
    h->spans[h->nspans++] =
        (struct skel_span){.skel = h->skel.len, .out = from, .fill = false};
    return ng_buf_append(&h->skel, h->out.data + start + (from - abs),
                         (size_t)(to - from));
}

static int skel_fill(sanitize *h, const struct hole *o)
{
    static const char *const fills[] = {"", "0", "0,"};
    const char *f = fills[o->fill];
    h->spans[h->nspans++] =
        (struct skel_span){.skel = h->skel.len, .out = o->start, .fill = true};
    return ng_buf_append(&h->skel, f, strlen(f));
}

/* The skeleton of the output window [abs, abs_end) into h->skel. Returns
 * how many holes it is done with (they end inside the window). */
static size_t skel_build(sanitize *h, size_t start, uint64_t abs,
                         uint64_t abs_end, int *rc)
{
    uint64_t pos = abs;
    size_t k = 0;
    h->skel.len = 0;
    h->nspans = 0;
    *rc = 0;
    for (; k < h->nholes && *rc == 0; k++) {
        struct hole *o = &h->holes[k];
        if (o->start >= abs_end) {
            break;
        }
        if (o->start > pos) {
            *rc = skel_copy(h, start, abs, pos, o->start);
            pos = o->start;
        }
        if (!o->placed) {
            *rc |= skel_fill(h, o);
            o->placed = true;
        }
        if (o->end == HOLE_OPEN || o->end > abs_end) {
            pos = abs_end; /* it goes on past the window */
            break;
        }
        pos = o->end > pos ? o->end : pos;
    }
    if (*rc == 0 && pos < abs_end) {
        *rc = skel_copy(h, start, abs, pos, abs_end);
    }
    return k;
}

/* The output offset of skeleton offset c. */
static uint64_t skel_to_out(const sanitize *h, size_t c)
{
    size_t j = 0;
    while (j + 1 < h->nspans && h->spans[j + 1].skel <= c) {
        j++;
    }
    const struct skel_span *s = &h->spans[j];
    return s->fill ? s->out : s->out + (c - s->skel);
}

int san_skeleton_parse(sanitize *h, size_t start, size_t *err_at)
{
    const unsigned char *base = (const unsigned char *)h->out.data;
    size_t len = h->out.len - start;
    uint64_t abs = h->out_off - len;
    if (h->nholes == 0 || h->holes[0].start >= h->out_off) {
        /* Nothing to leave out: yajl reads the output itself. */
        if (yajl_parse(h->yajl, base + start, len) == yajl_status_ok) {
            return 0;
        }
        *err_at = start + yajl_get_bytes_consumed(h->yajl);
        return -1;
    }
    int rc;
    size_t done = skel_build(h, start, abs, h->out_off, &rc);
    memmove(h->holes, h->holes + done, (h->nholes - done) * sizeof *h->holes);
    h->nholes -= done;
    if (rc != 0) {
        san_fail(h, SANITIZE_ENOMEM, h->chunk_off, "out of memory");
        return -2;
    }
    if (h->skel.len == 0 ||
        yajl_parse(h->yajl, (const unsigned char *)h->skel.data, h->skel.len) ==
            yajl_status_ok) {
        return 0;
    }
    size_t c = yajl_get_bytes_consumed(h->yajl);
    *err_at = start + (size_t)(skel_to_out(h, c) - abs);
    return -1;
}
