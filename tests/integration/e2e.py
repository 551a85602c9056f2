"""e2e.py - what nanguard's end-to-end tests share: the ctest environment,
topics and tables with unique names, a mixed message set (good envelopes
with NaN/Infinity, duplicates, malformed JSON, bad envelopes, rows a CHECK
constraint refuses), producing and consuming with kcat, workers as
subprocesses with their logs, the committed offsets of a group (Kafka's
ConsumerGroupCommand), and the reconciliation of every source message
against the table, the dead-letter topic and the notification topic.

Python 3 stdlib only. Each test script prints "ok"/"FAIL" lines and ends
with "N passed, M failed" (exit status 1 on any failure).

Environment (from tests/CMakeLists.txt): NANGUARD_BIN, NANGUARD_SOURCE_DIR,
NANGUARD_TEST_TMP, NANGUARD_TEST_PG, NANGUARD_TEST_PG_DIR, NANGUARD_PG_SH,
NANGUARD_TEST_KAFKA, NANGUARD_TEST_KAFKA_DIR, NANGUARD_KAFKA_SH. Opt-in:
NANGUARD_E2E_SCALE multiplies the message counts (1: the short CI version;
5: the full version, 20000 envelopes for the reconciliation test);
NANGUARD_E2E_KEEP (set) keeps the topics, tables and files of a passing
run (a failing run always keeps them, and prints the workers' log tails).
"""
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from checks import check, checks  # noqa: E402  (tests/checks.py)

BIN = os.environ["NANGUARD_BIN"]
SOURCE = os.environ.get(
    "NANGUARD_SOURCE_DIR",
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
TMP = os.environ.get("NANGUARD_TEST_TMP") or "/tmp/nanguard-test"
PG = os.environ["NANGUARD_TEST_PG"]
PG_DIR = os.environ["NANGUARD_TEST_PG_DIR"]
PG_SH = os.environ.get("NANGUARD_PG_SH") or os.path.join(SOURCE, "deploy/local/pg.sh")
BROKERS = os.environ["NANGUARD_TEST_KAFKA"]
KAFKA_DIR = os.environ["NANGUARD_TEST_KAFKA_DIR"]
KAFKA_SH = os.environ.get("NANGUARD_KAFKA_SH") or os.path.join(SOURCE, "deploy/local/kafka.sh")
GEN = os.path.join(SOURCE, "tests", "corpus", "gen_checkpoints.py")
SCALE = float(os.environ.get("NANGUARD_E2E_SCALE") or "1")
RUN = "%d_%d" % (os.getpid(), int(time.time()))  # unique per test run
MAX_MESSAGE_BYTES = 65536  # --max-message-bytes of the workers
# The sentences users read (DESIGN.md "Outcomes"), the worker's defaults.
FLUSH_ERROR_MESSAGE = ("Failed to save execution logs to database. The workflow "
                       "completed but logs may be incomplete. Please contact support "
                       "if you need detailed execution history.")
CRITICAL_MESSAGE = ("Failed to save execution data. Please contact support "
                    "immediately. This workflow's logs may be lost.")

T0 = time.time()


def say(msg):
    print("[%6.1fs] %s" % (time.time() - T0, msg), flush=True)


def scaled(n):
    return max(1, int(n * SCALE))




def wait_until(pred, timeout, interval=0.5, what=None):
    """Calls pred until it returns something true (returned) or timeout."""
    deadline = time.time() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.time() >= deadline:
            if what:
                say("timed out after %.0f s waiting for %s" % (timeout, what))
            return v
        time.sleep(interval)


_workdirs = []


def workdir(name):
    """The test's directory for worker logs and produced files; removed
    when every check passed."""
    d = os.path.join(TMP, "e2e-%s-%s" % (name, RUN))
    os.makedirs(d, exist_ok=True)
    _workdirs.append(d)
    return d


# ---------------------------------------------------------------------------
# Servers


def run(cmd, timeout=120, input=None, check_rc=True):
    r = subprocess.run(cmd, input=input, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout)
    if check_rc and r.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (
            " ".join(cmd[:4]), r.returncode, r.stderr.decode(errors="replace")[-2000:]))
    return r


def kafka_sh(*args, timeout=180):
    return run(["bash", KAFKA_SH] + list(args), timeout=timeout)


def pg_sh(*args, timeout=120):
    return run(["bash", PG_SH] + list(args), timeout=timeout)


def create_topics(*specs):
    """specs: "name:partitions"."""
    kafka_sh("topics", KAFKA_DIR, *specs)


def psql(sql, timeout=60):
    r = run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", PG,
             "-f", "-"], input=sql.encode(), timeout=timeout)
    return r.stdout.decode()


def psql_rows(sql):
    """Rows of a query as lists of strings (fields separated by \\x1f)."""
    r = run(["psql", "-X", "-q", "-At", "-F", "\x1f", "-v", "ON_ERROR_STOP=1",
             "-d", PG, "-c", sql], timeout=120)
    out = r.stdout.decode()
    return [line.split("\x1f") for line in out.split("\n") if line != ""]


def create_table(table):
    """LangGraph's checkpoints table (DESIGN.md), plus a CHECK constraint
    that refuses checkpoint.v = 999 (SQLSTATE 23514) and, for the tests'
    eyes only, the time of the inserting transaction (now())."""
    psql("""
CREATE TABLE %(t)s (
    thread_id TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL DEFAULT '',
    checkpoint_id TEXT NOT NULL,
    parent_checkpoint_id TEXT,
    type TEXT,
    checkpoint JSONB NOT NULL,
    metadata JSONB NOT NULL DEFAULT '{}',
    loaded_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id),
    CONSTRAINT %(t)s_v_not_999 CHECK (checkpoint->>'v' IS DISTINCT FROM '999')
);""" % {"t": table})


