/* ratelimit.c - a fixed window per kind of log line. */
#include "common/ratelimit.h"

void ng_ratelimit_init(ng_ratelimit *r, const char *kind, uint64_t burst,
                       uint64_t window_ms)
{
    r->kind = kind;
    r->window_ms = window_ms;
    r->burst = burst;
    r->window_start = 0;
    r->used = 0;
    r->suppressed = 0;
}

bool ng_ratelimit_allow(ng_ratelimit *r, uint64_t now_ms, uint64_t *suppressed)
{
    *suppressed = 0;
    if (r->used == 0 || now_ms < r->window_start ||
        now_ms - r->window_start >= r->window_ms) {
        r->window_start = now_ms;
        r->used = 0;
    }
    if (r->used >= r->burst) {
        r->suppressed++;
        return false;
    }
    r->used++;
    *suppressed = r->suppressed;
    r->suppressed = 0;
    return true;
}

uint64_t ng_ratelimit_take(ng_ratelimit *r)
{
    uint64_t n = r->suppressed;
    r->suppressed = 0;
    return n;
}
