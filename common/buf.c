/* buf.c - growable byte buffer. */
#include "common/buf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int ng_buf_reserve(ng_buf *b, size_t extra)
{
    if (extra <= b->cap - b->len) {
        return 0;
    }
    if (extra > SIZE_MAX - b->len - 1) {
        return -1;
    }
    size_t need = b->len + extra + 1;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) {
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    }
    char *p = realloc(b->data, cap);
    if (p == NULL) {
        return -1;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

int ng_buf_append(ng_buf *b, const void *p, size_t n)
{
    if (n == 0) {
        return 0;
    }
    if (ng_buf_reserve(b, n) != 0) {
        return -1;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int ng_buf_putc(ng_buf *b, char c)
{
    return ng_buf_append(b, &c, 1);
}

int ng_buf_append_str(ng_buf *b, const void *p, size_t n)
{
    if (ng_buf_reserve(b, n + 1) != 0) {
        return -1;
    }
    if (n > 0) {
        memcpy(b->data + b->len, p, n);
    }
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

void ng_buf_clear(ng_buf *b)
{
    b->len = 0;
}

void ng_buf_free(ng_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}
