#!/usr/bin/env bash
# Builds the container image from the project's own Dockerfile with buildah
# (daemonless, no Docker engine), then runs it the way a cluster would: as
# uid 65532 on a read-only root, with only the image's own configuration.
#
#   scripts/build-image.sh                 # build, then check the image
#   scripts/build-image.sh --build-only    # the base images and the build
#   scripts/build-image.sh --check-only    # check the image built before
#
# (scripts/test.sh builds in the background while the test steps run, then
# checks the image once they are done: a run of the image is a timed check,
# so it runs when nothing else competes for the CPU.)
#
# Base images: when the machine can pull them, buildah would; here nothing is
# pulled (--pull=never). Missing bases are made locally first by
# scripts/lib/stand-in-bases.sh from Debian packages (debootstrap) and the
# machine's Rust toolchain, tagged with the names the Dockerfile uses, and
# kept in buildah's storage: only the first run pays for them. The
# Dockerfile's cache mounts (crates.io registry, target/) persist in
# buildah's cache directory, so a later build compiles only ssehub itself;
# no intermediate layers are kept (with vfs storage each would be a full
# copy of the builder's file system).
#
# Then the image is run (its rootfs mounted read-only, in its own mount, PID
# and network namespaces, chroot'ed as 65532:65532) and checked: its config
# (user, entrypoint, environment, stop signal), no shell inside, /healthz and
# /readyz answer 200, an event published goes out on a stream, SIGTERM makes
# /readyz 503, ends the stream with a retry: hint, and the process exits 0.
# Prints one PASS/FAIL line per check, the image's size, the time taken, and
# "N passed, M failed"; exits non-zero when a check failed.
#
# Environment: IMAGE (default localhost/ssehub:ci), STORAGE_DRIVER (default
# vfs: works everywhere as root), DEBIAN_MIRROR (default deb.debian.org).
# Needs root, buildah, debootstrap, curl, iproute2, binutils and util-linux
# (scripts/install-test-deps.sh installs them).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1
PHASE=all
case "${1:-}" in
  "") ;;
  --build-only) PHASE=build ;;
  --check-only) PHASE=check ;;
  *) echo "usage: scripts/build-image.sh [--build-only | --check-only]" >&2; exit 64 ;;
esac
# shellcheck source=scripts/lib/stand-in-bases.sh
source "$ROOT/scripts/lib/stand-in-bases.sh"

IMAGE="${IMAGE:-localhost/ssehub:ci}"
STORAGE_DRIVER="${STORAGE_DRIVER:-vfs}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
BUILDAH=(buildah --storage-driver "$STORAGE_DRIVER")
START=$SECONDS

log() { printf 'build-image: %s\n' "$*"; }
die() { log "$*"; echo "0 passed, 1 failed"; exit 1; }

[[ "$(id -u)" -eq 0 ]] || die "needs root (buildah's vfs storage and chroot isolation, the mount namespace of the run)"
for tool in buildah debootstrap curl ip unshare nsenter; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is missing: run scripts/install-test-deps.sh"
done

