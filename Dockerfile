# syntax=docker/dockerfile:1
#
# ssehub container: a Rust builder stage and a distroless runtime stage (and a
# debug-symbols stage that is not part of the image).
#
#   docker build -t ssehub:0.1.0 .
#   docker run --rm -p 8080:8080 --read-only ssehub:0.1.0
#
# The final image holds one static-ish binary on distroless/cc (glibc, libgcc,
# CA certificates; no shell, no package manager) and runs as uid 65532.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS builder
WORKDIR /build

# Dependencies first, from the manifests alone, so that the (slow) dependency
# build is a step that only Cargo.toml/Cargo.lock changes invalidate.
# Every workspace member needs its manifest here, and every target the
# manifests name needs a file, hence the stub sources.
#
# The crates.io registry and target/ are cache mounts, shared by both cargo
# runs and kept by the builder between builds: a rebuild after a source
# change compiles only ssehub, and no layer stores the registry or target/.
# Concurrent builds share the registry (cargo locks its package cache) but
# each platform has a target/ of its own.
ARG TARGETARCH
COPY Cargo.toml Cargo.lock ./
COPY loadtest/Cargo.toml loadtest/
RUN --mount=type=cache,id=ssehub-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=ssehub-target-${TARGETARCH},target=/build/target \
    mkdir -p src benches loadtest/src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && echo 'fn main() {}' > benches/fanout.rs \
 && echo 'fn main() {}' > benches/startup.rs \
 && echo 'fn main() {}' > loadtest/src/main.rs \
 && cargo build --release --locked -p ssehub \
 && rm -rf src benches

# Then the real sources. loadtest keeps its stub: it is a workspace member but
# not part of the image, and its changes should not rebuild the image.
COPY src src
COPY benches benches
# COPY keeps the files' own mtimes, which may be older than the stub build's
# fingerprints; touch them so that cargo rebuilds the ssehub crate for sure.
# The release profile keeps line tables (for backtraces and profiles): 56 MB
# of the 77 MB binary. The image gets the binary without them (symbol names
# stay) and a debug link to ssehub.debug, which the debug-symbols stage below
# exports for symbolising a backtrace offline.
RUN --mount=type=cache,id=ssehub-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=ssehub-target-${TARGETARCH},target=/build/target \
    touch src/main.rs src/lib.rs \
 && cargo build --release --locked -p ssehub \
 && objcopy --only-keep-debug target/release/ssehub /usr/local/bin/ssehub.debug \
 && objcopy --strip-debug --add-gnu-debuglink=/usr/local/bin/ssehub.debug \
      target/release/ssehub /usr/local/bin/ssehub

# The split-off debug info alone:
#   docker build --target debug-symbols --output type=local,dest=dist .
FROM scratch AS debug-symbols
COPY --from=builder /usr/local/bin/ssehub.debug /

FROM gcr.io/distroless/cc-debian12:nonroot

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="ssehub" \
      org.opencontainers.image.description="Server-Sent Events fan-out hub: publish over HTTP, subscribe over SSE, resume without loss" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="https://github.com/ssehub/ssehub" \
      org.opencontainers.image.url="https://github.com/ssehub/ssehub" \
      org.opencontainers.image.documentation="https://github.com/ssehub/ssehub#deploy" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"

COPY --from=builder /usr/local/bin/ssehub /usr/local/bin/ssehub

# Listen on every interface (the binary's own default is loopback, which is
# unreachable from outside the container) and log JSON for log collectors.
# Everything else comes from built-in defaults, SSEHUB_* variables or
# --config FILE. ssehub writes no files, so --read-only works.
ENV SSEHUB_LISTEN=0.0.0.0:8080 \
    SSEHUB_LOG__FORMAT=json

# The distroless "nonroot" user, numeric so that Kubernetes' runAsNonRoot can
# check it without a passwd lookup.
USER 65532:65532
EXPOSE 8080

# ssehub is PID 1 (exec-form ENTRYPOINT, no shell in between) and drains on
# SIGTERM: readiness turns 503, streams get a retry: hint, exit 0.
STOPSIGNAL SIGTERM
# No HEALTHCHECK: Kubernetes probes /healthz and /readyz (see the Helm chart);
# Docker's healthcheck would need a shell or curl, which distroless lacks.
ENTRYPOINT ["/usr/local/bin/ssehub"]
