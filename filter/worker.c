/* worker.c - one worker: consume, sanitize, store, publish every outcome.
 *
 * Every consumed message gets a slot that lives until the message is
 * finished. A slot is in one of these states:
 *
 *   BATCH   its row waits in the PostgreSQL batch
 *   DLQ     its dead-letter record is on its way to the broker
 *   NOTIFY  its checkpoint_flush_error event is on its way
 *   RETRY   a record of it was refused by the producer or the broker; it
 *           is sent again at retry_at (nothing is ever dropped)
 *   COVER   its dead letter waits for a commit that covers its partition
 *           (filter/handover.h: dead-lettered once across a crash)
 *
 * and is freed when the message is finished, which is when its offset may
 * be stored (filter/offsets.h keeps the order per partition).
 *
 * While PostgreSQL is unavailable the worker pauses its partitions but
 * keeps polling (so the group keeps it), retries the batch with backoff,
 * and holds any message that still arrives until the batch is through.
 *
 * Batches are double-buffered: two sinks on one connection, one filled by
 * this thread while a writer thread flushes the other, so that consuming
 * and sanitizing go on while PostgreSQL writes. Only one batch is ever
 * being written, in the order they were filled; a batch that failed is
 * written again before any other. The writer thread (sink/pg_writer.h)
 * touches only the sink it was handed; every slot, offset and outcome
 * stays on this thread.
 */
#define _POSIX_C_SOURCE 200809L
#include "filter/worker.h"

#include "common/backoff.h"
#include "common/buf.h"
#include "common/clock.h"
#include "common/json_write.h"
#include "common/log.h"
#include "common/ratelimit.h"
#include "common/status.h"
#include "common/status_server.h"
#include "filter/handover.h"
#include "filter/kafka/consumer.h"
#include "filter/kafka/kafka_conf.h"
#include "filter/kafka/offsets.h"
#include "filter/sanitize/envelope.h"
#include "filter/sanitize/report.h"
#include "filter/sanitize/sanitize.h"
#include "sink/events.h"
#include "sink/outcome.h"
#include "sink/pg_sink.h"
#include "sink/pg_writer.h"

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

const ng_option worker_settings[] = {
    {"brokers", NG_OPT_STRING, NULL,
     "Kafka bootstrap servers, HOST:PORT[,...] (required)"},
    {"group", NG_OPT_STRING, "nanguard", "consumer group id"},
    {"topic", NG_OPT_STRING, NULL,
     "topic(s) to consume, NAME[,NAME] (required)"},
    {"pg", NG_OPT_STRING, "",
     "libpq connection string or URI; empty: the PG* environment"},
    {"table", NG_OPT_STRING, "checkpoints", "[schema.]table to write to"},
    {"create-table", NG_OPT_FLAG, "false",
     "create the table when it does not exist"},
    {"on-conflict", NG_OPT_STRING, "nothing",
     "what a replayed checkpoint does: nothing or update"},
    {"dead-letter-topic", NG_OPT_STRING, NULL,
     "topic for messages that cannot be stored (default: <topic>.dlq)"},
    {"notify-topic", NG_OPT_STRING, NULL,
     "topic for events to the application (default: <topic>.notifications)"},
    {"instance-id", NG_OPT_STRING, NULL,
     "static group membership id (group.instance.id)"},
    {"batch-rows", NG_OPT_INT, "500", "rows per PostgreSQL batch"},
    {"batch-bytes", NG_OPT_INT, "8388608", "bytes per PostgreSQL batch"},
    {"batch-ms", NG_OPT_INT, "200",
     "longest wait before a partial batch is written (it goes at once "
     "when the writer is idle and no message is waiting)"},
    {"max-message-bytes", NG_OPT_INT, "33554432",
     "larger messages are dead-lettered as too_large"},
    {"max-depth", NG_OPT_INT, "1000", "deeper nesting is malformed"},
    {"critical-after-ms", NG_OPT_INT, "60000",
     "PostgreSQL unavailable this long: checkpoint_flush_critical_error"},
    {"flush-error-message", NG_OPT_STRING, EVENT_FLUSH_ERROR_MESSAGE,
     "the sentence a user reads for checkpoint_flush_error (the reason "
     "goes to error_details)"},
    {"critical-message", NG_OPT_STRING, EVENT_CRITICAL_MESSAGE,
     "the sentence a user reads for checkpoint_flush_critical_error"},
    {"retry-initial-ms", NG_OPT_INT, "200", "first retry delay (backoff)"},
    {"retry-max-ms", NG_OPT_INT, "10000", "longest retry delay"},
    {"commit-interval-ms", NG_OPT_INT, "1000",
     "how often the offsets of finished messages are committed"},
    {"shutdown-timeout-ms", NG_OPT_INT, "30000",
     "on SIGTERM, how long to try to flush before leaving"},
    {"notify-sanitized", NG_OPT_FLAG, "false",
     "also send checkpoint_sanitized events (severity info)"},
    {"require-complete", NG_OPT_FLAG, "false",
     "dead-letter a checkpoint whose channel_versions names a channel the "
     "envelope does not hold (default: store it, checkpoint_incomplete)"},
    {"stats-interval-ms", NG_OPT_INT, "10000",
     "how often to log progress counters (0: never)"},
    {"log-level", NG_OPT_STRING, "info", "debug, info, warn or error"},
    {"pg-probe-interval-ms", NG_OPT_INT, "5000",
     "while nothing is written, check that PostgreSQL answers this often, "
     "so /readyz sees an outage (0: never)"},
    {"http-listen", NG_OPT_STRING, "",
     "serve /metrics, /healthz and /readyz on HOST:PORT (:PORT: every "
     "interface; empty: no HTTP)"},
};
const size_t worker_settings_count =
    sizeof worker_settings / sizeof worker_settings[0];

enum slot_state {
    SLOT_FREE,
    SLOT_BATCH,
    SLOT_DLQ,
    SLOT_NOTIFY,
    SLOT_RETRY,
    SLOT_COVER
};

struct slot {
    enum slot_state state;
    uint32_t gen;
    rd_kafka_message_t *rkm;
    uint64_t off_id;
    char *thread_id; /* NULL when unknown */
    char *checkpoint_id;
    char *checkpoint_ns;
    ng_error err;
    const char *exception_class;
    int attempts;      /* PostgreSQL attempts that failed on this message */
    int sink;          /* BATCH: which of the two sinks holds its row */
    bool notify_due;   /* RETRY: the notification, not the record */
    int shrink;        /* the record refused for its size: 1 sent without the
                        * value, 2 without value and key (outcome.h) */
    int size_refusals; /* of the whole record, while it would fit alone */
    int32_t dlq_partition;
    int64_t dlq_offset;
    uint64_t retry_at;
};

#define TAG_UNTRACKED UINT64_MAX
/* Room for the dead-letter headers when a record is measured against the
 * dead-letter topic's max.message.bytes. */
#define DLQ_HEADER_ROOM 4096
/* The dead-letter topic's limit when the broker does not say it (about
 * Kafka's default, and librdkafka's batch.size). */
#define DLQ_LIMIT_DEFAULT 1000000
/* Size refusals of a record that would fit alone before it is sent
 * without its value anyway. */
#define SIZE_REFUSALS_MAX 8

/* Dead letters by error code, for /metrics: the codes are few
 * (malformed_json, bad_envelope, too_large, pg_<SQLSTATE>); past the
 * table's size the rest count as "other". */
#define DLQ_CODES 32
struct code_count {
    char code[sizeof((ng_error *)0)->code];
    uint64_t n;
};

struct counters {
    uint64_t consumed, stored, duplicates, dead_lettered, tombstones;
    uint64_t bytes, critical;
    uint64_t values_omitted; /* dead letters sent without their value */
    uint64_t dlq_lost;       /* refused for size even without key and value */
    uint64_t handed_over;    /* dead-lettered by the partition's last owner */
    uint64_t by_kind[SANITIZE_KIND_COUNT]; /* values repaired, by kind */
    uint64_t incomplete;   /* stored though a channel was missing */
    uint64_t without_step; /* metadata without "step" */
};

