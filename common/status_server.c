/* status_server.c - /metrics, /healthz and /readyz over libmicrohttpd.
 *
 * Slow clients must not blind the probes: libmicrohttpd's own timeout is
 * an idle timer that every byte resets, so a client trickling a header
 * line every few seconds would hold its connection for ever, and a few
 * dozen of them would fill the connection table. Here each connection
 * also has a deadline for the whole request (REQUEST_DEADLINE_MS from its
 * first byte, or from the end of its last request on a kept-alive
 * connection): a sweeper thread shuts down the socket of every connection
 * past it.
 *
 * A deadline alone still lets enough slow clients fill the table: when it
 * is full, libmicrohttpd stops accepting, and a probe waits in the kernel's
 * queue until a slow client reaches its deadline. So the table is large
 * (CONNECTION_LIMIT, fewer when the open-file limit cannot be raised to
 * hold it) and it never fills: a new connection that finds it full shuts
 * down the oldest one (the one whose request began first, or that has
 * been idle longest), so a new connection, a probe among them, is always
 * accepted and answered at once. The connections are kept in a list from
 * oldest to newest, which makes both the sweep and the choice O(1) per
 * connection. */
#define _POSIX_C_SOURCE 200809L
#include "common/status_server.h"

#include "common/clock.h"
#include "common/log.h"
#include "common/ratelimit.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CONNECTION_LIMIT 4096u
/* Room in libmicrohttpd's table above ours, for connections shut down and
 * not yet closed, so that it never stops accepting. */
#define SHED_SLACK 64u
/* Open files kept for the rest of the process (Kafka, PostgreSQL, logs)
 * when the limit is too low for the whole table. */
#define FD_RESERVE 256u
/* libmicrohttpd's memory per connection (its default is 32 KiB): holds the
 * request's head, which for these GETs is a few hundred bytes, so that a
 * full table of slow clients each sending long headers takes 32 MiB, not
 * 128. A longer head is answered 431. */
#define CONNECTION_MEMORY 8192u
#define IDLE_TIMEOUT_S 3u
#define REQUEST_DEADLINE_MS 5000u
#define SWEEP_EVERY_MS 200

/* One open connection: when its request began, and a duplicate of its
 * socket, so that the sweeper shuts down that socket and never another
 * that reused the number after libmicrohttpd closed its own (two open
 * files per connection, counted in the table's size). */
struct conn_clock {
    struct conn_clock *prev, *next;
    int fd;
    uint64_t since;
    bool cut;
};

struct ng_status_server {
    struct MHD_Daemon *d;
    ng_status *st;
    int port;
    pthread_mutex_t mu; /* guards the list, held, shed and stop */
    pthread_cond_t wake;
    pthread_t sweeper;
    bool sweeping, stop;
    /* Open connections, oldest `since` first; `held` of them not cut. */
    struct conn_clock *oldest, *newest;
    unsigned int held, table;
    uint64_t shed;         /* connections cut to make room */
    ng_ratelimit shed_log; /* used on libmicrohttpd's thread only */
};

static void conns_append(ng_status_server *s, struct conn_clock *c)
{
    c->prev = s->newest;
    c->next = NULL;
    if (s->newest != NULL) {
        s->newest->next = c;
    } else {
        s->oldest = c;
    }
    s->newest = c;
}

static void conns_remove(ng_status_server *s, struct conn_clock *c)
{
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        s->oldest = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    } else {
        s->newest = c->prev;
    }
}

/* Shuts down c's socket; libmicrohttpd then reads its end and closes it. */
static void conn_cut(ng_status_server *s, struct conn_clock *c)
{
    shutdown(c->fd, SHUT_RDWR);
    c->cut = true;
    s->held--;
}

/* The table is over its size: cuts the oldest connection not yet cut.
 * Called with mu held. */
static void shed_oldest(ng_status_server *s)
{
    struct conn_clock *c = s->oldest;
    while (c != NULL && c->cut) {
        c = c->next;
    }
    if (c == NULL) {
        return;
    }
    conn_cut(s, c);
    s->shed++;
    uint64_t suppressed;
    if (ng_ratelimit_allow(&s->shed_log, ng_now_ms(), &suppressed)) {
        char table[16], shed[24];
        snprintf(table, sizeof table, "%u", s->table);
        snprintf(shed, sizeof shed, "%llu", (unsigned long long)s->shed);
        ng_log(NG_LOG_WARN,
               "HTTP connections at the limit: closing the oldest to "
               "accept new ones",
               "limit#", table, "closed_total#", shed, NULL);
    }
}

