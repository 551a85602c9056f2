#!/usr/bin/env python3
"""The deployment files, checked without a cluster or a container engine:
  - deploy/k8s/*.yaml: every Kubernetes object validated against the
    schemas of Kubernetes 1.37 (kubernetes-validate, strict: no unknown
    field), and what ties them together: probes on /healthz and /readyz
    at the port the settings listen on, resources, the ConfigMap and the
    Secret the Deployment mounts, PGPASSFILE inside the Secret, the grace
    period above --shutdown-timeout-ms, the PodDisruptionBudget selecting
    the worker pods, the KEDA ScaledObject scaling that Deployment on the
    group's lag with max replicas = the partition count; the worker takes
    the Deployment's arguments and every setting of the ConfigMap;
  - deploy/compose.yaml (PyYAML): Kafka, PostgreSQL, two workers built
    from the Containerfile, the gateway (`nanguard notify`); every
    dependency, secret and secret file exists; ports on loopback; the
    worker and the gateway take their arguments; no password in it;
  - deploy/container/Containerfile: two stages on Debian 12 slim, a
    non-root user, the worker as entry point, every source the build
    needs copied in, and the run stage's packages exist in Debian 12.
Usage: test_manifests.py SOURCE_DIR NANGUARD_BIN (with the venv's python:
deploy/venv.sh deploy/k8s/requirements.txt deploy-check)."""
import glob
import os
import re
import subprocess
import sys

import kubernetes_validate
import yaml

SRC, BIN = sys.argv[1], sys.argv[2]
PARTITIONS = 4  # of the topic "checkpoints" (compose's kafka-init makes it)
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from checks import check, checks, finish  # noqa: E402  (tests/checks.py)


def takes(cmd, args):
    """Whether `nanguard CMD ARGS --help` parses ARGS (exit 0)."""
    r = subprocess.run([BIN, cmd] + list(args) + ["--help"], capture_output=True,
                       text=True)
    return r.returncode == 0, r.stderr[-500:]


def options(cmd):
    out = subprocess.run([BIN, cmd, "--help"], capture_output=True, text=True).stdout
    return set(re.findall(r"^\s+--([a-z][a-z0-9-]*)", out, re.M)), out


