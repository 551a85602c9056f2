/* notify.h - `nanguard notify`: the notification gateway. One reader of the
 * notification topic (no consumer group: every gateway sees every event),
 * fanned out as Server-Sent Events to the browsers that asked for a
 * thread's events (filter/notify_hub.h), with the reference banner page,
 * /metrics and /healthz on the same HTTP server (libmicrohttpd, epoll, one
 * thread; a stream with nothing to send is suspended and costs no CPU). */
#ifndef NANGUARD_NOTIFY_H
#define NANGUARD_NOTIFY_H

#include "common/config.h"
#include "common/error.h"

#include <signal.h>
#include <stddef.h>

typedef struct notify notify;

/* The settings of `nanguard notify`, as a config table. */
extern const ng_option notify_settings[];
extern const size_t notify_settings_count;

/* Builds the gateway from parsed settings: reads the token secret, starts
 * the reader at the backlog's first event and the HTTP server. Returns NULL
 * with err (code "usage" for a bad value; class config otherwise). */
notify *notify_new(const ng_config *cfg, ng_error *err);
/* Ends every stream, stops the server and the reader. NULL is fine. */
void notify_free(notify *n);

/* Serves until *stop becomes non-zero. Returns the exit status: 0 after a
 * stop, 69 when the topic can no longer be read. */
int notify_run(notify *n, volatile sig_atomic_t *stop);

/* The token of thread_id: lowercase hex HMAC-SHA256(secret, thread_id) into
 * out (65 bytes with the NUL). Returns 0, or -1 when the digest failed. */
int notify_token(const char *secret, size_t secret_len, const char *thread_id,
                 char out[65]);

#endif
