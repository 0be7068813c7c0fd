#!/usr/bin/env bash
# Heap profile of idle streams: where the memory of one idle subscriber goes.
#
#   scripts/dhat-idle.sh            # 2,000 idle streams (default)
#   STREAMS=5000 scripts/dhat-idle.sh
#
# Builds ssehub (release) with the `dhat-heap` feature into its own copy
# (target/dhat/ssehub; the normal release binary is rebuilt without it by
# the next plain build), holds STREAMS idle subscribers open with the
# load-test harness, stops the hub with SIGTERM (dhat writes its profile
# when the process exits) and prints the bytes live at the heap's peak per
# stream, grouped by allocation site. Loopback only; the run is bounded by
# the idle scenario's own hold time.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
STREAMS="${STREAMS:-2000}"
PORT="${PORT:-18090}"
OUT_DIR="$TARGET_DIR/dhat"
mkdir -p "$OUT_DIR"

(cd "$ROOT" && cargo build --release -p ssehub -p ssehub-loadtest --features ssehub/dhat-heap)
cp "$TARGET_DIR/release/ssehub" "$OUT_DIR/ssehub"

cd "$OUT_DIR"
rm -f dhat-heap.json
SSEHUB_LISTEN="127.0.0.1:$PORT" SSEHUB_LIMITS__MAX_SUBSCRIBERS=$((STREAMS + 100)) \
    ./ssehub >"$OUT_DIR/ssehub.log" 2>&1 &
hub=$!
trap 'kill "$hub" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.1
done
"$TARGET_DIR/release/ssehub-loadtest" run idle-10k --subscribers "$STREAMS" \
    --base-url "http://127.0.0.1:$PORT" --server-pid "$hub" --quiet
kill -TERM "$hub"
wait "$hub" || true
trap - EXIT

python3 - "$OUT_DIR/dhat-heap.json" "$STREAMS" <<'PY'
import json, re, sys
profile = json.load(open(sys.argv[1]))
streams = int(sys.argv[2])
frames = profile["ftbl"]
# The first frame that says who asked for the memory, skipping the
# allocator, std's collections and the async machinery in between.
skip = re.compile(r"dhat::|alloc::|core::|std::|<alloc|<core|<std|hashbrown::|bytes::bytes_mut|\[root\]|__rust|futures_util::|async_stream::|tokio::runtime::task::(raw|harness|core)")
def site(pp):
    for index in pp["fs"]:
        text = frames[index]
        if not skip.search(text):
            name = re.sub(r"^0x[0-9a-f]+: ", "", text)
            return re.sub(r" \(.*\)$", "", name)[:110]
    return "?"
sites = {}
for pp in profile["pps"]:
    sites[site(pp)] = sites.get(site(pp), 0) + pp["gb"]
total = sum(sites.values())
print(f"heap at its peak: {total / 1024:.0f} KiB, {total / streams:.0f} bytes per stream ({streams} streams)")
print("bytes/stream  site")
for name, live in sorted(sites.items(), key=lambda item: -item[1])[:15]:
    print(f"{live / streams:11.0f}  {name}")
PY
