/* pg_classify.c - SQLSTATE (and connection failure) to error class.
 *
 * The decisions, with the reasons where they are not obvious:
 *
 *   08 connection exception ........................ transient
 *   0A feature not supported ....................... configuration
 *   09, 20, 21, 22, 23, 27 data, constraint, trigger  bad row (permanent)
 *      (21000 "ON CONFLICT DO UPDATE cannot affect row a second time"
 *      cannot happen since the sink removes repeated keys from a batch;
 *      if a non-deterministic collation makes it happen anyway, bisection
 *      isolates the rows)
 *   25 invalid transaction state ................... transient
 *      (25006 read-only transaction: a standby that is being promoted;
 *      25P03 idle-in-transaction timeout: the session is gone)
 *   28 invalid authorization, 3D unknown database,
 *   3F unknown schema, 42 syntax or access rule ..... configuration
 *      (42P01 missing table, 42703 missing column, 42501 permission,
 *      42P10 no unique index for the ON CONFLICT columns, 42804 a column
 *      of another type: the table is not the one nanguard was told about)
 *   2F, 38, 39 routine exceptions, P0 PL/pgSQL ....... bad row
 *      (a trigger that RAISEs for some rows refuses those rows)
 *   40 transaction rollback ........................ transient
 *      (40001 serialization failure, 40P01 deadlock, 40003 completion
 *      unknown); but 40002 integrity violation at commit is a bad row
 *   44 WITH CHECK OPTION violation ................. bad row
 *   53 insufficient resources ...................... transient
 *   54 program limit: 54000 (a value too large), 54001 (too complex) are
 *      bad rows; the rest (too many columns, arguments) configuration
 *   55 object not in prerequisite state: 55P03 lock not available and
 *      55006 object in use are transient; the rest configuration
 *   57 operator intervention ....................... transient
 *      (57014 statement timeout or cancel, 57P01-57P03 shutdown and
 *      startup, 57P05 idle session timeout); but 57P04 database dropped
 *      is configuration
 *   58 system error (I/O), 72 snapshot too old,
 *   HV foreign data wrapper ........................ transient
 *   XX internal error .............................. transient
 *      (XX000 is mostly a server in trouble; treating it as a bad row
 *      would dead-letter good rows. A retry loop on a deterministic XX000
 *      is loud: the worker raises a critical notification and load ends
 *      with 75 after --retry-timeout. Nothing is lost either way.)
 *   F0 configuration file error, and every other
 *   class (a newer server's, or 24/26/34 cursor and statement names,
 *   which mean a bug in nanguard) ..................... configuration
 *      (stop and tell someone rather than loop or dead-letter)
 */
#include "sink/pg_classify.h"

#include <stddef.h>
#include <string.h>

typedef struct {
    const char *code; /* a full SQLSTATE, or a two-character class */
    ng_error_class klass;
} code_class;

/* Exact SQLSTATEs that differ from their class. */
static const code_class exact[] = {
    {"40002", NG_ERR_PERMANENT}, {"54000", NG_ERR_PERMANENT},
    {"54001", NG_ERR_PERMANENT}, {"55P03", NG_ERR_TRANSIENT},
    {"55006", NG_ERR_TRANSIENT}, {"57P04", NG_ERR_CONFIG},
};

static const code_class classes[] = {
    {"08", NG_ERR_TRANSIENT}, {"0A", NG_ERR_CONFIG},
    {"09", NG_ERR_PERMANENT}, {"20", NG_ERR_PERMANENT},
    {"21", NG_ERR_PERMANENT}, {"22", NG_ERR_PERMANENT},
    {"23", NG_ERR_PERMANENT}, {"25", NG_ERR_TRANSIENT},
    {"27", NG_ERR_PERMANENT}, {"28", NG_ERR_CONFIG},
    {"2F", NG_ERR_PERMANENT}, {"38", NG_ERR_PERMANENT},
    {"39", NG_ERR_PERMANENT}, {"3D", NG_ERR_CONFIG},
    {"3F", NG_ERR_CONFIG},    {"40", NG_ERR_TRANSIENT},
    {"42", NG_ERR_CONFIG},    {"44", NG_ERR_PERMANENT},
    {"53", NG_ERR_TRANSIENT}, {"54", NG_ERR_CONFIG},
    {"55", NG_ERR_CONFIG},    {"57", NG_ERR_TRANSIENT},
    {"58", NG_ERR_TRANSIENT}, {"72", NG_ERR_TRANSIENT},
    {"F0", NG_ERR_CONFIG},    {"HV", NG_ERR_TRANSIENT},
    {"P0", NG_ERR_PERMANENT}, {"XX", NG_ERR_TRANSIENT},
};

ng_error_class pg_classify_sqlstate(const char *sqlstate)
{
    if (sqlstate == NULL || sqlstate[0] == '\0') {
        return NG_ERR_TRANSIENT;
    }
    if (strlen(sqlstate) != 5) {
        return NG_ERR_CONFIG;
    }
    for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++) {
        if (strcmp(sqlstate, exact[i].code) == 0) {
            return exact[i].klass;
        }
    }
    for (size_t i = 0; i < sizeof classes / sizeof classes[0]; i++) {
        if (strncmp(sqlstate, classes[i].code, 2) == 0) {
            return classes[i].klass;
        }
    }
    return NG_ERR_CONFIG;
}

typedef struct {
    const char *needle;  /* found anywhere in the message */
    const char *needle2; /* and this too, when not NULL */
    ng_error_class klass;
    const char *sqlstate;
    const char *hint;
} message_rule;

#define HINT_RETRY "the server is not reachable yet; nanguard retries"

