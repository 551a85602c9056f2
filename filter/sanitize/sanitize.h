/* sanitize.h - streaming repair of JSON for PostgreSQL jsonb.
 *
 * A sanitizer handle reads JSON text in chunks of any size and writes the
 * same text, byte for byte, except for the values PostgreSQL refuses:
 *
 *   NaN, +NaN, -NaN (bare)            -> null      SANITIZE_NAN
 *   Infinity, +Infinity, -Infinity    -> null      SANITIZE_INFINITY
 *   numbers a double or PostgreSQL's
 *   numeric cannot hold (1e400, ...)  -> null      SANITIZE_OUT_OF_RANGE
 *   \u0000 in a string                -> \ufffd    SANITIZE_NUL_ESCAPE
 *   lone surrogate escapes            -> \ufffd    SANITIZE_LONE_SURROGATE
 *   invalid UTF-8 in a string         -> EF BF BD  SANITIZE_INVALID_UTF8
 *                                        (one per maximal invalid subpart)
 *
 * Everything else that is not JSON is refused with a reason and the byte
 * offset in the input where the fault starts, the same however the input
 * is cut into chunks. No tree is built: memory grows with nesting depth
 * (and with the longest single token cut by a chunk boundary), never with
 * the size of a value. A scanner handles what yajl cannot lex and keeps
 * the structure; yajl then checks the grammar of the repaired text.
 *
 * Ownership: the handle owns every buffer it hands out (output, error
 * message, report paths, envelope strings); they stay valid until the next
 * sanitize_feed, sanitize_finish or sanitize_reset on the handle. Input
 * buffers are borrowed for the duration of the call only.
 *
 * One handle per thread; it is reused for every message (sanitize_reset) and
 * allocates nothing per message once its buffers have grown to the largest
 * message seen.
 */
#ifndef NANGUARD_SANITIZE_H
#define NANGUARD_SANITIZE_H

#include <stddef.h>
#include <stdint.h>

typedef struct sanitize sanitize;

/* What a repair was. The order is the order of the report. */
typedef enum {
    SANITIZE_NAN = 0,
    SANITIZE_INFINITY,
    SANITIZE_OUT_OF_RANGE,
    SANITIZE_NUL_ESCAPE,
    SANITIZE_LONE_SURROGATE,
    SANITIZE_INVALID_UTF8,
    SANITIZE_KIND_COUNT
} sanitize_kind;

/* Status of a call. 0 is success. */
typedef enum {
    SANITIZE_OK = 0,
    SANITIZE_EMALFORMED, /* not JSON: see the error's offset and message */
    SANITIZE_ETOO_DEEP,  /* nesting deeper than max_depth */
    SANITIZE_EWRITE,     /* the writer callback failed */
    SANITIZE_ENOMEM
} sanitize_status;

typedef struct {
    sanitize_status code;
    uint64_t offset; /* byte offset in the input (0 based) */
    char message[160];
} sanitize_error;

/* Receives the repaired text. Returns 0 on success; anything else stops the
 * handle with SANITIZE_EWRITE. */
typedef int (*sanitize_write_fn)(void *ctx, const char *buf, size_t len);

typedef struct {
    size_t max_depth;    /* 0 = SANITIZE_DEFAULT_MAX_DEPTH */
    int multiple_values; /* accept a stream of values (as jq does) */
    size_t max_paths;    /* paths kept in the report; 0 = default (100) */
    /* No report paths: no path work at all (sanitize_path_count is 0).
     * Counts are kept either way. */
    int no_paths;
    /* Every byte to yajl. By default yajl gets a skeleton: what the
     * scanner has proven valid (a long string's body, a run of plain
     * array numbers) reaches it as a placeholder. Output, accept or reject,
     * error offsets and reasons are the same either way (the tests compare
     * them); the full feed is the slower reference. */
    int full_feed;
} sanitize_options;

#define SANITIZE_DEFAULT_MAX_DEPTH 1000
/* The deepest nesting a caller should allow: PostgreSQL 15's jsonb, with
 * its default max_stack_depth (2MB), refuses values nested deeper than
 * about 13,090 objects or 14,544 arrays ("stack depth limit exceeded",
 * measured; tests/pg checks this limit is stored). */
