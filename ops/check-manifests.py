#!/usr/bin/env python3
"""ops/check-manifests.py - static checks of oms's deployment files (ops/test.sh runs it).

Docker and Kubernetes are not available where the tests run, so this checks what can be
checked without them: every JSON and YAML file under ops/ parses, and the settings that
matter for operating oms are there and agree with each other and with the consumer's
defaults (consumer/src/config.rs):

- compose.yaml: Redis with AOF, MySQL 8, a migrate job the consumers wait for, consumers
  with a stop grace period above the consumer's shutdown timeout, Prometheus and Grafana
  with their configuration mounted;
- k8s/: probes on /healthz and /readyz, terminationGracePeriodSeconds above the shutdown
  timeout, a migrate Job, a KEDA redis-streams ScaledObject on the `workers` group (and,
  in k8s/cluster/, a redis-cluster-streams one with a trigger for every partition); no
  service-account token mounted; a NetworkPolicy limiting who reaches the metrics port;
  no Secret applied by the kustomization (placeholders would overwrite the real one);
- systemd and supervisor units: hardening, restart policy, SIGTERM and stop timeouts,
  memory and task ceilings; supervisor starts the consumer without a shell and hands it
  the env file (OMS_ENV_FILE), so both read the file literally;
- Dockerfile: multi-stage, non-root; Grafana provisioning paths match compose's mounts.

Usage: python3 ops/check-manifests.py   (exit 1 with one line per problem)
"""

import configparser
import json
import re
import sys
from pathlib import Path

try:
    import yaml
except ImportError:
    sys.exit(
        "check-manifests: PyYAML is missing: pip install pyyaml (or apt-get install python3-yaml)"
    )

ROOT = Path(__file__).resolve().parent.parent
OPS = ROOT / "ops"
problems = []


def problem(where, what):
    problems.append(f"{where}: {what}")


def seconds(value):
    """'45s', '1m30s', 45 -> seconds."""
    if isinstance(value, (int, float)):
        return float(value)
    total, matched = 0.0, False
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*(h|ms|m|s)?", str(value)):
        matched = True
        total += float(number) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "": 1}[unit]
    return total if matched else None


def consumer_default(field):
    text = (ROOT / "consumer/src/config.rs").read_text()
    found = re.search(rf"default_value_t = (\d+)\)\]\s*pub {field}:", text)
    if not found:
        sys.exit(f"check-manifests: no default for {field} in consumer/src/config.rs")
    return int(found.group(1))


SHUTDOWN_TIMEOUT = consumer_default("shutdown_timeout_secs")

# 1. Syntax of every JSON and YAML file.
documents = {}
for path in sorted(OPS.rglob("*")):
    rel = path.relative_to(ROOT)
    try:
        if path.suffix == ".json":
            documents[rel] = [json.loads(path.read_text())]
        elif path.suffix in (".yml", ".yaml"):
            documents[rel] = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except (ValueError, yaml.YAMLError) as e:
        problem(rel, f"does not parse: {e}")


def doc(rel):
    docs = documents.get(Path(rel))
    if not docs:
        problem(rel, "missing or empty")
        return {}
    return docs[0]


# 2. compose.yaml
compose = doc("ops/compose.yaml")
services = compose.get("services", {})
for name in ("redis", "mysql", "migrate", "consumer", "prometheus", "grafana"):
    if name not in services:
        problem("ops/compose.yaml", f"no service {name}")
redis_cmd = " ".join(map(str, services.get("redis", {}).get("command", [])))
if "--appendonly yes" not in redis_cmd:
    problem("ops/compose.yaml", "redis runs without --appendonly yes")
if not str(services.get("mysql", {}).get("image", "")).startswith("mysql:8"):
    problem("ops/compose.yaml", "mysql is not MySQL 8")
consumer = services.get("consumer", {})
if consumer.get("depends_on", {}).get("migrate", {}).get("condition") != "service_completed_successfully":
    problem("ops/compose.yaml", "consumers do not wait for the migrate job")
