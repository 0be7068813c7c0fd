#!/usr/bin/env bash
# Static checks of everything ssehub ships for deployment: the Helm chart, the
# plain manifests in k8s/, the Dockerfile, the nginx configs and the release
# (workflow, versions, licences, a dry run of what it packages).
#
#   scripts/check-deploy.sh                run every check (installs tools first)
#   scripts/check-deploy.sh --update-k8s   regenerate k8s/ from the chart, then check
#
# Prints one PASS/FAIL line per check and ends with "N passed, M failed";
# exits non-zero when any check failed. Tools come from
# scripts/install-deploy-tools.sh (cached in .tools/); nothing else is fetched.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1

UPDATE_K8S=false
case "${1:-}" in
  --update-k8s) UPDATE_K8S=true ;;
  "") ;;
  *) echo "usage: $0 [--update-k8s]" >&2; exit 2 ;;
esac

bash scripts/install-deploy-tools.sh || { echo "FAIL install-deploy-tools"; echo "0 passed, 1 failed"; exit 1; }

TOOLS="$ROOT/.tools"
HELM="$TOOLS/bin/helm"
KUBECTL="$TOOLS/bin/kubectl"
PY="$TOOLS/venv/bin/python"
KUBERNETES_VALIDATE="$TOOLS/venv/bin/kubernetes-validate"
YAMLLINT="$TOOLS/venv/bin/yamllint"
SHELLCHECK="$TOOLS/venv/bin/shellcheck"
HADOLINT="$TOOLS/venv/bin/hadolint"
ACTIONLINT="$TOOLS/venv/bin/actionlint"
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
CHART="helm/ssehub"
RELEASE=ssehub
NAMESPACE=ssehub
# Kinds that are CRDs, unknown to kubernetes-validate: validated against their
# own CRD schemas instead (see validate_crds).
CRD_KINDS="HTTPRoute ServiceMonitor"
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion: the native
# preStop sleep) and the newest that kubernetes-validate knows.
KUBE_MIN="1.30.0"
KUBE_NEWEST="$("$PY" -c 'import kubernetes_validate.utils as u; print(u.latest_version())')"
# The version helm template renders for (Capabilities.KubeVersion).
RENDER_KUBE_VERSION="$KUBE_NEWEST"

WORK="$(mktemp -d)"
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT

passed=0
failed=0
# check NAME COMMAND...: runs the command, prints PASS or FAIL; on failure its
# output follows, indented; on success only its lines starting with "note:".
check() {
  local name="$1"
  shift
  local output
  if output="$("$@" 2>&1)"; then
    passed=$((passed + 1))
    echo "PASS $name"
    grep '^note:' <<<"$output" | awk '!seen[$0]++' | sed 's/^/     /'
  else
    failed=$((failed + 1))
    echo "FAIL $name"
    # shellcheck disable=SC2001 # every line, not one substitution
    sed 's/^/     /' <<<"$output" | head -n 60
  fi
  return 0
}

# ---------------------------------------------------------------- helpers ----

render() { # render VALUES_FILE|- OUT [extra helm args...]
  local values="$1" out="$2"
  shift 2
  local args=(template "$RELEASE" "$CHART" --namespace "$NAMESPACE" --kube-version "$RENDER_KUBE_VERSION")
  [[ "$values" != "-" ]] && args+=(-f "$values")
  "$HELM" "${args[@]}" "$@" >"$out"
}

cat >"$WORK/kinds.py" <<'PY'
# Prints the kinds of the documents in a rendered file, one per line.
import sys, yaml
for doc in yaml.safe_load_all(open(sys.argv[1])):
    if doc:
        print(doc["kind"])
PY

kubernetes_validate() { # kubernetes_validate FILE VERSION
  local file="$1" version="$2" output rc=0
  output="$("$KUBERNETES_VALIDATE" --strict --quiet -k "$version" "$file" 2>&1)" || rc=$?
  local bad=0 line kind
  while IFS= read -r line; do
    [[ -z "$line" ]] && continue
    if [[ "$line" =~ ^WARN.*"Couldn't find schema for kind "([A-Za-z]+)" " ]]; then
      kind="${BASH_REMATCH[1]}"
      if [[ " $CRD_KINDS " == *" $kind "* ]]; then
        echo "note: $kind is a CRD, unknown to kubernetes-validate: validated against its CRD schema separately"
        continue
      fi
    fi
    echo "$line"
    bad=1
  done <<<"$output"
  [[ $rc -eq 0 && $bad -eq 0 ]]
}

cat >"$TOOLS/validate-crds.mjs" <<'JS'
// Validates HTTPRoute and ServiceMonitor documents (JSON lines on stdin)
// against the OpenAPI schemas of their CRDs, as compiled into the
// @kubernetes-models packages. These schemas check types, enums, patterns and
// required fields; like the API server, they do not reject unknown fields.
import { createInterface } from "node:readline";
import { HTTPRoute } from "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/HTTPRoute";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";

const models = { HTTPRoute, ServiceMonitor };
let failures = 0;
for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue;
  const doc = JSON.parse(line);
  const Model = models[doc.kind];
  const name = `${doc.kind}/${doc.metadata?.name}`;
  if (!Model) {
    console.log(`no CRD schema known for ${doc.apiVersion} ${doc.kind}`);
    failures++;
    continue;
  }
  if (doc.apiVersion !== Model.apiVersion) {
    console.log(`${name}: apiVersion ${doc.apiVersion}, expected ${Model.apiVersion}`);
    failures++;
    continue;
  }
  try {
    new Model(doc).validate();
    console.log(`note: ${name} valid against the ${Model.apiVersion} CRD schema`);
  } catch (error) {
    console.log(`${name}: ${error.message}`);
    failures++;
  }
}
process.exit(failures ? 1 : 0);
JS

cat >"$WORK/crd-docs.py" <<'PY'
# Prints the CRD documents of a rendered file as JSON lines.
import json, sys, yaml
kinds = set(sys.argv[2].split())
for doc in yaml.safe_load_all(open(sys.argv[1])):
    if doc and doc["kind"] in kinds:
        print(json.dumps(doc))
PY

validate_crds() { # validate_crds FILE
  "$PY" "$WORK/crd-docs.py" "$1" "$CRD_KINDS" | node "$TOOLS/validate-crds.mjs"
}

