/* kafka_conf.h - a librdkafka configuration from a command's settings:
 * bootstrap.servers from its "brokers" setting, client.id nanguard, the
 * log callback (librdkafka's lines as our JSON lines), the command's own
 * properties, then the user's -X / kafka.* properties over them.
 *
 * Secrets from files: a user property "<p>.file = PATH", for p one of
 * sasl.password, ssl.key.password, ssl.keystore.password and
 * sasl.oauthbearer.client.secret, sets p to the first line of the file
 * (without its line end); errors name the file, never the secret. */
#ifndef NANGUARD_KAFKA_CONF_H
#define NANGUARD_KAFKA_CONF_H

#include "common/config.h"
#include "common/error.h"

#include <librdkafka/rdkafka.h>
#include <stddef.h>

/* ours: n property/value pairs the command sets before the user's. Returns
 * a new configuration (the caller's), or NULL with err (class
 * NG_ERR_CONFIG, code "kafka_config") for an invalid or unknown
 * property. */
rd_kafka_conf_t *kafka_conf_new(const ng_config *cfg,
                                const char *const (*ours)[2], size_t n,
                                ng_error *err);

/* Sets one property on conf. Returns 0, or -1 with err (class
 * NG_ERR_CONFIG, code "kafka_config"), whose message never holds the
 * value (it may be a secret). */
int kafka_conf_set(rd_kafka_conf_t *conf, const char *k, const char *v,
                   ng_error *err);

/* The log callback kafka_conf_new sets: librdkafka's own log lines as
 * JSON lines like ours (source "librdkafka", its facility). Called from
 * librdkafka's threads: ng_log writes each line in one call. A handle that
 * sets its own callback passes the lines it keeps on to this one. */
void kafka_log(const rd_kafka_t *rk, int level, const char *fac,
               const char *buf);

#endif
