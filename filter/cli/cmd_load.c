/* cmd_load.c - `nanguard load`: the command line of the loader (loader.h),
 * which reads checkpoint envelopes, one JSON value per line, from files or
 * standard input, repairs them and writes them to PostgreSQL over --jobs
 * connections. What cannot be stored goes to a dead-letter file with the
 * reason, in line order; PostgreSQL being away is waited out up to a
 * limit, after which the summary says where to resume.
 */
#define _GNU_SOURCE
#include "filter/cli/cli.h"
#include "filter/cli/commands.h"
#include "filter/loader.h"

#include "common/buf.h"
#include "common/json_write.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_MAX_MESSAGE_BYTES (32u * 1024 * 1024)
#define DEFAULT_RETRY_TIMEOUT_S 300

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: nanguard load [--pg CONNINFO] [--table NAME] "
        "[--create-table]\n"
        "                     [--on-conflict nothing|update] "
        "[--dead-letter FILE]\n"
        "                     [--batch-rows N] [--batch-bytes N] "
        "[--retry-timeout SECONDS]\n"
        "                     [--start-line N] [--max-message-bytes N] "
        "[--jobs N]\n"
        "                     [--require-complete] [FILE...]\n\n"
        "Reads checkpoint envelopes, one JSON value per line, from the FILEs "
        "or standard\n"
        "input ('-'), repairs what PostgreSQL jsonb refuses (NaN, Infinity, "
        "...) and\n"
        "writes them to LangGraph's checkpoints table. Writes are idempotent: "
        "loading\n"
        "the same lines again adds no row. Empty lines are skipped.\n\n"
        "options:\n"
        "  --pg CONNINFO          libpq connection string or URI (default: "
        "the PG*\n"
        "                         environment variables)\n"
        "  --table NAME           table, NAME or SCHEMA.NAME (default %s)\n"
        "  --create-table         create the table when it does not exist "
        "(jsonb\n"
        "                         columns with lz4 compression where the "
        "server has it);\n"
        "                         an existing table is never altered "
        "(default: off)\n"
        "  --on-conflict MODE     nothing: keep a row already there; update: "
        "overwrite\n"
        "                         it, as LangGraph does (default nothing)\n"
        "  --dead-letter FILE     append the lines that cannot be stored to "
        "FILE as JSON\n"
        "                         lines {line, error_code, message, value} "
        "(default: none;\n"
        "                         they are then only counted and logged)\n"
        "  --require-complete     dead-letter a checkpoint whose "
        "channel_versions names\n"
        "                         a channel the envelope does not hold "
        "(default: store\n"
        "                         it and count it as incomplete)\n"
        "  --batch-rows N         rows per transaction at most (default %d)\n"
        "  --batch-bytes N        bytes per transaction at most (default "
        "%u)\n"
        "  --retry-timeout SECS   how long PostgreSQL may stay unavailable "
        "before\n"
        "                         giving up with status 75 (default %d)\n"
        "  --start-line N         skip the lines before line N, counted from "
        "1 across\n"
        "                         all FILEs (default 1); to resume after "
        "status 75\n"
        "  --max-message-bytes N  dead-letter longer lines as too_large "
        "(default %u)\n"
        "  --jobs N               PostgreSQL connections writing in "
        "parallel, at most %d;\n"
        "                         the rows of one thread_id keep their order "
        "on one\n"
        "                         connection (default %d; 1 keeps one "
        "connection)\n"
        "  -h, --help             show this help\n\n"
        "Progress goes to standard error while it is a terminal; a JSON "
        "summary line\n"
        "(lines, stored, duplicates, dead_lettered, rewrites, seconds, ...) "
        "ends the run.\n\n"
        "exit status: 0 every line stored or already there; 2 some lines "
        "dead-lettered,\n"
        "all others stored; 75 PostgreSQL unavailable beyond "
        "--retry-timeout (the\n"
        "summary's resume_from_line says where to go on); 78 configuration "
        "error\n"
        "(authentication, missing table or column, privileges; nothing is "
        "dead-lettered);\n"
        "64 bad usage; 74 I/O error; 130 (SIGINT) or 143 (SIGTERM): stopped "
        "by\n"
        "the signal after writing the lines read (resume_from_line says where "
        "to go on).\n",
        PG_SINK_DEFAULT_TABLE, PG_SINK_DEFAULT_BATCH_ROWS,
        PG_SINK_DEFAULT_BATCH_BYTES, DEFAULT_RETRY_TIMEOUT_S,
        DEFAULT_MAX_MESSAGE_BYTES, LOADER_MAX_JOBS, LOADER_DEFAULT_JOBS);
}

