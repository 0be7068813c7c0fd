#!/usr/bin/env bash
# Side-by-side benchmark: the same load-test scenarios against ssehub
# (release build), Nchan (nginx + libnginx-mod-nchan from Debian) and the
# floor (../shared/floor: the least work an SSE fan-out server can do here; a
# yardstick, not a competitor), in one sitting on this machine, then markdown
# tables of every figure with the ratios ssehub/Nchan and ssehub/floor.
#
#   scripts/compare-nchan.sh                  # the default scenario list
#   scripts/compare-nchan.sh smoke idle-10k   # chosen scenarios
#
# Environment:
#   TARGETS        servers to run, in order (default "floor nchan ssehub")
#   PORT_SSEHUB    loopback port for ssehub (default 18080)
#   PORT_NCHAN     loopback port for Nchan (default 18081)
#   PORT_FLOOR     loopback port for the floor (default 18082)
#   FLOOR_DIR      the floor's sources (default ../shared/floor beside the
#                  checkout); built into target/floor
#   FLOOR_THREADS  the floor's worker threads (default: the number of cores)
#   OUT_DIR        where JSON lines, plots and the table go
#                  (default target/compare/<timestamp>)
#   SKIP_INSTALL=1 don't apt-get install nginx + Nchan when missing
#   SKIP_BUILD=1   use the binaries already built
#   BIN_SSEHUB, BIN_LOADTEST
#                  binaries to run (default target/release/ssehub and
#                  target/release/ssehub-loadtest)
# (No SSEHUB_* names here: ssehub reads every SSEHUB_* variable as config.)
#   LOADTEST_ARGS  extra flags for every `ssehub-loadtest run`
#
# Each scenario gets freshly started servers, so memory figures of one
# scenario don't carry another's leftovers. Everything listens on loopback
# only, and every run is bounded by the scenario's own counts and timeouts.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCENARIOS=("$@")
if [ ${#SCENARIOS[@]} -eq 0 ]; then
    SCENARIOS=(broadcast-1k broadcast-10k saturate-1k idle-10k idle-20k topics-10k)
fi
read -r -a TARGET_LIST <<<"${TARGETS:-floor nchan ssehub}"
PORT_SSEHUB="${PORT_SSEHUB:-18080}"
PORT_NCHAN="${PORT_NCHAN:-18081}"
PORT_FLOOR="${PORT_FLOOR:-18082}"
FLOOR_DIR="${FLOOR_DIR:-$ROOT/../shared/floor}"
FLOOR_THREADS="${FLOOR_THREADS:-$(nproc)}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN_FLOOR="$TARGET_DIR/floor/release/floor"
OUT_DIR="${OUT_DIR:-$TARGET_DIR/compare/$(date +%Y%m%d-%H%M%S)}"
RESULTS="$OUT_DIR/results.jsonl"
BIN_SSEHUB="${BIN_SSEHUB:-$TARGET_DIR/release/ssehub}"
BIN_LOADTEST="${BIN_LOADTEST:-$TARGET_DIR/release/ssehub-loadtest}"
# A run that hangs despite its own timeouts is cut off here.
RUN_TIMEOUT_SECONDS=900

log() { printf '==> %s\n' "$*" >&2; }

install_nchan() {
    if [ -e /usr/lib/nginx/modules/ngx_nchan_module.so ] && command -v nginx >/dev/null; then
        return
    fi
    if [ "${SKIP_INSTALL:-0}" = 1 ]; then
        echo "nginx with the Nchan module is missing and SKIP_INSTALL=1" >&2
        exit 1
    fi
    log "installing nginx and libnginx-mod-nchan"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nginx libnginx-mod-nchan >/dev/null
}

build() {
    if [ "${SKIP_BUILD:-0}" = 1 ]; then
        return
    fi
    log "building ssehub and ssehub-loadtest (release)"
    (cd "$ROOT" && cargo build --release -p ssehub -p ssehub-loadtest)
    if [[ " ${TARGET_LIST[*]} " == *" floor "* ]]; then
        log "building the floor (release) from $FLOOR_DIR"
        # ../shared may be read-only: the floor builds into our own target/.
        cargo build --release --manifest-path "$FLOOR_DIR/Cargo.toml" --target-dir "$TARGET_DIR/floor"
    fi
}

wait_for_port() {
    local port="$1" pid="$2"
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "server (pid $pid) exited before listening on $port" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "nothing listens on 127.0.0.1:$port after 10 s" >&2
    return 1
}

SERVER_PID=""
NCHAN_PREFIX=""

start_nchan() {
    NCHAN_PREFIX="$(mktemp -d -t nchan-compare.XXXXXX)"
    sed -e "s|@NCHAN_MODULE@|/usr/lib/nginx/modules/ngx_nchan_module.so|" \
        -e "s|@PREFIX@|$NCHAN_PREFIX|g" \
        -e "s|@PORT@|$PORT_NCHAN|" \
        "$ROOT/loadtest/peers/nchan.conf" >"$NCHAN_PREFIX/nginx.conf"
    nginx -p "$NCHAN_PREFIX" -c "$NCHAN_PREFIX/nginx.conf" -g 'daemon off;' \
        >"$NCHAN_PREFIX/stdout.log" 2>&1 &
    SERVER_PID=$!
    wait_for_port "$PORT_NCHAN" "$SERVER_PID"
}

start_ssehub() {
    # Limits raised for 20,000 subscribers; drain shortened because the
    # benchmark stops the server between scenarios, not a load balancer.
    SSEHUB_LISTEN="127.0.0.1:$PORT_SSEHUB" \
        SSEHUB_LIMITS__MAX_SUBSCRIBERS=30000 \
        SSEHUB_LOG__LEVEL=warn \
        SSEHUB_DRAIN__DELAY=0s \
        SSEHUB_DRAIN__SPREAD=0s \
        SSEHUB_DRAIN__TIMEOUT=5s \
        "$BIN_SSEHUB" >>"$OUT_DIR/ssehub.log" 2>&1 &
    SERVER_PID=$!
    wait_for_port "$PORT_SSEHUB" "$SERVER_PID"
}

start_floor() {
    "$BIN_FLOOR" --listen "127.0.0.1:$PORT_FLOOR" --threads "$FLOOR_THREADS" \
        >>"$OUT_DIR/floor.log" 2>&1 &
    SERVER_PID=$!
    wait_for_port "$PORT_FLOOR" "$SERVER_PID"
}

stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
    if [ -n "$NCHAN_PREFIX" ]; then
        cat "$NCHAN_PREFIX/stdout.log" "$NCHAN_PREFIX/error.log" >>"$OUT_DIR/nchan.log" 2>/dev/null || true
        rm -rf "$NCHAN_PREFIX"
        NCHAN_PREFIX=""
    fi
}
trap stop_server EXIT

fail_start() {
    log "$1 did not start; skipping $scenario against it (logs in $OUT_DIR)"
    stop_server
    tail -n 5 "$OUT_DIR/$1.log" >&2 || true
}

run_scenario() {
    local scenario="$1" target="$2" port
    case "$target" in
        nchan) port="$PORT_NCHAN"; start_nchan || { fail_start nchan; return; } ;;
        ssehub) port="$PORT_SSEHUB"; start_ssehub || { fail_start ssehub; return; } ;;
        floor) port="$PORT_FLOOR"; start_floor || { fail_start floor; return; } ;;
        *) echo "unknown target $target" >&2; exit 1 ;;
    esac
    log "$scenario against $target (pid $SERVER_PID)"
    # A failed verification is a figure too: record it and go on.
    # shellcheck disable=SC2086 # LOADTEST_ARGS is a list of flags
    timeout "$RUN_TIMEOUT_SECONDS" "$BIN_LOADTEST" run "$scenario" \
        --target "$target" --base-url "http://127.0.0.1:$port" \
        --server-pid "$SERVER_PID" --json-out "$RESULTS" \
        --plot "$OUT_DIR/$scenario-$target.svg" --label "$LABEL" ${LOADTEST_ARGS:-} \
        | tee -a "$OUT_DIR/runs.txt" || log "$scenario against $target did not pass (exit $?)"
    stop_server
}

install_nchan
build
mkdir -p "$OUT_DIR"
# The server and the harness need far more than the usual 1,024 descriptors.
ulimit -n "$(ulimit -Hn)"
LABEL="$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)"

for scenario in "${SCENARIOS[@]}"; do
    for target in "${TARGET_LIST[@]}"; do
        run_scenario "$scenario" "$target"
    done
done

{
    echo "Machine: $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)," \
        "$(free -g | awk '/Mem:/ {print $2}') GiB, Linux $(uname -r); $(nginx -v 2>&1 | sed 's/.*: //')" \
        "with libnginx-mod-nchan $(dpkg-query -W -f='${Version}' libnginx-mod-nchan 2>/dev/null || echo '?');" \
        "ssehub $LABEL; harness and server on the same machine, loopback."
    for baseline in nchan floor; do
        [[ " ${TARGET_LIST[*]} " == *" $baseline "* ]] || continue
        echo
        echo "ssehub / $baseline:"
        echo
        "$BIN_LOADTEST" compare "$RESULTS" --candidate ssehub --baseline "$baseline"
    done
} | tee "$OUT_DIR/table.md"
log "results in $OUT_DIR"