/* What /metrics shows (common/status.h), in the order publish() fills. */
static const ng_metric worker_metrics[] = {
    {"nanguard_messages_consumed_total", NULL, NG_METRIC_COUNTER,
     "Kafka messages consumed"},
    {"nanguard_bytes_consumed_total", NULL, NG_METRIC_COUNTER,
     "bytes of message values consumed"},
    {"nanguard_rows_stored_total", NULL, NG_METRIC_COUNTER,
     "checkpoints written to PostgreSQL"},
    {"nanguard_rows_duplicate_total", NULL, NG_METRIC_COUNTER,
     "checkpoints that were already in PostgreSQL (replays)"},
    {"nanguard_dead_lettered_total", NULL, NG_METRIC_COUNTER,
     "messages sent to the dead-letter topic"},
    {"nanguard_tombstones_total", NULL, NG_METRIC_COUNTER,
     "messages with a null value, skipped"},
    {"nanguard_critical_notifications_total", NULL, NG_METRIC_COUNTER,
     "checkpoint_flush_critical_error events sent"},
    {"nanguard_rewrites_total", "kind=\"nan\"", NG_METRIC_COUNTER,
     "values repaired by the sanitizer, by kind"},
    {"nanguard_rewrites_total", "kind=\"infinity\"", NG_METRIC_COUNTER, ""},
    {"nanguard_rewrites_total", "kind=\"out_of_range\"", NG_METRIC_COUNTER, ""},
    {"nanguard_rewrites_total", "kind=\"nul_escape\"", NG_METRIC_COUNTER, ""},
    {"nanguard_rewrites_total", "kind=\"lone_surrogate\"", NG_METRIC_COUNTER,
     ""},
    {"nanguard_rewrites_total", "kind=\"invalid_utf8\"", NG_METRIC_COUNTER, ""},
    {"nanguard_in_flight_messages", NULL, NG_METRIC_GAUGE,
     "messages consumed and not yet finished (offset not stored)"},
    {"nanguard_held_messages", NULL, NG_METRIC_GAUGE,
     "messages held while PostgreSQL is unavailable"},
    {"nanguard_partitions_assigned", NULL, NG_METRIC_GAUGE,
     "partitions this worker holds"},
    {"nanguard_postgres_available", NULL, NG_METRIC_GAUGE,
     "0 while PostgreSQL writes fail and the partitions are paused"},
    {"nanguard_postgres_unavailable_seconds", NULL, NG_METRIC_GAUGE,
     "how long the current PostgreSQL outage has lasted (0: none)"},
    {"nanguard_postgres_reconnects_total", NULL, NG_METRIC_COUNTER,
     "PostgreSQL connections made after the first one"},
    {"nanguard_dead_letter_produce_failures_total", NULL, NG_METRIC_COUNTER,
     "dead-letter records the producer or the broker refused (each is sent "
     "again)"},
    {"nanguard_notification_produce_failures_total", NULL, NG_METRIC_COUNTER,
     "notifications the producer or the broker refused"},
    {"nanguard_dead_letter_values_omitted_total", NULL, NG_METRIC_COUNTER,
     "dead-letter records sent without the value, too large for the topic "
     "(nanguard.value.omitted, nanguard.value.sha256)"},
    {"nanguard_dead_letters_lost_total", NULL, NG_METRIC_COUNTER,
     "dead-letter records refused for their size even without key and "
     "value (notified and logged, not on the topic)"},
    {"nanguard_dead_letters_handed_over_total", NULL, NG_METRIC_COUNTER,
     "messages found on the dead-letter topic already, sent there by the "
     "partition's previous owner, and not sent again"},
};
#define N_METRICS (sizeof worker_metrics / sizeof worker_metrics[0])
/* Histogram buckets, in seconds: a batch written to PostgreSQL, and a
 * message from its Kafka timestamp to its offset stored. */
static const double write_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                       0.5,   1,    2.5,   5,    10,  30};
static const double latency_buckets[] = {
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800};
#define STATUS_EVERY_MS 100
/* /healthz fails when the main loop has not turned for this long. */
#define STALE_AFTER_MS 60000
/* Per-message log lines (dead letters, refused records): at most this many
 * of a kind per window; the rest are counted (and each one is on the
 * dead-letter topic, in the progress counters and in /metrics anyway). */
#define LOG_BURST 20
#define LOG_WINDOW_MS 10000

struct worker {
    consumer *cons;
    outcome *out;
    pg_sink *sinks[2];
    int fill;  /* the sink rows are added to */
    int retry; /* a sink whose flush failed: it goes next; -1 when none */
    pg_writer *writer; /* flushes one sink at a time on its thread */
    sanitize *san;
    envelope_reader *reader; /* blobs, writes, step, completeness */
    bool require_complete;
    ng_ratelimit log_incomplete;
    offsets *offs;
    handover *ho;               /* what previous owners dead-lettered */
    rd_kafka_conf_t *scan_conf; /* for handover_scan */
    size_t ncover;              /* slots in SLOT_COVER */
    bool commit_now;            /* a dead letter waits for a commit */
    uint64_t last_commit, commit_interval_ms;
    char *topic_list;
    char *dlq_topic;
    char *notify_topic;
    char *flush_error_message, *critical_message; /* what users read */
    size_t max_message_bytes;
    size_t dlq_limit; /* the dead-letter topic's max.message.bytes */
    uint64_t critical_after_ms, retry_max_ms, shutdown_timeout_ms;
    uint64_t stats_interval_ms;
    bool notify_sanitized;

    struct slot *slots;
    size_t nslots, cap;
    size_t nretry; /* slots in SLOT_RETRY */
    size_t *free_list;
    size_t nfree;

    rd_kafka_message_t **held; /* arrived while PostgreSQL was away */
    size_t nheld, held_cap;

    /* PostgreSQL unavailable: since when, retry when, who was told. */
    bool blocked;
    ng_error block_err;
    uint64_t blocked_since, retry_at;
    ng_backoff backoff;
    bool critical_sent;
    ng_buf told; /* thread ids told in this outage, NUL separated */

    ng_backoff produce_backoff;
    ng_ratelimit log_dead_letter, log_retry;
    ng_buf scratch;
    struct counters n;
    uint64_t last_stats;

    ng_status *status; /* NULL without --http-listen */
    ng_status_server *http;
    uint64_t last_status;
    bool pg_ok;   /* the last connect or write went through (so false
                   * whenever blocked) */
    bool probing; /* the writer's job is a probe_due connection */
    uint64_t probe_at;
    ng_backoff probe_backoff;
    uint64_t probe_interval_ms; /* --pg-probe-interval-ms */
    uint64_t pg_seen;           /* when PostgreSQL last answered */
    bool stopping;

    /* For /metrics beyond the counters (publish). */
    ng_histogram write_seconds, latency_seconds;
    uint64_t dlq_produce_failures, notify_produce_failures;
    uint64_t connects[2]; /* each sink's, as last seen */
    struct code_count dlq_codes[DLQ_CODES];
    size_t ndlq_codes;
    ng_buf extra;
};

static char *dup_str(const char *s)
{
    return s ? strdup(s) : NULL;
}

static char *dup_mem(const void *p, size_t n)
{
    if (p == NULL) {
        return NULL;
    }
    char *d = malloc(n + 1);
    if (d != NULL) {
        memcpy(d, p, n);
        d[n] = '\0';
    }
    return d;
}

/* ------------------------------------------------------------------------
 * Slots
 */
static uint64_t slot_tag(const worker *w, const struct slot *s)
{
    return (uint64_t)s->gen << 32 | (uint64_t)(s - w->slots);
}

static struct slot *slot_of_tag(worker *w, uint64_t tag)
{
    size_t i = (size_t)(tag & 0xFFFFFFFFu);
    if (tag == TAG_UNTRACKED || i >= w->nslots) {
        return NULL;
    }
    struct slot *s = &w->slots[i];
    return s->state != SLOT_FREE && s->gen == (uint32_t)(tag >> 32) ? s : NULL;
}

static struct slot *slot_new(worker *w)
{
    size_t i;
    if (w->nfree > 0) {
        i = w->free_list[--w->nfree];
    } else {
        if (w->nslots == w->cap) {
            size_t cap = w->cap ? w->cap * 2 : 1024;
            struct slot *s = realloc(w->slots, cap * sizeof *s);
            if (s == NULL) {
                return NULL;
            }
            w->slots = s;
            size_t *fl = realloc(w->free_list, cap * sizeof *fl);
            if (fl == NULL) {
                return NULL;
            }
            w->free_list = fl;
            w->cap = cap;
        }
        i = w->nslots++;
        w->slots[i].gen = 0;
    }
    struct slot *s = &w->slots[i];
    uint32_t gen = s->gen + 1;
    memset(s, 0, sizeof *s);
    s->gen = gen;
    s->state = SLOT_BATCH;
    return s;
}

/* Releases the slot; when finished, its offset may now be stored. */
static void slot_release(worker *w, struct slot *s, bool finished)
{
    if (finished) {
        offsets_done(w->offs, s->off_id);
        int64_t ts = rd_kafka_message_timestamp(s->rkm, NULL);
        if (ts > 0) {
            int64_t ms = ng_wall_ms() - ts;
            ng_histogram_observe(&w->latency_seconds,
                                 ms > 0 ? (double)ms / 1000 : 0);
        }
    }
    rd_kafka_message_destroy(s->rkm);
    free(s->thread_id);
    free(s->checkpoint_id);
    free(s->checkpoint_ns);
    w->nretry -= s->state == SLOT_RETRY;
    w->ncover -= s->state == SLOT_COVER;
    s->state = SLOT_FREE;
    w->free_list[w->nfree++] = (size_t)(s - w->slots);
}

/* ------------------------------------------------------------------------
 * Outcomes: dead-letter records and notifications
 */
static void send_dead_letter(worker *w, struct slot *s);
static void too_large(worker *w, struct slot *s, const char *why);
static int read_message(worker *w, struct slot *s, envelope *env, ng_error *why,
                        const char **klass);

/* "N lines of this kind were held back" (common/ratelimit.h). */
static void log_suppressed(const ng_ratelimit *r, uint64_t n)
{
    if (n > 0) {
        char c[24];
        snprintf(c, sizeof c, "%llu", (unsigned long long)n);
        ng_log(NG_LOG_WARN, "log lines suppressed", "kind", r->kind, "count#",
               c, NULL);
    }
}

/* Whether a per-message line of r's kind may be logged now; when lines
 * were held back before it, says how many first. */
static bool log_allowed(ng_ratelimit *r)
{
    uint64_t held;
    if (!ng_ratelimit_allow(r, ng_now_ms(), &held)) {
        return false;
    }
    log_suppressed(r, held);
    return true;
}

static void retry_later(worker *w, struct slot *s, bool notify, const char *why)
{
    w->nretry += s->state != SLOT_RETRY;
    s->state = SLOT_RETRY;
    s->notify_due = notify;
    s->retry_at = ng_now_ms() + ng_backoff_next(&w->produce_backoff);
    if (notify) {
        w->notify_produce_failures++;
    } else {
        w->dlq_produce_failures++;
    }
    if (log_allowed(&w->log_retry)) {
        ng_log(NG_LOG_WARN,
               notify ? "notification not delivered, will retry"
                      : "dead-letter record not delivered, will retry",
               "topic", rd_kafka_topic_name(s->rkm->rkt), "error", why, NULL);
    }
}

