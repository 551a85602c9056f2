/* backoff.c - exponential backoff with full jitter. */
#define _POSIX_C_SOURCE 200809L
#include "common/backoff.h"

#include <time.h>
#include <unistd.h>

/* xorshift64*: enough for spreading retries, not for secrets. */
static uint64_t builtin_rand(void *ctx)
{
    uint64_t *s = ctx;
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * UINT64_C(2685821657736338717);
}

void ng_backoff_init(ng_backoff *b, uint64_t base_ms, uint64_t cap_ms,
                     ng_backoff_rand_fn rand, void *rand_ctx)
{
    b->base_ms = base_ms ? base_ms : 1;
    b->cap_ms = cap_ms < b->base_ms ? b->base_ms : cap_ms;
    b->attempt = 0;
    b->rand = rand;
    b->rand_ctx = rand_ctx;
    b->state = 0;
    if (rand == NULL) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        b->state = ((uint64_t)ts.tv_sec * 1000000007u) ^ (uint64_t)ts.tv_nsec ^
                   ((uint64_t)getpid() << 32);
        if (b->state == 0) {
            b->state = UINT64_C(0x9E3779B97F4A7C15);
        }
    }
}

uint64_t ng_backoff_ceiling(const ng_backoff *b)
{
    /* base << attempt, unless that would pass the cap (or overflow). */
    if (b->attempt >= 63 || b->base_ms > (b->cap_ms >> b->attempt)) {
        return b->cap_ms;
    }
    return b->base_ms << b->attempt;
}

uint64_t ng_backoff_next(ng_backoff *b)
{
    uint64_t ceiling = ng_backoff_ceiling(b);
    uint64_t r = b->rand ? b->rand(b->rand_ctx) : builtin_rand(&b->state);
    if (b->attempt < 64) {
        b->attempt++;
    }
    /* Uniform in [0, ceiling]; the modulo bias is below 2^-40 for any
     * ceiling a person would configure. */
    return ceiling == UINT64_MAX ? r : r % (ceiling + 1);
}

void ng_backoff_reset(ng_backoff *b)
{
    b->attempt = 0;
}