def drop_table(table):
    try:
        psql("DROP TABLE IF EXISTS %s" % table)
    except Exception as e:  # noqa: BLE001 - cleanup only
        say("cannot drop %s: %s" % (table, e))


def drop_table_if_passed(table):
    """Drops the test's table unless a check failed (kept to look at)."""
    if checks.failed:
        say("keeping table %s for a look" % table)
    else:
        drop_table(table)


def row_count(table):
    try:
        return int(psql("SELECT count(*) FROM %s" % table).strip())
    except Exception:  # noqa: BLE001 - PostgreSQL may be down on purpose
        return -1


def row_keys(table):
    """{(thread_id, checkpoint_ns, checkpoint_id): loaded_at epoch}"""
    rows = psql_rows("SELECT thread_id, checkpoint_ns, checkpoint_id, "
                     "extract(epoch FROM loaded_at) FROM %s" % table)
    return {(r[0], r[1], r[2]): float(r[3]) for r in rows}


def pg_running():
    return subprocess.run(["bash", PG_SH, "status", PG_DIR], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0


def kafka_running():
    return subprocess.run(["bash", KAFKA_SH, "status", KAFKA_DIR],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


def ensure_pg():
    """A cleanup for tests that stop PostgreSQL: the shared server serves
    the other tests, so it is never left down."""
    if not pg_running():
        say("starting PostgreSQL again")
        pg_sh("start", PG_DIR)


def ensure_kafka():
    """The same for tests that stop the shared broker."""
    if not kafka_running():
        say("starting the broker again")
        kafka_sh("start", KAFKA_DIR)


# ---------------------------------------------------------------------------
# Messages


class Msg:
    """One message to produce. kind: good | dup | malformed | bad_envelope |
    check | too_large | tombstone (a null value: skipped). key: the Kafka key (the thread id; made up when the value has
    none). rowkey: the row it must become (good and dup), else None. code:
    the dead-letter error code it must get (bad kinds), else None."""
    __slots__ = ("kind", "key", "value", "rowkey", "code", "doc")

    def __init__(self, kind, key, value, rowkey=None, code=None, doc=None):
        self.kind, self.key, self.value = kind, key, value
        self.rowkey, self.code, self.doc = rowkey, code, doc

    @property
    def bad(self):
        return self.code is not None


def _dumps(doc):
    return json.dumps(doc).encode()  # allow_nan: NaN, Infinity stay bare


def make_messages(n, seed, rates=None, thread_prefix=None, avg_bytes=1500,
                  nan_rate=0.02):
    """About n messages, shuffled (a duplicate always after its original).
    rates: fractions of n for dup, malformed, bad_envelope, check,
    too_large (an envelope above MAX_MESSAGE_BYTES), tombstone (each at
    least 2 when its rate is > 0)."""
    rates = dict({"dup": 0.02, "malformed": 0.01, "bad_envelope": 0.01,
                  "check": 0.01, "too_large": 0.002, "tombstone": 0.005},
                 **(rates or {}))
    extra = {k: (max(2, int(round(n * r))) if r > 0 else 0) for k, r in rates.items()}
    # envelopes to generate
    n_env = n - extra["dup"] - extra["malformed"] - extra["tombstone"]
    r = subprocess.run([sys.executable, GEN, "--count", str(n_env), "--avg-bytes",
                        str(avg_bytes), "--nan-rate", str(nan_rate), "--seed",
                        str(seed)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       check=True)
    docs = [json.loads(line) for line in r.stdout.splitlines()]
    rnd = random.Random(seed)
    tag = "%s-%d" % (RUN, seed)
    if thread_prefix:
        for d in docs:
            d["thread_id"] = thread_prefix + d["thread_id"]
    # Make every checkpoint id unique to this run (so reruns never collide).
    for d in docs:
        d["checkpoint_id"] = d["checkpoint_id"] + "-" + tag
    idx = list(range(len(docs)))
    rnd.shuffle(idx)
    n_check = extra["check"]
    n_badenv = extra["bad_envelope"]
    check_set = set(idx[:n_check])
    badenv_set = set(idx[n_check:n_check + n_badenv])
    large_set = set(idx[n_check + n_badenv:n_check + n_badenv + extra["too_large"]])
    msgs = []
    for i, d in enumerate(docs):
        tid = d["thread_id"]
        if i in large_set:
            d["metadata"]["padding"] = "NaN " * (MAX_MESSAGE_BYTES // 4 + 100)
            msgs.append(Msg("too_large", tid.encode(), _dumps(d), code="too_large"))
        elif i in check_set:
            d["checkpoint"]["v"] = 999
            msgs.append(Msg("check", tid.encode(), _dumps(d), code="pg_23514", doc=d))
        elif i in badenv_set:
            variant = i % 4
            if variant == 0:
                del d["thread_id"]
            elif variant == 1:
                d["checkpoint"] = [1, 2, float("nan")]
            elif variant == 2:
                d["checkpoint"] = float("nan")  # becomes null: not an object
            else:
                d["checkpoint_id"] = 12345
            msgs.append(Msg("bad_envelope", tid.encode(), _dumps(d), code="bad_envelope"))
        else:
            rowkey = (tid, d.get("checkpoint_ns", ""), d["checkpoint_id"])
            msgs.append(Msg("good", tid.encode(), _dumps(d), rowkey=rowkey, doc=d))
    goods = [m for m in msgs if m.kind == "good"]
    malformed_texts = [
        lambda v, j: v[: len(v) // 2],                          # truncated
        lambda v, j: v[:-1] + b', "bad": nan}',                 # lower-case nan
        lambda v, j: b'{"thread_id": "x%d", "checkpoint": {"a": NaNa}}' % j,
        lambda v, j: b"[%d,]" % j,
        lambda v, j: b"{'thread_id': 'single quotes %d'}" % j,
        lambda v, j: v + b" }",                                 # trailing garbage
        lambda v, j: b'{"thread_id": "t%d", "checkpoint": {"n": 01}}' % j,
        lambda v, j: b'{"thread_id": "unterminated %d' % j,
        # deeper than --max-depth (1000)
        lambda v, j: b'{"thread_id": "deep%d", "checkpoint": {"a": %s%s}}' % (
            j, b"[" * 1200, b"]" * 1200),
    ]
    bases = rnd.sample(goods, min(len(goods), extra["malformed"]))
    for j in range(extra["malformed"]):
        base = bases[j % len(bases)].value
        key = ("e2e-malformed-%s-%d" % (tag, j)).encode()
        val = malformed_texts[j % len(malformed_texts)](base, j)
        msgs.append(Msg("malformed", key, val, code="malformed_json"))
    for j in range(extra["tombstone"]):
        msgs.append(Msg("tombstone", rnd.choice(goods).key, b""))
    rnd.shuffle(msgs)
    # Duplicates: an exact copy of a good message, somewhere after it.
    for j in range(extra["dup"]):
        pos = rnd.randrange(len(msgs))
        while msgs[pos].kind != "good":
            pos = rnd.randrange(len(msgs))
        m = msgs[pos]
        at = rnd.randrange(pos + 1, len(msgs) + 1)
        msgs.insert(at, Msg("dup", m.key, m.value, rowkey=m.rowkey, doc=m.doc))
    for m in msgs:
        assert b"\n" not in m.value and b"\t" not in m.key and b"\n" not in m.key
    return msgs


def summary(msgs):
    c = {}
    for m in msgs:
        c[m.kind] = c.get(m.kind, 0) + 1
    return ", ".join("%s %d" % kv for kv in sorted(c.items()))


# ---------------------------------------------------------------------------
# Kafka: kcat


KCAT_HEADER = "e2e.run=" + RUN  # every produced message carries it


def produce(topic, msgs, path):
    """Produces msgs (key<TAB>value lines) with kcat; idempotent producer so
    that a broker restart does not duplicate a message; an empty value is
    produced as a null value (a tombstone)."""
    with open(path, "wb") as f:
        for m in msgs:
            f.write(m.key + b"\t" + m.value + b"\n")
    run(["kcat", "-P", "-b", BROKERS, "-t", topic, "-K", "\t", "-Z", "-H", KCAT_HEADER,
         "-X", "enable.idempotence=true", "-l", path], timeout=600)


class PacedProducer(threading.Thread):
    """Produces msgs in chunks, one chunk every interval seconds, in the
    background (so that events can happen in the middle of a run).
    pause() waits for the chunk being produced and holds the next ones until
    resume() (kcat gives up when the broker is away). hold_after=N pauses by
    itself after N chunks, so that an event the test stages mid-run (a kill)
    comes before the last chunks however slow the workers are."""

    def __init__(self, topic, msgs, chunks, interval, dirpath, hold_after=None):
        super().__init__(daemon=True)
        self.topic, self.msgs, self.interval, self.dir = topic, msgs, interval, dirpath
        size = max(1, (len(msgs) + chunks - 1) // chunks)
        self.chunks = [msgs[i:i + size] for i in range(0, len(msgs), size)]
        self.produced = 0
        self.error = None
        self.lock = threading.Lock()
        self.go = threading.Event()
        self.go.set()
        self.hold_after = hold_after

    def run(self):
        try:
            for i, chunk in enumerate(self.chunks):
                t = time.time()
                self.go.wait()
                with self.lock:
                    produce(self.topic, chunk, os.path.join(self.dir, "chunk-%03d.txt" % i))
                    self.produced += len(chunk)
                if self.hold_after is not None and i + 1 == self.hold_after:
                    self.go.clear()
                time.sleep(max(0.0, self.interval - (time.time() - t)))
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = e

    def pause(self):
        self.go.clear()
        with self.lock:
            pass

    def resume(self):
        self.hold_after = None  # a resume before the hold cancels it
        self.go.set()


class Record:
    __slots__ = ("key", "partition", "offset", "headers", "value")

    def __init__(self, key, partition, offset, headers, value):
        self.key, self.partition, self.offset = key, partition, offset
        self.headers, self.value = headers, value


_HEADER_NAME = re.compile(rb"^[A-Za-z0-9_.\-]+=")


def _parse_headers(h):
    """kcat's %h: name=value,name=value (values are not escaped: a comma
    inside a value is taken as part of it unless a name= follows)."""
    out = {}
    if not h:
        return out
    parts = h.split(b",")
    merged = []
    for p in parts:
        if merged and not _HEADER_NAME.match(p):
            merged[-1] += b"," + p
        else:
            merged.append(p)
    for p in merged:
        k, _, v = p.partition(b"=")
        out.setdefault(k.decode(), []).append(v)
    return out


def consume(topic, timeout=120):
    """Every record of topic, from the beginning to the end, with headers."""
    r = run(["kcat", "-C", "-b", BROKERS, "-t", topic, "-o", "beginning", "-e",
             "-q", "-f", "%k\t%p\t%o\t%h\t%s\n"], timeout=timeout)
    out = []
    for line in r.stdout.split(b"\n"):
        if not line:
            continue
        k, p, o, h, v = line.split(b"\t", 4)
        out.append(Record(k, int(p), int(o), _parse_headers(h), v))
    return out


def count_records(topic):
    r = subprocess.run(["kcat", "-C", "-b", BROKERS, "-t", topic, "-o", "beginning",
                        "-e", "-q", "-f", "x\n"], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, timeout=120)
    return r.stdout.count(b"\n") if r.returncode == 0 else -1


def notifications(topic):
    """(record, parsed JSON value) of every notification."""
    out = []
    for rec in consume(topic):
        try:
            out.append((rec, json.loads(rec.value)))
        except ValueError:
            out.append((rec, None))
    return out


def kafka_version(kdir=None):
    """The Kafka release kafka.sh runs in kdir (default KAFKA_DIR): the one
    it recorded there, else KAFKA_VERSION, else kafka.sh's default."""
    try:
        with open(os.path.join(kdir or KAFKA_DIR, "kafka.version")) as f:
            return f.read().strip()
    except OSError:
        pass
    return os.environ.get("KAFKA_VERSION") or kafka_default_version()


def kafka_default_version():
    """The release kafka.sh runs in a new directory by default."""
    with open(KAFKA_SH) as f:
        return re.search(r"^default_version=(\S+)$", f.read(), re.M).group(1)


def _kafka_lib():
    version = kafka_version()
    cache = os.environ.get("NANGUARD_CACHE") or os.path.expanduser("~/.cache/nanguard")
    return os.path.join(cache, "kafka-%s" % version, "lib")


def kafka_tool(main_class, *args, logdir=None):
    """Runs one of Kafka's command line tools from the jars kafka.sh uses
    (its log4j file goes to logdir)."""
    cmd = ["java", "-Djava.awt.headless=true", "-XX:TieredStopAtLevel=1",
           "-cp", os.path.join(_kafka_lib(), "*"),
           "-Dlog4j2.configurationFile=" + os.path.join(SOURCE, "deploy/local/kafka/log4j2.xml"),
           "-Dlog4j.configuration=file:" +  # a 3.x KAFKA_VERSION's reload4j
           os.path.join(SOURCE, "deploy/local/kafka/log4j.properties"),
           "-Dkafka.logs.dir=" + (logdir or TMP), main_class,
           "--bootstrap-server", BROKERS] + list(args)
    return run(cmd, timeout=120)


def group_offsets(group, topic, logdir):
    """{partition: (committed offset or None, log end offset)} from Kafka's
    ConsumerGroupCommand --describe."""
    r = kafka_tool("org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
                   "--describe", "--group", group, logdir=logdir)
    out = {}
    for line in r.stdout.decode().splitlines():
        f = line.split()
        if len(f) >= 5 and f[0] == group and f[1] == topic and f[2].isdigit():
            cur = None if f[3] == "-" else int(f[3])
            end = None if f[4] == "-" else int(f[4])
            out[int(f[2])] = (cur, end)
    return out


# ---------------------------------------------------------------------------
# Workers


def _parse_ts(s):
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=timezone.utc).timestamp()


class Worker:
    """A `nanguard worker` subprocess with its JSON log in a file."""
    all = []

    def __init__(self, name, dirpath, topic, group, table, extra=()):
        self.name = name
        self.log_path = os.path.join(dirpath, "worker-%s.log" % name)
        self.args = [BIN, "worker", "--brokers", BROKERS, "--topic", topic,
                     "--group", group, "--pg", PG, "--table", table,
                     "--stats-interval-ms", "1000"] + list(extra)
        self.proc = None
        self.rc = None
        Worker.all.append(self)

    def start(self):
        self.logf = open(self.log_path, "ab")
        self.logf.write(("# start %s\n" % " ".join(self.args)).encode())
        self.logf.flush()
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL,
                                     stdout=self.logf, stderr=self.logf)
        self.rc = None
        say("worker %s started (pid %d)" % (self.name, self.proc.pid))
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def send_term(self):
        self.proc.send_signal(signal.SIGTERM)

    def term(self, timeout=60):
        """SIGTERM; returns (exit status or None on timeout, seconds)."""
        t = time.time()
        self.send_term()
        try:
            self.rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.rc = None
        took = time.time() - t
        say("worker %s SIGTERM -> exit %s after %.1f s" % (self.name, self.rc, took))
        return self.rc, took

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.rc = self.proc.wait(30)
        say("worker %s SIGKILL (pid %d)" % (self.name, self.proc.pid))

    def cleanup(self):
        if self.alive():
            self.proc.kill()
            self.proc.wait(30)
        if self.proc is not None:
            self.logf.close()

    def lines(self):
        """Parsed JSON log lines (other lines, e.g. librdkafka's, skipped)."""
        out = []
        try:
            with open(self.log_path, "rb") as f:
                for raw in f:
                    if raw.startswith(b"{"):
                        try:
                            d = json.loads(raw)
                        except ValueError:
                            continue
                        d["_t"] = _parse_ts(d["ts"]) if "ts" in d else 0
                        out.append(d)
        except FileNotFoundError:
            pass
        return out

    def last(self, msg):
        found = [d for d in self.lines() if d.get("msg") == msg]
        return found[-1] if found else None

    def count(self, msg, since=None, until=None):
        return sum(1 for d in self.lines() if d.get("msg") == msg and
                   (since is None or d["_t"] >= since) and
                   (until is None or d["_t"] <= until))

    def partition_events(self, msg):
        """The non-empty partition lists of "partitions assigned" (or
        revoked, lost) lines."""
        return [d["partitions"] for d in self.lines()
                if d.get("msg") == msg and d.get("partitions")]

    def tail(self, n=40):
        try:
            with open(self.log_path, "rb") as f:
                return b"".join(f.readlines()[-n:]).decode(errors="replace")
        except FileNotFoundError:
            return "(no log)"


def cleanup_workers():
    for w in Worker.all:
        try:
            w.cleanup()
        except Exception as e:  # noqa: BLE001 - cleanup only
            say("cleanup of worker %s: %s" % (w.name, e))


def print_tails():
    for w in Worker.all:
        print("---- tail of %s (%s)" % (w.log_path, w.name))
        print(w.tail())


def worker_args_fast():
    """Settings that keep the tests short (and a small message limit, so
    that too_large costs little)."""
    return ["--batch-ms", "100", "--retry-max-ms", "2000",
            "--max-message-bytes", str(MAX_MESSAGE_BYTES)]


# ---------------------------------------------------------------------------
# TLS: a certificate authority of the test's own (openssl)


def make_ca(dirpath, name="ca"):
    """A new self-signed CA in dirpath: (cert path, key path)."""
    crt, key = os.path.join(dirpath, name + ".crt"), os.path.join(dirpath, name + ".key")
    run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
         "-out", crt, "-days", "2", "-subj", "/CN=nanguard test %s %s" % (name, RUN)])
    return crt, key


def make_cert(dirpath, name, ca, sans="DNS:localhost,IP:127.0.0.1"):
    """A server certificate for sans signed by ca (make_ca): (cert, key),
    the key unencrypted PKCS#8 PEM."""
    crt, key = os.path.join(dirpath, name + ".crt"), os.path.join(dirpath, name + ".key")
    csr, ext = os.path.join(dirpath, name + ".csr"), os.path.join(dirpath, name + ".ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=%s\nextendedKeyUsage=serverAuth\n" % sans)
    run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
         "-subj", "/CN=localhost"])
    run(["openssl", "x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1],
         "-CAcreateserial", "-out", crt, "-days", "2", "-extfile", ext])
    return crt, key


