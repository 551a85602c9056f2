/* envelope_reader.c - an envelope's blobs and writes, metadata's step and
 * the completeness of its checkpoint, read from the sanitizer's repaired
 * output.
 *
 * That output is JSON that yajl has accepted, so a small skimmer is
 * enough to walk it: it finds the ends of strings and containers and
 * never checks grammar again. Decoded strings and blob bytes go to one
 * arena; entries hold offsets into it until the read is over (the arena
 * may move as it grows), then become pointers.
 */
#include "filter/sanitize/envelope.h"

#include "common/buf.h"
#include "filter/sanitize/json_text.h"

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An entry's strings as arena offsets while reading. SIZE_MAX: NULL. */
typedef struct {
    size_t str[5];
    size_t blob, blob_len;
    int32_t idx;
} entry;

struct envelope_reader {
    sanitize *json; /* for "json" blobs */
    ng_buf arena;
    entry *entries;
    size_t nentries, cap_entries;
    envelope_blob *blobs;
    size_t cap_blobs;
    envelope_write *writes;
    size_t cap_writes;
    size_t *keys; /* channel_values keys: arena offsets */
    size_t nkeys, cap_keys;
    uint64_t counts[SANITIZE_KIND_COUNT];
};

envelope_reader *envelope_reader_new(size_t max_depth)
{
    envelope_reader *r = calloc(1, sizeof *r);
    if (r == NULL) {
        return NULL;
    }
    sanitize_options o = {.max_depth = max_depth, .max_paths = 1};
    r->json = sanitize_new(&o);
    if (r->json == NULL) {
        free(r);
        return NULL;
    }
    return r;
}

void envelope_reader_free(envelope_reader *r)
{
    if (r == NULL) {
        return;
    }
    sanitize_free(r->json);
    ng_buf_free(&r->arena);
    free(r->entries);
    free(r->blobs);
    free(r->writes);
    free(r->keys);
    free(r);
}

uint64_t envelope_reader_count(const envelope_reader *r, sanitize_kind kind)
{
    return (unsigned)kind < SANITIZE_KIND_COUNT ? r->counts[kind] : 0;
}

/* ---- skimming valid JSON ----------------------------------------------- */

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) {
        p++;
    }
    return p;
}

/* p at the opening quote; returns just past the closing one. */
static const char *skip_string(const char *p, const char *end)
{
    for (p++; p < end;) {
        const char *q = memchr(p, '"', (size_t)(end - p));
        if (q == NULL) {
            return end;
        }
        size_t bs = 0;
        while (q - bs > p && q[-1 - (ptrdiff_t)bs] == '\\') {
            bs++;
        }
        p = q + 1;
        if (bs % 2 == 0) {
            return p;
        }
    }
    return end;
}

static const char *skip_value(const char *p, const char *end)
{
    if (p >= end) {
        return end;
    }
    if (*p == '"') {
        return skip_string(p, end);
    }
    if (*p == '{' || *p == '[') {
        size_t depth = 0;
        while (p < end) {
            char c = *p;
            if (c == '"') {
                p = skip_string(p, end);
                continue;
            }
            if (c == '{' || c == '[') {
                depth++;
            } else if ((c == '}' || c == ']') && --depth == 0) {
                return p + 1;
            }
            p++;
        }
        return end;
    }
    while (p < end && *p != ',' && *p != '}' && *p != ']' && *p != ' ' &&
           *p != '\t' && *p != '\n' && *p != '\r') {
        p++;
    }
    return p;
}

/* Walks an object or array: call with *p at '{' or '[' first, then again
 * after each member. Returns 1 with the member (key NULL in arrays; the
 * key span holds the quotes) and its value span, 0 at the end. */
