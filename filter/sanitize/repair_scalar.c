/* repair_scalar.c - the tokens outside strings that the scanner reads
 * byte by byte: numbers (their grammar and whether a double and
 * PostgreSQL's numeric can hold them) and bare words (true, false, null,
 * and NaN and Infinity, which become null). */
#include "filter/sanitize/sanitize_impl.h"

#include <stdio.h>

/* PostgreSQL's numeric_in refuses exponents at or beyond INT_MAX / 2 and
 * values with more than NUMERIC_MAX_DISPLAY_SCALE digits after the point. */
#define PG_EXPONENT_LIMIT 1073741823LL
/* Decimal digits of 2^1024 - 2^970: the smallest value that a correctly
 * rounding strtod turns into infinity. */
static const char dbl_overflow_digits[] =
    "179769313486231580793728971405303415079934132710037826936173"
    "778980444968292764750946649017977587207096330286416692887910"
    "946555547851940402630657488671505820681908902000708383676273"
    "854845817711531764475730270069855571366959622842914819860834"
    "936475292719074168444365510704342711559699508093042880177904"
    "174497792";

static const char repl_null[] = "null";
/* ------------------------------------------------------------------------
 * Numbers
 */

/* Whether the number just read is one PostgreSQL or a double cannot hold.
 * Its text is needed only at the double's edge. */
static bool number_out_of_range(sanitize *h, const unsigned char *p)
{
    if (h->exp >= PG_EXPONENT_LIMIT) {
        return true;
    }
    int64_t e = h->exp_neg ? -h->exp : h->exp;
    if ((int64_t)h->frac_digits - e > PG_MAX_SCALE) {
        return true;
    }
    if (!h->nonzero) {
        return false;
    }
    /* Decimal exponent of the first significant digit. */
    int64_t sci = h->int_digits > 0 ? (int64_t)h->int_digits - 1
                                    : -(int64_t)h->frac_lead_zeros - 1;
    sci += e;
    if (sci != 308) {
        return sci > 308;
    }
    size_t len;
    const char *s = san_tok_text(h, p, &len);
    if (s == NULL) {
        return false;
    }
    /* Compare the significant digits with the overflow threshold. */
    size_t k = 0;
    bool started = false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == 'e' || c == 'E') {
            break;
        }
        if (c < '0' || c > '9' || (!started && c == '0')) {
            continue;
        }
        started = true;
        if (k == sizeof dbl_overflow_digits - 1) {
            return true; /* equal so far, and more digits follow */
        }
        if (c != dbl_overflow_digits[k]) {
            return c > dbl_overflow_digits[k];
        }
        k++;
    }
    return k == sizeof dbl_overflow_digits - 1;
}

static const unsigned char *run_on_error(sanitize *h, const unsigned char *p)
{
    char msg[64];
    snprintf(msg, sizeof msg, "unexpected character '%c' after a value", *p);
    return san_halt(h, h->tok, SANITIZE_EMALFORMED, offset_at(h, p), msg);
}

/* The number token ends before p. Returns where to go on, NULL on error. */
const unsigned char *san_number_end(sanitize *h, const unsigned char *p)
{
    switch (h->nstate) {
    case N_SIGN:
        return san_halt_token(h, "'-' must be followed by a digit");
    case N_DOT:
        return san_halt_token(h, "digit expected after the decimal point");
    case N_E:
    case N_ESIGN:
        return san_halt_token(h, "digit expected in the exponent");
    default:
        break;
    }
    if (runs_on(h, p)) {
        return run_on_error(h, p);
    }
    /* The state changes only after the token is handed on (see emit). */
    if (!number_out_of_range(h, p)) {
        int rc = san_tok_keep(h);
        h->state = ST_VALUE;
        scalar_done(h, SANITIZE_TYPE_NUMBER);
        return rc == 0 ? p : NULL;
    }
    int rc = san_tok_replace(h, p, repl_null, 4, SANITIZE_OUT_OF_RANGE);
    h->state = ST_VALUE;
    if (rc != 0 || san_value_repaired(h) != 0) {
        return NULL;
    }
    scalar_done(h, SANITIZE_TYPE_NULL);
    return p;
}
/* -NaN, -Infinity: the '-' began a word after all. */
static const unsigned char *minus_word(sanitize *h, const unsigned char *p)
{
    h->state = ST_WORD;
    h->word_sign = '-';
    h->word_len = 0;
    return p;
}

/* Digits after the point, counting the zeros before the first other one;
 * returns where they stop. */
static const unsigned char *fraction_digits(sanitize *h, const unsigned char *p,
                                            const unsigned char *end)
{
    if (!h->nonzero) {
        while (p < end && *p == '0') {
            h->frac_lead_zeros++;
            h->frac_digits++;
            p++;
        }
        if (p < end && *p >= '1' && *p <= '9') {
            h->nonzero = true;
        }
    }
    const unsigned char *q = scan_digits(p, end);
    h->frac_digits += (uint64_t)(q - p);
    return q;
}

/* Digits of the exponent (its value saturates at PostgreSQL's limit);
 * returns where they stop. */
