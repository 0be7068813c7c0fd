# Stand-ins for the Dockerfile's two base images, made on this machine from
# Debian packages (debootstrap) and the local Rust toolchain, for builders that
# can pull no registry image (sourced by scripts/build-image.sh, not run):
#
#   rust:<RUST_VERSION>-slim-bookworm   bookworm minbase + ca-certificates, gcc,
#                                        libc6-dev; rustup with the host's
#                                        toolchain (profile minimal: rustc,
#                                        cargo, rust-std) in /usr/local/rustup,
#                                        /usr/local/cargo, with the real
#                                        image's ENV
#   gcr.io/distroless/cc-debian12:nonroot
#                                        what distroless/cc-debian12 holds,
#                                        unpacked from the same packages: glibc,
#                                        libgcc, libgomp, libstdc++, libssl3,
#                                        base-files, netbase, tzdata, the CA
#                                        bundle, passwd/group with nonroot
#                                        (65532); no shell, no package manager
#
# How they differ from the real images: the packages are bookworm's current
# point release from the mirror, without bookworm-security's updates; the
# builder's rustup is this machine's rustup binary, its docs, man pages and
# locales are gone (the real slim image keeps copyright files), it is one
# layer without history; the runtime has no /var/lib/dpkg/status.d entries
# (scanners that read distroless's package list find none) and its packages
# are not distroless's pinned snapshot. Each image carries the label
# STAND_IN_LABEL with a hash of this file and the toolchain's version, so
# that scripts/build-image.sh makes them again when either changes.
#
# Before calling, set: BUILDAH (an array: buildah and its global options),
# WORK (an empty scratch directory), DEBIAN_MIRROR. `stand_in_builder NAME`
# and `stand_in_runtime NAME` each commit an image under NAME (and under the
# fully qualified docker.io/library/ name for the builder). The runtime needs
# the builder's rootfs, so make the builder first.
# shellcheck shell=bash

# Packages of the real rust:*-slim-bookworm on top of debian:bookworm-slim
# (the official Dockerfile's apt-get line, without wget, which it removes
# again). Nothing more: a build that needs more must fail here as it would
# with the real image.
STAND_IN_BUILDER_PACKAGES=(ca-certificates gcc libc6-dev)
# What gcr.io/distroless/cc-debian12 unpacks (its BUILD rules), all of which
# the builder's debootstrap also fetches (tzdata and netbase only for this).
STAND_IN_RUNTIME_PACKAGES=(base-files netbase tzdata libc6 libgcc-s1 libgomp1 libstdc++6 libssl3)

STAND_IN_LABEL=org.ssehub.stand-in.recipe

stand_in_log() { printf 'stand-in: %s\n' "$*" >&2; }

# stand_in_recipe: what the stand-ins are made from (this file, the toolchain).
stand_in_recipe() {
  { cat "${BASH_SOURCE[0]}"; rustc -vV; } | sha256sum | cut -c1-16
}

