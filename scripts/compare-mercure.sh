#!/usr/bin/env bash
# Side-by-side benchmark of one server through two APIs: the same load-test
# scenarios through ssehub's own routes (`--target ssehub`) and through its
# Mercure routes at /.well-known/mercure (`--target mercure`: subscriptions
# by topic IRI, form publishes with a publisher JWT), against the same ssehub
# build started the same way (Mercure enabled, anonymous subscribers, a
# publisher key), in one sitting on this machine. Then a markdown table of
# the figures that weigh the two: server CPU µs per delivery, latency p50 and
# p99, lost + duplicated + out of order, RSS per connection, with the ratio
# mercure/own; and the table of every figure beside it.
#
#   scripts/compare-mercure.sh                     # the default scenario list
#   scripts/compare-mercure.sh smoke topics-10k    # chosen scenarios
#
#   # a check of the script itself on a debug build (not a benchmark):
#   cargo build -p ssehub -p ssehub-loadtest
#   SKIP_BUILD=1 BIN_SSEHUB=target/debug/ssehub \
#       BIN_LOADTEST=target/debug/ssehub-loadtest scripts/compare-mercure.sh smoke
#
# Environment:
#   ROUTES         the harness targets to run, in order (default "ssehub mercure")
#   PORT_SSEHUB    loopback port for ssehub (default 18080)
#   OUT_DIR        where JSON lines, plots, logs and the tables go
#                  (default target/compare-mercure/<timestamp>)
#   SKIP_BUILD=1   use the binaries already built
#   BIN_SSEHUB, BIN_LOADTEST
#                  binaries to run (default target/release/ssehub and
#                  target/release/ssehub-loadtest)
#   PUBLISHER_KEY  the Mercure publisher key (default: a random one per
#                  sitting); it reaches the harness through its environment
#                  (LOADTEST_MERCURE_PUBLISHER_KEY), not its command line
#   LOADTEST_ARGS  extra flags for every `ssehub-loadtest run`
# (No SSEHUB_* names here: ssehub reads every SSEHUB_* variable as config.)
#
# Each run gets a freshly started ssehub, so one run's memory and history
# don't carry into the next. Everything listens on loopback only, every run
# is bounded by the scenario's own counts and timeouts, and cut off after
# RUN_TIMEOUT_SECONDS if it hangs anyway.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# port_open, wait_until, ready, stop_pids.
# shellcheck source=scripts/lib/replicas.sh
source "$ROOT/scripts/lib/replicas.sh"
NAME=compare-mercure

SCENARIOS=("$@")
if [ ${#SCENARIOS[@]} -eq 0 ]; then
    SCENARIOS=(broadcast-1k broadcast-10k topics-10k idle-10k saturate-1k)
fi
read -r -a ROUTE_LIST <<<"${ROUTES:-ssehub mercure}"
PORT_SSEHUB="${PORT_SSEHUB:-18080}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
OUT_DIR="${OUT_DIR:-$TARGET_DIR/compare-mercure/$(date +%Y%m%d-%H%M%S)}"
RESULTS="$OUT_DIR/results.jsonl"
BIN_SSEHUB="${BIN_SSEHUB:-$TARGET_DIR/release/ssehub}"
BIN_LOADTEST="${BIN_LOADTEST:-$TARGET_DIR/release/ssehub-loadtest}"
# HS256 wants a secret of at least 32 bytes (ssehub refuses shorter ones).
PUBLISHER_KEY="${PUBLISHER_KEY:-$(head -c 24 /dev/urandom | base64)}"
RUN_TIMEOUT_SECONDS=900

log() { printf '==> %s\n' "$*" >&2; }

for route in "${ROUTE_LIST[@]}"; do
    case "$route" in
        ssehub | mercure) ;;
        *) echo "ROUTES: unknown target $route (ssehub or mercure)" >&2; exit 64 ;;
    esac
done