cat >"$WORK/grace.py" <<'PY'
# terminationGracePeriodSeconds >= preStop sleep + drain.delay + drain.timeout,
# with the drain durations read from the rendered ssehub.toml.
import math, re, sys, tomllib, yaml

UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}

def seconds(text):
    parts = re.findall(r"(\d+)\s*(ms|s|m|h)", text)
    if not parts or re.sub(r"(\d+)\s*(ms|s|m|h)|\s", "", text):
        raise SystemExit(f"cannot read duration {text!r}")
    return sum(int(n) * UNITS[u] for n, u in parts)

docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
deployment = next(d for d in docs if d["kind"] == "Deployment")
configmap = next(d for d in docs if d["kind"] == "ConfigMap")
config = tomllib.loads(configmap["data"]["ssehub.toml"])
pod = deployment["spec"]["template"]["spec"]
container = next(c for c in pod["containers"] if c["name"] == "ssehub")
grace = pod.get("terminationGracePeriodSeconds", 30)
pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
delay = seconds(config["drain"]["delay"])
timeout = seconds(config["drain"]["timeout"])
needed = pre_stop + delay + timeout
summary = (f"terminationGracePeriodSeconds {grace} vs preStop {pre_stop}s + drain.delay "
           f"{config['drain']['delay']} + drain.timeout {config['drain']['timeout']} = {needed:g}s")
if grace < math.ceil(needed):
    raise SystemExit("too short: " + summary)
print("note: " + summary)
PY

cat >"$WORK/expect.py" <<'PY'
# Checks that helm's error output (stdin) matches the "# expect: REGEX" line of
# a bad values file. Newlines in the output are folded into spaces.
import re, sys
expect = next((l.split(":", 1)[1].strip() for l in open(sys.argv[1]) if l.startswith("# expect:")), None)
if not expect:
    raise SystemExit(f"{sys.argv[1]} has no '# expect: REGEX' line")
output = " ".join(sys.stdin.read().split())
if not re.search(expect, output):
    raise SystemExit(f"the error does not match /{expect}/:\n{output}")
print(f"note: rejected with: {re.search(expect, output).group(0)}")
PY

# ssehub's own config check on a rendered ConfigMap, with the environment the
# Deployment gives the container: `ssehub --config FILE --print-config` exits
# 64 on a bad config. Needs a built binary: SSEHUB_BIN, or the newest of
# target/release/ssehub and target/debug/ssehub (this script builds nothing).
if [[ -z "${SSEHUB_BIN:-}" ]]; then
  for candidate in target/release/ssehub target/debug/ssehub; do
    if [[ -x "$candidate" && ( -z "${SSEHUB_BIN:-}" || "$candidate" -nt "$SSEHUB_BIN" ) ]]; then
      SSEHUB_BIN="$candidate"
    fi
  done
fi
SSEHUB_BIN="${SSEHUB_BIN:-}"

cat >"$WORK/ssehub-config.py" <<'PY'
import os, subprocess, sys, tomllib, yaml
render, binary, workdir = sys.argv[1:4]
docs = [d for d in yaml.safe_load_all(open(render)) if d]
configmap = next(d for d in docs if d["kind"] == "ConfigMap")
deployment = next(d for d in docs if d["kind"] == "Deployment")
container = next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "ssehub")
path = os.path.join(workdir, "ssehub.toml")
open(path, "w").write(configmap["data"]["ssehub.toml"])
env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
# Values from Secrets are not in the render: stand-ins of the right shape. The
# Redis one is recognisable, so that the output shows whether the variable the
# Deployment sets is the one ssehub reads.
REDIS_STAND_IN = "redis://redis-stand-in.invalid:6379/0"
# With Sentinel the URL's host is the master's name (the sentinels give its
# address), so the stand-in takes that shape.
sentinel = tomllib.loads(configmap["data"]["ssehub.toml"]).get("backplane", {}).get("redis", {}).get("sentinel")
if sentinel:
    REDIS_STAND_IN = f"redis://{sentinel['master_name']}/0"
# The Mercure JWT keys: a stand-in of the shape the ConfigMap's alg needs (an
# HMAC secret of 32 bytes or more, or a PEM public key of the tests' keys),
# recognisable in the output like the Redis one.
MERCURE_HMAC_STAND_IN = "mercure-stand-in-hmac-secret-of-32-bytes-or-more"
mercure = tomllib.loads(configmap["data"]["ssehub.toml"]).get("mercure", {})
def mercure_stand_in(name):
    role = name.removeprefix("SSEHUB_MERCURE__").removesuffix("__KEY").lower()
    alg = mercure.get(role, {}).get("alg", "HS256")
    pem = {"E": "ec", "R": "rsa", "P": "rsa"}.get(alg[0], "ed") if not alg.startswith("HS") else None
    return open(f"tests/api/keys/{pem}-public.pem").read() if pem else MERCURE_HMAC_STAND_IN
for item in container.get("env", []):
    if item["name"].startswith("SSEHUB_MERCURE__"):
        env[item["name"]] = item.get("value", mercure_stand_in(item["name"]))
        continue
    env[item["name"]] = item.get("value", REDIS_STAND_IN if "REDIS" in item["name"] else "x")
args = container["args"]
assert args[:2] == ["--config", "/etc/ssehub/ssehub.toml"], args
def run(config, extra):
    return subprocess.run([binary, "--config", config, "--print-config"], env={**env, **extra},
                          capture_output=True, text=True, timeout=30)
result = run(path, {})
if result.returncode != 0 and "not available in this build" in result.stderr:
    print("note: this ssehub build has no Redis backplane; checked with backplane.kind = memory instead")
    result = run(path, {"SSEHUB_BACKPLANE__KIND": "memory"})
if result.returncode != 0 and "[backplane.redis]" in open(path).read() and "unknown field" in result.stderr:
    # A build from before the Redis backplane knows only backplane.redis.url:
    # check the rest of the config without the newer Redis keys.
    print("note: this ssehub build has no Redis backplane; its timeouts and key prefix were left out of the check")
    stripped = os.path.join(workdir, "without-redis-keys.toml")
    open(stripped, "w").writelines(line for line in open(path)
                                   if not line.startswith(("connect_timeout", "command_timeout", "key_prefix")))
    result = run(stripped, {"SSEHUB_BACKPLANE__KIND": "memory"})
