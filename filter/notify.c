/* notify.c - `nanguard notify`: the notification topic to browsers, as
 * Server-Sent Events, with the reference banner page.
 *
 * Two threads. The main one reads the topic (filter/kafka/reader.h: every
 * partition assigned, no group, from the first record of the backlog by
 * the broker's time index, following) and adds each record to the hub,
 * which hands it to the streams of its thread. libmicrohttpd's thread (one
 * epoll loop for every connection) serves the requests; a stream with
 * nothing to send is suspended until the hub wakes it, so an idle stream
 * costs no CPU between heartbeats. */
#define _POSIX_C_SOURCE 200809L
#include "filter/notify.h"

#include "common/buf.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/ratelimit.h"
#include "common/status.h"
#include "common/status_server.h"
#include "filter/kafka/kafka_conf.h"
#include "filter/kafka/reader.h"
#include "filter/notify_hub.h"
#include "filter/notify_ui.h"

#include <librdkafka/rdkafka.h>
#include <microhttpd.h>
#include <netdb.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <yajl/yajl_tree.h>

const ng_option notify_settings[] = {
    {"brokers", NG_OPT_STRING, NULL,
     "Kafka bootstrap servers, HOST:PORT[,...] (required)"},
    {"topic", NG_OPT_STRING, NULL, "the notification topic (required)"},
    {"http-listen", NG_OPT_STRING, "127.0.0.1:8090",
     "serve on HOST:PORT ([IPv6]:PORT; :PORT: every interface; port 0: a "
     "free one)"},
    {"backlog", NG_OPT_STRING, "24h",
     "what a new stream gets first: the events of this long ago on "
     "(N[ms|s|m|h|d])"},
    {"backlog-max-bytes", NG_OPT_INT, "67108864",
     "events kept in memory for new and resumed streams, at most"},
    {"token-secret-file", NG_OPT_STRING, NULL,
     "a stream needs token=hex(HMAC-SHA256(secret, thread_id)); the secret "
     "is the file's first line"},
    {"allow-origin", NG_OPT_STRING, NULL,
     "CORS: the origin(s) allowed to read streams, ORIGIN[,ORIGIN] or *"},
    {"insecure-public", NG_OPT_FLAG, "false",
     "serve a non-loopback address without --token-secret-file"},
    {"max-connections", NG_OPT_INT, "10000",
     "streams open at once; beyond: 503"},
    {"client-buffer-bytes", NG_OPT_INT, "262144",
     "what may wait for one stream; a client that does not read beyond it "
     "is dropped"},
    {"heartbeat-ms", NG_OPT_INT, "15000",
     "a comment on idle streams this often (keeps proxies from closing them)"},
    {"retry-ms", NG_OPT_INT, "3000",
     "the retry: field: how long a browser waits to reconnect"},
    {"support-url", NG_OPT_STRING, "mailto:support@example.com",
     "where the page's Contact Support button leads (http, https or mailto)"},
    {"log-level", NG_OPT_STRING, "info", "debug, info, warn or error"},
};
const size_t notify_settings_count =
    sizeof notify_settings / sizeof notify_settings[0];

/* At most this many thread_id parameters per stream, of this length. */
#define MAX_THREADS 64
#define MAX_THREAD_LEN 1024

enum { REJ_UNAUTHORIZED, REJ_FULL, REJ_BAD_REQUEST, REJ_KINDS };

struct notify {
    reader *rd;
    notify_hub *hub;
    struct MHD_Daemon *d;
    ng_status *st;
    ng_metric *metrics;
    char (*labels)[32];
    size_t nmetrics;
    double *values;
    int nparts;
    int64_t *positions;
    char *secret;
    size_t secret_len;
    char *allow_origin;
    char *config_json; /* /config.json for the page */
    uint64_t heartbeat_ms;
    uint64_t backlog_ms;
    atomic_uint_fast64_t rejected[REJ_KINDS];
    atomic_bool stopping;
    ng_buf scratch;
    ng_ratelimit log_bad;
    int port;
};

/* ------------------------------------------------------------------------
 * Settings
 */

