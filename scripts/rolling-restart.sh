#!/usr/bin/env bash
# The rolling-restart proof: one Redis, N ssehub replicas on loopback ports and
# a real nginx in front of them (the project's nginx config, with the N
# replicas as its upstream). The load-test harness opens reconnecting
# subscribers through nginx and publishes through nginx at a steady rate;
# meanwhile the replicas are restarted one by one: SIGTERM (the drain: readiness
# fails, the listener closes, streams end spread over drain.spread, each with a
# retry: hint), and a fresh process takes the port as soon as the old one has
# let go of it. The harness then reports acknowledged publishes, lost,
# duplicated, out of order, gap frames, reconnects and how they spread over
# each drain window, and latency p50/p99 before, during and after the
# restarts, and exits non-zero when a guarantee is broken:
#   - nothing acknowledged is lost, nothing arrives twice or out of order;
#   - nothing refused (4xx, 503) reaches anyone;
#   - no gap frame (history lives in Redis, which stays up);
#   - every stream comes back (no subscriber gives up: never a non-200);
#   - no reconnect burst: in each drain window the busiest 250 ms, as a rate,
#     stays under --max-spike times the window's mean rate;
#   - every publish is answered 2xx (nginx passes a publish that a draining
#     replica refused with 503 to the next replica);
#   - every replica drains and exits cleanly, none cut by drain.timeout.
#
#   scripts/rolling-restart.sh                      CI size: 3 x 100 subscribers
#   scripts/rolling-restart.sh --subscribers 9000 --topics 30 --rate 100 \
#       --drain-spread 10s --release                the 3 x 3,000 run of the README
#
# Options (defaults in brackets):
#   --replicas N [3]         ssehub processes behind nginx
#   --subscribers N [300]    reconnecting subscribers, spread over the replicas by nginx
#   --topics K [3]           topics they spread over
#   --rate R [50]            publishes per second, through nginx
#   --drain-delay D [500ms]  ssehub drain.delay: readiness fails, still serving
#   --drain-spread D [2s]    ssehub drain.spread: stream closes spread over this
#   --retry D [1s]           ssehub stream.retry: clients wait 1-2x this to reconnect
#   --before D [5s]          publishing before the first restart
#   --after D [5s]           publishing after the last restart
#   --max-spike RATIO [5]    see above (a burst of all of a replica's clients
#                            at once is about 10x; an even spread stays near 2x)
#   --release                use target/release binaries (default target/debug)
#   --json-out FILE          append the harness's JSON line
#   --label TEXT             stored with the JSON line
# Binaries: SSEHUB_BIN, HARNESS_BIN override the target/ ones (build them
# first: cargo build -p ssehub -p ssehub-loadtest). Needs nginx and
# redis-server (scripts/install-test-deps.sh). Everything listens on free
# loopback ports and is stopped on exit; the last line is the verdict.
#
# Internal: `rolling-restart.sh restart STATE_DIR` is the restart sequence,
# run by the harness (--disrupt) while it publishes.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SELF="$ROOT/scripts/rolling-restart.sh"

# shellcheck source=scripts/lib/replicas.sh
source "$ROOT/scripts/lib/replicas.sh"
NAME=rolling-restart

# --------------------------------------------- the restart sequence ----

if [[ "${1:-}" == restart ]]; then
  STATE="$2"
  # shellcheck source=/dev/null
  source "$STATE/settings"
  delay_ms="$(millis "$DRAIN_DELAY")"
  spread_ms="$(millis "$DRAIN_SPREAD")"
  retry_ms="$(millis "$RETRY")"
  timeout_s=$(($(millis "$DRAIN_TIMEOUT") / 1000 + 5))
  for index in $(seq 1 "$REPLICAS"); do
    old="$(cat "$STATE/pid-$index")"
    port="$(cat "$STATE/port-$index")"
    echo "restarting replica $index (pid $old, port $port)" >&2
    kill -TERM "$old"
    # Its streams end from drain.delay on, spread over drain.spread; each
    # client waits its retry: hint (1-2x stream.retry) and reconnects.
    echo "drain replica-$index $((delay_ms + retry_ms)) $((spread_ms + retry_ms))"
    # The old process closes its listener after drain.delay; the new one binds then.
    wait_until $((delay_ms / 1000 + 10)) "replica $index to close its listener" port_free "$port"
    start_replica "$index"
    wait_until 30 "the new replica $index to be ready" ready "$port"
    wait_until "$timeout_s" "the old replica $index (pid $old) to exit" gone "$old"
  done
  exit 0
fi

# ------------------------------------------------------------ options ----

