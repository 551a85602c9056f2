/* status.c - metrics and health of a running process. */
#include "common/status.h"

#include "common/json_write.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ng_status {
    pthread_mutex_t mu;
    const ng_metric *metrics;
    size_t n;
    double *values;
    uint64_t stale_after_ms;
    bool published; /* anything yet */
    bool ready;
    char reason[256];
    uint64_t last_turn;
    ng_buf extra; /* ng_status_set_extra */
};

ng_status *ng_status_new(const ng_metric *metrics, size_t n,
                         uint64_t stale_after_ms)
{
    ng_status *st = calloc(1, sizeof *st);
    if (st == NULL) {
        return NULL;
    }
    st->values = calloc(n ? n : 1, sizeof *st->values);
    if (st->values == NULL || pthread_mutex_init(&st->mu, NULL) != 0) {
        free(st->values);
        free(st);
        return NULL;
    }
    st->metrics = metrics;
    st->n = n;
    st->stale_after_ms = stale_after_ms;
    snprintf(st->reason, sizeof st->reason, "starting");
    return st;
}

void ng_status_free(ng_status *st)
{
    if (st == NULL) {
        return;
    }
    pthread_mutex_destroy(&st->mu);
    ng_buf_free(&st->extra);
    free(st->values);
    free(st);
}

void ng_status_publish(ng_status *st, const double *values, bool ready,
                       const char *reason, uint64_t now_ms)
{
    pthread_mutex_lock(&st->mu);
    memcpy(st->values, values, st->n * sizeof *values);
    st->published = true;
    st->ready = ready;
    snprintf(st->reason, sizeof st->reason, "%s",
             ready ? "" : (reason ? reason : "not ready"));
    st->last_turn = now_ms;
    pthread_mutex_unlock(&st->mu);
}

/* A value as Prometheus writes it: integers without a point. */
static int put_value(ng_buf *out, double v)
{
    char num[40];
    if (v == floor(v) && fabs(v) < 1e15) {
        snprintf(num, sizeof num, "%.0f", v);
    } else {
        snprintf(num, sizeof num, "%.17g", v);
    }
    return ng_buf_append(out, num, strlen(num));
}

int ng_metrics_header(ng_buf *out, const char *name, const char *help,
                      const char *type)
{
    char line[512];
    int len = snprintf(line, sizeof line, "# HELP %s %s\n# TYPE %s %s\n", name,
                       help, name, type);
    if (len < 0 || (size_t)len >= sizeof line) {
        return -1;
    }
    return ng_buf_append(out, line, (size_t)len);
}

static int put_header(ng_buf *out, const char *name, const char *help,
                      ng_metric_kind kind)
{
    return ng_metrics_header(out, name, help,
                             kind == NG_METRIC_COUNTER ? "counter" : "gauge");
}

int ng_metrics_series(ng_buf *out, const char *name, const char *labels,
                      double v)
{
    if (ng_buf_append(out, name, strlen(name)) != 0) {
        return -1;
    }
    if (labels != NULL && labels[0] != '\0' &&
        (ng_buf_putc(out, '{') != 0 ||
         ng_buf_append(out, labels, strlen(labels)) != 0 ||
         ng_buf_putc(out, '}') != 0)) {
        return -1;
    }
    if (ng_buf_putc(out, ' ') != 0 || put_value(out, v) != 0) {
        return -1;
    }
    return ng_buf_putc(out, '\n');
}

int ng_status_metrics(ng_status *st, ng_buf *out)
{
    int rc = 0;
    pthread_mutex_lock(&st->mu);
    rc |= put_header(out, "nanguard_ready",
                     "1 when the process can do its work now (see /readyz)",
                     NG_METRIC_GAUGE);
    rc |= ng_metrics_series(out, "nanguard_ready", NULL, st->ready ? 1 : 0);
    for (size_t i = 0; i < st->n && rc == 0; i++) {
        const ng_metric *m = &st->metrics[i];
        if (i == 0 || strcmp(m->name, st->metrics[i - 1].name) != 0) {
            rc |= put_header(out, m->name, m->help, m->kind);
        }
        rc |= ng_metrics_series(out, m->name, m->labels, st->values[i]);
    }
    if (rc == 0 && st->extra.len > 0) {
        rc |= ng_buf_append(out, st->extra.data, st->extra.len);
    }
    pthread_mutex_unlock(&st->mu);
    return rc == 0 ? 0 : -1;
}