/* "24h", "30m", "90s", "1500ms", "2d", or seconds. Returns 0 or -1. */
static int parse_duration(const char *s, uint64_t *ms)
{
    char *end;
    if (*s < '0' || *s > '9') {
        return -1;
    }
    unsigned long long v = strtoull(s, &end, 10);
    unsigned long long mul;
    if (strcmp(end, "ms") == 0) {
        mul = 1;
    } else if (strcmp(end, "s") == 0 || *end == '\0') {
        mul = 1000;
    } else if (strcmp(end, "m") == 0) {
        mul = 60000;
    } else if (strcmp(end, "h") == 0) {
        mul = 3600000;
    } else if (strcmp(end, "d") == 0) {
        mul = 86400000;
    } else {
        return -1;
    }
    if (v > UINT64_MAX / mul / 2) {
        return -1;
    }
    *ms = v * mul;
    return 0;
}

/* The secret: the file's first line, without its line end. */
static int read_secret(notify *n, const char *path, ng_error *err)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return ng_error_set(err, NG_ERR_CONFIG, "token_secret",
                            "cannot read --token-secret-file %s", path);
    }
    ng_buf b = {0};
    int c;
    while ((c = fgetc(f)) != EOF && c != '\n') {
        if (ng_buf_putc(&b, (char)c) != 0) {
            break;
        }
    }
    fclose(f);
    if (b.len > 0 && b.data[b.len - 1] == '\r') {
        b.len--;
    }
    if (b.len == 0) {
        ng_buf_free(&b);
        return ng_error_set(err, NG_ERR_CONFIG, "token_secret",
                            "--token-secret-file %s: the first line is empty",
                            path);
    }
    n->secret = b.data;
    n->secret_len = b.len;
    return 0;
}

/* The support link goes into the page: only a URL a browser opens as a
 * link, with no quote or control character. */
static bool link_ok(const char *url)
{
    if (strncmp(url, "https://", 8) != 0 && strncmp(url, "http://", 7) != 0 &&
        strncmp(url, "mailto:", 7) != 0) {
        return false;
    }
    for (const unsigned char *p = (const unsigned char *)url; *p; p++) {
        if (*p < 0x21 || *p == '"' || *p == '\\' || *p == 0x7f) {
            return false;
        }
    }
    return true;
}

/* ------------------------------------------------------------------------
 * Tokens
 */
int notify_token(const char *secret, size_t secret_len, const char *thread_id,
                 char out[65])
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (HMAC(EVP_sha256(), secret, (int)secret_len,
             (const unsigned char *)thread_id, strlen(thread_id), mac,
             &len) == NULL ||
        len != 32) {
        return -1;
    }
    static const char hex[] = "0123456789abcdef";
    for (unsigned i = 0; i < 32; i++) {
        out[2 * i] = hex[mac[i] >> 4];
        out[2 * i + 1] = hex[mac[i] & 15];
    }
    out[64] = '\0';
    return 0;
}

/* Whether token is thread's, compared in constant time. */
static bool token_ok(const notify *n, const char *thread, const char *token)
{
    char want[65];
    if (token == NULL || strlen(token) != 64 ||
        notify_token(n->secret, n->secret_len, thread, want) != 0) {
        return false;
    }
    return CRYPTO_memcmp(want, token, 64) == 0;
}

/* ------------------------------------------------------------------------
 * HTTP
 */
struct args {
    const char *threads[MAX_THREADS];
    const char *tokens[MAX_THREADS];
    size_t nthreads, ntokens;
    const char *last_event_id;
    bool too_many;
};

static enum MHD_Result collect_arg(void *cls, enum MHD_ValueKind kind,
                                   const char *key, const char *value)
{
    (void)kind;
    struct args *a = cls;
    if (strcmp(key, "thread_id") == 0) {
        if (a->nthreads == MAX_THREADS) {
            a->too_many = true;
        } else {
            a->threads[a->nthreads++] = value ? value : "";
        }
    } else if (strcmp(key, "token") == 0) {
        if (a->ntokens == MAX_THREADS) {
            a->too_many = true;
        } else {
            a->tokens[a->ntokens++] = value ? value : "";
        }
    } else if (strcmp(key, "last_event_id") == 0) {
        a->last_event_id = value;
    }
    return MHD_YES;
}