static void send_notification(worker *w, struct slot *s)
{
    event_flush_error ev = {
        .thread_id = s->thread_id,
        .checkpoint_id = s->checkpoint_id,
        .checkpoint_ns = s->checkpoint_ns,
        .message = w->flush_error_message,
        .details = s->err.message,
        .error_code = s->err.code,
        .dlq = {w->dlq_topic, s->dlq_partition, s->dlq_offset},
        .source = {rd_kafka_topic_name(s->rkm->rkt), s->rkm->partition,
                   s->rkm->offset},
    };
    ng_buf_clear(&w->scratch);
    ng_error err;
    if (event_flush_error_json(&w->scratch, &ev) != 0) {
        retry_later(w, s, true, "out of memory");
        return;
    }
    w->nretry -= s->state == SLOT_RETRY;
    s->state = SLOT_NOTIFY;
    if (outcome_notify(w->out, s->thread_id, w->scratch.data, w->scratch.len,
                       slot_tag(w, s), &err) != 0) {
        retry_later(w, s, true, err.message);
    }
}

static void send_dead_letter(worker *w, struct slot *s)
{
    const rd_kafka_message_t *m = s->rkm;
    rd_kafka_headers_t *hdrs = NULL;
    rd_kafka_message_headers(m, &hdrs);
    outcome_dead_letter_req req = {
        .topic = rd_kafka_topic_name(m->rkt),
        .partition = m->partition,
        .offset = m->offset,
        .key = m->key,
        .key_len = m->key_len,
        .value = m->payload,
        .value_len = m->len,
        .headers = hdrs,
        .exception_class = s->exception_class,
        .error = &s->err,
        .attempts = s->attempts,
        .omit_value = s->shrink >= 1,
        .omit_key = s->shrink >= 2,
    };
    ng_error err;
    w->nretry -= s->state == SLOT_RETRY;
    s->state = SLOT_DLQ;
    if (outcome_dead_letter(w->out, &req, slot_tag(w, s), &err) != 0) {
        if (strcmp(err.code, "kafka_too_large") == 0) {
            too_large(w, s, err.message); /* larger than message.max.bytes */
        } else {
            retry_later(w, s, false, err.message);
        }
    }
}

/* The producer or the broker refused s's dead-letter record for its size:
 * sending it again cannot help, so send it without the value, then without
 * the key as well; refused even then, the message is given up (logged,
 * counted, notified with no dead-letter position) so its partition goes
 * on. */
static void too_large(worker *w, struct slot *s, const char *why)
{
    /* The broker refuses a whole batch: a record that fits the topic's
     * limit alone was refused for the records batched with it, and goes
     * again as it is (a few times: the limit may have been lowered). */
    if (s->shrink == 0 &&
        s->rkm->len + s->rkm->key_len + DLQ_HEADER_ROOM <= w->dlq_limit &&
        ++s->size_refusals < SIZE_REFUSALS_MAX) {
        retry_later(w, s, false, why);
        return;
    }
    char part[16], off[24], len[24];
    snprintf(part, sizeof part, "%d", (int)s->rkm->partition);
    snprintf(off, sizeof off, "%lld", (long long)s->rkm->offset);
    snprintf(len, sizeof len, "%zu", s->rkm->len);
    if (s->shrink < 2) {
        s->shrink++;
        w->n.values_omitted += s->shrink == 1;
        if (log_allowed(&w->log_dead_letter)) {
            ng_log(
                NG_LOG_WARN,
                s->shrink == 1
                    ? "dead-letter record too large for the topic, sending it "
                      "without the value"
                    : "dead-letter record too large even without the value, "
                      "sending it without the key too",
                "topic", rd_kafka_topic_name(s->rkm->rkt), "partition#", part,
                "offset#", off, "value_bytes#", len, "error", why, NULL);
        }
        send_dead_letter(w, s);
        return;
    }
    w->n.dlq_lost++;
    ng_log(NG_LOG_ERROR,
           "dead-letter record refused for its size even without key and "
           "value; the message is given up (fetch it from its position)",
           "topic", rd_kafka_topic_name(s->rkm->rkt), "partition#", part,
           "offset#", off, "value_bytes#", len, "error", why, NULL);
    s->dlq_partition = -1;
    s->dlq_offset = -1;
    send_notification(w, s);
}

/* The message cannot be stored: to the dead-letter topic with the reason
 * (once its partition is covered: filter/handover.h). */
static void dead_letter(worker *w, struct slot *s, const char *klass,
                        const ng_error *why)
{
    const rd_kafka_message_t *m = s->rkm;
    s->err = *why;
    s->exception_class = klass;
    if (log_allowed(&w->log_dead_letter)) {
        char off[24];
        snprintf(off, sizeof off, "%lld", (long long)s->rkm->offset);
        ng_log(NG_LOG_WARN, "dead-lettering message", "topic",
               rd_kafka_topic_name(s->rkm->rkt), "offset#", off, "thread_id",
               s->thread_id, "error_code", why->code, "reason", why->message,
               NULL);
    }
    if (!handover_dead_letter(w->ho, rd_kafka_topic_name(m->rkt), m->partition,
                              m->offset)) {
        w->nretry -= s->state == SLOT_RETRY;
        w->ncover += s->state != SLOT_COVER;
        s->state = SLOT_COVER;
        w->commit_now = true;
        return;
    }
    send_dead_letter(w, s);
}

/* A commit covered the partition: its waiting dead letters go. */
static void send_covered(worker *w, const char *topic, int32_t partition)
{
    for (size_t i = 0; i < w->nslots && w->ncover > 0; i++) {
        struct slot *s = &w->slots[i];
        if (s->state == SLOT_COVER && s->rkm->partition == partition &&
            strcmp(rd_kafka_topic_name(s->rkm->rkt), topic) == 0) {
            w->ncover--;
            s->state = SLOT_DLQ;
            send_dead_letter(w, s);
        }
    }
}

/* The message was dead-lettered by its partition's previous owner (found
 * by handover_scan): not again. Its checkpoint_flush_error goes out when
 * the scan did not find it on the notification topic. */
static void handed_over(worker *w, struct slot *s, const handover_entry *e)
{
    w->n.handed_over++;
    if (e->notified) {
        slot_release(w, s, true);
        return;
    }
    envelope env;
    ng_error why;
    const char *klass = NULL;
    if (read_message(w, s, &env, &why, &klass) != 0 && s->thread_id == NULL &&
        s->rkm->key != NULL && s->rkm->key_len > 0) {
        s->thread_id = dup_mem(s->rkm->key, s->rkm->key_len);
    }
    ng_error_set(&s->err, NG_ERR_PERMANENT, e->code[0] ? e->code : "other",
                 "%s", e->message);
    s->dlq_partition = e->dlq_partition;
    s->dlq_offset = e->dlq_offset;
    send_notification(w, s);
}

/* The count of code; the last entry of the table is "other". */
static struct code_count *code_entry(worker *w, const char *code)
{
    for (size_t i = 0; i < w->ndlq_codes; i++) {
        if (strcmp(w->dlq_codes[i].code, code) == 0) {
            return &w->dlq_codes[i];
        }
    }
    if (w->ndlq_codes >= DLQ_CODES - 1 && strcmp(code, "other") != 0) {
        return code_entry(w, "other");
    }
    struct code_count *c = &w->dlq_codes[w->ndlq_codes++];
    snprintf(c->code, sizeof c->code, "%s", code);
    c->n = 0;
    return c;
}

/* Delivery report from the producer. */
static void on_ack(void *ctx, uint64_t tag, rd_kafka_resp_err_t err,
                   int32_t partition, int64_t offset)
{
    worker *w = ctx;
    struct slot *s = slot_of_tag(w, tag);
    if (s == NULL) {
        /* Untracked: critical and sanitized notifications. */
        w->notify_produce_failures += err != RD_KAFKA_RESP_ERR_NO_ERROR;
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR && log_allowed(&w->log_retry)) {
            ng_log(NG_LOG_WARN, "event not delivered", "error",
                   rd_kafka_err2str(err), NULL);
        }
        return;
    }
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR && s->state == SLOT_DLQ &&
        outcome_err_too_large(err)) {
        too_large(w, s, rd_kafka_err2str(err)); /* the topic's limit */
        return;
    }
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        retry_later(w, s, s->state == SLOT_NOTIFY, rd_kafka_err2str(err));
        return;
    }
    ng_backoff_reset(&w->produce_backoff);
    if (s->state == SLOT_DLQ) {
        s->dlq_partition = partition;
        s->dlq_offset = offset;
        send_notification(w, s);
    } else if (s->state == SLOT_NOTIFY) {
        w->n.dead_lettered++;
        code_entry(w, s->err.code)->n++;
        slot_release(w, s, true);
    }
}

static void retry_due(worker *w, uint64_t now)
{
    for (size_t i = 0; i < w->nslots && w->nretry > 0; i++) {
        struct slot *s = &w->slots[i];
        if (s->state == SLOT_RETRY && s->retry_at <= now) {
            if (s->notify_due) {
                send_notification(w, s);
            } else {
                send_dead_letter(w, s);
            }
        }
    }
}

/* checkpoint_flush_critical_error, once per thread per outage. */
static void tell_critical(worker *w, const char *thread_id, const char *msg,
                          const char *details)
{
    for (size_t off = 0; off < w->told.len;) {
        const char *t = w->told.data + off;
        if (strcmp(t, thread_id) == 0) {
            return;
        }
        off += strlen(t) + 1;
    }
    if (ng_buf_append(&w->told, thread_id, strlen(thread_id) + 1) != 0) {
        return;
    }
    ng_buf_clear(&w->scratch);
    ng_error err;
    if (event_critical_json(&w->scratch, thread_id, msg, details) != 0 ||
        outcome_notify(w->out, thread_id, w->scratch.data, w->scratch.len,
                       TAG_UNTRACKED, &err) != 0) {
        w->notify_produce_failures++;
        ng_log(NG_LOG_ERROR, "cannot send critical notification", "thread_id",
               thread_id, NULL);
    } else {
        w->n.critical++;
    }
}