def secret_in(password, *texts):
    """The texts (bytes or str) that contain password."""
    pw = password.encode()
    return [t[:200] for t in texts if pw in (t if isinstance(t, bytes) else t.encode())]


# ---------------------------------------------------------------------------
# A worker's --http-listen


def http_get(port, path, method="GET"):
    """(status, body) of one request to a worker's status server."""
    import urllib.error
    import urllib.request
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def scrape(port):
    """(status, {series: value}) from /metrics, series such as
    'nanguard_rewrites_total{kind="nan"}'."""
    status, body = http_get(port, "/metrics")
    out = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return status, out


def http_port(w):
    """The port a worker started with --http-listen HOST:0 serves on (from
    its log), or None before it says."""
    line = w.last("serving /metrics, /healthz and /readyz")
    return line.get("port") if line else None


# ---------------------------------------------------------------------------
# Reconciliation


class Names:
    """Unique topic, group and table names of one test run."""
    all = []

    def __init__(self, test):
        base = "e2e_%s_%s" % (test.lower(), RUN)  # PostgreSQL folds case
        self.base = base
        self.topic = base
        self.dlq = base + ".dlq"
        self.notify = base + ".notifications"
        self.group = base + "_g"
        self.table = base

    def create(self, partitions=4):
        create_topics("%s:%d" % (self.topic, partitions), "%s:2" % self.dlq,
                      "%s:2" % self.notify)
        create_table(self.table)
        Names.all.append(self)

    def remove(self):
        """Deletes the run's topics (the table is dropped by the test)."""
        try:
            kafka_tool("org.apache.kafka.tools.TopicCommand", "--delete", "--topic",
                       re.escape(self.base) + r"(\..*)?")
        except Exception as e:  # noqa: BLE001 - cleanup only
            say("cannot delete the topics of %s: %s" % (self.base, e))


