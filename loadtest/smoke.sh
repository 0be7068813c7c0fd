#!/usr/bin/env bash
# CI assertion: start an ssehub binary on a free loopback port, run the
# `smoke` scenario against it (300 subscribers, 300 events) and exit with
# the harness's verdict: 0 only if every subscriber got every event once
# and in order. Timings are printed, not judged.
#
#   loadtest/smoke.sh [SSEHUB_BINARY [HARNESS_BINARY]]
#
# Defaults: target/debug/ssehub and target/debug/ssehub-loadtest (build them
# first: cargo build -p ssehub -p ssehub-loadtest).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
SSEHUB="${1:-$TARGET_DIR/debug/ssehub}"
HARNESS="${2:-$TARGET_DIR/debug/ssehub-loadtest}"
LOG="$(mktemp -t ssehub-smoke.XXXXXX.log)"

# A random free port, so parallel CI jobs don't collide.
PORT=""
for candidate in $(shuf -i 20000-29999 -n 50); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null; then
        PORT="$candidate"
        break
    fi
done
[ -n "$PORT" ] || { echo "no free port found" >&2; exit 1; }

SSEHUB_LISTEN="127.0.0.1:$PORT" SSEHUB_LOG__LEVEL=warn \
    SSEHUB_DRAIN__DELAY=0s SSEHUB_DRAIN__SPREAD=0s \
    "$SSEHUB" >"$LOG" 2>&1 &
SERVER_PID=$!
# shellcheck disable=SC2317 # run by the EXIT trap
stop() {
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
}
trap stop EXIT

for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "ssehub exited before listening; its log:" >&2
        cat "$LOG" >&2
        exit 1
    fi
    sleep 0.1
done

status=0
timeout 120 "$HARNESS" run smoke --target ssehub --base-url "http://127.0.0.1:$PORT" \
    --server-pid "$SERVER_PID" --quiet || status=$?
if [ "$status" -ne 0 ]; then
    echo "smoke load test failed (exit $status); ssehub's log:" >&2
    tail -n 50 "$LOG" >&2
else
    # The plain closing line CI runners read as a test result.
    echo "1 passed, 0 failed"
fi
rm -f "$LOG"
exit "$status"