int ng_status_health(ng_status *st, bool readiness, uint64_t now_ms,
                     ng_buf *out)
{
    pthread_mutex_lock(&st->mu);
    uint64_t age =
        st->published && now_ms > st->last_turn ? now_ms - st->last_turn : 0;
    bool alive = !st->published || age <= st->stale_after_ms;
    char reason[300] = "";
    if (!alive) {
        snprintf(reason, sizeof reason,
                 "the main loop has not turned for %llu ms",
                 (unsigned long long)age);
    } else if (readiness && !st->ready) {
        snprintf(reason, sizeof reason, "%s", st->reason);
    }
    bool ok = alive && (!readiness || st->ready);
    pthread_mutex_unlock(&st->mu);

    int rc = ng_json_raw(out, ok ? "{\"status\":\"ok\""
                                 : "{\"status\":\"unavailable\"");
    if (!ok) {
        rc |= ng_json_raw(out, ",\"reason\":");
        rc |= ng_json_cstr(out, reason);
    }
    rc |= ng_json_raw(out, ",\"last_turn_ms\":");
    rc |= ng_json_u64(out, age);
    rc |= ng_json_raw(out, "}\n");
    if (rc != 0) {
        return -1;
    }
    return ok ? 200 : 503;
}

int ng_status_set_extra(ng_status *st, const char *text, size_t len)
{
    ng_buf copy = {0};
    if (len > 0 && ng_buf_append(&copy, text, len) != 0) {
        ng_buf_free(&copy);
        return -1;
    }
    pthread_mutex_lock(&st->mu);
    ng_buf old = st->extra;
    st->extra = copy;
    pthread_mutex_unlock(&st->mu);
    ng_buf_free(&old);
    return 0;
}

void ng_histogram_init(ng_histogram *h, const double *bounds, size_t n)
{
    memset(h, 0, sizeof *h);
    h->bounds = bounds;
    h->n = n < NG_HISTOGRAM_MAX_BUCKETS ? n : NG_HISTOGRAM_MAX_BUCKETS;
}

void ng_histogram_observe(ng_histogram *h, double v)
{
    size_t i = 0;
    while (i < h->n && v > h->bounds[i]) {
        i++;
    }
    h->counts[i]++;
    h->sum += v;
    h->count++;
}

int ng_histogram_write(ng_buf *out, const ng_histogram *h, const char *name,
                       const char *labels, const char *help)
{
    char series[256], lbl[512];
    const char *sep = labels != NULL && labels[0] != '\0' ? "," : "";
    const char *pre = sep[0] ? labels : "";
    int rc = ng_metrics_header(out, name, help, "histogram");
    snprintf(series, sizeof series, "%s_bucket", name);
    uint64_t cum = 0;
    for (size_t i = 0; i <= h->n && rc == 0; i++) {
        cum += h->counts[i];
        if (i < h->n) {
            snprintf(lbl, sizeof lbl, "%s%sle=\"%g\"", pre, sep, h->bounds[i]);
        } else {
            snprintf(lbl, sizeof lbl, "%s%sle=\"+Inf\"", pre, sep);
        }
        rc |= ng_metrics_series(out, series, lbl, (double)cum);
    }
    snprintf(series, sizeof series, "%s_sum", name);
    rc |= ng_metrics_series(out, series, labels, h->sum);
    snprintf(series, sizeof series, "%s_count", name);
    rc |= ng_metrics_series(out, series, labels, (double)h->count);
    return rc == 0 ? 0 : -1;
}

int ng_status_answer(ng_status *st, const char *url, uint64_t now_ms,
                     ng_buf *out, const char **type)
{
    *type = "application/json";
    if (strcmp(url, "/metrics") == 0) {
        *type = "text/plain; version=0.0.4; charset=utf-8";
        return ng_status_metrics(st, out) == 0 ? 200 : -1;
    }
    if (strcmp(url, "/healthz") == 0 || strcmp(url, "/livez") == 0) {
        return ng_status_health(st, false, now_ms, out);
    }
    if (strcmp(url, "/readyz") == 0) {
        return ng_status_health(st, true, now_ms, out);
    }
    return 0;
}