def expected_counts(msgs):
    good_keys = {m.rowkey for m in msgs if m.rowkey is not None}
    n_bad = sum(1 for m in msgs if m.bad)
    return len(good_keys), n_bad


def wait_done(names, msgs, timeout, workers=(), producer=None):
    """Waits until the table holds every expected row and the dead-letter
    and notification topics hold at least one record per bad message."""
    n_rows, n_bad = expected_counts(msgs)
    state = {}

    def done():
        if producer is not None and producer.error is not None:
            state["dead"] = ["the producer"]
            return True
        dead = [w.name for w in workers if not w.alive()]
        if dead:
            state["dead"] = dead
            return True
        state["rows"] = row_count(names.table)
        if state["rows"] < n_rows:
            return False
        state["dlq"] = count_records(names.dlq)
        state["notify"] = count_records(names.notify)
        return state["dlq"] >= n_bad and state["notify"] >= n_bad

    t = time.time()
    ok = wait_until(done, timeout, interval=1.0) and "dead" not in state
    say("processing %s after %.1f s: rows %s/%d, dead letters %s/%d, notifications %s"
        % ("done" if ok else "NOT done", time.time() - t, state.get("rows"), n_rows,
           state.get("dlq"), n_bad, state.get("notify")))
    if "dead" in state:
        check(False, "workers and producer still running", "exited: %s" % state["dead"])
    return ok