def conf_settings(text):
    """{name: value} of a worker.conf text."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            k, _, v = line.partition("=")
            out[k.strip()] = v.strip()
    return out


# --------------------------------------------------------------- Kubernetes
docs = {}
for path in sorted(glob.glob(os.path.join(SRC, "deploy", "k8s", "*.yaml"))):
    with open(path) as f:
        for doc in yaml.safe_load_all(f):
            if doc:
                docs[(doc["kind"], doc["metadata"]["name"])] = (doc, os.path.basename(path))
kinds = {k for k, _ in docs}
check({"Deployment", "ConfigMap", "Secret", "PodDisruptionBudget", "ScaledObject"} <= kinds,
      "deploy/k8s has a Deployment, ConfigMap, Secret, PodDisruptionBudget, ScaledObject",
      kinds)
for (kind, name), (doc, path) in docs.items():
    if doc["apiVersion"].startswith("keda.sh/"):
        continue  # a CRD: checked by hand below
    try:
        kubernetes_validate.validate(doc, "1.37.0", strict=True)
        check(True, "%s: %s/%s valid against Kubernetes 1.37 (strict)" % (path, kind, name))
    except kubernetes_validate.ValidationError as e:
        check(False, "%s: %s/%s valid against Kubernetes 1.37 (strict)" % (path, kind, name),
              e)

dep = next(d for (k, _), (d, _) in docs.items() if k == "Deployment")
cm = next(d for (k, _), (d, _) in docs.items() if k == "ConfigMap")
sec = next(d for (k, _), (d, _) in docs.items() if k == "Secret")
pdb = next(d for (k, _), (d, _) in docs.items() if k == "PodDisruptionBudget")
so = next(d for (k, _), (d, _) in docs.items() if k == "ScaledObject")
pod = dep["spec"]["template"]["spec"]
c = pod["containers"][0]
settings = conf_settings(cm["data"]["worker.conf"])
known, help_text = options("worker")
unknown = [k for k in settings if not k.startswith("kafka.") and k not in known]
check(not unknown, "every ConfigMap setting is a worker option", unknown)
port = {p["name"]: p["containerPort"] for p in c["ports"]}.get("http")
check(settings.get("http-listen") == ":%s" % port,
      "the worker listens (%s) on the container's http port (%s)"
      % (settings.get("http-listen"), port))
lp, rp = c["livenessProbe"]["httpGet"], c["readinessProbe"]["httpGet"]
check(lp["path"] == "/healthz" and rp["path"] == "/readyz" and
      lp["port"] in ("http", port) and rp["port"] in ("http", port),
      "liveness /healthz, readiness /readyz on that port")
res = c.get("resources", {})
check(all(k in res.get(s, {}) for s in ("requests", "limits") for k in ("cpu", "memory")),
      "cpu and memory requests and limits", res)
vols = {v["name"]: v for v in pod["volumes"]}
mounts = {m["name"]: m for m in c["volumeMounts"]}
check(vols["config"]["configMap"]["name"] == cm["metadata"]["name"] and
      mounts["config"]["mountPath"] == "/etc/nanguard/worker.conf" and
      c["args"][:2] == ["--config", "/etc/nanguard/worker.conf"],
      "the ConfigMap is mounted where --config reads it")
env = {e["name"]: e.get("value") for e in c.get("env", [])}
secret_dir = mounts["secrets"]["mountPath"]
check(vols["secrets"]["secret"]["secretName"] == sec["metadata"]["name"] and
      env.get("PGPASSFILE") == secret_dir + "/pgpass" and
      "pgpass" in sec.get("stringData", sec.get("data", {})),
      "the Secret is mounted and PGPASSFILE names its pgpass key")
check(not (vols["secrets"]["secret"].get("defaultMode", 0o644) & 0o077),
      "the secret files are not group or world readable (libpq ignores such a "
      "password file)")
check(not re.search(r"password", cm["data"]["worker.conf"], re.I) and
      not any("PASSWORD" in k for k in env),
      "no password in the ConfigMap or the environment")
sc = pod.get("securityContext", {})
check(sc.get("runAsNonRoot") is True and sc.get("runAsUser", 0) != 0,
      "runs as a non-root user")
m = re.search(r"--shutdown-timeout-ms.*\(default: (\d+)\)", help_text)
shutdown_ms = int(settings.get("shutdown-timeout-ms", m.group(1) if m else 30000))
check(pod["terminationGracePeriodSeconds"] * 1000 > shutdown_ms,
      "terminationGracePeriodSeconds (%d s) > --shutdown-timeout-ms (%d ms)"
      % (pod["terminationGracePeriodSeconds"], shutdown_ms))
ok, err = takes("worker", c["args"])
check(ok, "the worker takes the Deployment's arguments %s" % c["args"], err)
pod_labels = dep["spec"]["template"]["metadata"]["labels"]
check(dep["spec"]["selector"]["matchLabels"].items() <= pod_labels.items() and
      pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items() and
      ("maxUnavailable" in pdb["spec"] or "minAvailable" in pdb["spec"]),
      "the PodDisruptionBudget selects the worker pods")
trig = so["spec"]["triggers"][0]
check(so["apiVersion"] == "keda.sh/v1alpha1" and
      so["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"] and
      so["spec"]["scaleTargetRef"].get("kind", "Deployment") == "Deployment",
      "the ScaledObject scales the worker Deployment")
check(so["spec"]["maxReplicaCount"] == PARTITIONS and
      1 <= so["spec"].get("minReplicaCount", 0) <= PARTITIONS,
      "max replicas = the partition count (%d)" % PARTITIONS, so["spec"])
check(trig["type"] == "kafka" and trig["metadata"]["consumerGroup"] == settings["group"] and
      trig["metadata"]["topic"] == settings["topic"] and
      trig["metadata"]["bootstrapServers"] == settings["brokers"] and
      int(trig["metadata"]["lagThreshold"]) > 0,
      "it scales on the lag of the worker's group and topic", trig)

# ------------------------------------------------------------------ compose
with open(os.path.join(SRC, "deploy", "compose.yaml")) as f:
    raw = f.read()
comp = yaml.safe_load(raw)
svcs = comp["services"]
check({"kafka", "postgres"} <= set(svcs), "compose: kafka and postgres services")
workers = [n for n, s in svcs.items() if s.get("build", {}).get("dockerfile") ==
           "deploy/container/Containerfile"]
check(len(workers) >= 2, "compose: two workers built from the Containerfile", workers)
ctx = os.path.normpath(os.path.join(SRC, "deploy", svcs[workers[0]]["build"]["context"]))
check(os.path.isfile(os.path.join(ctx, "deploy/container/Containerfile")) and
      os.path.isfile(os.path.join(ctx, "CMakeLists.txt")),
      "compose: the build context is the repository root")
for n in workers:
    ep, args = svcs[n]["entrypoint"], svcs[n]["command"]
    check("nanguard worker" in " ".join(ep), "compose %s: runs nanguard worker" % n, ep)
    ok, err = takes("worker", args)
    check(ok, "compose %s: the worker takes its arguments" % n, err)
gw = [n for n, s in svcs.items() if "notify" in (s.get("entrypoint") or [])]
check(len(gw) == 1, "compose: the gateway runs nanguard notify", gw)
if gw:
    ok, err = takes("notify", svcs[gw[0]]["command"])
    check(ok, "compose %s: nanguard notify takes its arguments" % gw[0], err)
bad_deps = [(n, d) for n, s in svcs.items() for d in (s.get("depends_on") or {})
            if d not in svcs]
check(not bad_deps, "compose: every depends_on names a service", bad_deps)
used = {x if isinstance(x, str) else x["source"] for s in svcs.values()
        for x in s.get("secrets", [])}
defined = comp.get("secrets", {})
check(used and used <= set(defined), "compose: every secret used is defined", used)
missing = [k for k, v in defined.items()
           if not os.path.isfile(os.path.join(SRC, "deploy", v["file"]))]
check(not missing, "compose: every secret file exists", missing)
open_ports = [(n, p) for n, s in svcs.items() for p in s.get("ports", [])
              if not str(p).startswith("127.0.0.1:")]
check(not open_ports, "compose: published ports are loopback only", open_ports)
check(not re.search(r"password\s*=|PGPASSWORD|POSTGRES_PASSWORD:", raw),
      "compose: no password in the file (secrets from files)")

# ------------------------------------------------------------ Containerfile
with open(os.path.join(SRC, "deploy", "container", "Containerfile")) as f:
    cf = [ln for ln in f.read().splitlines() if ln and not ln.lstrip().startswith("#")]
# ARGs before the first FROM (the base, BASE) resolve to their defaults
global_args = dict(ln.split()[1].split("=", 1) for ln in
                   cf[:next(i for i, ln in enumerate(cf) if ln.startswith("FROM "))]
                   if ln.startswith("ARG ") and "=" in ln)
froms = [[re.sub(r"\$\{(\w+)\}", lambda m: global_args.get(m.group(1), m.group(0)), w)
          for w in ln.split()[1:]] for ln in cf if ln.startswith("FROM ")]
check(len(froms) == 2 and all(f[0].endswith("debian:12-slim") for f in froms) and
      froms[0][1:] == ["AS", "build"], "Containerfile: two stages on Debian 12 slim", froms)
final = cf[max(i for i, ln in enumerate(cf) if ln.startswith("FROM ")):]
user = [ln.split()[1] for ln in final if ln.startswith("USER ")]
check(user and user[-1].split(":")[0] not in ("0", "root"),
      "Containerfile: the image runs as a non-root user", user)
ep = [ln for ln in final if ln.startswith("ENTRYPOINT ")]
check(ep and re.match(r'ENTRYPOINT \["/usr/local/bin/nanguard", "worker"\]$', ep[-1]),
      "Containerfile: the worker is the entry point", ep)
check(any(ln.startswith("COPY --from=build ") for ln in final),
      "Containerfile: the run stage takes the binary from the build stage")
check(any(re.match(r"COPY --from=build \S*/nanguard-commands\.so /usr/local/bin/"
               r"(nanguard-commands\.so)?$", ln) for ln in final),
      "Containerfile: the run stage puts nanguard-commands.so beside the binary "
      "(every command but sanitize is in it)")
copied = [ln.split()[1] for ln in cf[:cf.index(final[0])] if ln.startswith("COPY ")]
with open(os.path.join(SRC, "CMakeLists.txt")) as f:
    cmake = f.read()
sources = set(re.findall(r"(?:^|\s|/)((?:common|filter|sink|deploy|cmake)/[\w./-]+"
                         r"\.(?:cmake|html|css|js|c|h))\b",
                         cmake, re.M))
uncopied = sorted(s for s in sources if not any(s == c or s.startswith(c.rstrip("/") + "/")
                                                for c in copied))
check(sources and not uncopied, "Containerfile: every source the build names is copied "
      "(%d files)" % len(sources), uncopied)
pkgs = [w for ln in final for w in ln.replace("\\", " ").split()
        if re.match(r"^lib[a-z0-9.+-]+$|^ca-certificates$", w)]
r = subprocess.run(["apt-cache", "show", "--no-all-versions"] + pkgs,
                   capture_output=True, text=True)
found = set(re.findall(r"^Package: (\S+)$", r.stdout, re.M))
check(pkgs and set(pkgs) <= found, "Containerfile: the run stage's packages exist in "
      "Debian 12 (%s)" % " ".join(pkgs), set(pkgs) - found)

finish()
