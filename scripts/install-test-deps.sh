#!/usr/bin/env bash
# Installs what the test suite needs and the machine lacks:
#   - nginx (Debian) for the tests that put nginx in front of ssehub;
#   - chromium and chromium-driver (Debian) for the browser EventSource test;
#   - redis-server, redis-tools and redis-sentinel (Debian) for the Redis
#     backplane tests, the several-replica tests, the rolling restart and
#     the Sentinel failover proof;
#   - buildah and debootstrap (Debian) for the container image build
#     (scripts/build-image.sh), with curl, iproute2 and binutils that its
#     checks use;
#   - cargo-nextest (crates.io) if missing;
#   - mdbook (crates.io, the version pinned below) for the book in docs/, if
#     missing or another version;
#   - the deployment tools (helm, kubernetes-validate, linters) via
#     scripts/install-deploy-tools.sh, cached in .tools/;
#   - schemathesis for the API fuzzing (scripts/fuzz/api.sh), pinned with
#     everything it pulls in by scripts/fuzz/requirements.txt, in its own
#     venv (.tools/fuzz-venv, or FUZZ_VENV).
# Idempotent; runs unattended as root on Debian.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export DEBIAN_FRONTEND=noninteractive

missing=()
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || missing+=(nginx-light)
# A real browser for the EventSource test (Debian's builds; no download).
[[ -x /usr/bin/chromium ]] || missing+=(chromium)
[[ -x /usr/bin/chromedriver ]] || missing+=(chromium-driver)
# The Redis backplane tests start their own servers (Debian's 7.x).
[[ -x /usr/bin/redis-server ]] || missing+=(redis-server)
[[ -x /usr/bin/redis-cli ]] || missing+=(redis-tools)
[[ -x /usr/bin/redis-sentinel ]] || missing+=(redis-sentinel)
# The image build: daemonless buildah, base-image stand-ins from debootstrap.
[[ -x /usr/bin/buildah ]] || missing+=(buildah)
[[ -x /usr/sbin/debootstrap ]] || missing+=(debootstrap)
command -v curl >/dev/null 2>&1 || missing+=(curl)
[[ -x /usr/sbin/ip || -x /usr/bin/ip || -x /sbin/ip ]] || missing+=(iproute2)
command -v readelf >/dev/null 2>&1 || missing+=(binutils)
if ((${#missing[@]})); then
  echo "install-test-deps: apt-get install ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian starts the packaged nginx and Redis as services; the tests run their own.
if command -v systemctl >/dev/null 2>&1; then
  systemctl disable --now nginx >/dev/null 2>&1 || true
  systemctl disable --now redis-server >/dev/null 2>&1 || true
  systemctl disable --now redis-sentinel >/dev/null 2>&1 || true
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "install-test-deps: cargo install cargo-nextest"
  cargo install --locked cargo-nextest
fi

# The book in docs/ (scripts/check-docs.sh builds it). Pinned: a new mdbook may
# render ids or links differently. 0.5.4 needs Rust 1.88, as ssehub does; only
# the `search` feature, since the docs are built, not served.
MDBOOK_VERSION=0.5.4
MDBOOK="$(command -v mdbook || echo "${CARGO_HOME:-$HOME/.cargo}/bin/mdbook")"
if [[ "$("$MDBOOK" --version 2>/dev/null)" != "mdbook v$MDBOOK_VERSION" ]]; then
  echo "install-test-deps: cargo install mdbook $MDBOOK_VERSION"
  cargo install --locked mdbook --version "$MDBOOK_VERSION" --no-default-features --features search
fi

bash "$ROOT/scripts/install-deploy-tools.sh"

# The API fuzzer, in a venv of its own so its pins never meet the deploy
# linters'. Reinstalled only when the requirements file changes.
install_fuzz_tools() {
  local venv="${FUZZ_VENV:-$ROOT/.tools/fuzz-venv}"
  local requirements="$ROOT/scripts/fuzz/requirements.txt"
  local stamp="$venv/.requirements"
  if [[ -x "$venv/bin/st" && -f "$stamp" ]] && cmp -s "$stamp" "$requirements"; then
    return
  fi
  echo "install-test-deps: schemathesis into $venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    --requirement "$requirements"
  cp "$requirements" "$stamp"
}
install_fuzz_tools
