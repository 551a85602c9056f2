/* dlq.c - nanguard dlq inspect | stats | replay: the dead-letter topic,
 * read without a group, and its records sent back. */
#define _POSIX_C_SOURCE 200809L
#include "filter/dlq.h"

#include "common/buf.h"
#include "common/clock.h"
#include "common/json_write.h"
#include "common/log.h"
#include "common/ratelimit.h"
#include "common/utf8.h"
#include "filter/kafka/kafka_conf.h"
#include "filter/kafka/offsets.h"
#include "filter/kafka/reader.h"
#include "filter/sanitize/envelope.h"
#include "filter/sanitize/sanitize.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------
 * Settings
 */
#define FOR_I (1u << DLQ_INSPECT)
#define FOR_S (1u << DLQ_STATS)
#define FOR_R (1u << DLQ_REPLAY)
#define FOR_ALL (FOR_I | FOR_S | FOR_R)

const ng_option dlq_settings[] = {
    {"brokers", NG_OPT_STRING, NULL,
     "Kafka bootstrap servers, HOST:PORT[,...] (required)"},
    {"topic", NG_OPT_STRING, NULL, "the dead-letter topic (required)"},
    {"code", NG_OPT_STRING, NULL,
     "only records with this nanguard.error.code (a trailing * matches a "
     "prefix: pg_23*)"},
    {"class", NG_OPT_STRING, NULL,
     "only records with this __connect.errors.exception.class.name"},
    {"thread-id", NG_OPT_STRING, NULL, "only records of this thread"},
    {"source-topic", NG_OPT_STRING, NULL,
     "only records dead-lettered from this topic (__connect.errors.topic)"},
    {"since", NG_OPT_STRING, NULL,
     "only records from this time on: RFC 3339 or a duration ago (90m, "
     "24h, 7d)"},
    {"until", NG_OPT_STRING, NULL,
     "only records before this time (as --since)"},
    {"follow", NG_OPT_FLAG, "false",
     "keep reading new records (until SIGINT or SIGTERM)"},
    {"format", NG_OPT_STRING, NULL,
     "json (one object per line) or table (default: table on a terminal, "
     "else json)"},
    {"values", NG_OPT_FLAG, "false",
     "add each record's value (\"value\", or \"value_base64\" when it is "
     "not UTF-8)"},
    {"explain", NG_OPT_FLAG, "false",
     "run today's sanitizer and envelope check on each value and say what "
     "they find"},
    {"max-depth", NG_OPT_INT, "1000", "--explain: deeper nesting is malformed"},
    {"max-message-bytes", NG_OPT_INT, "33554432",
     "--explain: larger values are too_large"},
    {"top", NG_OPT_INT, "10", "how many threads top_threads lists"},
    {"to", NG_OPT_STRING, NULL,
     "topic to send to (default: each record's __connect.errors.topic)"},
    {"max-replays", NG_OPT_INT, "3",
     "skip records already replayed this many times (nanguard.replay.count)"},
    {"dry-run", NG_OPT_FLAG, "false", "print what would be sent, send nothing"},
    {"rate", NG_OPT_INT, "0", "at most N records a second (0: no limit)"},
    {"group", NG_OPT_STRING, NULL,
     "resumable: commit the dead-letter offsets of acknowledged sends in "
     "this group, and start after them"},
    {"timeout-ms", NG_OPT_INT, "10000",
     "how long to wait for the broker at start"},
    {"log-level", NG_OPT_STRING, "warn", "debug, info, warn or error"},
};
const size_t dlq_settings_count = sizeof dlq_settings / sizeof dlq_settings[0];

static const unsigned setting_cmds[] = {
    FOR_ALL, FOR_ALL, FOR_ALL, FOR_ALL,       FOR_ALL, FOR_ALL,
    FOR_ALL, FOR_ALL, FOR_ALL, FOR_I | FOR_S, FOR_I,   FOR_I,
    FOR_I,   FOR_I,   FOR_S,   FOR_R,         FOR_R,   FOR_R,
    FOR_R,   FOR_R,   FOR_ALL, FOR_ALL,
};
_Static_assert(sizeof setting_cmds / sizeof setting_cmds[0] ==
                   sizeof dlq_settings / sizeof dlq_settings[0],
               "one command mask per setting");

size_t dlq_settings_for(dlq_command cmd, ng_option *out)
{
    size_t n = 0;
    for (size_t i = 0; i < dlq_settings_count; i++) {
        if (setting_cmds[i] & (1u << cmd)) {
            out[n++] = dlq_settings[i];
        }
    }
    return n;
}

/* ------------------------------------------------------------------------
 * Pure helpers
 */

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)**p)) {
            return -1;
        }
        v = v * 10 + (*(*p)++ - '0');
    }
    *out = v;
    return 0;
}

static int parse_rfc3339(const char *s, int64_t *ms)
{
    const char *p = s;
    int y, mo, d, h, mi, se, frac = 0;
    if (digits(&p, 4, &y) || *p++ != '-' || digits(&p, 2, &mo) || *p++ != '-' ||
        digits(&p, 2, &d) || (*p != 'T' && *p != 't' && *p != ' ')) {
        return -1;
    }
    p++;
    if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &mi) || *p++ != ':' ||
        digits(&p, 2, &se)) {
        return -1;
    }
    if (*p == '.') {
        p++;
        int scale = 100, any = 0;
        while (isdigit((unsigned char)*p)) {
            frac += (*p++ - '0') * scale;
            scale /= 10;
            any = 1;
        }
        if (!any) {
            return -1;
        }
    }
    int offset_min = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p++ == '-' ? -1 : 1, oh, om;
        if (digits(&p, 2, &oh) || *p++ != ':' || digits(&p, 2, &om) ||
            oh > 23 || om > 59) {
            return -1;
        }
        offset_min = sign * (oh * 60 + om);
    } else {
        return -1;
    }
    if (*p != '\0' || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 ||
        mi > 59 || se > 60) {
        return -1;
    }
    int64_t secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se -
                   (int64_t)offset_min * 60;
    *ms = secs * 1000 + frac;
    return 0;
}

int dlq_parse_time(const char *s, int64_t now_ms, int64_t *ms)
{
    if (s == NULL || *s == '\0') {
        return -1;
    }
    if (parse_rfc3339(s, ms) == 0) {
        return 0;
    }
    char *end;
    errno = 0;
    long long n = strtoll(s, &end, 10);
    if (errno || end == s || n < 0 || !isdigit((unsigned char)*s)) {
        return -1;
    }
    int64_t unit = strcmp(end, "s") == 0   ? 1000
                   : strcmp(end, "m") == 0 ? 60000
                   : strcmp(end, "h") == 0 ? 3600000
                   : strcmp(end, "d") == 0 ? 86400000
                                           : 0;
    if (unit == 0 || n > INT64_MAX / unit) {
        return -1;
    }
    *ms = now_ms - n * unit;
    return 0;
}

