/* json_write.h - appending JSON text to a buffer (reports, dead letters,
 * notifications). Each call returns 0, or -1 when out of memory. */
#ifndef NANGUARD_JSON_WRITE_H
#define NANGUARD_JSON_WRITE_H

#include "common/buf.h"

#include <stddef.h>
#include <stdint.h>

/* s[0..n) as a quoted JSON string. Bytes that are not valid UTF-8 are
 * written as U+FFFD so the result is always valid JSON. */
int ng_json_string(ng_buf *b, const char *s, size_t n);
/* The same for a NUL-terminated string; NULL writes null. */
int ng_json_cstr(ng_buf *b, const char *s);
int ng_json_u64(ng_buf *b, uint64_t v);
/* s[0..n) in base64 (RFC 4648, with padding) as a quoted JSON string: for
 * bytes that must come back exactly and are not valid UTF-8. */
int ng_json_base64(ng_buf *b, const void *s, size_t n);
/* Appends the literal text s (punctuation, keys known to be plain). */
int ng_json_raw(ng_buf *b, const char *s);

#endif
