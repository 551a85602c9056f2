/* dlq.h - the failure desk: the dead-letter topic read without a group
 * (inspect, stats) and its records sent back to their source topic
 * (replay).
 *
 * All three read the topic from its first record (or --since) to the end
 * offsets found at start (filter/kafka/reader.h), or follow it, and keep
 * the records that pass every filter (--code, --class, --thread-id,
 * --source-topic, --since, --until). */
#ifndef NANGUARD_DLQ_H
#define NANGUARD_DLQ_H

#include "common/config.h"
#include "common/error.h"

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum { DLQ_INSPECT, DLQ_STATS, DLQ_REPLAY } dlq_command;

/* What a run came to; the command line maps it to an exit status. */
typedef enum {
    DLQ_OK = 0,      /* done */
    DLQ_USAGE,       /* bad settings: err says which */
    DLQ_UNAVAILABLE, /* broker unreachable or topic missing: err */
    DLQ_SOME_FAILED, /* replay: some sends failed (or the last commit) */
    DLQ_INTERNAL     /* out of memory, I/O error on the output */
} dlq_result;

/* Every setting of the three commands; dlq_settings_for picks one's. */
extern const ng_option dlq_settings[];
extern const size_t dlq_settings_count;

/* Fills out (room for dlq_settings_count entries) with the settings of
 * cmd; returns how many. */
size_t dlq_settings_for(dlq_command cmd, ng_option *out);

/* Runs cmd with the parsed settings: records (inspect), the totals
 * (stats) or the replay's summary (replay) go to out, progress (replay, on
 * a terminal) and logs to stderr. Stops early when *stop is set (SIGINT,
 * SIGTERM): a replay then still waits for its sends and commits. */
dlq_result dlq_run(dlq_command cmd, const ng_config *cfg, FILE *out,
                   volatile sig_atomic_t *stop, ng_error *err);

/* --since / --until: RFC 3339 ("2026-12-03T13:00:00Z", fractions and
 * "+01:00" offsets allowed) or a duration before now_ms ("90s", "90m",
 * "24h", "7d"). Returns 0 with *ms (milliseconds since the epoch), or -1. */
int dlq_parse_time(const char *s, int64_t now_ms, int64_t *ms);

/* --code: an exact code, or a prefix when the pattern ends with '*'. */
int dlq_code_matches(const char *pattern, const char *code);

/* Whether a header of a dead-letter record is one the dead-lettering added
 * (__connect.errors.*, nanguard.error.*, nanguard.worker,
 * nanguard.attempts, nanguard.failed_at) or an earlier replay's
 * (nanguard.replay.*): a replay leaves these out of the record it sends. */
int dlq_header_is_added(const char *name);

/* The name a header had when the worker dead-lettered its message: the
 * worker renames incoming headers with reserved names to
 * nanguard.original.<name> (sink/outcome.c), a replay gives them their
 * name back. Other names are returned as they are. */
const char *dlq_header_original_name(const char *name);

#endif
