/* envelope.h - the checkpoint envelope of a Kafka message, read from what
 * the sanitizer captured in its single pass (no second parse).
 *
 * Every pointer borrows from the sanitizer handle (its output buffer and
 * captured strings) and stays valid until the handle is fed or reset. */
#ifndef NANGUARD_ENVELOPE_H
#define NANGUARD_ENVELOPE_H

#include "filter/sanitize/sanitize.h"

#include <stddef.h>

typedef struct {
    const char *thread_id;
    const char *checkpoint_ns; /* "" when absent */
    const char *checkpoint_id;
    const char *parent_checkpoint_id; /* NULL when absent or null */
    const char *type;                 /* "checkpoint" when absent */
    const char *checkpoint;           /* the repaired JSON object's text */
    size_t checkpoint_len;
    const char *metadata; /* "{}" when absent */
    size_t metadata_len;
} envelope;

/* Fills env from handle h, which must have finished a single value without
 * error, with its output in its own buffer (no writer). Returns 0, or -1
 * with a reason in why (e.g. "missing required field 'thread_id'") when the
 * value is not a valid envelope. */
int envelope_read(const sanitize *h, envelope *env, char *why, size_t why_len);

#endif
