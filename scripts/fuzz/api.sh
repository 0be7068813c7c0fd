#!/usr/bin/env bash
# Fuzzes every non-streaming operation of the real ssehub binary with
# schemathesis, against the spec the binary serves at /openapi.json.
#
#   bash scripts/fuzz/api.sh            # CI size: bounded examples and time
#   bash scripts/fuzz/api.sh --long     # many more examples, a random seed
#
# One run per auth mode (see MODES below): the hub is started fresh with the
# mode's environment, schemathesis sends the mode's headers. The `mercure`
# mode turns the Mercure hub on and fuzzes its operations only (the other
# modes see them off: 404). A mode passes
# when schemathesis finds nothing (no 5xx; every status, content type,
# header and body as the spec documents it; schema-valid input accepted,
# schema-violating input refused) and the hub is still running, with no
# panic in its log. Ends with "fuzz: N passed, M failed" (one per mode).
#
# Environment: SSEHUB_BIN (default target/debug/ssehub), FUZZ_VENV
# (where scripts/install-test-deps.sh put schemathesis, default
# .tools/fuzz-venv), FUZZ_MAX_EXAMPLES, FUZZ_MAX_TIME (seconds per mode),
# FUZZ_SEED, FUZZ_ONLY (a regex: run only the modes whose name matches),
# FUZZ_HOOKS (the schemathesis hooks file, default scripts/fuzz/hooks.py).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SSEHUB_BIN="${SSEHUB_BIN:-$ROOT/target/debug/ssehub}"
VENV="${FUZZ_VENV:-$ROOT/.tools/fuzz-venv}"
ST="$VENV/bin/st"

if [[ "${1:-}" == "--long" ]]; then
  MAX_EXAMPLES="${FUZZ_MAX_EXAMPLES:-2000}"
  MAX_TIME="${FUZZ_MAX_TIME:-900}"
  SEED="${FUZZ_SEED:-$RANDOM$RANDOM}"
else
  # CI: about 35 s per mode on 2 cores (eight modes: under 5 min, as seven
  # took at 35 s each); a fixed seed so a red run replays.
  MAX_EXAMPLES="${FUZZ_MAX_EXAMPLES:-60}"
  MAX_TIME="${FUZZ_MAX_TIME:-30}"
  SEED="${FUZZ_SEED:-12}"
fi

# The key of the static-key modes; any value works, it only has to match.
FUZZ_KEY="fuzz-publish-key"

# The HMAC secret of the JWT modes (at least 32 bytes, RFC 7518 section 3.2).
FUZZ_JWT_SECRET="fuzz-jwt-secret-of-at-least-32-bytes"

# Prints an HS256 JWT signed with FUZZ_JWT_SECRET: $1 the `ssehub.publish`
# patterns (a JSON list), $2 seconds from now to `exp` (negative: expired).
# Python's standard library (the fuzz venv's interpreter) signs it, so the
# token is made independently of the hub's own JWT code.
jwt_token() {
  "$VENV/bin/python" - "$FUZZ_JWT_SECRET" "$1" "$2" <<'PY'
import base64, hashlib, hmac, json, sys, time
secret, publish, expires_in = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
claims = b64(json.dumps({"sub": "fuzz", "exp": int(time.time()) + expires_in,
                         "ssehub": {"publish": publish, "subscribe": publish}}).encode())
signature = hmac.new(secret.encode(), f"{header}.{claims}".encode(), hashlib.sha256).digest()
print(f"{header}.{claims}.{b64(signature)}")
PY
}

# The Mercure mode's keys: the publisher's and another for subscribers, so
# that the publisher token schemathesis sends is refused (401) on the
# subscription, which would otherwise open a stream that never ends.
MERCURE_PUBLISHER_SECRET="fuzz-mercure-publisher-secret-of-32-bytes"
MERCURE_SUBSCRIBER_SECRET="fuzz-mercure-subscriber-secret-of-32-bytes"

# Prints an HS256 Mercure publisher token (draft-07: `mercure.publish`
# ["*"]), signed with MERCURE_PUBLISHER_SECRET, without `exp` as Mercure 0.x
# tokens often are.
mercure_token() {
  "$VENV/bin/python" - "$MERCURE_PUBLISHER_SECRET" <<'PY'
import base64, hashlib, hmac, json, sys
def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
claims = b64(json.dumps({"mercure": {"publish": ["*"]}}).encode())
signature = hmac.new(sys.argv[1].encode(), f"{header}.{claims}".encode(), hashlib.sha256).digest()
print(f"{header}.{claims}.{b64(signature)}")
PY
}

