/* block_avx512.c - the block scanners with AVX-512 (F and BW; chosen at run
 * time when the CPU has them): a 64-byte block is one vector, and each
 * class one compare straight into a 64-bit mask. Escapes are checked from
 * masks, as with AVX2. Every function here is built for AVX-512 by its
 * attribute, so the file needs no special compiler flag. */
#include "filter/sanitize/block.h"

#if defined(BLOCK_AVX512)
#define AVX512_TARGET                                                          \
    __attribute__((target("avx512f,avx512bw,avx2,bmi,popcnt")))
#define AVX512_INSTANCE                                                        \
    __attribute__((target("avx512f,avx512bw,avx2,bmi,popcnt"), flatten))

AVX512_TARGET static inline uint64_t eq64(__m512i v, char c)
{
    return _mm512_cmpeq_epi8_mask(v, _mm512_set1_epi8(c));
}

/* v < c, signed bytes (so bytes >= 0x80 are below 0x20) */
AVX512_TARGET static inline uint64_t lt64(__m512i v, char c)
{
    return _mm512_cmplt_epi8_mask(v, _mm512_set1_epi8(c));
}

AVX512_TARGET static inline uint64_t gt64(__m512i v, char c)
{
    return _mm512_cmpgt_epi8_mask(v, _mm512_set1_epi8(c));
}

/* '0' + 0x50 is -128: '0'..'9' are the ten lowest. */
AVX512_TARGET static inline uint64_t digits64(__m512i v)
{
    return lt64(_mm512_add_epi8(v, _mm512_set1_epi8(0x50)), -118);
}

AVX512_TARGET static inline void number_classify_avx512(const unsigned char *p,
                                                        struct number_masks *m)
{
    __m512i v = _mm512_loadu_si512((const void *)p);
    m->digit = digits64(v);
    m->minus = eq64(v, '-');
    m->dot = eq64(v, '.');
    m->comma = eq64(v, ',');
    m->space = eq64(v, ' ');
    m->zero = eq64(v, '0');
}

AVX512_TARGET static inline void string_classify_avx512(const unsigned char *p,
                                                        struct string_masks *m)
{
    __m512i v = _mm512_loadu_si512((const void *)p);
    __m512i lower = _mm512_or_si512(v, _mm512_set1_epi8(0x20));
    uint64_t digit = digits64(v);
    uint64_t letter =
        lt64(_mm512_add_epi8(lower, _mm512_set1_epi8(0x1F)), -122); /* a-f */
    m->quote = eq64(v, '"');
    m->bslash = eq64(v, '\\');
    m->ctl = lt64(v, 0x20);
    m->u = eq64(v, 'u');
    m->hex = digit | letter;
    m->d = eq64(lower, 'd');
    m->zero = eq64(v, '0');
    m->ge8 = (digit & gt64(v, '7')) | letter;
    m->gec = letter & gt64(lower, 'b');
    m->simple =
        m->quote | m->bslash | eq64(v, 'n') | eq64(v, 't') | eq64(v, 'r');
}

static inline __attribute__((always_inline)) void
number_classify(const unsigned char *p, struct number_masks *m,
                enum block_isa isa)
{
    (void)isa;
    number_classify_avx512(p, m);
}

static inline __attribute__((always_inline)) void
string_classify(const unsigned char *p, struct string_masks *m,
                enum block_isa isa)
{
    (void)isa;
    string_classify_avx512(p, m);
}

#include "filter/sanitize/block_run.h"

AVX512_INSTANCE const unsigned char *
san_number_run_avx512(const unsigned char *p, const unsigned char *end,
                      uint64_t *commas, bool *closed)
{
    return number_run_isa(p, end, commas, closed, ISA_AVX512);
}

AVX512_INSTANCE const unsigned char *
san_string_blocks_avx512(const unsigned char *p, const unsigned char *end)
{
    return string_blocks_isa(p, end, ISA_AVX512);
}
#else
typedef int block_avx512_not_built; /* ISO C wants a declaration */
#endif
