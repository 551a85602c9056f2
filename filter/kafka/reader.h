/* reader.h - reading one topic without joining a consumer group.
 *
 * The reader assigns every partition of the topic itself (no group
 * membership, no rebalance), finds where each partition starts (its first
 * record, the first record at or after a time by the broker's time index,
 * or a group's committed offset) and, unless it follows the topic, where
 * it ends: the end offsets found at start (or the first record at or after
 * an "until" time). Records beyond the end are never handed out, and
 * reader_next says READER_END once every partition reached its end, as
 * `kcat -C -e` does. Nothing is committed unless the caller stores offsets
 * and calls reader_commit (with a group).
 *
 * Ownership: the reader owns its librdkafka handle; a message handed out
 * by reader_next belongs to the caller (rd_kafka_message_destroy). */
#ifndef NANGUARD_READER_H
#define NANGUARD_READER_H

#include "common/error.h"

#include <librdkafka/rdkafka.h>
#include <stdint.h>

typedef struct reader reader;

typedef struct {
    /* >= 0: start at the first record whose timestamp is at or after this
     * time (milliseconds since the epoch); -1: at the first record. */
    int64_t since_ms;
    /* >= 0: end before the first record at or after this time; -1: at the
     * end offsets found at start. Ignored when following. */
    int64_t until_ms;
    /* Keep reading new records; reader_next never says READER_END. */
    int follow;
    /* NULL: no group. Otherwise a partition with an offset committed in
     * this group starts there (unless since_ms or its first record is
     * later), and reader_commit commits in it. The reader never joins
     * the group. */
    const char *group;
    /* Limit on each look-up at start (metadata, offsets); 0: 10000. */
    int timeout_ms;
} reader_options;

typedef enum {
    READER_MESSAGE = 0, /* *msg is a record, the caller's to destroy */
    READER_TIMEOUT,     /* nothing within timeout_ms */
    READER_END,         /* every partition reached its end */
    READER_ERROR        /* the topic cannot be read any more: see err */
} reader_status;

/* Connects, looks the topic up and finds the start and end offsets. conf
 * is taken over (also on failure); it holds bootstrap.servers and the
 * caller's -X properties; the reader sets what it relies on (no
 * auto-commit, no offset store, partition EOF events, group.id). Returns
 * NULL with err: code "broker_unreachable" (no broker answered within
 * timeout_ms), "topic_missing", or "kafka_config". */
reader *reader_new(rd_kafka_conf_t *conf, const char *topic,
                   const reader_options *opts, ng_error *err);
/* Frees; nothing is committed. NULL is fine. */
void reader_free(reader *r);

/* Waits up to timeout_ms for the next record in range. */
reader_status reader_next(reader *r, int timeout_ms, rd_kafka_message_t **msg,
                          ng_error *err);

/* Records in range when the reader started (the sum over partitions of
 * end - start; 0 when following): for progress. */
int64_t reader_total(const reader *r);
int reader_partition_count(const reader *r);
/* The range of partition i (0 <= i < count) as found at start; *end is -1
 * when following. */
void reader_range(const reader *r, int i, int32_t *partition, int64_t *start,
                  int64_t *end);

/* With a group: notes next (the offset to resume from) for partition, and
 * commits what was noted, synchronously. reader_commit with nothing noted
 * since the last commit does nothing and returns 0. */
void reader_store(reader *r, int32_t partition, int64_t next);
int reader_commit(reader *r, ng_error *err);

#endif
