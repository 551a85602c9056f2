#!/usr/bin/env python3
"""The container image, built with podman and run: deploy/container/build.sh
makes the base (a debootstrapped Debian 12, no registry needed) and builds
deploy/container/Containerfile; then
  - the image's user is 10001:10001 and a process in it has uid 10001
    (and so has the running worker, seen from the host);
  - `nanguard --help` and the entry point's `worker --help` exit 0 in it,
    and it holds the same version as the nanguard built here;
  - the worker, run from the image with the host's network against the
    real PostgreSQL and Kafka the test fixtures start, stores every good
    message of a mixed set (NaN/Infinity, duplicates, malformed JSON, bad
    envelopes, rows a CHECK constraint refuses, values above
    --max-message-bytes, tombstones) and dead-letters every bad one with
    its notification (e2e.py's reconciliation), its group commits to the
    end, its /healthz answers 200 to the host, and `podman kill --signal
    TERM` stops it with exit status 0.
Exits 77 (ctest: skipped) only where this machine cannot run a container:
podman missing, not root, or a container of the base image does not start;
the reason is printed. A failed base or image build is a failure.
Usage: test_image.py (the environment of tests/CMakeLists.txt)."""
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "integration"))
import e2e  # noqa: E402
from e2e import check, say  # noqa: E402

SRC = e2e.SOURCE
BUILD_SH = os.path.join(SRC, "deploy", "container", "build.sh")
PODMAN_SH = os.path.join(SRC, "deploy", "container", "podman.sh")
BASE = "localhost/nanguard-base:12"
TAG = "localhost/nanguard:test"
SKIP = 77


def skip(why):
    print("SKIP: this machine cannot run containers: %s" % why, flush=True)
    sys.exit(SKIP)


