/* handover.h - dead-lettered once, across a worker that died.
 *
 * A worker that dies (SIGKILL, out of memory, a lost machine) leaves its
 * partitions to another, which replays them from the committed offset.
 * Rows absorb the replay (the upsert); dead letters would not: a message
 * whose dead-letter record was delivered but whose offset was not yet
 * committed (held behind earlier messages of its partition, or within the
 * commit interval) would be dead-lettered a second time. So:
 *
 * - Every commit carries metadata: "nanguard/1 clean" when no dead letter
 *   of a message at or after the committed offset was sent (nor may be on
 *   its way), otherwise "nanguard/1 since=MS": every such dead-letter
 *   record was produced at or after MS (milliseconds since the epoch, by
 *   the worker's clock: when it took up the message at the committed
 *   offset).
 * - A worker sends no dead letter on a partition before a commit of it
 *   with since= was acknowledged, or the group held one when the
 *   partition was assigned (the first dead letter of a partition waits
 *   one commit round trip).
 * - A worker given a partition committed with since= reads the dead-letter
 *   topic and the notification topic from that time (less a margin for
 *   topics with broker time stamps) to their ends and notes, for each
 *   message of the partition at or after the committed offset, its
 *   dead-letter record and whether its checkpoint_flush_error went out.
 *   Those messages are not dead-lettered again; a missing notification is
 *   sent.
 *
 * One handle per worker, on the worker's thread. The bookkeeping is pure;
 * handover_scan reads Kafka (filter/kafka/reader.h). */
#ifndef NANGUARD_HANDOVER_H
#define NANGUARD_HANDOVER_H

#include "common/error.h"

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct handover handover;

/* Scans start this long before a since= time: room for a dead-letter or
 * notification topic that stamps records with the broker's clock
 * (message.timestamp.type=LogAppendTime). */
#define HANDOVER_MARGIN_MS 60000

/* A message the previous owner dead-lettered. */
typedef struct {
    int64_t offset; /* of the message, in its partition */
    int32_t dlq_partition;
    int64_t dlq_offset;
    bool notified;      /* its checkpoint_flush_error is on the topic */
    char code[64];      /* nanguard.error.code of the record */
    char message[512];  /* __connect.errors.exception.message */
    char exception[64]; /* __connect.errors.exception.class.name */
} handover_entry;

handover *handover_new(void);
void handover_free(handover *h);

/* Commit metadata (at most CONSUMER_META_MAX bytes with its NUL). */
#define HANDOVER_META_CLEAN "nanguard/1 clean"
/* Reads metadata: 1 with *since_ms for since=, 0 for clean, -1 when it is
 * not nanguard's (none, or written by something else). */
int handover_meta_parse(const void *meta, size_t len, int64_t *since_ms);

/* A partition was assigned, starting at committed (-1: the group had no
 * offset) with that metadata. Returns 1 with *since_ms when the partition
 * must be scanned, 0 when not, -1 when out of memory. */
int handover_assign(handover *h, const char *topic, int32_t partition,
                    int64_t committed, const void *meta, size_t meta_len,
                    int64_t *since_ms);
/* The partition was revoked or lost. */
void handover_forget(handover *h, const char *topic, int32_t partition);

/* Partitions held, for walking them: 0 <= i < handover_count. */
size_t handover_count(const handover *h);
void handover_at(const handover *h, size_t i, const char **topic,
                 int32_t *partition);

/* Reads the dead-letter and notification topics from since_ms (less the
 * margin) to their ends and notes what the partitions assigned since the
 * last scan left behind. conf (bootstrap.servers and the user's -X) is
 * taken over. Returns 0, or -1 with err when a topic could not be read
 * (the partitions then proceed without it: a message may be
 * dead-lettered twice). Fills *found with the dead letters noted. */
int handover_scan(handover *h, rd_kafka_conf_t *conf, const char *dlq_topic,
                  const char *notify_topic, int64_t since_ms, size_t *found,
                  ng_error *err);

/* What the previous owner did with the message, or NULL. */
const handover_entry *handover_find(const handover *h, const char *topic,
                                    int32_t partition, int64_t offset);

/* The message at offset is to be dead-lettered: from now on the
 * partition's commits carry since=. Returns whether its dead letter may be
 * sent now (covered); when not, the caller commits and waits for
 * handover_acked to cover the partition. */
bool handover_dead_letter(handover *h, const char *topic, int32_t partition,
                          int64_t offset);
bool handover_covered(const handover *h, const char *topic, int32_t partition);

/* The broker stored (ok) or refused a commit of the partition with meta.
 * Returns true when this covered the partition. */
bool handover_acked(handover *h, const char *topic, int32_t partition,
                    const void *meta, size_t meta_len, bool ok);

/* The metadata for committing the partition at offset: head_at_ms is when
 * the message at offset was taken up (-1: none in flight, then now_ms
 * counts); final: the partition is being given up, and clean is written
 * whenever nothing at or after offset was dead-lettered. out holds at
 * least CONSUMER_META_MAX bytes. */
void handover_meta(const handover *h, const char *topic, int32_t partition,
                   int64_t offset, int64_t head_at_ms, int64_t now_ms,
                   bool final, char *out, size_t size);

#endif
