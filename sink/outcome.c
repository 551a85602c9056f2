/* outcome.c - dead-letter records and notifications on one producer. */
#include "sink/outcome.h"

#include "common/log.h"

#include <openssl/evp.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct outcome {
    rd_kafka_t *rk;
    char *dlq_topic;
    char *notify_topic;
    char *worker;
    outcome_ack_fn ack;
    void *ctx;
};

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *rkm,
                        void *opaque)
{
    (void)rk;
    outcome *o = opaque;
    o->ack(o->ctx, (uint64_t)(uintptr_t)rkm->_private, rkm->err, rkm->partition,
           rkm->offset);
}

static char *dup_or_null(const char *s)
{
    if (s == NULL) {
        return NULL;
    }
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d != NULL) {
        memcpy(d, s, n);
    }
    return d;
}

outcome *outcome_new(rd_kafka_conf_t *conf, const outcome_options *opts,
                     outcome_ack_fn ack, void *ctx, ng_error *err)
{
    char errstr[512];
    outcome *o = calloc(1, sizeof *o);
    if (o == NULL) {
        rd_kafka_conf_destroy(conf);
        ng_error_set(err, NG_ERR_TRANSIENT, "oom", "out of memory");
        return NULL;
    }
    o->ack = ack;
    o->ctx = ctx;
    o->dlq_topic = dup_or_null(opts->dead_letter_topic);
    o->notify_topic = dup_or_null(opts->notify_topic);
    o->worker = dup_or_null(opts->worker ? opts->worker : "nanguard");
    if (o->dlq_topic == NULL || o->notify_topic == NULL || o->worker == NULL ||
        rd_kafka_conf_set(conf, "enable.idempotence", "true", errstr,
                          sizeof errstr) != RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        ng_error_set(err, NG_ERR_CONFIG, "kafka_config", "%s",
                     o->dlq_topic ? errstr : "out of memory");
        outcome_free(o);
        return NULL;
    }
    rd_kafka_conf_set_opaque(conf, o);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    o->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (o->rk == NULL) {
        rd_kafka_conf_destroy(conf);
        ng_error_set(err, NG_ERR_CONFIG, "kafka_config",
                     "cannot create the producer: %s", errstr);
        outcome_free(o);
        return NULL;
    }
    return o;
}

void outcome_free(outcome *o)
{
    if (o == NULL) {
        return;
    }
    if (o->rk != NULL) {
        rd_kafka_destroy(o->rk);
    }
    free(o->dlq_topic);
    free(o->notify_topic);
    free(o->worker);
    free(o);
}

bool outcome_err_too_large(rd_kafka_resp_err_t e)
{
    return e == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ||
           e == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE;
}

static int produce_failed(rd_kafka_resp_err_t e, ng_error *err)
{
    return ng_error_set(
        err,
        e == RD_KAFKA_RESP_ERR__QUEUE_FULL ? NG_ERR_TRANSIENT : NG_ERR_CONFIG,
        outcome_err_too_large(e) ? "kafka_too_large" : "kafka_produce",
        "cannot produce: %s", rd_kafka_err2str(e));
}

/* The SHA-256 of p[0..n) as 64 lower-case hex digits. */
static int sha256_hex(const void *p, size_t n, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (EVP_Digest(p, n, md, &len, EVP_sha256(), NULL) != 1 || len != 32) {
        return -1;
    }
    for (unsigned int i = 0; i < len; i++) {
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    }
    return 0;
}

/* Whether an incoming header's name is one nanguard writes itself: Kafka
 * Connect's error headers and nanguard's own, except nanguard.replay.*
 * (set by `nanguard dlq replay`, read back from the record). */
static bool reserved_header(const char *name)
{
    static const char connect[] = "__connect.errors.";
    static const char ours[] = "nanguard.";
    static const char replay[] = "nanguard.replay.";
    return strncmp(name, connect, sizeof connect - 1) == 0 ||
           (strncmp(name, ours, sizeof ours - 1) == 0 &&
            strncmp(name, replay, sizeof replay - 1) != 0);
}

