#!/usr/bin/env bash
# Subscribe/disconnect churn against one ssehub process (clean closes,
# resets, resets mid-resume), then checks that its resident memory is back
# within a few MiB of the baseline, no file descriptor leaked and
# ssehub_subscribers_connected is 0. See loadtest/src/churn.rs.
#
#   loadtest/churn.sh            # CI size: 5,000 cycles (about 20 s, debug build)
#   loadtest/churn.sh --full     # 100,000 cycles, release build
#
# Environment: SSEHUB_BIN, HARNESS_BIN (defaults: target/<profile>/...),
# CHURN_CYCLES, CHURN_JSON (append the figures to this JSON-lines file).
# Ends with "churn: N passed, M failed".
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
if [[ "${1:-}" == "--full" ]]; then
  PROFILE=release
  CYCLES="${CHURN_CYCLES:-100000}"
else
  PROFILE=debug
  CYCLES="${CHURN_CYCLES:-5000}"
fi
SSEHUB="${SSEHUB_BIN:-$TARGET_DIR/$PROFILE/ssehub}"
HARNESS="${HARNESS_BIN:-$TARGET_DIR/$PROFILE/ssehub-loadtest}"
LOG="$(mktemp -t ssehub-churn.XXXXXX.log)"

# The default heartbeat: the hub notices a client's close (EOF or reset) as
# it happens, not at its next write, so no short heartbeat is needed to free
# slots. Only this configuration: drop any SSEHUB_* (SSEHUB_BIN included) this
# shell inherited.
inherited=()
while IFS= read -r key; do inherited+=(-u "$key"); done < <(compgen -e | grep '^SSEHUB_' || true)
env "${inherited[@]}" SSEHUB_LISTEN=127.0.0.1:0 SSEHUB_LOG__LEVEL=warn,ssehub=info \
  "$SSEHUB" >"$LOG" 2>&1 &
SERVER_PID=$!
# shellcheck disable=SC2317 # run by the EXIT trap
stop() {
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  rm -f "$LOG"
}
trap stop EXIT

ADDRESS=""
for _ in $(seq 1 100); do
  ADDRESS="$(grep -ao 'listening on 127.0.0.1:[0-9]*' "$LOG" | head -n 1 | cut -d' ' -f3 || true)"
  [[ -n "$ADDRESS" ]] && break
  kill -0 "$SERVER_PID" 2>/dev/null || { echo "ssehub exited at start:" >&2; cat "$LOG" >&2; exit 1; }
  sleep 0.1
done
[[ -n "$ADDRESS" ]] || { echo "ssehub did not log its address" >&2; exit 1; }

args=(churn --url "http://$ADDRESS" --server-pid "$SERVER_PID" --cycles "$CYCLES")
[[ -n "${CHURN_JSON:-}" ]] && args+=(--json-out "$CHURN_JSON")
if "$HARNESS" "${args[@]}"; then
  echo "churn: 1 passed, 0 failed"
else
  echo "churn: 0 passed, 1 failed"
  exit 1
fi
