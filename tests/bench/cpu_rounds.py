#!/usr/bin/env python3
"""cpu_rounds.py - CPU time of commands, measured side by side.

    cpu_rounds.py [--rounds N] [--repeat K] NAME=INPUT=COMMAND ...

Each round runs every command once, in turn (interleaved, so that a noisy
machine slows them alike), with INPUT on standard input and standard output
to /dev/null; a command's time is its user + system CPU time (wait4), summed
over K runs in a row when --repeat is given. Prints, per command, the median
over the rounds in seconds, and its ratio to the first command's median, as
a markdown table. Exits 1 when a command fails.
"""
import argparse
import os
import shlex
import statistics
import subprocess
import sys


def cpu_seconds(argv, path):
    with open(path, "rb") as stdin, open(os.devnull, "wb") as out:
        proc = subprocess.Popen(argv, stdin=stdin, stdout=out)
        _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"cpu_rounds: {' '.join(argv)} < {path} failed")
    return usage.ru_utime + usage.ru_stime


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("commands", nargs="+")
    args = ap.parse_args()
    cmds = []
    for spec in args.commands:
        name, path, command = spec.split("=", 2)
        cmds.append((name, path, shlex.split(command)))
    times = {name: [] for name, _, _ in cmds}
    for _ in range(args.rounds):
        for name, path, argv in cmds:
            t = sum(cpu_seconds(argv, path) for _ in range(args.repeat))
            times[name].append(t)
    base = statistics.median(times[cmds[0][0]])
    print("| command | median CPU s | times the first command |")
    print("|---|---:|---:|")
    for name, _, _ in cmds:
        m = statistics.median(times[name])
        print(f"| {name} | {m:.4f} | {m / base:.3f} |")


if __name__ == "__main__":
    main()
