/* cmd_schema.c - `nanguard schema`: prints the SQL of LangGraph's
 * checkpoint tables (what --create-table creates), for those who apply
 * migrations themselves. */
#include "common/buf.h"
#include "filter/cli/commands.h"
#include "sink/schema.h"

#include <getopt.h>
#include <stdio.h>
#include <sysexits.h>

static void usage(FILE *out)
{
    fprintf(out,
            "usage: nanguard schema [--schema NAME] [--lz4]\n\n"
            "Prints the SQL that creates LangGraph's checkpoint tables "
            "(checkpoints,\n"
            "checkpoint_blobs, checkpoint_writes and their thread_id "
            "indexes), as\n"
            "--create-table makes them. Every statement is IF NOT EXISTS; "
            "no\n"
            "checkpoint_migrations rows are written, so LangGraph's "
            "setup() still\n"
            "runs on top.\n\n"
            "options:\n"
            "  --schema NAME  create the tables in schema NAME (LangGraph "
            "then needs\n"
            "                 NAME on its search_path)\n"
            "  --lz4          COMPRESSION lz4 on the jsonb columns "
            "(PostgreSQL 14 or\n"
            "                 later built with lz4, as --create-table does "
            "where it can)\n"
            "  -h, --help     show this help\n\n"
            "exit status: 0, 64 bad usage, 74 I/O error.\n");
}

int cmd_schema(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"schema", required_argument, NULL, 's'},
        {"lz4", no_argument, NULL, 'z'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *nspname = NULL;
    int lz4 = 0;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 's':
            nspname = optarg;
            break;
        case 'z':
            lz4 = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return EX_USAGE;
        }
    }
    if (optind < argc || (nspname != NULL && nspname[0] == '\0')) {
        fprintf(stderr, "nanguard schema: %s\n",
                optind < argc ? "no arguments are taken"
                              : "--schema needs a name");
        usage(stderr);
        return EX_USAGE;
    }
    ng_buf sql = {0};
    if (schema_sql(&sql, nspname, lz4 != 0) != 0) {
        fprintf(stderr, "nanguard schema: out of memory\n");
        return EX_OSERR;
    }
    int rc =
        fwrite(sql.data, 1, sql.len, stdout) == sql.len && fflush(stdout) == 0
            ? 0
            : EX_IOERR;
    ng_buf_free(&sql);
    if (rc != 0) {
        fprintf(stderr, "nanguard schema: cannot write the output\n");
    }
    return rc;
}
