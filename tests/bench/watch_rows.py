#!/usr/bin/env python3
"""watch_rows.py - time how a table fills, from PostgreSQL's side.

    watch_rows.py CONNINFO TABLE ROWS START_EPOCH [TIMEOUT_S]

One psql session counts the rows every 50 ms (\\watch) until TABLE holds
ROWS (or TIMEOUT_S, default 300, passes: exit 1). Prints two numbers:

    from_start  seconds from START_EPOCH (the writer's launch) to the sample
                that saw the last row;
    steady      the time the whole ROWS take at the rate measured between
                the first sample that saw a row (the first commit) and the
                last: start-up (JVM, group join, connecting, the first
                batch) is left out. "-" when one sample saw them all.

The same clock and method for every writer (nanguard load, nanguard
worker, Kafka Connect), so they compare; the resolution is ~50 ms.
"""
import subprocess
import sys
import time


def main():
    conninfo, table, rows, start = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    timeout = float(sys.argv[5]) if len(sys.argv) > 5 else 300.0
    query = "SELECT extract(epoch FROM clock_timestamp()), count(*) FROM %s \\watch 0.05\n" % table
    p = subprocess.Popen(["psql", conninfo, "-XAtq", "-F", " ", "-v", "ON_ERROR_STOP=1"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
    p.stdin.write(query)
    p.stdin.flush()
    first = None
    deadline = time.time() + timeout
    ok = False
    for line in p.stdout:
        t, n = line.split()
        t, n = float(t), int(n)
        if n > 0 and first is None:
            first = (t, n)
        if n >= rows:
            ok = True
            break
        if t > deadline:
            break
    p.kill()
    p.wait()
    if not ok:
        print("watch_rows: %s holds %s of %d rows after %.0f s" % (table, n, rows, timeout),
              file=sys.stderr)
        sys.exit(1)
    steady = "-"
    if first[1] < rows and t > first[0]:
        steady = "%.2f" % ((t - first[0]) * rows / (rows - first[1]))
    print("%.2f %s" % (t - start, steady))


if __name__ == "__main__":
    main()
