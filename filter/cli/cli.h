/* cli.h - what the pipeline commands share: reading their settings the same
 * way (command line, environment, file; --help; --log-level) and catching
 * the stop signals. */
#ifndef NANGUARD_CLI_H
#define NANGUARD_CLI_H

#include "common/config.h"
#include "common/error.h"

#include <signal.h>
#include <stdio.h>

/* 0, or the number of the signal (SIGTERM, SIGINT) that asked the command
 * to stop. Set only by the handler that cli_catch_stop installs. */
extern volatile sig_atomic_t cli_stop_signal;

/* SIGTERM and SIGINT set cli_stop_signal. With once, the handler is
 * removed when it runs, so a second signal ends the process at once. */
void cli_catch_stop(int once);

/* Returned by cli_configure when the command should go on. */
#define CLI_GO_ON (-1)

/* Parses argv into cfg and sets the log level (--log-level). Returns
 * CLI_GO_ON, or the exit status to return now: 0 after --help (usage
 * printed on stdout), 64 for bad usage, 78 for a configuration error (the
 * message on stderr, after "nanguard NAME: "). */
int cli_configure(const char *name, ng_config *cfg, int argc, char **argv,
                  void (*usage)(FILE *out, const ng_config *cfg));

/* Prints err for command name and returns its exit status: 64 when its
 * code is "usage", else 78. For a driver's _new that failed. */
int cli_failed(const char *name, const ng_error *err);

#endif
