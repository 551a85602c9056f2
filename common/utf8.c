/* utf8.c - UTF-8 validity. */
#include "common/utf8.h"

int utf8_lead(unsigned char c, unsigned char *lo, unsigned char *hi)
{
    *lo = 0x80;
    *hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        return 1;
    }
    if (c >= 0xE0 && c <= 0xEF) {
        *lo = c == 0xE0 ? 0xA0 : 0x80;
        *hi = c == 0xED ? 0x9F : 0xBF;
        return 2;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        *lo = c == 0xF0 ? 0x90 : 0x80;
        *hi = c == 0xF4 ? 0x8F : 0xBF;
        return 3;
    }
    return 0;
}

size_t utf8_sequence(const unsigned char *s, size_t n, bool *valid)
{
    unsigned char lo, hi;
    int need = utf8_lead(s[0], &lo, &hi);
    *valid = false;
    if (need == 0) {
        return 1;
    }
    size_t k = 1;
    while (need > 0 && k < n && s[k] >= lo && s[k] <= hi) {
        k++;
        need--;
        lo = 0x80;
        hi = 0xBF;
    }
    *valid = need == 0;
    return k;
}

bool utf8_valid(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        bool ok;
        i += utf8_sequence(u + i, n - i, &ok);
        if (!ok) {
            return false;
        }
    }
    return true;
}