/* The incoming headers, in their order, with every reserved name renamed
 * nanguard.original.<name>: a producer cannot make a tool that reads the
 * first header of a name see its value instead of nanguard's. NULL when
 * out of memory. */
static rd_kafka_headers_t *incoming_headers(const rd_kafka_headers_t *in)
{
    static const char prefix[] = "nanguard.original.";
    size_t n = in ? rd_kafka_header_cnt(in) : 0;
    rd_kafka_headers_t *h = rd_kafka_headers_new(n + 12);
    const char *name;
    const void *val;
    size_t len;
    for (size_t i = 0; h != NULL && in != NULL &&
                       rd_kafka_header_get_all(in, i, &name, &val, &len) ==
                           RD_KAFKA_RESP_ERR_NO_ERROR;
         i++) {
        if (!reserved_header(name)) {
            rd_kafka_header_add(h, name, -1, val, (ssize_t)len);
            continue;
        }
        size_t nl = strlen(name);
        char *renamed = malloc(sizeof prefix + nl);
        if (renamed == NULL) {
            rd_kafka_headers_destroy(h);
            return NULL;
        }
        memcpy(renamed, prefix, sizeof prefix - 1);
        memcpy(renamed + sizeof prefix - 1, name, nl + 1);
        rd_kafka_header_add(h, renamed, -1, val, (ssize_t)len);
        free(renamed);
    }
    return h;
}

int outcome_dead_letter(outcome *o, const outcome_dead_letter_req *req,
                        uint64_t tag, ng_error *err)
{
    rd_kafka_headers_t *h = incoming_headers(req->headers);
    if (h == NULL) {
        return ng_error_set(err, NG_ERR_TRANSIENT, "oom", "out of memory");
    }
    char partition[16], offset[24], attempts[16], ts[32];
    snprintf(partition, sizeof partition, "%d", (int)req->partition);
    snprintf(offset, sizeof offset, "%lld", (long long)req->offset);
    snprintf(attempts, sizeof attempts, "%d", req->attempts);
    ng_log_timestamp(ts);
    const char *pairs[][2] = {
        {"__connect.errors.topic", req->topic},
        {"__connect.errors.partition", partition},
        {"__connect.errors.offset", offset},
        {"__connect.errors.exception.class.name", req->exception_class},
        {"__connect.errors.exception.message", req->error->message},
        {"nanguard.error.code", req->error->code},
        {"nanguard.error.sqlstate", req->error->sqlstate},
        {"nanguard.worker", o->worker},
        {"nanguard.attempts", attempts},
        {"nanguard.failed_at", ts},
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        rd_kafka_header_add(h, pairs[i][0], -1, pairs[i][1], -1);
    }
    char omitted[24], sha[65];
    if (req->omit_value && req->value != NULL) {
        if (sha256_hex(req->value, req->value_len, sha) != 0) {
            rd_kafka_headers_destroy(h);
            return ng_error_set(err, NG_ERR_TRANSIENT, "oom",
                                "cannot compute SHA-256");
        }
        snprintf(omitted, sizeof omitted, "%zu", req->value_len);
        rd_kafka_header_add(h, "nanguard.value.omitted", -1, omitted, -1);
        rd_kafka_header_add(h, "nanguard.value.sha256", -1, sha, -1);
    }
    if (req->omit_key && req->key != NULL) {
        snprintf(omitted, sizeof omitted, "%zu", req->key_len);
        rd_kafka_header_add(h, "nanguard.key.omitted", -1, omitted, -1);
    }
    rd_kafka_resp_err_t e = rd_kafka_producev(
        o->rk, RD_KAFKA_V_TOPIC(o->dlq_topic),
        RD_KAFKA_V_KEY(req->omit_key ? NULL : (void *)req->key,
                       req->omit_key ? 0 : req->key_len),
        RD_KAFKA_V_VALUE(req->omit_value ? NULL : (void *)req->value,
                         req->omit_value ? 0 : req->value_len),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h),
        RD_KAFKA_V_OPAQUE((void *)(uintptr_t)tag), RD_KAFKA_V_END);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_headers_destroy(h); /* not taken over on failure */
        return produce_failed(e, err);
    }
    return 0;
}

