# syntax=docker/dockerfile:1
#
# verifyd container image: one binary, subcommands serve | worker | migrate | keys.
#
#   docker build -t verifyd:local .
#   docker run --rm verifyd:local --help
#
# Configuration comes from VERIFYD_* environment variables (see compose.yaml);
# no config file is baked into the image.

############################ builder ############################
FROM rust:1.95-slim-bookworm AS builder

# TLS is rustls + aws-lc-rs (no OpenSSL, so no libssl-dev). aws-lc-sys builds
# its C code with the `cc` crate and only needs cmake in some configurations;
# cmake is installed anyway so the build does not depend on which one applies.
# Package versions are not pinned (DL3008): the base tag pins the Debian
# release, and exact Debian versions disappear when security updates land.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake pkg-config \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .

# No database is reachable during `docker build`: any sqlx query! macros must
# use the prepared metadata committed under .sqlx/ (`cargo sqlx prepare`).
ENV SQLX_OFFLINE=true \
    CARGO_TERM_COLOR=never

# The registry, git checkouts and target/ live in BuildKit cache mounts so a
# rebuild only recompiles what changed. Cache mounts are not part of the image
# layer, so the binary is copied out of target/ inside the same RUN.
RUN --mount=type=cache,id=verifyd-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=verifyd-cargo-git,target=/usr/local/cargo/git \
    --mount=type=cache,id=verifyd-target,target=/src/target \
    cargo build --release --locked -p verifyd \
    && install -D -m 0755 target/release/verifyd /out/verifyd

############################ runtime ############################
FROM debian:bookworm-slim AS runtime

# /var/lib/verifyd: owned by verifyd, so a volume mounted there is writable
#   (compose.dev.yaml keeps the development inbox file in it).
# ca-certificates: system trust roots for TLS to Twilio (and to a TLS database
#   or broker) when rustls is set up with the platform/native roots.
# curl: used by the compose healthcheck of `serve` (GET /readyz). There is
#   deliberately NO HEALTHCHECK instruction in this image: the same image runs
#   `serve` (HTTP), `worker` and `migrate` (no HTTP listener), so an image-wide
#   HTTP healthcheck would mark workers unhealthy. Each compose service declares
#   the healthcheck that fits it instead.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 verifyd \
    && useradd --system --uid 10001 --gid verifyd --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin verifyd \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/verifyd

COPY --from=builder /out/verifyd /usr/local/bin/verifyd

USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["verifyd"]
CMD ["serve"]