static void tell_critical_all(worker *w)
{
    const char *msg = w->critical_message;
    const char *why = w->block_err.klass == NG_ERR_CONFIG
                          ? "the database needs attention"
                          : "the database is unavailable";
    char details[sizeof w->block_err.message + 80];
    if (w->block_err.sqlstate[0]) {
        snprintf(details, sizeof details, "%s: %s (SQLSTATE %s)", why,
                 w->block_err.message, w->block_err.sqlstate);
    } else {
        snprintf(details, sizeof details, "%s: %s", why, w->block_err.message);
    }
    for (size_t i = 0; i < w->nslots; i++) {
        struct slot *s = &w->slots[i];
        if (s->state == SLOT_BATCH && s->thread_id != NULL) {
            tell_critical(w, s->thread_id, msg, details);
        }
    }
    for (size_t i = 0; i < w->nheld; i++) {
        const rd_kafka_message_t *m = w->held[i];
        if (m->key != NULL && m->key_len < 256) {
            char key[256];
            memcpy(key, m->key, m->key_len);
            key[m->key_len] = '\0';
            tell_critical(w, key, msg, details);
        }
    }
    w->critical_sent = true;
}

/* ------------------------------------------------------------------------
 * Messages
 */
static void process(worker *w, rd_kafka_message_t *m);

static void hold(worker *w, rd_kafka_message_t *m)
{
    if (w->nheld == w->held_cap) {
        size_t cap = w->held_cap ? w->held_cap * 2 : 256;
        rd_kafka_message_t **h = realloc(w->held, cap * sizeof *h);
        if (h == NULL) {
            /* Not finished, not stored: replayed after a restart. */
            ng_log(NG_LOG_ERROR, "out of memory holding a message", NULL);
            rd_kafka_message_destroy(m);
            return;
        }
        w->held = h;
        w->held_cap = cap;
    }
    w->held[w->nheld++] = m;
}

static void process_held(worker *w)
{
    size_t n = w->nheld;
    w->nheld = 0;
    for (size_t i = 0; i < n; i++) {
        if (w->blocked) {
            w->held[w->nheld++] = w->held[i];
        } else {
            process(w, w->held[i]);
        }
    }
}

/* Sanitizes the message into the handle; fills s's ids; 0 when it is a
 * valid envelope, else -1 with why. */
static int read_message(worker *w, struct slot *s, envelope *env, ng_error *why,
                        const char **klass)
{
    const rd_kafka_message_t *m = s->rkm;
    if (m->len > w->max_message_bytes) {
        *klass = "nanguard.TooLarge";
        return ng_error_set(why, NG_ERR_PERMANENT, "too_large",
                            "message of %zu bytes is larger than the limit "
                            "of %zu bytes (max-message-bytes)",
                            m->len, w->max_message_bytes);
    }
    sanitize_reset(w->san);
    sanitize_status st = sanitize_feed(w->san, m->payload, m->len);
    if (st == SANITIZE_OK) {
        st = sanitize_finish(w->san);
    }
    if (st != SANITIZE_OK) {
        const sanitize_error *e = sanitize_last_error(w->san);
        *klass = "nanguard.MalformedJson";
        return ng_error_set(why, NG_ERR_PERMANENT, "malformed_json",
                            "malformed JSON at byte %llu: %s",
                            (unsigned long long)e->offset, e->message);
    }
    char reason[256];
    if (envelope_reader_read(w->reader, w->san, env, reason, sizeof reason) !=
        0) {
        if (strcmp(reason, "out of memory") == 0) {
            return ng_error_set(why, NG_ERR_TRANSIENT, "out_of_memory",
                                "out of memory reading the envelope");
        }
        *klass = "nanguard.BadEnvelope";
        return ng_error_set(why, NG_ERR_PERMANENT, "bad_envelope",
                            "not a checkpoint envelope: %s", reason);
    }
    s->thread_id = dup_str(env->thread_id);
    s->checkpoint_id = dup_str(env->checkpoint_id);
    s->checkpoint_ns = dup_str(env->checkpoint_ns);
    if (env->missing_channel != NULL && w->require_complete) {
        *klass = "nanguard.IncompleteCheckpoint";
        return ng_error_set(why, NG_ERR_PERMANENT, "checkpoint_incomplete",
                            "incomplete checkpoint: channel_versions names "
                            "channel '%.80s', which is neither in "
                            "channel_values nor in blobs",
                            env->missing_channel);
    }
    return 0;
}

/* A checkpoint stored without one of its channels: counted, logged (rate
 * limited) and told with a checkpoint_incomplete event (best effort, as
 * checkpoint_sanitized). */
static void tell_incomplete(worker *w, const struct slot *s,
                            const char *channel)
{
    w->n.incomplete++;
    char details[200];
    snprintf(details, sizeof details,
             "channel_versions names channel '%.80s', which is neither in "
             "channel_values nor in blobs",
             channel);
    if (log_allowed(&w->log_incomplete)) {
        ng_log(NG_LOG_WARN, "incomplete checkpoint stored", "thread_id",
               s->thread_id, "checkpoint_id", s->checkpoint_id, "channel",
               channel, NULL);
    }
    event_position src = {rd_kafka_topic_name(s->rkm->rkt), s->rkm->partition,
                          s->rkm->offset};
    ng_error err;
    ng_buf_clear(&w->scratch);
    if (event_incomplete_json(&w->scratch, s->thread_id, s->checkpoint_id,
                              s->checkpoint_ns, details, src) != 0 ||
        outcome_notify(w->out, s->thread_id, w->scratch.data, w->scratch.len,
                       TAG_UNTRACKED, &err) != 0) {
        w->notify_produce_failures++;
    }
}

static void notify_sanitized(worker *w, const struct slot *s)
{
    ng_buf counts = {0}, paths = {0};
    int rc = sanitize_counts_json(w->san, &counts) || ng_buf_putc(&paths, '[');
    for (size_t i = 0; rc == 0 && i < sanitize_path_count(w->san); i++) {
        rc = (i ? ng_buf_append(&paths, ", ", 2) : 0) ||
             ng_json_cstr(&paths, sanitize_path(w->san, i));
    }
    rc = rc || ng_buf_append_str(&paths, "]", 1) ||
         ng_buf_append_str(&counts, "", 0);
    event_position src = {rd_kafka_topic_name(s->rkm->rkt), s->rkm->partition,
                          s->rkm->offset};
    ng_error err;
    ng_buf_clear(&w->scratch);
    if (rc == 0 &&
        event_sanitized_json(&w->scratch, s->thread_id, s->checkpoint_id,
                             counts.data, paths.data, src) == 0) {
        w->notify_produce_failures +=
            outcome_notify(w->out, s->thread_id, w->scratch.data,
                           w->scratch.len, TAG_UNTRACKED, &err) != 0;
    }
    ng_buf_free(&counts);
    ng_buf_free(&paths);
}

static void process(worker *w, rd_kafka_message_t *m)
{
    w->n.consumed++;
    w->n.bytes += m->len;
    uint64_t off_id;
    if (offsets_begin_at(w->offs, rd_kafka_topic_name(m->rkt), m->partition,
                         m->offset, (uint64_t)ng_wall_ms(), &off_id) != 0) {
        ng_log(NG_LOG_ERROR, "out of memory tracking offsets", NULL);
        rd_kafka_message_destroy(m);
        return;
    }
    struct slot *s = slot_new(w);
    if (s == NULL) {
        ng_log(NG_LOG_ERROR, "out of memory for a message slot", NULL);
        rd_kafka_message_destroy(m);
        return;
    }
    s->rkm = m;
    s->off_id = off_id;
    if (m->payload == NULL) {
        w->n.tombstones++;
        slot_release(w, s, true);
        return;
    }
    const handover_entry *known = handover_find(
        w->ho, rd_kafka_topic_name(m->rkt), m->partition, m->offset);
    if (known != NULL) {
        handed_over(w, s, known);
        return;
    }
    envelope env;
    ng_error why;
    const char *klass = NULL;
    if (read_message(w, s, &env, &why, &klass) != 0) {
        if (why.klass == NG_ERR_TRANSIENT) {
            /* Out of memory: unfinished; a restart replays it. */
            ng_log(NG_LOG_ERROR, "cannot read the message", "reason",
                   why.message, NULL);
            slot_release(w, s, false);
            return;
        }
        /* Unreadable: the Kafka key names the thread. */
        if (m->key != NULL && m->key_len > 0) {
            s->thread_id = dup_mem(m->key, m->key_len);
        }
        dead_letter(w, s, klass, &why);
        return;
    }
    uint64_t rewrites = sanitize_rewrites(w->san);
    if (rewrites > 0) {
        for (int k = 0; k < SANITIZE_KIND_COUNT; k++) {
            w->n.by_kind[k] += sanitize_count(w->san, (sanitize_kind)k);
        }
    }
    for (int k = 0; k < SANITIZE_KIND_COUNT; k++) {
        w->n.by_kind[k] += envelope_reader_count(w->reader, (sanitize_kind)k);
    }
    w->n.without_step += !env.has_step;
    if (env.missing_channel != NULL) {
        tell_incomplete(w, s, env.missing_channel);
    }
    if (rewrites > 0 && w->notify_sanitized) {
        notify_sanitized(w, s);
    }
    s->sink = w->fill;
    if (pg_sink_add(w->sinks[w->fill], &env, slot_tag(w, s), &why) != 0) {
        if (why.klass == NG_ERR_PERMANENT) {
            dead_letter(w, s, "nanguard.TooLarge", &why);
        } else {
            /* Out of memory: leave it unfinished; a restart replays it. */
            ng_log(NG_LOG_ERROR, "cannot queue the row", "reason", why.message,
                   NULL);
            slot_release(w, s, false);
        }
    }
}

/* ------------------------------------------------------------------------
 * The batch
 */