/* The Access-Control-Allow-Origin value for this request, or NULL. */
static const char *cors_origin(const notify *n, struct MHD_Connection *conn)
{
    if (n->allow_origin == NULL) {
        return NULL;
    }
    if (strcmp(n->allow_origin, "*") == 0) {
        return "*";
    }
    const char *origin =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin");
    if (origin == NULL) {
        return NULL;
    }
    size_t olen = strlen(origin);
    for (const char *p = n->allow_origin; *p;) {
        size_t len = strcspn(p, ",");
        if (len == olen && strncmp(p, origin, len) == 0) {
            return origin;
        }
        p += len + (p[len] == ',');
    }
    return NULL;
}

static void common_headers(const notify *n, struct MHD_Connection *conn,
                           struct MHD_Response *r, const char *type)
{
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    const char *origin = cors_origin(n, conn);
    if (origin != NULL) {
        MHD_add_response_header(r, "Access-Control-Allow-Origin", origin);
        MHD_add_response_header(r, "Vary", "Origin");
    }
}

static enum MHD_Result reply(const notify *n, struct MHD_Connection *conn,
                             unsigned int code, const char *type,
                             const void *body, size_t len)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (r == NULL) {
        return MHD_NO;
    }
    common_headers(n, conn, r, type);
    enum MHD_Result ok = MHD_queue_response(conn, code, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result reply_text(notify *n, struct MHD_Connection *conn,
                                  unsigned int code, const char *text)
{
    return reply(n, conn, code, "text/plain; charset=utf-8", text,
                 strlen(text));
}

/* One SSE response: its stream and the connection to suspend/resume. */
struct sse {
    notify_stream *s;
    struct MHD_Connection *conn;
};

static void sse_suspend(void *ctx)
{
    struct sse *c = ctx;
    MHD_suspend_connection(c->conn);
}

static void sse_wake(void *ctx)
{
    struct sse *c = ctx;
    MHD_resume_connection(c->conn);
}

static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    struct sse *c = cls;
    long got = notify_stream_read(c->s, buf, max, sse_suspend, c);
    return got < 0 ? MHD_CONTENT_READER_END_WITH_ERROR : (ssize_t)got;
}

static void sse_free(void *cls)
{
    struct sse *c = cls;
    notify_hub_close(c->s);
    free(c);
}

