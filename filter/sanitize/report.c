/* report.c - the sanitizer's report as JSON. */
#include "filter/sanitize/report.h"

#include "common/json_write.h"

#include <string.h>

void sanitize_report_init(sanitize_report *r, size_t max_paths)
{
    memset(r, 0, sizeof *r);
    r->max_paths = max_paths;
}

void sanitize_report_free(sanitize_report *r)
{
    ng_buf_free(&r->paths);
}

int sanitize_report_add(sanitize_report *r, const sanitize *h)
{
    r->values += sanitize_values(h);
    for (int k = 0; k < SANITIZE_KIND_COUNT; k++) {
        r->counts[k] += sanitize_count(h, (sanitize_kind)k);
    }
    for (size_t i = 0; i < sanitize_path_count(h); i++) {
        if (r->npaths >= r->max_paths) {
            break;
        }
        const char *p = sanitize_path(h, i);
        if (ng_buf_append(&r->paths, p, strlen(p) + 1) != 0) {
            return -1;
        }
        r->npaths++;
    }
    return 0;
}

static int counts_json(const uint64_t *counts, ng_buf *out)
{
    int rc = ng_json_raw(out, "{");
    for (int k = 0; k < SANITIZE_KIND_COUNT && rc == 0; k++) {
        rc = ng_json_raw(out, k ? ", \"" : "\"") ||
             ng_json_raw(out, sanitize_kind_name((sanitize_kind)k)) ||
             ng_json_raw(out, "\": ") || ng_json_u64(out, counts[k]);
    }
    return rc || ng_json_raw(out, "}");
}

int sanitize_counts_json(const sanitize *h, ng_buf *out)
{
    uint64_t counts[SANITIZE_KIND_COUNT];
    for (int k = 0; k < SANITIZE_KIND_COUNT; k++) {
        counts[k] = sanitize_count(h, (sanitize_kind)k);
    }
    return counts_json(counts, out);
}

int sanitize_report_json(const sanitize_report *r, ng_buf *out)
{
    int rc = ng_json_raw(out, "{\"values\": ") || ng_json_u64(out, r->values) ||
             ng_json_raw(out, ", \"rewrites\": ") ||
             counts_json(r->counts, out) || ng_json_raw(out, ", \"paths\": [");
    const char *p = r->paths.data;
    for (size_t i = 0; i < r->npaths && rc == 0; i++) {
        rc = (i ? ng_json_raw(out, ", ") : 0) || ng_json_cstr(out, p);
        p += strlen(p) + 1;
    }
    return rc || ng_json_raw(out, "]}");
}