static void settle_results(worker *w, pg_sink *sink)
{
    for (size_t i = 0; i < pg_sink_result_count(sink); i++) {
        const pg_row_result *r = pg_sink_result(sink, i);
        struct slot *s = slot_of_tag(w, r->tag);
        if (s == NULL) {
            continue;
        }
        if (r->outcome == PG_ROW_REJECTED) {
            ng_error why;
            ng_error_set(&why, NG_ERR_PERMANENT, "", "%s",
                         r->message ? r->message : "refused by PostgreSQL");
            snprintf(why.code, sizeof why.code, "pg_%s", r->sqlstate);
            snprintf(why.sqlstate, sizeof why.sqlstate, "%s", r->sqlstate);
            s->attempts++;
            dead_letter(w, s, "nanguard.PgDataError", &why);
            continue;
        }
        if (r->outcome == PG_ROW_STORED) {
            w->n.stored++;
        } else {
            w->n.duplicates++;
        }
        slot_release(w, s, true);
    }
    pg_sink_results_clear(sink);
}

static void unblock(worker *w)
{
    if (!w->blocked) {
        return;
    }
    uint64_t secs = ng_since_ms(ng_now_ms(), w->blocked_since) / 1000;
    char s[24];
    snprintf(s, sizeof s, "%llu", (unsigned long long)secs);
    ng_log(NG_LOG_INFO, "PostgreSQL is back, resuming", "seconds#", s, NULL);
    w->blocked = false;
    w->critical_sent = false;
    ng_buf_clear(&w->told);
    ng_backoff_reset(&w->backoff);
    consumer_resume(w->cons);
    process_held(w);
}

/* Rows not yet settled in both sinks; only while the writer is idle. */
static size_t pending_rows(const worker *w)
{
    return pg_sink_pending(w->sinks[0]) + pg_sink_pending(w->sinks[1]);
}

/* What a flush of sink idx came to: settles its rows; on failure pauses
 * and schedules a retry of that sink. Returns rc. */
/* The sink is ours again: what it counted that /metrics shows. */
static void note_sink(worker *w, int idx)
{
    pg_sink_stats st;
    pg_sink_get_stats(w->sinks[idx], &st);
    w->connects[idx] = st.connects;
}

static int flush_result(worker *w, int idx, int rc, const ng_error *e,
                        double seconds)
{
    ng_error err = *e;
    uint64_t now = ng_now_ms();
    settle_results(w, w->sinks[idx]); /* all, or those before a failure */
    note_sink(w, idx);
    w->pg_ok = rc == 0;
    if (rc == 0) {
        ng_histogram_observe(&w->write_seconds, seconds);
        w->pg_seen = now;
        if (w->retry == idx) {
            w->retry = -1;
        }
        unblock(w);
        return 0;
    }
    w->retry = idx;
    for (size_t i = 0; i < w->nslots; i++) {
        if (w->slots[i].state == SLOT_BATCH && w->slots[i].sink == idx) {
            w->slots[i].attempts++;
        }
    }
    if (!w->blocked) {
        w->blocked = true;
        w->blocked_since = now;
        consumer_pause(w->cons);
    }
    bool changed = strcmp(err.code, w->block_err.code) != 0;
    w->block_err = err;
    uint64_t delay = err.klass == NG_ERR_CONFIG ? w->retry_max_ms
                                                : ng_backoff_next(&w->backoff);
    w->retry_at = now + delay;
    char d[24];
    snprintf(d, sizeof d, "%llu", (unsigned long long)delay);
    ng_log(changed ? NG_LOG_ERROR : NG_LOG_WARN,
           err.klass == NG_ERR_CONFIG
               ? "PostgreSQL configuration error, partitions paused"
               : "PostgreSQL unavailable, partitions paused",
           "error_code", err.code, "sqlstate", err.sqlstate, "reason",
           err.message, "retry_in_ms#", d, NULL);
    if (!w->critical_sent &&
        (err.klass == NG_ERR_CONFIG ||
         ng_since_ms(now, w->blocked_since) >= w->critical_after_ms)) {
        tell_critical_all(w);
    }
    return -1;
}

/* The end of a connection attempt made with nothing to write (probe_due):
 * it only tells whether PostgreSQL is there; it pauses nothing, as no
 * batch waits on it. */
static void probe_result(worker *w, int idx, int rc, const ng_error *err)
{
    w->probing = false;
    note_sink(w, idx);
    if (rc == 0) {
        w->pg_ok = true;
        w->pg_seen = ng_now_ms();
        ng_backoff_reset(&w->probe_backoff);
        return;
    }
    bool changed = w->pg_ok || strcmp(err->code, w->block_err.code) != 0;
    w->pg_ok = false;
    w->block_err = *err;
    uint64_t delay = ng_backoff_next(&w->probe_backoff);
    w->probe_at = ng_now_ms() + delay;
    char d[24];
    snprintf(d, sizeof d, "%llu", (unsigned long long)delay);
    ng_log(changed ? NG_LOG_WARN : NG_LOG_DEBUG, "PostgreSQL not reachable yet",
           "error_code", err->code, "reason", err->message, "retry_in_ms#", d,
           NULL);
}

/* Takes the writer's result when it has one (waiting up to wait_ms).
 * Returns true when the writer is idle afterwards. */
static bool writer_poll(worker *w, unsigned wait_ms)
{
    pg_sink *sink = NULL;
    int rc = 0;
    ng_error err = {0};
    switch (pg_writer_poll(w->writer, wait_ms, &sink, &rc, &err)) {
    case PG_WRITER_IDLE:
        return true;
    case PG_WRITER_RUNNING:
        return false;
    case PG_WRITER_DONE:
        break;
    }
    int idx = sink == w->sinks[0] ? 0 : 1;
    if (w->probing) {
        probe_result(w, idx, rc, &err);
    } else {
        flush_result(w, idx, rc, &err, pg_writer_last_seconds(w->writer));
    }
    return true;
}

static void writer_wait(worker *w)
{
    while (!writer_poll(w, 100)) {
    }
}

/* Flushes sink idx on this thread (the writer is idle). */
static int flush_now(worker *w, int idx)
{
    ng_error err = {0};
    uint64_t t0 = ng_now_us();
    int rc = pg_sink_flush(w->sinks[idx], &err);
    double took = (double)ng_since_ms(ng_now_us(), t0) / 1e6;
    return flush_result(w, idx, rc, &err, took);
}

/* The sink to write next, when one is due; -1 otherwise. A batch is due
 * when it is full or old (--batch-rows, --batch-bytes, --batch-ms), or,
 * with the writer free, as soon as the consumer has nothing more to give:
 * waiting out --batch-ms then would only add latency (and, at the end of a
 * burst, leave the writer idle with rows in hand). */
static int batch_due(worker *w, uint64_t now, bool drained)
{
    if (w->retry >= 0) {
        return w->blocked && now < w->retry_at ? -1 : w->retry;
    }
    pg_sink *s = w->sinks[w->fill];
    if (pg_sink_pending(s) == 0) {
        return -1;
    }
    return pg_sink_flush_due(s) || (drained && !w->blocked) ? w->fill : -1;
}

/* Starts the next write on the writer thread when one is due and the
 * writer is free; the other sink then takes new rows. drained: the last
 * poll found no message waiting. */
static void write_due(worker *w, uint64_t now, bool drained)
{
    if (!writer_poll(w, 0)) {
        return;
    }
    int idx = batch_due(w, now, drained);
    if (idx < 0) {
        return;
    }
    if (pg_sink_pending(w->sinks[idx]) == 0) {
        /* A retry with no rows left (those of revoked partitions may have
         * been dropped): a flush would not reach the server, so only
         * connect. */
        pg_writer_start_connect(w->writer, w->sinks[idx]);
        return;
    }
    if (idx == w->fill) {
        w->fill = 1 - idx;
    }
    pg_writer_start(w->writer, w->sinks[idx]);
}

/* With nothing to write, the worker still checks PostgreSQL, on the idle
 * sink, so that /readyz tells the truth: when it answered last more than
 * --pg-probe-interval-ms ago, an empty query (pg_sink_ping); when it did
 * not answer (or was never reached), a new connection, with backoff. */
static void probe_due(worker *w, uint64_t now)
{
    if (!writer_poll(w, 0) || w->blocked || w->retry >= 0 ||
        pending_rows(w) > 0) {
        return;
    }
    if (w->pg_ok ? w->probe_interval_ms == 0 ||
                       ng_since_ms(now, w->pg_seen) < w->probe_interval_ms
                 : now < w->probe_at) {
        return;
    }
    w->probing = true;
    pg_writer_start_ping(w->writer, w->sinks[1 - w->fill]);
}

/* Writes every pending batch on this thread, the failed one first.
 * Returns 0 when nothing is pending any more. */
