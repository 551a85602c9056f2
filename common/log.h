/* log.h - one JSON object per line on stderr:
 *   {"ts":"2026-11-29T07:00:00.000Z","level":"warn","msg":"...", fields...}
 * Never log payloads or passwords. */
#ifndef NANGUARD_LOG_H
#define NANGUARD_LOG_H

typedef enum {
    NG_LOG_DEBUG,
    NG_LOG_INFO,
    NG_LOG_WARN,
    NG_LOG_ERROR
} ng_log_level;

/* Lowest level written (default info; NANGUARD_LOG_LEVEL may set it). */
void ng_log_set_level(ng_log_level level);
/* Parses "debug", "info", "warn", "error"; returns -1 when unknown. */
int ng_log_parse_level(const char *s, ng_log_level *out);

/* Longest text of a field (msg included) that is written whole: a longer
 * one is cut there, and "<key>_bytes" gives its full length. */
#define NG_LOG_MAX_FIELD 1024

/* Writes msg with extra fields given as key/value string pairs ending with
 * NULL: ng_log(NG_LOG_WARN, "retrying", "sqlstate", "08006", NULL).
 * A key ending in '#' writes its value unquoted (a number): "offset#". */
void ng_log(ng_log_level level, const char *msg, ...);

/* The current UTC time as "2026-11-29T07:00:00.000Z" (24 chars + NUL). */
void ng_log_timestamp(char out[32]);

#endif