int dlq_code_matches(const char *pattern, const char *code)
{
    if (code == NULL) {
        return 0;
    }
    size_t n = strlen(pattern);
    if (n > 0 && pattern[n - 1] == '*') {
        return strncmp(pattern, code, n - 1) == 0;
    }
    return strcmp(pattern, code) == 0;
}

int dlq_header_is_added(const char *name)
{
    static const char *const prefixes[] = {
        "__connect.errors.", "nanguard.error.", "nanguard.replay."};
    static const char *const names[] = {"nanguard.worker", "nanguard.attempts",
                                        "nanguard.failed_at"};
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
        if (strncmp(name, prefixes[i], strlen(prefixes[i])) == 0) {
            return 1;
        }
    }
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(name, names[i]) == 0) {
            return 1;
        }
    }
    return 0;
}

const char *dlq_header_original_name(const char *name)
{
    static const char prefix[] = "nanguard.original.";
    size_t n = sizeof prefix - 1;
    return strncmp(name, prefix, n) == 0 && name[n] != '\0' ? name + n : name;
}

/* "2026-12-03T13:00:00.123Z" */
static void format_ms(int64_t ms, char out[32])
{
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03dZ", (int)(ms % 1000));
}

/* ------------------------------------------------------------------------
 * A dead-letter record, read
 */
enum hdr {
    H_TOPIC,
    H_PARTITION,
    H_OFFSET,
    H_CLASS,
    H_MESSAGE,
    H_CODE,
    H_SQLSTATE,
    H_WORKER,
    H_ATTEMPTS,
    H_FAILED_AT,
    H_REPLAY_COUNT,
    H_COUNT
};

static const char *const hdr_names[H_COUNT] = {
    "__connect.errors.topic",
    "__connect.errors.partition",
    "__connect.errors.offset",
    "__connect.errors.exception.class.name",
    "__connect.errors.exception.message",
    "nanguard.error.code",
    "nanguard.error.sqlstate",
    "nanguard.worker",
    "nanguard.attempts",
    "nanguard.failed_at",
    "nanguard.replay.count",
};

struct rec {
    const rd_kafka_message_t *rkm;
    ng_buf h[H_COUNT]; /* NUL-terminated values */
    bool have[H_COUNT];
    ng_buf key;       /* NUL-terminated copy of the key */
    ng_buf thread_id; /* the envelope's, else the key */
    bool have_thread;
    ng_buf checkpoint_id;
    bool have_checkpoint;
    int64_t replays;
    /* what today's sanitizer says (filled for every record) */
    enum { V_TOO_LARGE, V_NULL, V_MALFORMED, V_BAD_ENVELOPE, V_OK } verdict;
    char why[256];
    char missing[128]; /* V_OK: a channel neither in channel_values nor in
                          blobs ("" when none) */
};

static const char *hval(const struct rec *r, enum hdr i)
{
    return r->have[i] ? r->h[i].data : NULL;
}

static int64_t hint(const struct rec *r, enum hdr i)
{
    const char *v = hval(r, i);
    if (v == NULL || *v == '\0') {
        return -1;
    }
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    return errno || *end || n < 0 ? -1 : n;
}

struct dlq {
    dlq_command cmd;
    const ng_config *cfg;
    FILE *out;
    bool json;
    bool values, explain;
    const char *code, *klass, *thread, *source_topic, *to;
    int64_t since, until;
    size_t max_message_bytes;
    reader *rd;
    sanitize *san;
    envelope_reader *env_reader; /* the worker's envelope check */
    struct rec rec;
    ng_buf line;
    uint64_t matched;
    /* stats */
    struct tally {
        char **names;
        size_t n, cap;
    } by_code, by_class, by_source, by_thread;
    char first_failed[64], last_failed[64];
    /* replay */
    rd_kafka_t *producer;
    offsets *track;
    int64_t max_replays;
    bool dry_run;
    int64_t rate;
    bool group;
    uint64_t replayed, skipped, failed, sent;
    struct target {
        char *name;
        int partitions; /* 0: missing */
    } * known;          /* target topics looked up */
    size_t nknown;
    ng_ratelimit fail_log;
};

static int setbuf_str(ng_buf *b, const void *p, size_t n)
{
    ng_buf_clear(b);
    return ng_buf_append_str(b, p ? p : "", p ? n : 0);
}

/* Reads the headers, the ids and today's verdict of rkm into d->rec. */
static int read_rec(struct dlq *d, const rd_kafka_message_t *rkm)
{
    struct rec *r = &d->rec;
    r->rkm = rkm;
    rd_kafka_headers_t *hdrs = NULL;
    rd_kafka_message_headers(rkm, &hdrs);
    for (int i = 0; i < H_COUNT; i++) {
        const void *v = NULL;
        size_t n = 0;
        r->have[i] = hdrs != NULL &&
                     rd_kafka_header_get_last(hdrs, hdr_names[i], &v, &n) ==
                         RD_KAFKA_RESP_ERR_NO_ERROR;
        if (r->have[i] && setbuf_str(&r->h[i], v, n) != 0) {
            return -1;
        }
    }
    int64_t c = hint(r, H_REPLAY_COUNT);
    r->replays = c < 0 ? 0 : c;
    if (setbuf_str(&r->key, rkm->key, rkm->key_len) != 0) {
        return -1;
    }
    r->have_thread = r->have_checkpoint = false;
    if (rkm->payload == NULL) {
        r->verdict = V_NULL;
    } else if (rkm->len > d->max_message_bytes) {
        r->verdict = V_TOO_LARGE;
        snprintf(r->why, sizeof r->why,
                 "value of %zu bytes is larger than the limit of %zu bytes "
                 "(max-message-bytes)",
                 rkm->len, d->max_message_bytes);
    } else {
        sanitize_reset(d->san);
        sanitize_status st = sanitize_feed(d->san, rkm->payload, rkm->len);
        if (st == SANITIZE_OK) {
            st = sanitize_finish(d->san);
        }
        if (st == SANITIZE_ENOMEM) {
            return -1;
        }
        if (st != SANITIZE_OK) {
            const sanitize_error *e = sanitize_last_error(d->san);
            r->verdict = V_MALFORMED;
            snprintf(r->why, sizeof r->why, "%s", e->message);
        } else {
            envelope env;
            r->verdict = envelope_reader_read(d->env_reader, d->san, &env,
                                              r->why, sizeof r->why)
                             ? V_BAD_ENVELOPE
                             : V_OK;
            if (r->verdict == V_BAD_ENVELOPE &&
                strcmp(r->why, "out of memory") == 0) {
                return -1;
            }
            r->missing[0] = '\0';
            if (r->verdict == V_OK && env.missing_channel != NULL) {
                snprintf(r->missing, sizeof r->missing, "%s",
                         env.missing_channel);
            }
            const sanitize_field *f =
                sanitize_field_get(d->san, SANITIZE_FIELD_THREAD_ID);
            if (f != NULL && f->type == SANITIZE_TYPE_STRING) {
                r->have_thread = true;
                if (setbuf_str(&r->thread_id, f->str, f->str_len) != 0) {
                    return -1;
                }
            }
            f = sanitize_field_get(d->san, SANITIZE_FIELD_CHECKPOINT_ID);
            if (f != NULL && f->type == SANITIZE_TYPE_STRING) {
                r->have_checkpoint = true;
                if (setbuf_str(&r->checkpoint_id, f->str, f->str_len) != 0) {
                    return -1;
                }
            }
        }
    }
    /* As the worker does: the key names the thread of a value it cannot
     * read. */
    if (!r->have_thread && rkm->key != NULL) {
        r->have_thread = true;
        if (setbuf_str(&r->thread_id, rkm->key, rkm->key_len) != 0) {
            return -1;
        }
    }
    return 0;
}

