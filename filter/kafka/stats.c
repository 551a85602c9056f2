/* stats.c - consumer lag per partition from librdkafka's statistics JSON,
 * with yajl's tree API (the document is small and comes every few
 * seconds). */
#define _POSIX_C_SOURCE 200809L
#include "filter/kafka/stats.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_tree.h>

/* The integer member name of object o, or fallback. */
static int64_t int_member(yajl_val o, const char *name, int64_t fallback)
{
    const char *path[] = {name, NULL};
    yajl_val v = yajl_tree_get(o, path, yajl_t_number);
    return v != NULL && YAJL_IS_INTEGER(v) ? YAJL_GET_INTEGER(v) : fallback;
}

static bool desired(yajl_val p)
{
    const char *path[] = {"desired", NULL};
    yajl_val v = yajl_tree_get(p, path, yajl_t_any);
    return v != NULL && YAJL_IS_TRUE(v);
}

/* The partition's lag (see stats.h), or -1 when unknown. */
static int64_t lag_of(yajl_val p)
{
    int64_t lag = int_member(p, "consumer_lag", -1);
    if (lag >= 0) {
        return lag;
    }
    int64_t end = int_member(p, "ls_offset", -1);
    if (end < 0) {
        end = int_member(p, "hi_offset", -1);
    }
    int64_t lo = int_member(p, "lo_offset", -1);
    if (end < 0 || lo < 0 || int_member(p, "committed_offset", -1) >= 0) {
        return -1;
    }
    return end >= lo ? end - lo : 0;
}

static int add(kafka_partition_lag **out, size_t *n, size_t *cap,
               const char *topic, int32_t partition, int64_t lag)
{
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 8;
        kafka_partition_lag *l = realloc(*out, c * sizeof *l);
        if (l == NULL) {
            return -1;
        }
        *out = l;
        *cap = c;
    }
    char *t = strdup(topic);
    if (t == NULL) {
        return -1;
    }
    (*out)[(*n)++] = (kafka_partition_lag){t, partition, lag};
    return 0;
}

int kafka_stats_lag(const char *json, size_t len, kafka_partition_lag **out,
                    size_t *n, ng_error *err)
{
    *out = NULL;
    *n = 0;
    char *text = malloc(len + 1);
    if (text == NULL) {
        return ng_error_set(err, NG_ERR_TRANSIENT, "kafka_stats",
                            "out of memory");
    }
    memcpy(text, json, len);
    text[len] = '\0';
    char why[128] = "";
    yajl_val root = yajl_tree_parse(text, why, sizeof why);
    free(text);
    if (root == NULL || !YAJL_IS_OBJECT(root)) {
        yajl_tree_free(root);
        return ng_error_set(err, NG_ERR_PERMANENT, "kafka_stats",
                            "librdkafka statistics not readable: %s",
                            why[0] ? why : "not an object");
    }
    const char *tpath[] = {"topics", NULL};
    yajl_val topics = yajl_tree_get(root, tpath, yajl_t_object);
    size_t cap = 0;
    int rc = 0;
    for (size_t i = 0; topics != NULL && i < topics->u.object.len && rc == 0;
         i++) {
        const char *ppath[] = {"partitions", NULL};
        yajl_val parts =
            yajl_tree_get(topics->u.object.values[i], ppath, yajl_t_object);
        for (size_t j = 0; parts != NULL && j < parts->u.object.len; j++) {
            yajl_val p = parts->u.object.values[j];
            int64_t id = int_member(p, "partition", -1);
            int64_t lag = lag_of(p);
            if (id < 0 || id > INT32_MAX || !desired(p) || lag < 0) {
                continue; /* -1: librdkafka's unassigned-messages queue */
            }
            if (add(out, n, &cap, topics->u.object.keys[i], (int32_t)id, lag) !=
                0) {
                rc = ng_error_set(err, NG_ERR_TRANSIENT, "kafka_stats",
                                  "out of memory");
                break;
            }
        }
    }
    yajl_tree_free(root);
    if (rc != 0) {
        kafka_stats_lag_free(*out, *n);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

void kafka_stats_lag_free(kafka_partition_lag *lags, size_t n)
{
    if (lags == NULL) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        free(lags[i].topic);
    }
    free(lags);
}
