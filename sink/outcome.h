/* outcome.h - the outcome publisher: dead-letter records and notification
 * events, on one idempotent Kafka producer.
 *
 * Every record carries a caller tag; when the broker acknowledges it (or
 * gives up on it), the ack callback gets the tag, the error (0 when
 * stored) and where the record landed. Nothing is dropped here: a record
 * whose delivery failed is reported, and the caller sends it again. */
#ifndef NANGUARD_OUTCOME_H
#define NANGUARD_OUTCOME_H

#include "common/error.h"

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct outcome outcome;

typedef void (*outcome_ack_fn)(void *ctx, uint64_t tag, rd_kafka_resp_err_t err,
                               int32_t partition, int64_t offset);

typedef struct {
    const char *dead_letter_topic;
    const char *notify_topic;
    const char *worker; /* nanguard.worker header */
} outcome_options;

/* A message that cannot be stored, and why. The original bytes and headers
 * are borrowed for the call and copied into the record unchanged. */
typedef struct {
    const char *topic;
    int32_t partition;
    int64_t offset;
    const void *key;
    size_t key_len;
    const void *value;
    size_t value_len;
    const rd_kafka_headers_t *headers; /* may be NULL */
    const char *exception_class;       /* "nanguard.MalformedJson" */
    const ng_error *error;             /* code, sqlstate, message */
    int attempts;
    /* The broker refused the whole record for its size: send it without
     * the value (headers nanguard.value.omitted = its byte count and
     * nanguard.value.sha256), and without the key too (nanguard.key.omitted)
     * when that was refused as well. The source position stays in the
     * __connect.errors.* headers, to fetch the bytes from. */
    bool omit_value, omit_key;
} outcome_dead_letter_req;

/* Whether a produce or delivery error says the record is too large for
 * the producer or the broker (sending it again cannot help). */
bool outcome_err_too_large(rd_kafka_resp_err_t e);

/* Creates the producer. conf is taken over (also on failure); its
 * bootstrap.servers and -X settings are the caller's, the publisher adds
 * enable.idempotence=true and the delivery callback. */
outcome *outcome_new(rd_kafka_conf_t *conf, const outcome_options *opts,
                     outcome_ack_fn ack, void *ctx, ng_error *err);
void outcome_free(outcome *o);

/* Sends a dead-letter record. On failure err's code is "kafka_too_large"
 * when the record is too large for the producer (see omit_value). */
int outcome_dead_letter(outcome *o, const outcome_dead_letter_req *req,
                        uint64_t tag, ng_error *err);
/* Asks the broker for the dead-letter topic's max.message.bytes (waits up
 * to timeout_ms). Returns 0 with *max_bytes, or -1 with err (the topic
 * does not exist yet, the broker did not answer, no permission). */
int outcome_dead_letter_max_bytes(outcome *o, int timeout_ms,
                                  int64_t *max_bytes, ng_error *err);
/* Sends a notification event keyed by thread_id (NULL: no key). */
int outcome_notify(outcome *o, const char *thread_id, const char *json,
                   size_t len, uint64_t tag, ng_error *err);

/* Serves delivery reports (calls ack). */
void outcome_poll(outcome *o, int timeout_ms);
/* Waits up to timeout_ms for every record in flight. Returns the number
 * still in flight. */
int outcome_flush(outcome *o, int timeout_ms);
int outcome_in_flight(const outcome *o);
const char *outcome_dead_letter_topic(const outcome *o);

#endif