static bool matches(const struct dlq *d, const struct rec *r)
{
    if (d->code && !dlq_code_matches(d->code, hval(r, H_CODE))) {
        return false;
    }
    const char *v;
    if (d->klass && ((v = hval(r, H_CLASS)) == NULL || strcmp(v, d->klass))) {
        return false;
    }
    if (d->source_topic &&
        ((v = hval(r, H_TOPIC)) == NULL || strcmp(v, d->source_topic))) {
        return false;
    }
    if (d->thread &&
        (!r->have_thread || strcmp(r->thread_id.data, d->thread) != 0)) {
        return false;
    }
    rd_kafka_timestamp_type_t tt;
    int64_t ts = rd_kafka_message_timestamp(r->rkm, &tt);
    if (d->since >= 0 && ts >= 0 && ts < d->since) {
        return false;
    }
    if (d->until >= 0 && ts >= 0 && ts >= d->until) {
        return false;
    }
    return true;
}

/* ------------------------------------------------------------------------
 * inspect
 */
static int json_hdr(ng_buf *b, const struct rec *r, enum hdr i)
{
    const char *v = hval(r, i);
    return ng_json_cstr(b, v != NULL && *v != '\0' ? v : NULL);
}

static int json_int_or_null(ng_buf *b, int64_t v)
{
    return v < 0 ? ng_json_raw(b, "null") : ng_json_u64(b, (uint64_t)v);
}

/* Appends the "explain" object of the current record to b, and its
 * summary (for people) to summary. */
static int json_explain(struct dlq *d, ng_buf *b, char *summary, size_t size)
{
    const struct rec *r = &d->rec;
    int rc = 0;
    switch (r->verdict) {
    case V_NULL:
        snprintf(summary, size, "a null value: the worker skips it");
        rc = ng_json_raw(b, "{\"verdict\": \"tombstone\"");
        break;
    case V_TOO_LARGE:
        rc = ng_json_raw(b, "{\"verdict\": \"too_large\", \"reason\": ") ||
             ng_json_cstr(b, r->why);
        snprintf(summary, size, "too large: %s", r->why);
        break;
    case V_MALFORMED: {
        const sanitize_error *e = sanitize_last_error(d->san);
        uint64_t at = e->offset, len = r->rkm->len;
        uint64_t from = at > 30 ? at - 30 : 0;
        uint64_t to = at + 30 < len ? at + 30 : len;
        rc = ng_json_raw(b, "{\"verdict\": \"malformed_json\", \"offset\": ") ||
             ng_json_u64(b, at) || ng_json_raw(b, ", \"reason\": ") ||
             ng_json_cstr(b, r->why) || ng_json_raw(b, ", \"excerpt\": ") ||
             ng_json_string(b, (const char *)r->rkm->payload + from,
                            (size_t)(to - from));
        snprintf(summary, size, "malformed JSON at byte %llu: %s",
                 (unsigned long long)at, r->why);
        break;
    }
    case V_BAD_ENVELOPE:
        rc = ng_json_raw(b, "{\"verdict\": \"bad_envelope\", \"reason\": ") ||
             ng_json_cstr(b, r->why);
        snprintf(summary, size, "not a checkpoint envelope: %s", r->why);
        break;
    case V_OK: {
        /* The checkpoint's repairs and those of its json blobs, as the
         * worker counts them. */
        uint64_t by[SANITIZE_KIND_COUNT], n = 0;
        for (int k = 0; k < SANITIZE_KIND_COUNT; k++) {
            by[k] = sanitize_count(d->san, (sanitize_kind)k) +
                    envelope_reader_count(d->env_reader, (sanitize_kind)k);
            n += by[k];
        }
        rc = ng_json_raw(b, "{\"verdict\": \"would_be_stored\", "
                            "\"rewrites\": ") ||
             ng_json_u64(b, n) || ng_json_raw(b, ", \"by_kind\": {");
        for (int k = 0; rc == 0 && k < SANITIZE_KIND_COUNT; k++) {
            rc = (k && ng_json_raw(b, ", ")) ||
                 ng_json_cstr(b, sanitize_kind_name((sanitize_kind)k)) ||
                 ng_json_raw(b, ": ") || ng_json_u64(b, by[k]);
        }
        rc = rc || ng_json_raw(b, "}");
        if (rc == 0 && r->missing[0] != '\0') {
            rc = ng_json_raw(b, ", \"missing_channel\": ") ||
                 ng_json_cstr(b, r->missing);
        }
        snprintf(summary, size,
                 "would be stored, %llu rewrite%s%s%s%s (PostgreSQL's "
                 "constraints not checked)",
                 (unsigned long long)n, n == 1 ? "" : "s",
                 r->missing[0] ? "; incomplete: channel '" : "", r->missing,
                 r->missing[0] ? "' is neither in channel_values nor in blobs "
                                 "(refused with --require-complete)"
                               : "");
        break;
    }
    }
    return rc || ng_json_raw(b, ", \"summary\": ") ||
           ng_json_cstr(b, summary) || ng_json_raw(b, "}");
}

