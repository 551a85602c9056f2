/* loader.h - the engine of `nanguard load`: reads checkpoint envelopes, one
 * JSON value per line, repairs them on a reader thread and writes them to
 * PostgreSQL over several connections at once, each owned by a writer
 * thread (a "job" with its own pg_sink). A row goes to the job chosen by a
 * hash of its thread_id, so the checkpoints of one thread keep their order
 * on one connection.
 *
 * What a run promises, whatever the number of jobs:
 *   - every line read ends stored, duplicate or dead-lettered, once;
 *   - a dead-letter entry is written only once every line before it is
 *     settled, so the file is in line order and resuming from
 *     resume_from_line writes no entry twice;
 *   - every job connects before the first line is read, so a
 *     configuration error dead-letters nothing;
 *   - when one job gives up (PostgreSQL away beyond the retry timeout, a
 *     configuration error), the others stop too, and resume_from_line is
 *     the smallest line not settled in any job: lines after it that were
 *     stored come back as duplicates.
 *
 * Ownership: options and file names are borrowed for the run.
 */
#ifndef NANGUARD_LOADER_H
#define NANGUARD_LOADER_H

#include "sink/pg_sink.h"

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LOADER_DEFAULT_JOBS 2
#define LOADER_MAX_JOBS 16

typedef struct {
    pg_sink_options sink; /* each job's sink gets a copy */
    /* Rejected lines are appended to this file as JSON lines; NULL: they
     * are only counted and logged. */
    const char *dead_letter_path;
    uint64_t start_line; /* lines before it are skipped (1 based) */
    size_t max_message_bytes;
    double retry_timeout_s; /* how long PostgreSQL may stay away */
    unsigned jobs;          /* connections, 1 to LOADER_MAX_JOBS */
    bool progress;          /* a progress line on stderr every second */
    /* Dead-letter a checkpoint whose channel_versions names a channel the
     * envelope does not hold (checkpoint_incomplete), instead of storing
     * it and counting it. */
    bool require_complete;
    /* When *stop becomes non-zero (the number of the signal that asked),
     * no more lines are read; the lines handed out are written (their
     * batches finished), and loader_run returns 128 + *stop with
     * resume_from_line set. NULL: never. */
    volatile sig_atomic_t *stop;
} loader_options;

typedef struct {
    uint64_t lines; /* lines read (not counting blank or skipped ones) */
    uint64_t stored;
    uint64_t duplicates;
    uint64_t dead_lettered;
    uint64_t rewrites;
    uint64_t incomplete;   /* stored although a channel was missing */
    uint64_t without_step; /* metadata had no "step" */
    uint64_t bytes;
    pg_sink_stats sink;   /* summed over the jobs */
    char compression[16]; /* of the table's checkpoint column */
    /* After EX_TEMPFAIL, EX_CONFIG or a stop: the first line not settled, where
     * a rerun goes on (--start-line); 0 when there is nothing to say. */
    uint64_t resume_from_line;
} loader_result;

/* Loads the nfiles files in order ("-" or nfiles 0: standard input).
 * Returns 0 when every line read is settled (dead-lettered ones included:
 * see result->dead_lettered), or an exit status: EX_USAGE (a connection
 * string libpq refuses), EX_IOERR, EX_TEMPFAIL (PostgreSQL unavailable
 * beyond the retry timeout), EX_CONFIG, EX_SOFTWARE (out of memory),
 * EX_OSERR, 128 + the signal number after opts->stop. Messages go to stderr;
 * *result is filled in every case. */
int loader_run(const loader_options *opts, char **files, int nfiles,
               loader_result *result);

#endif
