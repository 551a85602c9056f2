/* json_text.h - small facts about JSON string text, shared by the
 * sanitizer's scanner and its decoder. Pure functions. */
#ifndef NANGUARD_JSON_TEXT_H
#define NANGUARD_JSON_TEXT_H

#include "../common/buf.h"
#include "../common/utf8.h"

#include <stddef.h>

/* Hex digit values; -1 for every other byte. */
extern const signed char json_hex_value[256];

/* The value of four hex digits at s, or -1. */
static inline int hex4(const unsigned char *s)
{
    int a = json_hex_value[s[0]], b = json_hex_value[s[1]];
    int c = json_hex_value[s[2]], d = json_hex_value[s[3]];
    if ((a | b | c | d) < 0) {
        return -1;
    }
    return a << 12 | b << 8 | c << 4 | d;
}

/* Decodes the text between the quotes of a JSON string (escapes resolved)
 * into out, with the sanitizer's repairs applied: \u0000 and lone
 * surrogates become U+FFFD, and so does each maximal invalid UTF-8
 * subpart. Appends a NUL (not counted). Returns 0, or -1 when out of
 * memory. */
int json_decode_repaired(const unsigned char *s, size_t n, ng_buf *out);

#endif