static int next_member(const char **p, const char *end, const char **key,
                       const char **kend, const char **val, const char **vend)
{
    const char *q = skip_ws(*p, end);
    if (q < end && (*q == '{' || *q == '[' || *q == ',')) {
        q = skip_ws(q + 1, end);
    }
    if (q >= end || *q == '}' || *q == ']') {
        return 0;
    }
    *key = NULL;
    if (*q == '"') {
        const char *k = q;
        const char *ke = skip_string(q, end);
        const char *c = skip_ws(ke, end);
        if (c < end && *c == ':') {
            *key = k;
            *kend = ke;
            q = skip_ws(c + 1, end);
        }
    }
    *val = q;
    *vend = skip_value(q, end);
    *p = *vend;
    return 1;
}

/* ---- the arena --------------------------------------------------------- */

/* Decodes the JSON string at [s, e) (quotes included) into the arena;
 * returns its offset, or SIZE_MAX when out of memory. */
static size_t arena_string(envelope_reader *r, const char *s, const char *e)
{
    size_t off = r->arena.len;
    if (json_decode_repaired((const unsigned char *)s + 1, (size_t)(e - s) - 2,
                             &r->arena) != 0) {
        return SIZE_MAX;
    }
    r->arena.len++; /* keep the NUL */
    return off;
}

static const char *at(const envelope_reader *r, size_t off)
{
    return off == SIZE_MAX ? NULL : r->arena.data + off;
}

static bool key_is(const char *k, const char *ke, const char *name)
{
    size_t n = strlen(name);
    return k != NULL && (size_t)(ke - k) == n + 2 &&
           memcmp(k + 1, name, n) == 0;
}

/* A base64 digit's value, or -1. */
static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* Decodes standard base64 (padding optional) from the decoded string at
 * arena offset src into the arena. Returns 0, -1 when it is not base64,
 * -2 when out of memory. */
static int arena_base64(envelope_reader *r, size_t src, size_t *off,
                        size_t *len)
{
    size_t n = strlen(r->arena.data + src);
    for (int pad = 0; pad < 2 && n > 0 && r->arena.data[src + n - 1] == '=';
         pad++) {
        n--;
    }
    if (n % 4 == 1) {
        return -1;
    }
    if (ng_buf_reserve(&r->arena, n / 4 * 3 + 3) != 0) {
        return -2;
    }
    const unsigned char *in = (const unsigned char *)r->arena.data + src;
    char *out = r->arena.data + r->arena.len;
    size_t o = 0;
    uint32_t acc = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_value(in[i]);
        if (v < 0) {
            return -1;
        }
        acc = acc << 6 | (uint32_t)v;
        if (i % 4 == 3) {
            out[o++] = (char)(acc >> 16);
            out[o++] = (char)(acc >> 8);
            out[o++] = (char)acc;
            acc = 0;
        }
    }
    if (n % 4 == 2) {
        out[o++] = (char)(acc >> 4);
    } else if (n % 4 == 3) {
        out[o++] = (char)(acc >> 10);
        out[o++] = (char)(acc >> 2);
    }
    *off = r->arena.len;
    *len = o;
    r->arena.len += o;
    return 0;
}

/* The blob at arena [off, off + len) is JSON text: repairs it (counted)
 * and puts the repaired text in the arena instead. Returns 0, -1 when it
 * is not JSON (why filled), -2 when out of memory. */
static int repair_json_blob(envelope_reader *r, size_t *off, size_t *len,
                            char *why, size_t why_len, const char *label)
{
    sanitize_reset(r->json);
    if (sanitize_feed(r->json, r->arena.data + *off, *len) != SANITIZE_OK ||
        sanitize_finish(r->json) != SANITIZE_OK) {
        const sanitize_error *e = sanitize_last_error(r->json);
        if (e->code == SANITIZE_ENOMEM) {
            return -2;
        }
        snprintf(why, why_len,
                 "%s: a json blob that is not JSON: byte %llu: %s", label,
                 (unsigned long long)e->offset, e->message);
        return -1;
    }
    for (int k = 0; k < SANITIZE_KIND_COUNT; k++) {
        r->counts[k] += sanitize_count(r->json, (sanitize_kind)k);
    }
    size_t n;
    const char *text = sanitize_output(r->json, &n);
    size_t at_off = r->arena.len;
    if (ng_buf_append(&r->arena, text, n) != 0) {
        return -2;
    }
    *off = at_off;
    *len = n;
    return 0;
}

