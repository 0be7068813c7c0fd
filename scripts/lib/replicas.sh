# Shared by scripts/rolling-restart.sh and scripts/scale-out.sh (sourced, not
# run): N ssehub replicas on free loopback ports sharing one Redis, with a real
# nginx in front of them made from the project's nginx config, and the helpers
# to wait for them and stop them.
#
# Before `cluster_start`, set: STATE (an empty directory for ports, pids,
# logs), REPLICAS, SSEHUB, NGINX, REDIS_SERVER, ROOT, DRAIN_DELAY,
# DRAIN_SPREAD, DRAIN_TIMEOUT, RETRY, and NAME (for messages); optionally
# REPLICA_DRAIN_SPREAD, the drain.spread the replicas really get (default
# DRAIN_SPREAD; the rolling restart's burst calibration sets 0s). Also
# optional: OWN_REDIS=1 (the caller runs Redis itself and sets REDIS_URL),
# REPLICA_ENV (more VAR=value words for every ssehub), NGINX_RESEND_503=0
# (nginx does not pass a publish answered 503 to the next replica),
# NGINX_LOG_MSEC=1 (access log lines start with the time, in seconds with
# ms) and NGINX_LOG_UPSTREAM=1 (they end with the client's port and the
# upstream that served it: port=... up=...). It sets BACKPLANE (redis, or memory with REPLICAS=1 for a build
# without Redis), REDIS_URL, REDIS_PID, NGINX_PORT and NGINX_PID.
# `cluster_stop` ends it all.
# shellcheck shell=bash

millis() { # millis DURATION: 500ms, 2s, 1m -> milliseconds
  local value="$1"
  case "$value" in
    *ms) echo "${value%ms}" ;;
    *s) echo $((${value%s} * 1000)) ;;
    *m) echo $((${value%m} * 60000)) ;;
    *) echo "cannot read the duration $value (use ms, s or m)" >&2; return 1 ;;
  esac
}

