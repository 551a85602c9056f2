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
} outcome_dead_letter_req;

/* Creates the producer. conf is taken over (also on failure); its
 * bootstrap.servers and -X settings are the caller's, the publisher adds
 * enable.idempotence=true and the delivery callback. */
outcome *outcome_new(rd_kafka_conf_t *conf, const outcome_options *opts,
                     outcome_ack_fn ack, void *ctx, ng_error *err);
void outcome_free(outcome *o);

int outcome_dead_letter(outcome *o, const outcome_dead_letter_req *req,
                        uint64_t tag, ng_error *err);
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