if result.returncode != 0:
    raise SystemExit(f"ssehub rejected the rendered config (exit {result.returncode}):\n{result.stderr}")
listen = env.get("SSEHUB_LISTEN")
if listen and f'listen = "{listen}"' not in result.stdout:
    raise SystemExit(f"ssehub does not listen on {listen}:\n{result.stdout}")
if "SSEHUB_BACKPLANE__REDIS__URL" in env and f'url = "{REDIS_STAND_IN}"' not in result.stdout:
    raise SystemExit("ssehub did not take backplane.redis.url from the Deployment's "
                     f"SSEHUB_BACKPLANE__REDIS__URL:\n{result.stdout}")
printed = tomllib.loads(result.stdout).get("mercure", {})
for name in (n for n in env if n.startswith("SSEHUB_MERCURE__")):
    role = name.removeprefix("SSEHUB_MERCURE__").removesuffix("__KEY").lower()
    # --print-config masks a key it read as "***".
    if printed.get(role, {}).get("key") != "***":
        raise SystemExit(f"ssehub did not take mercure.{role}.key from the Deployment's {name}:\n{result.stdout}")
print(f"note: accepted by {binary}")
PY

ssehub_accepts() { # ssehub_accepts RENDER
  local dir
  dir="$(mktemp -d "$WORK/ssehub-config.XXXX")"
  "$PY" "$WORK/ssehub-config.py" "$1" "$SSEHUB_BIN" "$dir"
}

cat >"$WORK/redis-wiring.py" <<'PY'
# With backplane.kind redis: the Redis URL reaches the container as
# SSEHUB_BACKPLANE__REDIS__URL from a Secret that exists in the render (the
# chart's, holding the URL of the values) or is named by the values
# (existingSecret); it is never in the ConfigMap; the ConfigMap carries the
# other Redis settings; several pods roll one at a time.
import base64, sys, tomllib, yaml
render, values_file = sys.argv[1:3]
docs = [d for d in yaml.safe_load_all(open(render)) if d]
values = yaml.safe_load(open(values_file)) if values_file != "-" else {}
values = values or {}
redis = values.get("backplane", {}).get("redis", {})
def kind(name):
    return [d for d in docs if d["kind"] == name]
configmap, deployment = kind("ConfigMap")[0], kind("Deployment")[0]
config = tomllib.loads(configmap["data"]["ssehub.toml"])
backplane = config.get("backplane", {})
if backplane.get("kind") != "redis":
    print("note: memory backplane, nothing to wire")
    raise SystemExit(0)
problems = []
if "url" in backplane.get("redis", {}):
    problems.append("the Redis URL (which may hold a password) is in the ConfigMap")
for key, value_key in (("connect_timeout", "connectTimeout"), ("command_timeout", "commandTimeout"),
                       ("key_prefix", "keyPrefix")):
    if backplane.get("redis", {}).get(key, "") != redis.get(value_key, ""):
        problems.append(f"ConfigMap backplane.redis.{key} = {backplane.get('redis', {}).get(key)!r}, "
                        f"values say {redis.get(value_key, '')!r}")
pod = deployment["spec"]["template"]["spec"]
container = next(c for c in pod["containers"] if c["name"] == "ssehub")
env = [e for e in container.get("env", []) if e["name"] == "SSEHUB_BACKPLANE__REDIS__URL"]
if len(env) != 1 or "secretKeyRef" not in env[0].get("valueFrom", {}):
    problems.append(f"SSEHUB_BACKPLANE__REDIS__URL must come once from a secretKeyRef, got {env}")
else:
    ref = env[0]["valueFrom"]["secretKeyRef"]
    secrets = {s["metadata"]["name"]: s for s in kind("Secret")}
    if redis.get("existingSecret"):
        if (ref["name"], ref["key"]) != (redis["existingSecret"], redis.get("existingSecretKey", "redis-url")):
            problems.append(f"secretKeyRef {ref} is not the existing Secret of the values")
        if any("redis-url" in s.get("data", {}) for s in secrets.values()):
            problems.append("the chart's Secret holds a Redis URL although existingSecret is set")
        wired = f"existing Secret {ref['name']}, key {ref['key']}"
    else:
        secret = secrets.get(ref["name"])
        if secret is None or ref["key"] not in secret.get("data", {}):
            problems.append(f"secretKeyRef {ref} names no key of a Secret in the render")
        elif base64.b64decode(secret["data"][ref["key"]]).decode() != redis.get("url"):
            problems.append("the chart's Secret does not hold backplane.redis.url")
        wired = f"the chart's Secret {ref['name']}, key {ref['key']}"
if backplane.get("redis", {}).get("replicas_ack", 0) != redis.get("replicasAck", 0):
    problems.append(f"ConfigMap backplane.redis.replicas_ack is not the values' replicasAck")
# Sentinel: its settings in the ConfigMap, its password (if any) only from a Secret.
sentinel = redis.get("sentinel", {})
in_config = backplane.get("redis", {}).get("sentinel", {})
if sentinel.get("addresses"):
    if (in_config.get("master_name"), in_config.get("addresses")) != (sentinel.get("masterName"), sentinel["addresses"]):
        problems.append(f"ConfigMap backplane.redis.sentinel {in_config} is not the values' {sentinel}")
    if "password" in in_config:
        problems.append("the sentinels' password is in the ConfigMap")
    env = [e for e in container.get("env", []) if e["name"] == "SSEHUB_BACKPLANE__REDIS__SENTINEL__PASSWORD"]
    if sentinel.get("password") or sentinel.get("existingSecret"):
        ref = env[0].get("valueFrom", {}).get("secretKeyRef") if len(env) == 1 else None
        secret = {s["metadata"]["name"]: s for s in kind("Secret")}.get((ref or {}).get("name"))
        if ref is None:
            problems.append(f"SSEHUB_BACKPLANE__REDIS__SENTINEL__PASSWORD must come once from a secretKeyRef, got {env}")
        elif sentinel.get("existingSecret"):
            if (ref["name"], ref["key"]) != (sentinel["existingSecret"], sentinel.get("existingSecretKey", "sentinel-password")):
                problems.append(f"secretKeyRef {ref} is not the sentinels' existing Secret")
        elif secret is None or base64.b64decode(secret.get("data", {}).get(ref["key"], "")).decode() != sentinel["password"]:
            problems.append("the chart's Secret does not hold backplane.redis.sentinel.password")
    elif env:
        problems.append("a sentinel password variable without a password")
