/* pg_classify.h - what a PostgreSQL failure means for the work that hit it.
 *
 * Every failure the sink sees is classified here, once, into the classes of
 * common/error.h:
 *
 *   NG_ERR_TRANSIENT  retry the same batch later (connection lost, server
 *                     restarting, deadlock, timeout, out of resources)
 *   NG_ERR_PERMANENT  this row can never be stored (bad data, constraint,
 *                     trigger refusal): isolate it and dead-letter it
 *   NG_ERR_CONFIG     nothing can be stored until someone acts (missing
 *                     table or column, permission, authentication)
 *
 * Pure functions: no libpq in them, so they are tested with data tables.
 */
#ifndef NANGUARD_PG_CLASSIFY_H
#define NANGUARD_PG_CLASSIFY_H

#include "common/error.h"

/* Classifies a five-character SQLSTATE. NULL or "" (no SQLSTATE: the
 * connection broke before the server could answer) is transient. */
ng_error_class pg_classify_sqlstate(const char *sqlstate);

/* Classifies the message of a failed connection attempt. libpq does not
 * hand the server's SQLSTATE to the caller of PQconnectdb, so the message
 * text is all there is (English: nanguard never calls setlocale, and the
 * server's own messages follow its lc_messages). Sets *sqlstate to the
 * SQLSTATE the server would have sent when it is known ("28P01", ...) or
 * "", and *hint to a sentence saying what to fix (never NULL). Anything
 * unrecognised is transient: a server that is not there yet is the common
 * case, and the caller's retry limit bounds the wait. */
ng_error_class pg_classify_connect_message(const char *message,
                                           const char **sqlstate,
                                           const char **hint);

/* A sentence saying what an operator should fix for a configuration
 * SQLSTATE, or a generic one. Never NULL. */
const char *pg_classify_hint(const char *sqlstate);

#endif
