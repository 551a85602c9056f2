/* paths.c - the report's RFC 6901 JSON Pointers of repaired values.
 *
 * A path is bounded: a key longer than KEY_KEEP bytes (as written in the
 * input) appears as its first characters that fit in KEY_KEEP bytes,
 * decoded, then KEY_CUT_MARK. */
#include "filter/sanitize/json_text.h"
#include "filter/sanitize/sanitize_impl.h"

#include <stdlib.h>

/* U+2026 HORIZONTAL ELLIPSIS */
#define KEY_CUT_MARK "\xE2\x80\xA6"

/* The length of the longest prefix of raw key text k, longer than limit
 * bytes, that ends on a character within limit bytes: no escape or UTF-8
 * sequence cut (a surrogate pair is one). It reads only k[0..limit], which
 * the handle keeps however the key was cut into chunks. */
static size_t key_cut(const unsigned char *k, size_t limit)
{
    size_t i = 0;
    while (i < limit) {
        size_t step = 1;
        unsigned char lo, hi;
        if (k[i] == '\\') {
            step = k[i + 1] == 'u' ? 6 : 2;
            if (step == 6 && i + 12 <= limit && (k[i + 2] | 0x20) == 'd' &&
                k[i + 3] >= '8' && k[i + 6] == '\\' && k[i + 7] == 'u') {
                step = 12;
            }
        } else if (k[i] >= 0x80) {
            step = 1 + (size_t)utf8_lead(k[i], &lo, &hi);
        }
        if (i + step > limit) {
            break;
        }
        i += step;
    }
    return i;
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
        size_t kept = f->key_len < KEY_KEEP ? f->key_len : KEY_KEEP;
        need += 1 + (f->is_map ? 6 * kept + sizeof KEY_CUT_MARK : 20);
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
        const unsigned char *raw = (const unsigned char *)san_frame_key(h, f);
        bool cut = len > KEY_KEEP;
        if (cut) {
            len = key_cut(raw, KEY_KEEP);
        }
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
        if (cut) {
            memcpy(out, KEY_CUT_MARK, sizeof KEY_CUT_MARK - 1);
            out += sizeof KEY_CUT_MARK - 1;
        }
    }
    *out++ = '\0';
    h->path_offs[h->npaths++] = h->paths.len;
    h->paths.len = (size_t)(out - h->paths.data);
    return 0;
}

int san_value_repaired(sanitize *h)
{
    if (h->opt.no_paths) {
        return 0;
    }
    /* A repaired key and its repaired value name the same member: once. */
    if (h->key_repaired_member == h->member &&
        h->key_repaired_depth == h->nframes) {
        return 0;
    }
    if (record_path(h) != 0) {
        san_fail(h, SANITIZE_ENOMEM, h->tok_off, "out of memory");
        return -1;
    }
    return 0;
}
