/* block_avx2.c - the block scanners with AVX2 (chosen at run time when
 * the CPU has it): the masks from two 32-byte vectors, and escapes checked
 * from masks too (where the other instruction sets check them one by one).
 * Every function here is built for AVX2 by its attribute, so the file
 * needs no special compiler flag. */
#include "filter/sanitize/block.h"

#if defined(BLOCK_AVX2)
AVX2_TARGET static inline uint64_t mask32(__m256i x, unsigned shift)
{
    return (uint64_t)(uint32_t)_mm256_movemask_epi8(x) << shift;
}

AVX2_TARGET static inline __m256i eq32(__m256i v, char c)
{
    return _mm256_cmpeq_epi8(v, _mm256_set1_epi8(c));
}

/* a < b, signed bytes */
AVX2_TARGET static inline __m256i lt32(__m256i a, char b)
{
    return _mm256_cmpgt_epi8(_mm256_set1_epi8(b), a);
}

AVX2_TARGET static inline void number_classify32(const unsigned char *p,
                                                 struct number_masks *m,
                                                 unsigned shift)
{
    __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)p);
    __m256i digit = lt32(_mm256_add_epi8(v, _mm256_set1_epi8(0x50)), -118);
    m->digit |= mask32(digit, shift);
    m->minus |= mask32(eq32(v, '-'), shift);
    m->dot |= mask32(eq32(v, '.'), shift);
    m->comma |= mask32(eq32(v, ','), shift);
    m->space |= mask32(eq32(v, ' '), shift);
    m->zero |= mask32(eq32(v, '0'), shift);
}

AVX2_TARGET static inline void number_classify_avx2(const unsigned char *p,
                                                    struct number_masks *m)
{
    *m = (struct number_masks){0};
    number_classify32(p, m, 0);
    number_classify32(p + 32, m, 32);
}

AVX2_TARGET static inline void string_classify32(const unsigned char *p,
                                                 struct string_masks *m,
                                                 unsigned shift)
{
    __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)p);
    __m256i lower = _mm256_or_si256(v, _mm256_set1_epi8(0x20));
    __m256i digit = lt32(_mm256_add_epi8(v, _mm256_set1_epi8(0x50)), -118);
    __m256i letter = lt32(_mm256_add_epi8(lower, _mm256_set1_epi8(0x1F)), -122);
    __m256i quote = eq32(v, '"'), bslash = eq32(v, '\\');
    m->quote |= mask32(quote, shift);
    m->bslash |= mask32(bslash, shift);
    m->ctl |= mask32(lt32(v, 0x20), shift);
    m->u |= mask32(eq32(v, 'u'), shift);
    m->hex |= mask32(_mm256_or_si256(digit, letter), shift);
    m->d |= mask32(eq32(lower, 'd'), shift);
    m->zero |= mask32(eq32(v, '0'), shift);
    m->ge8 |= mask32(
        _mm256_or_si256(_mm256_and_si256(
                            digit, _mm256_cmpgt_epi8(v, _mm256_set1_epi8('7'))),
                        letter),
        shift);
    m->gec |=
        mask32(_mm256_and_si256(
                   letter, _mm256_cmpgt_epi8(lower, _mm256_set1_epi8('b'))),
               shift);
    m->simple |=
        mask32(_mm256_or_si256(
                   _mm256_or_si256(quote, bslash),
                   _mm256_or_si256(_mm256_or_si256(eq32(v, 'n'), eq32(v, 't')),
                                   eq32(v, 'r'))),
               shift);
}

AVX2_TARGET static inline void string_classify_avx2(const unsigned char *p,
                                                    struct string_masks *m)
{
    *m = (struct string_masks){0};
    string_classify32(p, m, 0);
    string_classify32(p + 32, m, 32);
}

static inline __attribute__((always_inline)) void
number_classify(const unsigned char *p, struct number_masks *m,
                enum block_isa isa)
{
    (void)isa;
    number_classify_avx2(p, m);
}

static inline __attribute__((always_inline)) void
string_classify(const unsigned char *p, struct string_masks *m,
                enum block_isa isa)
{
    (void)isa;
    string_classify_avx2(p, m);
}

#include "filter/sanitize/block_run.h"

AVX2_INSTANCE const unsigned char *san_number_run_avx2(const unsigned char *p,
                                                       const unsigned char *end,
                                                       uint64_t *commas,
                                                       bool *closed)
{
    return number_run_isa(p, end, commas, closed, ISA_AVX2);
}

AVX2_INSTANCE const unsigned char *
san_string_blocks_avx2(const unsigned char *p, const unsigned char *end)
{
    return string_blocks_isa(p, end, ISA_AVX2);
}
#else
typedef int block_avx2_not_built; /* ISO C wants a declaration */
#endif