int outcome_notify(outcome *o, const char *thread_id, const char *json,
                   size_t len, uint64_t tag, ng_error *err)
{
    rd_kafka_resp_err_t e = rd_kafka_producev(
        o->rk, RD_KAFKA_V_TOPIC(o->notify_topic),
        RD_KAFKA_V_KEY((void *)thread_id, thread_id ? strlen(thread_id) : 0),
        RD_KAFKA_V_VALUE((void *)json, len),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_OPAQUE((void *)(uintptr_t)tag), RD_KAFKA_V_END);
    return e == RD_KAFKA_RESP_ERR_NO_ERROR ? 0 : produce_failed(e, err);
}

void outcome_poll(outcome *o, int timeout_ms)
{
    rd_kafka_poll(o->rk, timeout_ms);
}

int outcome_flush(outcome *o, int timeout_ms)
{
    rd_kafka_flush(o->rk, timeout_ms);
    return rd_kafka_outq_len(o->rk);
}

int outcome_in_flight(const outcome *o)
{
    return rd_kafka_outq_len(o->rk);
}

const char *outcome_dead_letter_topic(const outcome *o)
{
    return o->dlq_topic;
}

int outcome_dead_letter_max_bytes(outcome *o, int timeout_ms,
                                  int64_t *max_bytes, ng_error *err)
{
    char errstr[256];
    rd_kafka_ConfigResource_t *res =
        rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, o->dlq_topic);
    rd_kafka_queue_t *q = rd_kafka_queue_new(o->rk);
    rd_kafka_AdminOptions_t *ao =
        rd_kafka_AdminOptions_new(o->rk, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS);
    if (res == NULL || q == NULL || ao == NULL) {
        rd_kafka_ConfigResource_destroy(res);
        rd_kafka_queue_destroy(q);
        rd_kafka_AdminOptions_destroy(ao);
        return ng_error_set(err, NG_ERR_TRANSIENT, "oom", "out of memory");
    }
    rd_kafka_AdminOptions_set_request_timeout(ao, timeout_ms, errstr,
                                              sizeof errstr);
    rd_kafka_DescribeConfigs(o->rk, &res, 1, ao, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, timeout_ms + 1000);
    int rc = -1;
    if (ev == NULL) {
        ng_error_set(err, NG_ERR_TRANSIENT, "kafka_timeout",
                     "the broker did not answer in %d ms", timeout_ms);
    } else if (rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        ng_error_set(err, NG_ERR_TRANSIENT, "kafka_admin", "%s",
                     rd_kafka_event_error_string(ev));
    } else {
        const rd_kafka_DescribeConfigs_result_t *r =
            rd_kafka_event_DescribeConfigs_result(ev);
        size_t n = 0, ne = 0;
        const rd_kafka_ConfigResource_t **rs =
            r ? rd_kafka_DescribeConfigs_result_resources(r, &n) : NULL;
        if (n < 1 || rd_kafka_ConfigResource_error(rs[0]) !=
                         RD_KAFKA_RESP_ERR_NO_ERROR) {
            ng_error_set(
                err, NG_ERR_CONFIG, "kafka_admin", "%s",
                n < 1 ? "no answer for the topic"
                      : rd_kafka_err2str(rd_kafka_ConfigResource_error(rs[0])));
        } else {
            const rd_kafka_ConfigEntry_t **es =
                rd_kafka_ConfigResource_configs(rs[0], &ne);
            for (size_t i = 0; i < ne; i++) {
                const char *v = rd_kafka_ConfigEntry_value(es[i]);
                if (strcmp(rd_kafka_ConfigEntry_name(es[i]),
                           "max.message.bytes") == 0 &&
                    v != NULL) {
                    *max_bytes = strtoll(v, NULL, 10);
                    rc = 0;
                }
            }
            if (rc != 0) {
                ng_error_set(err, NG_ERR_CONFIG, "kafka_admin",
                             "the broker gave no max.message.bytes");
            }
        }
    }
    rd_kafka_event_destroy(ev);
    rd_kafka_ConfigResource_destroy(res);
    rd_kafka_AdminOptions_destroy(ao);
    rd_kafka_queue_destroy(q);
    return rc;
}
