/* status_server.h - the HTTP face of a running process (libmicrohttpd, on
 * its own thread), serving an ng_status:
 *
 *   GET /metrics   Prometheus text
 *   GET /healthz   liveness:  200, or 503 when the main loop is stuck
 *   GET /readyz    readiness: 200, or 503 with the reason
 *
 * anything else: 404 (405 for a method other than GET or HEAD). */
#ifndef NANGUARD_STATUS_SERVER_H
#define NANGUARD_STATUS_SERVER_H

#include "common/error.h"
#include "common/status.h"

#include <stdint.h>

typedef struct ng_status_server ng_status_server;
struct addrinfo;

/* Resolves listen ("HOST:PORT", "[IPv6]:PORT", ":PORT" for every
 * interface) for a passive socket, as ng_status_server_start does. Returns
 * 0 and *ai (the caller's, freeaddrinfo), or -1 with err (code "usage"). */
int ng_listen_resolve(const char *listen, struct addrinfo **ai, ng_error *err);
/* Whether addr is a loopback address (127.0.0.0/8, ::1, ::ffff:127.x). */
int ng_addr_is_loopback(const struct addrinfo *ai);

/* Raises the soft limit of open files to want when it is lower (never
 * above the hard limit). Returns the soft limit now (want when there is
 * none), 0 when it cannot be read. */
uint64_t ng_fd_limit_raise(uint64_t want);

/* Listens on listen: "HOST:PORT", "[IPv6]:PORT", or ":PORT" for every
 * interface; port 0 takes a free one. st must outlive the server. Up to
 * 4096 connections at once (fewer when the open-file limit, raised as far
 * as it goes, is too low; logged); a new one beyond that closes the
 * oldest, so that a probe is always accepted. Returns
 * NULL with err (class config) when the address is bad or taken. */
ng_status_server *ng_status_server_start(const char *listen, ng_status *st,
                                         ng_error *err);
/* The port it listens on. */
int ng_status_server_port(const ng_status_server *s);
/* Stops serving and frees. NULL is fine. */
void ng_status_server_stop(ng_status_server *s);

#endif