elif in_config:
    problems.append("Sentinel settings in the ConfigMap without sentinel addresses in the values")
autoscaled = bool(kind("HorizontalPodAutoscaler"))
replicas = kind("HorizontalPodAutoscaler")[0]["spec"]["maxReplicas"] if autoscaled else deployment["spec"].get("replicas", 1)
if replicas > 1:
    rolling = deployment["spec"].get("strategy", {}).get("rollingUpdate", {})
    if rolling.get("maxUnavailable") not in (0, "0%"):
        problems.append(f"{replicas} pods but the rolling update may take pods down early: {rolling}")
    if not kind("PodDisruptionBudget"):
        problems.append(f"{replicas} pods and no PodDisruptionBudget")
if problems:
    raise SystemExit("\n".join(problems))
if sentinel.get("addresses"):
    wired += f"; master {sentinel['masterName']!r} through {len(sentinel['addresses'])} sentinels"
print(f"note: Redis URL from {wired} as SSEHUB_BACKPLANE__REDIS__URL; up to {replicas} pods, "
      f"rolling maxUnavailable 0{', PDB' if kind('PodDisruptionBudget') else ''}")
PY

cat >"$WORK/mercure-wiring.py" <<'PY'
# With mercure.enabled: the Mercure JWT keys reach the container only as
# SSEHUB_MERCURE__{PUBLISHER,SUBSCRIBER}_JWT__KEY from the values' existing
# Secret, never in the ConfigMap; the ConfigMap carries the other mercure.*
# values; an HTTPRoute serves /.well-known/mercure with the streams' timeouts.
# Off: no Mercure variable at all.
import sys, tomllib, yaml
render, values_file = sys.argv[1:3]
docs = [d for d in yaml.safe_load_all(open(render)) if d]
values = (yaml.safe_load(open(values_file)) if values_file != "-" else {}) or {}
chart = yaml.safe_load(open("helm/ssehub/values.yaml"))["mercure"]
wanted = {**chart, **values.get("mercure", {})}
configmap = next(d for d in docs if d["kind"] == "ConfigMap")
config = tomllib.loads(configmap["data"]["ssehub.toml"]).get("mercure", {})
container = next(c for d in docs if d["kind"] == "Deployment"
                 for c in d["spec"]["template"]["spec"]["containers"] if c["name"] == "ssehub")
env = {e["name"]: e for e in container.get("env", []) if e["name"].startswith("SSEHUB_MERCURE__")}
problems = []
for key in ("enabled", "anonymous", "protocol_version_compatibility"):
    if config.get(key) != wanted[key]:
        problems.append(f"ConfigMap mercure.{key} = {config.get(key)!r}, values say {wanted[key]!r}")
for role in ("publisher_jwt", "subscriber_jwt"):
    section = config.get(role, {})
    if "key" in section:
        problems.append(f"mercure.{role}.key is in the ConfigMap")
    role_values = {**chart[role], **wanted.get(role, {})}
    for key in ("alg", "issuer", "audience"):
        if section.get(key, "") != role_values[key]:
            problems.append(f"ConfigMap mercure.{role}.{key} = {section.get(key)!r}, values say {role_values[key]!r}")
    name = f"SSEHUB_MERCURE__{role.upper()}__KEY"
    secret_key = {**chart["existingSecretKeys"], **wanted.get("existingSecretKeys", {})}[role]
    if not wanted["enabled"] or not secret_key:
        if name in env:
            problems.append(f"{name} is set although {'mercure is off' if not wanted['enabled'] else 'no Secret key is named'}")
        continue
    ref = env.get(name, {}).get("valueFrom", {}).get("secretKeyRef")
    if ref != {"name": wanted["existingSecret"], "key": secret_key}:
        problems.append(f"{name} must come from the Secret {wanted['existingSecret']}, key {secret_key}: got {env.get(name)}")
routes = [d for d in docs if d["kind"] == "HTTPRoute"]
for route in routes:
    stream_rule = next((r for r in route["spec"]["rules"]
                        if any(m.get("path", {}).get("value") == "/v1/events" for m in r["matches"])), None)
    paths = [m["path"]["value"] for m in (stream_rule or {}).get("matches", [])]
    if wanted["enabled"] != ("/.well-known/mercure" in paths):
        problems.append(f"HTTPRoute's stream rule matches {paths} with mercure.enabled {wanted['enabled']}")
if problems:
    raise SystemExit("\n".join(problems))
if wanted["enabled"]:
    print(f"note: Mercure keys from the Secret {wanted['existingSecret']} ({', '.join(sorted(env))})"
          + (", HTTPRoute streams /.well-known/mercure" if routes else ""))
else:
    print("note: Mercure off, no Mercure key wired")
PY

must_reject() { # must_reject VALUES_FILE
  local file="$1" output
  if output="$(render "$file" "$WORK/bad.yaml" 2>&1)"; then
    echo "rendered without error, but must be rejected"
    return 1
  fi
  "$PY" "$WORK/expect.py" "$file" <<<"$output"
}

cat >"$WORK/values-docs.py" <<'PY'
# Every key in values.yaml is documented with a "# --" comment, on itself or
# on an enclosing key (helm-docs style).
import re, sys
undocumented, stack, documented_next = [], [], False
for number, line in enumerate(open(sys.argv[1]), 1):
    stripped = line.strip()
    if stripped.startswith("# --"):
        documented_next = True
        continue
    if not stripped or stripped.startswith("#"):
        continue
    match = re.match(r"^( *)([A-Za-z_][A-Za-z0-9_.-]*):", line)
    if not match:  # list items and continuation lines belong to their key
        documented_next = False
        continue
    indent = len(match.group(1))
    while stack and stack[-1][0] >= indent:
        stack.pop()
    documented = documented_next or any(d for _, _, d in stack)
    path = ".".join([k for _, k, _ in stack] + [match.group(2)])
    stack.append((indent, match.group(2), documented))
    documented_next = False
    is_parent = line.rstrip().endswith(":")
    if not documented and not is_parent:
        undocumented.append(f"line {number}: {path}")