static enum MHD_Result serve_events(notify *n, struct MHD_Connection *conn)
{
    struct args a = {0};
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, collect_arg, &a);
    if (a.too_many) {
        atomic_fetch_add(&n->rejected[REJ_BAD_REQUEST], 1);
        return reply_text(n, conn, 400, "at most 64 thread_id per stream\n");
    }
    if (a.nthreads == 0) {
        atomic_fetch_add(&n->rejected[REJ_BAD_REQUEST], 1);
        return reply_text(n, conn, 400,
                          "GET /events?thread_id=ID[&thread_id=ID...]\n");
    }
    for (size_t i = 0; i < a.nthreads; i++) {
        size_t len = strlen(a.threads[i]);
        if (len == 0 || len > MAX_THREAD_LEN) {
            atomic_fetch_add(&n->rejected[REJ_BAD_REQUEST], 1);
            return reply_text(n, conn, 400,
                              "a thread_id is empty or too long\n");
        }
    }
    if (n->secret != NULL) {
        bool ok = a.ntokens == a.nthreads;
        for (size_t i = 0; ok && i < a.nthreads; i++) {
            ok = token_ok(n, a.threads[i], a.tokens[i]);
        }
        if (!ok) {
            atomic_fetch_add(&n->rejected[REJ_UNAUTHORIZED], 1);
            return reply_text(n, conn, 401,
                              "unauthorized: each thread_id needs its token\n");
        }
    }
    const char *cursor =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Last-Event-ID");
    if (cursor == NULL) {
        cursor = a.last_event_id;
    }
    struct sse *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return MHD_NO;
    }
    c->conn = conn;
    bool full = false;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t now_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    c->s = notify_hub_open(n->hub, a.threads, a.nthreads, cursor, now_ms,
                           sse_wake, c, &full);
    if (c->s == NULL) {
        free(c);
        if (full) {
            return reply_text(n, conn, 503,
                              "too many streams open (--max-connections)\n");
        }
        return MHD_NO;
    }
    struct MHD_Response *r = MHD_create_response_from_callback(
        MHD_SIZE_UNKNOWN, 4096, sse_read, c, sse_free);
    if (r == NULL) {
        sse_free(c);
        return MHD_NO;
    }
    common_headers(n, conn, r, "text/event-stream; charset=utf-8");
    MHD_add_response_header(r, "X-Accel-Buffering", "no");
    enum MHD_Result ok = MHD_queue_response(conn, 200, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
                                  const char *url, const char *method,
                                  const char *version, const char *upload,
                                  size_t *upload_len, void **req)
{
    (void)version;
    (void)upload;
    (void)upload_len;
    (void)req;
    notify *n = cls;
    if (strcmp(method, "OPTIONS") == 0) {
        struct MHD_Response *r =
            MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        if (r == NULL) {
            return MHD_NO;
        }
        common_headers(n, conn, r, "text/plain");
        MHD_add_response_header(r, "Access-Control-Allow-Methods",
                                "GET, HEAD, OPTIONS");
        MHD_add_response_header(r, "Access-Control-Allow-Headers",
                                "Last-Event-ID, Cache-Control");
        MHD_add_response_header(r, "Access-Control-Max-Age", "600");
        enum MHD_Result ok = MHD_queue_response(conn, 204, r);
        MHD_destroy_response(r);
        return ok;
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        return reply_text(n, conn, 405, "only GET\n");
    }
    if (strcmp(url, "/events") == 0) {
        if (atomic_load(&n->stopping)) {
            return reply_text(n, conn, 503, "stopping\n");
        }
        return serve_events(n, conn);
    }
    ng_buf body = {0};
    const char *type;
    int code = ng_status_answer(n->st, url, ng_now_ms(), &body, &type);
    if (code != 0) {
        enum MHD_Result ok = code < 0
                                 ? reply_text(n, conn, 500, "out of memory\n")
                                 : reply(n, conn, (unsigned int)code, type,
                                         body.data ? body.data : "", body.len);
        ng_buf_free(&body);
        return ok;
    }
    if (strcmp(url, "/config.json") == 0) {
        return reply(n, conn, 200, "application/json", n->config_json,
                     strlen(n->config_json));
    }
    for (unsigned i = 0; i < notify_ui_count; i++) {
        const notify_ui_file *f = &notify_ui_files[i];
        if (strcmp(url, f->path) == 0 ||
            (strcmp(f->path, "/") == 0 && strcmp(url, "/index.html") == 0)) {
            struct MHD_Response *r = MHD_create_response_from_buffer(
                f->len, (void *)f->data, MHD_RESPMEM_PERSISTENT);
            if (r == NULL) {
                return MHD_NO;
            }
            MHD_add_response_header(r, "Content-Type", f->content_type);
            MHD_add_response_header(r, "Cache-Control", "no-cache");
            MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
            MHD_add_response_header(
                r, "Content-Security-Policy",
                "default-src 'self'; object-src 'none'; base-uri 'none'; "
                "frame-ancestors 'none'");
            enum MHD_Result ok = MHD_queue_response(conn, 200, r);
            MHD_destroy_response(r);
            return ok;
        }
    }
    return reply_text(n, conn, 404,
                      "not found: try /, /events?thread_id=ID, /metrics or "
                      "/healthz\n");
}

/* ------------------------------------------------------------------------
 * Metrics
 */
enum {
    M_CONNECTIONS,
    M_CONSUMED,
    M_SENT,
    M_BYTES,
    M_DROPPED,
    M_REJ_UNAUTH,
    M_REJ_FULL,
    M_REJ_BAD,
    M_KEPT,
    M_KEPT_BYTES,
    M_FIXED /* then one position per partition */
};