port_open() { # port_open PORT: something accepts connections there
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

free_port() { # a random loopback port nobody listens on, below the ephemeral range
  local candidate
  for candidate in $(shuf -i 20000-32000 -n 100); do
    if ! port_open "$candidate"; then
      echo "$candidate"
      return 0
    fi
  done
  echo "no free port found" >&2
  return 1
}

# shellcheck disable=SC2329 # called through ready
http_status() { # http_status PORT PATH: the status code of a GET, or nothing
  local line
  {
    exec 3<>"/dev/tcp/127.0.0.1/$1" &&
      printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$2" >&3 &&
      IFS=' ' read -r -t 2 _ line _ <&3 &&
      echo "$line"
  } 2>/dev/null || true
  exec 3<&- 2>/dev/null || true
}

wait_until() { # wait_until SECONDS WHAT COMMAND...: polls every 50 ms
  local seconds="$1" what="$2"
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@"; do
    if ((SECONDS >= deadline)); then
      echo "$NAME: timed out after ${seconds}s waiting for $what" >&2
      return 1
    fi
    sleep 0.05
  done
}

# Conditions for wait_until, which calls them by name.
# shellcheck disable=SC2329
ready() { [[ "$(http_status "$1" /readyz)" == 200 ]]; }
# shellcheck disable=SC2329
port_free() { ! port_open "$1"; }
# shellcheck disable=SC2329
gone() { ! kill -0 "$1" 2>/dev/null; }

# start_replica INDEX: a fresh ssehub on replica INDEX's port, logging to its
# own file (never to stdout: the harness reads this script's stdout).
start_replica() {
  local index="$1" port generation
  port="$(cat "$STATE/port-$index")"
  generation=$(($(cat "$STATE/generation-$index" 2>/dev/null || echo 0) + 1))
  echo "$generation" >"$STATE/generation-$index"
  # shellcheck disable=SC2086 # REPLICA_ENV: one VAR=value a word
  env ${REPLICA_ENV:-} SSEHUB_LISTEN="127.0.0.1:$port" \
    SSEHUB_LOG__LEVEL=info SSEHUB_LOG__FORMAT=json \
    SSEHUB_DRAIN__DELAY="$DRAIN_DELAY" SSEHUB_DRAIN__SPREAD="${REPLICA_DRAIN_SPREAD:-$DRAIN_SPREAD}" \
    SSEHUB_DRAIN__TIMEOUT="$DRAIN_TIMEOUT" SSEHUB_STREAM__RETRY="$RETRY" \
    SSEHUB_BACKPLANE__KIND="$BACKPLANE" SSEHUB_BACKPLANE__REDIS__URL="$REDIS_URL" \
    "$SSEHUB" >"$STATE/replica-$index.$generation.log" 2>&1 </dev/null &
  echo $! >"$STATE/pid-$index"
  echo $! >>"$STATE/all-pids"
}

cluster_start() {
  # ------------------------------------------------------------ backplane ----

  # With a build that has the Redis backplane, the replicas share one Redis.
  # Before it, the machinery runs on one replica with the memory backplane: a
  # restart there is a new hub with an empty history, so resumed streams get a
  # gap frame and publishes fail while no process listens; those are reported,
  # not judged.
  BACKPLANE=redis
  REDIS_URL=""
  if ! SSEHUB_BACKPLANE__KIND=redis SSEHUB_BACKPLANE__REDIS__URL=redis://127.0.0.1:6379/0 \
    "$SSEHUB" --print-config >/dev/null 2>&1; then
    BACKPLANE=memory
    echo "$NAME: this ssehub build has no Redis backplane: one replica on the memory backplane, gaps and refused publishes reported but not judged" >&2
    REPLICAS=1
  fi
  if [[ "$BACKPLANE" == redis && "${OWN_REDIS:-0}" != 1 ]]; then
    REDIS_PORT="$(free_port)"
    mkdir -p "$STATE/redis"
    # No persistence: Redis stays up for the whole run, which is the point.
    "$REDIS_SERVER" --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$STATE/redis" \
      --save '' --appendonly no --daemonize no --loglevel warning \
      >"$STATE/redis.log" 2>&1 </dev/null &
    REDIS_PID=$!
    REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
    wait_until 10 "redis-server on port $REDIS_PORT" port_open "$REDIS_PORT"
  fi

  # ------------------------------------------------------------- replicas ----

  for index in $(seq 1 "$REPLICAS"); do
    free_port >"$STATE/port-$index"
  done
  cat >"$STATE/settings" <<EOF
REPLICAS=$REPLICAS
SSEHUB='$SSEHUB'
BACKPLANE=$BACKPLANE
REDIS_URL='$REDIS_URL'
REPLICA_ENV='${REPLICA_ENV:-}'
DRAIN_DELAY=$DRAIN_DELAY
DRAIN_SPREAD=$DRAIN_SPREAD
REPLICA_DRAIN_SPREAD=${REPLICA_DRAIN_SPREAD:-$DRAIN_SPREAD}
DRAIN_TIMEOUT=$DRAIN_TIMEOUT
RETRY=$RETRY
EOF
  for index in $(seq 1 "$REPLICAS"); do
    start_replica "$index"
  done
  for index in $(seq 1 "$REPLICAS"); do
    wait_until 30 "replica $index to be ready" ready "$(cat "$STATE/port-$index")"
  done

  # ---------------------------------------------------------------- nginx ----

  # The project's config, with the replicas as the upstream and two changes
  # that several replicas need (nginx/README.md, "Several replicas"):
  # - a publish that a draining replica answers 503 (it took nothing) goes to
  #   the next replica, POST or not (ssehub's publish locations, and the
  #   streams' location, which also takes the Mercure form publish);
  # - a replica that failed 3 times is skipped for 1 s only, so the fresh
  #   process on its port gets its share soon (3, not 1: one stray reset must
  #   not take a healthy replica out too, or all three can be out at once).
  NGINX_PORT="$(free_port)"
  mkdir -p "$STATE/nginx"
  upstream=""
  for index in $(seq 1 "$REPLICAS"); do
    upstream+="server 127.0.0.1:$(cat "$STATE/port-$index") max_fails=3 fail_timeout=1s; "
  done
  # Two connections per stream (client and upstream): room for the subscribers
  # in each of the two workers, within the 20,000 open files a process may hold.
  local msec='' upstream_log='' resend='http_503 '
  # shellcheck disable=SC2016 # nginx's variables, literally
  [[ "${NGINX_LOG_MSEC:-0}" == 1 ]] && msec='$msec '
  # shellcheck disable=SC2016
  [[ "${NGINX_LOG_UPSTREAM:-0}" == 1 ]] && upstream_log=' port=$remote_port up=$upstream_addr'
  [[ "${NGINX_RESEND_503:-1}" == 0 ]] && resend=''
  sed -e 's/worker_connections 8192;/worker_connections 16384;/' \
    -e "s/log_format ssehub '/log_format ssehub '$msec/" \
    -e "s/'ua=\"\$http_user_agent\"';/'ua=\"\$http_user_agent\"$upstream_log';/" \
    "$ROOT/nginx/nginx.conf" >"$STATE/nginx/nginx.conf"
  sed -e "s/server @SSEHUB_UPSTREAM@;/${upstream% }/" \
    -e "s/@LISTEN_PORT@/127.0.0.1:$NGINX_PORT/" \
    -e "/location \/v1\/topics\/ {/a\        proxy_next_upstream error timeout ${resend}non_idempotent;" \
    -e "/location ~ \^\/(?:_ssehub_token\/)?(?:v1\/events|event-stream/a\        proxy_next_upstream error timeout ${resend}non_idempotent;" \
    "$ROOT/nginx/ssehub.conf" >"$STATE/nginx/ssehub.conf"
  if [[ "$(grep -c 'proxy_next_upstream' "$STATE/nginx/ssehub.conf")" -ne 2 ]]; then
    echo "$NAME: nginx/ssehub.conf changed shape: the publish locations were not found" >&2
    return 2
  fi
  "$NGINX" -p "$STATE/nginx/" -c "$STATE/nginx/nginx.conf" -e "$STATE/nginx/error.log" \
    -g 'daemon off;' </dev/null >"$STATE/nginx/stdout.log" 2>&1 &
  NGINX_PID=$!
  wait_until 10 "nginx on port $NGINX_PORT" ready "$NGINX_PORT"
}

# Ends the replicas (every generation), nginx and Redis; keeps STATE when
# KEEP_STATE=1.
cluster_stop() {
  # Replicas first (they drain quickly once nothing is connected), while Redis
  # is still up: a replica that saw Redis go first would log a Redis outage
  # that belongs to the cleanup, not to the run. Then nginx and Redis.
  # shellcheck disable=SC2046 # one pid a line
  stop_pids $(cat "$STATE/all-pids" 2>/dev/null)
  # shellcheck disable=SC2086 # either may be unset: no word then
  stop_pids ${NGINX_PID:-} ${REDIS_PID:-}
  if [[ "${KEEP_STATE:-}" == 1 ]]; then
    echo "$NAME: logs kept in $STATE" >&2
  else
    rm -rf "$STATE"
  fi
}

stop_pids() { # stop_pids PID...: SIGTERM, up to 15 s to exit, then SIGKILL
  local pid
  for pid in "$@"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "$@"; do
    wait_until 15 "pid $pid to exit" gone "$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  done
}