def podman(*args, timeout=120):
    """podman through deploy/container/podman.sh: (exit status, stdout,
    stderr)."""
    r = subprocess.run(["bash", PODMAN_SH] + list(args), stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout, r.stderr


class ContainerWorker(e2e.Worker):
    """e2e.Worker run from the image (`podman run`, the host's network):
    the same arguments after the entry point's `nanguard worker`, its log
    (the container's stderr) in the same file."""

    def __init__(self, name, dirpath, topic, group, table, extra=()):
        super().__init__(name, dirpath, topic, group, table, extra)
        self.container = "nanguard-test-%s-%s" % (name, e2e.RUN)
        assert self.args[:2] == [e2e.BIN, "worker"]
        self.args = (["bash", PODMAN_SH, "run", "--rm", "--name", self.container,
                      "--network=host", TAG] + self.args[2:])

    def send_term(self):
        """SIGTERM to the worker in the container (podman kill); the exit
        status of `podman run` (term()) is the worker's."""
        rc, _, err = podman("kill", "--signal", "TERM", self.container)
        if rc != 0:
            say("podman kill: exit %d: %s" % (rc, err[-500:]))

    def host_uid(self):
        """The real uid of the container's first process, as the host sees
        it (rootful podman: no user namespace), or what went wrong."""
        rc, out, err = podman("inspect", "--format", "{{.State.Pid}}", self.container)
        if rc != 0:
            return "podman inspect: exit %d: %s" % (rc, err[-300:])
        try:
            with open("/proc/%d/status" % int(out.strip())) as f:
                return next(ln.split()[1] for ln in f if ln.startswith("Uid:"))
        except (OSError, ValueError, StopIteration) as e:
            return "pid %r: %s" % (out.strip(), e)

    def cleanup(self):
        if self.alive():
            podman("rm", "--force", "--time", "0", self.container)
        super().cleanup()


def build():
    """The image; False when it could not be built (a failure)."""
    t = time.time()
    r = subprocess.run(["bash", BUILD_SH, "image", TAG], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=1500)
    took = time.time() - t
    ok = check(r.returncode == 0, "the image %s is built (%.0f s)" % (TAG, took),
               r.stderr[-3000:])
    say("build: %s" % " ".join(ln for ln in r.stderr.splitlines()
                              if ln.startswith("container/build.sh:")))
    return ok


def static_checks():
    rc, out, err = podman("image", "inspect", "--format",
                          "{{.Config.User}}|{{json .Config.Entrypoint}}", TAG)
    user, _, entry = out.strip().partition("|")
    check(rc == 0 and user == "10001:10001", "the image's user is 10001:10001", out + err)
    check(entry == '["/usr/local/bin/nanguard","worker"]',
          "the image's entry point is nanguard worker", entry)
    rc, out, err = podman("run", "--rm", "--network=none", "--entrypoint", "id", TAG, "-u")
    check(rc == 0 and out.strip() == "10001", "a process in the image runs as uid 10001",
          "exit %d: %s%s" % (rc, out, err))
    rc, out, err = podman("run", "--rm", "--network=none", "--entrypoint", "/usr/local/bin/nanguard", TAG,
                          "--help")
    check(rc == 0 and out.startswith("usage: nanguard COMMAND"),
          "`nanguard --help` exits 0 in the image", "exit %d: %s%s" % (rc, out, err))
    rc, out, err = podman("run", "--rm", "--network=none", TAG, "--help")
    check(rc == 0 and out.startswith("usage: nanguard worker"),
          "the entry point's `worker --help` exits 0", "exit %d: %s%s" % (rc, out, err))
    # every command but sanitize is in nanguard-commands.so: one of them
    rc, out, err = podman("run", "--rm", "--network=none", "--entrypoint", "/usr/local/bin/nanguard", TAG,
                          "dlq", "--help")
    check(rc == 0 and out.startswith("usage: nanguard dlq"),
          "`nanguard dlq --help` exits 0 in the image (the commands module loads)",
          "exit %d: %s%s" % (rc, out, err))
    rc, out, err = podman("run", "--rm", "--network=none", "--entrypoint", "/usr/local/bin/nanguard", TAG,
                          "--version")
    here = subprocess.run([e2e.BIN, "--version"], capture_output=True, text=True).stdout
    check(rc == 0 and out == here, "the image holds nanguard %s" % here.strip(),
          "exit %d: %r%s" % (rc, out, err))


def run_worker():
    names = e2e.Names("image")
    d = e2e.workdir("image")
    names.create(2)
    msgs = e2e.make_messages(60, seed=12)
    say("messages: %d (%s)" % (len(msgs), e2e.summary(msgs)))
    e2e.produce(names.topic, msgs, os.path.join(d, "all.txt"))
    w = ContainerWorker("c", d, names.topic, names.group, names.table,
                        e2e.worker_args_fast() + ["--http-listen", "127.0.0.1:0"]).start()
    check(e2e.wait_done(names, msgs, timeout=120, workers=[w]),
          "the worker in the container processed every message")
    uid = w.host_uid()
    check(uid == "10001", "the worker in the container runs as uid 10001", uid)
    port = e2e.wait_until(lambda: e2e.http_port(w), 10, what="the worker's port")
    status = e2e.http_get(port, "/healthz")[0] if port else None
    check(status == 200, "its /healthz answers 200 on 127.0.0.1:%s" % port, status)
    e2e.settle_in_flight([w])
    e2e.stop_all([w])
    data = e2e.reconcile(names, msgs)
    e2e.check_no_crit(data)
    e2e.check_committed(names, d)
    n_rows, n_bad = e2e.expected_counts(msgs)
    tot = e2e.worker_totals([w])
    check(tot.get("dead_lettered") == n_bad, "the worker counts %d dead letters" % n_bad, tot)
    e2e.drop_table_if_passed(names.table)


def body():
    if build():
        static_checks()
        run_worker()


def main():
    if shutil.which("podman") is None:
        skip("podman is not installed (deploy/install-deps.sh installs it)")
    if os.geteuid() != 0:
        skip("not root (debootstrap and rootful podman need it)")
    # The base: made with debootstrap from the Debian mirror; failing to
    # make it is a failure, not a reason to skip.
    r = subprocess.run(["bash", BUILD_SH, "base"], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        check(False, "the base image %s is made" % BASE, r.stderr[-3000:])
        e2e.checks.finish()
    rc, out, err = podman("run", "--rm", "--network=host", BASE, "true")
    if rc != 0:
        skip("`podman run %s true` exits %d: %s" % (BASE, rc, err.strip()[-1000:]))
    check(True, "a container of the base image runs")
    e2e.main(body)


if __name__ == "__main__":
    main()
