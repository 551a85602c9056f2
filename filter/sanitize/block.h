/* block.h - 64-byte block scanners: what they share (the masks, bit
 * helpers, which instruction sets are built) and their entry points. Each
 * instruction set has its file (block_scalar.c, block_sse2.c,
 * block_avx2.c), which defines the classifiers and instantiates the checks
 * of block_run.h with them; block.c picks one at run time. */
#ifndef NANGUARD_BLOCK_H
#define NANGUARD_BLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* ------------------------------------------------------------------------
 * Blocks: 64 bytes looked at together. A classifier turns them into bit
 * masks, bit i standing for byte i, so that a whole run of numbers or of
 * string text is checked with a few word operations and no branch per
 * token. A block path only skips what it has proved needs nothing (no
 * repair, no error); anything else is left to the byte-wise scanner,
 * which stays the one authority on output, errors and their offsets.
 *
 * The masks come from AVX-512 or AVX2 (chosen at run time when the CPU
 * has it), SSE2 (every x86-64) or plain C; the checks on them are the same
 * code, instantiated once per way.
 */
#define BLOCK 64

/* In order: a later one has what an earlier one has. */
enum block_isa { ISA_C, ISA_SSE2, ISA_AVX2, ISA_AVX512 };

#if defined(__SSE2__) && !defined(NANGUARD_NO_SIMD)
#define BLOCK_SSE2 1
#define ISA_BASE ISA_SSE2
#else
#define ISA_BASE ISA_C
#endif

#if defined(BLOCK_SSE2) && defined(__x86_64__) && defined(__GNUC__) &&         \
    !defined(NANGUARD_NO_AVX2)
#define BLOCK_AVX2 1
#include <immintrin.h>
#define AVX2_TARGET __attribute__((target("avx2,bmi,popcnt")))
/* An instance: everything it calls inlined, so that the masks stay in
 * registers. */
#define AVX2_INSTANCE __attribute__((target("avx2,bmi,popcnt"), flatten))
#endif

#if defined(BLOCK_AVX2) && !defined(NANGUARD_NO_AVX512)
#define BLOCK_AVX512 1
#endif

static const uint64_t even_bits = UINT64_C(0x5555555555555555);

static inline unsigned popcount_isa(uint64_t x, enum block_isa isa)
{
    if (isa >= ISA_AVX2) {
        return (unsigned)__builtin_popcountll(x); /* POPCNT there */
    }
    x -= (x >> 1) & even_bits;
    x = (x & UINT64_C(0x3333333333333333)) +
        ((x >> 2) & UINT64_C(0x3333333333333333));
    x = (x + (x >> 4)) & UINT64_C(0x0F0F0F0F0F0F0F0F);
    return (unsigned)((x * UINT64_C(0x0101010101010101)) >> 56);
}

static inline unsigned lowest_bit(uint64_t x) /* x != 0 */
{
    return (unsigned)__builtin_ctzll(x);
}

static inline unsigned highest_bit(uint64_t x) /* x != 0 */
{
    return 63u - (unsigned)__builtin_clzll(x);
}

/* Bits below bit n (n <= 64). */
static inline uint64_t bits_below(unsigned n)
{
    return n >= 64 ? ~(uint64_t)0 : ((uint64_t)1 << n) - 1;
}

/* The mask of the bytes n places on (1 <= n <= 63): bit i of the result
 * is bit i + n of the block, taken from the next block past the end. */
static inline uint64_t ahead(uint64_t cur, uint64_t next, unsigned n)
{
    return cur >> n | next << (64 - n);
}

/* a + b + carry, the carry out in *carry. */
static inline uint64_t add_carry(uint64_t a, uint64_t b, uint64_t *carry)
{
    uint64_t s1, s2;
    bool c1 = __builtin_add_overflow(a, b, &s1);
    bool c2 = __builtin_add_overflow(s1, *carry, &s2);
    *carry = (uint64_t)(c1 | c2);
    return s2;
}

/* What a block is looked at for. */
struct number_masks {
    uint64_t digit, minus, dot, comma, space, zero;
};

struct string_masks {
    uint64_t quote, bslash;
    uint64_t ctl;      /* a control byte, or not ASCII */
    uint64_t u, hex;   /* 'u'; a hex digit */
    uint64_t d, zero;  /* 'd' or 'D'; '0' */
    uint64_t ge8, gec; /* a hex digit of 8 or more; of 0xC or more */
    uint64_t simple;   /* what may follow a backslash but 'u' (some) */
    /* The classes from u on are set by AVX2 only: the other scanners check
     * escapes one at a time (escapes_bad_each). */
};

/* The entry points, one per built instruction set. san_number_run: the run
 * of array elements from p, each a plain number (see block_run.h); returns
 * how far it is proved. san_string_blocks: string text from p, a
 * backslash, to the first byte the careful path must see. */
const unsigned char *san_number_run_scalar(const unsigned char *p,
                                           const unsigned char *end,
                                           uint64_t *commas, bool *closed);
const unsigned char *san_string_blocks_scalar(const unsigned char *p,
                                              const unsigned char *end);
#if defined(BLOCK_SSE2)
const unsigned char *san_number_run_sse2(const unsigned char *p,
                                         const unsigned char *end,
                                         uint64_t *commas, bool *closed);
const unsigned char *san_string_blocks_sse2(const unsigned char *p,
                                            const unsigned char *end);
#endif
#if defined(BLOCK_AVX2)
const unsigned char *san_number_run_avx2(const unsigned char *p,
                                         const unsigned char *end,
                                         uint64_t *commas, bool *closed);
const unsigned char *san_string_blocks_avx2(const unsigned char *p,
                                            const unsigned char *end);
#endif

#if defined(BLOCK_AVX512)
const unsigned char *san_number_run_avx512(const unsigned char *p,
                                           const unsigned char *end,
                                           uint64_t *commas, bool *closed);
const unsigned char *san_string_blocks_avx512(const unsigned char *p,
                                              const unsigned char *end);
#endif

/* block.c: the best instruction set built that this CPU (and its OS) runs,
 * and the entry points that take the instances of one. */
enum block_isa san_block_isa(void);
const unsigned char *san_number_run(const unsigned char *p,
                                    const unsigned char *end, uint64_t *commas,
                                    bool *closed, enum block_isa isa);
const unsigned char *san_string_blocks(const unsigned char *p,
                                       const unsigned char *end,
                                       enum block_isa isa);

#endif
