#!/usr/bin/env bash
# The Sentinel failover proof: a Redis master, one replica and three
# redis-sentinels (Debian's redis-server and redis-sentinel), two ssehub
# replicas that find the master through the sentinels, and a real nginx in
# front of them. The load-test harness opens reconnecting subscribers
# (Last-Event-ID) and publishes through nginx at a steady rate; mid-run the
# master is killed with `kill -9`, the sentinels promote the replica, and the
# old master is started again as it was (a master with an empty dataset)
# until the sentinels turn it into a replica of the new one.
#
# The verdict comes from the harness's own counting, with
# backplane.redis.replicas_ack = 1 (the default here):
#   - every publish answered 2xx is delivered to every subscriber of its
#     topic, once, in order, with no gap frame;
#   - no stream is lost (subscribers reconnect, none gives up);
#   - the restarted old master never runs a publish (it comes back as a
#     replica; ssehub only writes where the sentinels point);
#   - some publish is acknowledged after the failover.
# Publishes answered 503 (backplane down, or publish-not-replicated) and 504
# are not acknowledged; the harness does not retry them yet, so they are
# counted, not judged, and a 503 publish-not-replicated event may have been
# delivered (the master stored it) — reported as "refused but delivered".
# The unavailability window (the first publish not answered 2xx after the
# kill, to the first 2xx after it) comes from nginx's access log.
# With --replicas-ack 0 the same run reports what was lost instead of
# judging it.
#
#   scripts/failover.sh                       CI size (~40 s)
#   scripts/failover.sh --replicas-ack 0      the same, without WAIT: what is lost
#   scripts/failover.sh --subscribers 2000 --rate 200 --after 10s --release
#
# Options (defaults in brackets):
#   --replicas-ack N [1]     backplane.redis.replicas_ack of the hubs
#   --redis-replicas N [1]   Redis replicas of the master (one is promoted)
#   --replica-lag D [0s]     before the kill, cut the first replica off the
#                            master for D (SIGSTOP it, CLIENT KILL its link):
#                            what the master acknowledges meanwhile exists
#                            nowhere else when it dies (the case replicas_ack
#                            is for); the replica resumes right after the kill
#   --subscribers N [100]    reconnecting subscribers, spread over the hubs by nginx
#   --topics K [2]           topics they spread over
#   --rate R [50]            publishes per second, through nginx
#   --before D [4s]          publishing before the kill
#   --down D [2s]            how long the old master stays dead
#   --after D [5s]           publishing once the old master is a replica again
#   --release                use target/release binaries (default target/debug)
#   --json-out FILE          append the harness's JSON line
#
# Binaries: SSEHUB_BIN, HARNESS_BIN override the target/ ones. Needs nginx,
# redis-server and redis-sentinel (scripts/install-test-deps.sh). Everything
# listens on free loopback ports and is stopped on exit; the last line is
# the verdict.
#
# Internal: `failover.sh kill STATE_DIR` is the failover sequence, run by the
# harness (--disrupt) while it publishes.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SELF="$ROOT/scripts/failover.sh"

# shellcheck source=scripts/lib/replicas.sh
source "$ROOT/scripts/lib/replicas.sh"
NAME=failover
MASTER_NAME=ssehub

redis_cli() { redis-cli -h 127.0.0.1 -p "$@" 2>/dev/null; }
# The master's port as the sentinel on port $1 names it.
# shellcheck disable=SC2329 # called through promoted
sentinel_master() { redis_cli "$1" SENTINEL get-master-addr-by-name "$MASTER_NAME" | sed -n 2p; }
# shellcheck disable=SC2329 # called through wait_until
is_replica_in_sync() {
  redis_cli "$1" INFO replication | grep -q 'master_link_status:up'
}
# shellcheck disable=SC2329
# Promoted: the sentinel on port $1 names one of the replicas (ports $2...).
promoted() {
  local named
  named="$(sentinel_master "$1")"
  shift
  [[ " $* " == *" $named "* ]]
}

start_redis_node() { # start_redis_node NAME PORT [ARGS...]: no persistence, as in the tests
  local name="$1" port="$2"
  shift 2
  mkdir -p "$STATE/$name"
  "$REDIS_SERVER" --bind 127.0.0.1 --port "$port" --dir "$STATE/$name" \
    --save '' --appendonly no --daemonize no --loglevel warning "$@" \
    >>"$STATE/$name.log" 2>&1 </dev/null &
  echo $! >"$STATE/$name.pid"
  disown $! # its kill -9 is the point: no "Killed" notice from this shell
  wait_until 10 "redis-server $name on port $port" port_open "$port"
}

# ------------------------------------------------------ the failover ----

