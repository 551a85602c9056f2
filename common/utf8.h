/* utf8.h - UTF-8 validity, by the rules PostgreSQL and Unicode use (no
 * overlong forms, no surrogates, nothing above U+10FFFF). Pure functions. */
#ifndef NANGUARD_UTF8_H
#define NANGUARD_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* For the lead byte c: how many continuation bytes follow, and the range
 * the first of them must lie in (later ones: 0x80-0xBF). Returns 0 when c
 * cannot lead a multi-byte sequence. */
int utf8_lead(unsigned char c, unsigned char *lo, unsigned char *hi);

/* The sequence starting at s[0] (a byte >= 0x80; n bytes left): returns
 * its length with *valid set, or, when it is not valid, the length of its
 * maximal invalid subpart (what one U+FFFD replaces) with *valid clear. */
size_t utf8_sequence(const unsigned char *s, size_t n, bool *valid);

/* Whether s[0..n) is valid UTF-8 as a whole. */
bool utf8_valid(const char *s, size_t n);

#endif