if undocumented:
    raise SystemExit("undocumented values (add a '# --' comment):\n" + "\n".join(undocumented))
PY

# ------------------------------------------------------------- k8s render ----

# Each directory of plain manifests: k8s/ (the chart's defaults, one pod) and
# k8s/redis/ (three pods on an external Redis), each rendered from its own
# values.yaml. The header names that file, so each generated file says where
# it comes from.
K8S_VARIANTS=(k8s k8s/redis)
k8s_header() { # k8s_header DIR
  echo "# Generated from helm/ssehub with $1/values.yaml by scripts/check-deploy.sh --update-k8s. Do not edit."
}

cat >"$WORK/split.py" <<'PY'
# Splits a helm template output into one file per template, for k8s/, and
# writes the kustomization.yaml that lists them. The Secrets the Deployment
# reads are made by kustomize's secretGenerator from files the user writes
# (never committed): the publisher keys always, the Redis URL when the
# Deployment reads one.
import os, re, sys
render, out_dir, header, here = sys.argv[1:5]
files = {}
for chunk in re.split(r"^---\n", open(render).read(), flags=re.M):
    match = re.match(r"# Source: [^/]+/templates/(\S+)\n", chunk)
    if not match:
        continue
    name = match.group(1).replace("/", "-")
    files.setdefault(name, []).append(chunk[match.end():].rstrip("\n") + "\n")
order = []
for name, docs in files.items():
    with open(os.path.join(out_dir, name), "w") as f:
        f.write(header + "\n---\n" + "---\n".join(docs))
    order.append(name)
redis = "SSEHUB_BACKPLANE__REDIS__URL" in "".join(files.get("deployment.yaml", []))
with open(os.path.join(out_dir, "kustomization.yaml"), "w") as f:
    f.write(header + "\n")
    f.write(f"# Usage: write the publisher keys (one per line) to {here}/publish-keys")
    f.write(f"\n# and the Redis URL as `redis-url=redis://...` to {here}/redis.env, then\n" if redis else ", then\n")
    f.write(f"#   kubectl apply -k {here}/\n")
    f.write("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n")
    f.write("namespace: ssehub\n")
    f.write("resources:\n" + "".join(f"  - {name}\n" for name in order))
    f.write("# The Secrets the Deployment reads (auth.existingSecret"
            + (" and backplane.redis.existingSecret" if redis else "")
            + f" in\n# {here}/values.yaml). kustomize appends a content hash to their names and\n"
            "# rewrites the references, so changing them rolls the pods.\n")
    f.write("secretGenerator:\n  - name: ssehub-publish-keys\n    files:\n      - publish-keys\n")
    if redis:
        # An env file rather than a file per key: `echo URL > file` would put
        # its newline into the URL.
        f.write("  - name: ssehub-redis\n    envs:\n      - redis.env\n")
PY

render_k8s() { # render_k8s VARIANT OUT_DIR
  local variant="$1" out="$2"
  mkdir -p "$out"
  local rendered="$WORK/render-${variant//\//-}.yaml"
  render "$variant/values.yaml" "$rendered" --skip-tests &&
    "$PY" "$WORK/split.py" "$rendered" "$out" "$(k8s_header "$variant")" "$variant"
}

k8s_in_sync() { # k8s_in_sync VARIANT
  local variant="$1" fresh="$WORK/fresh-${1//\//-}"
  rm -rf "$fresh"
  render_k8s "$variant" "$fresh" || return 1
  local status=0 file
  for file in "$fresh"/*; do
    if ! diff -u "$variant/$(basename "$file")" "$file"; then
      status=1
    fi
  done
  # Generated files whose template no longer renders.
  for file in "$variant"/*.yaml; do
    if head -n 1 "$file" | grep -qF "$(k8s_header "$variant")" && [[ ! -e "$fresh/$(basename "$file")" ]]; then
      echo "stale generated file: $file"
      status=1
    fi
  done
  if [[ $status -ne 0 ]]; then
    echo "$variant/ differs from the chart's render: run scripts/check-deploy.sh --update-k8s"
  fi
  return $status
}

kustomize_build() { # kustomize_build VARIANT
  local variant="$1" dir="$WORK/kustomize-${1//\//-}"
  rm -rf "$dir"
  cp -r "$variant" "$dir"
  printf 'example-publisher-key-0123456789\n' >"$dir/publish-keys"
  printf 'redis-url=redis://:example-password@redis.redis.svc:6379/0\n' >"$dir/redis.env"
  "$KUBECTL" kustomize "$dir" >"$dir.yaml" || return 1
  # The Deployment must read the generated (hash-suffixed) Secrets.
  "$PY" - "$dir.yaml" <<'PY' || return 1
import base64, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
generated = {d["metadata"]["name"].rsplit("-", 1)[0]: d["metadata"]["name"] for d in docs if d["kind"] == "Secret"}
deployment = next(d for d in docs if d["kind"] == "Deployment")
pod = deployment["spec"]["template"]["spec"]
volumes = pod["volumes"]
mounted = [v["secret"]["secretName"] for v in volumes if "secret" in v] + [
    source["secret"]["name"]
    for v in volumes if "projected" in v
    for source in v["projected"]["sources"] if "secret" in source
]
if mounted != [generated["ssehub-publish-keys"]]:
    raise SystemExit(f"the Deployment mounts {mounted}, kustomize generated {generated}")
refs = [e["valueFrom"]["secretKeyRef"] for c in pod["containers"] for e in c.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})]
for ref in refs:
    if ref["name"] not in generated.values():
        raise SystemExit(f"the Deployment reads {ref}, kustomize generated {generated}")
secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
for ref in refs:
    url = base64.b64decode(secrets[ref["name"]].get("data", {}).get(ref["key"], "")).decode()
    if url != "redis://:example-password@redis.redis.svc:6379/0":
        raise SystemExit(f"the Deployment reads {ref}, which holds {url!r}, not the URL of redis.env")
print(f"note: kustomize generated {', '.join(sorted(generated.values()))} and the Deployment reads "
      + ("them" if refs else "the keys Secret"))
PY
  kubernetes_validate "$dir.yaml" "$KUBE_NEWEST"
}

# ----------------------------------------------------------------- docker ----

dockerfile_context() {
  "$PY" - <<'PY'
# The Dockerfile builds from a stub workspace first: every workspace member's
# manifest and every declared bench must be there, and sources the crate pulls
# in at compile time must lie in what the Dockerfile copies.
import fnmatch, glob, os, re, sys, tomllib
problems = []
dockerfile = open("Dockerfile").read()
manifest = tomllib.load(open("Cargo.toml", "rb"))
for member in manifest.get("workspace", {}).get("members", []):
    if member != "." and f"COPY {member}/Cargo.toml" not in dockerfile:
        problems.append(f"workspace member {member}: its Cargo.toml is not copied before the dependency build")
for bench in manifest.get("bench", []):
    path = bench.get("path", f"benches/{bench['name']}.rs")
    if path not in dockerfile:
        problems.append(f"bench {bench['name']}: no stub {path} in the dependency build")
for bin_target in manifest.get("bin", []):
    path = bin_target.get("path", f"src/bin/{bin_target['name']}.rs")
    if not path.startswith("src/"):
        problems.append(f"bin {bin_target['name']} at {path}: outside src/, which is all the Dockerfile copies")
# Declared (not auto-discovered) tests and examples must exist for cargo to
# load the manifest at all, but tests/ and examples/ are not in the image build.
for kind, default_dir in (("test", "tests"), ("example", "examples")):
    for target in manifest.get(kind, []):
        path = target.get("path", f"{default_dir}/{target['name']}.rs")
        if not path.startswith(("src/", "benches/")):
            problems.append(f"[[{kind}]] {target['name']} at {path}: declared in Cargo.toml, so cargo needs "
                            "the file, but the Dockerfile does not copy it (add a stub or COPY)")
if os.path.exists("build.rs") and "build.rs" not in dockerfile:
    problems.append("build.rs exists but the Dockerfile does not copy it")
copied = ("src/", "benches/")
for source in glob.glob("src/**/*.rs", recursive=True) + glob.glob("benches/**/*.rs", recursive=True):
    for target in re.findall(r'include_(?:str|bytes)!\(\s*"([^"]+)"', open(source).read()):
        resolved = os.path.normpath(os.path.join(os.path.dirname(source), target))
        if not resolved.startswith(copied):
            problems.append(f"{source} includes {target} ({resolved}), which the image build does not copy")
ignored = [l.strip() for l in open(".dockerignore") if l.strip() and not l.startswith("#")]
for line in dockerfile.splitlines():
    match = re.match(r"COPY (?!--from)(.+) \S+$", line.strip())
    if match:
        for source in match.group(1).split():
            if not os.path.exists(source):
                problems.append(f"COPY {source}: no such path")
            if any(fnmatch.fnmatch(source.rstrip("/"), pattern.rstrip("/")) for pattern in ignored):
                problems.append(f"COPY {source}: excluded by .dockerignore")
if problems:
    raise SystemExit("\n".join(problems))
PY
}