if [[ "${1:-}" == kill ]]; then
  STATE="$2"
  # shellcheck source=/dev/null
  source "$STATE/settings"
  # shellcheck source=/dev/null
  source "$STATE/redis-settings"
  REDIS_SERVER="$(command -v redis-server || echo /usr/bin/redis-server)"
  if [[ "$REPLICA_LAG" != 0s ]]; then
    echo "failover: replica 1 cut off the master for $REPLICA_LAG" >&2
    date +%s%3N >"$STATE/cut-ms"
    kill -STOP "$(cat "$STATE/replica-1.pid")"
    redis_cli "$MASTER_PORT" CLIENT KILL TYPE replica >/dev/null
    sleep "$(awk -v ms="$(millis "$REPLICA_LAG")" 'BEGIN { print ms / 1000 }')"
  fi
  date +%s%3N >"$STATE/killed-ms"
  echo "failover: kill -9 of the master (port $MASTER_PORT)" >&2
  kill -KILL "$(cat "$STATE/master.pid")"
  [[ "$REPLICA_LAG" != 0s ]] && kill -CONT "$(cat "$STATE/replica-1.pid")"
  # shellcheck disable=SC2086 # one port a word
  wait_until 60 "the sentinels to promote a replica" promoted "$SENTINEL_PORT_1" $REPLICA_PORTS
  echo "failover: the sentinels promoted port $(sentinel_master "$SENTINEL_PORT_1") after $(($(date +%s%3N) - $(cat "$STATE/killed-ms"))) ms" >&2
  sleep "$(awk -v ms="$(millis "$DOWN")" 'BEGIN { print ms / 1000 }')"
  # Back as it was configured (a master, empty): the sentinels must demote it.
  start_redis_node old-master "$MASTER_PORT"
  date +%s%3N >"$STATE/restarted-ms"
  wait_until 60 "the old master to be a replica in sync" is_replica_in_sync "$MASTER_PORT"
  echo "failover: the old master is a replica again after $(($(date +%s%3N) - $(cat "$STATE/restarted-ms"))) ms" >&2
  exit 0
fi

# ------------------------------------------------------------ options ----

REPLICAS_ACK=1
REDIS_REPLICAS=1
REPLICA_LAG=0s
SUBSCRIBERS=100
TOPICS=2
RATE=50
BEFORE=4s
DOWN=2s
AFTER=5s
PROFILE=debug
JSON_OUT=""
while (($#)); do
  case "$1" in
    --replicas-ack) REPLICAS_ACK="$2"; shift ;;
    --redis-replicas) REDIS_REPLICAS="$2"; shift ;;
    --replica-lag) REPLICA_LAG="$2"; shift ;;
    --subscribers) SUBSCRIBERS="$2"; shift ;;
    --topics) TOPICS="$2"; shift ;;
    --rate) RATE="$2"; shift ;;
    --before) BEFORE="$2"; shift ;;
    --down) DOWN="$2"; shift ;;
    --after) AFTER="$2"; shift ;;
    --release) PROFILE=release ;;
    --json-out) JSON_OUT="$2"; shift ;;
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
REDIS_SENTINEL="$(command -v redis-sentinel || echo /usr/bin/redis-sentinel)"
for binary in "$SSEHUB" "$HARNESS" "$NGINX" "$REDIS_SERVER" "$REDIS_SENTINEL"; do
  [[ -x "$binary" ]] || { echo "failover: $binary is missing (build it, or run scripts/install-test-deps.sh)" >&2; exit 2; }
done

