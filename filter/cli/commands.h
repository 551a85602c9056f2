/* commands.h - the subcommands of the nanguard command line. Each takes the
 * arguments after its own name (argv[0] is the subcommand) and returns the
 * process exit status (sysexits.h: 0, 64 usage, 65 data, 74 I/O, ...). */
#ifndef NANGUARD_COMMANDS_H
#define NANGUARD_COMMANDS_H

int cmd_sanitize(int argc, char **argv);
int cmd_load(int argc, char **argv);
int cmd_worker(int argc, char **argv);
int cmd_schema(int argc, char **argv);
int cmd_dlq(int argc, char **argv);
int cmd_notify(int argc, char **argv);

#endif
