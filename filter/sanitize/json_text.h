/* json_text.h - small facts about JSON string text, shared by the
 * sanitizer's scanner and its decoder. Pure functions. */
#ifndef NANGUARD_JSON_TEXT_H
#define NANGUARD_JSON_TEXT_H

#include "common/buf.h"
#include "common/utf8.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Hex digit values; -1 for every other byte. */
extern const signed char json_hex_value[256];

/* The value of the four hex digits at s, above 0xFFFF when they are not
 * four hex digits (-1 shifted left keeps its high bits). No branch. */
static inline uint32_t hex4_or_big(const unsigned char *s)
{
    return (uint32_t)json_hex_value[s[0]] << 12 |
           (uint32_t)json_hex_value[s[1]] << 8 |
           (uint32_t)json_hex_value[s[2]] << 4 | (uint32_t)json_hex_value[s[3]];
}

/* The value of four hex digits at s, or -1. */
static inline int hex4(const unsigned char *s)
{
    uint32_t v = hex4_or_big(s);
    return v > 0xFFFF ? -1 : (int)v;
}

/* Whether \u with value v (from hex4_or_big) stays as it is: not 0000,
 * not a surrogate, four hex digits. No branch. */
static inline bool uescape_kept(uint32_t v)
{
    return (v - 1u < 0xD7FFu) | (v - 0xE000u < 0x2000u);
}

/* Decodes the text between the quotes of a JSON string (escapes resolved)
 * into out, with the sanitizer's repairs applied: \u0000 and lone
 * surrogates become U+FFFD, and so does each maximal invalid UTF-8
 * subpart. Appends a NUL (not counted). Returns 0, or -1 when out of
 * memory. */
int json_decode_repaired(const unsigned char *s, size_t n, ng_buf *out);

#endif