# --------------------------------------------------------------- releases ----

actionlint_catches() {
  # The linter is not a no-op: a workflow with an unknown input and an
  # untrusted expression in a script must be refused, for both reasons.
  local bad="$WORK/bad-workflow.yml" output
  cat >"$bad" <<'YAML'
"on": push
jobs:
  bad:
    runs-on: ubuntu-24.04
    steps:
      - uses: actions/checkout@v4
        with:
          fetch-dept: 1
      - run: echo "${{ github.event.head_commit.message }}"
YAML
  if output="$("$ACTIONLINT" -no-color "$bad" 2>&1)"; then
    echo "actionlint accepted a broken workflow"
    return 1
  fi
  if ! grep -q 'input "fetch-dept" is not defined' <<<"$output" || ! grep -q 'potentially untrusted' <<<"$output"; then
    echo "$output"
    return 1
  fi
}

release_image_repository() {
  # The workflow pushes the image where the chart pulls it from.
  local chart workflow
  chart="$("$PY" -c 'import yaml; print(yaml.safe_load(open("helm/ssehub/values.yaml"))["image"]["repository"])')"
  workflow="$("$PY" -c 'import yaml; print(yaml.safe_load(open(".github/workflows/release.yml"))["env"]["IMAGE"])')"
  if [[ "$chart" != "$workflow" ]]; then
    echo "release.yml pushes to $workflow, the chart pulls $chart"
    return 1
  fi
  echo "note: release.yml pushes $workflow, the chart's image.repository"
}

release_dry_run() {
  # What release.yml does before it publishes, offline: the tag check for the
  # current version, the release text, and helm package.
  local version notes dest="$WORK/release"
  version="$(bash scripts/check-versions.sh)" || return 1
  bash scripts/check-versions.sh "v$version" >/dev/null || return 1
  if bash scripts/check-versions.sh "v$version.1" >/dev/null 2>&1; then
    echo "a tag that names another version was accepted"
    return 1
  fi
  notes="$(bash scripts/check-versions.sh --notes)"
  [[ -n "$notes" ]] || { echo "CHANGELOG.md: the $version section is empty"; return 1; }
  mkdir -p "$dest"
  "$HELM" package "$CHART" --destination "$dest" >/dev/null || return 1
  local package chart_version
  chart_version="$("$PY" -c 'import yaml; print(yaml.safe_load(open("helm/ssehub/Chart.yaml"))["version"])')"
  package="$dest/ssehub-$chart_version.tgz"
  [[ -f "$package" ]] || { echo "helm package made $(ls "$dest"), expected ssehub-$chart_version.tgz"; return 1; }
  # The packaged chart installs this version's image and holds no test values.
  tar -xzf "$package" -C "$dest" ssehub/Chart.yaml || return 1
  grep -qx "appVersion: \"\?$version\"\?" "$dest/ssehub/Chart.yaml" ||
    { echo "the packaged chart's appVersion is not $version"; return 1; }
  echo "note: v$version: versions agree, release text $(wc -l <<<"$notes") lines, helm package ssehub-$chart_version.tgz ($(du -k "$package" | cut -f1) KiB)"
}