static int inspect_json(struct dlq *d)
{
    const struct rec *r = &d->rec;
    const rd_kafka_message_t *m = r->rkm;
    ng_buf *b = &d->line;
    ng_buf_clear(b);
    rd_kafka_timestamp_type_t tt;
    int64_t ts = rd_kafka_message_timestamp(m, &tt);
    char tsbuf[32];
    if (ts >= 0) {
        format_ms(ts, tsbuf);
    }
    int rc =
        ng_json_raw(b, "{\"dlq\": {\"topic\": ") ||
        ng_json_cstr(b, rd_kafka_topic_name(m->rkt)) ||
        ng_json_raw(b, ", \"partition\": ") ||
        ng_json_u64(b, (uint64_t)m->partition) ||
        ng_json_raw(b, ", \"offset\": ") ||
        ng_json_u64(b, (uint64_t)m->offset) ||
        ng_json_raw(b, ", \"timestamp\": ") ||
        ng_json_cstr(b, ts >= 0 ? tsbuf : NULL) ||
        ng_json_raw(b, "}, \"source\": {\"topic\": ") ||
        json_hdr(b, r, H_TOPIC) || ng_json_raw(b, ", \"partition\": ") ||
        json_int_or_null(b, hint(r, H_PARTITION)) ||
        ng_json_raw(b, ", \"offset\": ") ||
        json_int_or_null(b, hint(r, H_OFFSET)) ||
        ng_json_raw(b, "}, \"key\": ") ||
        (m->key ? ng_json_string(b, m->key, m->key_len)
                : ng_json_raw(b, "null")) ||
        ng_json_raw(b, ", \"thread_id\": ") ||
        ng_json_cstr(b, r->have_thread ? r->thread_id.data : NULL) ||
        ng_json_raw(b, ", \"checkpoint_id\": ") ||
        ng_json_cstr(b, r->have_checkpoint ? r->checkpoint_id.data : NULL) ||
        ng_json_raw(b, ", \"error\": {\"class\": ") ||
        json_hdr(b, r, H_CLASS) || ng_json_raw(b, ", \"code\": ") ||
        json_hdr(b, r, H_CODE) || ng_json_raw(b, ", \"sqlstate\": ") ||
        json_hdr(b, r, H_SQLSTATE) || ng_json_raw(b, ", \"message\": ") ||
        json_hdr(b, r, H_MESSAGE) || ng_json_raw(b, "}, \"attempts\": ") ||
        json_int_or_null(b, hint(r, H_ATTEMPTS)) ||
        ng_json_raw(b, ", \"failed_at\": ") || json_hdr(b, r, H_FAILED_AT) ||
        ng_json_raw(b, ", \"worker\": ") || json_hdr(b, r, H_WORKER) ||
        ng_json_raw(b, ", \"replays\": ") ||
        ng_json_u64(b, (uint64_t)r->replays) ||
        ng_json_raw(b, ", \"value_bytes\": ") ||
        ng_json_u64(b, m->payload ? m->len : 0);
    if (rc == 0 && d->values) {
        if (m->payload == NULL) {
            rc = ng_json_raw(b, ", \"value\": null");
        } else if (utf8_valid(m->payload, m->len)) {
            rc = ng_json_raw(b, ", \"value\": ") ||
                 ng_json_string(b, m->payload, m->len);
        } else {
            rc = ng_json_raw(b, ", \"value_base64\": ") ||
                 ng_json_base64(b, m->payload, m->len);
        }
    }
    if (rc == 0 && d->explain) {
        char summary[400];
        rc = ng_json_raw(b, ", \"explain\": ") ||
             json_explain(d, b, summary, sizeof summary);
    }
    rc = rc || ng_json_raw(b, "}\n");
    return rc ? -1 : 0;
}

/* Up to width bytes of s, cut at a UTF-8 boundary. */
static int cut(const char *s, int width)
{
    int n = (int)strnlen(s, (size_t)width + 1);
    if (n <= width) {
        return n;
    }
    n = width;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) {
        n--;
    }
    return n;
}

static void table_header(struct dlq *d)
{
    fprintf(d->out, "%-12s %-24s %-16s %-26s %-20s %3s  %s\n", "PART/OFFSET",
            "FAILED_AT", "CODE", "SOURCE", "THREAD", "RPL", "MESSAGE");
}