static const ng_metric fixed_metrics[M_FIXED] = {
    {"nanguard_notify_connections", NULL, NG_METRIC_GAUGE,
     "event streams open now"},
    {"nanguard_notify_events_consumed_total", NULL, NG_METRIC_COUNTER,
     "records read from the notification topic"},
    {"nanguard_notify_events_sent_total", NULL, NG_METRIC_COUNTER,
     "events queued to streams (one per stream it went to)"},
    {"nanguard_notify_bytes_sent_total", NULL, NG_METRIC_COUNTER,
     "bytes written to streams"},
    {"nanguard_notify_clients_dropped_total", NULL, NG_METRIC_COUNTER,
     "streams dropped because their client did not read"},
    {"nanguard_notify_rejected_total", "reason=\"unauthorized\"",
     NG_METRIC_COUNTER, "stream requests refused"},
    {"nanguard_notify_rejected_total", "reason=\"full\"", NG_METRIC_COUNTER,
     "stream requests refused"},
    {"nanguard_notify_rejected_total", "reason=\"bad_request\"",
     NG_METRIC_COUNTER, "stream requests refused"},
    {"nanguard_notify_kept_events", NULL, NG_METRIC_GAUGE,
     "events kept in memory for new and resumed streams"},
    {"nanguard_notify_kept_bytes", NULL, NG_METRIC_GAUGE,
     "bytes of the events kept in memory"},
};

static int make_metrics(notify *n)
{
    n->nmetrics = M_FIXED + (size_t)n->nparts;
    n->metrics = calloc(n->nmetrics, sizeof *n->metrics);
    n->labels = calloc((size_t)n->nparts + 1, sizeof *n->labels);
    n->values = calloc(n->nmetrics, sizeof *n->values);
    n->positions = calloc((size_t)n->nparts + 1, sizeof *n->positions);
    if (n->metrics == NULL || n->labels == NULL || n->values == NULL ||
        n->positions == NULL) {
        return -1;
    }
    memcpy(n->metrics, fixed_metrics, sizeof fixed_metrics);
    for (int i = 0; i < n->nparts; i++) {
        snprintf(n->labels[i], sizeof n->labels[i], "partition=\"%d\"", i);
        n->metrics[M_FIXED + i] = (ng_metric){
            "nanguard_notify_consumer_position", n->labels[i], NG_METRIC_GAUGE,
            "the next offset the gateway reads, per partition"};
    }
    n->st = ng_status_new(n->metrics, n->nmetrics, 60000);
    return n->st ? 0 : -1;
}

static void publish(notify *n, bool ready, const char *why)
{
    notify_hub_stats s;
    notify_hub_get_stats(n->hub, &s, n->positions);
    double *v = n->values;
    v[M_CONNECTIONS] = (double)s.streams;
    v[M_CONSUMED] = (double)s.events_in;
    v[M_SENT] = (double)s.events_sent;
    v[M_BYTES] = (double)s.bytes_sent;
    v[M_DROPPED] = (double)s.dropped;
    v[M_REJ_UNAUTH] = (double)atomic_load(&n->rejected[REJ_UNAUTHORIZED]);
    v[M_REJ_FULL] = (double)s.refused_full;
    v[M_REJ_BAD] = (double)atomic_load(&n->rejected[REJ_BAD_REQUEST]);
    v[M_KEPT] = (double)s.kept_events;
    v[M_KEPT_BYTES] = (double)s.kept_bytes;
    for (int i = 0; i < n->nparts; i++) {
        v[M_FIXED + i] = (double)n->positions[i];
    }
    ng_status_publish(n->st, v, ready, why, ng_now_ms());
}

/* ------------------------------------------------------------------------
 * Setup
 */

