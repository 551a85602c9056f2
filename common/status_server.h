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

typedef struct ng_status_server ng_status_server;

/* Listens on listen: "HOST:PORT", "[IPv6]:PORT", or ":PORT" for every
 * interface; port 0 takes a free one. st must outlive the server. Returns
 * NULL with err (class config) when the address is bad or taken. */
ng_status_server *ng_status_server_start(const char *listen, ng_status *st,
                                         ng_error *err);
/* The port it listens on. */
int ng_status_server_port(const ng_status_server *s);
/* Stops serving and frees. NULL is fine. */
void ng_status_server_stop(ng_status_server *s);

#endif