def settle_in_flight(workers, timeout=20):
    """Waits until every running worker logged in_flight 0 (so its last
    acknowledgements are in and its offsets stored)."""
    def idle():
        for w in workers:
            if not w.alive():
                continue
            p = w.last("progress")
            if p is None or p.get("in_flight") != 0:
                return False
        return True
    return wait_until(idle, timeout, interval=0.5, what="in_flight 0")


def reconcile(names, msgs, dlq_dups_allowed=False, sample_rows=20):
    """Checks that every message in the source topic ended in exactly one
    place. Returns the parsed data for further checks."""
    by_value = {}
    for m in msgs:
        by_value.setdefault(m.value, m)
    src = consume(names.topic)
    check(len(src) == len(msgs), "source topic holds the %d messages produced" % len(msgs),
          "found %d" % len(src))
    pos = {}  # (partition, offset) -> Msg
    unknown = 0
    for rec in src:
        m = by_value.get(rec.value)
        if m is None:
            unknown += 1
            continue
        pos[(rec.partition, rec.offset)] = (rec, m)
    check(unknown == 0, "every source record is one of ours", "%d unknown" % unknown)

    # Rows.
    rows = row_keys(names.table)
    want_rows = {m.rowkey for m in msgs if m.rowkey is not None}
    missing = want_rows - set(rows)
    extra = set(rows) - want_rows
    check(not missing, "every good message is a row (%d rows expected)" % len(want_rows),
          "missing %d, e.g. %s" % (len(missing), sorted(missing)[:3]))
    check(not extra, "no row that should not be there (bad rows refused)",
          "extra %d, e.g. %s" % (len(extra), sorted(extra)[:3]))
    dup_src = sum(1 for m in msgs if m.kind == "dup")
    check(len(rows) == len(want_rows),
          "duplicates give one row: %d rows for %d good messages (%d duplicates)"
          % (len(rows), len(want_rows) + dup_src, dup_src))
    dup_rows = psql("SELECT count(*) FROM (SELECT 1 FROM %s GROUP BY thread_id, "
                    "checkpoint_ns, checkpoint_id HAVING count(*) > 1) d" % names.table)
    check(dup_rows.strip() == "0", "no row twice")

    # A few rows, value by value: the envelope with NaN/Infinity as null.
    sample = [m for m in msgs if m.kind == "good"][:sample_rows]
    if sample:
        cond = " OR ".join("(thread_id = '%s' AND checkpoint_id = '%s')" % (
            m.rowkey[0], m.rowkey[2]) for m in sample)
        got = psql_rows("SELECT thread_id, checkpoint_id, checkpoint::text, metadata::text, "
                        "coalesce(parent_checkpoint_id, '<null>'), type FROM %s WHERE %s"
                        % (names.table, cond))
        got = {(g[0], g[1]): g[2:] for g in got}
        bad = []
        for m in sample:
            g = got.get((m.rowkey[0], m.rowkey[2]))
            if g is None:
                bad.append((m.rowkey, "missing"))
                continue
            if (not same_json(json.loads(g[0]), _finite(m.doc["checkpoint"])) or
                    not same_json(json.loads(g[1]), _finite(m.doc.get("metadata", {}))) or
                    g[2] != (m.doc.get("parent_checkpoint_id") or "<null>") or
                    g[3] != m.doc.get("type", "checkpoint")):
                bad.append((m.rowkey, "content differs"))
        check(not bad, "%d sampled rows hold the envelope with non-finite numbers as null"
              % len(sample), bad[:3])

    # Dead letters.
    dlq = consume(names.dlq)
    dlq_by_src = {}
    dlq_bad = []
    for rec in dlq:
        h = rec.headers
        try:
            t = h["__connect.errors.topic"][0].decode()
            sp = (int(h["__connect.errors.partition"][0]), int(h["__connect.errors.offset"][0]))
        except (KeyError, ValueError, IndexError):
            dlq_bad.append(("no position headers", rec.partition, rec.offset))
            continue
        if t != names.topic or sp not in pos:
            dlq_bad.append(("unknown source", t, sp))
            continue
        dlq_by_src.setdefault(sp, []).append(rec)
    check(not dlq_bad, "every dead-letter record names a source message", dlq_bad[:3])
    wrong_kind, wrong_bytes, wrong_code, wrong_hdr, missing_dlq, twice = [], [], [], [], [], []
    for sp, (srec, m) in sorted(pos.items()):
        recs = dlq_by_src.get(sp, [])
        if not m.bad:
            if recs:
                wrong_kind.append((sp, m.kind, recs[0].headers.get("nanguard.error.code")))
            continue
        if not recs:
            missing_dlq.append((sp, m.kind))
            continue
        if len(recs) > 1:
            twice.append((sp, len(recs)))
        for rec in recs:
            if rec.value != srec.value or rec.key != srec.key:
                wrong_bytes.append(sp)
            code = rec.headers.get("nanguard.error.code", [b""])[0].decode()
            if code != m.code:
                wrong_code.append((sp, m.kind, code, m.code))
            h = rec.headers
            if (h.get("e2e.run", [b""])[0] != RUN.encode() or
                    not h.get("__connect.errors.exception.class.name", [b""])[0].startswith(b"nanguard.") or
                    not h.get("__connect.errors.exception.message", [b""])[0] or
                    "nanguard.failed_at" not in h or "nanguard.worker" not in h or
                    "nanguard.attempts" not in h or
                    (m.kind == "check" and h.get("nanguard.error.sqlstate", [b""])[0] != b"23514")):
                wrong_hdr.append((sp, {k: v[0][:60] for k, v in h.items()}))
    n_bad = sum(1 for _, m in pos.values() if m.bad)
    check(not wrong_kind, "no good message was dead-lettered", wrong_kind[:3])
    check(not missing_dlq, "every bad message (%d) has a dead-letter record" % n_bad,
          missing_dlq[:5])
    if dlq_dups_allowed:
        say("dead-letter records: %d for %d bad messages (%d source offsets twice or more, "
            "allowed after a crash)" % (len(dlq), n_bad, len(twice)))
    else:
        check(not twice, "exactly one dead-letter record per bad message", twice[:5])
    check(not wrong_bytes, "dead-letter records keep the original key and value bytes",
          wrong_bytes[:5])
    check(not wrong_code, "dead-letter error codes (malformed_json, bad_envelope, pg_23514, "
          "too_large)",
          wrong_code[:5])
    check(not wrong_hdr, "dead-letter records keep the original headers and carry "
          "the Connect and nanguard headers", wrong_hdr[:2])
    kinds = {}
    for sp, recs in dlq_by_src.items():
        kinds[pos[sp][1].kind] = kinds.get(pos[sp][1].kind, 0) + 1
    say("dead-lettered source messages by kind: %s" % kinds)

    # Notifications.
    notes = notifications(names.notify)
    errs = [(r, n) for r, n in notes if n and n.get("type") == "checkpoint_flush_error"]
    crit = [(r, n) for r, n in notes if n and n.get("type") == "checkpoint_flush_critical_error"]
    # checkpoint_incomplete: a stored checkpoint missing a channel (the
    # generated corpus has some); told, best effort, not reconciled here.
    other = [(r, n) for r, n in notes if not n or n.get("type") not in
             ("checkpoint_flush_error", "checkpoint_flush_critical_error",
              "checkpoint_incomplete")]
    check(not other, "every notification is a known event", [r.value[:200] for r, _ in other[:3]])
    by_dlq = {}
    for r, n in errs:
        d = n.get("dlq") or {}
        by_dlq.setdefault((d.get("partition"), d.get("offset")), []).append((r, n))
    dlq_pos = {(rec.partition, rec.offset): rec for rec in dlq}
    orphan = [k for k in by_dlq if k not in dlq_pos]
    check(not orphan, "every checkpoint_flush_error names a dead-letter record", orphan[:3])
    no_note, many_notes, wrong_note = [], [], []
    for sp, recs in dlq_by_src.items():
        m = pos[sp][1]
        noted = 0
        for rec in recs:
            ns = by_dlq.get((rec.partition, rec.offset), [])
            if len(ns) > 1:
                many_notes.append(((rec.partition, rec.offset), len(ns)))
            noted += len(ns)
            for r, n in ns:
                if (n.get("thread_id") != m.key.decode() or r.key != m.key or
                        n.get("error_code") != m.code or n.get("severity") != "warning" or
                        (n.get("dlq") or {}).get("topic") != names.dlq or
                        n.get("source") != {"topic": names.topic, "partition": sp[0],
                                            "offset": sp[1]} or
                        n.get("message") != FLUSH_ERROR_MESSAGE or
                        not n.get("error_details") or len(n["error_details"]) > 500 or
                        not n.get("timestamp")):
                    wrong_note.append((sp, n))
            if not dlq_dups_allowed and len(ns) != 1:
                no_note.append((rec.partition, rec.offset, len(ns)))
        if dlq_dups_allowed and noted == 0:
            no_note.append((sp, 0))
    check(not no_note, "every dead-letter record has its checkpoint_flush_error"
          if not dlq_dups_allowed else
          "every bad message has at least one dead-letter record with its notification",
          no_note[:5])
    check(not many_notes, "no dead-letter record is notified twice", many_notes[:5])
    check(not wrong_note, "notifications carry the thread id, error code, dlq and source "
          "positions, the user's sentence as message and the reason in error_details",
          wrong_note[:2])
    return {"src": src, "pos": pos, "rows": rows, "dlq": dlq, "dlq_by_src": dlq_by_src,
            "crit": crit, "errs": errs}


