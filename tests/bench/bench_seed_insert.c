/* bench_seed_insert.c - the seed's way of writing checkpoints, for
 * tests/bench/bench_load.sh to compare `nanguard load` with: each line is
 * repaired by the same sanitizer, then written with one INSERT per
 * checkpoint in autocommit (PQexecParams, text parameters), as an
 * application calling LangGraph's saver does.
 *
 *   bench_seed_insert CONNINFO TABLE FILE
 *
 * Prints "rows N seconds S" on standard output. Exit 1 on any failure.
 */
#define _POSIX_C_SOURCE 200809L
#include "filter/sanitize/envelope.h"
#include "filter/sanitize/sanitize.h"

#include <libpq-fe.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A NUL-terminated copy of s[0..n) in *buf (grown as needed). */
static const char *cstr(char **buf, size_t *cap, const char *s, size_t n)
{
    if (n + 1 > *cap) {
        char *p = realloc(*buf, n + 1);
        if (p == NULL) {
            return NULL;
        }
        *buf = p;
        *cap = n + 1;
    }
    memcpy(*buf, s, n);
    (*buf)[n] = '\0';
    return *buf;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: bench_seed_insert CONNINFO TABLE FILE\n");
        return 2;
    }
    PGconn *conn = PQconnectdb(argv[1]);
    FILE *f = fopen(argv[3], "rb");
    sanitize *h = sanitize_new(NULL);
    if (PQstatus(conn) != CONNECTION_OK || f == NULL || h == NULL) {
        fprintf(stderr, "bench_seed_insert: %s\n",
                f == NULL ? "cannot open the input" : PQerrorMessage(conn));
        return 1;
    }
    char *table = PQescapeIdentifier(conn, argv[2], strlen(argv[2]));
    char sql[512];
    snprintf(sql, sizeof sql,
             "INSERT INTO %s (thread_id, checkpoint_ns, checkpoint_id, "
             "parent_checkpoint_id, type, checkpoint, metadata) VALUES "
             "($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (thread_id, "
             "checkpoint_ns, checkpoint_id) DO NOTHING",
             table ? table : "checkpoints");
    PQfreemem(table);

    char *line = NULL, *cp = NULL, *md = NULL;
    size_t cap = 0, cp_cap = 0, md_cap = 0;
    ssize_t n;
    long rows = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while ((n = getline(&line, &cap, f)) > 1) {
        sanitize_reset(h);
        envelope env;
        char why[200];
        if (sanitize_feed(h, line, (size_t)n) != SANITIZE_OK ||
            sanitize_finish(h) != SANITIZE_OK ||
            envelope_read(h, &env, why, sizeof why) != 0) {
            continue;
        }
        const char *params[7] = {
            env.thread_id,
            env.checkpoint_ns,
            env.checkpoint_id,
            env.parent_checkpoint_id,
            env.type,
            cstr(&cp, &cp_cap, env.checkpoint, env.checkpoint_len),
            cstr(&md, &md_cap, env.metadata, env.metadata_len)};
        if (params[5] == NULL || params[6] == NULL) {
            fprintf(stderr, "bench_seed_insert: out of memory\n");
            return 1;
        }
        PGresult *res = PQexecParams(conn, sql, 7, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            fprintf(stderr, "bench_seed_insert: %s", PQerrorMessage(conn));
            return 1;
        }
        PQclear(res);
        rows++;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("rows %ld seconds %.3f\n", rows,
           (double)(t1.tv_sec - t0.tv_sec) +
               (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    free(line);
    free(cp);
    free(md);
    fclose(f);
    sanitize_free(h);
    PQfinish(conn);
    return 0;
}
