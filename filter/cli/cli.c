/* cli.c - settings and stop signals, shared by the pipeline commands. */
#define _POSIX_C_SOURCE 200809L
#include "filter/cli/cli.h"

#include "common/log.h"

#include <string.h>
#include <sysexits.h>

volatile sig_atomic_t cli_stop_signal;

static void on_signal(int sig)
{
    cli_stop_signal = sig;
}

void cli_catch_stop(int once)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = once ? SA_RESETHAND : 0;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
}

int cli_failed(const char *name, const ng_error *err)
{
    fprintf(stderr, "nanguard %s: %s\n", name, err->message);
    return strcmp(err->code, "usage") == 0 ? EX_USAGE : EX_CONFIG;
}

int cli_configure(const char *name, ng_config *cfg, int argc, char **argv,
                  void (*usage)(FILE *out, const ng_config *cfg))
{
    ng_error err = {0};
    int rc = ng_config_parse(cfg, argc, argv, &err);
    if (rc == 1) {
        usage(stdout, cfg);
        return 0;
    }
    if (rc != 0) {
        return cli_failed(name, &err);
    }
    ng_log_level level;
    if (ng_log_parse_level(ng_config_get(cfg, "log-level"), &level) != 0) {
        fprintf(stderr,
                "nanguard %s: --log-level wants debug, info, warn or "
                "error\n",
                name);
        return EX_USAGE;
    }
    ng_log_set_level(level);
    return CLI_GO_ON;
}
