/* cmd_notify.c - `nanguard notify`: the notification gateway (SSE). */
#define _POSIX_C_SOURCE 200809L
#include "common/config.h"
#include "common/log.h"
#include "filter/cli/cli.h"
#include "filter/cli/commands.h"
#include "filter/notify.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>

static void usage(FILE *out, const ng_config *cfg)
{
    fprintf(out,
            "usage: nanguard notify --brokers HOST:PORT --topic "
            "NOTIFICATION_TOPIC [OPTIONS]\n\n"
            "Streams the notification topic to browsers as Server-Sent "
            "Events, per thread,\nand serves the reference banner page. One "
            "reader of the topic, no consumer\ngroup: every gateway sees "
            "every event.\n\noptions:\n");
    ng_config_help(cfg, out);
    fprintf(out,
            "\nHTTP: GET /events?thread_id=ID[&thread_id=ID...][&token=HEX...]"
            " (text/event-stream;\nLast-Event-ID resumes), GET /?thread_id=ID"
            " (the banner page), /metrics,\n/healthz, /readyz.\n\n"
            "exit status: 0 after SIGTERM or SIGINT, 64 bad usage, 69 the "
            "topic cannot be\nread, 78 configuration error (a listen address "
            "that is taken or, without\n--token-secret-file, not loopback; "
            "the topic missing; bad Kafka settings).\n");
}

int cmd_notify(int argc, char **argv)
{
    ng_config *cfg = ng_config_new(notify_settings, notify_settings_count);
    if (cfg == NULL) {
        fprintf(stderr, "nanguard: out of memory\n");
        return EX_SOFTWARE;
    }
    int status = cli_configure("notify", cfg, argc, argv, usage);
    if (status != CLI_GO_ON) {
        ng_config_free(cfg);
        return status;
    }
    cli_catch_stop(0);
    /* A client that went away while we write must not kill the process. */
    signal(SIGPIPE, SIG_IGN);

    ng_error err = {0};
    notify *n = notify_new(cfg, &err);
    if (n == NULL) {
        status = cli_failed("notify", &err);
        ng_config_free(cfg);
        return status;
    }
    status = notify_run(n, &cli_stop_signal);
    notify_free(n);
    ng_config_free(cfg);
    return status;
}