/* First match wins: the server's own refusals, then libpq's. */
static const message_rule connect_rules[] = {
    {"starting up", NULL, NG_ERR_TRANSIENT, "57P03", HINT_RETRY},
    {"shutting down", NULL, NG_ERR_TRANSIENT, "57P03", HINT_RETRY},
    {"in recovery mode", NULL, NG_ERR_TRANSIENT, "57P03", HINT_RETRY},
    {"not yet accepting connections", NULL, NG_ERR_TRANSIENT, "57P03",
     HINT_RETRY},
    {"too many clients", NULL, NG_ERR_TRANSIENT, "53300", HINT_RETRY},
    {"too many connections", NULL, NG_ERR_TRANSIENT, "53300", HINT_RETRY},
    {"connection slots are reserved", NULL, NG_ERR_TRANSIENT, "53300",
     HINT_RETRY},
    {"password authentication failed", NULL, NG_ERR_CONFIG, "28P01",
     "check the password (password= in the connection string, PGPASSWORD "
     "or ~/.pgpass) and the user name"},
    {"no password supplied", NULL, NG_ERR_CONFIG, "28P01",
     "the server wants a password: give one with password= in the "
     "connection string, PGPASSWORD or ~/.pgpass"},
    {"authentication failed", NULL, NG_ERR_CONFIG, "28000",
     "check the user name and credentials in the connection string"},
    {"no pg_hba.conf entry", NULL, NG_ERR_CONFIG, "28000",
     "the server refuses this client: add an entry for this host, user "
     "and database to the server's pg_hba.conf"},
    {"database \"", "does not exist", NG_ERR_CONFIG, "3D000",
     "check dbname= in the connection string (or PGDATABASE): that "
     "database does not exist on the server"},
    {"role \"", "does not exist", NG_ERR_CONFIG, "28000",
     "check user= in the connection string (or PGUSER): that role does "
     "not exist on the server"},
    {"not permitted to log in", NULL, NG_ERR_CONFIG, "28000",
     "the role lacks LOGIN: ALTER ROLE ... LOGIN, or use another user"},
    {"permission denied for database", NULL, NG_ERR_CONFIG, "42501",
     "GRANT CONNECT ON DATABASE ... TO the user"},
    {"does not support SSL", NULL, NG_ERR_CONFIG, "08P01",
     "the server has no SSL: change sslmode= in the connection string"},
    {"certificate", NULL, NG_ERR_CONFIG, "08P01",
     "check the SSL certificate settings (sslmode, sslrootcert, "
     "sslcert, sslkey)"},
    {"channel binding", NULL, NG_ERR_CONFIG, "08P01",
     "check channel_binding= in the connection string"},
    {"invalid connection option", NULL, NG_ERR_CONFIG, "",
     "fix the connection string: an option is not known to libpq"},
    {"invalid ", "value", NG_ERR_CONFIG, "",
     "fix the connection string: a value is not valid"},
    {"missing \"=\"", NULL, NG_ERR_CONFIG, "",
     "fix the connection string: write key=value pairs or a URI"},
    {"invalid URI", NULL, NG_ERR_CONFIG, "",
     "fix the connection string: the URI is not valid"},
    {"invalid port number", NULL, NG_ERR_CONFIG, "",
     "fix the connection string: port= is not valid"},
};

ng_error_class pg_classify_connect_message(const char *message,
                                           const char **sqlstate,
                                           const char **hint)
{
    const char *msg = message ? message : "";
    for (size_t i = 0; i < sizeof connect_rules / sizeof connect_rules[0];
         i++) {
        const message_rule *r = &connect_rules[i];
        if (strstr(msg, r->needle) != NULL &&
            (r->needle2 == NULL || strstr(msg, r->needle2) != NULL)) {
            *sqlstate = r->sqlstate;
            *hint = r->hint;
            return r->klass;
        }
    }
    *sqlstate = "";
    *hint = HINT_RETRY;
    return NG_ERR_TRANSIENT;
}

typedef struct {
    const char *code;
    const char *hint;
} code_hint;

static const code_hint hints[] = {
    {"42P01", "create the table (nanguard load --create-table creates "
              "LangGraph's checkpoints table) or name the right one "
              "(--table SCHEMA.NAME)"},
    {"3F000", "create the schema, or name the right table (--table "
              "SCHEMA.NAME)"},
    {"42703", "use LangGraph's checkpoints table (thread_id, "
              "checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, "
              "checkpoint, metadata); nanguard never alters a table"},
    {"42501", "GRANT SELECT, INSERT (and UPDATE for --on-conflict update) "
              "ON the table TO the user"},
    {"42P10", "give the table a primary key or unique index on "
              "(thread_id, checkpoint_ns, checkpoint_id)"},
    {"42804", "give the columns LangGraph's types (text keys, jsonb "
              "checkpoint and metadata)"},
    {"28P01", "check the password (password= in the connection string, "
              "PGPASSWORD or ~/.pgpass) and the user name"},
    {"28000", "check the user name and the server's pg_hba.conf"},
    {"3D000", "check dbname= in the connection string (or PGDATABASE)"},
    {"57P04", "the database was dropped: check dbname= and recreate it"},
};

const char *pg_classify_hint(const char *sqlstate)
{
    if (sqlstate != NULL) {
        for (size_t i = 0; i < sizeof hints / sizeof hints[0]; i++) {
            if (strcmp(sqlstate, hints[i].code) == 0) {
                return hints[i].hint;
            }
        }
        if (strncmp(sqlstate, "42", 2) == 0) {
            return "make the table and the user's privileges what nanguard "
                   "needs (see the server's message)";
        }
    }
    return "fix what the server's message names; nothing is dead-lettered "
           "meanwhile";
}