build() {
    if [ "${SKIP_BUILD:-0}" = 1 ]; then
        return
    fi
    log "building ssehub and ssehub-loadtest (release)"
    (cd "$ROOT" && cargo build --release -p ssehub -p ssehub-loadtest)
}

SERVER_PID=""

# The same ssehub for both routes: Mercure on (so the own-routes run pays
# for whatever having it on costs), limits raised for 20,000 subscribers,
# drain shortened because the benchmark stops it between runs, not a load
# balancer.
start_ssehub() {
    SSEHUB_LISTEN="127.0.0.1:$PORT_SSEHUB" \
        SSEHUB_LIMITS__MAX_SUBSCRIBERS=30000 \
        SSEHUB_LOG__LEVEL=warn \
        SSEHUB_DRAIN__DELAY=0s \
        SSEHUB_DRAIN__SPREAD=0s \
        SSEHUB_DRAIN__TIMEOUT=5s \
        SSEHUB_MERCURE__ENABLED=true \
        SSEHUB_MERCURE__ANONYMOUS=true \
        SSEHUB_MERCURE__PUBLISHER_JWT__KEY="$PUBLISHER_KEY" \
        "$BIN_SSEHUB" >>"$OUT_DIR/ssehub.log" 2>&1 </dev/null &
    SERVER_PID=$!
    wait_until 30 "ssehub ready on $PORT_SSEHUB" ready "$PORT_SSEHUB"
}

stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    stop_pids "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}
trap stop_server EXIT

run_scenario() {
    local scenario="$1" route="$2"
    if port_open "$PORT_SSEHUB"; then
        log "something already listens on 127.0.0.1:$PORT_SSEHUB; set PORT_SSEHUB"
        exit 1
    fi
    if ! start_ssehub; then
        log "ssehub did not start; skipping $scenario through $route (log in $OUT_DIR)"
        tail -n 5 "$OUT_DIR/ssehub.log" >&2 || true
        stop_server
        return
    fi
    log "$scenario through the $route routes (pid $SERVER_PID)"
    # A failed verification is a figure too: record it and go on.
    # shellcheck disable=SC2086 # LOADTEST_ARGS is a list of flags
    LOADTEST_MERCURE_PUBLISHER_KEY="$PUBLISHER_KEY" \
        timeout "$RUN_TIMEOUT_SECONDS" "$BIN_LOADTEST" run "$scenario" \
        --target "$route" --base-url "http://127.0.0.1:$PORT_SSEHUB" \
        --server-pid "$SERVER_PID" --json-out "$RESULTS" \
        --plot "$OUT_DIR/$scenario-$route.svg" --label "$LABEL" ${LOADTEST_ARGS:-} \
        | tee -a "$OUT_DIR/runs.txt" || log "$scenario through $route did not pass (exit $?)"
    stop_server
}

build
mkdir -p "$OUT_DIR"
# The server and the harness need far more than the usual 1,024 descriptors.
ulimit -n "$(ulimit -Hn)"
LABEL="$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)"

for scenario in "${SCENARIOS[@]}"; do
    for route in "${ROUTE_LIST[@]}"; do
        run_scenario "$scenario" "$route"
    done
done

{
    echo "Machine: $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)," \
        "$(free -g | awk '/Mem:/ {print $2}') GiB, Linux $(uname -r);" \
        "ssehub $LABEL ($(basename "$(dirname "$BIN_SSEHUB")") build), Mercure enabled for every run;" \
        "harness and server on the same machine, loopback."
    echo
    echo "Mercure routes / ssehub's own routes:"
    echo
    "$BIN_LOADTEST" compare "$RESULTS" --candidate mercure --baseline ssehub --brief
} | tee "$OUT_DIR/table.md"
"$BIN_LOADTEST" compare "$RESULTS" --candidate mercure --baseline ssehub >"$OUT_DIR/table-full.md"
log "results in $OUT_DIR (every figure: table-full.md)"