STATE="$(mktemp -d -t ssehub-failover.XXXXXX)"
# shellcheck disable=SC2329 # run by the EXIT trap
cleanup() {
  cluster_stop_redis
  cluster_stop
}
# shellcheck disable=SC2329
cluster_stop_redis() {
  local pids=() file
  for file in "$STATE"/*.pid; do
    [[ -f "$file" ]] && pids+=("$(cat "$file")")
  done
  # shellcheck disable=SC2086
  ((${#pids[@]})) && stop_pids "${pids[@]}"
  return 0
}
trap cleanup EXIT

# ---------------------------------------------------- Redis + Sentinel ----

MASTER_PORT="$(free_port)"
start_redis_node master "$MASTER_PORT"
REPLICA_PORTS=""
for index in $(seq 1 "$REDIS_REPLICAS"); do
  port="$(free_port)"
  start_redis_node "replica-$index" "$port" --replicaof 127.0.0.1 "$MASTER_PORT"
  wait_until 10 "replica $index to sync" is_replica_in_sync "$port"
  REPLICA_PORTS+="${REPLICA_PORTS:+ }$port"
done
SENTINELS=()
for index in 1 2 3; do
  port="$(free_port)"
  mkdir -p "$STATE/sentinel-$index"
  # Failure detection in a second (production default: 30 s); quorum 2 of 3.
  cat >"$STATE/sentinel-$index/sentinel.conf" <<EOF
port $port
bind 127.0.0.1
daemonize no
loglevel notice
dir $STATE/sentinel-$index
sentinel monitor $MASTER_NAME 127.0.0.1 $MASTER_PORT 2
sentinel down-after-milliseconds $MASTER_NAME 1000
sentinel failover-timeout $MASTER_NAME 5000
sentinel parallel-syncs $MASTER_NAME 1
EOF
  "$REDIS_SENTINEL" "$STATE/sentinel-$index/sentinel.conf" >"$STATE/sentinel-$index.log" 2>&1 </dev/null &
  echo $! >"$STATE/sentinel-$index.pid"
  wait_until 10 "redis-sentinel $index on port $port" port_open "$port"
  SENTINELS+=("127.0.0.1:$port")
  declare "SENTINEL_PORT_$index=$port"
done
# shellcheck disable=SC2329
sentinels_agree() {
  local port="$1" info
  info="$(redis_cli "$port" SENTINEL MASTER "$MASTER_NAME" | tr '\n' ' ')"
  [[ "$info" == *"num-slaves $REDIS_REPLICAS "* && "$info" == *"num-other-sentinels 2 "* ]]
}
for index in 1 2 3; do
  port_var="SENTINEL_PORT_$index"
  wait_until 20 "sentinel $index to know the replica and the other sentinels" sentinels_agree "${!port_var}"
done
cat >"$STATE/redis-settings" <<EOF
MASTER_PORT=$MASTER_PORT
REPLICA_PORTS='$REPLICA_PORTS'
SENTINEL_PORT_1=$SENTINEL_PORT_1
DOWN=$DOWN
REPLICA_LAG=$REPLICA_LAG
EOF

# --------------------------------------------------- hubs + nginx ----

REPLICAS=2
DRAIN_DELAY=0s
DRAIN_SPREAD=1s
DRAIN_TIMEOUT=10s
RETRY=500ms
OWN_REDIS=1
REDIS_URL=""
NGINX_RESEND_503=0
NGINX_LOG_MSEC=1
addresses="$(IFS=,; echo "${SENTINELS[*]}")"
REPLICA_ENV="SSEHUB_BACKPLANE__REDIS__SENTINEL__MASTER_NAME=$MASTER_NAME"
REPLICA_ENV+=" SSEHUB_BACKPLANE__REDIS__SENTINEL__ADDRESSES=[$addresses]"
REPLICA_ENV+=" SSEHUB_BACKPLANE__REDIS__REPLICAS_ACK=$REPLICAS_ACK"
REPLICA_ENV+=" SSEHUB_BACKPLANE__REDIS__CONNECT_TIMEOUT=500ms"
cluster_start
echo "failover: $REPLICAS hubs behind nginx :$NGINX_PORT; Redis master :$MASTER_PORT, replica(s)" \
  "$REPLICA_PORTS, sentinels $addresses; replicas_ack $REPLICAS_ACK; $SUBSCRIBERS subscribers" \
  "over $TOPICS topics, $RATE publishes/s" >&2

# -------------------------------------------------------------- the run ----

RUN_JSON="$STATE/run.jsonl"
args=(run rolling-restart --base-url "http://127.0.0.1:$NGINX_PORT"
  --subscribers "$SUBSCRIBERS" --topics "$TOPICS" --rate "$RATE"
  --disrupt "bash '$SELF' kill '$STATE'" --disrupt-after "$BEFORE" --recover-for "$AFTER"
  --tolerate-unanswered-publishes --json-out "$RUN_JSON" --quiet)
status=0
timeout 300 "$HARNESS" "${args[@]}" >"$STATE/harness.out" || status=$?
[[ -n "$JSON_OUT" && -s "$RUN_JSON" ]] && cat "$RUN_JSON" >>"$JSON_OUT"
if [[ ! -s "$RUN_JSON" ]]; then
  echo "failover: the harness wrote no figures (exit $status)" >&2
  cat "$STATE/harness.out" >&2
  echo "failover: FAIL"
  KEEP_STATE="${KEEP_STATE:-1}"
  exit 1
fi

# The old master must never have run a publish script (a replica counts the
# writes it replicates, e.g. the hubs' health-check SETs, but scripts reach
# it as their effects, never as EVALSHA).
scripts_on_old_master="$(redis_cli "$MASTER_PORT" INFO commandstats | grep -cE '^cmdstat_(evalsha|eval):' || true)"
old_master_role="$(redis_cli "$MASTER_PORT" ROLE | head -n 1)"

# The figures, and the verdict from them (on stderr the table; stdout's
# last line is the verdict).
python3 - "$RUN_JSON" "$STATE/nginx/access.log" "$(cat "$STATE/killed-ms")" "$REPLICAS_ACK" \
  "$scripts_on_old_master" "$old_master_role" "$PROFILE" "$REDIS_REPLICAS" "$REPLICA_LAG" \
  "$(cat "$STATE/cut-ms" 2>/dev/null || echo 0)" <<'PY' >"$STATE/verdict" || status=$?
import json, sys
run = json.loads(open(sys.argv[1]).read().splitlines()[-1])
killed = int(sys.argv[3]) / 1000
replicas_ack = int(sys.argv[4])
old_master_writes, old_master_role, profile = int(sys.argv[5]), sys.argv[6], sys.argv[7]
redis_replicas, replica_lag, cut = sys.argv[8], sys.argv[9], int(sys.argv[10]) / 1000
publish, delivery, check = run["publish"], run["delivery"], run["verification"]
# nginx's access log: "<msec> <addr> "POST /v1/topics/..." <status> ..."
first_refused = first_ok_after = None
statuses = {}
master_alone = 0  # acknowledged while the replica was cut off: only the master held them
for line in open(sys.argv[2]):
    parts = line.split()
    if len(parts) < 6 or parts[2] != '"POST':
        continue
    at, status = float(parts[0]), int(parts[5])
    if cut and cut <= at < killed and 200 <= status < 300:
        master_alone += 1
    if at < killed:
        continue
    statuses[status] = statuses.get(status, 0) + 1
    if first_refused is None and not 200 <= status < 300:
        first_refused = at
    elif first_refused is not None and first_ok_after is None and 200 <= status < 300:
        first_ok_after = at
# No refusal at all: nothing was unavailable (a window of 0).
window = 0.0 if first_refused is None else (
    first_ok_after - first_refused if first_ok_after is not None else None)
rows = [
    ("setting", f'2 hubs, {run["subscribers"]} subscribers over {run["topics"]} topics, '
                f'{publish["target_rate_per_second"]} publishes/s; Redis master + {redis_replicas} replica(s) + '
                f'3 sentinels; replicas_ack {replicas_ack}; replica cut off for {replica_lag} before the kill; {profile} build'),
    ("publishes acknowledged (2xx)", f'{publish["acked"]} of {publish["scheduled"]}'),
    ("refused (503) / unanswered or 504", f'{publish["rejected"]} / {publish["errors"]}'),
    ("statuses after the kill", ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items()))),
    ("unavailability window", f"{window:.2f} s (first non-2xx publish to the first 2xx after it)"
        if window is not None else "none seen"),
    ("deliveries / expected", f'{delivery["deliveries"]} / {delivery["expected"]}'),
    ("acknowledged lost / duplicated / out of order",
     f'{check["lost"]} / {check["duplicated"]} / {check["out_of_order"]}'),
    ("gap frames", f'{delivery["gap_frames"]}'),
    ("unacknowledged but delivered / refused but delivered",
     f'{check["unacked_deliveries"]} / {check["refused_delivered"]}'),
    ("acknowledged while only the master held them", f"{master_alone}" if cut else "- (no cut-off)"),
    ("old master after restart", f'{old_master_role}, {old_master_writes} publish scripts run on it'),
]
problems = []
if replicas_ack >= 1:
    judged = [("lost", check["lost"]), ("duplicated", check["duplicated"]),
              ("out of order", check["out_of_order"])]
    if not cut:
        # With the replica cut off, refused (not replicated) publishes were
        # delivered live and vanish with the master: the hubs then start a
        # new epoch, one gap frame per stream, for events never acknowledged.
        judged.append(("gap frames", delivery["gap_frames"]))
    for name, value in judged:
        if value:
            problems.append(f"{value} {name}")
if delivery.get("closed_early"):
    problems.append(f'{delivery["closed_early"]} streams closed early')
if old_master_writes or old_master_role != "slave":
    problems.append(f"the old master is {old_master_role} and ran {old_master_writes} publish scripts")
if window is None:
    problems.append("no publish was acknowledged after the first refusal")
verdict = "PASS" if not problems else "FAIL: " + "; ".join(problems)
if replicas_ack == 0 and not problems:
    verdict += " (replicas_ack 0: losses and gaps reported, not judged)"
rows.append(("verdict", verdict))
print("| figure | value |", file=sys.stderr)
print("| --- | --- |", file=sys.stderr)
for name, value in rows:
    print(f"| {name} | {value} |", file=sys.stderr)
print("PASS" if not problems else "FAIL")
sys.exit(0 if not problems else 1)
PY
if [[ "$(cat "$STATE/verdict" 2>/dev/null)" == PASS ]]; then
  echo "failover: PASS (replicas_ack $REPLICAS_ACK)"
  exit 0
fi
echo "failover: FAIL (replicas_ack $REPLICAS_ACK)"
KEEP_STATE="${KEEP_STATE:-1}"
exit 1
