/* report.h - what the sanitizer changed, summed over several inputs and
 * written as JSON: {"values": N, "rewrites": {"nan": 2, ...}, "paths": [..]}.
 */
#ifndef NANGUARD_REPORT_H
#define NANGUARD_REPORT_H

#include "common/buf.h"
#include "filter/sanitize/sanitize.h"

typedef struct {
    uint64_t values;
    uint64_t counts[SANITIZE_KIND_COUNT];
    ng_buf paths; /* NUL-terminated JSON Pointers, back to back */
    size_t npaths;
    size_t max_paths;
} sanitize_report;

/* Starts an empty report that keeps at most max_paths paths. */
void sanitize_report_init(sanitize_report *r, size_t max_paths);
void sanitize_report_free(sanitize_report *r);
/* Adds what handle h counted since its last reset. Returns 0 or -1 (out of
 * memory, the report then lacks some paths). */
int sanitize_report_add(sanitize_report *r, const sanitize *h);
/* Appends the report as one JSON object (no newline). */
int sanitize_report_json(const sanitize_report *r, ng_buf *out);
/* Appends only {"nan": 2, ...} for the counts of handle h. */
int sanitize_counts_json(const sanitize *h, ng_buf *out);

#endif
