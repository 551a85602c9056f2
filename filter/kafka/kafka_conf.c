/* kafka_conf.c - a librdkafka configuration from a command's settings. */
#include "filter/kafka/kafka_conf.h"

#include "common/log.h"

/* librdkafka's own log lines, as JSON lines like ours. Called from
 * librdkafka's threads: ng_log writes each line in one call. */
static void kafka_log(const rd_kafka_t *rk, int level, const char *fac,
                      const char *buf)
{
    (void)rk;
    ng_log_level l = level <= 3   ? NG_LOG_ERROR
                     : level <= 5 ? NG_LOG_WARN
                     : level <= 6 ? NG_LOG_INFO
                                  : NG_LOG_DEBUG;
    ng_log(l, buf, "source", "librdkafka", "facility", fac, NULL);
}

static int set(rd_kafka_conf_t *conf, const char *k, const char *v,
               ng_error *err)
{
    char errstr[256];
    rd_kafka_conf_res_t r =
        rd_kafka_conf_set(conf, k, v, errstr, sizeof errstr);
    if (r == RD_KAFKA_CONF_UNKNOWN) {
        return ng_error_set(err, NG_ERR_CONFIG, "kafka_config",
                            "unknown librdkafka property '%s'", k);
    }
    if (r != RD_KAFKA_CONF_OK) {
        ng_error_redact_quoted(errstr); /* librdkafka quotes the value */
        return ng_error_set(err, NG_ERR_CONFIG, "kafka_config", "%s: %s", k,
                            errstr);
    }
    return 0;
}

rd_kafka_conf_t *kafka_conf_new(const ng_config *cfg,
                                const char *const (*ours)[2], size_t n,
                                ng_error *err)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, kafka_log);
    const char *brokers = ng_config_get(cfg, "brokers");
    int rc = set(conf, "bootstrap.servers", brokers ? brokers : "", err) ||
             set(conf, "client.id", "nanguard", err);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rc = set(conf, ours[i][0], ours[i][1], err);
    }
    for (size_t i = 0; rc == 0 && i < ng_config_kafka_count(cfg); i++) {
        const char *k, *v;
        ng_config_kafka_at(cfg, i, &k, &v);
        rc = set(conf, k, v, err);
    }
    if (rc != 0) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    return conf;
}
