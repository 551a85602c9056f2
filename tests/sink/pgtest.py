"""pgtest.py - what the sink's integration tests share: the environment of
the ctest fixture, psql, nanguard load, the corpus generator, and a
check() that counts and ends with the "N passed, M failed" line.

Python 3 stdlib only. Every test gets NANGUARD_BIN, NANGUARD_TEST_PG (a
libpq connection string), NANGUARD_TEST_PG_DIR and NANGUARD_PG_SH from
tests/CMakeLists.txt.
"""
import json
import os
import shutil
import subprocess
import sys
import time

BIN = os.environ["NANGUARD_BIN"]
PG = os.environ["NANGUARD_TEST_PG"]
PG_DIR = os.environ.get("NANGUARD_TEST_PG_DIR", "")
PG_SH = os.environ.get("NANGUARD_PG_SH", "")
SOURCE = os.environ.get(
    "NANGUARD_SOURCE_DIR",
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
GEN = os.path.join(SOURCE, "tests", "corpus", "gen_checkpoints.py")

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from checks import check, finish  # noqa: E402,F401  (tests/checks.py)


def workdir(name):
    base = os.environ.get("NANGUARD_TEST_TMP") or "/tmp/nanguard-test"
    d = os.path.join(base, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


def conninfo(**override):
    """The fixture's connection string with some fields replaced."""
    fields = dict(kv.split("=", 1) for kv in PG.split())
    fields.update(override)
    return " ".join("%s=%s" % kv for kv in fields.items())


def psql(sql, conn=None, check_ok=True):
    """Runs SQL (several statements allowed); returns stdout, unaligned,
    tuples only."""
    r = subprocess.run(
        ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", conn or PG,
         "-f", "-"],
        input=sql.encode(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if check_ok and r.returncode != 0:
        raise RuntimeError("psql failed: %s\n%s" % (sql[:200], r.stderr.decode()))
    return r.stdout.decode().strip()


def superuser_conn():
    fields = dict(kv.split("=", 1) for kv in PG.split())
    fields.pop("password", None)
    fields["user"] = "postgres"
    return " ".join("%s=%s" % kv for kv in fields.items())


def gen(path, count, avg_bytes=2000, nan_rate=0.02, seed=1, extra=()):
    subprocess.run([sys.executable, GEN, "--count", str(count), "--avg-bytes",
                    str(avg_bytes), "--nan-rate", str(nan_rate), "--seed",
                    str(seed), "--out", path] + list(extra),
                   check=True, stderr=subprocess.DEVNULL)
    return path


def summary_of(stderr):
    """The JSON summary: the last stderr line that parses and has 'lines'."""
    for line in reversed(stderr.splitlines()):
        try:
            v = json.loads(line)
        except ValueError:
            continue
        if isinstance(v, dict) and "lines" in v and "stored" in v:
            return v
    return {}


class Run:
    def __init__(self, proc, stderr):
        self.status = proc.returncode
        self.stderr = stderr
        self.summary = summary_of(stderr)


def load(args, input_bytes=None, timeout=120, conn=None):
    """Runs nanguard load --pg ... ARGS; returns a Run."""
    cmd = [BIN, "load"]
    if conn != "":
        cmd += ["--pg", conn or PG]
    r = subprocess.run(cmd + list(args), input=input_bytes,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout)
    return Run(r, r.stderr.decode("utf-8", "replace"))


def load_background(args, stderr_path):
    """Starts nanguard load; returns the Popen (stderr goes to a file)."""
    err = open(stderr_path, "wb")
    p = subprocess.Popen([BIN, "load", "--pg", PG] + list(args),
                         stdout=subprocess.DEVNULL, stderr=err)
    err.close()
    return p


def wait_run(p, stderr_path, timeout=120):
    p.wait(timeout=timeout)
    with open(stderr_path, "rb") as f:
        stderr = f.read().decode("utf-8", "replace")
    return Run(p, stderr)


def pg_ctl(action):
    """pg.sh stop|start|restart on the fixture's server."""
    r = subprocess.run(["bash", PG_SH, action, PG_DIR], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    if r.returncode != 0:
        raise RuntimeError("pg.sh %s: %s" % (action, r.stderr.decode()))


def wait_pg_up(limit=30):
    t = time.time()
    while time.time() - t < limit:
        r = subprocess.run(["psql", "-X", "-At", "-d", PG, "-c", "select 1"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if r.returncode == 0:
            return True
        time.sleep(0.2)
    return False


def reset_table(name):
    psql("DROP TABLE IF EXISTS %s CASCADE" % name)


def langgraph_table(name, extra=""):
    """LangGraph's checkpoints table as LangGraph creates it (pglz)."""
    psql("""DROP TABLE IF EXISTS %s CASCADE;
CREATE TABLE %s (
    thread_id TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL DEFAULT '',
    checkpoint_id TEXT NOT NULL,
    parent_checkpoint_id TEXT,
    type TEXT,
    checkpoint JSONB NOT NULL,
    metadata JSONB NOT NULL DEFAULT '{}',
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id)%s
);""" % (name, name, extra))


def count(table, where="true"):
    return int(psql("SELECT count(*) FROM %s WHERE %s" % (table, where)))


def lines_of(path):
    with open(path, "rb") as f:
        return [l for l in f.read().split(b"\n") if l.strip()]


def start_load_stdin(args, stderr_path, conn=None):
    """Starts nanguard load reading standard input from a pipe."""
    err = open(stderr_path, "wb")
    p = subprocess.Popen([BIN, "load", "--pg", conn or PG] + list(args),
                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                         stderr=err)
    err.close()
    return p


def feed(p, rows, chunks, pause, at=None):
    """Writes rows to p's stdin in `chunks` pieces with `pause` seconds
    between them; calls at(i) before piece i (None: nothing). Returns False
    when the reader went away."""
    size = max(1, (len(rows) + chunks - 1) // chunks)
    try:
        for i in range(0, len(rows), size):
            if at is not None:
                at(i // size)
            p.stdin.write(b"\n".join(rows[i:i + size]) + b"\n")
            p.stdin.flush()
            time.sleep(pause)
        p.stdin.close()
    except BrokenPipeError:
        return False
    return True


def wait_for(cond, limit=20, step=0.05):
    t = time.time()
    while time.time() - t < limit:
        if cond():
            return True
        time.sleep(step)
    return False
