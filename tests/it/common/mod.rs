//! Shared test support: a configured app over a per-test database, signed Voltage deliveries, and
//! a TCP proxy that can cut PostgreSQL away from the app for real outages.
#![allow(dead_code)]

pub mod api;
pub mod capture;
pub mod fanout;
pub mod own_process;
pub mod process;
pub mod proxy;
pub mod voltage_api;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use chrono::{DateTime, Utc};
use http_body_util::BodyExt;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use tower::ServiceExt;
use voltage_webhooks::app::app_state;
use voltage_webhooks::config::Config;
use voltage_webhooks::event::Routing;
use voltage_webhooks::http::{router, AppState};
use voltage_webhooks::verify::sign;

pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/voltage");

/// production: rotation in progress (new secret at 0, the published real secret at 1), plus a second
/// registration pointing at the same URL. staging: one registration of its own.
pub const PRODUCTION_WEBHOOK: &str = "6f1c1f0e-8a57-4a53-b3b5-0c7f0e6f2a10";
pub const PRODUCTION_SECOND_WEBHOOK: &str = "0b8a4f7e-2f7c-4a36-9d1e-4c3b2a190001";
pub const STAGING_WEBHOOK: &str = "9d3e2c1b-0a9f-4e8d-b7c6-a5b4c3d2e1f0";
pub const NEW_SECRET: &str = "vltg_TESTONLYsyntheticSecret000000000";
pub const OLD_SECRET: &str = "vltg_mGKaFQHrBNLd9oGfchNapC89cYC8fgtE";
pub const SECOND_SECRET: &str = "vltg_TESTONLYsecondRegistration00000";
pub const STAGING_SECRET: &str = "vltg_TESTONLYstagingSecret0000000000";

/// Production matches the ids in receive-completed/send-succeeded fixtures; staging those of the
/// other fixtures (generated, partial on-chain receipt, failed send).
pub fn config_toml() -> String {
    format!(
        r#"
[environments.production]
organization_id = "123e4567-e89b-12d3-a456-426614174000"
environment_id = "123e4567-e89b-12d3-a456-426614174000"

[[environments.production.webhooks]]
id = "{PRODUCTION_WEBHOOK}"
secrets = [{{ value = "{NEW_SECRET}" }}, {{ value = "{OLD_SECRET}" }}]

[[environments.production.webhooks]]
id = "{PRODUCTION_SECOND_WEBHOOK}"
secrets = [{{ value = "{SECOND_SECRET}" }}]

[environments.staging]
organization_id = "b0684ab8-1130-46af-8f70-71519442f108"
environment_id = "123e4567-e89b-12d3-a456-426614174000"

[[environments.staging.webhooks]]
id = "{STAGING_WEBHOOK}"
secrets = [{{ value = "{STAGING_SECRET}" }}]
"#
    )
}

pub fn config() -> Config {
    Config::from_toml(&config_toml()).unwrap()
}

/// The app's state over `pool`, with the system clock.
pub fn state(pool: PgPool) -> AppState {
    let config = config();
    let (registry, _) = config.resolve().unwrap();
    app_state(&config, registry, Routing::default(), pool)
}

/// The app with a fixed clock, for replaying recorded deliveries.
pub fn app_at(pool: PgPool, now: i64) -> Router {
    let mut state = state(pool);
    let fixed = DateTime::<Utc>::from_timestamp(now, 0).unwrap();
    state.intake.clock = Arc::new(move || fixed);
    router(state)
}

pub fn app(pool: PgPool) -> Router {
    router(state(pool))
}

/// A pool like the service's: short acquire timeout so an outage answers quickly.
pub async fn pool(options: PgPoolOptions, connect: PgConnectOptions) -> PgPool {
    options
        .max_connections(8)
        .acquire_timeout(Duration::from_millis(500))
        .connect_with(connect)
        .await
        .unwrap()
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).unwrap()
}

pub fn now() -> i64 {
    Utc::now().timestamp()
}

/// A delivery exactly as Voltage sends it.
pub fn delivery(
    environment: &str,
    webhook_id: &str,
    secret: &str,
    body: &[u8],
    ts: i64,
) -> Request<Body> {
    let ts = ts.to_string();
    Request::post(format!("/webhooks/{environment}"))
        .header("content-type", "application/json")
        .header("user-agent", "Voltage-Webhook-Client/1.0")
        .header("x-voltage-webhook-id", webhook_id)
        .header("x-voltage-timestamp", &ts)
        .header("x-voltage-signature", sign(secret, body, &ts))
        .body(Body::from(body.to_vec()))
        .unwrap()
}

/// A production delivery signed with the current secret, now.
pub fn production(body: &[u8]) -> Request<Body> {
    delivery("production", PRODUCTION_WEBHOOK, NEW_SECRET, body, now())
}

pub fn staging(body: &[u8]) -> Request<Body> {
    delivery("staging", STAGING_WEBHOOK, STAGING_SECRET, body, now())
}

pub async fn send(app: &Router, request: Request<Body>) -> (StatusCode, Value) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, json)
}

/// The error code of an error body.
pub fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

/// The URL of the database `pool` is connected to (a `#[sqlx::test]` database), for the binary.
pub async fn url_of(pool: &PgPool) -> String {
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(pool)
        .await
        .unwrap();
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL for the tests");
    let (server, _) = base.rsplit_once('/').unwrap();
    format!("{server}/{database}")
}

/// A temporary configuration file holding `toml`.
pub fn config_file(toml: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut file, toml.as_bytes()).unwrap();
    file
}

pub async fn count(pool: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Asserts that neither an event nor a quarantined body was written.
pub async fn assert_nothing_written(pool: &PgPool) {
    assert_eq!(count(pool, "events").await, 0, "events written");
    assert_eq!(count(pool, "quarantine").await, 0, "quarantine written");
}
