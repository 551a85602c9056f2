/* config.c - settings from the command line, environment, file, defaults. */
#define _POSIX_C_SOURCE 200809L
#include "common/config.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct kv {
    char *key;
    char *value;
};

struct ng_config {
    const ng_option *table;
    size_t n;
    char **values; /* per table entry, owned; NULL when unset */
    struct kv *kafka;
    size_t nkafka;
    char **args;
    size_t nargs;
};

ng_config *ng_config_new(const ng_option *table, size_t n)
{
    ng_config *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return NULL;
    }
    c->table = table;
    c->n = n;
    c->values = calloc(n ? n : 1, sizeof *c->values);
    if (c->values == NULL) {
        free(c);
        return NULL;
    }
    return c;
}

void ng_config_free(ng_config *c)
{
    if (c == NULL) {
        return;
    }
    for (size_t i = 0; i < c->n; i++) {
        free(c->values[i]);
    }
    for (size_t i = 0; i < c->nkafka; i++) {
        free(c->kafka[i].key);
        free(c->kafka[i].value);
    }
    free(c->values);
    free(c->kafka);
    free(c->args);
    free(c);
}

static long find(const ng_config *c, const char *name, size_t len)
{
    for (size_t i = 0; i < c->n; i++) {
        if (strlen(c->table[i].name) == len &&
            strncmp(c->table[i].name, name, len) == 0) {
            return (long)i;
        }
    }
    return -1;
}

static int check_value(const ng_option *o, const char *value, ng_error *err)
{
    if (o->type == NG_OPT_INT) {
        char *end;
        errno = 0;
        long long v = strtoll(value, &end, 10);
        if (errno || end == value || *end || v < 0) {
            return ng_error_set(err, NG_ERR_CONFIG, "usage",
                                "%s wants a whole number >= 0, not '%s'",
                                o->name, value);
        }
    } else if (o->type == NG_OPT_FLAG) {
        if (strcmp(value, "true") && strcmp(value, "false") &&
            strcmp(value, "1") && strcmp(value, "0")) {
            return ng_error_set(err, NG_ERR_CONFIG, "usage",
                                "%s wants true or false, not '%s'", o->name,
                                value);
        }
    }
    return 0;
}

static int set_index(ng_config *c, size_t i, const char *value, ng_error *err)
{
    if (check_value(&c->table[i], value, err) != 0) {
        return -1;
    }
    char *v = strdup(value);
    if (v == NULL) {
        return ng_error_set(err, NG_ERR_CONFIG, "oom", "out of memory");
    }
    free(c->values[i]);
    c->values[i] = v;
    return 0;
}

int ng_config_set(ng_config *c, const char *name, const char *value)
{
    long i = find(c, name, strlen(name));
    return i < 0 ? -1 : set_index(c, (size_t)i, value, NULL);
}

static int set_kafka(ng_config *c, const char *key, size_t klen,
                     const char *value, ng_error *err)
{
    for (size_t i = 0; i < c->nkafka; i++) {
        if (strlen(c->kafka[i].key) == klen &&
            strncmp(c->kafka[i].key, key, klen) == 0) {
            char *v = strdup(value);
            if (v == NULL) {
                return ng_error_set(err, NG_ERR_CONFIG, "oom", "out of memory");
            }
            free(c->kafka[i].value);
            c->kafka[i].value = v;
            return 0;
        }
    }
    struct kv *k = realloc(c->kafka, (c->nkafka + 1) * sizeof *k);
    if (k == NULL) {
        return ng_error_set(err, NG_ERR_CONFIG, "oom", "out of memory");
    }
    c->kafka = k;
    k[c->nkafka].key = strndup(key, klen);
    k[c->nkafka].value = strdup(value);
    if (k[c->nkafka].key == NULL || k[c->nkafka].value == NULL) {
        free(k[c->nkafka].key);
        free(k[c->nkafka].value);
        return ng_error_set(err, NG_ERR_CONFIG, "oom", "out of memory");
    }
    c->nkafka++;
    return 0;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s)) {
        s++;
    }
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) {
        *--e = '\0';
    }
    return s;
}

static int load_file(ng_config *c, const char *path, ng_error *err)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return ng_error_set(err, NG_ERR_CONFIG, "config_file", "%s: %s", path,
                            strerror(errno));
    }
    char *line = NULL;
    size_t cap = 0;
    int lineno = 0, rc = 0;
    while (rc == 0 && getline(&line, &cap, f) != -1) {
        lineno++;
        char *s = trim(line);
        if (*s == '\0' || *s == '#') {
            continue;
        }
        char *eq = strchr(s, '=');
        if (eq == NULL) {
            rc = ng_error_set(err, NG_ERR_CONFIG, "config_file",
                              "%s:%d: expected 'key = value'", path, lineno);
            break;
        }
        *eq = '\0';
        char *key = trim(s), *value = trim(eq + 1);
        if (strncmp(key, "kafka.", 6) == 0) {
            rc = set_kafka(c, key + 6, strlen(key + 6), value, err);
            continue;
        }
        long i = find(c, key, strlen(key));
        if (i < 0) {
            rc = ng_error_set(err, NG_ERR_CONFIG, "config_file",
                              "%s:%d: unknown setting '%s'", path, lineno, key);
        } else {
            rc = set_index(c, (size_t)i, value, err);
        }
    }
    free(line);
    fclose(f);
    return rc;
}