static int flush_all_now(worker *w)
{
    writer_wait(w);
    if (w->retry >= 0 && flush_now(w, w->retry) != 0) {
        return -1;
    }
    for (int i = 0; i < 2; i++) {
        int idx = (w->fill + 1 + i) % 2; /* the older one first */
        if (pg_sink_pending(w->sinks[idx]) > 0 && flush_now(w, idx) != 0) {
            return -1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Offsets and rebalances
 */
/* Stores the commit point of every partition held (of only, when not
 * NULL) with its metadata (filter/handover.h); final: the partitions are
 * being given up. */
static void store_offsets(worker *w,
                          const rd_kafka_topic_partition_list_t *only,
                          bool final)
{
    int64_t now = ng_wall_ms();
    for (size_t i = 0; i < handover_count(w->ho); i++) {
        const char *topic;
        int32_t partition;
        handover_at(w->ho, i, &topic, &partition);
        if (only != NULL && rd_kafka_topic_partition_list_find(
                                only, topic, partition) == NULL) {
            continue;
        }
        int64_t off;
        uint64_t at = 0;
        int in_flight = offsets_head(w->offs, topic, partition, &off, &at);
        if (off < 0) {
            continue; /* nothing taken up since it was assigned */
        }
        char meta[CONSUMER_META_MAX];
        handover_meta(w->ho, topic, partition, off,
                      in_flight ? (int64_t)at : -1, now, final, meta,
                      sizeof meta);
        if (consumer_store(w->cons, topic, partition, off, meta) != 0) {
            ng_log(NG_LOG_ERROR, "out of memory storing an offset", NULL);
        }
    }
}

/* Commits every --commit-interval-ms, and at once when a dead letter
 * waits for its partition to be covered. */
static void commit_due(worker *w, uint64_t now)
{
    if (!w->commit_now &&
        ng_since_ms(now, w->last_commit) < w->commit_interval_ms) {
        return;
    }
    w->commit_now = false;
    w->last_commit = now;
    store_offsets(w, NULL, false);
    consumer_commit_changed(w->cons);
}

/* The broker's answer to a commit: a since= commit covers its partition
 * (filter/handover.h), and the dead letters waiting on it go. */
static void on_committed(void *ctx,
                         const rd_kafka_topic_partition_list_t *parts,
                         rd_kafka_resp_err_t err)
{
    worker *w = ctx;
    for (int i = 0; i < parts->cnt; i++) {
        const rd_kafka_topic_partition_t *p = &parts->elems[i];
        bool ok = err == RD_KAFKA_RESP_ERR_NO_ERROR &&
                  p->err == RD_KAFKA_RESP_ERR_NO_ERROR;
        if (handover_acked(w->ho, p->topic, p->partition, p->metadata,
                           p->metadata_size, ok) &&
            w->ncover > 0) {
            send_covered(w, p->topic, p->partition);
        }
    }
}

/* New partitions: where the group's commits say a previous owner may have
 * dead-lettered messages past its committed offset, read what it left
 * before any message of them is taken up. */
static void on_assign(void *ctx, const rd_kafka_topic_partition_list_t *parts)
{
    worker *w = ctx;
    int64_t since = INT64_MAX;
    int scan = 0;
    for (int i = 0; i < parts->cnt; i++) {
        const rd_kafka_topic_partition_t *p = &parts->elems[i];
        int64_t t = 0;
        int r = handover_assign(w->ho, p->topic, p->partition,
                                p->offset >= 0 ? p->offset : -1, p->metadata,
                                p->metadata_size, &t);
        if (r < 0) {
            ng_log(NG_LOG_ERROR, "out of memory noting a partition", NULL);
        } else if (r == 1) {
            scan++;
            since = t < since ? t : since;
        }
    }
    if (scan == 0) {
        return;
    }
    char n[16], from[24], found_s[24];
    snprintf(n, sizeof n, "%d", scan);
    snprintf(from, sizeof from, "%lld", (long long)since);
    ng_log(NG_LOG_INFO,
           "reading the dead-letter topic for what the previous owner of "
           "these partitions left",
           "partitions#", n, "since_ms#", from, NULL);
    size_t found = 0;
    ng_error err;
    rd_kafka_conf_t *conf = rd_kafka_conf_dup(w->scan_conf);
    if (handover_scan(w->ho, conf, w->dlq_topic, w->notify_topic, since, &found,
                      &err) != 0) {
        ng_log(NG_LOG_WARN,
               "cannot read what the previous owner left; its dead letters "
               "past the committed offset may be sent again",
               "reason", err.message, NULL);
        return;
    }
    snprintf(found_s, sizeof found_s, "%zu", found);
    ng_log(NG_LOG_INFO, "dead letters the previous owner left", "count#",
           found_s, NULL);
}

static bool in_list(const rd_kafka_topic_partition_list_t *parts,
                    const rd_kafka_message_t *m)
{
    for (int i = 0; i < parts->cnt; i++) {
        if (parts->elems[i].partition == m->partition &&
            strcmp(parts->elems[i].topic, rd_kafka_topic_name(m->rkt)) == 0) {
            return true;
        }
    }
    return false;
}

/* Adds a slot's row to the batch again, after the batch was dropped. */
static void requeue(worker *w, struct slot *s)
{
    envelope env;
    ng_error why;
    const char *klass = NULL;
    free(s->thread_id);
    free(s->checkpoint_id);
    free(s->checkpoint_ns);
    s->thread_id = s->checkpoint_id = s->checkpoint_ns = NULL;
    s->sink = w->fill;
    if (read_message(w, s, &env, &why, &klass) != 0 ||
        pg_sink_add(w->sinks[w->fill], &env, slot_tag(w, s), &why) != 0) {
        /* It was read once; only memory can fail now. Replayed later. */
        slot_release(w, s, false);
    }
}

/* Before partitions go: finish what can be finished, store its offsets,
 * and abandon the rest (the next owner replays it). */
static void on_revoke(void *ctx, const rd_kafka_topic_partition_list_t *parts,
                      int lost)
{
    worker *w = ctx;
    writer_wait(w);
    if (!lost && pending_rows(w) > 0) {
        flush_all_now(w);
    }
    if (!lost) {
        outcome_flush(w->out, 10000);
        store_offsets(w, parts, true);
    }
    if (pending_rows(w) > 0) {
        /* The batches did not go through: drop them, and put back the rows
         * of the partitions we keep (sanitized again from the message).
         * w->retry stays: while PostgreSQL is away the retry goes on,
         * only connecting when no row is left to write, so that the
         * worker resumes when it is back (write_due). */
        pg_sink_discard(w->sinks[0]);
        pg_sink_discard(w->sinks[1]);
        for (size_t i = 0; i < w->nslots; i++) {
            struct slot *s = &w->slots[i];
            if (s->state == SLOT_BATCH && !in_list(parts, s->rkm)) {
                requeue(w, s);
            }
        }
    }
    for (size_t i = 0; i < w->nslots; i++) {
        struct slot *s = &w->slots[i];
        if (s->state != SLOT_FREE && in_list(parts, s->rkm)) {
            slot_release(w, s, false);
        }
    }
    size_t keep = 0;
    for (size_t i = 0; i < w->nheld; i++) {
        if (in_list(parts, w->held[i])) {
            rd_kafka_message_destroy(w->held[i]);
        } else {
            w->held[keep++] = w->held[i];
        }
    }
    w->nheld = keep;
    for (int i = 0; i < parts->cnt; i++) {
        offsets_forget(w->offs, parts->elems[i].topic,
                       parts->elems[i].partition);
        handover_forget(w->ho, parts->elems[i].topic,
                        parts->elems[i].partition);
    }
}

/* ------------------------------------------------------------------------
 * Setup and the loop
 */
/* A librdkafka configuration: ours, then the user's -X / kafka.* over it
 * (filter/kafka/kafka_conf.h). */
static rd_kafka_conf_t *kafka_conf(const ng_config *cfg, bool consumer_side,
                                   ng_error *err)
{
    static const char *const consumer_props[][2] = {
        {"partition.assignment.strategy", "cooperative-sticky"},
        {"auto.offset.reset", "earliest"},
        /* Checkpoints are tens of KB to MBs: 8 MB per partition and
         * fetch (librdkafka: 1 MB) halves the fetch requests, and with
         * them the broker's CPU, on a backlog. */
        {"max.partition.fetch.bytes", "8388608"},
        /* consumer lag for /metrics (filter/kafka/stats.h) */
        {"statistics.interval.ms", "5000"},
    };
    /* A dead-letter record carries the consumed value: the producer must
     * take what the consumer does (librdkafka's default is 1 MB), plus
     * room for the key and headers. */
    char max_bytes[24];
    long long want = ng_config_int(cfg, "max-message-bytes") + (1 << 20);
    snprintf(max_bytes, sizeof max_bytes, "%lld",
             want < 1000000      ? 1000000
             : want > 1000000000 ? 1000000000
                                 : want);
    const char *const producer_props[][2] = {
        {"acks", "all"},
        {"linger.ms", "5"},
        {"message.max.bytes", max_bytes},
    };
    return consumer_side
               ? kafka_conf_new(
                     cfg, consumer_props,
                     sizeof consumer_props / sizeof consumer_props[0], err)
               : kafka_conf_new(
                     cfg, producer_props,
                     sizeof producer_props / sizeof producer_props[0], err);
}

static char *first_topic_with(const char *topics, const char *suffix)
{
    size_t n = strcspn(topics, ",");
    size_t len = n + strlen(suffix);
    char *s = malloc(len + 1);
    if (s != NULL) {
        memcpy(s, topics, n);
        strcpy(s + n, suffix);
    }
    return s;
}

/* The status server, when --http-listen names an address. */
static int start_http(worker *w, const char *listen, ng_error *err)
{
    if (listen == NULL || listen[0] == '\0') {
        return 0;
    }
    w->status = ng_status_new(worker_metrics, N_METRICS, STALE_AFTER_MS);
    if (w->status == NULL) {
        return ng_error_set(err, NG_ERR_CONFIG, "oom", "out of memory");
    }
    w->http = ng_status_server_start(listen, w->status, err);
    if (w->http == NULL) {
        return -1;
    }
    char port[16];
    snprintf(port, sizeof port, "%d", ng_status_server_port(w->http));
    ng_log(NG_LOG_INFO, "serving /metrics, /healthz and /readyz", "listen",
           listen, "port#", port, NULL);
    return 0;
}

worker *worker_new(const ng_config *cfg, ng_error *err)
{
    const char *brokers = ng_config_get(cfg, "brokers");
    const char *topics = ng_config_get(cfg, "topic");
    if (brokers == NULL || *brokers == '\0' || topics == NULL ||
        *topics == '\0') {
        ng_error_set(err, NG_ERR_CONFIG, "usage",
                     "--brokers and --topic are required");
        return NULL;
    }
    const char *conflict = ng_config_get(cfg, "on-conflict");
    if (strcmp(conflict, "nothing") != 0 && strcmp(conflict, "update") != 0) {
        ng_error_set(err, NG_ERR_CONFIG, "usage",
                     "--on-conflict wants nothing or update, not '%s'",
                     conflict);
        return NULL;
    }
    long long depth = ng_config_int(cfg, "max-depth");
    if (depth < 1 || depth > SANITIZE_MAX_DEPTH_LIMIT) {
        ng_error_set(err, NG_ERR_CONFIG, "usage",
                     "--max-depth wants a number from 1 to %d "
                     "(PostgreSQL's jsonb refuses deeper nesting), not %lld",
                     SANITIZE_MAX_DEPTH_LIMIT, depth);
        return NULL;
    }
    worker *w = calloc(1, sizeof *w);
    if (w == NULL) {
        ng_error_set(err, NG_ERR_CONFIG, "oom", "out of memory");
        return NULL;
    }
    w->topic_list = strdup(topics);
    const char *dlq = ng_config_get(cfg, "dead-letter-topic");
    const char *notify = ng_config_get(cfg, "notify-topic");
    w->dlq_topic = dlq ? strdup(dlq) : first_topic_with(topics, ".dlq");
    char *notify_topic =
        notify ? strdup(notify) : first_topic_with(topics, ".notifications");
    w->flush_error_message = strdup(ng_config_get(cfg, "flush-error-message"));
    w->critical_message = strdup(ng_config_get(cfg, "critical-message"));
    w->max_message_bytes = (size_t)ng_config_int(cfg, "max-message-bytes");
    w->dlq_limit = DLQ_LIMIT_DEFAULT;
    w->critical_after_ms = (uint64_t)ng_config_int(cfg, "critical-after-ms");
    w->retry_max_ms = (uint64_t)ng_config_int(cfg, "retry-max-ms");
    w->shutdown_timeout_ms =
        (uint64_t)ng_config_int(cfg, "shutdown-timeout-ms");
    w->stats_interval_ms = (uint64_t)ng_config_int(cfg, "stats-interval-ms");
    w->notify_sanitized = ng_config_flag(cfg, "notify-sanitized");
    w->require_complete = ng_config_flag(cfg, "require-complete");
    ng_backoff_init(&w->backoff,
                    (uint64_t)ng_config_int(cfg, "retry-initial-ms"),
                    w->retry_max_ms, NULL, NULL);
    ng_backoff_init(&w->produce_backoff, 100, 5000, NULL, NULL);
    w->probe_interval_ms = (uint64_t)ng_config_int(cfg, "pg-probe-interval-ms");
    ng_histogram_init(&w->write_seconds, write_buckets,
                      sizeof write_buckets / sizeof write_buckets[0]);
    ng_histogram_init(&w->latency_seconds, latency_buckets,
                      sizeof latency_buckets / sizeof latency_buckets[0]);
    ng_backoff_init(&w->probe_backoff,
                    (uint64_t)ng_config_int(cfg, "retry-initial-ms"),
                    w->retry_max_ms, NULL, NULL);
    ng_ratelimit_init(&w->log_dead_letter, "dead-lettering message", LOG_BURST,
                      LOG_WINDOW_MS);
    ng_ratelimit_init(&w->log_retry, "not delivered, will retry", LOG_BURST,
                      LOG_WINDOW_MS);
    ng_ratelimit_init(&w->log_incomplete, "incomplete checkpoint stored",
                      LOG_BURST, LOG_WINDOW_MS);

    /* Paths only for the checkpoint_sanitized events. */
    sanitize_options so = {.max_depth = (size_t)ng_config_int(cfg, "max-depth"),
                           .no_paths = !w->notify_sanitized};
    w->san = sanitize_new(&so);
    w->reader = envelope_reader_new(so.max_depth);
    w->offs = offsets_new();
    w->ho = handover_new();
    w->notify_topic = notify_topic;
    w->commit_interval_ms = (uint64_t)ng_config_int(cfg, "commit-interval-ms");
    if (w->topic_list == NULL || w->dlq_topic == NULL || notify_topic == NULL ||
        w->flush_error_message == NULL || w->critical_message == NULL ||
        w->san == NULL || w->reader == NULL || w->offs == NULL ||
        w->ho == NULL) {
        ng_error_set(err, NG_ERR_CONFIG, "oom", "out of memory");
        worker_free(w);
        return NULL;
    }

    pg_sink_options po = {
        .conninfo = ng_config_get(cfg, "pg"),
        .table = ng_config_get(cfg, "table"),
        .on_conflict = strcmp(conflict, "update") == 0
                           ? PG_SINK_ON_CONFLICT_UPDATE
                           : PG_SINK_ON_CONFLICT_NOTHING,
        .create_table = ng_config_flag(cfg, "create-table"),
        .batch_rows = (size_t)ng_config_int(cfg, "batch-rows"),
        .batch_bytes = (size_t)ng_config_int(cfg, "batch-bytes"),
        .batch_ms = (unsigned)ng_config_int(cfg, "batch-ms"),
    };
    w->retry = -1;
    w->sinks[0] = pg_sink_new(&po, err);
    w->sinks[1] = w->sinks[0] ? pg_sink_new(&po, err) : NULL;
    if (w->sinks[1] != NULL) {
        /* Two batches, one connection: one fills while the other is
         * written, and only one is written at a time. */
        pg_sink_share(w->sinks[1], w->sinks[0]);
        w->writer = pg_writer_new(err);
    }
    const char *instance = ng_config_get(cfg, "instance-id");
    rd_kafka_conf_t *pconf = w->writer ? kafka_conf(cfg, false, err) : NULL;
    outcome_options oo = {.dead_letter_topic = w->dlq_topic,
                          .notify_topic = notify_topic,
                          .worker = instance ? instance : "nanguard"};
    w->out = pconf ? outcome_new(pconf, &oo, on_ack, w, err) : NULL;
    w->scan_conf = w->out ? kafka_conf_new(cfg, NULL, 0, err) : NULL;
    rd_kafka_conf_t *cconf = w->scan_conf ? kafka_conf(cfg, true, err) : NULL;
    consumer_options co = {.group = ng_config_get(cfg, "group"),
                           .instance_id = instance,
                           .on_revoke = on_revoke,
                           .on_assign = on_assign,
                           .on_committed = on_committed,
                           .ctx = w};
    w->cons = cconf ? consumer_new(cconf, &co, err) : NULL;
    if (w->cons == NULL || consumer_subscribe(w->cons, topics, err) != 0 ||
        start_http(w, ng_config_get(cfg, "http-listen"), err) != 0) {
        worker_free(w);
        return NULL;
    }
    return w;
}

void worker_free(worker *w)
{
    if (w == NULL) {
        return;
    }
    ng_status_server_stop(w->http); /* first: it reads w->status */
    ng_status_free(w->status);
    consumer_free(w->cons);
    for (size_t i = 0; i < w->nslots; i++) {
        if (w->slots[i].state != SLOT_FREE) {
            slot_release(w, &w->slots[i], false);
        }
    }
    for (size_t i = 0; i < w->nheld; i++) {
        rd_kafka_message_destroy(w->held[i]);
    }
    outcome_free(w->out);
    pg_writer_free(w->writer); /* before the sinks it may be writing */
    pg_sink_free(w->sinks[1]); /* first: it uses sinks[0]'s connection */
    pg_sink_free(w->sinks[0]);
    sanitize_free(w->san);
    envelope_reader_free(w->reader);
    offsets_free(w->offs);
    handover_free(w->ho);
    if (w->scan_conf != NULL) {
        rd_kafka_conf_destroy(w->scan_conf);
    }
    free(w->notify_topic);
    free(w->slots);
    free(w->free_list);
    free(w->held);
    free(w->topic_list);
    free(w->dlq_topic);
    free(w->flush_error_message);
    free(w->critical_message);
    ng_buf_free(&w->told);
    ng_buf_free(&w->scratch);
    ng_buf_free(&w->extra);
    free(w);
}

/* Why the worker cannot do its work now (NULL: it can): /readyz. */
static const char *not_ready(const worker *w, char *buf, size_t n)
{
    if (w->stopping) {
        return "stopping";
    }
    if (!w->pg_ok) {
        /* Short: anyone who reaches the port reads it, so no host, port
         * or user name; the log has the whole message. */
        snprintf(buf, n, "PostgreSQL %s (%s)",
                 w->block_err.klass == NG_ERR_CONFIG ? "needs attention"
                                                     : "unavailable",
                 w->block_err.code[0] ? w->block_err.code
                                      : "not connected yet");
        return buf;
    }
    if (!consumer_in_group(w->cons)) {
        return "not in the consumer group yet";
    }
    return NULL;
}

/* The families beyond the table: build info, lag per partition, the two
 * histograms (common/status.h). */
static int metrics_extra(worker *w, ng_buf *out)
{
    char labels[512];
    int pq = PQlibVersion();
    snprintf(labels, sizeof labels,
             "version=\"%s\",librdkafka=\"%s\",libpq=\"%d.%d\"",
             NANGUARD_VERSION, rd_kafka_version_str(), pq / 10000, pq % 10000);
    int rc = ng_metrics_header(out, "nanguard_build_info",
                               "the running build: 1, with versions as labels",
                               "gauge") ||
             ng_metrics_series(out, "nanguard_build_info", labels, 1);
    rc = rc || ng_metrics_header(out, "nanguard_dead_lettered_by_code_total",
                                 "messages sent to the dead-letter topic, by "
                                 "error code (nanguard.error.code)",
                                 "counter");
    for (size_t i = 0; i < w->ndlq_codes && rc == 0; i++) {
        snprintf(labels, sizeof labels, "code=\"%s\"", w->dlq_codes[i].code);
        rc = ng_metrics_series(out, "nanguard_dead_lettered_by_code_total",
                               labels, (double)w->dlq_codes[i].n);
    }
    rc = rc ||
         ng_metrics_header(out, "nanguard_checkpoints_incomplete_total",
                           "checkpoints stored although channel_versions "
                           "names a channel the envelope did not hold",
                           "counter") ||
         ng_metrics_series(out, "nanguard_checkpoints_incomplete_total", NULL,
                           (double)w->n.incomplete) ||
         ng_metrics_header(out, "nanguard_checkpoints_without_step_total",
                           "envelopes whose metadata has no step (LangGraph "
                           "cannot resume from them)",
                           "counter") ||
         ng_metrics_series(out, "nanguard_checkpoints_without_step_total", NULL,
                           (double)w->n.without_step);
    size_t nlag = consumer_lag_count(w->cons);
    rc = rc || ng_metrics_header(out, "nanguard_consumer_lag",
                                 "messages after the committed offset, per "
                                 "partition held (librdkafka statistics)",
                                 "gauge");
    for (size_t i = 0; i < nlag && rc == 0; i++) {
        const kafka_partition_lag *l = consumer_lag_at(w->cons, i);
        snprintf(labels, sizeof labels, "topic=\"%s\",partition=\"%d\"",
                 l->topic, (int)l->partition);
        rc = ng_metrics_series(out, "nanguard_consumer_lag", labels,
                               (double)l->lag);
    }
    return rc ||
           ng_histogram_write(out, &w->write_seconds,
                              "nanguard_postgres_write_seconds", NULL,
                              "time to write a batch to PostgreSQL "
                              "(batches that went through)") ||
           ng_histogram_write(out, &w->latency_seconds,
                              "nanguard_message_latency_seconds", NULL,
                              "from a message's Kafka timestamp to its "
                              "offset being stored for commit");
}

/* Hands the counters and readiness to the HTTP server, at most every
 * STATUS_EVERY_MS unless forced. */
static void publish(worker *w, uint64_t now, bool force)
{
    if (w->status == NULL ||
        (!force && ng_since_ms(now, w->last_status) < STATUS_EVERY_MS)) {
        return;
    }
    _Static_assert(SANITIZE_KIND_COUNT == 6, "one metric per kind");
    w->last_status = now;
    double v[N_METRICS];
    size_t i = 0;
    v[i++] = (double)w->n.consumed;
    v[i++] = (double)w->n.bytes;
    v[i++] = (double)w->n.stored;
    v[i++] = (double)w->n.duplicates;
    v[i++] = (double)w->n.dead_lettered;
    v[i++] = (double)w->n.tombstones;
    v[i++] = (double)w->n.critical;
    for (int k = 0; k < SANITIZE_KIND_COUNT; k++) {
        v[i++] = (double)w->n.by_kind[k];
    }
    v[i++] = (double)offsets_in_flight(w->offs);
    v[i++] = (double)w->nheld;
    v[i++] = (double)consumer_assigned_now(w->cons);
    v[i++] = w->pg_ok ? 1 : 0;
    v[i++] = w->blocked ? (double)ng_since_ms(now, w->blocked_since) / 1000 : 0;
    uint64_t connects = w->connects[0] + w->connects[1];
    v[i++] = connects > 1 ? (double)(connects - 1) : 0;
    v[i++] = (double)w->dlq_produce_failures;
    v[i++] = (double)w->notify_produce_failures;
    v[i++] = (double)w->n.values_omitted;
    v[i++] = (double)w->n.dlq_lost;
    v[i++] = (double)w->n.handed_over;
    ng_buf_clear(&w->extra);
    if (metrics_extra(w, &w->extra) == 0) {
        ng_status_set_extra(w->status, w->extra.data, w->extra.len);
    }
    char buf[sizeof w->block_err.message + 64];
    const char *why = not_ready(w, buf, sizeof buf);
    ng_status_publish(w->status, v, why == NULL, why, now);
}

static void log_stats(worker *w, const char *msg)
{
    uint64_t rewrites = 0;
    for (int k = 0; k < SANITIZE_KIND_COUNT; k++) {
        rewrites += w->n.by_kind[k];
    }
    char f[8][24];
    uint64_t v[8] = {w->n.consumed,
                     w->n.stored,
                     w->n.duplicates,
                     w->n.dead_lettered,
                     w->n.tombstones,
                     rewrites,
                     (uint64_t)offsets_in_flight(w->offs),
                     w->n.handed_over};
    for (int i = 0; i < 8; i++) {
        snprintf(f[i], sizeof f[i], "%llu", (unsigned long long)v[i]);
    }
    ng_log(NG_LOG_INFO, msg, "consumed#", f[0], "stored#", f[1], "duplicates#",
           f[2], "dead_lettered#", f[3], "tombstones#", f[4], "rewrites#", f[5],
           "in_flight#", f[6], "handed_over#", f[7], NULL);
}

/* Stop fetching, write what is pending, wait for the broker, commit. */
static int shut_down(worker *w)
{
    ng_log(NG_LOG_INFO, "stopping: flushing and committing", NULL);
    w->stopping = true;
    publish(w, ng_now_ms(), true);
    consumer_pause(w->cons);
    uint64_t deadline = ng_now_ms() + w->shutdown_timeout_ms;
    while (ng_now_ms() < deadline) {
        publish(w, ng_now_ms(), false);
        writer_wait(w);
        if (pending_rows(w) > 0 && ng_now_ms() >= w->retry_at) {
            flush_all_now(w);
        }
        outcome_poll(w->out, 50);
        retry_due(w, ng_now_ms());
        commit_due(w, ng_now_ms());
        if (pending_rows(w) == 0 && offsets_in_flight(w->offs) == 0) {
            break;
        }
        /* Keep serving the group while we wait. */
        rd_kafka_message_t *m = consumer_poll(w->cons, 0);
        if (m != NULL) {
            hold(w, m);
        }
    }
    outcome_flush(w->out, 5000);
    store_offsets(w, NULL, true);
    if (offsets_in_flight(w->offs) > 0) {
        char n[24];
        snprintf(n, sizeof n, "%zu", offsets_in_flight(w->offs));
        ng_log(NG_LOG_WARN,
               "stopping with messages unfinished; they will be replayed",
               "count#", n, NULL);
    }
    ng_error err;
    if (consumer_commit(w->cons, &err) != 0) {
        ng_log(NG_LOG_WARN, "final commit failed", "reason", err.message, NULL);
    }
    log_suppressed(&w->log_dead_letter, ng_ratelimit_take(&w->log_dead_letter));
    log_suppressed(&w->log_retry, ng_ratelimit_take(&w->log_retry));
    log_suppressed(&w->log_incomplete, ng_ratelimit_take(&w->log_incomplete));
    log_stats(w, "stopped");
    return 0;
}

/* Says at start whether the dead-letter topic takes records as large as
 * the messages consumed; when it does not, the larger dead letters go
 * without their value (too_large()). */
static void check_dead_letter_size(worker *w)
{
    int64_t topic_max = 0;
    ng_error err;
    char have[24], want[24];
    snprintf(want, sizeof want, "%zu", w->max_message_bytes);
    if (outcome_dead_letter_max_bytes(w->out, 3000, &topic_max, &err) != 0) {
        ng_log(NG_LOG_WARN,
               "cannot read the dead-letter topic's max.message.bytes; a "
               "dead letter it refuses for its size goes without its value",
               "topic", w->dlq_topic, "reason", err.message, NULL);
        return;
    }
    w->dlq_limit = (size_t)topic_max;
    snprintf(have, sizeof have, "%lld", (long long)topic_max);
    if (topic_max < (int64_t)w->max_message_bytes) {
        ng_log(NG_LOG_WARN,
               "the dead-letter topic takes smaller records than the worker "
               "consumes: a larger dead letter goes without its value "
               "(headers nanguard.value.omitted, nanguard.value.sha256); to "
               "keep values, raise the topic's max.message.bytes to "
               "max_message_bytes",
               "topic", w->dlq_topic, "topic_max_message_bytes#", have,
               "max_message_bytes#", want, NULL);
    } else {
        ng_log(NG_LOG_INFO, "the dead-letter topic takes the largest messages",
               "topic", w->dlq_topic, "topic_max_message_bytes#", have,
               "max_message_bytes#", want, NULL);
    }
}

int worker_run(worker *w, volatile sig_atomic_t *stop)
{
    ng_error err;
    w->pg_ok = pg_sink_connect(w->sinks[0], &err) == 0; /* sinks[1] shares */
    w->pg_seen = ng_now_ms();
    note_sink(w, 0);
    if (!w->pg_ok) {
        w->block_err = err;
        w->probe_at = ng_now_ms() + ng_backoff_next(&w->probe_backoff);
        if (err.klass == NG_ERR_CONFIG) {
            ng_log(NG_LOG_ERROR, "PostgreSQL configuration error", "reason",
                   err.message, "sqlstate", err.sqlstate, NULL);
        } else {
            ng_log(NG_LOG_WARN, "PostgreSQL not reachable yet", "reason",
                   err.message, NULL);
        }
    }
    ng_log(NG_LOG_INFO, "worker started", "topics", w->topic_list,
           "dead_letter_topic", w->dlq_topic, NULL);
    check_dead_letter_size(w);
    w->last_stats = ng_now_ms();
    while (!*stop) {
        bool drained = false;
        if (pg_writer_busy(w->writer) && pg_sink_flush_due(w->sinks[w->fill])) {
            /* The next batch is full while the last one is still being
             * written: wait for the writer rather than read more. */
            writer_poll(w, 20);
        } else {
            /* Short polls while work is open, so delivery reports (served
             * after the consumer poll) and batches are not held up. */
            /* (busy first: the writer's sink is not ours to read) */
            int timeout = pg_writer_busy(w->writer) || pending_rows(w) > 0 ||
                                  outcome_in_flight(w->out) > 0 || w->nretry > 0
                              ? 10
                              : 100;
            rd_kafka_message_t *m = consumer_poll(w->cons, timeout);
            if (m == NULL) {
                drained = true;
            } else if (w->blocked) {
                hold(w, m);
            } else {
                process(w, m);
            }
        }
        uint64_t now = ng_now_ms();
        outcome_poll(w->out, 0);
        retry_due(w, now);
        write_due(w, now, drained);
        probe_due(w, now);
        if (w->blocked && !w->critical_sent &&
            ng_since_ms(now, w->blocked_since) >= w->critical_after_ms) {
            tell_critical_all(w);
        }
        commit_due(w, now);
        publish(w, now, false);
        if (w->stats_interval_ms > 0 &&
            ng_since_ms(now, w->last_stats) >= w->stats_interval_ms) {
            w->last_stats = now;
            log_stats(w, "progress");
        }
    }
    return shut_down(w);
}
