/* kafka_conf.c - a librdkafka configuration from a command's settings. */
#include "filter/kafka/kafka_conf.h"

#include "common/log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

void kafka_log(const rd_kafka_t *rk, int level, const char *fac,
               const char *buf)
{
    (void)rk;
    ng_log_level l = level <= 3   ? NG_LOG_ERROR
                     : level <= 5 ? NG_LOG_WARN
                     : level <= 6 ? NG_LOG_INFO
                                  : NG_LOG_DEBUG;
    ng_log(l, buf, "source", "librdkafka", "facility", fac, NULL);
}

int kafka_conf_set(rd_kafka_conf_t *conf, const char *k, const char *v,
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

/* librdkafka's one-line secrets; "<property>.file = PATH" sets one from
 * the first line of a file, so that it is in no setting, argument or
 * environment variable (librdkafka has no property of those names). */
static const char *const secret_props[] = {
    "sasl.password",
    "ssl.key.password",
    "ssl.keystore.password",
    "sasl.oauthbearer.client.secret",
};

/* The secret property that k names with ".file", or NULL. */
static const char *secret_of(const char *k, char *prop, size_t cap)
{
    size_t n = strlen(k);
    if (n <= 5 || strcmp(k + n - 5, ".file") != 0 || n - 5 >= cap) {
        return NULL;
    }
    memcpy(prop, k, n - 5);
    prop[n - 5] = '\0';
    for (size_t i = 0; i < sizeof secret_props / sizeof *secret_props; i++) {
        if (strcmp(prop, secret_props[i]) == 0) {
            return prop;
        }
    }
    return NULL;
}

/* Sets prop to the first line of the file at path; the line is wiped from
 * memory after. Errors name the file, never what it holds. */
static int set_from_file(rd_kafka_conf_t *conf, const char *prop,
                         const char *path, ng_error *err)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return ng_error_set(err, NG_ERR_CONFIG, "kafka_config",
                            "%s.file: cannot read %s: %s", prop, path,
                            strerror(errno));
    }
    char line[1024];
    int got = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    size_t len = got ? strcspn(line, "\r\n") : 0;
    int rc;
    if (len == 0) {
        rc = ng_error_set(err, NG_ERR_CONFIG, "kafka_config",
                          "%s.file: %s has no secret on its first line", prop,
                          path);
    } else {
        line[len] = '\0';
        rc = kafka_conf_set(conf, prop, line, err);
    }
    memset(line, 0, sizeof line);
    return rc;
}

rd_kafka_conf_t *kafka_conf_new(const ng_config *cfg,
                                const char *const (*ours)[2], size_t n,
                                ng_error *err)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, kafka_log);
    const char *brokers = ng_config_get(cfg, "brokers");
    int rc = kafka_conf_set(conf, "bootstrap.servers", brokers ? brokers : "",
                            err) ||
             kafka_conf_set(conf, "client.id", "nanguard", err);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rc = kafka_conf_set(conf, ours[i][0], ours[i][1], err);
    }
    for (size_t i = 0; rc == 0 && i < ng_config_kafka_count(cfg); i++) {
        const char *k, *v;
        ng_config_kafka_at(cfg, i, &k, &v);
        char prop[64];
        const char *secret = secret_of(k, prop, sizeof prop);
        rc = secret ? set_from_file(conf, secret, v, err)
                    : kafka_conf_set(conf, k, v, err);
    }
    if (rc != 0) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    return conf;
}
