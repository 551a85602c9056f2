/* cmd_dlq.c - `nanguard dlq inspect | stats | replay`: the dead-letter
 * topic, read without a group, and its records sent back. */
#define _POSIX_C_SOURCE 200809L
#include "common/config.h"
#include "common/log.h"
#include "filter/cli/cli.h"
#include "filter/cli/commands.h"
#include "filter/dlq.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

static const struct {
    const char *name;
    dlq_command cmd;
    const char *help;
} subcommands[] = {
    {"inspect", DLQ_INSPECT,
     "one line per dead-letter record: where it came from, why it failed "
     "(--format json: JSON Lines)"},
    {"stats", DLQ_STATS,
     "totals by error code, class, source topic; the top threads; the "
     "first and last failure"},
    {"replay", DLQ_REPLAY,
     "send the records back to their source topic (or --to), without the "
     "error headers"},
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: nanguard dlq inspect|stats|replay --brokers HOST:PORT "
            "--topic DLQ_TOPIC [OPTIONS]\n\n"
            "Reads the dead-letter topic without joining a consumer group "
            "and without\ncommitting, from its first record (or --since) to "
            "the end offsets found at\nstart, then exits; --follow keeps "
            "reading. Filters combine with AND.\n\n");
    for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++) {
        fprintf(out, "  %-8s %s\n", subcommands[i].name, subcommands[i].help);
    }
    fprintf(out, "\nRun 'nanguard dlq SUBCOMMAND --help' for its options.\n"
                 "\nexit status: 0 done, 64 bad usage, 69 broker unreachable "
                 "or topic missing,\n1 some replayed records could not be "
                 "sent.\n");
}

static void sub_usage(FILE *out, const char *name, dlq_command cmd,
                      const ng_config *cfg)
{
    fprintf(out,
            "usage: nanguard dlq %s --brokers HOST:PORT --topic DLQ_TOPIC "
            "[OPTIONS]\n\n",
            name);
    if (cmd == DLQ_REPLAY) {
        fprintf(out,
                "Sends each matching record's key, value and original headers "
                "(without\n__connect.errors.*, nanguard.error.*, "
                "nanguard.worker, nanguard.attempts,\nnanguard.failed_at and "
                "an earlier replay's nanguard.replay.*) back to its\n"
                "__connect.errors.topic (and partition), or to --to, with "
                "nanguard.replay.count\n(the record's + 1) and "
                "nanguard.replay.from (topic/partition/offset of the dead\n"
                "letter); idempotent producer, acks=all. Prints one JSON "
                "summary on stdout:\n{\"matched\", \"replayed\", "
                "\"skipped_max_replays\", \"failed\", \"dry_run\"}.\n\n");
    }
    fprintf(out, "options:\n");
    ng_config_help(cfg, out);
    fprintf(out,
            "\nexit status: 0 done, 64 bad usage, 69 broker unreachable "
            "or topic missing%s.\n",
            cmd == DLQ_REPLAY ? ", 1 some sends failed" : "");
}

int cmd_dlq(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EX_USAGE;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 ||
        strcmp(name, "help") == 0) {
        usage(stdout);
        return 0;
    }
    size_t k = 0;
    while (k < sizeof subcommands / sizeof subcommands[0] &&
           strcmp(subcommands[k].name, name) != 0) {
        k++;
    }
    if (k == sizeof subcommands / sizeof subcommands[0]) {
        fprintf(stderr, "nanguard dlq: unknown subcommand '%s'\n\n", name);
        usage(stderr);
        return EX_USAGE;
    }
    dlq_command cmd = subcommands[k].cmd;
    ng_option *table = calloc(dlq_settings_count, sizeof *table);
    ng_config *cfg =
        table ? ng_config_new(table, dlq_settings_for(cmd, table)) : NULL;
    if (cfg == NULL) {
        fprintf(stderr, "nanguard: out of memory\n");
        free(table);
        return EX_SOFTWARE;
    }
    ng_error err = {0};
    int status = EX_USAGE;
    int rc = ng_config_parse(cfg, argc - 1, argv + 1, &err);
    ng_log_level level;
    if (rc == 1) {
        sub_usage(stdout, name, cmd, cfg);
        status = 0;
    } else if (rc != 0) {
        fprintf(stderr, "nanguard dlq %s: %s\n", name, err.message);
    } else if (ng_config_args_count(cfg) > 0) {
        fprintf(stderr, "nanguard dlq %s: unexpected argument '%s'\n", name,
                ng_config_arg(cfg, 0));
    } else if (ng_log_parse_level(ng_config_get(cfg, "log-level"), &level)) {
        fprintf(stderr,
                "nanguard dlq %s: --log-level wants debug, info, "
                "warn or error\n",
                name);
    } else {
        ng_log_set_level(level);
        cli_catch_stop(0);
        switch (dlq_run(cmd, cfg, stdout, &cli_stop_signal, &err)) {
        case DLQ_OK:
            status = 0;
            break;
        case DLQ_USAGE:
            fprintf(stderr, "nanguard dlq %s: %s\n", name, err.message);
            status = EX_USAGE;
            break;
        case DLQ_UNAVAILABLE:
            fprintf(stderr, "nanguard dlq %s: %s\n", name, err.message);
            status = EX_UNAVAILABLE;
            break;
        case DLQ_SOME_FAILED:
            fprintf(stderr, "nanguard dlq %s: %s\n", name, err.message);
            status = 1;
            break;
        case DLQ_INTERNAL:
            fprintf(stderr, "nanguard dlq %s: %s\n", name, err.message);
            status = EX_SOFTWARE;
            break;
        }
    }
    ng_config_free(cfg);
    free(table);
    return status;
}