/* ---- blobs and writes -------------------------------------------------- */

enum { F_CHANNEL, F_VERSION, F_TYPE, F_TASK_ID, F_TASK_PATH };

static int grow(void **p, size_t *cap, size_t want, size_t size)
{
    if (want <= *cap) {
        return 0;
    }
    size_t n = *cap ? *cap * 2 : 16;
    while (n < want) {
        n *= 2;
    }
    if (n > SIZE_MAX / size) {
        return -1;
    }
    void *q = realloc(*p, n * size);
    if (q == NULL) {
        return -1;
    }
    *p = q;
    *cap = n;
    return 0;
}

#define OOM (-2)

/* Reads one array field (blobs or writes) into r->entries. Returns 0, -1
 * with why filled, or OOM. */
static int read_entries(envelope_reader *r, const char *out,
                        const sanitize_field *f, bool writes, char *why,
                        size_t why_len)
{
    const char *name = writes ? "writes" : "blobs";
    size_t first = r->nentries;
    if (f->type == SANITIZE_ABSENT || f->type == SANITIZE_TYPE_NULL) {
        return 0;
    }
    if (f->type != SANITIZE_TYPE_ARRAY) {
        snprintf(why, why_len, "field '%s' must be an array", name);
        return -1;
    }
    const char *p = out + f->span_off;
    const char *end = p + f->span_len;
    const char *k, *ke, *v, *ve;
    while (next_member(&p, end, &k, &ke, &v, &ve)) {
        size_t i = r->nentries;
        char label[48];
        snprintf(label, sizeof label, "%s[%zu]", name, i - first);
        if (*v != '{') {
            snprintf(why, why_len, "%s must be an object", label);
            return -1;
        }
        if (grow((void **)&r->entries, &r->cap_entries, i + 1,
                 sizeof *r->entries) != 0) {
            return OOM;
        }
        entry *e = &r->entries[i];
        for (int s = 0; s < 5; s++) {
            e->str[s] = SIZE_MAX;
        }
        e->blob = SIZE_MAX;
        e->blob_len = 0;
        bool have_idx = false, have_blob = false;
        const char *q = v;
        const char *mk, *mke, *mv, *mve;
        while (next_member(&q, ve, &mk, &mke, &mv, &mve)) {
            int slot = key_is(mk, mke, "channel")               ? F_CHANNEL
                       : key_is(mk, mke, "type")                ? F_TYPE
                       : !writes && key_is(mk, mke, "version")  ? F_VERSION
                       : writes && key_is(mk, mke, "task_id")   ? F_TASK_ID
                       : writes && key_is(mk, mke, "task_path") ? F_TASK_PATH
                                                                : -1;
            if (slot >= 0) {
                if (*mv == 'n' && slot == F_TYPE && writes) {
                    e->str[slot] = SIZE_MAX;
                    continue;
                }
                if (*mv != '"') {
                    snprintf(why, why_len, "%s: '%.*s' must be a string", label,
                             (int)(mke - mk - 2), mk + 1);
                    return -1;
                }
                if ((e->str[slot] = arena_string(r, mv, mve)) == SIZE_MAX) {
                    return OOM;
                }
            } else if (writes && key_is(mk, mke, "idx")) {
                char num[24];
                size_t n = (size_t)(mve - mv);
                char *endp;
                if (n == 0 || n >= sizeof num) {
                    n = 0;
                }
                memcpy(num, mv, n);
                num[n] = '\0';
                long long x = n ? strtoll(num, &endp, 10) : 0;
                if (n == 0 || *endp != '\0' || x < INT32_MIN || x > INT32_MAX) {
                    snprintf(why, why_len, "%s: 'idx' must be an integer",
                             label);
                    return -1;
                }
                e->idx = (int32_t)x;
                have_idx = true;
            } else if (key_is(mk, mke, "blob")) {
                have_blob = true;
                if (*mv == 'n' && !writes) {
                    e->blob = SIZE_MAX;
                    continue;
                }
                if (*mv != '"') {
                    snprintf(why, why_len,
                             "%s: 'blob' must be a base64 string%s", label,
                             writes ? "" : " or null");
                    return -1;
                }
                size_t src = arena_string(r, mv, mve);
                if (src == SIZE_MAX) {
                    return OOM;
                }
                int rc = arena_base64(r, src, &e->blob, &e->blob_len);
                if (rc == -2) {
                    return OOM;
                }
                if (rc != 0) {
                    snprintf(why, why_len, "%s: 'blob' is not base64", label);
                    return -1;
                }
            }
        }
        const char *missing =
            e->str[F_CHANNEL] == SIZE_MAX              ? "channel"
            : !writes && e->str[F_VERSION] == SIZE_MAX ? "version"
            : !writes && e->str[F_TYPE] == SIZE_MAX    ? "type"
            : writes && e->str[F_TASK_ID] == SIZE_MAX  ? "task_id"
            : writes && !have_idx                      ? "idx"
            : !have_blob                               ? "blob"
                                                       : NULL;
        if (missing != NULL) {
            snprintf(why, why_len, "%s: missing required field '%s'", label,
                     missing);
            return -1;
        }
        if (e->blob != SIZE_MAX && e->str[F_TYPE] != SIZE_MAX &&
            strcmp(r->arena.data + e->str[F_TYPE], "json") == 0) {
            int rc = repair_json_blob(r, &e->blob, &e->blob_len, why, why_len,
                                      label);
            if (rc != 0) {
                return rc;
            }
        }
        r->nentries++;
    }
    return 0;
}

