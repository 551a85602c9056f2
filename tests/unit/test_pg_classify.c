/* test_pg_classify.c - SQLSTATE and connection failures to error classes,
 * as data tables. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "sink/pg_classify.h"

#define T NG_ERR_TRANSIENT
#define P NG_ERR_PERMANENT
#define C NG_ERR_CONFIG

static const struct {
    const char *sqlstate;
    ng_error_class want;
} sqlstates[] = {
    /* transient */
    {NULL, T},
    {"", T},
    {"08000", T},
    {"08006", T}, /* connection failure */
    {"08P01", T}, /* protocol violation */
    {"40001", T}, /* serialization failure */
    {"40P01", T}, /* deadlock */
    {"40003", T},
    {"53000", T},
    {"53100", T}, /* disk full */
    {"53200", T}, /* out of memory */
    {"53300", T}, /* too many connections */
    {"57014", T}, /* statement timeout, query canceled */
    {"57P01", T}, /* admin shutdown */
    {"57P02", T}, /* crash shutdown */
    {"57P03", T}, /* cannot connect now */
    {"57P05", T}, /* idle session timeout */
    {"55P03", T}, /* lock not available */
    {"55006", T}, /* object in use */
    {"58000", T},
    {"58030", T}, /* I/O error */
    {"25006", T}, /* read-only transaction: a standby being promoted */
    {"XX000", T}, /* internal error */
    {"XX001", T},
    {"72000", T},
    /* bad row */
    {"22000", P},
    {"22001", P}, /* string data right truncation */
    {"22021", P}, /* invalid byte sequence */
    {"22P02", P}, /* invalid text representation: NaN in jsonb */
    {"22P05", P}, /* untranslatable character: \u0000 */
    {"22003", P},
    {"23000", P},
    {"23502", P}, /* not null */
    {"23503", P}, /* foreign key */
    {"23505", P}, /* unique, other than the handled conflict */
    {"23514", P}, /* check */
    {"23P01", P}, /* exclusion */
    {"54000", P}, /* program limit: a value too large */
    {"54001", P},
    {"P0001", P}, /* a trigger's RAISE EXCEPTION */
    {"P0004", P},
    {"27000", P},
    {"44000", P},
    {"21000", P},
    {"40002", P},
    {"2F005", P},
    {"39P01", P},
    /* configuration */
    {"42P01", C}, /* missing table */
    {"42703", C}, /* missing column */
    {"42501", C}, /* permission */
    {"42P10", C}, /* no unique index for ON CONFLICT */
    {"42804", C},
    {"42601", C},
    {"28P01", C}, /* password */
    {"28000", C}, /* authorization */
    {"3D000", C}, /* unknown database */
    {"3F000", C}, /* unknown schema */
    {"0A000", C},
    {"54011", C},
    {"55000", C},
    {"57P04", C}, /* database dropped */
    {"F0000", C},
    {"24000", C},
    {"ZZ999", C}, /* a class this nanguard does not know */
    {"01000", C},
    {"0800", C}, /* not a SQLSTATE */
    {"080000", C},
};

static void test_sqlstates(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof sqlstates / sizeof sqlstates[0]; i++) {
        ng_error_class got = pg_classify_sqlstate(sqlstates[i].sqlstate);
        if (got != sqlstates[i].want) {
            fail_msg("%s: got %s, want %s",
                     sqlstates[i].sqlstate ? sqlstates[i].sqlstate : "NULL",
                     ng_error_class_name(got),
                     ng_error_class_name(sqlstates[i].want));
        }
    }
}

static const struct {
    const char *message;
    ng_error_class want;
    const char *sqlstate;
} messages[] = {
    {"connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  "
     "password authentication failed for user \"nanguard\"",
     C, "28P01"},
    {"connection to server at \"127.0.0.1\", port 5432 failed: "
     "fe_sendauth: no password supplied",
     C, "28P01"},
    {"connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  "
     "database \"nope\" does not exist",
     C, "3D000"},
    {"connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  "
     "role \"nope\" does not exist",
     C, "28000"},
    {"FATAL:  no pg_hba.conf entry for host \"10.0.0.1\", user \"x\", "
     "database \"y\", no encryption",
     C, "28000"},
    {"FATAL:  role \"x\" is not permitted to log in", C, "28000"},
    {"FATAL:  permission denied for database \"y\"", C, "42501"},
    {"server does not support SSL, but SSL was required", C, "08P01"},
    {"invalid sslmode value: \"sometimes\"", C, ""},
    {"invalid connection option \"colour\"", C, ""},
    {"invalid integer value \"abc\" for connection option \"port\"", C, ""},
    {"connection to server at \"127.0.0.1\", port 5432 failed: Connection "
     "refused\n\tIs the server running on that host and accepting TCP/IP "
     "connections?",
     T, ""},
    {"connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  the "
     "database system is starting up",
     T, "57P03"},
    {"FATAL:  the database system is shutting down", T, "57P03"},
    {"FATAL:  the database system is in recovery mode", T, "57P03"},
    {"FATAL:  sorry, too many clients already", T, "53300"},
    {"FATAL:  remaining connection slots are reserved for non-replication "
     "superuser connections",
     T, "53300"},
    {"timeout expired", T, ""},
    {"could not translate host name \"db\" to address: Temporary failure in "
     "name resolution",
     T, ""},
    {"server closed the connection unexpectedly", T, ""},
    {"", T, ""},
    {NULL, T, ""},
};

static void test_connect_messages(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof messages / sizeof messages[0]; i++) {
        const char *sqlstate = "unset", *hint = NULL;
        ng_error_class got =
            pg_classify_connect_message(messages[i].message, &sqlstate, &hint);
        if (got != messages[i].want ||
            strcmp(sqlstate, messages[i].sqlstate) != 0) {
            fail_msg("'%s': got %s/%s, want %s/%s",
                     messages[i].message ? messages[i].message : "NULL",
                     ng_error_class_name(got), sqlstate,
                     ng_error_class_name(messages[i].want),
                     messages[i].sqlstate);
        }
        assert_non_null(hint);
        assert_true(strlen(hint) > 10);
    }
}

static void test_hints(void **state)
{
    (void)state;
    assert_non_null(strstr(pg_classify_hint("42P01"), "--create-table"));
    assert_non_null(strstr(pg_classify_hint("3F000"), "schema"));
    assert_non_null(strstr(pg_classify_hint("42703"), "never alters"));
    assert_non_null(strstr(pg_classify_hint("42501"), "GRANT"));
    assert_non_null(strstr(pg_classify_hint("28P01"), "password"));
    assert_non_null(strstr(pg_classify_hint("3D000"), "dbname"));
    assert_non_null(pg_classify_hint("42999"));
    assert_non_null(pg_classify_hint(NULL));
    assert_non_null(pg_classify_hint("XX000"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sqlstates),
        cmocka_unit_test(test_connect_messages),
        cmocka_unit_test(test_hints),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