static const unsigned char *exponent_digits(sanitize *h, const unsigned char *p,
                                            const unsigned char *end)
{
    while (p < end && (unsigned)(*p - '0') < 10) {
        if (h->exp < PG_EXPONENT_LIMIT) {
            h->exp = h->exp * 10 + (*p - '0');
        }
        p++;
    }
    return p;
}

/* Reads number bytes from p; returns where it stopped (the number may
 * have ended there, see h->state), NULL on error. */
const unsigned char *san_scan_number(sanitize *h, const unsigned char *p,
                                     const unsigned char *end)
{
    while (p < end) {
        unsigned char c = *p;
        bool digit = (unsigned)(c - '0') < 10;
        switch (h->nstate) {
        case N_SIGN:
            if (c == 'N' || c == 'I') {
                return minus_word(h, p);
            }
            if (!digit) {
                return san_number_end(h, p);
            }
            h->nstate = c == '0' ? N_ZERO : N_INT;
            p += c == '0';
            break;
        case N_ZERO:
            if (digit) {
                return san_halt_token(
                    h, "leading zeros are not allowed in numbers");
            }
            goto after_int;
        case N_INT: {
            const unsigned char *q = scan_digits(p, end);
            h->int_digits += (uint64_t)(q - p);
            h->nonzero = true;
            p = q;
            if (p == end) {
                return p;
            }
            c = *p;
        }
        after_int:
            if (c == '.') {
                h->nstate = N_DOT;
                p++;
            } else if (c == 'e' || c == 'E') {
                h->nstate = N_E;
                p++;
            } else {
                return san_number_end(h, p);
            }
            break;
        case N_DOT:
            if (!digit) {
                return san_number_end(h, p);
            }
            h->nstate = N_FRAC;
            break;
        case N_FRAC:
            p = fraction_digits(h, p, end);
            if (p == end) {
                return p;
            }
            c = *p;
            if (c == 'e' || c == 'E') {
                h->nstate = N_E;
                p++;
            } else {
                return san_number_end(h, p);
            }
            break;
        case N_E:
            if (c == '+' || c == '-') {
                h->exp_neg = c == '-';
                h->nstate = N_ESIGN;
                p++;
                break;
            }
            /* fall through */
        case N_ESIGN:
            if (!digit) {
                return san_number_end(h, p);
            }
            h->nstate = N_EXP;
            break;
        case N_EXP:
            p = exponent_digits(h, p, end);
            return p == end ? p : san_number_end(h, p);
        }
    }
    return p;
}

void san_number_begin(sanitize *h, const unsigned char *p)
{
    san_tok_begin(h, p);
    h->state = ST_NUMBER;
    h->nstate = *p == '-' ? N_SIGN : *p == '0' ? N_ZERO : N_INT;
    h->int_digits = 0;
    h->frac_digits = 0;
    h->frac_lead_zeros = 0;
    h->nonzero = false;
    h->exp = 0;
    h->exp_neg = false;
}

/* ------------------------------------------------------------------------
 * Bare words
 */
static bool is_letter(unsigned char c)
{
    return (unsigned)((c | 0x20) - 'a') < 26;
}

const unsigned char *san_word_end(sanitize *h, const unsigned char *p)
{
    h->word[h->word_len] = '\0';
    const char *w = h->word;
    if (strcmp(w, "NaN") == 0 || strcmp(w, "Infinity") == 0) {
        if (runs_on(h, p)) {
            return run_on_error(h, p);
        }
        sanitize_kind kind = w[0] == 'N' ? SANITIZE_NAN : SANITIZE_INFINITY;
        int rc = san_tok_replace(h, p, repl_null, 4, kind);
        h->state = ST_VALUE;
        if (rc != 0 || san_value_repaired(h) != 0) {
            return NULL;
        }
        scalar_done(h, SANITIZE_TYPE_NULL);
        return p;
    }
    if (h->word_sign == 0) {
        sanitize_type type = strcmp(w, "null") == 0    ? SANITIZE_TYPE_NULL
                             : strcmp(w, "true") == 0  ? SANITIZE_TYPE_BOOL
                             : strcmp(w, "false") == 0 ? SANITIZE_TYPE_BOOL
                                                       : SANITIZE_ABSENT;
        if (type != SANITIZE_ABSENT) {
            if (runs_on(h, p)) {
                return run_on_error(h, p);
            }
            int rc = san_tok_keep(h);
            h->state = ST_VALUE;
            scalar_done(h, type);
            return rc == 0 ? p : NULL;
        }
    }
    char msg[64];
    snprintf(msg, sizeof msg, "invalid literal '%s%s'",
             h->word_sign == '-'   ? "-"
             : h->word_sign == '+' ? "+"
                                   : "",
             w);
    return san_halt_token(h, msg);
}

const unsigned char *san_scan_word(sanitize *h, const unsigned char *p,
                                   const unsigned char *end)
{
    while (p < end && is_letter(*p)) {
        if (h->word_len == sizeof h->word - 1) {
            return san_halt_token(
                h, "invalid literal (not true, false, null, NaN or Infinity)");
        }
        h->word[h->word_len++] = (char)*p++;
    }
    if (p == end) {
        return p;
    }
    if (h->word_len == 0) {
        return san_halt_token(h, "'+' must be followed by NaN or Infinity");
    }
    return san_word_end(h, p);
}
