/* status.h - what a running process shows its operators: its metrics, as
 * Prometheus text, and its health (alive, ready, and why not).
 *
 * One handle per process. The worker's thread publishes a whole set of
 * values at a time; the HTTP server's threads read (common/status_server.h).
 * A mutex sits between them; readers never see half a set.
 *
 *   alive  the publisher turned within the last stale_after_ms
 *          (a stuck main loop fails liveness, so the process is restarted)
 *   ready  what the publisher said last: it can do its work now */
#ifndef NANGUARD_STATUS_H
#define NANGUARD_STATUS_H

#include "common/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { NG_METRIC_COUNTER, NG_METRIC_GAUGE } ng_metric_kind;

/* One time series. Series of one name (differing labels) sit next to each
 * other in the table; the first one's help and kind are used. */
typedef struct {
    const char *name;   /* nanguard_messages_consumed_total */
    const char *labels; /* kind="nan", or NULL */
    ng_metric_kind kind;
    const char *help;
} ng_metric;

typedef struct ng_status ng_status;

/* metrics is kept (not copied): a static table. NULL when out of memory. */
ng_status *ng_status_new(const ng_metric *metrics, size_t n,
                         uint64_t stale_after_ms);
void ng_status_free(ng_status *st);

/* Publishes the values (one per metric, in table order), readiness (reason:
 * why not, NULL when ready) and a heartbeat at now_ms (a monotonic clock). */
void ng_status_publish(ng_status *st, const double *values, bool ready,
                       const char *reason, uint64_t now_ms);

/* Appends the Prometheus text exposition (format 0.0.4) of the last
 * published values, with nanguard_up and nanguard_ready. Returns 0, or -1
 * when out of memory. */
int ng_status_metrics(ng_status *st, ng_buf *out);

/* Appends {"status":"ok"|"unavailable","reason":...,"last_turn_ms":N} for
 * liveness (readiness false) or readiness (true), and returns the HTTP
 * status: 200, or 503 when not alive / not ready; -1 when out of memory. */
int ng_status_health(ng_status *st, bool readiness, uint64_t now_ms,
                     ng_buf *out);

/* The answer to a GET of url when it is one of the status paths: /metrics
 * (Prometheus text), /healthz or /livez (liveness), /readyz (readiness).
 * Appends the body to out, sets *type to its media type and returns the
 * HTTP status; returns 0 when url is none of them, -1 when out of memory.
 * Every HTTP server of the project answers these paths with it. */
int ng_status_answer(ng_status *st, const char *url, uint64_t now_ms,
                     ng_buf *out, const char **type);

/* Replaces the text shown after the table's series in /metrics: families
 * whose series come and go (one per partition) or that are not one value
 * (histograms), written by their owner with the helpers below. The text
 * is copied. Returns 0, or -1 when out of memory (the old text stays). */
int ng_status_set_extra(ng_status *st, const char *text, size_t len);

/* Appends "# HELP name help" and "# TYPE name type" lines (type: counter,
 * gauge or histogram). Returns 0, or -1 when out of memory. */
int ng_metrics_header(ng_buf *out, const char *name, const char *help,
                      const char *type);
/* Appends "name{labels} value" (no braces when labels is NULL or ""). */
int ng_metrics_series(ng_buf *out, const char *name, const char *labels,
                      double v);

/* A Prometheus histogram filled by one thread: counts per bucket (upper
 * bounds, ascending; +Inf is implied), the sum and the count of what was
 * observed. No allocation. */
#define NG_HISTOGRAM_MAX_BUCKETS 16
typedef struct {
    const double *bounds; /* kept, not copied: a static table */
    size_t n;
    uint64_t counts[NG_HISTOGRAM_MAX_BUCKETS + 1]; /* per bucket, not summed */
    double sum;
    uint64_t count;
} ng_histogram;

/* n is at most NG_HISTOGRAM_MAX_BUCKETS (more are ignored). */
void ng_histogram_init(ng_histogram *h, const double *bounds, size_t n);
void ng_histogram_observe(ng_histogram *h, double v);
/* Appends the family: header, name_bucket{le="..."} lines (cumulative, the
 * last one le="+Inf"), name_sum and name_count. labels (NULL for none)
 * go before le on every line. Returns 0, or -1 when out of memory. */
int ng_histogram_write(ng_buf *out, const ng_histogram *h, const char *name,
                       const char *labels, const char *help);

#endif
