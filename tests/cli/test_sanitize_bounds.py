#!/usr/bin/env python3
"""The sanitizer's bounds, through `nanguard sanitize` (and `worker`).

- Time grows linearly with one value's size: one string of invalid UTF-8
  grown from 256 KiB to 2 MiB, and one clean string grown from 8 MiB to
  64 MiB (8-fold), take at most 16 times as long (CPU time, best of 3 at
  each size, measured side by side in this run).
- Memory is bounded by depth, not by the size of a key: a 4 MiB key above
  100 NaN values peaks under 48 MiB resident, with and without --report,
  and the report names the values with the key cut (U+2026 at the cut).
- --max-depth: above 13000 (what PostgreSQL's jsonb accepts) is refused with
  exit 64 and the limit in the message, by sanitize and by worker; 13000
  itself works.

Environment: NANGUARD_BIN, NANGUARD_TEST_TMP. Last line "N passed, M failed".
"""
import json
import os
import subprocess
import sys

BIN = os.environ.get("NANGUARD_BIN", "")
TIME = "/usr/bin/time"  # GNU time (Debian package time, deploy/install-deps.sh)
TMP = os.path.join(os.environ.get("NANGUARD_TEST_TMP") or "/tmp/nanguard-test", "bounds")
passed = failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print("ok    " + name)
    else:
        failed += 1
        print("FAIL  " + name + ("\n      " + detail if detail else ""))


def write(name, data):
    path = os.path.join(TMP, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def run(args, path):
    """Runs nanguard with path on stdin; returns exit status, stderr, CPU
    seconds and peak resident KiB of the child. The peak comes from GNU
    time: Linux keeps a child's peak across exec, so a child of this
    Python process would count Python's own memory."""
    stats = os.path.join(TMP, "time.out")
    with open(path, "rb") as stdin, open(os.devnull, "wb") as out:
        p = subprocess.Popen([TIME, "-o", stats, "-f", "%M", BIN] + args, stdin=stdin,
                             stdout=out, stderr=subprocess.PIPE)
        err = p.stderr.read()
        _, status, ru = os.wait4(p.pid, 0)
    with open(stats) as f:
        lines = f.read().split()
    rss = int(lines[-1]) if lines and lines[-1].isdigit() else 1 << 30
    return (os.waitstatus_to_exitcode(status), err.decode(errors="replace"),
            ru.ru_utime + ru.ru_stime, rss)


def best_cpu(args, path, rounds=3):
    times = []
    for _ in range(rounds):
        rc, err, cpu, _ = run(args, path)
        if rc != 0:
            return None, err
        times.append(cpu)
    return min(times), ""


def growth(name, small, big):
    ps, pb = write(name + "-small.json", small), write(name + "-big.json", big)
    # Interleaved: small, big, small, big...
    ts, tb = [], []
    for _ in range(3):
        for path, acc in ((ps, ts), (pb, tb)):
            t, err = best_cpu(["sanitize"], path, rounds=1)
            if t is None:
                check(name + ": sanitize runs", False, err)
                return
            acc.append(t)
    a, b = max(min(ts), 1e-3), min(tb)
    check("%s: 8x the size takes %.1fx the CPU time (%.3f s -> %.3f s; at most 16x)"
          % (name, b / a, a, b), b / a <= 16)
    os.unlink(ps)
    os.unlink(pb)


def linear_checks():
    kib = 1024
    growth("invalid UTF-8 string", b'["' + b"\xff" * (256 * kib) + b'"]',
           b'["' + b"\xff" * (2048 * kib) + b'"]')
    growth("clean string", b'["' + b"a" * (8192 * kib) + b'"]',
           b'["' + b"a" * (65536 * kib) + b'"]')


def memory_checks():
    key = b"k" * (4 * 1024 * 1024)
    nans = b"[" + b", ".join([b"NaN"] * 100) + b"]"
    doc = b'{"a": {"' + key + b'": ' + nans + b'}, "' + key + b'": {"x": NaN}}\n'
    path = write("long-key.json", doc)
    report = os.path.join(TMP, "long-key.report.json")
    for args in (["sanitize"], ["sanitize", "--report", report]):
        rc, err, _, rss = run(args, path)
        check("4 MiB key above 100 NaN, %s: peak %.1f MiB (under 48)"
              % (" ".join(args[1:2]) or "no report", rss / 1024),
              rc == 0 and rss < 48 * 1024, "exit %d %s" % (rc, err))
    with open(report) as f:
        r = json.load(f)
    want0 = "/a/" + "k" * 256 + "\u2026/0"
    check("the report counts 101 NaN and cuts the key in its paths",
          r["rewrites"]["nan"] == 101 and len(r["paths"]) == 100
          and r["paths"][0] == want0 and r["paths"][99] == "/a/" + "k" * 256 + "\u2026/99",
          repr(r)[:300])
    os.unlink(path)


def depth_checks():
    empty = write("empty.json", b"")
    for cmd in (["sanitize", "--max-depth", "20000"],
                ["worker", "--brokers", "127.0.0.1:1", "--topic", "t", "--max-depth", "20000"]):
        rc, err, _, _ = run(cmd, empty)
        check("%s --max-depth 20000: exit 64 naming 13000" % cmd[0],
              rc == 64 and "13000" in err, "exit %d %s" % (rc, err))
    ok = write("deep-ok.json", b'{"a":' * 13000 + b"NaN" + b"}" * 13000)
    rc, err, _, _ = run(["sanitize", "--max-depth", "13000"], ok)
    check("--max-depth 13000 takes 13000 levels", rc == 0, "exit %d %s" % (rc, err))
    deep = write("deep-bad.json", b"[" * 13001 + b"]" * 13001)
    rc, err, _, _ = run(["sanitize", "--max-depth", "13000"], deep)
    check("--max-depth 13000 refuses 13001 levels (exit 65)",
          rc == 65 and "nesting deeper than 13000" in err, "exit %d %s" % (rc, err))


def main():
    if not BIN or not os.access(BIN, os.X_OK):
        print("NANGUARD_BIN is not set to the nanguard binary (%r)" % BIN)
        print("0 passed, 1 failed")
        return 1
    os.makedirs(TMP, exist_ok=True)
    depth_checks()
    memory_checks()
    linear_checks()
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