WORK="$(mktemp -d /var/tmp/ssehub-image.XXXXXX)"
RUN_CONTAINER=""
SERVER_PID=""
BUILD_PID=""
cleanup() {
  [[ -n "$BUILD_PID" ]] && kill -TERM "$BUILD_PID" 2>/dev/null && wait "$BUILD_PID"
  [[ -n "$SERVER_PID" ]] && kill -KILL "$SERVER_PID" 2>/dev/null
  if [[ -n "$RUN_CONTAINER" ]]; then
    "${BUILDAH[@]}" umount "$RUN_CONTAINER" >/dev/null 2>&1
    "${BUILDAH[@]}" rm "$RUN_CONTAINER" >/dev/null 2>&1
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "PASS $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }
check() { # check NAME COMMAND...: PASS or FAIL with the command's output indented
  local name="$1" output
  shift
  if output="$("$@" 2>&1)"; then
    pass "$name"
    grep '^note:' <<<"$output" | sed 's/^/     /'
  else
    fail "$name"
    # shellcheck disable=SC2001 # every line, not one substitution
    sed 's/^/     /' <<<"$output" | head -n 40
  fi
}

# ------------------------------------------------------------ base images ----

# The names the Dockerfile's FROM lines use, with its ARG defaults filled in.
DOCKERFILE_RUST="$(sed -n 's/^ARG RUST_VERSION=//p' Dockerfile)"
HOST_RUST="$(rustc -vV | sed -n 's/^release: \([0-9]*\.[0-9]*\).*/\1/p')"
BUILD_ARGS=()
if [[ "$HOST_RUST" != "$DOCKERFILE_RUST" ]]; then
  # The stand-in can only hold the toolchain this machine has.
  log "note: the Dockerfile says Rust $DOCKERFILE_RUST, this machine has $HOST_RUST: building with --build-arg RUST_VERSION=$HOST_RUST"
  BUILD_ARGS+=(--build-arg "RUST_VERSION=$HOST_RUST")
fi
# A machine behind a TLS-inspecting proxy trusts a CA of its own (Debian's
# /usr/local/share/ca-certificates); cargo in the build must trust it too to
# reach crates.io. Its bundle is mounted into the RUN steps only, so the
# image's layers hold the base image's own.
if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
  log "note: this machine trusts CAs of its own: the build's RUN steps get its CA bundle"
  BUILD_ARGS+=(--volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
fi
# Base images of the stages (scratch needs none): the builder's first, the
# runtime's (the image's) last.
mapfile -t BASES < <(sed -n 's/^FROM \([^ ]*\).*/\1/p' Dockerfile | grep -vx scratch | sed "s/\${RUST_VERSION}/$HOST_RUST/")
BUILDER_BASE="${BASES[0]}"
RUNTIME_BASE="${BASES[-1]}"
[[ "$BUILDER_BASE" == rust:*-slim-bookworm && "$RUNTIME_BASE" == gcr.io/distroless/cc-debian12:nonroot ]] ||
  die "the Dockerfile's bases are now $BUILDER_BASE and $RUNTIME_BASE: teach scripts/lib/stand-in-bases.sh to make them"

# usable_base NAME: the image is in local storage, and is either a real one
# (no stand-in label) or a stand-in made by the current recipe.
usable_base() {
  local label
  label="$("${BUILDAH[@]}" inspect --type image --format "{{index .OCIv1.Config.Labels \"$STAND_IN_LABEL\"}}" "$1" 2>/dev/null)" ||
    return 1
  [[ -z "$label" || "$label" == "$(stand_in_recipe)" ]]
}

if [[ $PHASE == check ]]; then
  # The image of an earlier --build-only run.
  bases_seconds=0
  build_seconds=0
  "${BUILDAH[@]}" inspect --type image "$IMAGE" >/dev/null 2>&1 ||
    die "no image $IMAGE in local storage: build it first (scripts/build-image.sh --build-only)"
else
bases_start=$SECONDS
if usable_base "$BUILDER_BASE" && usable_base "$RUNTIME_BASE"; then
  log "base images in local storage: $BUILDER_BASE, $RUNTIME_BASE"
else
  log "making stand-ins for $BUILDER_BASE and $RUNTIME_BASE (once per recipe; kept in buildah's storage)"
  for name in "$BUILDER_BASE" "docker.io/library/$BUILDER_BASE" "$RUNTIME_BASE"; do
    "${BUILDAH[@]}" rmi "$name" >/dev/null 2>&1
  done
  # In a subshell of its own so that `set -e` holds inside the functions.
  (
    set -e
    stand_in_builder "$BUILDER_BASE"
    stand_in_runtime "$RUNTIME_BASE"
  )
  # shellcheck disable=SC2181 # the subshell must not be a condition, or set -e is off inside
  [[ $? -eq 0 ]] || die "could not make the stand-in base images (see above)"
  rm -rf "$WORK/builder-rootfs" "$WORK/runtime-rootfs" "$WORK/runtime-debs"
fi
bases_seconds=$((SECONDS - bases_start))

# ------------------------------------------------------------------ build ----

VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"
REVISION="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
CREATED="$(git log -1 --format=%cI 2>/dev/null || echo unknown)"
build_start=$SECONDS
log "buildah build --pull=never -t $IMAGE (ssehub $VERSION at ${REVISION:0:12})"
# In the background, so that a signal to this script reaches it (cleanup).
"${BUILDAH[@]}" build --pull=never --layers=false --isolation chroot --file Dockerfile --tag "$IMAGE" \
  --build-arg "VERSION=$VERSION" --build-arg "REVISION=$REVISION" --build-arg "CREATED=$CREATED" \
  "${BUILD_ARGS[@]}" . >"$WORK/build.log" 2>&1 &
BUILD_PID=$!
wait "$BUILD_PID"
build_status=$?
BUILD_PID=""
if [[ $build_status -ne 0 ]]; then
  tail -n 60 "$WORK/build.log"
  die "buildah build failed"
fi
build_seconds=$((SECONDS - build_start))
pass "buildah build of the Dockerfile (${build_seconds}s)"
# The image of an earlier build, untagged now, is of no further use.
"${BUILDAH[@]}" rmi --prune >/dev/null 2>&1
fi
if [[ $PHASE == build ]]; then
  log "time: base images ${bases_seconds}s, build ${build_seconds}s, all $((SECONDS - START))s"
  echo "$passed passed, $failed failed"
  exit 0
fi

# ----------------------------------------------------------------- config ----

config() { "${BUILDAH[@]}" inspect --type image --format "$1" "$IMAGE"; }

image_config() {
  local user entrypoint env stop
  user="$(config '{{.OCIv1.Config.User}}')"
  entrypoint="$(config '{{.OCIv1.Config.Entrypoint}}')"
  env="$(config '{{range .OCIv1.Config.Env}}{{println .}}{{end}}')"
  stop="$(config '{{.OCIv1.Config.StopSignal}}')"
  local status=0
  [[ "$user" == "65532:65532" ]] || { echo "User is '$user', expected 65532:65532"; status=1; }
  [[ "$entrypoint" == '[/usr/local/bin/ssehub]' ]] || { echo "Entrypoint is $entrypoint"; status=1; }
  grep -qx 'SSEHUB_LISTEN=0.0.0.0:8080' <<<"$env" || { echo "no SSEHUB_LISTEN=0.0.0.0:8080 in $env"; status=1; }
  grep -qx 'SSEHUB_LOG__FORMAT=json' <<<"$env" || { echo "no SSEHUB_LOG__FORMAT=json in $env"; status=1; }
  [[ "$stop" == SIGTERM ]] || { echo "StopSignal is '$stop'"; status=1; }
  echo "note: user $user, entrypoint $entrypoint, stop signal $stop"
  return $status
}
check "image config: user 65532:65532, exec-form entrypoint, listen 0.0.0.0:8080, JSON logs, SIGTERM" image_config

RUN_CONTAINER="$("${BUILDAH[@]}" from --pull=never --name "ssehub-run-$$" "$IMAGE")" || die "buildah from $IMAGE failed"
ROOTFS="$("${BUILDAH[@]}" mount "$RUN_CONTAINER")" || die "buildah mount failed"

no_shell() {
  local shell found=0
  for shell in bin/sh bin/bash bin/dash usr/bin/sh usr/bin/bash usr/bin/dash; do
    if [[ -e "$ROOTFS/$shell" || -L "$ROOTFS/$shell" ]]; then
      echo "/$shell is in the image"
      found=1
    fi
  done
  return $found
}
check "no shell in the image" no_shell

debug_split() {
  # The image's binary carries symbols and a debug link but not the 56 MB of
  # line tables, which the debug-symbols stage holds.
  local sections
  sections="$(readelf -S -W "$ROOTFS/usr/local/bin/ssehub")" || return 1
  if grep -q '\.debug_info' <<<"$sections"; then
    echo "the binary still holds .debug_info"
    return 1
  fi
  grep -q '\.gnu_debuglink' <<<"$sections" || { echo "no .gnu_debuglink section"; return 1; }
  grep -q '\.symtab' <<<"$sections" || { echo "no symbol table"; return 1; }
  echo "note: binary $(($(stat -c %s "$ROOTFS/usr/local/bin/ssehub") / 1000000)) MB, symbols kept, debug info linked to ssehub.debug"
}
check "the binary without debug info, symbols kept, a debug link" debug_split

# -------------------------------------------------------------------- run ----

# The environment the image gives its process, plus a publish key (as in
# README's docker run) and short drain settings to keep the run brief.
mapfile -t IMAGE_ENV < <(config '{{range .OCIv1.Config.Env}}{{println .}}{{end}}' | grep .)
RUN_ENV=("${IMAGE_ENV[@]}" 'SSEHUB_AUTH__PUBLISH_KEYS=["image-check-key"]'
  SSEHUB_DRAIN__DELAY=2s SSEHUB_DRAIN__SPREAD=1s SSEHUB_DRAIN__TIMEOUT=20s)
ENTRYPOINT="$(config '{{index .OCIv1.Config.Entrypoint 0}}')"
USERSPEC="$(config '{{.OCIv1.Config.User}}')"

# Inside fresh mount, PID and network namespaces: the rootfs bind-mounted
# read-only, /proc, a /dev with the usual four devices (as a runtime gives),
# loopback up, then chroot to the image's user and exec its entrypoint, which
# becomes PID 1 of the namespace as in a container.
cat >"$WORK/run-in-namespaces.sh" <<'SH'
set -eu
rootfs="$1" root="$2" userspec="$3" entrypoint="$4"
shift 4
ip link set lo up
mkdir -p "$root"
mount --bind "$rootfs" "$root"
mount -o remount,bind,ro "$root"
mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
mount -t tmpfs -o nosuid,noexec,mode=0755,size=64k tmpfs "$root/dev"
for device in null zero random urandom; do
  touch "$root/dev/$device"
  mount --bind "/dev/$device" "$root/dev/$device"
done
chroot_bin="$(command -v chroot)"
exec env -i "$@" "$chroot_bin" --userspec="$userspec" "$root" "$entrypoint"
SH

HUB_LOG="$WORK/hub.log"
unshare --mount --pid --net --fork --kill-child \
  bash "$WORK/run-in-namespaces.sh" "$ROOTFS" "$WORK/root" "$USERSPEC" "$ENTRYPOINT" "${RUN_ENV[@]}" \
  >"$HUB_LOG" 2>&1 &
UNSHARE_PID=$!
# The hub is unshare's only child (bash exec'ed into env, chroot, ssehub).
for _ in $(seq 50); do
  SERVER_PID="$(pgrep -P "$UNSHARE_PID" | head -n 1)"
  [[ -n "$SERVER_PID" ]] && break
  sleep 0.1
done
[[ -n "$SERVER_PID" ]] || { cat "$HUB_LOG"; die "the image's process did not start"; }

# Everything the checks send goes into the hub's network namespace.
in_netns() { nsenter --target "$UNSHARE_PID" --net "$@"; }
status_of() { in_netns curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:8080$1"; }

ready=""
for _ in $(seq 300); do
  [[ "$(status_of /readyz)" == 200 ]] && { ready=yes; break; }
  kill -0 "$SERVER_PID" 2>/dev/null || break
  sleep 0.1
done
if [[ -n "$ready" ]]; then
  pass "the image's entrypoint serves: /readyz 200 on 0.0.0.0:8080"
else
  fail "the image's entrypoint serves: /readyz 200 on 0.0.0.0:8080"
  sed 's/^/     /' "$HUB_LOG" | head -n 40
  echo "$passed passed, $failed failed"
  exit 1
fi

runs_as() {
  local uid gid exe
  uid="$(awk '/^Uid:/ {print $2 ":" $3 ":" $4 ":" $5}' "/proc/$SERVER_PID/status")"
  gid="$(awk '/^Gid:/ {print $2 ":" $3 ":" $4 ":" $5}' "/proc/$SERVER_PID/status")"
  exe="$(readlink "/proc/$SERVER_PID/exe")"
  echo "note: uid $uid, gid $gid, $exe"
  [[ "$uid" == 65532:65532:65532:65532 && "$gid" == 65532:65532:65532:65532 ]] || return 1
  [[ "$exe" == */usr/local/bin/ssehub ]] || return 1
  # The root it sees is the read-only bind mount.
  grep -E '^[^ ]+ / [^ ]+ ro[, ]' "/proc/$SERVER_PID/mounts" >/dev/null ||
    { echo "its / is not mounted read-only:"; grep ' / ' "/proc/$SERVER_PID/mounts"; return 1; }
}
check "runs as 65532:65532 on a read-only root" runs_as
check "/healthz 200" test "$(status_of /healthz)" = 200

# A subscriber, then a publish with the key from the environment.
STREAM="$WORK/stream.txt"
in_netns curl -sN --max-time 60 'http://127.0.0.1:8080/v1/events?topic=image.check' >"$STREAM" 2>/dev/null &
CURL_PID=$!
for _ in $(seq 50); do
  grep -q 'stream open' "$STREAM" && break
  sleep 0.1
done
PUBLISHED="$(in_netns curl -s --max-time 5 -X POST http://127.0.0.1:8080/v1/topics/image.check/events \
  -H 'authorization: Bearer image-check-key' -H 'content-type: application/json' \
  -d '{"data": {"built": "by buildah"}, "event": "check"}')"
EVENT_ID="$(sed -n 's/.*"id":"\([^"]*\)".*/\1/p' <<<"$PUBLISHED")"
delivered() {
  [[ -n "$EVENT_ID" ]] || { echo "publish answered: $PUBLISHED"; return 1; }
  local _
  for _ in $(seq 50); do
    grep -qx "id: $EVENT_ID" "$STREAM" && grep -qF 'data: {"built":"by buildah"}' "$STREAM" && return 0
    sleep 0.1
  done
  echo "the stream got:"
  cat "$STREAM"
  return 1
}
check "a published event reaches a subscriber" delivered

# SIGTERM, as a kubelet or `docker stop` sends it to PID 1.
kill -TERM "$SERVER_PID"
drain_started=$SECONDS
not_ready() {
  local _ code
  for _ in $(seq 20); do
    code="$(status_of /readyz)"
    [[ "$code" == 503 ]] && return 0
    sleep 0.1
  done
  echo "/readyz answered $code after SIGTERM"
  return 1
}
check "SIGTERM: /readyz 503 while draining" not_ready
wait "$UNSHARE_PID"
exit_code=$?
SERVER_PID=""
drain_seconds=$((SECONDS - drain_started))
check "SIGTERM: the process exits 0 (after ${drain_seconds}s)" test "$exit_code" -eq 0
wait "$CURL_PID" 2>/dev/null
stream_ended() {
  # The event, then the drain's retry: hint, then a clean end (curl exits 0).
  awk -v id="id: $EVENT_ID" '$0 == id {seen = 1} seen && /^retry: [0-9]+$/ {hint = 1} END {exit !(seen && hint)}' "$STREAM" ||
    { echo "the stream got:"; cat "$STREAM"; return 1; }
}
check "SIGTERM: the open stream gets a retry: hint and ends" stream_ended
json_logs() {
  python3 -c '
import json, sys
lines = [l for l in open(sys.argv[1]) if l.strip()]
for line in lines:
    json.loads(line)
print(f"note: {len(lines)} log lines, all JSON")
' "$HUB_LOG" || { head -n 5 "$HUB_LOG"; return 1; }
}
check "logs are JSON lines" json_logs

# ----------------------------------------------------------------- report ----

binary_bytes="$(stat -c %s "$ROOTFS/usr/local/bin/ssehub")"
rootfs_bytes="$(du -sb "$ROOTFS" | cut -f1)"
"${BUILDAH[@]}" umount "$RUN_CONTAINER" >/dev/null 2>&1
"${BUILDAH[@]}" rm "$RUN_CONTAINER" >/dev/null 2>&1
RUN_CONTAINER=""
echo
log "image $IMAGE: $("${BUILDAH[@]}" images --format '{{.Size}}' "$IMAGE") as buildah lists it; its files" \
  "$((rootfs_bytes / 1000000)) MB, of which the binary $((binary_bytes / 1000000)) MB"
log "time: base images ${bases_seconds}s, build ${build_seconds}s, all $((SECONDS - START))s"
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
