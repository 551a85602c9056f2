/* log.c - JSON lines on stderr. */
#define _POSIX_C_SOURCE 200809L
#include "common/log.h"

#include "common/buf.h"
#include "common/json_write.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static ng_log_level min_level = NG_LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void ng_log_set_level(ng_log_level level)
{
    min_level = level;
}

int ng_log_parse_level(const char *s, ng_log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (ng_log_level)i;
            return 0;
        }
    }
    return -1;
}

void ng_log_timestamp(char out[32])
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

/* Writes "key":"text" (key of klen bytes), with text cut to
 * NG_LOG_MAX_FIELD bytes (at a character boundary) and, when it was cut,
 * "key_bytes":N after it: untrusted text (a Kafka key, a server's message)
 * cannot make a log line of its size. */
static int put_field(ng_buf *b, const char *key, size_t klen, const char *val)
{
    size_t n = strlen(val);
    size_t cut = n;
    if (n > NG_LOG_MAX_FIELD) {
        cut = NG_LOG_MAX_FIELD;
        while (cut > 0 && ((unsigned char)val[cut] & 0xC0) == 0x80) {
            cut--; /* not inside a UTF-8 sequence */
        }
    }
    int rc = ng_json_string(b, key, klen) || ng_buf_putc(b, ':') ||
             ng_json_string(b, val, cut);
    if (rc == 0 && cut < n) {
        char len[24];
        snprintf(len, sizeof len, "%zu", n);
        rc = ng_buf_putc(b, ',') || ng_buf_putc(b, '"') ||
             ng_buf_append(b, key, klen) || ng_json_raw(b, "_bytes\":") ||
             ng_json_raw(b, len);
    }
    return rc;
}

void ng_log(ng_log_level level, const char *msg, ...)
{
    if (level < min_level) {
        return;
    }
    char ts[32];
    ng_log_timestamp(ts);
    ng_buf b = {0};
    int rc = ng_json_raw(&b, "{\"ts\":\"") || ng_json_raw(&b, ts) ||
             ng_json_raw(&b, "\",\"level\":\"") ||
             ng_json_raw(&b, level_names[level]) || ng_json_raw(&b, "\",") ||
             put_field(&b, "msg", 3, msg ? msg : "");
    va_list ap;
    va_start(ap, msg);
    const char *key;
    while (rc == 0 && (key = va_arg(ap, const char *)) != NULL) {
        const char *val = va_arg(ap, const char *);
        size_t klen = strlen(key);
        bool raw = klen > 0 && key[klen - 1] == '#';
        rc = ng_buf_putc(&b, ',');
        if (rc == 0 && val == NULL) {
            rc =
                ng_json_string(&b, key, klen - raw) || ng_json_raw(&b, ":null");
        } else if (rc == 0 && raw) {
            rc = ng_json_string(&b, key, klen - 1) || ng_buf_putc(&b, ':') ||
                 ng_json_raw(&b, val);
        } else if (rc == 0) {
            rc = put_field(&b, key, klen, val);
        }
    }
    va_end(ap);
    if (rc == 0 && ng_buf_append(&b, "}\n", 2) == 0) {
        fwrite(b.data, 1, b.len, stderr);
        fflush(stderr);
    }
    ng_buf_free(&b);
}