def same_json(a, b):
    """Equal JSON values, numbers compared by value (jsonb prints 1e+300 as
    a 301-digit integer)."""
    num = (int, float)
    if isinstance(a, num) and isinstance(b, num) and not isinstance(a, bool) \
            and not isinstance(b, bool):
        return a == b if type(a) is type(b) else float(a) == float(b)
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b))
    return a == b


def _finite(v):
    if isinstance(v, float) and (v != v or v in (float("inf"), float("-inf"))):
        return None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_finite(x) for x in v]
    return v


def check_committed(names, logdir):
    """The group's committed offsets reach the end of every partition."""
    offs = group_offsets(names.group, names.topic, logdir)
    behind = {p: o for p, o in offs.items() if o[0] is None or o[0] != o[1]}
    check(offs and not behind, "committed offsets reach the end of all %d partitions"
          % len(offs), "offsets %s" % offs)
    return offs


def check_no_crit(data):
    check(not data["crit"], "no checkpoint_flush_critical_error",
          [n for _, n in data["crit"][:2]])


def stop_all(workers, limit=30):
    for w in workers:
        if w.alive():
            rc, took = w.term(timeout=limit + 30)
            check(rc == 0, "worker %s exits 0 on SIGTERM (%.1f s)" % (w.name, took),
                  w.tail(20))