grace = seconds(consumer.get("stop_grace_period", "10s"))
if grace is None or grace <= SHUTDOWN_TIMEOUT:
    problem("ops/compose.yaml", f"consumer stop_grace_period {grace}s <= shutdown timeout {SHUTDOWN_TIMEOUT}s")
if consumer.get("stop_signal", "SIGTERM") != "SIGTERM":
    problem("ops/compose.yaml", "consumers are not stopped with SIGTERM")
if "replicas" not in consumer.get("deploy", {}):
    problem("ops/compose.yaml", "no consumer replica count")
prom = services.get("prometheus", {})
prom_config = next((a.split("=", 1)[1] for a in prom.get("command", []) if a.startswith("--config.file=")), "")
mounts = {v.split(":")[1]: v.split(":")[0] for v in prom.get("volumes", []) if ":" in v}
if not prom_config.startswith("/etc/prometheus/") or mounts.get("/etc/prometheus") != "./prometheus":
    problem("ops/compose.yaml", "prometheus does not mount ops/prometheus at /etc/prometheus")
elif not (OPS / "prometheus" / Path(prom_config).name).exists():
    problem("ops/compose.yaml", f"prometheus config {prom_config} is not in ops/prometheus")
grafana_mounts = {
    v.split(":")[1]: v.split(":")[0] for v in services.get("grafana", {}).get("volumes", []) if ":" in v
}
if grafana_mounts.get("/etc/grafana/provisioning") != "./grafana/provisioning":
    problem("ops/compose.yaml", "grafana does not mount the provisioning directory")

# 3. Grafana provisioning agrees with the compose mounts.
datasources = doc("ops/grafana/provisioning/datasources/prometheus.yml").get("datasources", [])
if not any(d.get("type") == "prometheus" for d in datasources):
    problem("ops/grafana/provisioning/datasources", "no prometheus datasource")
providers = doc("ops/grafana/provisioning/dashboards/oms.yml").get("providers", [])
paths = {p.get("options", {}).get("path") for p in providers}
dashboard_dir = next((t for t, s in grafana_mounts.items() if s == "./grafana/dashboards"), None)
if dashboard_dir not in paths:
    problem("ops/grafana/provisioning/dashboards/oms.yml", f"provider path {paths} != compose mount {dashboard_dir}")

# 4. Kubernetes manifests.
k8s = [d for rel, docs in documents.items() if rel.parts[:2] == ("ops", "k8s") for d in docs]
by_kind = {}
for d in k8s:
    by_kind.setdefault(d.get("kind"), []).append(d)
config = next((c.get("data", {}) for c in by_kind.get("ConfigMap", [])), {})
deployments = by_kind.get("Deployment", [])
if not deployments:
    problem("ops/k8s", "no Deployment")
for dep in deployments:
    pod = dep["spec"]["template"]["spec"]
    where = f"ops/k8s Deployment {dep['metadata']['name']}"
    timeout = int(config.get("CONSUMER_SHUTDOWN_TIMEOUT_SECS", SHUTDOWN_TIMEOUT))
    if pod.get("terminationGracePeriodSeconds", 30) <= timeout:
        problem(where, f"terminationGracePeriodSeconds <= shutdown timeout {timeout}s")
    container = pod["containers"][0]
    probes = {k: container.get(k, {}).get("httpGet", {}).get("path") for k in ("livenessProbe", "readinessProbe")}
    if probes != {"livenessProbe": "/healthz", "readinessProbe": "/readyz"}:
        problem(where, f"probes {probes}")
    if not pod.get("securityContext", {}).get("runAsNonRoot"):
        problem(where, "pods may run as root")
for workload in deployments + by_kind.get("Job", []):
    pod = workload["spec"]["template"]["spec"]
    if pod.get("automountServiceAccountToken") is not False:
        problem(f"ops/k8s {workload['kind']} {workload['metadata']['name']}", "automountServiceAccountToken is not false")