static int inspect_table(struct dlq *d)
{
    const struct rec *r = &d->rec;
    const rd_kafka_message_t *m = r->rkm;
    char pos[32], src[300];
    snprintf(pos, sizeof pos, "%d/%lld", (int)m->partition,
             (long long)m->offset);
    const char *st = hval(r, H_TOPIC);
    snprintf(src, sizeof src, "%s/%lld/%lld", st ? st : "-",
             (long long)hint(r, H_PARTITION), (long long)hint(r, H_OFFSET));
    const char *code = hval(r, H_CODE), *fa = hval(r, H_FAILED_AT);
    const char *msg = hval(r, H_MESSAGE), *th = r->thread_id.data;
    if (!r->have_thread) {
        th = "-";
    }
    fprintf(d->out, "%-12s %-24s %-16.*s %-26.*s %-20.*s %3lld  %.*s\n", pos,
            fa ? fa : "-", cut(code ? code : "-", 16), code ? code : "-",
            cut(src, 26), src, cut(th, 20), th, (long long)r->replays,
            cut(msg ? msg : "-", 70), msg ? msg : "-");
    if (d->explain) {
        char summary[400];
        ng_buf_clear(&d->line);
        if (json_explain(d, &d->line, summary, sizeof summary) != 0) {
            return -1;
        }
        fprintf(d->out, "    explain: %s\n", summary);
    }
    if (d->values) {
        if (m->payload == NULL) {
            fprintf(d->out, "    value: null\n");
        } else {
            /* Escaped as a JSON string: no control bytes to the
             * terminal. */
            size_t n = m->len > 200 ? 200 : m->len;
            ng_buf_clear(&d->line);
            if (ng_json_string(&d->line, m->payload, n) != 0) {
                return -1;
            }
            fprintf(d->out, "    value (%zu bytes): %.*s%s\n", m->len,
                    (int)d->line.len, d->line.data, m->len > n ? " ..." : "");
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * stats
 */
static int tally_add(struct tally *t, const char *name)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        char **p = realloc(t->names, cap * sizeof *p);
        if (p == NULL) {
            return -1;
        }
        t->names = p;
        t->cap = cap;
    }
    char *s = strdup(name);
    if (s == NULL) {
        return -1;
    }
    t->names[t->n++] = s;
    return 0;
}

static void tally_free(struct tally *t)
{
    for (size_t i = 0; i < t->n; i++) {
        free(t->names[i]);
    }
    free(t->names);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

struct count {
    const char *name;
    uint64_t n;
};

static int cmp_count(const void *a, const void *b)
{
    const struct count *x = a, *y = b;
    if (x->n != y->n) {
        return x->n < y->n ? 1 : -1;
    }
    return strcmp(x->name, y->name);
}

/* The distinct names with their counts, by name; *out is the caller's. */
static size_t tally_counts(struct tally *t, struct count **out)
{
    qsort(t->names, t->n, sizeof *t->names, cmp_str);
    struct count *c = calloc(t->n ? t->n : 1, sizeof *c);
    size_t k = 0;
    for (size_t i = 0; c != NULL && i < t->n; i++) {
        if (k > 0 && strcmp(c[k - 1].name, t->names[i]) == 0) {
            c[k - 1].n++;
        } else {
            c[k].name = t->names[i];
            c[k++].n = 1;
        }
    }
    *out = c;
    return c ? k : 0;
}

#define NO_VALUE "(none)"

static int stats_add(struct dlq *d)
{
    const struct rec *r = &d->rec;
    const char *code = hval(r, H_CODE), *klass = hval(r, H_CLASS);
    const char *src = hval(r, H_TOPIC), *fa = hval(r, H_FAILED_AT);
    if (tally_add(&d->by_code, code && *code ? code : NO_VALUE) ||
        tally_add(&d->by_class, klass && *klass ? klass : NO_VALUE) ||
        tally_add(&d->by_source, src && *src ? src : NO_VALUE) ||
        tally_add(&d->by_thread,
                  r->have_thread ? r->thread_id.data : NO_VALUE)) {
        return -1;
    }
    /* failed_at is written as "2026-11-29T07:00:00.000Z": it sorts as
     * text. */
    if (fa != NULL && *fa != '\0' && strlen(fa) < sizeof d->first_failed) {
        if (d->first_failed[0] == '\0' || strcmp(fa, d->first_failed) < 0) {
            strcpy(d->first_failed, fa);
        }
        if (strcmp(fa, d->last_failed) > 0) {
            strcpy(d->last_failed, fa);
        }
    }
    return 0;
}

static int stats_map(ng_buf *b, struct tally *t)
{
    struct count *c;
    size_t n = tally_counts(t, &c);
    if (c == NULL) {
        return -1;
    }
    int rc = ng_json_raw(b, "{");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rc = (i && ng_json_raw(b, ", ")) || ng_json_cstr(b, c[i].name) ||
             ng_json_raw(b, ": ") || ng_json_u64(b, c[i].n);
    }
    free(c);
    return rc || ng_json_raw(b, "}");
}

static void stats_table_map(FILE *out, const char *title, struct tally *t,
                            size_t limit)
{
    struct count *c;
    size_t n = tally_counts(t, &c);
    if (c == NULL) {
        return;
    }
    if (limit) {
        qsort(c, n, sizeof *c, cmp_count);
        n = n < limit ? n : limit;
    }
    fprintf(out, "%s:\n", title);
    for (size_t i = 0; i < n; i++) {
        fprintf(out, "  %8" PRIu64 "  %.*s%s\n", c[i].n, cut(c[i].name, 72),
                c[i].name, strlen(c[i].name) > 72 ? "..." : "");
    }
    free(c);
}

static int stats_print(struct dlq *d)
{
    size_t top = (size_t)ng_config_int(d->cfg, "top");
    if (!d->json) {
        fprintf(d->out,
                "records: %" PRIu64 "\nfirst failed_at: %s\n"
                "last failed_at:  %s\n",
                d->matched, d->first_failed[0] ? d->first_failed : "-",
                d->last_failed[0] ? d->last_failed : "-");
        stats_table_map(d->out, "by code", &d->by_code, 0);
        stats_table_map(d->out, "by class", &d->by_class, 0);
        stats_table_map(d->out, "by source topic", &d->by_source, 0);
        stats_table_map(d->out, "top threads", &d->by_thread, top);
        return 0;
    }
    ng_buf *b = &d->line;
    ng_buf_clear(b);
    int rc = ng_json_raw(b, "{\"records\": ") || ng_json_u64(b, d->matched) ||
             ng_json_raw(b, ", \"by_code\": ") || stats_map(b, &d->by_code) ||
             ng_json_raw(b, ", \"by_class\": ") || stats_map(b, &d->by_class) ||
             ng_json_raw(b, ", \"by_source_topic\": ") ||
             stats_map(b, &d->by_source) ||
             ng_json_raw(b, ", \"top_threads\": [");
    struct count *c = NULL;
    size_t n = rc ? 0 : tally_counts(&d->by_thread, &c);
    if (c == NULL) {
        return -1;
    }
    qsort(c, n, sizeof *c, cmp_count);
    for (size_t i = 0; rc == 0 && i < n && i < top; i++) {
        rc = (i && ng_json_raw(b, ", ")) ||
             ng_json_raw(b, "{\"thread_id\": ") || ng_json_cstr(b, c[i].name) ||
             ng_json_raw(b, ", \"records\": ") || ng_json_u64(b, c[i].n) ||
             ng_json_raw(b, "}");
    }
    free(c);
    rc = rc || ng_json_raw(b, "], \"first_failed_at\": ") ||
         ng_json_cstr(b, d->first_failed[0] ? d->first_failed : NULL) ||
         ng_json_raw(b, ", \"last_failed_at\": ") ||
         ng_json_cstr(b, d->last_failed[0] ? d->last_failed : NULL) ||
         ng_json_raw(b, "}\n");
    if (rc != 0) {
        return -1;
    }
    fwrite(b->data, 1, b->len, d->out);
    return 0;
}

/* ------------------------------------------------------------------------
 * replay
 */
struct pending {
    uint64_t off_id;
    int32_t dlq_partition;
    int64_t dlq_offset;
};

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *rkm,
                        void *opaque)
{
    (void)rk;
    struct dlq *d = opaque;
    struct pending *p = rkm->_private;
    if (rkm->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        d->replayed++;
        offsets_done(d->track, p->off_id);
    } else {
        d->failed++;
        uint64_t suppressed;
        if (ng_ratelimit_allow(&d->fail_log, ng_now_ms(), &suppressed)) {
            char part[16], off[24];
            snprintf(part, sizeof part, "%d", (int)p->dlq_partition);
            snprintf(off, sizeof off, "%lld", (long long)p->dlq_offset);
            ng_log(NG_LOG_ERROR, "replay not delivered", "topic",
                   rd_kafka_topic_name(rkm->rkt), "dlq_partition#", part,
                   "dlq_offset#", off, "error", rd_kafka_err2str(rkm->err),
                   NULL);
        }
    }
    free(p);
}

static void store_ready(void *ctx, const char *topic, int32_t partition,
                        int64_t next)
{
    (void)topic;
    reader_store(ctx, partition, next);
}

static int commit_done(struct dlq *d, ng_error *err)
{
    if (!d->group || d->dry_run) {
        return 0;
    }
    offsets_collect(d->track, store_ready, d->rd);
    return reader_commit(d->rd, err);
}

/* The partition count of topic (asked once per name), or 0 when it does
 * not exist. */
