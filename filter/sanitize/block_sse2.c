/* block_sse2.c - the block scanners with SSE2 (every x86-64): the masks
 * from four 16-byte vectors. */
#include "filter/sanitize/block.h"

/* The same with vectors: signed byte compares, so that a range test is
 * an add and a compare, and bytes >= 0x80 count as below 0x20. */
#if defined(BLOCK_SSE2)
/* A block in four vectors; a class is looked for in all four at once,
 * which keeps few vectors live. */
struct vblock {
    __m128i a, b, c, d;
};

static inline struct vblock load_block(const unsigned char *p)
{
    struct vblock v;
    v.a = _mm_loadu_si128((const __m128i *)(const void *)p);
    v.b = _mm_loadu_si128((const __m128i *)(const void *)(p + 16));
    v.c = _mm_loadu_si128((const __m128i *)(const void *)(p + 32));
    v.d = _mm_loadu_si128((const __m128i *)(const void *)(p + 48));
    return v;
}

/* The 64 bits of four byte masks (0x00 or 0xFF per byte). */
static inline uint64_t bits64(__m128i a, __m128i b, __m128i c, __m128i d)
{
    return (uint64_t)(unsigned)_mm_movemask_epi8(a) |
           (uint64_t)(unsigned)_mm_movemask_epi8(b) << 16 |
           (uint64_t)(unsigned)_mm_movemask_epi8(c) << 32 |
           (uint64_t)(unsigned)_mm_movemask_epi8(d) << 48;
}

static inline uint64_t block_eq(struct vblock v, char c)
{
    const __m128i k = _mm_set1_epi8(c);
    return bits64(_mm_cmpeq_epi8(v.a, k), _mm_cmpeq_epi8(v.b, k),
                  _mm_cmpeq_epi8(v.c, k), _mm_cmpeq_epi8(v.d, k));
}

/* Bytes below c, signed. */
static inline uint64_t block_lt(struct vblock v, char c)
{
    const __m128i k = _mm_set1_epi8(c);
    return bits64(_mm_cmplt_epi8(v.a, k), _mm_cmplt_epi8(v.b, k),
                  _mm_cmplt_epi8(v.c, k), _mm_cmplt_epi8(v.d, k));
}

/* '0' + 0x50 is -128: '0'..'9' are the ten lowest. */
static inline uint64_t block_digits(struct vblock v)
{
    const __m128i shift = _mm_set1_epi8(0x50);
    v.a = _mm_add_epi8(v.a, shift);
    v.b = _mm_add_epi8(v.b, shift);
    v.c = _mm_add_epi8(v.c, shift);
    v.d = _mm_add_epi8(v.d, shift);
    return block_lt(v, -118);
}

static inline void number_classify_sse2(const unsigned char *p,
                                        struct number_masks *m)
{
    struct vblock v = load_block(p);
    m->digit = block_digits(v);
    m->minus = block_eq(v, '-');
    m->dot = block_eq(v, '.');
    m->comma = block_eq(v, ',');
    m->space = block_eq(v, ' ');
    m->zero = block_eq(v, '0');
}

/* SSE2 looks only for what ends a run of text: escapes are checked one
 * by one there (all the classes would cost more than that loop). */
static inline void string_classify_sse2(const unsigned char *p,
                                        struct string_masks *m)
{
    struct vblock v = load_block(p);
    m->quote = block_eq(v, '"');
    m->bslash = block_eq(v, '\\');
    m->ctl = block_lt(v, 0x20);
}
#endif

#if defined(BLOCK_SSE2)
static inline __attribute__((always_inline)) void
number_classify(const unsigned char *p, struct number_masks *m,
                enum block_isa isa)
{
    (void)isa;
    number_classify_sse2(p, m);
}

static inline __attribute__((always_inline)) void
string_classify(const unsigned char *p, struct string_masks *m,
                enum block_isa isa)
{
    (void)isa;
    string_classify_sse2(p, m);
}

#include "filter/sanitize/block_run.h"

const unsigned char *san_number_run_sse2(const unsigned char *p,
                                         const unsigned char *end,
                                         uint64_t *commas, bool *closed)
{
    return number_run_isa(p, end, commas, closed, ISA_SSE2);
}

const unsigned char *san_string_blocks_sse2(const unsigned char *p,
                                            const unsigned char *end)
{
    return string_blocks_isa(p, end, ISA_SSE2);
}
#else
typedef int block_sse2_not_built; /* ISO C wants a declaration */
#endif