policies = by_kind.get("NetworkPolicy", [])
consumer_labels = {k: v for d in deployments for k, v in d["spec"]["selector"]["matchLabels"].items()}
metrics_policy = [
    p for p in policies
    if p["spec"].get("podSelector", {}).get("matchLabels", {}).items() <= consumer_labels.items()
    and p["spec"].get("podSelector", {}).get("matchLabels")
    and "Ingress" in p["spec"].get("policyTypes", [])
]
if not metrics_policy:
    problem("ops/k8s", "no NetworkPolicy restricting ingress to the consumers")
for p in metrics_policy:
    rules = p["spec"].get("ingress", [])
    if not rules or any(not r.get("from") or not r.get("ports") for r in rules):
        problem(f"ops/k8s NetworkPolicy {p['metadata']['name']}", "an ingress rule allows any source or any port")
jobs = by_kind.get("Job", [])
if not any("migrate" in c.get("command", []) + c.get("args", []) for j in jobs for c in j["spec"]["template"]["spec"]["containers"]):
    problem("ops/k8s", "no Job running `producer migrate`")
if not by_kind.get("Secret") or not config:
    problem("ops/k8s", "no Secret or ConfigMap")
scaled = by_kind.get("ScaledObject", [])
if not scaled:
    problem("ops/k8s", "no KEDA ScaledObject")
for so in scaled:
    where = f"ops/k8s ScaledObject {so['metadata']['name']}"
    if so["spec"]["scaleTargetRef"]["name"] not in {d["metadata"]["name"] for d in deployments}:
        problem(where, "scaleTargetRef names no Deployment")
    triggers = so["spec"].get("triggers", [])
    if not triggers:
        problem(where, "no triggers")
    prefix = config.get("OMS_PREFIX", "oms:")
    partitions = set()
    for t in triggers:
        meta = t.get("metadata", {})
        if t.get("type") not in ("redis-streams", "redis-cluster-streams"):
            problem(where, f"trigger type {t.get('type')}")
        if meta.get("consumerGroup") != "workers":
            problem(where, "trigger not on the `workers` group")
        stream = meta.get("stream", "")
        # One Redis: OMS_PREFIX + orders; a cluster: one trigger per partition, orders:{N}.
        tagged = re.fullmatch(re.escape(prefix) + r"orders:\{(\d+)\}", stream)
        if t.get("type") == "redis-cluster-streams" and tagged:
            partitions.add(int(tagged.group(1)))
        elif stream != prefix + "orders":
            problem(where, f"stream {stream} is not OMS_PREFIX + orders (or orders:{{N}} on a cluster)")
        if not ({"lagCount", "pendingEntriesCount"} & meta.keys()):
            problem(where, "trigger has neither lagCount nor pendingEntriesCount")
    if partitions and partitions != set(range(max(partitions) + 1)):
        problem(where, f"partition triggers {sorted(partitions)} skip a partition")
kustomization = doc("ops/k8s/kustomization.yaml")
listed = set(kustomization.get("resources", []))
for resource in listed:
    if not (OPS / "k8s" / resource).exists():
        problem("ops/k8s/kustomization.yaml", f"{resource} does not exist")
    elif any(d.get("kind") == "Secret" for d in documents.get(Path("ops/k8s") / resource, [])):
        problem("ops/k8s/kustomization.yaml", f"{resource} is a Secret: applying it would overwrite the real one")
if policies and not any(
    any(d.get("kind") == "NetworkPolicy" for d in documents.get(Path("ops/k8s") / r, [])) for r in listed
):
    problem("ops/k8s/kustomization.yaml", "the NetworkPolicy is not applied")

