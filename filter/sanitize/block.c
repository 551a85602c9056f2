/* block.c - which block scanner runs: AVX2 when the CPU has it, else
 * SSE2 when built, else plain C. */
#include "filter/sanitize/block.h"

bool san_cpu_has_avx2(void)
{
#if defined(BLOCK_AVX2)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("bmi") &&
           __builtin_cpu_supports("popcnt");
#else
    return false;
#endif
}

const unsigned char *san_number_run(const unsigned char *p,
                                    const unsigned char *end, uint64_t *commas,
                                    bool *closed, bool avx2)
{
#if defined(BLOCK_AVX2)
    if (avx2) {
        return san_number_run_avx2(p, end, commas, closed);
    }
#endif
    (void)avx2;
#if defined(BLOCK_SSE2)
    return san_number_run_sse2(p, end, commas, closed);
#else
    return san_number_run_scalar(p, end, commas, closed);
#endif
}

const unsigned char *san_string_blocks(const unsigned char *p,
                                       const unsigned char *end, bool avx2)
{
#if defined(BLOCK_AVX2)
    if (avx2) {
        return san_string_blocks_avx2(p, end);
    }
#endif
    (void)avx2;
#if defined(BLOCK_SSE2)
    return san_string_blocks_sse2(p, end);
#else
    return san_string_blocks_scalar(p, end);
#endif
}