static int target_partitions(struct dlq *d, const char *topic)
{
    for (size_t i = 0; i < d->nknown; i++) {
        if (strcmp(d->known[i].name, topic) == 0) {
            return d->known[i].partitions;
        }
    }
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(d->producer, topic, NULL);
    if (rkt == NULL) {
        return 0;
    }
    const struct rd_kafka_metadata *md = NULL;
    int timeout = (int)ng_config_int(d->cfg, "timeout-ms");
    rd_kafka_resp_err_t e = rd_kafka_metadata(d->producer, 0, rkt, &md,
                                              timeout > 0 ? timeout : 10000);
    rd_kafka_topic_destroy(rkt);
    int n = 0;
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
        e = md->topic_cnt == 1 ? md->topics[0].err
                               : RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
        n = e == 0 ? md->topics[0].partition_cnt : 0;
        rd_kafka_metadata_destroy(md);
    }
    if (n == 0) {
        ng_log(
            NG_LOG_ERROR, "cannot send to the replay's target topic", "topic",
            topic, "error",
            rd_kafka_err2str(e ? e : RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART),
            NULL);
    }
    struct target *k = realloc(d->known, (d->nknown + 1) * sizeof *k);
    if (k != NULL) {
        d->known = k;
        if ((k[d->nknown].name = strdup(topic)) != NULL) {
            k[d->nknown++].partitions = n;
        }
    }
    return n;
}

/* The headers to send: the record's own minus what dead-lettering and
 * earlier replays added, plus this replay's count and origin. */
static rd_kafka_headers_t *replay_headers(const struct rec *r)
{
    rd_kafka_headers_t *in = NULL;
    rd_kafka_message_headers(r->rkm, &in);
    rd_kafka_headers_t *h =
        rd_kafka_headers_new(in ? rd_kafka_header_cnt(in) + 2 : 2);
    const char *name;
    const void *v;
    size_t n;
    for (size_t i = 0; in && rd_kafka_header_get_all(in, i, &name, &v, &n) == 0;
         i++) {
        /* A producer's own header of a reserved name comes back under its
         * name, unless it is one of those a replay leaves out. */
        const char *orig = dlq_header_original_name(name);
        if (!dlq_header_is_added(name) && !dlq_header_is_added(orig)) {
            rd_kafka_header_add(h, orig, -1, v, (ssize_t)n);
        }
    }
    char count[24], from[320];
    snprintf(count, sizeof count, "%lld", (long long)r->replays + 1);
    snprintf(from, sizeof from, "%s/%d/%lld", rd_kafka_topic_name(r->rkm->rkt),
             (int)r->rkm->partition, (long long)r->rkm->offset);
    rd_kafka_header_add(h, "nanguard.replay.count", -1, count, -1);
    rd_kafka_header_add(h, "nanguard.replay.from", -1, from, -1);
    return h;
}

static int print_dry_run(struct dlq *d, const char *topic,
                         rd_kafka_headers_t *h)
{
    const rd_kafka_message_t *m = d->rec.rkm;
    ng_buf *b = &d->line;
    ng_buf_clear(b);
    int rc = ng_json_raw(b, "{\"would_send\": {\"topic\": ") ||
             ng_json_cstr(b, topic) || ng_json_raw(b, ", \"key\": ") ||
             (m->key ? ng_json_string(b, m->key, m->key_len)
                     : ng_json_raw(b, "null")) ||
             ng_json_raw(b, ", \"value_bytes\": ") ||
             ng_json_u64(b, m->payload ? m->len : 0) ||
             ng_json_raw(b, ", \"headers\": [");
    const char *name;
    const void *v;
    size_t n;
    for (size_t i = 0;
         rc == 0 && rd_kafka_header_get_all(h, i, &name, &v, &n) == 0; i++) {
        rc = (i && ng_json_raw(b, ", ")) || ng_json_raw(b, "[") ||
             ng_json_cstr(b, name) || ng_json_raw(b, ", ") ||
             (v ? ng_json_string(b, v, n) : ng_json_raw(b, "null")) ||
             ng_json_raw(b, "]");
    }
    rc = rc || ng_json_raw(b, "]}, \"dlq\": {\"topic\": ") ||
         ng_json_cstr(b, rd_kafka_topic_name(m->rkt)) ||
         ng_json_raw(b, ", \"partition\": ") ||
         ng_json_u64(b, (uint64_t)m->partition) ||
         ng_json_raw(b, ", \"offset\": ") ||
         ng_json_u64(b, (uint64_t)m->offset) || ng_json_raw(b, "}}\n");
    if (rc == 0) {
        fwrite(b->data, 1, b->len, d->out);
    }
    return rc ? -1 : 0;
}

/* Waits for the next send slot under --rate, serving delivery reports. */
static void pace(struct dlq *d, uint64_t start_ms, volatile sig_atomic_t *stop)
{
    if (d->rate <= 0) {
        rd_kafka_poll(d->producer, 0);
        return;
    }
    uint64_t due = start_ms + d->sent * 1000 / (uint64_t)d->rate;
    for (;;) {
        uint64_t now = ng_now_ms();
        if (now >= due || *stop) {
            break;
        }
        rd_kafka_poll(d->producer, (int)(due - now < 100 ? due - now : 100));
    }
}

/* Sends the current record (or says why not). id: its tracking handle. */
static int replay_one(struct dlq *d, uint64_t id, uint64_t start_ms,
                      volatile sig_atomic_t *stop)
{
    const struct rec *r = &d->rec;
    if (r->replays >= d->max_replays) {
        d->skipped++;
        offsets_done(d->track, id);
        return 0;
    }
    const char *source = hval(r, H_TOPIC);
    const char *topic = d->to ? d->to : source;
    if (topic == NULL || *topic == '\0') {
        d->failed++;
        char off[24];
        snprintf(off, sizeof off, "%lld", (long long)r->rkm->offset);
        ng_log(NG_LOG_ERROR, "no __connect.errors.topic header: give --to",
               "dlq_offset#", off, NULL);
        return 0;
    }
    rd_kafka_headers_t *h = replay_headers(r);
    if (h == NULL) {
        return -1;
    }
    if (d->dry_run) {
        d->replayed++;
        int rc = print_dry_run(d, topic, h);
        rd_kafka_headers_destroy(h);
        offsets_done(d->track, id);
        return rc;
    }
    int nparts = target_partitions(d, topic);
    if (nparts == 0) {
        d->failed++;
        rd_kafka_headers_destroy(h);
        return 0;
    }
    /* Back to the partition it came from, when it goes back to its own
     * topic: a thread's checkpoints stay on one partition whatever
     * partitioner the application's producer used. */
    int64_t sp = hint(r, H_PARTITION);
    int32_t partition =
        source && strcmp(topic, source) == 0 && sp >= 0 && sp < nparts
            ? (int32_t)sp
            : RD_KAFKA_PARTITION_UA;
    pace(d, start_ms, stop);
    struct pending *p = malloc(sizeof *p);
    if (p == NULL) {
        rd_kafka_headers_destroy(h);
        return -1;
    }
    *p = (struct pending){id, r->rkm->partition, r->rkm->offset};
    for (;;) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            d->producer, RD_KAFKA_V_TOPIC(topic),
            RD_KAFKA_V_PARTITION(partition),
            RD_KAFKA_V_KEY(r->rkm->key, r->rkm->key_len),
            RD_KAFKA_V_VALUE(r->rkm->payload, r->rkm->len),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h),
            RD_KAFKA_V_OPAQUE(p), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
            d->sent++;
            return 0;
        }
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            d->failed++;
            ng_log(NG_LOG_ERROR, "cannot produce", "topic", topic, "error",
                   rd_kafka_err2str(e), NULL);
            rd_kafka_headers_destroy(h);
            free(p);
            return 0;
        }
        rd_kafka_poll(d->producer, 100);
    }
}