def worker_totals(workers, msg="stopped", per_start=False):
    """Sums the counters of the given log line over workers (the last one
    per worker log; with per_start, the last one of every start)."""
    tot = {}
    for w in workers:
        found = []
        cur = None
        with open(w.log_path, "rb") as f:
            for raw in f:
                if raw.startswith(b"# start"):
                    if cur is not None:
                        found.append(cur)
                    cur = None
                elif raw.startswith(b"{"):
                    try:
                        d = json.loads(raw)
                    except ValueError:
                        continue
                    if d.get("msg") == msg:
                        cur = d
        if cur is not None:
            found.append(cur)
        if not per_start:
            found = found[-1:]
        for d in found:
            for k in ("consumed", "stored", "duplicates", "dead_lettered", "tombstones",
                      "handed_over"):
                tot[k] = tot.get(k, 0) + int(d.get(k, 0))
    return tot


def main(body, cleanup=None):
    """Runs body(), always kills leftover workers (and runs cleanup), prints
    log tails on failure, and ends with the summary line."""
    os.makedirs(TMP, exist_ok=True)
    try:
        body()
    except Exception as e:  # noqa: BLE001 - a failure like any other
        import traceback
        traceback.print_exc()
        check(False, "test ran to the end", "%s: %s" % (type(e).__name__, e))
    finally:
        cleanup_workers()
        if cleanup is not None:
            try:
                cleanup()
            except Exception as e:  # noqa: BLE001 - reported as a failure
                check(False, "cleanup", "%s: %s" % (type(e).__name__, e))
        if checks.failed:
            print_tails()
        elif os.environ.get("NANGUARD_E2E_KEEP") is None:
            # Passed: drop the run's topics and files (kept on failure).
            for n in Names.all:
                n.remove()
            for d in _workdirs:
                shutil.rmtree(d, ignore_errors=True)
    checks.finish()


