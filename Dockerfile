# Multi-stage build. No live database is needed: SQL is checked at run time by the test suite and
# migrations are embedded with sqlx::migrate!.
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
COPY config ./config
RUN cargo build --release --locked --bin voltage-webhooks

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin voltage
COPY --from=build /src/target/release/voltage-webhooks /usr/local/bin/voltage-webhooks
COPY config/example.toml /etc/voltage-webhooks/config.toml
USER 10001
ENV VOLTAGE_WEBHOOKS_CONFIG=/etc/voltage-webhooks/config.toml LOG_FORMAT=json
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=4s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/voltage-webhooks", "healthcheck", "--url", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT ["/usr/local/bin/voltage-webhooks"]
CMD ["serve"]
