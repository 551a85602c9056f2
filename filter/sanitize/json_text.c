/* json_text.c - small facts about JSON string text. */
#include "filter/sanitize/json_text.h"

#include <stdint.h>

const signed char json_hex_value[256] = {
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0,  1,  2,  3,  4,  5,  6,  7,  8,
    9,  -1, -1, -1, -1, -1, -1, -1, 10, 11, 12, 13, 14, 15, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, 10, 11, 12, 13, 14, 15, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1,
};

static int put_utf8(ng_buf *b, uint32_t cp)
{
    char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | cp >> 6);
        u[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | cp >> 12);
        u[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (char)(0xF0 | cp >> 18);
        u[1] = (char)(0x80 | (cp >> 12 & 0x3F));
        u[2] = (char)(0x80 | (cp >> 6 & 0x3F));
        u[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    return ng_buf_append(b, u, n);
}

/* One escape at s[0] == '\\' (n bytes left): appends its character and
 * returns the bytes it took. */
static size_t decode_escape(const unsigned char *s, size_t n, ng_buf *out,
                            int *rc)
{
    static const char simple[] = "\"\"\\\\//b\bf\fn\nr\rt\t";
    if (n < 2) {
        *rc = ng_buf_putc(out, '\\');
        return n;
    }
    if (s[1] != 'u') {
        for (size_t i = 0; simple[i] != '\0'; i += 2) {
            if (simple[i] == (char)s[1]) {
                *rc = ng_buf_putc(out, simple[i + 1]);
                return 2;
            }
        }
        *rc = ng_buf_append(out, s, 2);
        return 2;
    }
    int v = n >= 6 ? hex4(s + 2) : -1;
    if (v < 0) {
        *rc = ng_buf_append(out, s, 2);
        return 2;
    }
    uint32_t cp = (uint32_t)v;
    size_t used = 6;
    if (v >= 0xD800 && v <= 0xDBFF && n >= 12 && s[6] == '\\' && s[7] == 'u') {
        int lo = hex4(s + 8);
        if (lo >= 0xDC00 && lo <= 0xDFFF) {
            cp = 0x10000 + ((uint32_t)(v - 0xD800) << 10) +
                 (uint32_t)(lo - 0xDC00);
            used = 12;
        }
    }
    if (cp == 0 || (cp >= 0xD800 && cp <= 0xDFFF)) {
        cp = 0xFFFD;
    }
    *rc = put_utf8(out, cp);
    return used;
}

int json_decode_repaired(const unsigned char *s, size_t n, ng_buf *out)
{
    size_t i = 0;
    int rc = 0;
    while (i < n && rc == 0) {
        unsigned char c = s[i];
        if (c == '\\') {
            i += decode_escape(s + i, n - i, out, &rc);
            continue;
        }
        if (c < 0x80) {
            size_t j = i;
            while (j < n && s[j] < 0x80 && s[j] != '\\') {
                j++;
            }
            rc = ng_buf_append(out, s + i, j - i);
            i = j;
            continue;
        }
        bool valid;
        size_t k = utf8_sequence(s + i, n - i, &valid);
        rc = valid ? ng_buf_append(out, s + i, k)
                   : ng_buf_append(out, "\xEF\xBF\xBD", 3);
        i += k;
    }
    return rc || ng_buf_append_str(out, "", 0);
}
