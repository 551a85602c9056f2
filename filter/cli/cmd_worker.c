/* cmd_worker.c - `nanguard worker`: the Kafka consumer worker. */
#define _POSIX_C_SOURCE 200809L
#include "common/config.h"
#include "common/log.h"
#include "filter/cli/commands.h"
#include "filter/worker.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void usage(FILE *out, const ng_config *cfg)
{
    fprintf(out,
            "usage: nanguard worker --brokers HOST:PORT --topic NAME "
            "[OPTIONS]\n\n"
            "Consumes checkpoint envelopes from Kafka in a consumer group, "
            "repairs them\n"
            "for jsonb, writes them to PostgreSQL, and sends what cannot be "
            "stored to the\n"
            "dead-letter topic with a notification to the application. Run "
            "more workers\n"
            "with the same --group to scale. SIGTERM or SIGINT: flush, "
            "commit, leave the\n"
            "group, exit 0.\n\noptions:\n");
    ng_config_help(cfg, out);
    fprintf(out,
            "\nexit status: 0 after a clean stop, 64 bad usage, 78 "
            "configuration error\n(bad Kafka settings, an --http-listen "
            "address that cannot be taken).\nPostgreSQL errors never stop "
            "the worker: it pauses and retries.\n\nHTTP (--http-listen): "
            "GET /metrics (Prometheus text), /healthz (200 while\nthe main "
            "loop turns), /readyz (200 when in the group with PostgreSQL "
            "writable;\n503 with the reason otherwise).\n");
}

int cmd_worker(int argc, char **argv)
{
    ng_config *cfg = ng_config_new(worker_settings, worker_settings_count);
    if (cfg == NULL) {
        fprintf(stderr, "nanguard: out of memory\n");
        return EX_SOFTWARE;
    }
    ng_error err = {0};
    int rc = ng_config_parse(cfg, argc, argv, &err);
    if (rc == 1) {
        usage(stdout, cfg);
        ng_config_free(cfg);
        return 0;
    }
    if (rc != 0) {
        fprintf(stderr, "nanguard worker: %s\n", err.message);
        int status = strcmp(err.code, "usage") == 0 ? EX_USAGE : EX_CONFIG;
        ng_config_free(cfg);
        return status;
    }
    ng_log_level level;
    if (ng_log_parse_level(ng_config_get(cfg, "log-level"), &level) != 0) {
        fprintf(stderr, "nanguard worker: --log-level wants debug, info, "
                        "warn or error\n");
        ng_config_free(cfg);
        return EX_USAGE;
    }
    ng_log_set_level(level);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    worker *w = worker_new(cfg, &err);
    if (w == NULL) {
        fprintf(stderr, "nanguard worker: %s\n", err.message);
        int status = strcmp(err.code, "usage") == 0 ? EX_USAGE : EX_CONFIG;
        ng_config_free(cfg);
        return status;
    }
    int status = worker_run(w, &stop_requested);
    worker_free(w);
    ng_config_free(cfg);
    return status;
}
