/* events.h - the notification events the user's application expects, as
 * JSON (see DESIGN.md "Outcomes"). Pure: builds text, sends nothing. */
#ifndef NANGUARD_EVENTS_H
#define NANGUARD_EVENTS_H

#include "common/buf.h"

#include <stdint.h>

/* Where a Kafka record is. */
typedef struct {
    const char *topic;
    int32_t partition;
    int64_t offset;
} event_position;

/* The sentences a user reads in the banner (DESIGN.md "Outcomes"): the
 * defaults of the worker's --flush-error-message and --critical-message. */
#define EVENT_FLUSH_ERROR_MESSAGE                                              \
    "Failed to save execution logs to database. The workflow completed but "   \
    "logs may be incomplete. Please contact support if you need detailed "     \
    "execution history."
#define EVENT_CRITICAL_MESSAGE                                                 \
    "Failed to save execution data. Please contact support immediately. "      \
    "This workflow's logs may be lost."
/* error_details holds at most this many characters (not bytes). */
#define EVENT_DETAILS_MAX 500

/* checkpoint_flush_error: a message went to the dead-letter topic.
 * thread_id, checkpoint_id may be NULL (written as null) when the message
 * could not be read. message is the user's sentence, details the technical
 * reason (cut to EVENT_DETAILS_MAX characters; NULL: empty). */
typedef struct {
    const char *thread_id;
    const char *checkpoint_id;
    const char *checkpoint_ns;
    const char *message;
    const char *details;
    const char *error_code;
    event_position dlq;
    event_position source;
} event_flush_error;

/* Appends the events as one JSON object each (no newline). The timestamp
 * is now, UTC, with milliseconds. Return 0, or -1 when out of memory. */
int event_flush_error_json(ng_buf *out, const event_flush_error *ev);
/* checkpoint_flush_critical_error; message is the user's sentence, details
 * the technical reason, cut to EVENT_DETAILS_MAX characters. */
int event_critical_json(ng_buf *out, const char *thread_id, const char *message,
                        const char *details);
/* checkpoint_sanitized (optional): rewrites_json is the counts object,
 * paths_json a JSON array. */
int event_sanitized_json(ng_buf *out, const char *thread_id,
                         const char *checkpoint_id, const char *rewrites_json,
                         const char *paths_json, event_position source);

/* checkpoint_incomplete (severity warning): a checkpoint was stored
 * although its channel_versions names a channel the envelope did not
 * hold; details says which. */
int event_incomplete_json(ng_buf *out, const char *thread_id,
                          const char *checkpoint_id, const char *checkpoint_ns,
                          const char *details, event_position source);

#endif