/* ---- completeness and step ---------------------------------------------- */

/* Whether the decoded key at arena offset off equals the JSON string
 * [k, ke), compared decoded. Uses the arena's tail as scratch. */
static int key_equal_decoded(envelope_reader *r, const char *k, const char *ke,
                             size_t off, bool *eq)
{
    size_t mark = r->arena.len;
    size_t d = arena_string(r, k, ke);
    if (d == SIZE_MAX) {
        return OOM;
    }
    *eq = strcmp(r->arena.data + d, r->arena.data + off) == 0;
    r->arena.len = mark;
    return 0;
}

static int check_complete(envelope_reader *r, const char *cp, size_t cp_len,
                          size_t nblobs, size_t *missing)
{
    const char *end = cp + cp_len;
    const char *p = cp;
    const char *k, *ke, *v, *ve;
    const char *vals = NULL, *vals_end = NULL, *vers = NULL, *vers_end = NULL;
    while (next_member(&p, end, &k, &ke, &v, &ve)) {
        if (key_is(k, ke, "channel_values") && *v == '{') {
            vals = v;
            vals_end = ve;
        } else if (key_is(k, ke, "channel_versions") && *v == '{') {
            vers = v;
            vers_end = ve;
        }
    }
    *missing = SIZE_MAX;
    if (vers == NULL) {
        return 0;
    }
    r->nkeys = 0;
    p = vals;
    while (vals != NULL && next_member(&p, vals_end, &k, &ke, &v, &ve)) {
        if (k == NULL) {
            continue;
        }
        if (grow((void **)&r->keys, &r->cap_keys, r->nkeys + 1,
                 sizeof *r->keys) != 0) {
            return OOM;
        }
        if ((r->keys[r->nkeys] = arena_string(r, k, ke)) == SIZE_MAX) {
            return OOM;
        }
        r->nkeys++;
    }
    p = vers;
    while (next_member(&p, vers_end, &k, &ke, &v, &ve)) {
        if (k == NULL) {
            continue;
        }
        bool found = false;
        for (size_t i = 0; i < r->nkeys && !found; i++) {
            if (key_equal_decoded(r, k, ke, r->keys[i], &found) != 0) {
                return OOM;
            }
        }
        for (size_t i = 0; i < nblobs && !found; i++) {
            if (key_equal_decoded(r, k, ke, r->entries[i].str[F_CHANNEL],
                                  &found) != 0) {
                return OOM;
            }
        }
        if (!found) {
            if ((*missing = arena_string(r, k, ke)) == SIZE_MAX) {
                return OOM;
            }
            return 0;
        }
    }
    return 0;
}