# stand_in_debootstrap: a bookworm minbase rootfs in $WORK/builder-rootfs with
# the builder's packages and the runtime's .debs kept in its apt cache.
stand_in_debootstrap() {
  local rootfs="$WORK/builder-rootfs" include
  include="$(IFS=,; echo "${STAND_IN_BUILDER_PACKAGES[*]},${STAND_IN_RUNTIME_PACKAGES[*]}")"
  stand_in_log "debootstrap bookworm (minbase + $include) from $DEBIAN_MIRROR"
  debootstrap --variant=minbase --include="$include" bookworm "$rootfs" "$DEBIAN_MIRROR" \
    >"$WORK/debootstrap.log" 2>&1 || { tail -n 30 "$WORK/debootstrap.log" >&2; return 1; }
  # Keep the runtime's packages aside before the cache is emptied.
  mkdir -p "$WORK/runtime-debs"
  local package deb
  for package in "${STAND_IN_RUNTIME_PACKAGES[@]}"; do
    deb="$(find "$rootfs/var/cache/apt/archives" -maxdepth 1 -name "${package}_*.deb" | head -n 1)"
    [[ -n "$deb" ]] || { stand_in_log "debootstrap kept no .deb of $package"; return 1; }
    cp "$deb" "$WORK/runtime-debs/"
  done
  # tzdata and netbase are not in debian:bookworm-slim: drop them from the builder.
  chroot "$rootfs" dpkg --purge tzdata netbase >/dev/null
  # What debian:bookworm-slim leaves out: caches, lists, docs and the
  # device nodes (a runtime provides /dev).
  rm -rf "${rootfs:?}"/var/cache/apt/archives/*.deb "${rootfs:?}"/var/lib/apt/lists/* \
    "${rootfs:?}"/usr/share/doc/* "${rootfs:?}"/usr/share/man/* "${rootfs:?}"/usr/share/info/* \
    "${rootfs:?}"/usr/share/locale/* "${rootfs:?}"/dev/* "${rootfs:?}"/debootstrap
  rm -f "$rootfs/etc/resolv.conf"
}

# stand_in_toolchain ROOTFS: rustup and the host's toolchain (the files of its
# rustc, cargo and rust-std components, as rustup's minimal profile installs
# them) under ROOTFS/usr/local/{rustup,cargo}.
stand_in_toolchain() {
  local rootfs="$1" sysroot host release toolchain rustlib
  sysroot="$(rustc --print sysroot)"
  host="$(rustc -vV | sed -n 's/^host: //p')"
  release="$(rustc -vV | sed -n 's/^release: //p')"
  toolchain="$release-$host"
  rustlib="$sysroot/lib/rustlib"
  local dest="$rootfs/usr/local/rustup/toolchains/$toolchain"
  mkdir -p "$dest/lib/rustlib" "$rootfs/usr/local/cargo/bin"
  stand_in_log "Rust $toolchain from $sysroot (rustc, cargo, rust-std)"
  local component manifests=()
  for component in rustc cargo rust-std; do
    manifests+=("$rustlib/manifest-$component-$host")
    [[ -f "${manifests[-1]}" ]] || { stand_in_log "no $component manifest in $rustlib (not a rustup toolchain?)"; return 1; }
  done
  # Every file and directory the three components installed, and nothing else
  # (no docs, clippy, rustfmt or rust-src).
  sed -n 's/^\(file\|dir\)://p' "${manifests[@]}" | (cd "$sysroot" && tar -cf - --no-recursion --files-from=-) \
    | tar -xf - -C "$dest"
  sed -n 's/^dir://p' "${manifests[@]}" | while IFS= read -r dir; do
    cp -a "$sysroot/$dir/." "$dest/$dir/"
  done
  cp "${manifests[@]}" "$rustlib/rust-installer-version" "$dest/lib/rustlib/"
  printf '%s\n' "rustc-$host" "cargo-$host" "rust-std-$host" >"$dest/lib/rustlib/components"
  {
    printf 'config_version = "1"\n'
    for component in rustc cargo rust-std; do
      printf '\n[[components]]\npkg = "%s"\ntarget = "%s"\nis_extension = false\n' "$component" "$host"
    done
  } >"$dest/lib/rustlib/multirust-config.toml"
  printf 'version = "12"\ndefault_toolchain = "%s"\nprofile = "minimal"\n' "$toolchain" \
    >"$rootfs/usr/local/rustup/settings.toml"
  # rustup and its proxies, as rustup-init leaves them (hard links to one binary).
  local rustup proxy
  rustup="$(command -v rustup || true)"
  if [[ -n "$rustup" ]]; then
    cp "$(readlink -f "$rustup")" "$rootfs/usr/local/cargo/bin/rustup"
    for proxy in cargo cargo-clippy cargo-fmt cargo-miri clippy-driver rls rust-analyzer \
      rust-gdb rust-gdbgui rust-lldb rustc rustdoc rustfmt; do
      ln "$rootfs/usr/local/cargo/bin/rustup" "$rootfs/usr/local/cargo/bin/$proxy"
    done
  else
    stand_in_log "no rustup on this machine: cargo and rustc linked to the toolchain directly"
    for proxy in cargo rustc rustdoc; do
      ln -s "../../rustup/toolchains/$toolchain/bin/$proxy" "$rootfs/usr/local/cargo/bin/$proxy"
    done
  fi
  # The official image makes both writable for any user.
  chmod -R a+w "$rootfs/usr/local/rustup" "$rootfs/usr/local/cargo"
  STAND_IN_RUST_RELEASE="$release"
}

# stand_in_commit ROOTFS NAME CONFIG...: a one-layer image of ROOTFS under NAME,
# with `buildah config` options CONFIG.
stand_in_commit() {
  local rootfs="$1" name="$2" container mount
  shift 2
  container="$("${BUILDAH[@]}" from --name "stand-in-$$" scratch)"
  mount="$("${BUILDAH[@]}" mount "$container")"
  tar -C "$rootfs" -cf - . | tar -C "$mount" -xf - --numeric-owner
  "${BUILDAH[@]}" umount "$container" >/dev/null
  "${BUILDAH[@]}" config --os linux --arch "$(dpkg --print-architecture)" \
    --label "$STAND_IN_LABEL=$(stand_in_recipe)" "$@" "$container"
  "${BUILDAH[@]}" commit --quiet --rm "$container" "$name" >/dev/null
  stand_in_log "committed $name"
}

stand_in_builder() { # stand_in_builder NAME
  local name="$1"
  stand_in_debootstrap
  stand_in_toolchain "$WORK/builder-rootfs"
  # The official image's ENV and CMD (debian:bookworm-slim's bash).
  stand_in_commit "$WORK/builder-rootfs" "$name" \
    --env RUSTUP_HOME=/usr/local/rustup --env CARGO_HOME=/usr/local/cargo \
    --env PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env RUST_VERSION="$STAND_IN_RUST_RELEASE" --cmd bash \
    --label org.opencontainers.image.description="stand-in for the official rust slim-bookworm image, made locally"
  # FROM rust:... means docker.io/library/rust:... to Docker; name it that way too.
  [[ "$name" == */* ]] || "${BUILDAH[@]}" tag "$name" "docker.io/library/$name"
}

