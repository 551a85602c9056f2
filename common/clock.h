/* clock.h - milliseconds for timers, and deadlines for timed waits. */
#ifndef NANGUARD_CLOCK_H
#define NANGUARD_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Milliseconds on the monotonic clock (for intervals, never for dates). */
uint64_t ng_now_ms(void);

/* Microseconds on the monotonic clock (for timing short operations). */
uint64_t ng_now_us(void);

/* Milliseconds since the epoch on the real-time clock (to compare with
 * timestamps from elsewhere, e.g. a Kafka message's). */
int64_t ng_wall_ms(void);

/* Milliseconds from then to now (or any one unit); 0 when then is later.
 * Callers that read the clock once and compare it with a stamp taken after (a
 * loop turn and a failure within it) would otherwise wrap to "forever". */
uint64_t ng_since_ms(uint64_t now, uint64_t then);

/* The CLOCK_REALTIME time ms from now, for pthread_cond_timedwait. */
struct timespec ng_deadline_in(uint64_t ms);

#endif
