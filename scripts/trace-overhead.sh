#!/usr/bin/env bash
# What tracing costs the fan-out: runs load-test scenarios against a release
# ssehub with traces off, then with every span exported (100% sampling) to a
# dummy OTLP/HTTP receiver on loopback, alternating the two for ROUNDS rounds,
# and prints the server's CPU per million deliveries for each.
#
#   scripts/trace-overhead.sh [ROUNDS [SCENARIO...]]
#
# Defaults: 3 rounds of broadcast-1k and saturate-1k. Builds the release
# binaries first. The receiver answers 200 without decoding (its own CPU is
# not counted); it reports how many export requests and bytes it got, so a
# run that exported nothing can't pass for a cheap one.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
ROUNDS="${1:-3}"
shift || true
SCENARIOS=("$@")
[[ ${#SCENARIOS[@]} -gt 0 ]] || SCENARIOS=(broadcast-1k saturate-1k)

cargo build --release -p ssehub -p ssehub-loadtest
SSEHUB="$ROOT/target/release/ssehub"
HARNESS="$ROOT/target/release/ssehub-loadtest"
WORK="$(mktemp -d)"

free_port() {
  local candidate
  for candidate in $(shuf -i 20000-29999 -n 50); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null; then
      echo "$candidate"
      return
    fi
  done
  echo "no free port found" >&2
  exit 1
}

wait_listening() { # wait_listening PORT PID
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

OTLP_PORT="$(free_port)"
python3 - "$OTLP_PORT" "$WORK/receiver.txt" <<'PY' &
import http.server, sys, threading
port, report = int(sys.argv[1]), sys.argv[2]
counts = {"requests": 0, "bytes": 0}
lock = threading.Lock()
class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        with lock:
            counts["requests"] += 1
            counts["bytes"] += len(body)
            open(report, "w").write(f"{counts['requests']} {counts['bytes']}\n")
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), Receiver).serve_forever()
PY
RECEIVER_PID=$!
SERVER_PID=""
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
  [[ -n "$SERVER_PID" ]] && kill -TERM "$SERVER_PID" 2>/dev/null
  kill "$RECEIVER_PID" 2>/dev/null
  wait 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

for round in $(seq 1 "$ROUNDS"); do
  for mode in off on; do
    for scenario in "${SCENARIOS[@]}"; do
      port="$(free_port)"
      env=(SSEHUB_LISTEN="127.0.0.1:$port" SSEHUB_LOG__LEVEL=warn
        SSEHUB_DRAIN__DELAY=0s SSEHUB_DRAIN__SPREAD=0s)
      if [[ "$mode" == on ]]; then
        env+=(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$OTLP_PORT"
          OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf OTEL_TRACES_SAMPLER=always_on)
      fi
      env "${env[@]}" "$SSEHUB" 2>>"$WORK/ssehub-$mode.log" &
      SERVER_PID=$!
      wait_listening "$port" "$SERVER_PID" || { cat "$WORK/ssehub-$mode.log" >&2; exit 1; }
      echo "round $round, tracing $mode, $scenario" >&2
      "$HARNESS" run "$scenario" --base-url "http://127.0.0.1:$port" --server-pid "$SERVER_PID" \
        --json-out "$WORK/$mode.jsonl" --label "$mode round $round" --quiet >/dev/null || true
      kill -TERM "$SERVER_PID"
      wait "$SERVER_PID" || true
      SERVER_PID=""
    done
  done
done

echo "OTLP receiver: $(cat "$WORK/receiver.txt" 2>/dev/null || echo '0 0') (export requests, bytes)"
if grep -qi "drop" "$WORK/ssehub-on.log"; then
  echo "spans were dropped while exporting:"
  grep -i "drop" "$WORK/ssehub-on.log" | head -n 5
fi
python3 - "$WORK/off.jsonl" "$WORK/on.jsonl" <<'PY'
import json, statistics, sys
def load(path):
    runs = {}
    for line in open(path):
        run = json.loads(line)
        if run.get("kind") == "saturate":
            key = (run["scenario"], "best clean step")
            runs.setdefault(key, []).append((run.get("server_cpu_seconds_per_million_deliveries"),
                                             run.get("highest_clean_rate_per_second")))
        elif run.get("step") is None:
            server = run.get("server") or {}
            key = (run["scenario"], "run")
            runs.setdefault(key, []).append((server.get("cpu_seconds_per_million_deliveries"),
                                             run.get("delivery", {}).get("per_second")))
    return runs
off, on = load(sys.argv[1]), load(sys.argv[2])
print("| scenario | tracing off: CPU s / 10^6 deliveries | tracing on (100%) | overhead | rate (off / on) |")
print("| --- | --- | --- | --- | --- |")
for key in sorted(off):
    a = [c for c, _ in off[key] if c]
    b = [c for c, _ in on.get(key, []) if c]
    if not a or not b:
        continue
    ma, mb = statistics.median(a), statistics.median(b)
    ra = statistics.median(r for _, r in off[key] if r)
    rb = statistics.median(r for _, r in on[key] if r)
    runs = lambda xs: ", ".join(f"{x:.3f}" for x in xs)
    print(f"| {key[0]} ({key[1]}) | {ma:.3f} ({runs(a)}) | {mb:.3f} ({runs(b)}) | {100 * (mb / ma - 1):+.1f}% | {ra:,.0f} / {rb:,.0f} |")
PY