stand_in_runtime() { # stand_in_runtime NAME (after stand_in_builder)
  local name="$1" rootfs="$WORK/runtime-rootfs" deb
  mkdir -p "$rootfs"
  for deb in "$WORK"/runtime-debs/*.deb; do
    dpkg-deb -x "$deb" "$rootfs"
  done
  # The CA bundle as update-ca-certificates made it in the builder.
  mkdir -p "$rootfs/etc/ssl/certs"
  cp "$WORK/builder-rootfs/etc/ssl/certs/ca-certificates.crt" "$rootfs/etc/ssl/certs/"
  # distroless's users and groups, with nonroot's home.
  cat >"$rootfs/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
  cat >"$rootfs/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
tty:x:5:
staff:x:50:
nonroot:x:65532:
EOF
  mkdir -p "$rootfs/root" "$rootfs/home/nonroot" "$rootfs/tmp" "$rootfs/proc" "$rootfs/sys" "$rootfs/dev"
  chmod 0700 "$rootfs/root" "$rootfs/home/nonroot"
  chown 65532:65532 "$rootfs/home/nonroot"
  chmod 1777 "$rootfs/tmp"
  # No shell may sneak in with a package: distroless has none.
  if find "$rootfs" \( -name sh -o -name bash -o -name dash \) -print | grep -q .; then
    stand_in_log "a shell ended up in the runtime stand-in"
    return 1
  fi
  stand_in_commit "$rootfs" "$name" \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    --user 65532 --workingdir /home/nonroot \
    --label org.opencontainers.image.description="stand-in for gcr.io/distroless/cc-debian12:nonroot, made locally"
}