static double seconds_since(const struct timespec *t)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t->tv_sec) +
           (double)(now.tv_nsec - t->tv_nsec) / 1e9;
}

/* Parses a positive decimal number no larger than max. */
static int parse_count(const char *opt, const char *s, uint64_t max,
                       uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || end == s || s[0] == '-' || v == 0 ||
        v > max) {
        fprintf(stderr,
                "nanguard load: %s wants a number from 1 to %" PRIu64
                ", not '%s'\n",
                opt, max, s);
        return -1;
    }
    *out = v;
    return 0;
}

static void summary(const loader_result *r, double seconds, int status)
{
    ng_buf b = {0};
    char secs[32];
    snprintf(secs, sizeof secs, "%.3f", seconds);
    int rc =
        ng_json_raw(&b, "{\"lines\": ") || ng_json_u64(&b, r->lines) ||
        ng_json_raw(&b, ", \"stored\": ") || ng_json_u64(&b, r->stored) ||
        ng_json_raw(&b, ", \"duplicates\": ") ||
        ng_json_u64(&b, r->duplicates) ||
        ng_json_raw(&b, ", \"dead_lettered\": ") ||
        ng_json_u64(&b, r->dead_lettered) ||
        ng_json_raw(&b, ", \"rewrites\": ") || ng_json_u64(&b, r->rewrites) ||
        ng_json_raw(&b, ", \"incomplete\": ") ||
        ng_json_u64(&b, r->incomplete) ||
        ng_json_raw(&b, ", \"without_step\": ") ||
        ng_json_u64(&b, r->without_step) || ng_json_raw(&b, ", \"bytes\": ") ||
        ng_json_u64(&b, r->bytes) || ng_json_raw(&b, ", \"seconds\": ") ||
        ng_json_raw(&b, secs) || ng_json_raw(&b, ", \"batches\": ") ||
        ng_json_u64(&b, r->sink.batches) ||
        ng_json_raw(&b, ", \"round_trips\": ") ||
        ng_json_u64(&b, r->sink.round_trips) ||
        ng_json_raw(&b, ", \"bisect_round_trips\": ") ||
        ng_json_u64(&b, r->sink.bisect_round_trips) ||
        ng_json_raw(&b, ", \"connects\": ") ||
        ng_json_u64(&b, r->sink.connects) ||
        ng_json_raw(&b, ", \"compression\": ") ||
        ng_json_cstr(&b, r->compression) ||
        ng_json_raw(&b, ", \"exit_status\": ") ||
        ng_json_u64(&b, (uint64_t)status);
    if (rc == 0 && r->resume_from_line != 0) {
        rc = ng_json_raw(&b, ", \"resume_from_line\": ") ||
             ng_json_u64(&b, r->resume_from_line);
    }
    if (rc == 0 && ng_json_raw(&b, "}\n") == 0) {
        fwrite(b.data, 1, b.len, stderr);
        fflush(stderr);
    }
    ng_buf_free(&b);
}