# ---------------------------------------------------------------------------
# The notification gateway (nanguard notify) and Server-Sent Events clients


def token(secret, thread_id):
    """The stream token the application's backend mints for a thread."""
    import hashlib
    import hmac
    return hmac.new(secret.encode(), thread_id.encode(), hashlib.sha256).hexdigest()


class Gateway(Worker):
    """A `nanguard notify` subprocess; port is read from its log."""

    def __init__(self, name, dirpath, topic, extra=()):
        super().__init__(name, dirpath, topic, "-", "-")
        self.log_path = os.path.join(dirpath, "gateway-%s.log" % name)
        self.args = [BIN, "notify", "--brokers", BROKERS, "--topic", topic,
                     "--http-listen", "127.0.0.1:0"] + list(extra)
        self.port = None

    def start(self):
        super().start()
        line = wait_until(lambda: self.last("serving /events, /, /metrics and /healthz"),
                          30, interval=0.1, what="gateway %s to listen" % self.name)
        self.port = line["port"] if line else None
        return self

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def get(self, path, headers=None, timeout=10):
        """(status, headers dict, body bytes) of one plain request."""
        import urllib.error
        import urllib.request
        req = urllib.request.Request(self.url(path), headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def metrics(self):
        _, _, body = self.get("/metrics")
        out = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                k, v = line.rsplit(" ", 1)
                out[k] = float(v)
        return out

    def rss_kib(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return -1

    def cpu_seconds(self):
        with open("/proc/%d/stat" % self.proc.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class SseEvent:
    __slots__ = ("id", "event", "data", "t")

    def __init__(self, id_, event, data, t):
        self.id, self.event, self.data, self.t = id_, event, data, t

    def json(self):
        return json.loads(self.data)


class SseStream:
    """One GET /events on a raw socket. read=True parses the stream on a
    thread of its own (events, comments, retry); read=False only reads the
    response head and then never reads again (a stalled client), with a
    small receive buffer."""

    def __init__(self, port, path, headers=None, read=True, rcvbuf=None):
        import socket
        self.events, self.comments, self.retry = [], 0, None
        self.status, self.head, self.closed, self.error = None, b"", False, None
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        req = "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n" % path
        for k, v in (headers or {}).items():
            req += "%s: %s\r\n" % (k, v)
        self.sock.sendall((req + "\r\n").encode())
        self._buf = b""
        while b"\r\n\r\n" not in self._buf:
            chunk = self.sock.recv(4096 if read else 1)
            if not chunk:
                break
            self._buf += chunk
        self.head, _, self._buf = self._buf.partition(b"\r\n\r\n")
        first = self.head.split(b"\r\n", 1)[0].split()
        self.status = int(first[1]) if len(first) > 1 else None
        self.headers = {}
        for line in self.head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            self.headers[k.decode().strip().lower()] = v.decode().strip()
        self.chunked = self.headers.get("transfer-encoding") == "chunked"
        self.lock = threading.Lock()
        if read and self.status == 200:
            self.thread = threading.Thread(target=self._run, daemon=True)
            self.thread.start()

    def _body(self):
        """Yields the body's bytes (de-chunked)."""
        buf = self._buf
        self._buf = b""
        self.sock.settimeout(None)
        while True:
            if not self.chunked:
                if buf:
                    yield buf
                buf = self.sock.recv(65536)
                if not buf:
                    return
                continue
            while b"\r\n" not in buf:
                more = self.sock.recv(65536)
                if not more:
                    return
                buf += more
            size_line, _, buf = buf.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                return
            while len(buf) < size + 2:
                more = self.sock.recv(65536)
                if not more:
                    return
                buf += more
            yield buf[:size]
            buf = buf[size + 2:]

    def _run(self):
        text = b""
        try:
            for data in self._body():
                text += data
                while b"\n\n" in text:
                    frame, _, text = text.partition(b"\n\n")
                    self._frame(frame.decode())
        except OSError as e:
            self.error = e
        self.closed = True

    def _frame(self, frame):
        id_, event, data = None, "message", []
        only_comments = True
        for line in frame.split("\n"):
            if line.startswith(":"):
                continue
            only_comments = False
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "id":
                id_ = value
            elif field == "event":
                event = value
            elif field == "data":
                data.append(value)
            elif field == "retry":
                self.retry = int(value)
        with self.lock:
            if only_comments:
                self.comments += 1
            elif data:
                self.events.append(SseEvent(id_, event, "\n".join(data), time.time()))

    def got(self):
        with self.lock:
            return list(self.events)

    def wait_events(self, n, timeout):
        return wait_until(lambda: len(self.got()) >= n, timeout, interval=0.05)

    def close(self):
        import socket
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
