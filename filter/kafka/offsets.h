/* offsets.h - which Kafka offsets may be stored for commit.
 *
 * Messages of a partition finish out of order (a batch row is stored while
 * an earlier message still waits for its dead-letter acknowledgement), but
 * an offset may be stored only when every message before it is finished.
 * The tracker keeps, per partition, the messages in flight in offset order
 * and says how far each partition is finished. No Kafka types: pure
 * bookkeeping, unit-tested on its own.
 */
#ifndef NANGUARD_OFFSETS_H
#define NANGUARD_OFFSETS_H

#include <stddef.h>
#include <stdint.h>

typedef struct offsets offsets;

/* Receives a partition whose finished prefix grew: next is the offset to
 * store (last finished offset + 1, Kafka's convention). */
typedef void (*offsets_ready_fn)(void *ctx, const char *topic,
                                 int32_t partition, int64_t next);

offsets *offsets_new(void);
void offsets_free(offsets *t);

/* Registers a message. Within a partition, offsets must grow. Fills *id,
 * the handle for offsets_done. Returns 0, or -1 when out of memory. */
int offsets_begin(offsets *t, const char *topic, int32_t partition,
                  int64_t offset, uint64_t *id);

/* The same, noting at (a time, in the caller's unit) with the message,
 * for offsets_head. */
int offsets_begin_at(offsets *t, const char *topic, int32_t partition,
                     int64_t offset, uint64_t at, uint64_t *id);

/* Where the partition's commit point is: when a message is in flight,
 * returns 1 with the oldest one's offset and its time (offsets_begin_at);
 * otherwise returns 0 with *offset the next offset to store, -1 when the
 * partition has finished nothing (or is not known). */
int offsets_head(const offsets *t, const char *topic, int32_t partition,
                 int64_t *offset, uint64_t *at);

/* Marks a message finished. Unknown or stale ids (of a forgotten
 * partition) are ignored. */
void offsets_done(offsets *t, uint64_t id);

/* Calls fn once for every partition whose finished prefix grew since the
 * last call. */
void offsets_collect(offsets *t, offsets_ready_fn fn, void *ctx);

/* Drops a partition and all its messages in flight (after a revoke). */
void offsets_forget(offsets *t, const char *topic, int32_t partition);

/* Messages registered and not yet finished, in all partitions or in one. */
size_t offsets_in_flight(const offsets *t);
size_t offsets_partition_in_flight(const offsets *t, const char *topic,
                                   int32_t partition);

#endif
