/* error.c - errors as values. */
#include "common/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int ng_error_set(ng_error *err, ng_error_class klass, const char *code,
                 const char *fmt, ...)
{
    if (err == NULL) {
        return -1;
    }
    err->klass = klass;
    snprintf(err->code, sizeof err->code, "%s", code);
    err->sqlstate[0] = '\0';
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return -1;
}

void ng_error_clear(ng_error *err)
{
    if (err != NULL) {
        memset(err, 0, sizeof *err);
    }
}

const char *ng_error_class_name(ng_error_class klass)
{
    switch (klass) {
    case NG_ERR_NONE:
        return "none";
    case NG_ERR_TRANSIENT:
        return "transient";
    case NG_ERR_PERMANENT:
        return "permanent";
    case NG_ERR_CONFIG:
        return "configuration";
    }
    return "?";
}

void ng_error_redact_quoted(char *s)
{
    char *out = s;
    const char *in = s;
    while (*in != '\0') {
        const char *close = *in == '"' ? strchr(in + 1, '"') : NULL;
        if (close == NULL) {
            *out++ = *in++;
            continue;
        }
        size_t n = (size_t)(close - in - 1);
        /* In place: "***" only where it is no longer than the text. */
        if (n == 1 && in[1] == '=') {
            memmove(out, in, 3);
            out += 3;
        } else if (n >= 3) {
            memcpy(out, "\"***\"", 5);
            out += 5;
        } else {
            memcpy(out, "\"\"", 2);
            out += 2;
        }
        in = close + 1;
    }
    *out = '\0';
}
