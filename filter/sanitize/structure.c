/* structure.c - the light structure the scanner keeps: a frame per open
 * container (what the grammar expects next, the array index, the current
 * key), the top-level members of an envelope, and what a value's end
 * means for them. */
#include "filter/sanitize/json_text.h"
#include "filter/sanitize/sanitize_impl.h"

#include <stdlib.h>

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
const char *san_frame_key(const sanitize *h, const struct frame *f)
{
    return f->key_ptr != NULL ? (const char *)f->key_ptr
                              : h->keys.data + f->key_start;
}

/* Copies the key of f that is still in the chunk into h->keys. */
int san_key_keep(sanitize *h, struct frame *f)
{
    if (f->key_ptr == NULL) {
        return 0;
    }
    const unsigned char *k = f->key_ptr;
    f->key_ptr = NULL;
    if (h->opt.no_paths) {
        f->key_len = 0; /* read only for paths from here on */
        return 0;
    }
    h->keys.len = f->key_start;
    if (f->key_len > KEY_KEEP + 1) {
        f->key_len = KEY_KEEP + 1; /* cut (see paths.c) */
    }
    return ng_buf_append(&h->keys, k, f->key_len);
}

/* Decodes raw JSON string bytes (with the repairs) into dst: returns the
 * text, NUL terminated, or NULL when out of memory. */
static const char *decode_into(ng_buf *dst, const unsigned char *s, size_t n)
{
    ng_buf_clear(dst);
    return json_decode_repaired(s, n, dst) == 0 ? dst->data : NULL;
}

/* '{' or '[' at p. Returns 0 or -1. */
int san_container_open(sanitize *h, const unsigned char *p, bool is_map)
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
    if ((parent != NULL && san_key_keep(h, parent) != 0) ||
        push_frame(h, is_map) != 0) {
        san_fail(h, SANITIZE_ENOMEM, offset_at(h, p), "out of memory");
        return -1;
    }
    return 0;
}

/* '}' or ']' ends before p. */
void san_container_close(sanitize *h, const unsigned char *p)
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

/* A string (an object key when is_key) begins after the quote at p. */
void san_string_begin(sanitize *h, const unsigned char *p, bool is_key)
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
        /* A key is kept for the paths, and at depth 1 for the fields. */
        if (!h->opt.no_paths || h->nframes == 1) {
            h->cap = CAP_KEY;
        }
    } else if (current_field(h) >= 0) {
        ng_buf_clear(&h->raw);
        h->cap = CAP_FIELD;
    }
    h->cap_from = p + 1;
    /* The body is a hole from here on, so that yajl never holds a long
     * string as a partial token (see skeleton.c). */
    h->str_hole = !h->opt.full_feed &&
                  san_hole_add(h, out_pos(h, p + 1), HOLE_OPEN, FILL_NONE);
}

/* Collects the current string's bytes from cap_from up to p. */
int san_capture(sanitize *h, const unsigned char *p)
{
    if (h->cap == CAP_NONE) {
        return 0;
    }
    const unsigned char *from = h->cap_from;
    size_t n = (size_t)(p - from);
    h->cap_from = p;
    if (h->cap == CAP_FIELD) {
        return ng_buf_append(&h->raw, from, n);
    }
    /* Of a key, KEY_KEEP bytes and one more, to tell it was cut. */
    size_t have = h->keys.len - top_frame(h)->key_start;
    size_t room = have < KEY_KEEP + 1 ? KEY_KEEP + 1 - have : 0;
    return ng_buf_append(&h->keys, from, n < room ? n : room);
}

static int field_of_key(sanitize *h, const struct frame *f)
{
    size_t len = f->key_len;
    if (len == 0 || len > KEY_KEEP) {
        return -1; /* no field has an empty name, or one this long */
    }
    const char *k = san_frame_key(h, f);
    if (memchr(k, '\\', len) != NULL) {
        k = decode_into(&h->raw, (const unsigned char *)k, len);
        if (k == NULL) {
            return -1;
        }
        len = strlen(k);
    }
    for (int i = 0; i < SANITIZE_FIELD_COUNT; i++) {
        const char *name = sanitize_field_name((sanitize_field_id)i);
        if (strlen(name) == len && memcmp(name, k, len) == 0) {
            return i;
        }
    }
    return -1;
}

/* The closing quote of a string is at p. Returns 0 or -1. */
int san_string_end(sanitize *h, const unsigned char *p)
{
    h->state = ST_VALUE;
    if (h->str_hole) {
        san_hole_close(h, out_pos(h, p));
        h->str_hole = false;
    }
    if (h->str_is_key) {
        struct frame *top = top_frame(h);
        if (h->cap != CAP_KEY) {
            top->key_ptr = NULL; /* not needed */
            top->key_len = 0;
        } else if (h->keys.len == top->key_start) {
            /* All of it in this chunk: no copy for now. */
            top->key_ptr = h->cap_from;
            top->key_len = (size_t)(p - h->cap_from);
        } else {
            if (san_capture(h, p) != 0) {
                san_fail(h, SANITIZE_ENOMEM, offset_at(h, p), "out of memory");
                return -1;
            }
            top->key_len = h->keys.len - top->key_start;
        }
        top->expect = EXP_COLON;
        if (h->nframes == 1) {
            h->cur_field = field_of_key(h, top);
        }
        h->member++;
        if (!h->str_dirty || san_value_repaired(h) != 0) {
            return h->failed ? -1 : 0;
        }
        h->key_repaired_member = h->member;
        h->key_repaired_depth = h->nframes;
        return 0;
    }
    if (san_capture(h, p) != 0) {
        san_fail(h, SANITIZE_ENOMEM, offset_at(h, p), "out of memory");
        return -1;
    }
    if (h->str_dirty && san_value_repaired(h) != 0) {
        return -1;
    }
    int field = current_field(h);
    if (field >= 0 && h->cap == CAP_FIELD) {
        sanitize_field *f = &h->fields[field];
        ng_buf *dst = &h->field_str[field];
        if (decode_into(dst, (const unsigned char *)h->raw.data, h->raw.len) ==
            NULL) {
            san_fail(h, SANITIZE_ENOMEM, offset_at(h, p), "out of memory");
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
