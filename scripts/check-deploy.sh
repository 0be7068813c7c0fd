#!/usr/bin/env bash
# Static checks of everything ssehub ships for deployment: the Helm chart, the
# plain manifests in k8s/, the Dockerfile and the nginx configs.
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
import os, subprocess, sys, yaml
render, binary, workdir = sys.argv[1:4]
docs = [d for d in yaml.safe_load_all(open(render)) if d]
configmap = next(d for d in docs if d["kind"] == "ConfigMap")
deployment = next(d for d in docs if d["kind"] == "Deployment")
container = next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "ssehub")
path = os.path.join(workdir, "ssehub.toml")
open(path, "w").write(configmap["data"]["ssehub.toml"])
env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
for item in container.get("env", []):
    # Values from Secrets are not in the render: stand-ins of the right shape.
    env[item["name"]] = item.get("value", "redis://127.0.0.1:6379/0" if "REDIS" in item["name"] else "x")
args = container["args"]
assert args[:2] == ["--config", "/etc/ssehub/ssehub.toml"], args
def run(extra):
    return subprocess.run([binary, "--config", path, "--print-config"], env={**env, **extra},
                          capture_output=True, text=True, timeout=30)
result = run({})
if result.returncode != 0 and "not available in this build" in result.stderr:
    print("note: this ssehub build has no Redis backplane; checked with backplane.kind = memory instead")
    result = run({"SSEHUB_BACKPLANE__KIND": "memory"})
if result.returncode != 0:
    raise SystemExit(f"ssehub rejected the rendered config (exit {result.returncode}):\n{result.stderr}")
listen = env.get("SSEHUB_LISTEN")
if listen and f'listen = "{listen}"' not in result.stdout:
    raise SystemExit(f"ssehub does not listen on {listen}:\n{result.stdout}")
print(f"note: accepted by {binary}")
PY

ssehub_accepts() { # ssehub_accepts RENDER
  local dir
  dir="$(mktemp -d "$WORK/ssehub-config.XXXX")"
  "$PY" "$WORK/ssehub-config.py" "$1" "$SSEHUB_BIN" "$dir"
}

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

K8S_HEADER="# Generated from helm/ssehub with k8s/values.yaml by scripts/check-deploy.sh --update-k8s. Do not edit."

cat >"$WORK/split.py" <<'PY'
# Splits a helm template output into one file per template, for k8s/, and
# writes the kustomization.yaml that lists them.
import os, re, sys
render, out_dir, header = sys.argv[1], sys.argv[2], sys.argv[3]
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
with open(os.path.join(out_dir, "kustomization.yaml"), "w") as f:
    f.write(header + "\n")
    f.write("# Usage: write the publisher keys (one per line) to k8s/publish-keys, then\n"
            "#   kubectl apply -k k8s/\n")
    f.write("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n")
    f.write("namespace: ssehub\n")
    f.write("resources:\n" + "".join(f"  - {name}\n" for name in order))
    f.write("# The publisher keys Secret the Deployment mounts (auth.existingSecret in\n"
            "# k8s/values.yaml). kustomize appends a content hash to its name and rewrites\n"
            "# the reference, so changing the keys rolls the pods.\n")
    f.write("secretGenerator:\n  - name: ssehub-publish-keys\n    files:\n      - publish-keys\n")
PY

render_k8s() { # render_k8s OUT_DIR
  local out="$1"
  mkdir -p "$out"
  render k8s/values.yaml "$WORK/k8s-render.yaml" --skip-tests && "$PY" "$WORK/split.py" "$WORK/k8s-render.yaml" "$out" "$K8S_HEADER"
}

