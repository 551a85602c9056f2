/* json_write.c - appending JSON text to a buffer. */
#include "common/json_write.h"

#include "common/utf8.h"

#include <stdio.h>
#include <string.h>

int ng_json_string(ng_buf *b, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    if (ng_buf_putc(b, '"') != 0) {
        return -1;
    }
    size_t run = 0; /* bytes at s[i - run .. i) that need no escape */
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            run++;
            i++;
            continue;
        }
        if (c >= 0x80) {
            bool valid;
            size_t len = utf8_sequence(s + i, n - i, &valid);
            if (valid) {
                run += len;
                i += len;
                continue;
            }
        }
        if (ng_buf_append(b, s + i - run, run) != 0) {
            return -1;
        }
        run = 0;
        char esc[8];
        const char *e = esc;
        switch (c) {
        case '"':
            e = "\\\"";
            break;
        case '\\':
            e = "\\\\";
            break;
        case '\n':
            e = "\\n";
            break;
        case '\r':
            e = "\\r";
            break;
        case '\t':
            e = "\\t";
            break;
        default:
            if (c < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", c);
            } else {
                e = "\xEF\xBF\xBD";
            }
        }
        if (ng_buf_append(b, e, strlen(e)) != 0) {
            return -1;
        }
        i++;
    }
    if (ng_buf_append(b, s + n - run, run) != 0) {
        return -1;
    }
    return ng_buf_putc(b, '"');
}

int ng_json_cstr(ng_buf *b, const char *s)
{
    if (s == NULL) {
        return ng_json_raw(b, "null");
    }
    return ng_json_string(b, s, strlen(s));
}

int ng_json_u64(ng_buf *b, uint64_t v)
{
    char num[24];
    int n = snprintf(num, sizeof num, "%llu", (unsigned long long)v);
    return ng_buf_append(b, num, (size_t)n);
}

int ng_json_raw(ng_buf *b, const char *s)
{
    return ng_buf_append(b, s, strlen(s));
}

int ng_json_base64(ng_buf *b, const void *p, size_t n)
{
    static const char tab[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *s = p;
    int rc = ng_buf_putc(b, '"');
    for (size_t i = 0; rc == 0 && i < n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16;
        if (i + 1 < n) {
            v |= (uint32_t)s[i + 1] << 8;
        }
        if (i + 2 < n) {
            v |= s[i + 2];
        }
        char q[4] = {tab[v >> 18], tab[(v >> 12) & 63],
                     i + 1 < n ? tab[(v >> 6) & 63] : '=',
                     i + 2 < n ? tab[v & 63] : '='};
        rc = ng_buf_append(b, q, 4);
    }
    return rc || ng_buf_putc(b, '"');
}