static void on_connection(void *cls, struct MHD_Connection *conn,
                          void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    ng_status_server *s = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *info =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        struct conn_clock *c = calloc(1, sizeof *c);
        if (c == NULL || info == NULL) {
            free(c);
            return; /* no deadline then, the idle timeout still holds */
        }
        c->fd = fcntl(info->connect_fd, F_DUPFD_CLOEXEC, 0);
        if (c->fd < 0) {
            free(c);
            return;
        }
        c->since = ng_now_ms();
        pthread_mutex_lock(&s->mu);
        conns_append(s, c);
        if (++s->held > s->table) {
            shed_oldest(s);
        }
        pthread_mutex_unlock(&s->mu);
        *socket_context = c;
    } else if (toe == MHD_CONNECTION_NOTIFY_CLOSED && *socket_context) {
        struct conn_clock *c = *socket_context;
        pthread_mutex_lock(&s->mu);
        conns_remove(s, c);
        if (!c->cut) {
            s->held--;
        }
        pthread_mutex_unlock(&s->mu);
        close(c->fd);
        free(c);
        *socket_context = NULL;
    }
}

/* A request answered: the next one on a kept-alive connection gets a
 * deadline of its own, and the connection is the newest again. */
static void on_completed(void *cls, struct MHD_Connection *conn, void **req,
                         enum MHD_RequestTerminationCode toe)
{
    (void)req;
    (void)toe;
    ng_status_server *s = cls;
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    if (info != NULL && info->socket_context != NULL) {
        struct conn_clock *c = info->socket_context;
        pthread_mutex_lock(&s->mu);
        c->since = ng_now_ms();
        conns_remove(s, c);
        conns_append(s, c);
        pthread_mutex_unlock(&s->mu);
    }
}

/* Shuts down the sockets of the connections past their deadline: the
 * oldest, up to the first one within it. */
static void *sweep(void *arg)
{
    ng_status_server *s = arg;
    pthread_mutex_lock(&s->mu);
    while (!s->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += SWEEP_EVERY_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->wake, &s->mu, &ts);
        uint64_t now = ng_now_ms();
        for (struct conn_clock *c = s->oldest; c != NULL; c = c->next) {
            if (c->cut) {
                continue;
            }
            if (ng_since_ms(now, c->since) < REQUEST_DEADLINE_MS) {
                break;
            }
            conn_cut(s, c);
        }
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned int code,
                             const char *type, const char *body, size_t len)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (r == NULL) {
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    enum MHD_Result ok = MHD_queue_response(conn, code, r);
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
    ng_status_server *s = cls;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        static const char msg[] = "only GET\n";
        return reply(conn, 405, "text/plain", msg, sizeof msg - 1);
    }
    ng_buf body = {0};
    const char *type;
    int code = ng_status_answer(s->st, url, ng_now_ms(), &body, &type);
    if (code == 0) {
        static const char msg[] = "not found: try /metrics, /healthz or "
                                  "/readyz\n";
        ng_buf_free(&body);
        return reply(conn, 404, "text/plain", msg, sizeof msg - 1);
    }
    enum MHD_Result ok;
    if (code < 0) {
        static const char msg[] = "out of memory\n";
        ok = reply(conn, 500, "text/plain", msg, sizeof msg - 1);
    } else {
        ok = reply(conn, (unsigned int)code, type, body.data ? body.data : "",
                   body.len);
    }
    ng_buf_free(&body);
    return ok;
}

/* Splits "HOST:PORT", "[V6]:PORT" or ":PORT" into host (NULL: any) and
 * port. Returns 0, or -1 when malformed. */
