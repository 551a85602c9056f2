/* envelope.c - the checkpoint envelope, from the sanitizer's capture. */
#include "filter/sanitize/envelope.h"

#include <stdbool.h>
#include <stdio.h>

static const char *type_name(sanitize_type t)
{
    switch (t) {
    case SANITIZE_TYPE_NULL:
        return "null";
    case SANITIZE_TYPE_BOOL:
        return "a boolean";
    case SANITIZE_TYPE_NUMBER:
        return "a number";
    case SANITIZE_TYPE_STRING:
        return "a string";
    case SANITIZE_TYPE_OBJECT:
        return "an object";
    case SANITIZE_TYPE_ARRAY:
        return "an array";
    default:
        return "absent";
    }
}

/* A string field: required, or optional with a default (NULL allowed when
 * nullable). Returns 0 or -1 with why filled. */
static int string_field(const sanitize *h, sanitize_field_id id, bool required,
                        bool nullable, const char *dflt, const char **out,
                        char *why, size_t why_len)
{
    const sanitize_field *f = sanitize_field_get(h, id);
    if (f->type == SANITIZE_TYPE_STRING) {
        *out = f->str;
        return 0;
    }
    if (f->type == SANITIZE_ABSENT && !required) {
        *out = dflt;
        return 0;
    }
    if (f->type == SANITIZE_TYPE_NULL && nullable) {
        *out = NULL;
        return 0;
    }
    if (f->type == SANITIZE_ABSENT) {
        snprintf(why, why_len, "missing required field '%s'",
                 sanitize_field_name(id));
    } else {
        snprintf(why, why_len, "field '%s' must be a string%s, not %s",
                 sanitize_field_name(id), nullable ? " or null" : "",
                 type_name(f->type));
    }
    return -1;
}

static int object_field(const sanitize *h, const char *out,
                        sanitize_field_id id, bool required, const char **text,
                        size_t *len, char *why, size_t why_len)
{
    const sanitize_field *f = sanitize_field_get(h, id);
    if (f->type == SANITIZE_TYPE_OBJECT) {
        *text = out + f->span_off;
        *len = (size_t)f->span_len;
        return 0;
    }
    if (f->type == SANITIZE_ABSENT && !required) {
        *text = "{}";
        *len = 2;
        return 0;
    }
    if (f->type == SANITIZE_ABSENT) {
        snprintf(why, why_len, "missing required field '%s'",
                 sanitize_field_name(id));
    } else {
        snprintf(why, why_len, "field '%s' must be an object, not %s",
                 sanitize_field_name(id), type_name(f->type));
    }
    return -1;
}

int envelope_read(const sanitize *h, envelope *env, char *why, size_t why_len)
{
    sanitize_type root = sanitize_root_type(h);
    if (root != SANITIZE_TYPE_OBJECT) {
        snprintf(why, why_len, "the message must be a JSON object, not %s",
                 type_name(root));
        return -1;
    }
    size_t out_len;
    const char *out = sanitize_output(h, &out_len);
    if (string_field(h, SANITIZE_FIELD_THREAD_ID, true, false, NULL,
                     &env->thread_id, why, why_len) ||
        string_field(h, SANITIZE_FIELD_CHECKPOINT_NS, false, false, "",
                     &env->checkpoint_ns, why, why_len) ||
        string_field(h, SANITIZE_FIELD_CHECKPOINT_ID, true, false, NULL,
                     &env->checkpoint_id, why, why_len) ||
        string_field(h, SANITIZE_FIELD_PARENT_CHECKPOINT_ID, false, true, NULL,
                     &env->parent_checkpoint_id, why, why_len) ||
        string_field(h, SANITIZE_FIELD_TYPE, false, false, "checkpoint",
                     &env->type, why, why_len) ||
        object_field(h, out, SANITIZE_FIELD_CHECKPOINT, true, &env->checkpoint,
                     &env->checkpoint_len, why, why_len) ||
        object_field(h, out, SANITIZE_FIELD_METADATA, false, &env->metadata,
                     &env->metadata_len, why, why_len)) {
        return -1;
    }
    env->blobs = NULL;
    env->nblobs = 0;
    env->writes = NULL;
    env->nwrites = 0;
    env->has_step = 0;
    env->missing_channel = NULL;
    return 0;
}
