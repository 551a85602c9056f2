/* backoff.h - exponential backoff with full jitter, capped.
 *
 * The n-th delay (n counted from 0 since the last reset) is drawn uniformly
 * from [0, min(cap, base * 2^n)] milliseconds ("full jitter": many workers
 * that failed together do not retry together). The module is pure: it
 * never sleeps and takes its randomness from a callback, so tests can
 * inject their own. An ng_backoff is a plain value: no allocation, nothing
 * to free.
 */
#ifndef NANGUARD_BACKOFF_H
#define NANGUARD_BACKOFF_H

#include <stdint.h>

/* Returns 64 uniformly random bits. */
typedef uint64_t (*ng_backoff_rand_fn)(void *ctx);

typedef struct {
    uint64_t base_ms;
    uint64_t cap_ms;
    unsigned attempt; /* delays handed out since the last reset */
    ng_backoff_rand_fn rand;
    void *rand_ctx;
    uint64_t state; /* the built-in generator's state, when rand is NULL */
} ng_backoff;

/* Starts a backoff. base_ms 0 is taken as 1, cap_ms below base_ms as
 * base_ms. rand NULL uses a built-in xorshift generator seeded from the
 * clock and the process id. */
void ng_backoff_init(ng_backoff *b, uint64_t base_ms, uint64_t cap_ms,
                     ng_backoff_rand_fn rand, void *rand_ctx);

/* The ceiling of the next delay: min(cap, base * 2^attempt), without
 * overflow. */
uint64_t ng_backoff_ceiling(const ng_backoff *b);

/* The next delay in milliseconds, in [0, ng_backoff_ceiling()]. */
uint64_t ng_backoff_next(ng_backoff *b);

/* After a success: the next delay starts again from base. */
void ng_backoff_reset(ng_backoff *b);

#endif