static int open_producer(struct dlq *d, ng_error *err)
{
    static const char *const props[][2] = {
        {"acks", "all"},
        {"linger.ms", "5"},
    };
    rd_kafka_conf_t *conf = kafka_conf_new(d->cfg, props, 2, err);
    if (conf == NULL) {
        return -1;
    }
    char errstr[512];
    /* The delivery guarantee: not overridable by -X. */
    if (rd_kafka_conf_set(conf, "enable.idempotence", "true", errstr,
                          sizeof errstr) != RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        return ng_error_set(err, NG_ERR_CONFIG, "kafka_config", "%s", errstr);
    }
    rd_kafka_conf_set_opaque(conf, d);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    d->producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (d->producer == NULL) {
        rd_kafka_conf_destroy(conf);
        return ng_error_set(err, NG_ERR_CONFIG, "kafka_config",
                            "cannot create the producer: %s", errstr);
    }
    return 0;
}

static void progress(struct dlq *d, uint64_t read, int64_t total, bool last)
{
    fprintf(stderr,
            "\rreplay: read %" PRIu64 "/%" PRId64 ", matched %" PRIu64
            ", replayed %" PRIu64 ", skipped %" PRIu64 ", failed %" PRIu64 "%s",
            read, total, d->matched, d->replayed, d->skipped, d->failed,
            last ? "\n" : "   ");
    fflush(stderr);
}

static int replay_summary(struct dlq *d)
{
    ng_buf *b = &d->line;
    ng_buf_clear(b);
    int rc =
        ng_json_raw(b, "{\"matched\": ") || ng_json_u64(b, d->matched) ||
        ng_json_raw(b, ", \"replayed\": ") || ng_json_u64(b, d->replayed) ||
        ng_json_raw(b, ", \"skipped_max_replays\": ") ||
        ng_json_u64(b, d->skipped) || ng_json_raw(b, ", \"failed\": ") ||
        ng_json_u64(b, d->failed) || ng_json_raw(b, ", \"dry_run\": ") ||
        ng_json_raw(b, d->dry_run ? "true" : "false") || ng_json_raw(b, "}\n");
    if (rc == 0) {
        fwrite(b->data, 1, b->len, d->out);
    }
    return rc ? -1 : 0;
}

/* ------------------------------------------------------------------------
 * The run
 */
static dlq_result setup(struct dlq *d, dlq_command cmd, const ng_config *cfg,
                        FILE *out, ng_error *err)
{
    d->cmd = cmd;
    d->cfg = cfg;
    d->out = out;
    d->since = d->until = -1;
    const char *brokers = ng_config_get(cfg, "brokers");
    const char *topic = ng_config_get(cfg, "topic");
    if (brokers == NULL || *brokers == '\0' || topic == NULL ||
        *topic == '\0') {
        ng_error_set(err, NG_ERR_CONFIG, "usage",
                     "--brokers and --topic are "
                     "required");
        return DLQ_USAGE;
    }
    int64_t now = (int64_t)time(NULL) * 1000;
    const char *since = ng_config_get(cfg, "since");
    const char *until = ng_config_get(cfg, "until");
    if (since && dlq_parse_time(since, now, &d->since) != 0) {
        ng_error_set(err, NG_ERR_CONFIG, "usage",
                     "--since wants RFC 3339 (2026-12-03T13:00:00Z) or a "
                     "duration (90m, 24h, 7d), not '%s'",
                     since);
        return DLQ_USAGE;
    }
    if (until && dlq_parse_time(until, now, &d->until) != 0) {
        ng_error_set(err, NG_ERR_CONFIG, "usage",
                     "--until wants RFC 3339 (2026-12-03T13:00:00Z) or a "
                     "duration (90m, 24h, 7d), not '%s'",
                     until);
        return DLQ_USAGE;
    }
    if (until && ng_config_flag(cfg, "follow")) {
        ng_error_set(err, NG_ERR_CONFIG, "usage",
                     "--until and --follow do not go together");
        return DLQ_USAGE;
    }
    const char *format =
        cmd == DLQ_REPLAY ? "json" : ng_config_get(cfg, "format");
    if (format == NULL) {
        format = isatty(fileno(out)) ? "table" : "json";
    }
    if (strcmp(format, "json") != 0 && strcmp(format, "table") != 0) {
        ng_error_set(err, NG_ERR_CONFIG, "usage",
                     "--format wants json or table, not '%s'", format);
        return DLQ_USAGE;
    }
    d->json = strcmp(format, "json") == 0;
    d->code = ng_config_get(cfg, "code");
    d->klass = ng_config_get(cfg, "class");
    d->thread = ng_config_get(cfg, "thread-id");
    d->source_topic = ng_config_get(cfg, "source-topic");
    d->values = cmd == DLQ_INSPECT && ng_config_flag(cfg, "values");
    d->explain = cmd == DLQ_INSPECT && ng_config_flag(cfg, "explain");
    long long mmb = ng_config_int(cfg, "max-message-bytes");
    d->max_message_bytes = mmb > 0 ? (size_t)mmb : 33554432;
    long long depth = ng_config_int(cfg, "max-depth");
    sanitize_options so = {.max_depth = depth > 0 ? (size_t)depth : 0};
    d->san = sanitize_new(&so);
    d->env_reader = envelope_reader_new(so.max_depth);
    d->track = offsets_new();
    if (d->san == NULL || d->env_reader == NULL || d->track == NULL) {
        ng_error_set(err, NG_ERR_TRANSIENT, "oom", "out of memory");
        return DLQ_INTERNAL;
    }
    if (cmd == DLQ_REPLAY) {
        d->to = ng_config_get(cfg, "to");
        d->max_replays = ng_config_int(cfg, "max-replays");
        d->dry_run = ng_config_flag(cfg, "dry-run");
        d->rate = ng_config_int(cfg, "rate");
        const char *g = ng_config_get(cfg, "group");
        d->group = g != NULL && *g != '\0';
        ng_ratelimit_init(&d->fail_log, "replay not delivered", 20, 10000);
        if (!d->dry_run && open_producer(d, err) != 0) {
            return DLQ_USAGE;
        }
    }
    rd_kafka_conf_t *conf = kafka_conf_new(cfg, NULL, 0, err);
    if (conf == NULL) {
        return DLQ_USAGE;
    }
    const char *group =
        cmd == DLQ_REPLAY && d->group ? ng_config_get(cfg, "group") : NULL;
    reader_options ro = {.since_ms = d->since,
                         .until_ms = d->until,
                         .follow = ng_config_flag(cfg, "follow"),
                         .group = group,
                         .timeout_ms = (int)ng_config_int(cfg, "timeout-ms")};
    d->rd = reader_new(conf, topic, &ro, err);
    if (d->rd == NULL) {
        return strcmp(err->code, "kafka_config") == 0 ? DLQ_USAGE
                                                      : DLQ_UNAVAILABLE;
    }
    return DLQ_OK;
}

