/* events.c - notification events as JSON. */
#include "sink/events.h"

#include "common/json_write.h"
#include "common/log.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* Length of at most max characters (not bytes) of UTF-8 text s. */
static size_t utf8_prefix(const char *s, size_t max)
{
    size_t i = 0, chars = 0;
    while (s[i] != '\0' && chars < max) {
        i++;
        while ((s[i] & 0xC0) == 0x80) {
            i++;
        }
        chars++;
    }
    return i;
}

/* , "error_details": "<at most EVENT_DETAILS_MAX characters>" */
static int details_field(ng_buf *b, const char *details)
{
    const char *d = details ? details : "";
    return ng_json_raw(b, ", \"error_details\": ") ||
           ng_json_string(b, d, utf8_prefix(d, EVENT_DETAILS_MAX));
}

static int head(ng_buf *b, const char *thread_id, const char *type,
                const char *severity, const char *message, const char *details,
                bool with_details)
{
    char ts[32];
    ng_log_timestamp(ts);
    return ng_json_raw(b, "{\"thread_id\": ") || ng_json_cstr(b, thread_id) ||
           ng_json_raw(b, ", \"type\": ") || ng_json_cstr(b, type) ||
           ng_json_raw(b, ", \"severity\": ") || ng_json_cstr(b, severity) ||
           ng_json_raw(b, ", \"message\": ") || ng_json_cstr(b, message) ||
           (with_details && details_field(b, details)) ||
           ng_json_raw(b, ", \"timestamp\": ") || ng_json_cstr(b, ts);
}

static int position(ng_buf *b, const char *name, event_position p)
{
    char num[64];
    snprintf(num, sizeof num, ", \"partition\": %d, \"offset\": %lld}",
             (int)p.partition, (long long)p.offset);
    return ng_json_raw(b, ", \"") || ng_json_raw(b, name) ||
           ng_json_raw(b, "\": {\"topic\": ") || ng_json_cstr(b, p.topic) ||
           ng_json_raw(b, num);
}

int event_flush_error_json(ng_buf *b, const event_flush_error *ev)
{
    return head(b, ev->thread_id, "checkpoint_flush_error", "warning",
                ev->message, ev->details, true) ||
           ng_json_raw(b, ", \"checkpoint_id\": ") ||
           ng_json_cstr(b, ev->checkpoint_id) ||
           ng_json_raw(b, ", \"checkpoint_ns\": ") ||
           ng_json_cstr(b, ev->checkpoint_ns) ||
           ng_json_raw(b, ", \"error_code\": ") ||
           ng_json_cstr(b, ev->error_code) || position(b, "dlq", ev->dlq) ||
           position(b, "source", ev->source) || ng_json_raw(b, "}");
}

int event_critical_json(ng_buf *b, const char *thread_id, const char *message,
                        const char *details)
{
    return head(b, thread_id, "checkpoint_flush_critical_error", "critical",
                message, details, true) ||
           ng_json_raw(b, "}");
}

int event_sanitized_json(ng_buf *b, const char *thread_id,
                         const char *checkpoint_id, const char *rewrites_json,
                         const char *paths_json, event_position source)
{
    return head(b, thread_id, "checkpoint_sanitized", "info",
                "non-finite or invalid values were replaced so the "
                "checkpoint could be stored",
                NULL, false) ||
           ng_json_raw(b, ", \"checkpoint_id\": ") ||
           ng_json_cstr(b, checkpoint_id) ||
           ng_json_raw(b, ", \"rewrites\": ") ||
           ng_json_raw(b, rewrites_json) || ng_json_raw(b, ", \"paths\": ") ||
           ng_json_raw(b, paths_json) || position(b, "source", source) ||
           ng_json_raw(b, "}");
}

int event_incomplete_json(ng_buf *b, const char *thread_id,
                          const char *checkpoint_id, const char *checkpoint_ns,
                          const char *details, event_position source)
{
    return head(b, thread_id, "checkpoint_incomplete", "warning",
                "A checkpoint was saved without part of its state: resuming "
                "this workflow from it may lose data.",
                details, true) ||
           ng_json_raw(b, ", \"checkpoint_id\": ") ||
           ng_json_cstr(b, checkpoint_id) ||
           ng_json_raw(b, ", \"checkpoint_ns\": ") ||
           ng_json_cstr(b, checkpoint_ns) || position(b, "source", source) ||
           ng_json_raw(b, "}");
}