# Auth modes: name | hub environment (space-separated K=V) | request header
# (empty: none) | the status a well-formed publish gets in that mode (checked
# before fuzzing, so a mode can't quietly test something else) | optional:
# the only path fuzzed (a regex), whose publish the probe sends instead. The
# JWT modes: a token that may publish to every topic, one
# whose grant covers no topic schemathesis sends (403), and one that expired
# an hour ago (past any leeway: 401).
JWT_ENV="SSEHUB_AUTH__JWT__SECRET=$FUZZ_JWT_SECRET"
MODES=(
  "open|||202"
  "publish-key|SSEHUB_AUTH__PUBLISH_KEYS=[\"$FUZZ_KEY\"]|Authorization: Bearer $FUZZ_KEY|202"
  "publish-key-absent|SSEHUB_AUTH__PUBLISH_KEYS=[\"$FUZZ_KEY\"]||401"
  "publish-key-wrong|SSEHUB_AUTH__PUBLISH_KEYS=[\"$FUZZ_KEY\"]|Authorization: Bearer not-$FUZZ_KEY|401"
)
add_jwt_modes() {
  MODES+=(
    "jwt-valid|$JWT_ENV|Authorization: Bearer $(jwt_token '["*"]' 3600)|202"
    "jwt-other-topic|$JWT_ENV|Authorization: Bearer $(jwt_token '["fuzz-no-such-topic.*"]' 3600)|403"
    "jwt-expired|$JWT_ENV|Authorization: Bearer $(jwt_token '["*"]' -3600)|401"
  )
}
MERCURE_PATH="/.well-known/mercure"
add_mercure_mode() {
  local env="SSEHUB_MERCURE__ENABLED=true SSEHUB_MERCURE__PUBLISHER_JWT__KEY=$MERCURE_PUBLISHER_SECRET"
  env+=" SSEHUB_MERCURE__SUBSCRIBER_JWT__KEY=$MERCURE_SUBSCRIBER_SECRET"
  MODES+=("mercure|$env|Authorization: Bearer $(mercure_token)|200|^/\\.well-known/mercure\$")
}

[[ -x "$ST" ]] || { echo "fuzz: schemathesis missing at $ST: run scripts/install-test-deps.sh" >&2; exit 1; }
[[ -x "$SSEHUB_BIN" ]] || { echo "fuzz: no ssehub binary at $SSEHUB_BIN: cargo build first" >&2; exit 1; }
add_jwt_modes
add_mercure_mode

WORK="$(mktemp -d -t ssehub-fuzz.XXXXXX)"
HUB_PID=""
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
  if [[ -n "$HUB_PID" ]]; then
    kill "$HUB_PID" 2>/dev/null || true
    wait "$HUB_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# Starts the hub with "$@" as extra environment; sets HUB_PID and HUB_URL.
start_hub() {
  local log="$1"
  shift
  # Only the mode's configuration: drop any SSEHUB_* this shell inherited.
  local inherited=()
  while IFS= read -r key; do inherited+=(-u "$key"); done < <(compgen -e | grep '^SSEHUB_' || true)
  env "${inherited[@]}" SSEHUB_LISTEN=127.0.0.1:0 SSEHUB_LOG__LEVEL=warn,ssehub=info \
    SSEHUB_DRAIN__DELAY=0s SSEHUB_DRAIN__SPREAD=0s "$@" \
    "$SSEHUB_BIN" >"$log" 2>&1 &
  HUB_PID=$!
  local port=""
  for _ in $(seq 1 100); do
    port="$(grep -ao 'listening on 127.0.0.1:[0-9]*' "$log" | head -n 1 | cut -d: -f2 || true)"
    [[ -n "$port" ]] && break
    kill -0 "$HUB_PID" 2>/dev/null || { echo "fuzz: ssehub exited at start:" >&2; cat "$log" >&2; return 1; }
    sleep 0.1
  done
  [[ -n "$port" ]] || { echo "fuzz: ssehub did not log its address" >&2; return 1; }
  HUB_URL="http://127.0.0.1:$port"
}

# Prints the status one well-formed publish gets with header $1 (may be
# empty): ssehub's own, or with $2 = mercure the Mercure form publish.
probe_publish() {
  local url="$HUB_URL/v1/topics/fuzz-probe/events"
  [[ "${2:-}" == mercure ]] && url="$HUB_URL$MERCURE_PATH"
  "$VENV/bin/python" - "$url" "$1" "${2:-}" <<'PY'
import sys, urllib.error, urllib.request
url, header, kind = sys.argv[1:4]
if kind == "mercure":
    body, content_type = b"topic=https%3A%2F%2Fexample.com%2Ffuzz-probe&data=probe", "application/x-www-form-urlencoded"
else:
    body, content_type = b'{"data": "probe"}', "application/json"
request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type})
if header:
    name, _, value = header.partition(": ")
    request.add_header(name, value)