licences() {
  # Cargo.toml's "MIT OR Apache-2.0" and the texts that make it true.
  local status=0
  grep -qx 'license = "MIT OR Apache-2.0"' Cargo.toml || { echo "Cargo.toml's license is no longer MIT OR Apache-2.0"; status=1; }
  if ! grep -q '^MIT License$' LICENSE-MIT || ! grep -q 'Copyright (c) [0-9]* the ssehub developers' LICENSE-MIT; then
    echo "LICENSE-MIT: not the MIT text with the project's copyright line"
    status=1
  fi
  if ! grep -q 'Version 2.0, January 2004' LICENSE-APACHE || ! grep -q 'END OF TERMS AND CONDITIONS' LICENSE-APACHE; then
    echo "LICENSE-APACHE: not the full Apache License 2.0"
    status=1
  fi
  grep -q 'org.opencontainers.image.licenses="MIT OR Apache-2.0"' Dockerfile || { echo "the image's licence label differs"; status=1; }
  return $status
}

# ------------------------------------------------------------------ nginx ----

nginx_conf() { # nginx_conf NAME: renders nginx.conf + ssehub.conf into a prefix, runs nginx -t
  local prefix="$WORK/nginx-$1"
  mkdir -p "$prefix"
  cp nginx/nginx.conf "$prefix/nginx.conf"
  sed -e 's/@SSEHUB_UPSTREAM@/127.0.0.1:8080/' -e 's/@LISTEN_PORT@/127.0.0.1:18080/' \
    nginx/ssehub.conf >"$prefix/ssehub.conf"
  if grep -n '@[A-Z_]*@' "$prefix/ssehub.conf" "$prefix/nginx.conf"; then
    echo "placeholders left after substitution"
    return 1
  fi
  "$NGINX" -t -q -e "$prefix/error.log" -p "$prefix/" -c "$prefix/nginx.conf"
}

nginx_test_hooks() {
  # The integration tests render variants by replacing these exact lines
  # (nginx/README.md); each must occur exactly once outside comments.
  local needle count status=0
  for needle in '@SSEHUB_UPSTREAM@' '@LISTEN_PORT@' 'proxy_buffering off;' 'proxy_read_timeout 120s;'; do
    count="$(grep -v '^[[:space:]]*#' nginx/ssehub.conf | grep -cF -- "$needle")"
    if [[ "$count" -ne 1 ]]; then
      echo "nginx/ssehub.conf: '$needle' occurs $count times, expected once"
      status=1
    fi
  done
  # The variant with buffering on and a short read timeout must still be valid.
  local prefix="$WORK/nginx-variant"
  mkdir -p "$prefix"
  cp nginx/nginx.conf "$prefix/nginx.conf"
  sed -e 's/@SSEHUB_UPSTREAM@/127.0.0.1:8080/' -e 's/@LISTEN_PORT@/127.0.0.1:18080/' \
    -e 's/proxy_buffering off;/proxy_buffering on;/' -e 's/proxy_read_timeout 120s;/proxy_read_timeout 3s;/' \
    nginx/ssehub.conf >"$prefix/ssehub.conf"
  "$NGINX" -t -q -e "$prefix/error.log" -p "$prefix/" -c "$prefix/nginx.conf" || status=1
  return $status
}

nginx_snippet() {
  local prefix="$WORK/nginx-snippet"
  mkdir -p "$prefix"
  cat >"$prefix/nginx.conf" <<EOF
pid nginx.pid;
error_log error.log;
events {}
http {
    client_body_temp_path client_body_temp;
    proxy_temp_path proxy_temp;
    fastcgi_temp_path fastcgi_temp;
    uwsgi_temp_path uwsgi_temp;
    scgi_temp_path scgi_temp;
    access_log off;
    upstream ssehub {
        server 127.0.0.1:8080;
        keepalive 32;
        keepalive_timeout 60s;
    }
    server {
        listen 127.0.0.1:18081;
        # An existing server's own settings, which the snippet must not depend on.
        proxy_set_header X-Existing-Server yes;
        include $ROOT/nginx/snippet-location.conf;
    }
}
EOF
  "$NGINX" -t -q -e "$prefix/error.log" -p "$prefix/" -c "$prefix/nginx.conf"
}

nginx_prefix_snippet() {
  # snippet-prefix.conf (ssehub under /ssehub/) beside a site of its own.
  local prefix="$WORK/nginx-prefix"
  mkdir -p "$prefix"
  cat >"$prefix/nginx.conf" <<EOF
pid nginx.pid;
error_log error.log;
events {}
http {
    client_body_temp_path client_body_temp;
    proxy_temp_path proxy_temp;
    fastcgi_temp_path fastcgi_temp;
    uwsgi_temp_path uwsgi_temp;
    scgi_temp_path scgi_temp;
    access_log off;
    upstream ssehub {
        server 127.0.0.1:8080;
        keepalive 32;
        keepalive_timeout 60s;
    }
    server {
        listen 127.0.0.1:18082;
        location / { return 200 "the site's own pages"; }
        include $ROOT/nginx/snippet-prefix.conf;
    }
}
EOF
  "$NGINX" -t -q -e "$prefix/error.log" -p "$prefix/" -c "$prefix/nginx.conf"
}

nginx_sse_settings() {
  # Every nginx file carries the settings an event stream needs, and serves
  # the Mercure hub's stream in the same location (its ?authorization= token
  # kept out of error.log like ?access_token=).
  local file needle status=0
  for file in nginx/ssehub.conf nginx/snippet-location.conf nginx/snippet-prefix.conf; do
    # shellcheck disable=SC2016 # nginx variables, literally
    for needle in 'proxy_http_version 1.1;' 'proxy_set_header Connection "";' 'proxy_buffering off;' \
      'proxy_cache off;' 'gzip off;' 'proxy_read_timeout 120s;' 'client_max_body_size 1m;' \
      'X-Forwarded-For $proxy_add_x_forwarded_for;' 'X-Real-IP $remote_addr;' 'X-Forwarded-Proto $scheme;' \
      'event-stream|\.well-known/mercure)$' 'if ($arg_authorization) {'; do
      if ! grep -qF -- "$needle" "$file"; then
        echo "$file: missing '$needle'"
        status=1
      fi
    done
  done
  # client_max_body_size must match the chart's limits.max_body_bytes (1 MiB).
  local body
  body="$("$PY" -c 'import yaml; print(yaml.safe_load(open("helm/ssehub/values.yaml"))["config"]["limits"]["max_body_bytes"])')"
  if [[ "$body" != "1048576" ]]; then
    echo "limits.max_body_bytes is $body in the chart; nginx's client_max_body_size 1m says 1048576"
    status=1
  fi
  return $status
}

