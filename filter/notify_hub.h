/* notify_hub.h - the gateway's fan-out: the notification events of the last
 * --backlog kept in memory, and the Server-Sent Events streams reading them.
 *
 * One hub per gateway. One thread (the Kafka reader) adds events in the
 * order it consumes them; the HTTP server's thread opens, reads and closes
 * streams. A mutex sits between them; nothing here knows Kafka or HTTP.
 *
 * Cursors. Every event's SSE id is the reader's position on every
 * partition just after it: "0:43,1:17,2:0" (partition:next offset). Events
 * before it are exactly those with a smaller offset on their partition, in
 * any reader's order, so a stream opened with a Last-Event-ID gets every
 * kept event of its threads at or past the cursor, none twice, on any
 * gateway instance. A stream without one gets the kept events of the last
 * backlog_ms (by the record's timestamp).
 *
 * Buffers. Each stream has its own buffer, at most client_buffer_bytes: a
 * stream catching up is refilled from the kept events as it drains; a live
 * stream whose reader does not keep up (its buffer would overflow) is
 * dropped, so memory does not grow with a stalled client. */
#ifndef NANGUARD_NOTIFY_HUB_H
#define NANGUARD_NOTIFY_HUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct notify_hub notify_hub;
typedef struct notify_stream notify_stream;

typedef struct {
    size_t partitions;
    const int64_t *start;       /* first offset read, per partition */
    uint64_t backlog_ms;        /* what a new stream gets, by timestamp */
    size_t max_kept_bytes;      /* the oldest events go first beyond it */
    size_t client_buffer_bytes; /* per stream; a live stream beyond: dropped */
    size_t max_streams;         /* notify_hub_open refuses beyond it */
    uint64_t retry_ms;          /* the retry: field sent first */
} notify_hub_options;

/* Called with the hub's lock held: wake resumes a stream the reader
 * suspended; suspend (passed to notify_stream_read) suspends it. Neither may
 * call back into the hub. */
typedef void (*notify_wake_fn)(void *ctx);

/* Copies what it needs from o. NULL when out of memory. */
notify_hub *notify_hub_new(const notify_hub_options *o);
/* Frees the hub and the kept events. Every stream must be closed first. */
void notify_hub_free(notify_hub *h);

/* Adds one record of the notification topic: value is the notification
 * JSON (sent as it is), type its "type" and thread its "thread_id". A record
 * at an offset already passed is ignored. ts_ms: the record's timestamp
 * (wall clock, ms since the epoch). Returns 0, or -1 when out of memory (the
 * event is lost, the position still moves). */
int notify_hub_add(notify_hub *h, int32_t partition, int64_t offset,
                   int64_t ts_ms, const char *thread, const char *type,
                   const char *value, size_t len);
/* Forgets events older than the backlog at now_ms (wall clock). */
void notify_hub_expire(notify_hub *h, int64_t now_ms);
/* Appends a heartbeat comment to every stream with nothing waiting. */
void notify_hub_heartbeat(notify_hub *h);
/* Ends every stream (their next read says so) and wakes them. */
void notify_hub_shutdown(notify_hub *h);

/* Opens a stream of the events of threads (n of them, copied). cursor: the
 * Last-Event-ID, or NULL (a cursor that cannot be read counts as none).
 * now_ms: the wall clock, for the backlog. wake/ctx: how to resume its
 * reader. Returns NULL when max_streams are open or out of memory (*full
 * tells which). */
notify_stream *notify_hub_open(notify_hub *h, const char *const *threads,
                               size_t n, const char *cursor, int64_t now_ms,
                               notify_wake_fn wake, void *ctx, bool *full);
/* Fills out with at most max bytes of the stream. Returns the count; 0 when
 * there is nothing to send now, after calling suspend(ctx) under the lock (a
 * later event or heartbeat calls wake); -1 when the stream has ended
 * (dropped, or the hub shut down). */
long notify_stream_read(notify_stream *s, char *out, size_t max,
                        notify_wake_fn suspend, void *ctx);
/* Closes and frees the stream. NULL is fine. */
void notify_hub_close(notify_stream *s);

typedef struct {
    uint64_t streams;      /* open now */
    uint64_t events_in;    /* records added */
    uint64_t events_sent;  /* events put in stream buffers */
    uint64_t bytes_sent;   /* bytes handed to the HTTP server */
    uint64_t dropped;      /* streams dropped for not reading */
    uint64_t refused_full; /* opens refused: max_streams */
    uint64_t kept_events;  /* in memory now */
    uint64_t kept_bytes;
} notify_hub_stats;

/* The counters, and the position (next offset) on each partition into
 * positions (partitions entries; NULL: not wanted). */
void notify_hub_get_stats(notify_hub *h, notify_hub_stats *st,
                          int64_t *positions);

/* Writes the cursor text for positions into out (cap bytes, NUL ended).
 * Returns its length, or -1 when it does not fit. */
int notify_cursor_format(const int64_t *positions, size_t partitions, char *out,
                         size_t cap);
/* Reads a cursor into positions (partitions entries; partitions it does
 * not name get 0). Returns 0, or -1 when it is not a cursor. */
int notify_cursor_parse(const char *text, int64_t *positions,
                        size_t partitions);

#endif