static int64_t wall_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Refuses a non-loopback address without a token secret (the streams
 * would be anybody's), unless --insecure-public. */
static int check_listen(const notify *n, const ng_config *cfg, ng_error *err)
{
    const char *listen = ng_config_get(cfg, "http-listen");
    struct addrinfo *ai = NULL;
    if (ng_listen_resolve(listen, &ai, err) != 0) {
        return -1;
    }
    int loopback = ng_addr_is_loopback(ai);
    freeaddrinfo(ai);
    if (!loopback && n->secret == NULL &&
        !ng_config_flag(cfg, "insecure-public")) {
        return ng_error_set(err, NG_ERR_CONFIG, "insecure_listen",
                            "refusing to serve notifications on %s (not a "
                            "loopback address) without --token-secret-file; "
                            "--insecure-public serves it anyway",
                            listen);
    }
    return 0;
}

static int start_http(notify *n, const ng_config *cfg, size_t max_conn,
                      ng_error *err)
{
    const char *listen = ng_config_get(cfg, "http-listen");
    struct addrinfo *ai = NULL;
    if (ng_listen_resolve(listen, &ai, err) != 0) {
        return -1;
    }
    /* Enough open files for max streams (the soft limit is often 1024). */
    ng_fd_limit_raise(max_conn + 256);
    unsigned int flags =
        MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME;
    if (ai->ai_family == AF_INET6) {
        flags |= MHD_USE_IPv6;
    }
    unsigned timeout = (unsigned)(n->heartbeat_ms / 1000) * 3 + 10;
    n->d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, n, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned int)max_conn + 64,
        MHD_OPTION_CONNECTION_TIMEOUT, timeout,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)16384, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (n->d == NULL) {
        return ng_error_set(err, NG_ERR_CONFIG, "http_listen",
                            "cannot listen on %s (address in use or not "
                            "local?)",
                            listen);
    }
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info(n->d, MHD_DAEMON_INFO_BIND_PORT);
    n->port = info ? (int)info->port : 0;
    return 0;
}

static int make_config_json(notify *n, const char *support)
{
    ng_buf b = {0};
    /* link_ok let no quote, backslash or control byte through. */
    if (ng_buf_append(&b, "{\"support_url\": \"", 17) != 0 ||
        ng_buf_append(&b, support, strlen(support)) != 0 ||
        ng_buf_append_str(&b, "\"}\n", 3) != 0) {
        ng_buf_free(&b);
        return -1;
    }
    n->config_json = b.data;
    return 0;
}

