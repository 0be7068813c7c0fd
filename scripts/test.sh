#!/usr/bin/env bash
# Runs every test of ssehub, installing what the tests need first.
#
#   bash scripts/test.sh
#
# Steps (each prints a header; the first failure stops the run):
#   1. install test dependencies (Debian packages, cargo-nextest, deploy tools)
#   2. build the workspace once (debug), reused by every later step
#   3. cargo fmt --check, cargo clippy -D warnings, imports that run one
#      way with no file over 600 lines (scripts/check-imports.sh), and the
#      docs: the book in docs/ builds with mdbook, every link and anchor of
#      every Markdown file resolves (scripts/check-docs.sh)
#   4. unit and integration tests (cargo nextest): hub, HTTP API, drain of
#      the real binary, nginx in front of ssehub
#   5. deployment checks: Helm chart, k8s/, Dockerfile, nginx configs
#   6. load-test harness smoke run against ssehub: 0 lost, 0 duplicated,
#      0 out of order
#   7. fuzz: schemathesis against the binary's /openapi.json, every
#      non-streaming operation, with and without publish auth: static keys and
#      JWTs (valid, wrong topic, expired); and the Mercure routes with
#      mercure.enabled (~5 min)
#   8. churn: 5,000 subscribe/disconnect cycles against one process; memory,
#      descriptors and subscriber slots come back (~30 s)
#   9. the rolling-restart proof, CI size: nginx in front of 3 replicas on
#      one Redis, each restarted under load; nothing lost, duplicated or
#      reordered, no gap frame, no reconnect burst
#  10. the Sentinel failover proof, CI size: 2 replicas behind nginx on a
#      Redis master + replica + 3 sentinels, the master killed under load;
#      with replicas_ack 1 nothing acknowledged lost, duplicated or
#      reordered, no gap frame; the same with replicas_ack 0 reports what
#      was lost; the restarted old master never serves a publish (~80 s)
#  11. the container image, built in the background from step 3 on (at the
#      lowest CPU priority, so it takes only what the test steps leave
#      idle) and checked after step 10: the Dockerfile built with buildah (stand-in base
#      images made once from Debian packages and the local toolchain), then
#      run as uid 65532 on a read-only root: /readyz, an event delivered,
#      SIGTERM drains and exits 0 (scripts/build-image.sh)
# Works unattended (CI=true, no stdin) as root on a fresh Debian machine.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Two cores: build with both, run tests two at a time.
JOBS="${JOBS:-2}"
# 1 (the default): step 3 checks src/ as well as loadtest/src/ for import
# cycles and long files; 0 checks loadtest/src/ only.
CHECK_SRC_IMPORTS="${CHECK_SRC_IMPORTS:-1}"

step() { printf '\n==> %s\n' "$*"; }

# Each test step's "N passed, M failed" is collected for the closing line.
LOGS="$(mktemp -d)"
trap 'rm -rf "$LOGS"' EXIT
passed_in() { grep -Eo '[0-9]+ passed' "$1" | tail -n 1 | grep -Eo '[0-9]+' || echo 0; }

step "1/11 install test dependencies"
bash scripts/install-test-deps.sh

step "2/11 build (debug, all targets)"
cargo build --workspace --all-targets --locked -j "$JOBS"

# Step 11's image build runs from here on, in the background at the lowest
# CPU priority (nice 19): it compiles a release build inside the image for
# many minutes, and gets only the CPU the test steps leave idle, so that it
# costs them little time and the run little more than the test steps take.
IMAGE_BUILD_PID=""
stop_image_build() { [ -z "$IMAGE_BUILD_PID" ] || kill -TERM "$IMAGE_BUILD_PID" 2>/dev/null || true; }
trap 'stop_image_build; rm -rf "$LOGS"' EXIT
nice -n 19 bash scripts/build-image.sh --build-only >"$LOGS/image-build.log" 2>&1 &
IMAGE_BUILD_PID=$!

step "3/11 format, lints and docs"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -j "$JOBS" -- -D warnings
bash scripts/check-imports.sh --self-test 2>&1 | tee "$LOGS/imports-self-test.log"
if [ "$CHECK_SRC_IMPORTS" = 1 ]; then
    bash scripts/check-imports.sh 2>&1 | tee "$LOGS/imports.log"
else
    bash scripts/check-imports.sh --loadtest-only 2>&1 | tee "$LOGS/imports.log"
fi
bash scripts/check-docs.sh 2>&1 | tee "$LOGS/docs.log"

step "4/11 unit and integration tests"
cargo nextest run --workspace --locked -j "$JOBS" --no-fail-fast 2>&1 | tee "$LOGS/nextest.log"

step "5/11 deployment checks"
SSEHUB_BIN="$ROOT/target/debug/ssehub" bash scripts/check-deploy.sh 2>&1 | tee "$LOGS/deploy.log"

step "6/11 load-test smoke run"
bash loadtest/smoke.sh 2>&1 | tee "$LOGS/smoke.log"

step "7/11 fuzz: the HTTP API against its spec (schemathesis)"
SSEHUB_BIN="$ROOT/target/debug/ssehub" bash scripts/fuzz/api.sh 2>&1 | tee "$LOGS/fuzz.log"

step "8/11 churn: subscribe/disconnect cycles, nothing leaked"
bash loadtest/churn.sh 2>&1 | tee "$LOGS/churn.log"

step "9/11 rolling-restart proof (CI size)"
bash scripts/rolling-restart.sh 2>&1 | tee "$LOGS/rolling-restart.log"
# The plain closing line CI runners read as a test result.
grep -q '^rolling-restart: PASS$' "$LOGS/rolling-restart.log" && echo "1 passed, 0 failed" | tee -a "$LOGS/rolling-restart.log"

step "10/11 Sentinel failover proof (CI size, replicas_ack 1 then 0)"
bash scripts/failover.sh --replicas-ack 1 2>&1 | tee "$LOGS/failover.log"
bash scripts/failover.sh --replicas-ack 0 2>&1 | tee -a "$LOGS/failover.log"
[[ "$(grep -c '^failover: PASS' "$LOGS/failover.log")" == 2 ]] && echo "2 passed, 0 failed" | tee -a "$LOGS/failover.log"

step "11/11 container image: the Dockerfile built with buildah, run as uid 65532 on a read-only root"
image_build_status=0
wait "$IMAGE_BUILD_PID" || image_build_status=$?
IMAGE_BUILD_PID=""
tee "$LOGS/image.log" <"$LOGS/image-build.log"
if [ "$image_build_status" -ne 0 ]; then
    echo "the image build failed (its log is above)" >&2
    exit 1
fi
bash scripts/build-image.sh --check-only 2>&1 | tee -a "$LOGS/image.log"

total=$(($(passed_in "$LOGS/imports-self-test.log") + $(passed_in "$LOGS/imports.log") + $(passed_in "$LOGS/docs.log") + $(passed_in "$LOGS/nextest.log") + $(passed_in "$LOGS/deploy.log") + $(passed_in "$LOGS/smoke.log") + $(passed_in "$LOGS/fuzz.log") + $(passed_in "$LOGS/churn.log") + $(passed_in "$LOGS/rolling-restart.log") + $(passed_in "$LOGS/failover.log") + $(grep -c '^PASS ' "$LOGS/image.log")))
printf '\nall test steps passed\ntotal: %d passed, 0 failed\n' "$total"