#define SANITIZE_MAX_DEPTH_LIMIT 13000
#define SANITIZE_DEFAULT_MAX_PATHS 100

/* The top-level members of an envelope that the handle captures when the
 * input is a JSON object, so that the caller need not parse it again. */
typedef enum {
    SANITIZE_FIELD_THREAD_ID = 0,
    SANITIZE_FIELD_CHECKPOINT_NS,
    SANITIZE_FIELD_CHECKPOINT_ID,
    SANITIZE_FIELD_PARENT_CHECKPOINT_ID,
    SANITIZE_FIELD_TYPE,
    SANITIZE_FIELD_CHECKPOINT,
    SANITIZE_FIELD_METADATA,
    SANITIZE_FIELD_BLOBS,
    SANITIZE_FIELD_WRITES,
    SANITIZE_FIELD_COUNT
} sanitize_field_id;

typedef enum {
    SANITIZE_ABSENT = 0,
    SANITIZE_TYPE_NULL,
    SANITIZE_TYPE_BOOL,
    SANITIZE_TYPE_NUMBER,
    SANITIZE_TYPE_STRING,
    SANITIZE_TYPE_OBJECT,
    SANITIZE_TYPE_ARRAY
} sanitize_type;

typedef struct {
    sanitize_type type;
    const char *str; /* TYPE_STRING: the decoded, repaired value, NUL
                        terminated (repairs leave no NUL inside it) */
    size_t str_len;
    uint64_t span_off; /* OBJECT/ARRAY: where the value starts in the output */
    uint64_t span_len; /* and its length in bytes */
} sanitize_field;

/* Allocates a handle. opts may be NULL for the defaults. Output goes to the
 * handle's own buffer (sanitize_output) unless a writer is set.
 * Returns NULL when out of memory. */
sanitize *sanitize_new(const sanitize_options *opts);

/* Frees the handle and everything it owns. NULL is allowed. */
void sanitize_free(sanitize *h);

/* Sends the repaired text to write(ctx, ...) instead of the handle's own
 * buffer. Pass NULL to go back to the buffer. */
void sanitize_set_writer(sanitize *h, sanitize_write_fn write, void *ctx);

/* Forgets the current input, counts, paths and fields: ready for the next
 * message. Buffers are kept for reuse. */
void sanitize_reset(sanitize *h);

/* Reads the next chunk of input. Returns SANITIZE_OK or an error status;
 * after an error the handle refuses further input until sanitize_reset. */
sanitize_status sanitize_feed(sanitize *h, const char *buf, size_t len);

/* Marks the end of the input. Fails with SANITIZE_EMALFORMED when the input
 * ends inside a value, or holds no value at all. */
sanitize_status sanitize_finish(sanitize *h);

/* The last error; code is SANITIZE_OK when there is none. */
const sanitize_error *sanitize_last_error(const sanitize *h);

/* The repaired text so far, when no writer is set. */
const char *sanitize_output(const sanitize *h, size_t *len);

/* Report: complete top-level values seen, repairs of one kind, and the
 * RFC 6901 JSON Pointers of the first max_paths repaired values, relative to
 * their top-level value, in input order. */
uint64_t sanitize_values(const sanitize *h);
uint64_t sanitize_count(const sanitize *h, sanitize_kind kind);
uint64_t sanitize_rewrites(const sanitize *h);
size_t sanitize_path_count(const sanitize *h);
const char *sanitize_path(const sanitize *h, size_t i);

/* The captured member of the last top-level object (last one wins when a
 * key repeats, as in jsonb). Valid after sanitize_finish. */
const sanitize_field *sanitize_field_get(const sanitize *h,
                                         sanitize_field_id id);

/* The type of the last top-level value (SANITIZE_ABSENT before one). */
sanitize_type sanitize_root_type(const sanitize *h);

/* Names: "nan", "infinity", ... and "thread_id", "checkpoint_ns", ... */
const char *sanitize_kind_name(sanitize_kind kind);
const char *sanitize_field_name(sanitize_field_id id);

#endif
