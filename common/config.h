/* config.h - settings from the command line, the environment, a file and
 * defaults, in that order of precedence.
 *
 * A command declares its settings once, as a table (name, default, help);
 * the same names serve as long options (--batch-rows 500), environment
 * variables (NANGUARD_BATCH_ROWS=500) and file keys (batch-rows = 500).
 * Keys "kafka.<property>" in the file and -X <property>=<value> on the
 * command line are passed to librdkafka untouched. */
#ifndef NANGUARD_CONFIG_H
#define NANGUARD_CONFIG_H

#include "common/error.h"

#include <stddef.h>
#include <stdio.h>

typedef enum { NG_OPT_STRING, NG_OPT_INT, NG_OPT_FLAG } ng_opt_type;

typedef struct {
    const char *name;
    ng_opt_type type;
    const char *dflt; /* NULL: no default (required or optional) */
    const char *help;
} ng_option;

typedef struct ng_config ng_config;

/* table must outlive the config. */
ng_config *ng_config_new(const ng_option *table, size_t n);
void ng_config_free(ng_config *c);

/* Reads argv (argv[0] is the command name): long options of the table,
 * --config FILE, -X key=value, and the rest as positional arguments. Then
 * applies the file, the environment and the command line over the
 * defaults. Returns 0, 1 when --help was asked, or -1 with err (class
 * NG_ERR_CONFIG for a bad file, "usage" code for bad arguments). */
int ng_config_parse(ng_config *c, int argc, char **argv, ng_error *err);

const char *ng_config_get(const ng_config *c, const char *name);
long long ng_config_int(const ng_config *c, const char *name);
int ng_config_flag(const ng_config *c, const char *name);
/* Sets a value as the command line would (for derived defaults). */
int ng_config_set(ng_config *c, const char *name, const char *value);

size_t ng_config_kafka_count(const ng_config *c);
void ng_config_kafka_at(const ng_config *c, size_t i, const char **key,
                        const char **value);

size_t ng_config_args_count(const ng_config *c);
const char *ng_config_arg(const ng_config *c, size_t i);

/* Writes the options with their defaults and help. */
void ng_config_help(const ng_config *c, FILE *out);

#endif