static void teardown(struct dlq *d)
{
    reader_free(d->rd);
    if (d->producer != NULL) {
        rd_kafka_destroy(d->producer);
    }
    sanitize_free(d->san);
    envelope_reader_free(d->env_reader);
    offsets_free(d->track);
    for (int i = 0; i < H_COUNT; i++) {
        ng_buf_free(&d->rec.h[i]);
    }
    ng_buf_free(&d->rec.key);
    ng_buf_free(&d->rec.thread_id);
    ng_buf_free(&d->rec.checkpoint_id);
    ng_buf_free(&d->line);
    tally_free(&d->by_code);
    tally_free(&d->by_class);
    tally_free(&d->by_source);
    tally_free(&d->by_thread);
    for (size_t i = 0; i < d->nknown; i++) {
        free(d->known[i].name);
    }
    free(d->known);
}

/* One record read from the topic. */
static int handle(struct dlq *d, const rd_kafka_message_t *m, uint64_t start_ms,
                  volatile sig_atomic_t *stop)
{
    uint64_t id = 0;
    if (d->cmd == DLQ_REPLAY &&
        offsets_begin(d->track, rd_kafka_topic_name(m->rkt), m->partition,
                      m->offset, &id) != 0) {
        return -1;
    }
    if (read_rec(d, m) != 0) {
        return -1;
    }
    if (!matches(d, &d->rec)) {
        if (d->cmd == DLQ_REPLAY) {
            offsets_done(d->track, id);
        }
        return 0;
    }
    d->matched++;
    switch (d->cmd) {
    case DLQ_INSPECT:
        if (d->json) {
            if (inspect_json(d) != 0) {
                return -1;
            }
            fwrite(d->line.data, 1, d->line.len, d->out);
            return 0;
        }
        return inspect_table(d);
    case DLQ_STATS:
        return stats_add(d);
    case DLQ_REPLAY:
        return replay_one(d, id, start_ms, stop);
    }
    return 0;
}

dlq_result dlq_run(dlq_command cmd, const ng_config *cfg, FILE *out,
                   volatile sig_atomic_t *stop, ng_error *err)
{
    struct dlq d = {0};
    dlq_result res = setup(&d, cmd, cfg, out, err);
    if (res != DLQ_OK) {
        teardown(&d);
        return res;
    }
    bool tty = cmd == DLQ_REPLAY && isatty(STDERR_FILENO);
    if (cmd == DLQ_INSPECT && !d.json) {
        table_header(&d);
    }
    uint64_t start = ng_now_ms(), last_commit = start, last_progress = start;
    uint64_t read = 0;
    int64_t total = reader_total(d.rd);
    while (!*stop) {
        rd_kafka_message_t *m;
        reader_status st = reader_next(d.rd, 100, &m, err);
        if (st == READER_END) {
            break;
        }
        if (st == READER_ERROR) {
            res = DLQ_UNAVAILABLE;
            break;
        }
        if (st == READER_MESSAGE) {
            read++;
            int rc = handle(&d, m, start, stop);
            rd_kafka_message_destroy(m);
            if (rc != 0) {
                ng_error_set(err, NG_ERR_TRANSIENT, "oom", "out of memory");
                res = DLQ_INTERNAL;
                break;
            }
            if (cmd == DLQ_INSPECT && ng_config_flag(cfg, "follow")) {
                fflush(out);
            }
        }
        uint64_t now = ng_now_ms();
        if (d.producer != NULL) {
            rd_kafka_poll(d.producer, 0);
            if (now - last_commit >= 500) {
                ng_error cerr = {0};
                if (commit_done(&d, &cerr) != 0) {
                    ng_log(NG_LOG_WARN, "commit failed", "error", cerr.message,
                           NULL);
                }
                last_commit = now;
            }
        }
        if (tty && now - last_progress >= 1000) {
            progress(&d, read, total, false);
            last_progress = now;
        }
    }
    if (d.producer != NULL) {
        /* Every send acknowledged (or failed) before the end. */
        while (rd_kafka_outq_len(d.producer) > 0) {
            rd_kafka_flush(d.producer, 1000);
            if (tty) {
                progress(&d, read, total, false);
            }
        }
        ng_error cerr = {0};
        if (commit_done(&d, &cerr) != 0 && res == DLQ_OK) {
            *err = cerr;
            res = DLQ_SOME_FAILED;
        }
    }
    if (tty) {
        progress(&d, read, total, true);
    }
    if (res == DLQ_OK || res == DLQ_SOME_FAILED) {
        if (cmd == DLQ_STATS && stats_print(&d) != 0) {
            res = DLQ_INTERNAL;
        }
        if (cmd == DLQ_REPLAY) {
            if (replay_summary(&d) != 0) {
                res = DLQ_INTERNAL;
            } else if (d.failed > 0 && res == DLQ_OK) {
                ng_error_set(err, NG_ERR_PERMANENT, "replay_failed",
                             "%" PRIu64 " of %" PRIu64 " sends failed",
                             d.failed, d.matched - d.skipped);
                res = DLQ_SOME_FAILED;
            }
        }
    } else if (cmd == DLQ_REPLAY && res == DLQ_UNAVAILABLE) {
        replay_summary(&d);
    }
    if (fflush(out) != 0 && res == DLQ_OK) {
        ng_error_set(err, NG_ERR_TRANSIENT, "io", "cannot write the output");
        res = DLQ_INTERNAL;
    }
    teardown(&d);
    return res;
}
