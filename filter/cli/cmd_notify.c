/* cmd_notify.c - `nanguard notify`: the notification gateway (SSE). */
#define _POSIX_C_SOURCE 200809L
#include "common/config.h"
#include "common/log.h"
#include "filter/cli/commands.h"
#include "filter/notify.h"

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
    ng_error err = {0};
    int rc = ng_config_parse(cfg, argc, argv, &err);
    if (rc == 1) {
        usage(stdout, cfg);
        ng_config_free(cfg);
        return 0;
    }
    if (rc != 0) {
        fprintf(stderr, "nanguard notify: %s\n", err.message);
        int status = strcmp(err.code, "usage") == 0 ? EX_USAGE : EX_CONFIG;
        ng_config_free(cfg);
        return status;
    }
    ng_log_level level;
    if (ng_log_parse_level(ng_config_get(cfg, "log-level"), &level) != 0) {
        fprintf(stderr, "nanguard notify: --log-level wants debug, info, "
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
    /* A client that went away while we write must not kill the process. */
    signal(SIGPIPE, SIG_IGN);

    notify *n = notify_new(cfg, &err);
    if (n == NULL) {
        fprintf(stderr, "nanguard notify: %s\n", err.message);
        int status = strcmp(err.code, "usage") == 0 ? EX_USAGE : EX_CONFIG;
        ng_config_free(cfg);
        return status;
    }
    int status = notify_run(n, &stop_requested);
    notify_free(n);
    ng_config_free(cfg);
    return status;
}