# 5. systemd unit (duplicate keys are legal there: parse by hand).
unit = {}
section = None
for line in (OPS / "systemd/oms-consumer@.service").read_text().splitlines():
    line = line.strip()
    if line.startswith("[") and line.endswith("]"):
        section = line[1:-1]
    elif line and not line.startswith(("#", ";")) and "=" in line:
        key, value = line.split("=", 1)
        unit.setdefault((section, key.strip()), []).append(value.strip())
expect = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "Restart": "on-failure",
    "KillSignal": "SIGTERM",
}
for key, value in expect.items():
    if unit.get(("Service", key), [None])[-1] != value:
        problem("ops/systemd/oms-consumer@.service", f"{key} is not {value}")
user = unit.get(("Service", "User"), ["root"])[-1]
if user in ("root", "0"):
    problem("ops/systemd/oms-consumer@.service", "runs as root")
if not unit.get(("Service", "EnvironmentFile")):
    problem("ops/systemd/oms-consumer@.service", "no EnvironmentFile")
exec_start = unit.get(("Service", "ExecStart"), [""])[-1]
if not re.search(r"--name \S*%i", exec_start) or not re.search(r"--metrics-(addr|port) \S*%i", exec_start):
    problem("ops/systemd/oms-consumer@.service", "the instance name does not set --name and the metrics port")
for key in ("MemoryMax", "TasksMax"):
    if not unit.get(("Service", key)) or unit[("Service", key)][-1] in ("infinity", ""):
        problem("ops/systemd/oms-consumer@.service", f"no {key}")
stop = seconds(unit.get(("Service", "TimeoutStopSec"), ["90"])[-1])
if stop is None or stop <= SHUTDOWN_TIMEOUT:
    problem("ops/systemd/oms-consumer@.service", f"TimeoutStopSec <= shutdown timeout {SHUTDOWN_TIMEOUT}s")

# 6. supervisor program.
sv = configparser.ConfigParser(interpolation=None, strict=True)
sv.read(OPS / "supervisor/oms-consumer.conf")
program = sv["program:oms-consumer"] if sv.has_section("program:oms-consumer") else {}
where = "ops/supervisor/oms-consumer.conf"
if program.get("numprocs") != "4":
    problem(where, "numprocs is not 4")
if "%(process_num)" not in program.get("process_name", ""):
    problem(where, "process names are not distinct")
command = program.get("command", "")
if command.count("%(process_num)") < 2:
    problem(where, "the process number does not set both --name and the metrics port")
if program.get("stopsignal") != "TERM":
    problem(where, "stopsignal is not TERM")
if int(program.get("stopwaitsecs", "10")) <= SHUTDOWN_TIMEOUT:
    problem(where, f"stopwaitsecs <= shutdown timeout {SHUTDOWN_TIMEOUT}s")
if program.get("user", "root") == "root":
    problem(where, "runs as root")
if re.match(r"\S*(/|^)(sh|bash|dash|env)\b", command) or " -c " in command:
    problem(where, "the command runs through a shell (values of the env file would be expanded)")
if "OMS_ENV_FILE=" not in program.get("environment", ""):
    problem(where, "no OMS_ENV_FILE: the consumer would not read /etc/oms/consumer.env")

# 7. Dockerfile: multi-stage, non-root.
dockerfile = (OPS / "docker/Dockerfile").read_text().splitlines()
stages = [l for l in dockerfile if l.upper().startswith("FROM ")]
if len(stages) < 2:
    problem("ops/docker/Dockerfile", "not multi-stage")
last_from = max(i for i, l in enumerate(dockerfile) if l.upper().startswith("FROM "))
users = [l.split()[1] for l in dockerfile[last_from:] if l.upper().startswith("USER ")]
if not users or users[-1].split(":")[0] in ("root", "0"):
    problem("ops/docker/Dockerfile", "the final stage runs as root")

if problems:
    print("\n".join(f"check-manifests: {p}" for p in problems), file=sys.stderr)
    sys.exit(1)
print(f"check-manifests: {len(documents)} JSON/YAML files parse; compose, k8s, systemd, supervisor and Dockerfile settings OK")
