/* main.c - the nanguard command line: picks a subcommand and runs it.
 * `sanitize` is built in; the other commands are in nanguard-commands.so
 * beside the executable, loaded only when one of them runs, so that
 * `nanguard sanitize` loads no Kafka, PostgreSQL, TLS or HTTP library. */
#define _GNU_SOURCE
#include "filter/cli/commands.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#ifndef NANGUARD_VERSION
#define NANGUARD_VERSION "0.0.0"
#endif

typedef int (*command_fn)(int argc, char **argv);

/* run is NULL for the commands of the module: cmd_<name> there. */
static const struct {
    const char *name;
    command_fn run;
    const char *help;
} commands[] = {
    {"sanitize", cmd_sanitize,
     "repair a stream of JSON values for PostgreSQL jsonb"},
    {"load", NULL, "write a file of checkpoint envelopes to PostgreSQL"},
    {"worker", NULL,
     "consume checkpoints from Kafka and write them to PostgreSQL"},
    {"schema", NULL, "print the SQL of LangGraph's checkpoint tables"},
    {"dlq", NULL,
     "inspect, count and replay the records of a dead-letter topic"},
    {"notify", NULL,
     "stream notifications to browsers (SSE) and serve the banner page"},
};

#define COMMANDS_MODULE "nanguard-commands.so"

/* cmd_<name> from the module beside the executable (else wherever the
 * dynamic loader finds it). Returns NULL after a message on stderr. */
static command_fn load_command(const char *name)
{
    char path[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
    void *lib = NULL;
    if (n > 0) {
        path[n] = '\0';
        char *slash = strrchr(path, '/');
        size_t dir = slash != NULL ? (size_t)(slash - path) + 1 : 0;
        if (dir + sizeof COMMANDS_MODULE <= sizeof path) {
            memcpy(path + dir, COMMANDS_MODULE, sizeof COMMANDS_MODULE);
            lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        }
    }
    if (lib == NULL) {
        lib = dlopen(COMMANDS_MODULE, RTLD_NOW | RTLD_LOCAL);
    }
    if (lib == NULL) {
        fprintf(stderr,
                "nanguard: '%s' needs " COMMANDS_MODULE
                " beside the nanguard executable: %s\n",
                name, dlerror());
        return NULL;
    }
    char sym[64];
    snprintf(sym, sizeof sym, "cmd_%s", name);
    command_fn run;
    /* POSIX's way to turn dlsym's object pointer into a function one. */
    *(void **)&run = dlsym(lib, sym);
    if (run == NULL) {
        fprintf(stderr, "nanguard: %s: no %s\n", COMMANDS_MODULE, sym);
    }
    return run;
}

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
            command_fn run =
                commands[i].run != NULL ? commands[i].run : load_command(cmd);
            return run != NULL ? run(argc - 1, argv + 1) : EX_UNAVAILABLE;
        }
    }
    fprintf(stderr, "nanguard: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return EX_USAGE;
}