static int split_listen(const char *listen, char *host, size_t hostcap,
                        char *port, size_t portcap)
{
    const char *colon;
    const char *h = listen;
    size_t hlen;
    if (listen[0] == '[') {
        const char *close = strchr(listen, ']');
        if (close == NULL || close[1] != ':') {
            return -1;
        }
        h = listen + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(listen, ':');
        if (colon == NULL) {
            return -1;
        }
        hlen = (size_t)(colon - listen);
    }
    const char *p = colon + 1;
    if (hlen >= hostcap || *p == '\0' || strlen(p) >= portcap ||
        strspn(p, "0123456789") != strlen(p)) {
        return -1;
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    snprintf(port, portcap, "%s", p);
    return atoi(p) <= 65535 ? 0 : -1;
}

int ng_listen_resolve(const char *listen, struct addrinfo **ai, ng_error *err)
{
    char host[256], port[8];
    if (split_listen(listen, host, sizeof host, port, sizeof port) != 0) {
        return ng_error_set(err, NG_ERR_CONFIG, "usage",
                            "--http-listen wants HOST:PORT, [IPv6]:PORT or "
                            ":PORT, not \"%s\"",
                            listen);
    }
    struct addrinfo hints = {0};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int gai = getaddrinfo(host[0] ? host : NULL, port, &hints, ai);
    if (gai != 0) {
        return ng_error_set(err, NG_ERR_CONFIG, "usage", "--http-listen %s: %s",
                            listen, gai_strerror(gai));
    }
    return 0;
}

int ng_addr_is_loopback(const struct addrinfo *ai)
{
    if (ai->ai_family == AF_INET) {
        const struct sockaddr_in *a = (const void *)ai->ai_addr;
        return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    }
    if (ai->ai_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const void *)ai->ai_addr;
        return IN6_IS_ADDR_LOOPBACK(&a->sin6_addr) ||
               (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr) &&
                a->sin6_addr.s6_addr[12] == 127);
    }
    return 0;
}

uint64_t ng_fd_limit_raise(uint64_t want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        return 0;
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
        rlim_t cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want
                         ? (rlim_t)want
                         : rl.rlim_max;
        struct rlimit raised = {.rlim_cur = cur, .rlim_max = rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &raised) == 0) {
            rl.rlim_cur = cur;
        }
    }
    return rl.rlim_cur == RLIM_INFINITY ? want : (uint64_t)rl.rlim_cur;
}

/* Connections the table holds: CONNECTION_LIMIT, or what the open-file
 * limit leaves room for (two files each) after FD_RESERVE, logged. */
static unsigned int table_size(void)
{
    uint64_t want = 2u * (CONNECTION_LIMIT + SHED_SLACK) + FD_RESERVE;
    uint64_t have = ng_fd_limit_raise(want);
    if (have >= want) {
        return CONNECTION_LIMIT;
    }
    uint64_t fit = have > FD_RESERVE ? (have - FD_RESERVE) / 2 : 0;
    unsigned int table =
        fit > SHED_SLACK + 16 ? (unsigned)(fit - SHED_SLACK) : 16u;
    char nofile[24], limit[16];
    snprintf(nofile, sizeof nofile, "%llu", (unsigned long long)have);
    snprintf(limit, sizeof limit, "%u", table);
    ng_log(NG_LOG_WARN,
           "the open-file limit is low: fewer HTTP connections at once",
           "open_file_limit#", nofile, "http_connection_limit#", limit, NULL);
    return table;
}

ng_status_server *ng_status_server_start(const char *listen, ng_status *st,
                                         ng_error *err)
{
    struct addrinfo *ai = NULL;
    if (ng_listen_resolve(listen, &ai, err) != 0) {
        return NULL;
    }
    ng_status_server *s = calloc(1, sizeof *s);
    if (s == NULL) {
        freeaddrinfo(ai);
        ng_error_set(err, NG_ERR_CONFIG, "oom", "out of memory");
        return NULL;
    }
    s->st = st;
    s->table = table_size();
    ng_ratelimit_init(&s->shed_log, "http_shed", 1, 10000);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->wake, NULL);
    unsigned int flags = MHD_USE_AUTO_INTERNAL_THREAD;
    if (ai->ai_family == AF_INET6) {
        flags |= MHD_USE_IPv6;
    }
    s->d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
        MHD_OPTION_CONNECTION_LIMIT, s->table + SHED_SLACK,
        MHD_OPTION_CONNECTION_TIMEOUT, IDLE_TIMEOUT_S,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONNECTION_MEMORY,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (s->d != NULL && pthread_create(&s->sweeper, NULL, sweep, s) == 0) {
        s->sweeping = true;
    }
    if (s->d == NULL || !s->sweeping) {
        if (s->d != NULL) {
            MHD_stop_daemon(s->d);
        }
        pthread_cond_destroy(&s->wake);
        pthread_mutex_destroy(&s->mu);
        free(s);
        ng_error_set(err, NG_ERR_CONFIG, "http_listen",
                     "cannot listen on %s (address in use or not local?)",
                     listen);
        return NULL;
    }
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? (int)info->port : 0;
    return s;
}

int ng_status_server_port(const ng_status_server *s)
{
    return s->port;
}

void ng_status_server_stop(ng_status_server *s)
{
    if (s == NULL) {
        return;
    }
    MHD_stop_daemon(s->d); /* closes every connection (on_connection) */
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->sweeper, NULL);
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
