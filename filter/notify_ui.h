/* notify_ui.h - the reference page (deploy/ui/), built into the binary by
 * cmake/embed_files.cmake, served by `nanguard notify` at GET /. */
#ifndef NANGUARD_NOTIFY_UI_H
#define NANGUARD_NOTIFY_UI_H

#include <stddef.h>

typedef struct {
    const char *path; /* "/", "/notify.js" */
    const char *content_type;
    const unsigned char *data;
    size_t len;
} notify_ui_file;

extern const notify_ui_file notify_ui_files[];
extern const unsigned notify_ui_count;

#endif
