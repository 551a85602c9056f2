/* status_server.c - /metrics, /healthz and /readyz over libmicrohttpd. */
#define _POSIX_C_SOURCE 200809L
#include "common/status_server.h"

#include "common/clock.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

struct ng_status_server {
    struct MHD_Daemon *d;
    ng_status *st;
    int port;
};

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
    int code;
    const char *type = "application/json";
    if (strcmp(url, "/metrics") == 0) {
        code = ng_status_metrics(s->st, &body) == 0 ? 200 : -1;
        type = "text/plain; version=0.0.4; charset=utf-8";
    } else if (strcmp(url, "/healthz") == 0 || strcmp(url, "/livez") == 0) {
        code = ng_status_health(s->st, false, ng_now_ms(), &body);
    } else if (strcmp(url, "/readyz") == 0) {
        code = ng_status_health(s->st, true, ng_now_ms(), &body);
    } else {
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
    unsigned int flags = MHD_USE_AUTO_INTERNAL_THREAD;
    if (ai->ai_family == AF_INET6) {
        flags |= MHD_USE_IPv6;
    }
    s->d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned int)32,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)10, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (s->d == NULL) {
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
    MHD_stop_daemon(s->d);
    free(s);
}