k8s_in_sync() {
  rm -rf "$WORK/k8s"
  render_k8s "$WORK/k8s" || return 1
  local status=0 file
  for file in "$WORK"/k8s/*; do
    if ! diff -u "k8s/$(basename "$file")" "$file"; then
      status=1
    fi
  done
  # Generated files whose template no longer renders.
  for file in k8s/*.yaml; do
    if head -n 1 "$file" | grep -qF "$K8S_HEADER" && [[ ! -e "$WORK/k8s/$(basename "$file")" ]]; then
      echo "stale generated file: $file"
      status=1
    fi
  done
  if [[ $status -ne 0 ]]; then
    echo "k8s/ differs from the chart's render: run scripts/check-deploy.sh --update-k8s"
  fi
  return $status
}

kustomize_build() {
  rm -rf "$WORK/kustomize"
  cp -r k8s "$WORK/kustomize"
  printf 'example-publisher-key-0123456789\n' >"$WORK/kustomize/publish-keys"
  "$KUBECTL" kustomize "$WORK/kustomize" >"$WORK/kustomized.yaml" || return 1
  # The Deployment must mount the generated (hash-suffixed) Secret.
  "$PY" - "$WORK/kustomized.yaml" <<'PY' || return 1
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
secret = next(d for d in docs if d["kind"] == "Secret")["metadata"]["name"]
deployment = next(d for d in docs if d["kind"] == "Deployment")
volumes = deployment["spec"]["template"]["spec"]["volumes"]
mounted = [v["secret"]["secretName"] for v in volumes if "secret" in v] + [
    source["secret"]["name"]
    for v in volumes if "projected" in v
    for source in v["projected"]["sources"] if "secret" in source
]
if mounted != [secret]:
    raise SystemExit(f"the Deployment mounts {mounted}, kustomize generated {secret}")
print(f"note: kustomize generated Secret {secret} and the Deployment mounts it")
PY
  kubernetes_validate "$WORK/kustomized.yaml" "$KUBE_NEWEST"
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
        keepalive_timeout 25s;
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
        keepalive_timeout 25s;
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
  # Every nginx file carries the settings an event stream needs.
  local file needle status=0
  for file in nginx/ssehub.conf nginx/snippet-location.conf nginx/snippet-prefix.conf; do
    # shellcheck disable=SC2016 # nginx variables, literally
    for needle in 'proxy_http_version 1.1;' 'proxy_set_header Connection "";' 'proxy_buffering off;' \
      'proxy_cache off;' 'gzip off;' 'proxy_read_timeout 120s;' 'client_max_body_size 1m;' \
      'X-Forwarded-For $proxy_add_x_forwarded_for;' 'X-Real-IP $remote_addr;' 'X-Forwarded-Proto $scheme;'; do
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
  # pattern is split so that this line does not match itself).
  local pattern='(/wo''rk/|/ro''ot/|/ho''me/)'
  ! grep -rnE "$pattern" nginx Dockerfile .dockerignore helm k8s .yamllint.yaml \
    scripts/install-deploy-tools.sh scripts/check-deploy.sh
}

# ------------------------------------------------------------------ run ------

if $UPDATE_K8S; then
  for file in k8s/*.yaml; do
    head -n 1 "$file" | grep -qF "$K8S_HEADER" && rm -f "$file"
  done
  render_k8s k8s || { echo "FAIL could not render k8s/"; exit 1; }
  echo "k8s/ regenerated from the chart"
fi

echo "== Helm chart ($("$HELM" version --short); kubernetes-validate $KUBE_MIN and $KUBE_NEWEST)"
check "values.yaml: every value documented with '# --'" "$PY" "$WORK/values-docs.py" "$CHART/values.yaml"
check "helm lint --strict (default values)" "$HELM" lint --strict "$CHART"

value_sets=("-")
for file in "$CHART"/ci/*-values.yaml; do
  value_sets+=("$file")
done
for values in "${value_sets[@]}"; do
  if [[ "$values" == "-" ]]; then
    label="default values"
    out="$WORK/render-default.yaml"
  else
    label="$(basename "$values")"
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

echo "== Plain manifests (k8s/)"
check "k8s/ equals the chart's render with k8s/values.yaml" k8s_in_sync
check "kubectl kustomize k8s/ builds and validates ($KUBE_NEWEST)" kustomize_build

echo "== Container"
check "hadolint Dockerfile" "$HADOLINT" --no-color Dockerfile
check "Dockerfile copies what the workspace needs" dockerfile_context

echo "== Scripts"
check "shellcheck scripts/install-deploy-tools.sh scripts/check-deploy.sh" \
  "$SHELLCHECK" scripts/install-deploy-tools.sh scripts/check-deploy.sh

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
