/* main.c - the nanguard command line: picks a subcommand and runs it. */
#include "filter/cli/commands.h"

#include <stdio.h>
#include <string.h>
#include <sysexits.h>

#ifndef NANGUARD_VERSION
#define NANGUARD_VERSION "0.0.0"
#endif

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} commands[] = {
    {"sanitize", cmd_sanitize,
     "repair a stream of JSON values for PostgreSQL jsonb"},
    {"load", cmd_load, "write a file of checkpoint envelopes to PostgreSQL"},
    {"worker", cmd_worker,
     "consume checkpoints from Kafka and write them to PostgreSQL"},
    {"schema", cmd_schema, "print the SQL of LangGraph's checkpoint tables"},
    {"dlq", cmd_dlq,
     "inspect, count and replay the records of a dead-letter topic"},
    {"notify", cmd_notify,
     "stream notifications to browsers (SSE) and serve the banner page"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: nanguard COMMAND [OPTIONS] [ARGS]\n"
                 "       nanguard --help | --version\n\n"
                 "Makes agent checkpoints safe for PostgreSQL jsonb.\n\n"
                 "commands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].help);
    }
    fprintf(out, "\nRun 'nanguard COMMAND --help' for its options.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EX_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 ||
        strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("nanguard %s\n", NANGUARD_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(cmd, commands[i].name) == 0) {
            return commands[i].run(argc - 1, argv + 1);
        }
    }
    fprintf(stderr, "nanguard: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return EX_USAGE;
}
