/* block_run.h - the checks on a block's masks, written once for every
 * instruction set: runs of array numbers, and string text between
 * escapes. Not a header to include anywhere but in a block_<isa>.c, after
 * it has defined
 *
 *   static inline void number_classify(const unsigned char *p,
 *                                      struct number_masks *m,
 *                                      enum block_isa isa);
 *   static inline void string_classify(const unsigned char *p,
 *                                      struct string_masks *m,
 *                                      enum block_isa isa);
 *
 * for its instruction set. */
#ifndef NANGUARD_BLOCK_RUN_H
#define NANGUARD_BLOCK_RUN_H

#include "filter/sanitize/block.h"
#include "filter/sanitize/json_text.h"
#include "filter/sanitize/sanitize_impl.h"

/* ------------------------------------------------------------------------
 * Runs of numbers in an array: ", -0.75, 1.5, 3", a block at a time
 */

/* Commas in [p, end). */
static uint64_t count_commas(const unsigned char *p, const unsigned char *end)
{
    uint64_t n = 0;
    for (; p < end; p++) {
        n += *p == ',';
    }
    return n;
}

/* The run of array elements from p, a number where a value may stand:
 * each element -?(0|[1-9][0-9]*)(.[0-9]+)?, then spaces, a comma and
 * spaces. Blocks go on at a fixed stride, so that the work on one does
 * not wait for the last; what a check needs of the block before is
 * carried as one bit. A block of nothing but number bytes ends the run,
 * so a number proved here is shorter than 128 bytes: in range, with no
 * exponent.
 *
 * Returns how far the run is proved, with *commas the commas passed:
 * *closed true, up to the byte after the last element, which is none of
 * the number or word bytes; else up to the start of an element (p itself
 * when none is proved) that the caller takes on. */
static inline __attribute__((always_inline)) const unsigned char *
number_run_isa(const unsigned char *p, const unsigned char *end,
               uint64_t *commas, bool *closed, enum block_isa isa)
{
    const unsigned char *base = p;
    const unsigned char *last = p; /* the last element start seen */
    uint64_t ncommas = 0;          /* commas before base */
    /* Carries: the byte before base was a number byte, a digit, a '-'
     * starting an element, a leading 0, a point; the fraction and the
     * spaces after a comma run on into this block. An element may start
     * at byte 0 as if after a comma. */
    uint64_t c_tok = 0, c_digit = 0, c_minus = 0, c_zero = 0, c_dot = 0;
    uint64_t c_frac = 0, c_comma = 1;
    *closed = false;
    while (end - base >= BLOCK) {
        struct number_masks m;
        number_classify(base, &m, isa);
        uint64_t tok = m.digit | m.minus | m.dot;
        uint64_t other = ~(tok | m.comma | m.space);
        uint64_t starts = tok & ~(tok << 1 | c_tok);
        /* '-' only in front; then a digit; no 0 before another digit. */
        uint64_t bad = m.minus & ~starts;
        uint64_t first =
            (starts & ~m.minus) | (starts & m.minus) << 1 | c_minus;
        bad |= first & ~m.digit;
        bad |= ((first & m.zero) << 1 | c_zero) & m.digit;
        /* A point between digits, and one per element: the carry of
         * adding the bit after a point to the digits runs to the end of
         * the fraction. */
        uint64_t after_dot = m.dot << 1 | c_dot;
        bad |= after_dot & ~m.digit;
        bad |= m.dot & ~(m.digit << 1 | c_digit);
        bad |= add_carry(after_dot, m.digit, &c_frac) & m.dot;
        /* Past the spaces after each comma, an element starts; and every
         * element has a comma before it. */
        uint64_t c_space = 0;
        uint64_t after_comma =
            add_carry(m.comma << 1 | c_comma, m.space, &c_space) & ~m.space;
        bad |= after_comma ^ starts;
        if ((bad | other) != 0 || tok == ~(uint64_t)0) {
            unsigned stop = other != 0 ? lowest_bit(other) : BLOCK;
            if (tok == ~(uint64_t)0) {
                bad |= 1; /* an element this long goes the careful way */
            }
            bad &= stop < BLOCK ? bits_below(stop + 1) : ~(uint64_t)0;
            bool ends = stop < BLOCK &&
                        (stop > 0 ? tok >> (stop - 1) & 1 : c_tok) != 0 &&
                        value_class[base[stop]] != V_WORD;
            if (bad == 0 && ends) {
                *closed = true;
                *commas =
                    ncommas + popcount_isa(m.comma & bits_below(stop), isa);
                return base + stop;
            }
            uint64_t before =
                starts & bits_below(bad != 0 ? lowest_bit(bad) : stop);
            if (before != 0) {
                unsigned at = highest_bit(before);
                *commas = ncommas + popcount_isa(m.comma & bits_below(at), isa);
                return base + at;
            }
            break;
        }
        if (starts != 0) {
            last = base + highest_bit(starts);
        }
        ncommas += popcount_isa(m.comma, isa);
        c_tok = tok >> 63;
        c_digit = m.digit >> 63;
        c_minus = (starts & m.minus) >> 63;
        c_zero = (first & m.zero) >> 63;
        c_dot = m.dot >> 63;
        c_comma = m.comma >> 63 | c_space;
        base += BLOCK;
    }
    /* The last element seen may go on past what was looked at. */
    *commas = ncommas - count_commas(last, base);
    return last;
}

/* ------------------------------------------------------------------------
 * String text a block at a time
 */

