#!/usr/bin/env bash
# Heap profile of idle streams: where the memory of one idle subscriber goes.
#
#   scripts/dhat-idle.sh            # 10,000 idle streams (default)
#   STREAMS=5000 scripts/dhat-idle.sh
#
# Runs the release binary under Valgrind's DHAT (installed from Debian when
# missing), opens STREAMS idle subscribers on one topic (raw HTTP/1.1, as a
# browser's EventSource does), stops the hub with SIGTERM (DHAT writes its
# profile at exit) and prints the bytes live at the end (the idle state) per stream,
# grouped by the allocation site that asked for them. Loopback only; bounded
# by STREAMS and a 300 s timeout.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
STREAMS="${STREAMS:-10000}"
OUT_DIR="$TARGET_DIR/dhat"
BIN="${BIN_SSEHUB:-$TARGET_DIR/release/ssehub}"
mkdir -p "$OUT_DIR"

if ! command -v valgrind >/dev/null; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq valgrind >/dev/null
fi
[ "${SKIP_BUILD:-0}" = 1 ] || (cd "$ROOT" && cargo build --release -p ssehub)

profile="$OUT_DIR/dhat.json"
log="$OUT_DIR/ssehub.log"
rm -f "$profile"
# A long drain delay and two signals: the second exits at once, before
# closing would hand every parked stream back to a task (a peak of its own,
# not the idle streams' cost).
SSEHUB_LISTEN=127.0.0.1:0 SSEHUB_LIMITS__MAX_SUBSCRIBERS=$((STREAMS + 100)) SSEHUB_DRAIN__DELAY=60s SSEHUB_DRAIN__TIMEOUT=90s \
    timeout 300 valgrind --tool=dhat --dhat-out-file="$profile" "$BIN" >"$log" 2>&1 &
# Valgrind reads the binary's debug info first: slow on a busy machine.
for _ in $(seq 1 400); do
    grep -q 'listening on' "$log" && break
    sleep 0.3
done
port="$(grep -o 'listening on 127.0.0.1:[0-9]*' "$log" | head -n 1 | cut -d: -f2)"
python3 - "$port" "$STREAMS" <<'PY'
import resource, socket, sys, time
resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
port, count = int(sys.argv[1]), int(sys.argv[2])
streams = []
# In batches, each open before the next: an idle stream's cost is what it
# holds once open (parked on a writer shard), not a burst of connection
# tasks all waiting for their first write at once.
for start in range(0, count, 100):
    batch = []
    for _ in range(min(100, count - start)):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /v1/events?topic=idle HTTP/1.1\r\nHost: hub\r\nAccept: text/event-stream\r\n\r\n")
        batch.append(s)
    for s in batch:
        received = b""
        while b"stream open" not in received:
            chunk = s.recv(4096)
            assert chunk, "a stream closed early"
            received += chunk
    streams.extend(batch)
    time.sleep(0.2)
time.sleep(2)
PY
pkill -TERM -f "valgrind.bin --tool=dhat --dhat-out-file=$profile" || true
sleep 1
pkill -TERM -f "valgrind.bin --tool=dhat --dhat-out-file=$profile" || true
for _ in $(seq 1 300); do
    pgrep -f "valgrind.bin --tool=dhat --dhat-out-file=$profile" >/dev/null || break
    sleep 0.3
done

python3 - "$profile" "$STREAMS" <<'PY'
import json, re, sys, time
# Valgrind may still be writing the profile after the process has gone.
for _ in range(60):
    try:
        profile = json.load(open(sys.argv[1]))
        break
    except ValueError:
        time.sleep(1)
else:
    sys.exit("the DHAT profile is incomplete")
streams = int(sys.argv[2])
frames = profile["ftbl"]
# The first frame that says who asked: past the allocator, std and the
# generic wrappers.
generic = re.compile(r"vgpreload|malloc|alloc::|<alloc|core::|<core|std::|hashbrown|raw_vec|boxed\.rs|\(library/")
def site(pp):
    for index in pp["fs"]:
        text = re.sub(r"^0x[0-9A-Fa-f]+: ", "", frames[index])
        if not generic.search(text):
            return text[:140]
    return "?"
# One site's blocks can be split over several call stacks (inlining,
# different callers): sum them per site before deciding what is per stream.
sites, blocks = {}, {}
for pp in profile["pps"]:
    key = site(pp)
    # At the end (the streams idle, before any drain): not at the heap's
    # peak, which may be a table's growth with its old and new blocks.
    sites[key] = sites.get(key, 0) + pp.get("eb", 0)
    blocks[key] = blocks.get(key, 0) + pp.get("ebk", 0)
# Allocations made about once per stream; and the tables that grow with the
# streams in a few large blocks (a writer shard's slab, its timer heap, a
# topic's list of streams), at 16 bytes a stream or more.
per_stream = {key: live for key, live in sites.items() if blocks[key] >= streams * 0.9}
tables = {
    key: live
    for key, live in sites.items()
    if blocks[key] < streams * 0.9
    and live >= streams * 16
    and re.search(r"slab|shard", key)
}
total = sum(per_stream.values()) + sum(tables.values())
print(f"live at the end, per idle stream ({streams} streams): {total / streams:.0f} bytes")
for name, live in sorted(per_stream.items(), key=lambda item: -item[1])[:12]:
    print(f"{live / streams:8.0f}  {name}")
for name, live in sorted(tables.items(), key=lambda item: -item[1])[:6]:
    print(f"{live / streams:8.0f}  {name} (in {blocks[name]} blocks)")
PY
