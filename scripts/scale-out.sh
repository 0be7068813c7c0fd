#!/usr/bin/env bash
# Throughput of several replicas against one: the same load-test scenario
# through the same nginx, first in front of one ssehub replica, then in front
# of N (all on one Redis, with the Redis backplane in both runs so only the
# replica count differs). nginx spreads the subscribers over the replicas;
# every publish goes through Redis and reaches every replica. The server
# figures (CPU per delivery, RSS) cover the replicas, Redis and nginx together.
#
#   scripts/scale-out.sh                          saturate-1k, 1 vs 3 replicas
#   scripts/scale-out.sh broadcast-1k --replicas 3 --release --json-out runs.jsonl
#
# Options: SCENARIO (default saturate-1k; any harness scenario), --replicas N
# [3], --release (target/release binaries; the default is target/debug, whose
# figures mean little), --json-out FILE, --label TEXT; anything after `--` goes
# to the harness (e.g. `-- --subscribers 3000`). It ends with a table to
# paste into docs/src/scaling-out/throughput.md (on stderr, one row per
# replica count). The machine is shared and
# has two cores: three replicas there compete for the same CPU, so these
# figures say what a replica costs more than how far it scales; take final
# figures in a quiet sitting, on machines with the cores to match.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib/replicas.sh
source "$ROOT/scripts/lib/replicas.sh"
NAME=scale-out

SCENARIO=saturate-1k
MANY=3
PROFILE=debug
JSON_OUT=""
LABEL=""
EXTRA=()
while (($#)); do
  case "$1" in
    --replicas) MANY="$2"; shift ;;
    --release) PROFILE=release ;;
    --json-out) JSON_OUT="$2"; shift ;;
    --label) LABEL="$2"; shift ;;
    --) shift; EXTRA=("$@"); break ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    *) SCENARIO="$1" ;;
  esac
  shift
done
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
SSEHUB="${SSEHUB_BIN:-$TARGET_DIR/$PROFILE/ssehub}"
HARNESS="${HARNESS_BIN:-$TARGET_DIR/$PROFILE/ssehub-loadtest}"
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
REDIS_SERVER="$(command -v redis-server || echo /usr/bin/redis-server)"
DRAIN_DELAY=0s
DRAIN_SPREAD=0s
DRAIN_TIMEOUT=10s
RETRY=3s

status=0
RUNS="$(mktemp -t ssehub-scale-out-runs.XXXXXX)"
for REPLICAS in 1 "$MANY"; do
  STATE="$(mktemp -d -t ssehub-scale-out.XXXXXX)"
  trap cluster_stop EXIT
  cluster_start
  if [[ "$BACKPLANE" != redis ]]; then
    echo "$NAME: this ssehub build has no Redis backplane: nothing to compare" >&2
    exit 2
  fi
  pids=(--server-pid "$NGINX_PID" --server-pid "$REDIS_PID")
  while read -r pid; do
    pids+=(--server-pid "$pid")
  done <"$STATE/all-pids"
  args=(run "$SCENARIO" --base-url "http://127.0.0.1:$NGINX_PORT" "${pids[@]}" --quiet
    --label "${LABEL:+$LABEL, }$REPLICAS replica(s) behind nginx, redis backplane"
    --json-out "$STATE/runs.jsonl")
  echo "== $SCENARIO through nginx, $REPLICAS replica(s) on one Redis" >&2
  timeout 1800 "$HARNESS" "${args[@]}" "${EXTRA[@]}" || status=$?
  if [[ -s "$STATE/runs.jsonl" ]]; then
    sed "s/^{/{\"replicas\":$REPLICAS,/" "$STATE/runs.jsonl" >>"$RUNS"
    [[ -n "$JSON_OUT" ]] && cat "$STATE/runs.jsonl" >>"$JSON_OUT"
  fi
  cluster_stop
  trap - EXIT
done

# One row per replica count: a saturate scenario's highest clean rate (and the
# figures of its fastest clean step), any other scenario's one run.
python3 - "$RUNS" "$SCENARIO" "$PROFILE" <<'PY' >&2
import json, sys
lines = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
scenario, profile = sys.argv[2], sys.argv[3]
print(f"| {scenario}, {profile} build | deliveries/s | highest clean rate | p50 / p99 ms | CPU µs per delivery (replicas + Redis + nginx) | RSS MiB at end | lost |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for replicas in sorted({line["replicas"] for line in lines}):
    mine = [line for line in lines if line["replicas"] == replicas]
    runs = [line for line in mine if line.get("kind") == "run"]
    saturate = next((line for line in mine if line.get("kind") == "saturate"), None)
    clean = [r for r in runs if r.get("passed")]
    best = max(clean or runs, key=lambda r: r["delivery"]["per_second"], default=None)
    if best is None:
        continue
    server = best.get("server") or {}
    cpu = server.get("cpu_seconds_load")
    deliveries = best["delivery"]["deliveries"]
    per_delivery = f"{1e6 * cpu / deliveries:.2f}" if cpu and deliveries else ""
    rss = f'{server["rss_end_kib"] / 1024:.0f}' if server.get("rss_end_kib") else ""
    rate = f'{saturate["highest_clean_rate_per_second"]}/s' if saturate else ""
    lost = sum(r["verification"]["lost"] for r in runs)
    latency = best["latency_ms"]
    print(f'| {replicas} replica(s) | {best["delivery"]["per_second"]:.0f} | {rate} | '
          f'{latency["p50"]:.1f} / {latency["p99"]:.1f} | {per_delivery} | {rss} | {lost} |')
PY
rm -f "$RUNS"
exit "$status"
