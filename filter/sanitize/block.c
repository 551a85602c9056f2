/* block.c - which block scanner runs: AVX-512, else AVX2, when the CPU
 * has it, else SSE2 when built, else plain C. */
#include "filter/sanitize/block.h"

enum block_isa san_block_isa(void)
{
#if defined(BLOCK_AVX2)
    __builtin_cpu_init();
    bool avx2 = __builtin_cpu_supports("avx2") &&
                __builtin_cpu_supports("bmi") &&
                __builtin_cpu_supports("popcnt");
#if defined(BLOCK_AVX512)
    if (avx2 && __builtin_cpu_supports("avx512f") &&
        __builtin_cpu_supports("avx512bw")) {
        return ISA_AVX512;
    }
#endif
    if (avx2) {
        return ISA_AVX2;
    }
#endif
#if defined(BLOCK_SSE2)
    return ISA_SSE2;
#else
    return ISA_C;
#endif
}

const unsigned char *san_number_run(const unsigned char *p,
                                    const unsigned char *end, uint64_t *commas,
                                    bool *closed, enum block_isa isa)
{
#if defined(BLOCK_AVX512)
    if (isa == ISA_AVX512) {
        return san_number_run_avx512(p, end, commas, closed);
    }
#endif
#if defined(BLOCK_AVX2)
    if (isa == ISA_AVX2) {
        return san_number_run_avx2(p, end, commas, closed);
    }
#endif
    (void)isa;
#if defined(BLOCK_SSE2)
    return san_number_run_sse2(p, end, commas, closed);
#else
    return san_number_run_scalar(p, end, commas, closed);
#endif
}

const unsigned char *san_string_blocks(const unsigned char *p,
                                       const unsigned char *end,
                                       enum block_isa isa)
{
#if defined(BLOCK_AVX512)
    if (isa == ISA_AVX512) {
        return san_string_blocks_avx512(p, end);
    }
#endif
#if defined(BLOCK_AVX2)
    if (isa == ISA_AVX2) {
        return san_string_blocks_avx2(p, end);
    }
#endif
    (void)isa;
#if defined(BLOCK_SSE2)
    return san_string_blocks_sse2(p, end);
#else
    return san_string_blocks_scalar(p, end);
#endif
}