static bool has_key(const char *obj, size_t len, const char *name)
{
    const char *p = obj, *end = obj + len;
    const char *k, *ke, *v, *ve;
    while (next_member(&p, end, &k, &ke, &v, &ve)) {
        if (key_is(k, ke, name)) {
            return true;
        }
    }
    return false;
}

int envelope_reader_read(envelope_reader *r, const sanitize *h, envelope *env,
                         char *why, size_t why_len)
{
    if (envelope_read(h, env, why, why_len) != 0) {
        return -1;
    }
    memset(r->counts, 0, sizeof r->counts);
    ng_buf_clear(&r->arena);
    size_t out_len;
    const char *out = sanitize_output(h, &out_len);
    /* Blobs are entries [0, nblobs), writes follow them. */
    r->nentries = 0;
    int rc = read_entries(r, out, sanitize_field_get(h, SANITIZE_FIELD_BLOBS),
                          false, why, why_len);
    size_t nblobs = r->nentries;
    size_t missing = SIZE_MAX;
    if (rc == 0) {
        rc = check_complete(r, env->checkpoint, env->checkpoint_len, nblobs,
                            &missing);
    }
    if (rc == 0) {
        rc = read_entries(r, out, sanitize_field_get(h, SANITIZE_FIELD_WRITES),
                          true, why, why_len);
    }
    size_t nwrites = r->nentries - nblobs;
    if (rc == 0 && (grow((void **)&r->blobs, &r->cap_blobs, nblobs + 1,
                         sizeof *r->blobs) != 0 ||
                    grow((void **)&r->writes, &r->cap_writes, nwrites + 1,
                         sizeof *r->writes) != 0)) {
        rc = OOM;
    }
    if (rc != 0) {
        if (rc == OOM) {
            snprintf(why, why_len, "out of memory");
        }
        return -1;
    }
    /* The arena no longer moves: offsets become pointers. */
    for (size_t i = 0; i < nblobs; i++) {
        const entry *e = &r->entries[i];
        r->blobs[i] = (envelope_blob){
            .channel = at(r, e->str[F_CHANNEL]),
            .version = at(r, e->str[F_VERSION]),
            .type = at(r, e->str[F_TYPE]),
            .blob = at(r, e->blob),
            .blob_len = e->blob_len,
        };
    }
    for (size_t i = 0; i < nwrites; i++) {
        const entry *e = &r->entries[nblobs + i];
        r->writes[i] = (envelope_write){
            .task_id = at(r, e->str[F_TASK_ID]),
            .task_path = e->str[F_TASK_PATH] == SIZE_MAX
                             ? ""
                             : at(r, e->str[F_TASK_PATH]),
            .idx = e->idx,
            .channel = at(r, e->str[F_CHANNEL]),
            .type = at(r, e->str[F_TYPE]),
            .blob = at(r, e->blob),
            .blob_len = e->blob_len,
        };
    }
    env->blobs = nblobs ? r->blobs : NULL;
    env->nblobs = nblobs;
    env->writes = nwrites ? r->writes : NULL;
    env->nwrites = nwrites;
    env->has_step = has_key(env->metadata, env->metadata_len, "step");
    env->missing_channel = at(r, missing);
    return 0;
}
