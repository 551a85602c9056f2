/* cmd_worker.c - `nanguard worker`: the Kafka consumer worker. */
#define _POSIX_C_SOURCE 200809L
#include "common/config.h"
#include "common/log.h"
#include "filter/cli/cli.h"
#include "filter/cli/commands.h"
#include "filter/worker.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>

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
    int status = cli_configure("worker", cfg, argc, argv, usage);
    if (status != CLI_GO_ON) {
        ng_config_free(cfg);
        return status;
    }
    cli_catch_stop(0);

    ng_error err = {0};
    worker *w = worker_new(cfg, &err);
    if (w == NULL) {
        status = cli_failed("worker", &err);
        ng_config_free(cfg);
        return status;
    }
    status = worker_run(w, &cli_stop_signal);
    worker_free(w);
    ng_config_free(cfg);
    return status;
}