int cmd_load(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"pg", required_argument, NULL, 'p'},
        {"table", required_argument, NULL, 't'},
        {"create-table", no_argument, NULL, 'c'},
        {"on-conflict", required_argument, NULL, 'o'},
        {"dead-letter", required_argument, NULL, 'd'},
        {"batch-rows", required_argument, NULL, 'r'},
        {"batch-bytes", required_argument, NULL, 'b'},
        {"retry-timeout", required_argument, NULL, 'T'},
        {"start-line", required_argument, NULL, 's'},
        {"max-message-bytes", required_argument, NULL, 'm'},
        {"jobs", required_argument, NULL, 'j'},
        {"require-complete", no_argument, NULL, 'R'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    loader_options o = {
        .sink = {.batch_rows = PG_SINK_DEFAULT_BATCH_ROWS,
                 .batch_bytes = PG_SINK_DEFAULT_BATCH_BYTES},
        .start_line = 1,
        .max_message_bytes = DEFAULT_MAX_MESSAGE_BYTES,
        .retry_timeout_s = DEFAULT_RETRY_TIMEOUT_S,
        .jobs = LOADER_DEFAULT_JOBS,
    };
    uint64_t v;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'p':
            o.sink.conninfo = optarg;
            break;
        case 't':
            o.sink.table = optarg;
            break;
        case 'c':
            o.sink.create_table = 1;
            break;
        case 'R':
            o.require_complete = true;
            break;
        case 'o':
            if (strcmp(optarg, "nothing") == 0) {
                o.sink.on_conflict = PG_SINK_ON_CONFLICT_NOTHING;
            } else if (strcmp(optarg, "update") == 0) {
                o.sink.on_conflict = PG_SINK_ON_CONFLICT_UPDATE;
            } else {
                fprintf(stderr,
                        "nanguard load: --on-conflict wants nothing or "
                        "update, not '%s'\n",
                        optarg);
                return EX_USAGE;
            }
            break;
        case 'd':
            o.dead_letter_path = optarg;
            break;
        case 'r':
            if (parse_count("--batch-rows", optarg, 1000000, &v) != 0) {
                return EX_USAGE;
            }
            o.sink.batch_rows = (size_t)v;
            break;
        case 'b':
            if (parse_count("--batch-bytes", optarg, UINT64_C(1) << 34, &v)) {
                return EX_USAGE;
            }
            o.sink.batch_bytes = (size_t)v;
            break;
        case 'T':
            if (parse_count("--retry-timeout", optarg, 1000000000, &v)) {
                return EX_USAGE;
            }
            o.retry_timeout_s = (double)v;
            break;
        case 's':
            if (parse_count("--start-line", optarg, UINT64_MAX, &v) != 0) {
                return EX_USAGE;
            }
            o.start_line = v;
            break;
        case 'm':
            if (parse_count("--max-message-bytes", optarg, UINT64_C(1) << 30,
                            &v) != 0) {
                return EX_USAGE;
            }
            o.max_message_bytes = (size_t)v;
            break;
        case 'j':
            if (parse_count("--jobs", optarg, LOADER_MAX_JOBS, &v) != 0) {
                return EX_USAGE;
            }
            o.jobs = (unsigned)v;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return EX_USAGE;
        }
    }

    /* Inputs first: nothing is written to PostgreSQL when one of them is
     * unusable. */
    for (int i = optind; i < argc; i++) {
        if (strcmp(argv[i], "-") != 0) {
            int fd = open(argv[i], O_RDONLY);
            if (fd < 0) {
                fprintf(stderr, "nanguard load: %s: %s\n", argv[i],
                        strerror(errno));
                return EX_IOERR;
            }
            close(fd);
        }
    }
    struct timespec started;
    clock_gettime(CLOCK_MONOTONIC, &started);
    o.progress = isatty(STDERR_FILENO) != 0;
    /* SIGTERM, SIGINT: finish the lines handed out, print the summary and
     * the resume line (loader.h); a second signal ends the process. */
    cli_catch_stop(1);
    o.stop = &cli_stop_signal;
    loader_result r;
    int status = loader_run(&o, argv + optind, argc - optind, &r);
    if (status == 0 && r.dead_lettered > 0) {
        status = 2;
    }
    summary(&r, seconds_since(&started), status);
    return status;
}