no_machine_paths() {
  # Committed deployment files must not name paths of one machine (the
  # pattern is split so that this line does not match itself). The stand-in
  # base images' script names paths inside an image (nonroot's home), not here.
  local pattern='(/wo''rk/|/ro''ot/|/ho''me/)'
  ! grep -rnE --exclude=stand-in-bases.sh "$pattern" nginx Dockerfile .dockerignore helm k8s .yamllint.yaml .github \
    scripts/install-deploy-tools.sh scripts/check-deploy.sh scripts/rolling-restart.sh \
    scripts/scale-out.sh scripts/build-image.sh scripts/check-versions.sh scripts/lib CHANGELOG.md
}

# ------------------------------------------------------------------ run ------

if $UPDATE_K8S; then
  for variant in "${K8S_VARIANTS[@]}"; do
    for file in "$variant"/*.yaml; do
      head -n 1 "$file" | grep -qF "$(k8s_header "$variant")" && rm -f "$file"
    done
    render_k8s "$variant" "$variant" || { echo "FAIL could not render $variant/"; exit 1; }
    echo "$variant/ regenerated from the chart"
  done
fi

echo "== Helm chart ($("$HELM" version --short); kubernetes-validate $KUBE_MIN and $KUBE_NEWEST)"
check "values.yaml: every value documented with '# --'" "$PY" "$WORK/values-docs.py" "$CHART/values.yaml"
check "helm lint --strict (default values)" "$HELM" lint --strict "$CHART"

value_sets=("-")
for file in "$CHART"/ci/*-values.yaml "$CHART"/examples/*.yaml; do
  value_sets+=("$file")
done
for values in "${value_sets[@]}"; do
  if [[ "$values" == "-" ]]; then
    label="default values"
    out="$WORK/render-default.yaml"
  else
    label="${values#"$CHART"/}"
    out="$WORK/render-$(basename "$values" .yaml).yaml"
  fi
  [[ "$values" != "-" ]] && check "helm lint --strict -f $label" "$HELM" lint --strict "$CHART" -f "$values"
  check "helm template ($label)" render "$values" "$out"
  [[ -s "$out" ]] || continue
  check "kubernetes-validate --strict $KUBE_MIN ($label)" kubernetes_validate "$out" "$KUBE_MIN"
  check "kubernetes-validate --strict $KUBE_NEWEST ($label)" kubernetes_validate "$out" "$KUBE_NEWEST"
  crds="$("$PY" "$WORK/kinds.py" "$out" | grep -xE "$(tr ' ' '|' <<<"$CRD_KINDS")" | sort -u | paste -sd ' ')"
  if [[ -n "$crds" ]]; then
    check "CRD schema: $crds ($label)" validate_crds "$out"
  fi
  check "grace period covers preStop + drain ($label)" "$PY" "$WORK/grace.py" "$out"
  if grep -q 'SSEHUB_BACKPLANE__REDIS__URL' "$out"; then
    check "Redis URL wired from a Secret, pods roll one at a time ($label)" "$PY" "$WORK/redis-wiring.py" "$out" "$values"
  fi
  check "Mercure keys wired from a Secret only ($label)" "$PY" "$WORK/mercure-wiring.py" "$out" "$values"
  if [[ -n "$SSEHUB_BIN" ]]; then
    check "ssehub --print-config accepts the rendered config ($label)" ssehub_accepts "$out"
  fi
done
if [[ -z "$SSEHUB_BIN" ]]; then
  echo "note: no ssehub binary (SSEHUB_BIN, target/*/ssehub): rendered configs not checked by ssehub itself"
fi

for file in "$CHART"/ci/bad/*.yaml; do
  check "rejected: ci/bad/$(basename "$file")" must_reject "$file"
done

echo "== Plain manifests (${K8S_VARIANTS[*]})"
for variant in "${K8S_VARIANTS[@]}"; do
  check "$variant/ equals the chart's render with $variant/values.yaml" k8s_in_sync "$variant"
  check "kubectl kustomize $variant/ builds and validates ($KUBE_NEWEST)" kustomize_build "$variant"
done
check "Redis URL wired from a Secret, pods roll one at a time (k8s/redis)" \
  "$PY" "$WORK/redis-wiring.py" "$WORK/render-k8s-redis.yaml" k8s/redis/values.yaml

echo "== Container"
check "hadolint Dockerfile" "$HADOLINT" --no-color Dockerfile
check "Dockerfile copies what the workspace needs" dockerfile_context

echo "== Scripts"
SCRIPTS=(scripts/install-deploy-tools.sh scripts/check-deploy.sh scripts/rolling-restart.sh
  scripts/scale-out.sh scripts/failover.sh scripts/lib/replicas.sh scripts/check-docs.sh
  scripts/build-image.sh scripts/lib/stand-in-bases.sh scripts/check-versions.sh)
check "shellcheck ${SCRIPTS[*]}" "$SHELLCHECK" -x "${SCRIPTS[@]}"

echo "== Releases"
check "actionlint .github/workflows/ (with shellcheck on run: scripts)" \
  "$ACTIONLINT" -shellcheck "$SHELLCHECK" -no-color .github/workflows/*.yml
check "actionlint refuses a broken workflow (self-test)" actionlint_catches
check "release.yml pushes to the chart's image.repository" release_image_repository
check "Cargo.toml, chart appVersion and CHANGELOG.md agree; dry run: tag check, release text, helm package" release_dry_run
check "LICENSE-MIT and LICENSE-APACHE match Cargo.toml's licence" licences

echo "== YAML"
check "yamllint --strict ." "$YAMLLINT" --strict .

echo "== nginx ($("$NGINX" -v 2>&1 | sed 's/.*: //'))"
check "nginx -t nginx/nginx.conf + nginx/ssehub.conf" nginx_conf main
check "nginx -t nginx/snippet-location.conf in an existing server" nginx_snippet
check "nginx -t nginx/snippet-prefix.conf under /ssehub/ in an existing server" nginx_prefix_snippet
check "nginx: test hooks present, buffering-on variant valid" nginx_test_hooks
check "nginx: SSE settings in every file, body limit = max_body_bytes" nginx_sse_settings

echo "== Repository hygiene"
check "no machine-specific absolute paths in deployment files" no_machine_paths

echo
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
