/* ratelimit.h - at most `burst` log lines of one kind per window, so that a
 * flood of bad messages cannot flood the log. Lines beyond the limit are
 * counted, and the count is handed back once, with the first line allowed
 * after them, to be logged as "N similar lines suppressed".
 *
 * A plain struct, no allocation; one per kind of line, used by one thread. */
#ifndef NANGUARD_RATELIMIT_H
#define NANGUARD_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    const char *kind; /* names the lines in the "suppressed" report */
    uint64_t window_ms, burst;
    uint64_t window_start, used; /* in the current window */
    uint64_t suppressed;         /* not yet reported */
} ng_ratelimit;

/* kind is kept (not copied): a literal. */
void ng_ratelimit_init(ng_ratelimit *r, const char *kind, uint64_t burst,
                       uint64_t window_ms);

/* Whether a line may be written at now_ms (a monotonic clock). When it may,
 * *suppressed is the number of lines held back since the last allowed one
 * (0 mostly); when it may not, the line is counted and *suppressed is 0. */
bool ng_ratelimit_allow(ng_ratelimit *r, uint64_t now_ms, uint64_t *suppressed);

/* Lines held back and not yet reported; resets the count. For a last
 * report when the process stops. */
uint64_t ng_ratelimit_take(ng_ratelimit *r);

#endif
