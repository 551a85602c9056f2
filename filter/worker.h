/* worker.h - the pipeline of one worker process: Kafka consumer ->
 * sanitizer -> PostgreSQL sink, with every message that cannot be stored
 * sent to the dead-letter topic and the user told on the notification
 * topic.
 *
 * Delivery: a message's offset is stored for commit only after it is in
 * PostgreSQL (or was already there), or its dead-letter record and its
 * notification are acknowledged by the broker; and only once every earlier
 * message of its partition is finished too. A crash replays from the last
 * commit; the upsert absorbs the replay.
 */
#ifndef NANGUARD_WORKER_H
#define NANGUARD_WORKER_H

#include "common/config.h"
#include "common/error.h"

#include <signal.h>
#include <stddef.h>

typedef struct worker worker;

/* The settings of `nanguard worker`, as a config table. */
extern const ng_option worker_settings[];
extern const size_t worker_settings_count;

/* Builds the worker from parsed settings: creates the consumer, the
 * producer, the sink and the sanitizer, and subscribes. Returns NULL with
 * err on a configuration error. */
worker *worker_new(const ng_config *cfg, ng_error *err);
void worker_free(worker *w);

/* Runs until *stop becomes non-zero (a signal), then shuts down cleanly:
 * stops fetching, flushes the batch, waits for the broker's
 * acknowledgements, commits and leaves the group. Returns the process exit
 * status (0 after a clean stop). */
int worker_run(worker *w, volatile sig_atomic_t *stop);

#endif
