#!/usr/bin/env bash
# The load-test harness against ssehub on the Redis backplane, and on the
# memory backplane for comparison, in one sitting: CPU per delivery of
# ssehub and CPU of Redis, the highest clean rate, p50/p99 latency, memory.
#
#   scripts/redis-bench.sh                          # broadcast-1k saturate-1k
#   scripts/redis-bench.sh broadcast-1k             # chosen scenarios
#   BACKPLANES=redis scripts/redis-bench.sh         # Redis only
#
# Environment:
#   BACKPLANES     backplanes to run, in order (default "memory redis")
#   PORT_SSEHUB    loopback port for ssehub (default 18090)
#   PORT_REDIS     loopback port for the Redis it starts (default 18091)
#   OUT_DIR        where JSON lines and logs go (default target/redis-bench/<timestamp>)
#   SKIP_BUILD=1   use the release binaries already built
#   LOADTEST_ARGS  extra flags for every `ssehub-loadtest run`
# (No SSEHUB_* names here: ssehub reads every SSEHUB_* variable as config.)
#
# Redis is this script's own redis-server (no persistence, its own temp dir,
# loopback only), restarted with ssehub for every scenario. CPU figures on a
# shared machine are noisy: take them as preliminary, rerun in a quiet sitting.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCENARIOS=("$@")
if [ ${#SCENARIOS[@]} -eq 0 ]; then
    SCENARIOS=(broadcast-1k saturate-1k)
fi
read -r -a BACKPLANE_LIST <<<"${BACKPLANES:-memory redis}"
PORT_SSEHUB="${PORT_SSEHUB:-18090}"
PORT_REDIS="${PORT_REDIS:-18091}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
OUT_DIR="${OUT_DIR:-$TARGET_DIR/redis-bench/$(date +%Y%m%d-%H%M%S)}"
BIN_SSEHUB="$TARGET_DIR/release/ssehub"
BIN_LOADTEST="$TARGET_DIR/release/ssehub-loadtest"
# A run that hangs despite its own timeouts is cut off here.
RUN_TIMEOUT_SECONDS=900
mkdir -p "$OUT_DIR"

log() { printf '==> %s\n' "$*" >&2; }

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    log "building ssehub and ssehub-loadtest (release)"
    (cd "$ROOT" && cargo build --release -p ssehub -p ssehub-loadtest)
fi
command -v redis-server >/dev/null || { echo "redis-server missing: run scripts/install-test-deps.sh" >&2; exit 1; }

# CPU seconds (user + system) a process has used so far.
cpu_seconds() {
    awk -v hz="$(getconf CLK_TCK)" '{ printf "%.3f\n", ($14 + $15) / hz }' "/proc/$1/stat"
}

wait_ready() {
    for _ in $(seq 1 200); do
        if curl -fs "http://127.0.0.1:$PORT_SSEHUB/readyz" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.05
    done
    echo "ssehub not ready on $PORT_SSEHUB after 10 s (see $OUT_DIR/ssehub.log)" >&2
    return 1
}

SSEHUB_PID=""
REDIS_PID=""
REDIS_DIR=""
stop_all() {
    for pid in $SSEHUB_PID $REDIS_PID; do
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    SSEHUB_PID=""
    REDIS_PID=""
    [ -n "$REDIS_DIR" ] && rm -rf "$REDIS_DIR"
    REDIS_DIR=""
}
trap stop_all EXIT

start_all() {
    local backplane="$1"
    local -a env=(
        "SSEHUB_LISTEN=127.0.0.1:$PORT_SSEHUB"
        SSEHUB_LIMITS__MAX_SUBSCRIBERS=30000
        SSEHUB_LOG__LEVEL=warn
        SSEHUB_DRAIN__DELAY=0s SSEHUB_DRAIN__SPREAD=0s SSEHUB_DRAIN__TIMEOUT=5s
    )
    if [ "$backplane" = redis ]; then
        REDIS_DIR="$(mktemp -d -t ssehub-redis-bench.XXXXXX)"
        redis-server --port "$PORT_REDIS" --bind 127.0.0.1 --dir "$REDIS_DIR" \
            --save "" --appendonly no --maxmemory-policy noeviction \
            --loglevel warning >>"$OUT_DIR/redis.log" 2>&1 &
        REDIS_PID=$!
        for _ in $(seq 1 100); do
            redis-cli -p "$PORT_REDIS" ping >/dev/null 2>&1 && break
            sleep 0.05
        done
        env+=(SSEHUB_BACKPLANE__KIND=redis "SSEHUB_BACKPLANE__REDIS__URL=redis://127.0.0.1:$PORT_REDIS/0")
    fi
    env "${env[@]}" "$BIN_SSEHUB" >>"$OUT_DIR/ssehub.log" 2>&1 &
    SSEHUB_PID=$!
    wait_ready
}

for backplane in "${BACKPLANE_LIST[@]}"; do
    for scenario in "${SCENARIOS[@]}"; do
        log "$scenario on the $backplane backplane"
        start_all "$backplane"
        redis_before=0
        [ -n "$REDIS_PID" ] && redis_before="$(cpu_seconds "$REDIS_PID")"
        out="$OUT_DIR/$backplane-$scenario.jsonl"
        # shellcheck disable=SC2086
        timeout "$RUN_TIMEOUT_SECONDS" "$BIN_LOADTEST" run "$scenario" \
            --base-url "http://127.0.0.1:$PORT_SSEHUB" --server-pid "$SSEHUB_PID" \
            --label "$backplane" --json-out "$out" --quiet ${LOADTEST_ARGS:-} || true
        redis_cpu=0
        [ -n "$REDIS_PID" ] && redis_cpu="$(awk -v a="$redis_before" -v b="$(cpu_seconds "$REDIS_PID")" 'BEGIN { printf "%.3f", b - a }')"
        echo "{\"kind\":\"redis_cpu\",\"backplane\":\"$backplane\",\"scenario\":\"$scenario\",\"redis_cpu_seconds\":$redis_cpu}" >>"$out"
        stop_all
    done
done

python3 - "$OUT_DIR" <<'PY'
import glob, json, os, sys
rows = []
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.jsonl"))):
    lines = [json.loads(l) for l in open(path) if l.strip()]
    redis_cpu = next((l["redis_cpu_seconds"] for l in lines if l.get("kind") == "redis_cpu"), 0.0)
    backplane = os.path.basename(path).split("-", 1)[0]
    runs = [l for l in lines if l.get("kind") == "run"]
    saturate = next((l for l in lines if l.get("kind") == "saturate"), None)
    deliveries = sum(r["delivery"]["deliveries"] for r in runs)
    publishes = sum((r.get("publish") or {}).get("acked", 0) for r in runs)
    server_cpu = sum(r["server"]["cpu_seconds_load"] for r in runs if r.get("server"))
    scenario = (saturate or (runs[0] if runs else {})).get("scenario", "?")
    row = {"scenario": scenario, "backplane": backplane, "deliveries": deliveries,
           "publishes": publishes,
           "ssehub_cpu_us_per_delivery": 1e6 * server_cpu / deliveries if deliveries else None,
           "redis_cpu_us_per_publish": 1e6 * redis_cpu / publishes if publishes and redis_cpu else None,
           "redis_cpu_us_per_delivery": 1e6 * redis_cpu / deliveries if deliveries and redis_cpu else None,
           "redis_cpu_s": redis_cpu}
    if saturate:
        row["highest_clean_rate"] = saturate["highest_clean_rate_per_second"]
    elif runs:
        r = runs[0]
        row["p50_ms"] = r["latency_ms"]["p50"]
        row["p99_ms"] = r["latency_ms"]["p99"]
        row["lost"] = r["verification"].get("lost")
        row["rss_end_mib"] = r["server"]["rss_end_kib"] / 1024 if r.get("server") else None
        row["passed"] = r["passed"]
    rows.append(row)
keys = ["scenario", "backplane", "deliveries", "ssehub_cpu_us_per_delivery", "redis_cpu_s",
        "redis_cpu_us_per_publish", "redis_cpu_us_per_delivery", "p50_ms", "p99_ms", "rss_end_mib", "highest_clean_rate", "lost", "passed"]
def show(v):
    if v is None: return ""
    if isinstance(v, float): return f"{v:.3f}" if v < 100 else f"{v:.0f}"
    return str(v)
print("| " + " | ".join(keys) + " |")
print("|" + " --- |" * len(keys))
for row in rows:
    print("| " + " | ".join(show(row.get(k)) for k in keys) + " |")
PY
log "results in $OUT_DIR"
