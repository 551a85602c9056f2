/* envelope.h - the checkpoint envelope of a Kafka message, read from what
 * the sanitizer captured in its single pass (no second parse).
 *
 * Every pointer borrows from the sanitizer handle (its output buffer and
 * captured strings) and stays valid until the handle is fed or reset. */
#ifndef NANGUARD_ENVELOPE_H
#define NANGUARD_ENVELOPE_H

#include "filter/sanitize/sanitize.h"

#include <stddef.h>
#include <stdint.h>

/* A channel value LangGraph keeps out of line (a checkpoint_blobs row). */
typedef struct {
    const char *channel;
    const char *version;
    const char *type; /* the serializer's: "msgpack", "json", "empty", ... */
    const char *blob; /* the bytes (base64 decoded; a "json" blob repaired
                         like the checkpoint); NULL for JSON null, LangGraph's
                         "empty" */
    size_t blob_len;
} envelope_blob;

/* A task's pending write (a checkpoint_writes row). */
typedef struct {
    const char *task_id;
    const char *task_path; /* "" when absent */
    int32_t idx;
    const char *channel;
    const char *type; /* NULL when absent or null */
    const char *blob; /* never NULL */
    size_t blob_len;
} envelope_write;

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
    /* Filled by envelope_reader_read (envelope_read leaves them empty). */
    const envelope_blob *blobs;
    size_t nblobs;
    const envelope_write *writes;
    size_t nwrites;
    int has_step; /* metadata has a top-level "step" (LangGraph resumes
                     a thread from it) */
    /* The first channel of checkpoint.channel_versions that is neither in
     * channel_values nor among the blobs (the checkpoint would read back
     * without it), or NULL when there is none. */
    const char *missing_channel;
} envelope;

/* Fills env from handle h, which must have finished a single value without
 * error, with its output in its own buffer (no writer). Returns 0, or -1
 * with a reason in why (e.g. "missing required field 'thread_id'") when the
 * value is not a valid envelope. */
int envelope_read(const sanitize *h, envelope *env, char *why, size_t why_len);

/* Reads everything an envelope holds, blobs and writes too, and checks
 * it: envelope_read, then the optional arrays `blobs`
 * ([{"channel", "version", "type", "blob"}], blob base64 or null) and
 * `writes` ([{"task_id", "task_path", "idx", "channel", "type", "blob"}]),
 * metadata's "step", and whether channel_versions names a channel the
 * envelope does not hold. A blob of type "json" is JSON text: it is
 * repaired as the checkpoint is (its repairs are counted in
 * envelope_reader_count) and refused when it is not JSON.
 *
 * The reader owns the decoded blobs and writes; they stay valid until its
 * next read (the rest borrows from h, as with envelope_read). Buffers are
 * kept for reuse. */
typedef struct envelope_reader envelope_reader;

/* max_depth limits the nesting of json blobs (0: the default). Returns
 * NULL when out of memory. */
envelope_reader *envelope_reader_new(size_t max_depth);
void envelope_reader_free(envelope_reader *r); /* NULL is allowed */

/* Returns 0, or -1 with why filled when the value is not a valid
 * envelope (or, why = "out of memory", when memory ran out). */
int envelope_reader_read(envelope_reader *r, const sanitize *h, envelope *env,
                         char *why, size_t why_len);

/* Repairs of one kind in the json blobs of the last read. */
uint64_t envelope_reader_count(const envelope_reader *r, sanitize_kind kind);

#endif
