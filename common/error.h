/* error.h - errors as values, with the class that decides what happens.
 *
 * A function that can fail returns 0 on success and non-zero on failure,
 * and fills an ng_error when the caller passes one. The class is decided
 * once, where the error is first seen (SQLSTATE, librdkafka error code). */
#ifndef NANGUARD_ERROR_H
#define NANGUARD_ERROR_H

typedef enum {
    NG_ERR_NONE = 0,
    NG_ERR_TRANSIENT, /* retry the same work later: nothing is dropped */
    NG_ERR_PERMANENT, /* this record can never succeed: dead-letter it */
    NG_ERR_CONFIG     /* nothing can succeed until an operator acts */
} ng_error_class;

typedef struct {
    ng_error_class klass;
    char code[32];     /* stable machine name: "malformed_json", "pg_22P02" */
    char sqlstate[6];  /* PostgreSQL SQLSTATE, "" when none */
    char message[512]; /* for people: what happened, what to do */
} ng_error;

/* Fills err (when not NULL) and returns -1, so callers can write
 * `return ng_error_set(err, ...);`. */
int ng_error_set(ng_error *err, ng_error_class klass, const char *code,
                 const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void ng_error_clear(ng_error *err);
const char *ng_error_class_name(ng_error_class klass);

/* Replaces the text between every pair of double quotes in s with "***"
 * (a lone "=" is kept), in place: for messages of libraries that quote the
 * value they could not take (libpq's connection strings, librdkafka's
 * properties), which may be a password. */
void ng_error_redact_quoted(char *s);

#endif
