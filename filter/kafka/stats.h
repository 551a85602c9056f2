/* stats.h - consumer lag per partition, read from librdkafka's statistics
 * (the JSON document its stats callback gets every statistics.interval.ms).
 *
 * The lag of a partition is the number of messages after the committed
 * offset: the end of the partition (the last stable offset, the high
 * watermark for non-transactional topics) minus the committed offset, as
 * librdkafka computes it (consumer_lag). Before anything is committed
 * (a new group) it counts from the start of the log instead, which is
 * where the worker begins (auto.offset.reset=earliest). Only partitions
 * this consumer holds ("desired") with a known end are listed. */
#ifndef NANGUARD_KAFKA_STATS_H
#define NANGUARD_KAFKA_STATS_H

#include "common/error.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *topic;
    int32_t partition;
    int64_t lag;
} kafka_partition_lag;

/* Parses json (len bytes, need not be NUL terminated) into a new array of
 * *n entries in *out, owned by the caller (kafka_stats_lag_free). On error
 * returns -1 with err (code "kafka_stats") and leaves *out NULL. */
int kafka_stats_lag(const char *json, size_t len, kafka_partition_lag **out,
                    size_t *n, ng_error *err);
/* Frees what kafka_stats_lag made. NULL is fine. */
void kafka_stats_lag_free(kafka_partition_lag *lags, size_t n);

#endif
