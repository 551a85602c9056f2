/* buf.h - growable byte buffer, reused between messages.
 *
 * A buffer owns its bytes. Appends return 0, or -1 when memory or the size
 * computation would overflow, in which case the buffer is unchanged.
 * ng_buf_free on a zeroed or already freed buffer is safe.
 */
#ifndef NANGUARD_BUF_H
#define NANGUARD_BUF_H

#include <stddef.h>

typedef struct {
    char *data;
    size_t len;
    size_t cap;
} ng_buf;

/* Makes room for extra more bytes after len. */
int ng_buf_reserve(ng_buf *b, size_t extra);
int ng_buf_append(ng_buf *b, const void *p, size_t n);
int ng_buf_putc(ng_buf *b, char c);
/* Appends and keeps a NUL after the last byte (not counted in len). */
int ng_buf_append_str(ng_buf *b, const void *p, size_t n);
void ng_buf_clear(ng_buf *b);
void ng_buf_free(ng_buf *b);

#endif