try:
    print(urllib.request.urlopen(request, timeout=10).status)
except urllib.error.HTTPError as error:
    print(error.code)
PY
}

stop_hub() {
  kill "$HUB_PID" 2>/dev/null || true
  wait "$HUB_PID" 2>/dev/null || true
  HUB_PID=""
}

# schemathesis keeps a cache in the working directory; not in the tree.
cd "$WORK"
passed=0
failed=0
echo "fuzz: schemathesis $("$ST" --version | awk '{print $NF}'), seed $SEED, at most $MAX_EXAMPLES examples and ${MAX_TIME}s per operation set"
for mode in "${MODES[@]}"; do
  IFS='|' read -r name env_line header expected_status only_path <<<"$mode"
  [[ -z "${FUZZ_ONLY:-}" || "$name" =~ $FUZZ_ONLY ]] || continue
  log="$WORK/$name.hub.log"
  # shellcheck disable=SC2086 # env_line is a list of K=V words
  start_hub "$log" $env_line
  args=(
    run "$HUB_URL/openapi.json"
    # The streams never end; their parameters are covered by tests/api.
    --exclude-name "GET /v1/events"
    --exclude-name "GET /event-stream"
    --checks all
    --max-examples "$MAX_EXAMPLES"
    --max-time "$MAX_TIME"
    --seed "$SEED"
    # One worker: with two, schemathesis' coverage phase sometimes fails
    # with an internal KeyError (a cache shared between its threads), which
    # would read as a finding. The hub is not the bottleneck either way.
    --workers 1
    --request-timeout 10
    --suppress-health-check all
    --report junit --report-dir "$WORK/$name.report"
  )
  [[ -n "$header" ]] && args+=(--header "$header")
  probe_kind=""
  if [[ -n "$only_path" ]]; then
    args+=(--include-path-regex "$only_path")
    probe_kind=mercure
    # Every check of the other modes runs, schema-violating input refused
    # (negative_data_rejection) included: the schema says what the hub
    # refuses where OpenAPI can (no empty selector, one topic or more and
    # none empty, `retry` in digits; tests/api/spec.rs holds it to that).
    # Not positive_data_acceptance (schema-valid input accepted): what else
    # Mercure refuses can't be said in OpenAPI: at least one selector among
    # topic, match, match_exact and match_urlpattern, and at most
    # limits.max_topics_per_subscription of them all together; no control
    # or Unicode format (Cf) characters in topics, selectors, ids and types
    # (a JSON Schema pattern has no portable \p{Cf}); URI templates and URL
    # patterns that parse; the reserved `*`, `earliest`, `#…`, `urn:ssehub:…`
    # and `mercure` values and the hub's own topic namespace. Those are
    # tested one by one in tests/api/mercure*.rs.
    args+=(--exclude-checks "positive_data_acceptance")
  fi
  printf '\n--- fuzz mode %s (hub %s)\n' "$name" "$HUB_URL"
  verdict=ok
  status="$(probe_publish "$header" "$probe_kind")"
  if [[ "$status" != "$expected_status" ]]; then
    verdict="a publish got $status, not the mode's $expected_status"
  fi
  # Valid idempotency keys made unique per request (see hooks.py).
  SCHEMATHESIS_HOOKS="${FUZZ_HOOKS:-$ROOT/scripts/fuzz/hooks.py}" "$ST" "${args[@]}" || verdict="schemathesis found problems (replay with FUZZ_SEED=$SEED)"
  if ! kill -0 "$HUB_PID" 2>/dev/null; then
    verdict="the hub died"
  elif grep -aq 'panicked' "$log"; then
    verdict="the hub panicked"
  fi
  stop_hub
  if [[ "$verdict" == ok ]]; then
    passed=$((passed + 1))
    echo "--- fuzz mode $name: passed"
  else
    failed=$((failed + 1))
    echo "--- fuzz mode $name: FAILED: $verdict; the hub's log:"
    tail -n 50 "$log"
    # A backtrace pushes the panic's own message out of the tail.
    grep -a -A 2 'panicked' "$log" | head -n 20 || true
  fi
done

echo "fuzz: $passed passed, $failed failed"
[[ "$failed" -eq 0 ]]