notify *notify_new(const ng_config *cfg, ng_error *err)
{
    const char *brokers = ng_config_get(cfg, "brokers");
    const char *topic = ng_config_get(cfg, "topic");
    if (brokers == NULL || *brokers == '\0' || topic == NULL ||
        *topic == '\0') {
        ng_error_set(err, NG_ERR_CONFIG, "usage",
                     "--brokers and --topic are required");
        return NULL;
    }
    uint64_t backlog_ms;
    if (parse_duration(ng_config_get(cfg, "backlog"), &backlog_ms) != 0) {
        ng_error_set(err, NG_ERR_CONFIG, "usage",
                     "--backlog wants a duration such as 24h, 30m, 90s or "
                     "500ms, not '%s'",
                     ng_config_get(cfg, "backlog"));
        return NULL;
    }
    const char *support = ng_config_get(cfg, "support-url");
    if (!link_ok(support)) {
        ng_error_set(err, NG_ERR_CONFIG, "usage",
                     "--support-url wants an http://, https:// or mailto: "
                     "URL without spaces or quotes");
        return NULL;
    }
    long long max_conn = ng_config_int(cfg, "max-connections");
    long long client_buf = ng_config_int(cfg, "client-buffer-bytes");
    long long kept = ng_config_int(cfg, "backlog-max-bytes");
    long long hb = ng_config_int(cfg, "heartbeat-ms");
    long long retry = ng_config_int(cfg, "retry-ms");
    if (max_conn < 1 || max_conn > 1000000 || client_buf < 4096 || kept < 0 ||
        hb < 100 || retry < 0) {
        ng_error_set(err, NG_ERR_CONFIG, "usage",
                     "--max-connections wants 1..1000000, "
                     "--client-buffer-bytes at least 4096, --heartbeat-ms "
                     "at least 100");
        return NULL;
    }
    notify *n = calloc(1, sizeof *n);
    if (n == NULL) {
        ng_error_set(err, NG_ERR_CONFIG, "oom", "out of memory");
        return NULL;
    }
    n->heartbeat_ms = (uint64_t)hb;
    n->backlog_ms = backlog_ms;
    ng_ratelimit_init(&n->log_bad, "unreadable notification", 20, 10000);
    const char *secret_file = ng_config_get(cfg, "token-secret-file");
    const char *origin = ng_config_get(cfg, "allow-origin");
    if ((secret_file != NULL && *secret_file != '\0' &&
         read_secret(n, secret_file, err) != 0)) {
        notify_free(n);
        return NULL;
    }
    if ((origin != NULL && *origin != '\0' &&
         (n->allow_origin = strdup(origin)) == NULL) ||
        make_config_json(n, support) != 0) {
        ng_error_set(err, NG_ERR_CONFIG, "oom", "out of memory");
        notify_free(n);
        return NULL;
    }

    static const char *const ours[][2] = {{"client.id", "nanguard-notify"}};
    if (check_listen(n, cfg, err) != 0) {
        notify_free(n);
        return NULL;
    }
    rd_kafka_conf_t *conf = kafka_conf_new(cfg, ours, 1, err);
    if (conf == NULL) {
        notify_free(n);
        return NULL;
    }
    reader_options ro = {
        .since_ms = wall_ms() - (int64_t)backlog_ms,
        .until_ms = -1,
        .follow = 1,
        .group = NULL,
        .timeout_ms = 10000,
    };
    n->rd = reader_new(conf, topic, &ro, err);
    if (n->rd == NULL) {
        notify_free(n);
        return NULL;
    }
    n->nparts = 0;
    int count = reader_partition_count(n->rd);
    for (int i = 0; i < count; i++) {
        int32_t p;
        int64_t s, e;
        reader_range(n->rd, i, &p, &s, &e);
        if (p + 1 > n->nparts) {
            n->nparts = p + 1;
        }
    }
    int64_t *start = calloc((size_t)n->nparts + 1, sizeof *start);
    if (start == NULL || make_metrics(n) != 0) {
        free(start);
        ng_error_set(err, NG_ERR_CONFIG, "oom", "out of memory");
        notify_free(n);
        return NULL;
    }
    for (int i = 0; i < count; i++) {
        int32_t p;
        int64_t s, e;
        reader_range(n->rd, i, &p, &s, &e);
        start[p] = s;
    }
    notify_hub_options ho = {
        .partitions = (size_t)n->nparts,
        .start = start,
        .backlog_ms = backlog_ms,
        .max_kept_bytes = (size_t)kept,
        .client_buffer_bytes = (size_t)client_buf,
        .max_streams = (size_t)max_conn,
        .retry_ms = (uint64_t)retry,
    };
    n->hub = notify_hub_new(&ho);
    free(start);
    if (n->hub == NULL) {
        ng_error_set(err, NG_ERR_CONFIG, "oom", "out of memory");
        notify_free(n);
        return NULL;
    }
    publish(n, true, NULL);
    if (start_http(n, cfg, (size_t)max_conn, err) != 0) {
        notify_free(n);
        return NULL;
    }
    char port[16], parts[16];
    snprintf(port, sizeof port, "%d", n->port);
    snprintf(parts, sizeof parts, "%d", n->nparts);
    ng_log(NG_LOG_INFO, "serving /events, /, /metrics and /healthz", "listen",
           ng_config_get(cfg, "http-listen"), "port#", port, "topic", topic,
           "partitions#", parts, "tokens",
           n->secret ? "required" : "not required", NULL);
    return n;
}