/* Of the escapes at check (backslashes followed by something other than a
 * backslash), the ones the block paths do not keep as they are: all but
 * \" \\ \n \t \r, and \u with four hex digits, not 0000, a high surrogate
 * (D800-DBFF) right before a low one (DC00-DFFF) and no other surrogate.
 * From the masks of the block and of the next one. */
static inline uint64_t escapes_bad(const struct string_masks *m,
                                   const struct string_masks *next,
                                   uint64_t check)
{
    uint64_t uesc = check & ahead(m->u, next->u, 1);
    uint64_t bad = check & ~uesc & ~ahead(m->simple, next->simple, 1);
    uint64_t hex = ahead(m->hex, next->hex, 2) & ahead(m->hex, next->hex, 3) &
                   ahead(m->hex, next->hex, 4) & ahead(m->hex, next->hex, 5);
    uint64_t zero =
        ahead(m->zero, next->zero, 2) & ahead(m->zero, next->zero, 3) &
        ahead(m->zero, next->zero, 4) & ahead(m->zero, next->zero, 5);
    bad |= uesc & (~hex | zero);
    uint64_t surrogate =
        uesc & ahead(m->d, next->d, 2) & ahead(m->ge8, next->ge8, 3);
    uint64_t lo = surrogate & ahead(m->gec, next->gec, 3);
    uint64_t hi = surrogate & ~lo;
    return bad | (hi & ~(lo >> 6)) | (lo & ~(hi << 6));
}

/* The same, one escape at a time from the bytes (BLOCK + 16 of them
 * readable at base), without a branch on what they hold. */
static inline uint64_t escapes_bad_each(const unsigned char *base,
                                        uint64_t check)
{
    uint64_t ok = 0, hi = 0, lo = 0;
    for (uint64_t left = check; left != 0; left &= left - 1) {
        unsigned k = lowest_bit(left);
        const unsigned char *e = base + k;
        uint64_t is_u = e[1] == 'u';
        uint32_t v = hex4_or_big(e + 2);
        uint64_t u_ok = uescape_kept(v);
        ok |= ((is_u & u_ok) | ((is_u ^ 1) & escape_ok[e[1]])) << k;
        hi |= (is_u & (v - 0xD800u < 0x400u)) << k;
        lo |= (is_u & (v - 0xDC00u < 0x400u)) << k;
    }
    return (check & ~(ok | hi | lo)) | (hi & ~(lo >> 6)) | (lo & ~(hi << 6));
}

/* String text from p, a backslash that starts an escape, to the first
 * byte the careful path must see: the closing quote, a control or
 * non-ASCII byte, or an escape that is not kept as it is (a bad one,
 * \u0000, a surrogate without its partner in the same block) or that
 * this path leaves to it (\b \f \/). Blocks go at a fixed stride with the
 * masks of the next one at hand, so that an escape running over the end
 * of a block is checked with it; its bytes in the next are no stop.
 * Returns p itself when the escape at p is such a one. */
static inline __attribute__((always_inline)) const unsigned char *
string_blocks_isa(const unsigned char *p, const unsigned char *end,
                  enum block_isa isa)
{
    /* Checking escapes from the masks (AVX2, where all the classes cost
     * little) needs those of the next block; one by one (SSE2, plain C),
     * its first byte and 16 more. */
    const bool pipelined = isa >= ISA_AVX2;
    const ptrdiff_t need = pipelined ? 2 * BLOCK : BLOCK + 16;
    if (end - p < need) {
        return p;
    }
    const unsigned char *base = p;
    uint64_t c_esc = 0;   /* byte 0 is escaped by the block before */
    uint64_t prev_es = 0; /* escape starts of the block before */
    struct string_masks m, next = {0};
    if (pipelined) {
        string_classify(base, &m, isa);
    }
    while (end - base >= need) {
        if (pipelined) {
            string_classify(base + BLOCK, &next, isa);
        } else {
            string_classify(base, &m, isa);
            next.bslash = base[BLOCK] == '\\';
        }
        /* A backslash starts an escape when an even number of them stand
         * right before it: in a run of them, every other one from the
         * first. Adding a run's first bit to the run clears it, which
         * tells the runs that start at an even position. */
        uint64_t bs = m.bslash & ~c_esc;
        uint64_t first = bs & ~(bs << 1);
        uint64_t even_runs = bs & ~(bs + (first & even_bits));
        uint64_t es = (even_runs & even_bits) | (bs & ~even_runs & ~even_bits);
        uint64_t stop = (m.quote & ~(es << 1 | c_esc)) | m.ctl;
        uint64_t check = es & ~ahead(m.bslash, next.bslash, 1);
        uint64_t bad = pipelined ? escapes_bad(&m, &next, check)
                                 : escapes_bad_each(base, check);
        if ((stop | bad) != 0) {
            return base + lowest_bit(stop | bad);
        }
        prev_es = es;
        c_esc = es >> 63;
        base += BLOCK;
        if (pipelined) {
            m = next;
        }
    }
    /* Stop at base, or past the escape of the block before that runs
     * into it: \uXXXX is 6 bytes, the others 2. */
    for (unsigned k = BLOCK - 6; k < BLOCK; k++) {
        if ((prev_es >> k & 1) != 0) {
            const unsigned char *e = base - BLOCK + k;
            const unsigned char *after = e + (e[1] == 'u' ? 6 : 2);
            if (after > base) {
                return after;
            }
        }
    }
    return base;
}

#endif
