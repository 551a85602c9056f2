/* consumer.h - the Kafka consumer stage: a librdkafka high-level consumer
 * in a consumer group, with offsets stored only by the caller.
 *
 * The stage sets what the pipeline relies on: cooperative-sticky
 * assignment, auto.offset.reset=earliest, no auto-commit: the caller
 * stores offsets, each with its metadata, and commits them
 * (consumer_commit_changed), and the stage commits a partition's offset
 * before it gives the partition up. Rebalances are
 * served inside consumer_poll: before partitions are given up, the revoke
 * callback runs so the caller can finish or abandon their messages and
 * store their offsets; the stage then commits and releases them. */
#ifndef NANGUARD_CONSUMER_H
#define NANGUARD_CONSUMER_H

#include "common/error.h"
#include "filter/kafka/stats.h"

#include <librdkafka/rdkafka.h>

typedef struct consumer consumer;

/* Called with the partitions about to be revoked (or lost, when lost is
 * set: their offsets can no longer be committed). */
typedef void (*consumer_revoke_fn)(void *ctx,
                                   const rd_kafka_topic_partition_list_t *parts,
                                   int lost);
/* Called with the broker's answer to a commit: the partitions with their
 * offsets and metadata as sent, each with its own err. */
typedef void (*consumer_committed_fn)(
    void *ctx, const rd_kafka_topic_partition_list_t *parts,
    rd_kafka_resp_err_t err);
/* Called after partitions were assigned, each with the offset it starts
 * at and the metadata committed with it in the group (metadata NULL when
 * none). */
typedef void (*consumer_assign_fn)(
    void *ctx, const rd_kafka_topic_partition_list_t *parts);

typedef struct {
    const char *group;
    const char *instance_id; /* static membership; NULL for dynamic */
    consumer_revoke_fn on_revoke;
    consumer_assign_fn on_assign;
    consumer_committed_fn on_committed; /* may be NULL */
    void *ctx;
} consumer_options;

/* conf is taken over (also on failure); it holds bootstrap.servers and the
 * caller's -X properties. */
consumer *consumer_new(rd_kafka_conf_t *conf, const consumer_options *opts,
                       ng_error *err);
/* Leaves the group (committing stored offsets) and frees. NULL is fine. */
void consumer_free(consumer *c);

/* topics: comma separated. */
int consumer_subscribe(consumer *c, const char *topics, ng_error *err);

/* Next message or NULL (timeout, or an informational error that was
 * logged). The caller destroys it with rd_kafka_message_destroy. */
rd_kafka_message_t *consumer_poll(consumer *c, int timeout_ms);

/* Stops or restarts fetching on every assigned partition. Messages already
 * fetched may still arrive from consumer_poll. */
void consumer_pause(consumer *c);
void consumer_resume(consumer *c);
int consumer_paused(const consumer *c);

/* The longest commit metadata kept (the broker's default limit,
 * offset.metadata.max.bytes, is 4096). */
#define CONSUMER_META_MAX 128
/* Stores next (the offset to resume from) and meta (committed with it; NULL
 * or "" for none) for the next commit. Returns -1 when out of memory. */
int consumer_store(consumer *c, const char *topic, int32_t partition,
                   int64_t next, const char *meta);
/* Commits what was stored and changed since it was last sent, without
 * waiting (the answer comes to on_committed inside consumer_poll); between
 * a revoke and the assignment that ends the rebalance, nothing (a commit
 * with the old generation would lose the assignment). Returns -1 when the
 * commit could not be sent (logged). */
int consumer_commit_changed(consumer *c);
/* The same, waiting for the broker. */
int consumer_commit(consumer *c, ng_error *err);
/* Whether the consumer holds a place in the group: an assignment (maybe
 * empty) came and was not lost since. */
int consumer_in_group(const consumer *c);
/* Partitions assigned now, as the rebalance callbacks counted them
 * (cheap: for every loop turn). */
int consumer_assigned_now(const consumer *c);

/* Consumer lag per partition held (filter/kafka/stats.h), from the last
 * statistics librdkafka gave (every statistics.interval.ms, served inside
 * consumer_poll); none before the first. Valid until the next poll. */
size_t consumer_lag_count(const consumer *c);
const kafka_partition_lag *consumer_lag_at(const consumer *c, size_t i);

#endif