void notify_free(notify *n)
{
    if (n == NULL) {
        return;
    }
    if (n->d != NULL) {
        atomic_store(&n->stopping, true);
        /* Suspended streams end first: each is woken and told it is over,
         * so the server can close it. */
        notify_hub_shutdown(n->hub);
        uint64_t until = ng_now_ms() + 2000;
        notify_hub_stats s;
        do {
            notify_hub_get_stats(n->hub, &s, NULL);
            if (s.streams == 0) {
                break;
            }
            struct timespec ts = {0, 20 * 1000 * 1000};
            nanosleep(&ts, NULL);
        } while (ng_now_ms() < until);
        MHD_stop_daemon(n->d);
    }
    reader_free(n->rd);
    notify_hub_free(n->hub);
    ng_status_free(n->st);
    free(n->metrics);
    free(n->labels);
    free(n->values);
    free(n->positions);
    if (n->secret != NULL) {
        OPENSSL_cleanse(n->secret, n->secret_len);
        free(n->secret);
    }
    free(n->allow_origin);
    free(n->config_json);
    ng_buf_free(&n->scratch);
    free(n);
}

/* ------------------------------------------------------------------------
 * The loop
 */

/* Hands one record to the hub: its thread is the JSON's thread_id (the
 * Kafka key when the value has none), its type the JSON's type. */
static void take(notify *n, const rd_kafka_message_t *m)
{
    const char *thread = NULL, *type = NULL;
    yajl_val root = NULL;
    char keybuf[MAX_THREAD_LEN + 1];
    ng_buf_clear(&n->scratch);
    if (m->payload != NULL &&
        ng_buf_append_str(&n->scratch, m->payload, m->len) == 0) {
        root = yajl_tree_parse(n->scratch.data, NULL, 0);
    }
    if (root != NULL) {
        static const char *tpath[] = {"thread_id", NULL};
        static const char *ypath[] = {"type", NULL};
        yajl_val t = yajl_tree_get(root, tpath, yajl_t_string);
        yajl_val y = yajl_tree_get(root, ypath, yajl_t_string);
        thread = t ? YAJL_GET_STRING(t) : NULL;
        type = y ? YAJL_GET_STRING(y) : NULL;
    } else {
        uint64_t held;
        if (ng_ratelimit_allow(&n->log_bad, ng_now_ms(), &held)) {
            char off[24];
            snprintf(off, sizeof off, "%lld", (long long)m->offset);
            ng_log(NG_LOG_WARN, "notification is not JSON; skipped", "offset#",
                   off, NULL);
        }
    }
    /* A record that is not JSON is no event: only the position moves. */
    if (root != NULL && thread == NULL && m->key != NULL &&
        m->key_len <= MAX_THREAD_LEN &&
        memchr(m->key, '\0', m->key_len) == NULL) {
        memcpy(keybuf, m->key, m->key_len);
        keybuf[m->key_len] = '\0';
        thread = keybuf;
    }
    rd_kafka_timestamp_type_t tstype;
    int64_t ts = rd_kafka_message_timestamp(m, &tstype);
    if (notify_hub_add(n->hub, m->partition, m->offset, ts, thread, type,
                       m->payload ? m->payload : "", m->len) != 0) {
        ng_log(NG_LOG_ERROR, "out of memory keeping an event", NULL);
    }
    yajl_tree_free(root);
}

int notify_run(notify *n, volatile sig_atomic_t *stop)
{
    uint64_t now = ng_now_ms();
    uint64_t next_publish = now, next_beat = now + n->heartbeat_ms;
    uint64_t next_expire = now + 1000;
    int status = 0;
    while (!*stop) {
        rd_kafka_message_t *m = NULL;
        ng_error err = {0};
        reader_status rs = reader_next(n->rd, 100, &m, &err);
        if (rs == READER_MESSAGE) {
            take(n, m);
            rd_kafka_message_destroy(m);
        } else if (rs == READER_ERROR) {
            ng_log(NG_LOG_ERROR, "cannot read the notification topic", "reason",
                   err.message, NULL);
            status = EX_UNAVAILABLE;
            break;
        }
        now = ng_now_ms();
        if (now >= next_publish) {
            publish(n, true, NULL);
            next_publish = now + 100;
        }
        if (now >= next_beat) {
            notify_hub_heartbeat(n->hub);
            next_beat = now + n->heartbeat_ms;
        }
        if (now >= next_expire) {
            notify_hub_expire(n->hub, wall_ms());
            next_expire = now + 1000;
        }
    }
    publish(n, false, "stopping");
    ng_log(NG_LOG_INFO, "stopping", NULL);
    return status;
}
