/* sanitize_only.c - a program built against the sanitizer target alone.
 *
 * It repairs one envelope and reads it, so the linker must resolve the
 * whole library; test_layers.sh then checks that its link line needed no
 * Kafka, PostgreSQL or HTTP library. Prints the repaired checkpoint. */
#include "filter/sanitize/envelope.h"
#include "filter/sanitize/sanitize.h"

#include <stdio.h>
#include <string.h>

int main(void)
{
    static const char in[] = "{\"thread_id\": \"t\", \"checkpoint_id\": \"c\", "
                             "\"checkpoint\": {\"x\": NaN}}";
    sanitize *h = sanitize_new(NULL);
    if (h == NULL) {
        return 1;
    }
    envelope env;
    char why[160];
    int rc = 1;
    if (sanitize_feed(h, in, strlen(in)) == SANITIZE_OK &&
        sanitize_finish(h) == SANITIZE_OK &&
        envelope_read(h, &env, why, sizeof why) == 0) {
        printf("%.*s\n", (int)env.checkpoint_len, env.checkpoint);
        rc = 0;
    }
    sanitize_free(h);
    return rc;
}
