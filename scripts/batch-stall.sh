#!/usr/bin/env bash
# What big batches cost the other replicas: two ssehub replicas on one Redis;
# PUBLISHERS clients send batches of BATCH events to replica A back to back,
# while a probe publishes single events to replica B and times each answer.
# A batch is one Redis script, and Redis serves no one else while it runs, so
# B's publish latency shows how long the batches hold Redis. Prints B's
# publish p50/p99 idle and under the batches, the batches' statuses, and the
# longest scripts Redis logged (SLOWLOG).
#
#   scripts/batch-stall.sh                          # batches of the cap (500)
#   scripts/batch-stall.sh --batch 25000 --cap 25000
#   scripts/batch-stall.sh --binary /path/to/older/ssehub --batch 25000 --no-cap
#
# Options: --binary PATH [target/release/ssehub if built, else target/debug],
# --batch N [500] events per batch, --cap N (limits.max_events_per_request
# given to the replicas; default: the binary's own), --no-cap (set nothing,
# for a build without the key), --publishers N [3], --seconds S [15] of load,
# --probes N [300] at most under load. Bounded: the load stops after S
# seconds or 2,000 batches, whichever comes first.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib/replicas.sh
source "$ROOT/scripts/lib/replicas.sh"
NAME=batch-stall

SSEHUB="$ROOT/target/release/ssehub"
[[ -x "$SSEHUB" ]] || SSEHUB="$ROOT/target/debug/ssehub"
BATCH=500
CAP=""
PUBLISHERS=3
LOAD_SECONDS=15
PROBES=300
MAX_BATCHES=2000
IDLE_PROBES=100
while (($#)); do
  case "$1" in
    --binary) SSEHUB="$2"; shift 2 ;;
    --batch) BATCH="$2"; shift 2 ;;
    --cap) CAP="$2"; shift 2 ;;
    --no-cap) CAP=none; shift ;;
    --publishers) PUBLISHERS="$2"; shift 2 ;;
    --seconds) LOAD_SECONDS="$2"; shift 2 ;;
    --probes) PROBES="$2"; shift 2 ;;
    *) echo "$NAME: unknown option $1 (see the head of this script)" >&2; exit 2 ;;
  esac
done
[[ -z "$CAP" ]] && CAP="$BATCH"

STATE="$(mktemp -d)"
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  rm -rf "$STATE"
}
trap cleanup EXIT

# ---------------------------------------------------------------- Redis ----
REDIS_PORT="$(free_port)"
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$STATE" --save '' \
  --appendonly no --daemonize no --loglevel warning \
  --slowlog-log-slower-than 1000 --slowlog-max-len 10000 \
  >"$STATE/redis.log" 2>&1 </dev/null &
PIDS+=($!)
wait_until 10 "redis-server" port_open "$REDIS_PORT"

# ------------------------------------------------------------- replicas ----
start() { # start PORT: a replica on PORT
  local cap_env=()
  [[ "$CAP" != none ]] && cap_env=(SSEHUB_LIMITS__MAX_EVENTS_PER_REQUEST="$CAP")
  env SSEHUB_LISTEN="127.0.0.1:$1" SSEHUB_LOG__LEVEL=warn \
    SSEHUB_BACKPLANE__KIND=redis SSEHUB_BACKPLANE__REDIS__URL="redis://127.0.0.1:$REDIS_PORT/0" \
    "${cap_env[@]}" "$SSEHUB" >"$STATE/replica-$1.log" 2>&1 </dev/null &
  PIDS+=($!)
}
A="$(free_port)"
start "$A"
B="$(free_port)"
start "$B"
wait_until 30 "replica A" ready "$A"
wait_until 30 "replica B" ready "$B"

# The batch: BATCH small events over 64 topics (small events are the most a
# body can carry, and the most work per byte for Redis).
awk -v n="$BATCH" 'BEGIN {
  printf "{\"events\":["
  for (i = 0; i < n; i++) printf "%s{\"topic\":\"b%d\",\"data\":%d}", (i ? "," : ""), i % 64, i
  print "]}"
}' >"$STATE/batch.json"

probe() { # probe COUNT UNTIL_SECONDS OUT: single publishes to B, timed
  local count="$1" until="$2" out="$3" n=0
  while ((n < count && SECONDS < until)); do
    curl -s -o /dev/null -w '%{http_code} %{time_total}\n' --max-time 10 \
      -H 'content-type: application/json' -d '{"data":"probe"}' \
      "http://127.0.0.1:$B/v1/topics/probe/events" >>"$out" || echo "000 10" >>"$out"
    n=$((n + 1))
    sleep 0.02
  done
}

summary() { # summary FILE: p50, p99, max (ms) and the statuses
  sort -k2 -g "$1" | awk '
    { t[NR] = $2 * 1000; status[$1]++ }
    END {
      p50 = t[int((NR - 1) * 0.50) + 1]; p99 = t[int((NR - 1) * 0.99) + 1]
      printf "%d probes, p50 %.1f ms, p99 %.1f ms, max %.1f ms; statuses:", NR, p50, p99, t[NR]
      for (s in status) printf " %s x%d", s, status[s]
      printf "\n"
    }'
}

probe "$IDLE_PROBES" $((SECONDS + 30)) "$STATE/idle"
redis-cli -p "$REDIS_PORT" SLOWLOG RESET >/dev/null

end=$((SECONDS + LOAD_SECONDS))
per_publisher=$((MAX_BATCHES / PUBLISHERS))
publishers=()
for p in $(seq 1 "$PUBLISHERS"); do
  (
    n=0
    while ((n < per_publisher && SECONDS < end)); do
      curl -s -o /dev/null -w '%{http_code}\n' --max-time 30 \
        -H 'content-type: application/json' --data-binary "@$STATE/batch.json" \
        "http://127.0.0.1:$A/v1/events" >>"$STATE/batches.$p" || echo 000 >>"$STATE/batches.$p"
      n=$((n + 1))
    done
  ) &
  publishers+=($!)
  PIDS+=($!)
done
sleep 1 # let the batches start
probe "$PROBES" "$end" "$STATE/loaded"
# Each publisher stops at the deadline, after at most one more batch (30 s).
wait "${publishers[@]}" 2>/dev/null || true

echo "$NAME: $SSEHUB, $PUBLISHERS publishers x batches of $BATCH events to A (cap: $CAP), $LOAD_SECONDS s"
echo "B idle:          $(summary "$STATE/idle")"
echo "B under batches: $(summary "$STATE/loaded")"
echo -n "batches to A:    "
cat "$STATE"/batches.* | sort | uniq -c | awk '{ printf "%s x%d  ", $2, $1 } END { print "" }'
echo -n "Redis scripts over 1 ms: "
redis-cli -p "$REDIS_PORT" --json SLOWLOG GET 10000 | tr -d '\n' |
  grep -io '\[[0-9]*,[0-9]*,[0-9]*,\["evalsha' | cut -d, -f3 | sort -g |
  awk '{ d[NR] = $1 / 1000 } END {
    if (NR == 0) { print "none"; exit }
    printf "%d, median %.1f ms, max %.1f ms\n", NR, d[int((NR - 1) / 2) + 1], d[NR] }'