REPLICAS=3
SUBSCRIBERS=300
TOPICS=3
RATE=50
DRAIN_DELAY=500ms
DRAIN_SPREAD=2s
RETRY=1s
BEFORE=5s
AFTER=5s
MAX_SPIKE=5
PROFILE=debug
JSON_OUT=""
LABEL=""
while (($#)); do
  case "$1" in
    --replicas) REPLICAS="$2"; shift ;;
    --subscribers) SUBSCRIBERS="$2"; shift ;;
    --topics) TOPICS="$2"; shift ;;
    --rate) RATE="$2"; shift ;;
    --drain-delay) DRAIN_DELAY="$2"; shift ;;
    --drain-spread) DRAIN_SPREAD="$2"; shift ;;
    --retry) RETRY="$2"; shift ;;
    --before) BEFORE="$2"; shift ;;
    --after) AFTER="$2"; shift ;;
    --max-spike) MAX_SPIKE="$2"; shift ;;
    --release) PROFILE=release ;;
    --json-out) JSON_OUT="$2"; shift ;;
    --label) LABEL="$2"; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
SSEHUB="${SSEHUB_BIN:-$TARGET_DIR/$PROFILE/ssehub}"
HARNESS="${HARNESS_BIN:-$TARGET_DIR/$PROFILE/ssehub-loadtest}"
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
REDIS_SERVER="$(command -v redis-server || echo /usr/bin/redis-server)"
for binary in "$SSEHUB" "$HARNESS" "$NGINX" "$REDIS_SERVER"; do
  [[ -x "$binary" ]] || { echo "rolling-restart: $binary is missing (build it, or run scripts/install-test-deps.sh)" >&2; exit 2; }
done
# The drain's hard deadline: the whole spread, with room for the last streams.
DRAIN_TIMEOUT="$(((($(millis "$DRAIN_DELAY") + $(millis "$DRAIN_SPREAD")) / 1000) + 10))s"

STATE="$(mktemp -d -t ssehub-rolling-restart.XXXXXX)"
# shellcheck disable=SC2329 # run by the EXIT trap
cleanup() { cluster_stop; }
trap cleanup EXIT

cluster_start
echo "rolling-restart: $REPLICAS replica(s) on the $BACKPLANE backplane behind nginx :$NGINX_PORT;" \
  "$SUBSCRIBERS subscribers over $TOPICS topics, $RATE publishes/s; drain delay $DRAIN_DELAY," \
  "spread $DRAIN_SPREAD, retry $RETRY" >&2

# -------------------------------------------------------------- the run ----

args=(run rolling-restart --base-url "http://127.0.0.1:$NGINX_PORT"
  --subscribers "$SUBSCRIBERS" --topics "$TOPICS" --rate "$RATE"
  --disrupt "bash '$SELF' restart '$STATE'" --disrupt-after "$BEFORE" --recover-for "$AFTER"
  --max-reconnect-spike "$MAX_SPIKE" --quiet)
if [[ "$BACKPLANE" == redis ]]; then
  args+=(--fail-on-gap-frames)
else
  args+=(--tolerate-unanswered-publishes)
fi
[[ -n "$JSON_OUT" ]] && args+=(--json-out "$JSON_OUT")
[[ -n "$LABEL" ]] && args+=(--label "$LABEL")
status=0
# Bounded: connect, before, N restarts of at most drain.timeout + startup, after, drain.
budget=$((120 + REPLICAS * ($(millis "$DRAIN_TIMEOUT") / 1000 + 30)))
timeout "$budget" "$HARNESS" "${args[@]}" || status=$?

# Every drained replica must have ended all its streams within drain.timeout.
for log in "$STATE"/replica-*.log; do
  if grep -q 'drain complete' "$log"; then
    line="$(grep 'drain complete' "$log" | tail -n 1)"
    cut="$(grep -oE '"cut":[0-9]+' <<<"$line" | cut -d: -f2)"
    closed="$(grep -oE '"closed":[0-9]+' <<<"$line" | cut -d: -f2)"
    echo "  $(basename "$log" .log): drained, $closed streams closed, ${cut:-?} cut" >&2
    if [[ "${cut:-1}" != 0 ]]; then
      echo "rolling-restart: $(basename "$log" .log) cut streams at drain.timeout" >&2
      status=1
    fi
  fi
done
drained="$(grep -l 'drain complete' "$STATE"/replica-*.log | wc -l)"
if ((drained < REPLICAS)); then
  echo "rolling-restart: only $drained of $REPLICAS replicas finished their drain" >&2
  tail -n 20 "$STATE"/replica-*.log >&2
  status=1
fi
if ((status == 0)); then
  echo "rolling-restart: PASS"
else
  echo "rolling-restart: FAIL (exit $status)"
  KEEP_STATE="${KEEP_STATE:-1}"
fi
exit "$status"
