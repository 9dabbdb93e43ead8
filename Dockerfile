# Multi-stage build. No live database is needed: the SQL macros check each statement against the
# offline data committed in .sqlx/ (.cargo/config.toml sets SQLX_OFFLINE=true), and migrations are
# embedded with sqlx::migrate!.
#
# Base images are pinned to exact releases (Rust 1.95.0 on Debian 12 "bookworm", the toolchain and
# distribution the project is developed and tested on). For byte-for-byte reproducible builds, also
# pin their digests from your registry: FROM rust:1.95.0-slim-bookworm@sha256:...
#
# CI has no Docker engine: .ci/docker-build-stage.py runs the build stage below on exactly the files
# its COPY lines bring in (after .dockerignore), so keep the build stage to WORKDIR, ENV, COPY and
# RUN lines that use paths relative to WORKDIR.
FROM rust:1.95.0-slim-bookworm AS build
WORKDIR /src

# Dependencies in their own layer, so that a change to the sources does not rebuild them: the
# manifests with a stub for every target they declare (the library, the binary, and one for each
# [[bench]] name read from Cargo.toml, so a new bench needs no change here; tests/ and examples/ are
# discovered, not declared, so need no stub), built, then the stubs removed. The repository is a
# Cargo workspace: the service is the root package and every crate under crates/ is a member, so
# each member's Cargo.toml is copied too (one COPY line per crate: a wildcard would flatten them
# into one directory) and given a stub library and binary. Cargo needs every member's manifest to
# load the workspace, even for members (crates/loadgen) that the service's build does not use.
# Stubs rather than cargo-chef: nothing to download or install in the image, and CI can run these
# exact lines offline.
COPY Cargo.toml Cargo.lock ./
# Cargo's settings for this repository (SQLX_OFFLINE), for both builds.
COPY .cargo ./.cargo
COPY crates/voltage-signature/Cargo.toml ./crates/voltage-signature/
COPY crates/loadgen/Cargo.toml ./crates/loadgen/
RUN mkdir -p src benches \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && sed -n '/^\[\[bench\]\]/,/^name/s/^name = "\(.*\)"$/\1/p' Cargo.toml > benches/names \
 && while read -r bench; do echo 'fn main() {}' > "benches/$bench.rs"; done < benches/names \
 && for member in crates/*/; do \
      mkdir -p "${member}src" && touch "${member}src/lib.rs" && echo 'fn main() {}' > "${member}src/main.rs"; \
    done \
 && cargo build --release --locked --bin voltage-webhooks \
 && rm -rf src benches crates

# The real sources. benches/ is needed although nothing in it is built: Cargo refuses a manifest
# whose [[bench]] files are missing. crates/ holds the workspace's other members (the service
# depends on crates/voltage-signature). config/ holds config/default.toml (include_str!),
# migrations/ is embedded with sqlx::migrate!, .sqlx/ is what the SQL macros check the statements
# against.
COPY src ./src
COPY benches ./benches
COPY crates ./crates
COPY migrations ./migrations
COPY config ./config
COPY .sqlx ./.sqlx
# COPY keeps the context's modification times, which can be older than the stubs' build: touch the
# crate roots so that Cargo rebuilds these crates (and only these).
RUN touch src/lib.rs src/main.rs crates/*/src/lib.rs \
 && cargo build --release --locked --bin voltage-webhooks

FROM debian:12.11-slim
# A fixed numeric uid/gid, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
RUN groupadd --system --gid 10001 voltage \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin voltage
# CA roots for TLS to NATS (rustls-native-certs reads the system bundle; HTTPS to Voltage and to
# handlers uses the roots compiled in). Taken from the build image rather than installed with apt:
# the runtime stage then installs no packages and keeps no package lists.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /src/target/release/voltage-webhooks /usr/local/bin/voltage-webhooks
# The image's default configuration: config/example.toml's settings with /metrics on the admin
# listener (port 9090) instead of the public one (8080). Mount your own over it, or override keys
# with VOLTAGE_WEBHOOKS_<SECTION>__<KEY>.
COPY deploy/docker/config.toml /etc/voltage-webhooks/config.toml
USER 10001:10001
ENV VOLTAGE_WEBHOOKS_CONFIG=/etc/voltage-webhooks/config.toml LOG_FORMAT=json
# 8080: webhooks and the API (publish this one). 9090: /metrics and the probes, for the scraper only.
EXPOSE 8080 9090
HEALTHCHECK --interval=10s --timeout=4s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/voltage-webhooks", "healthcheck", "--url", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT ["/usr/local/bin/voltage-webhooks"]
CMD ["serve"]
