/* block_scalar.c - the block scanners in plain C: the masks built a byte
 * at a time. Built everywhere; used where the CPU has no SSE2 or the
 * build asks for none (NANGUARD_NO_SIMD). */
#include "filter/sanitize/block.h"

#include <string.h>

/* Plain C, a byte at a time. */
static void number_classify_c(const unsigned char *p, struct number_masks *m)
{
    memset(m, 0, sizeof *m);
    for (unsigned i = 0; i < BLOCK; i++) {
        uint64_t bit = (uint64_t)1 << i;
        unsigned char c = p[i];
        m->digit |= (unsigned)(c - '0') < 10 ? bit : 0;
        m->minus |= c == '-' ? bit : 0;
        m->dot |= c == '.' ? bit : 0;
        m->comma |= c == ',' ? bit : 0;
        m->space |= c == ' ' ? bit : 0;
        m->zero |= c == '0' ? bit : 0;
    }
}

static void string_classify_c(const unsigned char *p, struct string_masks *m)
{
    memset(m, 0, sizeof *m);
    for (unsigned i = 0; i < BLOCK; i++) {
        uint64_t bit = (uint64_t)1 << i;
        unsigned char c = p[i];
        m->quote |= c == '"' ? bit : 0;
        m->bslash |= c == '\\' ? bit : 0;
        m->ctl |= c < 0x20 || c >= 0x80 ? bit : 0;
    }
}

static inline __attribute__((always_inline)) void
number_classify(const unsigned char *p, struct number_masks *m,
                enum block_isa isa)
{
    (void)isa;
    number_classify_c(p, m);
}

static inline __attribute__((always_inline)) void
string_classify(const unsigned char *p, struct string_masks *m,
                enum block_isa isa)
{
    (void)isa;
    string_classify_c(p, m);
}

#include "filter/sanitize/block_run.h"

const unsigned char *san_number_run_scalar(const unsigned char *p,
                                           const unsigned char *end,
                                           uint64_t *commas, bool *closed)
{
    return number_run_isa(p, end, commas, closed, ISA_C);
}

const unsigned char *san_string_blocks_scalar(const unsigned char *p,
                                              const unsigned char *end)
{
    return string_blocks_isa(p, end, ISA_C);
}
