/* cmd_sanitize.c - `nanguard sanitize`: repairs a stream of JSON values from
 * files or standard input and writes it to standard output, in constant
 * memory. */
#define _GNU_SOURCE
#include "filter/cli/commands.h"
#include "filter/sanitize/report.h"
#include "filter/sanitize/sanitize.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#ifndef READ_CHUNK
#define READ_CHUNK                                                             \
    (64 * 1024) /* fits in L2 with the output; best of 32-256 KiB */
#endif

static void usage(FILE *out)
{
    fprintf(out,
            "usage: nanguard sanitize [--report FILE] [--max-depth N] "
            "[--full-feed] [FILE...]\n\n"
            "Reads a stream of JSON values (concatenated or one per line) "
            "from the FILEs\n"
            "or standard input ('-'), and writes it to standard output "
            "unchanged but for\n"
            "the values PostgreSQL jsonb refuses: NaN and Infinity become "
            "null, \\u0000 and\n"
            "lone surrogates become \\ufffd, invalid UTF-8 becomes U+FFFD, "
            "numbers out of\n"
            "range become null.\n\n"
            "options:\n"
            "  --report FILE    write what was changed as JSON to FILE\n"
            "  --max-depth N    refuse nesting deeper than N (default %d, at "
            "most %d)\n"
            "  --full-feed      give yajl every byte (the slower reference "
            "way; same\n"
            "                   output and errors)\n"
            "  -h, --help       show this help\n\n"
            "exit status: 0 all input was JSON (repaired or not), 65 "
            "malformed input\n"
            "(stderr names the file, byte offset and reason), 64 bad usage, "
            "74 I/O error.\n",
            SANITIZE_DEFAULT_MAX_DEPTH, SANITIZE_MAX_DEPTH_LIMIT);
}

/* The handle hands on its output in blocks of up to a chunk or so: they go
 * to file descriptor 1 as they are, with no copy into a stdio buffer. */
static int write_stdout(void *ctx, const char *buf, size_t len)
{
    (void)ctx;
    while (len > 0) {
        ssize_t n = write(STDOUT_FILENO, buf, len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Sanitizes one input. Returns an exit status. */
static int run_file(sanitize *h, const char *name, sanitize_report *report)
{
    static char buf[READ_CHUNK];
    int fd = strcmp(name, "-") == 0 ? STDIN_FILENO : open(name, O_RDONLY);
    if (fd < 0) {
        fprintf(stderr, "nanguard: %s: %s\n", name, strerror(errno));
        return EX_IOERR;
    }
    const char *label = fd == STDIN_FILENO ? "<stdin>" : name;
    sanitize_reset(h);
    sanitize_status st = SANITIZE_OK;
    int status = 0;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            fprintf(stderr, "nanguard: %s: %s\n", label, strerror(errno));
            status = EX_IOERR;
            break;
        }
        st = n == 0 ? sanitize_finish(h) : sanitize_feed(h, buf, (size_t)n);
        if (st != SANITIZE_OK || n == 0) {
            break;
        }
    }
    if (fd != STDIN_FILENO) {
        close(fd);
    }
    if (sanitize_report_add(report, h) != 0) {
        fprintf(stderr, "nanguard: out of memory\n");
        return EX_SOFTWARE;
    }
    if (status != 0) {
        return status;
    }
    const sanitize_error *err = sanitize_last_error(h);
    switch (st) {
    case SANITIZE_OK:
        return 0;
    case SANITIZE_EWRITE:
        fprintf(stderr, "nanguard: <stdout>: %s\n", strerror(errno));
        return EX_IOERR;
    case SANITIZE_ENOMEM:
        fprintf(stderr, "nanguard: out of memory\n");
        return EX_SOFTWARE;
    default:
        fprintf(stderr, "nanguard: %s: byte %" PRIu64 ": %s\n", label,
                err->offset, err->message);
        return EX_DATAERR;
    }
}

static int write_report(const char *path, const sanitize_report *report)
{
    ng_buf b = {0};
    int rc = sanitize_report_json(report, &b) || ng_buf_putc(&b, '\n');
    FILE *f = rc == 0 ? fopen(path, "w") : NULL;
    if (f == NULL) {
        fprintf(stderr, "nanguard: %s: %s\n", path,
                rc ? "out of memory" : strerror(errno));
        ng_buf_free(&b);
        return EX_IOERR;
    }
    int bad = fwrite(b.data, 1, b.len, f) != b.len;
    bad |= fclose(f) != 0;
    ng_buf_free(&b);
    if (bad) {
        fprintf(stderr, "nanguard: %s: %s\n", path, strerror(errno));
        return EX_IOERR;
    }
    return 0;
}

int cmd_sanitize(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"report", required_argument, NULL, 'r'},
        {"max-depth", required_argument, NULL, 'd'},
        {"full-feed", no_argument, NULL, 'F'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *report_path = NULL;
    sanitize_options opts = {.multiple_values = 1};
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'r':
            report_path = optarg;
            break;
        case 'd': {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(optarg, &end, 10);
            if (errno || *end || end == optarg || v == 0 ||
                v > SANITIZE_MAX_DEPTH_LIMIT) {
                fprintf(stderr,
                        "nanguard sanitize: --max-depth wants a number "
                        "from 1 to %d (PostgreSQL's jsonb refuses deeper "
                        "nesting), not '%s'\n",
                        SANITIZE_MAX_DEPTH_LIMIT, optarg);
                return EX_USAGE;
            }
            opts.max_depth = (size_t)v;
            break;
        }
        case 'F':
            opts.full_feed = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return EX_USAGE;
        }
    }

    /* Paths are work and memory: only for a report. */
    opts.no_paths = report_path == NULL;
    sanitize *h = sanitize_new(&opts);
    if (h == NULL) {
        fprintf(stderr, "nanguard: out of memory\n");
        return EX_SOFTWARE;
    }
    sanitize_set_writer(h, write_stdout, NULL);

    sanitize_report report;
    sanitize_report_init(&report, SANITIZE_DEFAULT_MAX_PATHS);
    int status = 0;
    if (optind == argc) {
        status = run_file(h, "-", &report);
    }
    for (int i = optind; i < argc && status == 0; i++) {
        status = run_file(h, argv[i], &report);
    }
    if (fflush(stdout) != 0 && status == 0) {
        fprintf(stderr, "nanguard: <stdout>: %s\n", strerror(errno));
        status = EX_IOERR;
    }
    if (report_path != NULL) {
        int rs = write_report(report_path, &report);
        if (status == 0) {
            status = rs;
        }
    }
    sanitize_report_free(&report);
    sanitize_free(h);
    return status;
}