static void env_name(const char *name, char *out, size_t size)
{
    size_t j = snprintf(out, size, "NANGUARD_");
    for (const char *p = name; *p && j + 1 < size; p++) {
        out[j++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    }
    out[j] = '\0';
}

int ng_config_parse(ng_config *c, int argc, char **argv, ng_error *err)
{
    /* First pass: find --config and --help, collect positionals. */
    const char *file = NULL;
    c->args = calloc((size_t)argc + 1, sizeof *c->args);
    if (c->args == NULL) {
        return ng_error_set(err, NG_ERR_CONFIG, "oom", "out of memory");
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            return 1;
        }
        if (strcmp(a, "--") == 0) {
            while (++i < argc) {
                c->args[c->nargs++] = argv[i];
            }
            break;
        }
        if (strcmp(a, "--config") == 0 || strncmp(a, "--config=", 9) == 0) {
            if (a[8] == '=') {
                file = a + 9;
            } else if (i + 1 < argc) {
                file = argv[++i];
            } else {
                return ng_error_set(err, NG_ERR_CONFIG, "usage",
                                    "--config needs a file");
            }
            continue;
        }
        if (strcmp(a, "-X") == 0) {
            i++; /* applied in the last pass */
            continue;
        }
        if (strncmp(a, "--", 2) == 0) {
            const char *name = a + 2;
            const char *eq = strchr(name, '=');
            long k = find(c, name, eq ? (size_t)(eq - name) : strlen(name));
            if (k < 0) {
                /* The name only: what follows '=' may be a secret. */
                return ng_error_set(
                    err, NG_ERR_CONFIG, "usage", "unknown option '--%.*s'",
                    (int)(eq ? (size_t)(eq - name) : strlen(name)), name);
            }
            if (c->table[k].type != NG_OPT_FLAG && eq == NULL) {
                i++;
            }
            continue;
        }
        if (a[0] == '-' && a[1] != '\0') {
            return ng_error_set(err, NG_ERR_CONFIG, "usage",
                                "unknown option '%s'", a);
        }
        c->args[c->nargs++] = argv[i];
    }
    /* Defaults, then file, environment, command line. */
    for (size_t i = 0; i < c->n; i++) {
        if (c->table[i].dflt != NULL &&
            set_index(c, i, c->table[i].dflt, err) != 0) {
            return -1;
        }
    }
    if (file != NULL && load_file(c, file, err) != 0) {
        return -1;
    }
    for (size_t i = 0; i < c->n; i++) {
        char name[128];
        env_name(c->table[i].name, name, sizeof name);
        const char *v = getenv(name);
        if (v != NULL && set_index(c, i, v, err) != 0) {
            return -1;
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            break;
        }
        if (strcmp(a, "--config") == 0) {
            i++;
            continue;
        }
        if (strcmp(a, "-X") == 0) {
            const char *kv = i + 1 < argc ? argv[++i] : "";
            const char *eq = strchr(kv, '=');
            if (eq == NULL || eq == kv) {
                /* Not echoed: it may be a secret given without its name. */
                return ng_error_set(err, NG_ERR_CONFIG, "usage",
                                    "-X wants property=value");
            }
            if (set_kafka(c, kv, (size_t)(eq - kv), eq + 1, err) != 0) {
                return -1;
            }
            continue;
        }
        if (strncmp(a, "--", 2) != 0 || strncmp(a, "--config=", 9) == 0) {
            continue;
        }
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        long k = find(c, name, eq ? (size_t)(eq - name) : strlen(name));
        const char *value;
        if (eq != NULL) {
            value = eq + 1;
        } else if (c->table[k].type == NG_OPT_FLAG) {
            value = "true";
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            return ng_error_set(err, NG_ERR_CONFIG, "usage",
                                "option '%s' needs a value", a);
        }
        if (set_index(c, (size_t)k, value, err) != 0) {
            return -1;
        }
    }
    return 0;
}

const char *ng_config_get(const ng_config *c, const char *name)
{
    long i = find(c, name, strlen(name));
    return i < 0 ? NULL : c->values[i];
}

long long ng_config_int(const ng_config *c, const char *name)
{
    const char *v = ng_config_get(c, name);
    return v ? strtoll(v, NULL, 10) : 0;
}

int ng_config_flag(const ng_config *c, const char *name)
{
    const char *v = ng_config_get(c, name);
    return v != NULL && (strcmp(v, "true") == 0 || strcmp(v, "1") == 0);
}

size_t ng_config_kafka_count(const ng_config *c)
{
    return c->nkafka;
}

void ng_config_kafka_at(const ng_config *c, size_t i, const char **key,
                        const char **value)
{
    *key = c->kafka[i].key;
    *value = c->kafka[i].value;
}

size_t ng_config_args_count(const ng_config *c)
{
    return c->nargs;
}

const char *ng_config_arg(const ng_config *c, size_t i)
{
    return i < c->nargs ? c->args[i] : NULL;
}

void ng_config_help(const ng_config *c, FILE *out)
{
    for (size_t i = 0; i < c->n; i++) {
        const ng_option *o = &c->table[i];
        char left[64];
        snprintf(left, sizeof left, "--%s%s", o->name,
                 o->type == NG_OPT_FLAG  ? ""
                 : o->type == NG_OPT_INT ? " N"
                                         : " VALUE");
        fprintf(out, "  %-28s %s", left, o->help);
        if (o->dflt != NULL) {
            fprintf(out, " (default: %s)", *o->dflt ? o->dflt : "\"\"");
        }
        fputc('\n', out);
    }
    fprintf(out, "  %-28s %s\n  %-28s %s\n", "--config FILE",
            "read settings from FILE: 'name = value' lines, and "
            "'kafka.<property> = value' for librdkafka",
            "-X PROPERTY=VALUE",
            "pass a property to librdkafka untouched (repeatable)");
    fprintf(out, "\nEvery setting can also come from the environment as "
                 "NANGUARD_<NAME> (upper case,\n'-' as '_'). Precedence: "
                 "command line, environment, file, defaults.\n");
}
