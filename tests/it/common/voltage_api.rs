//! A fake Voltage Payments API, served by the test on a local port: the payments list with cursor
//! pagination (newest first) and one payment by id, behind an `x-api-key` check, with scripted
//! failures (429 with Retry-After, 5xx) served before the real answers.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use secrecy::SecretString;
use serde_json::{json, Value};
use uuid::Uuid;
use voltage_webhooks::reconcile::{ApiKey, Target, Transport, VoltageApi};
use voltage_webhooks::retry::RetryPolicy;

pub const API_KEY: &str = "vltg_api_TESTONLYreadKeyProduction0000";
/// The production environment of `common::config_toml`.
pub const ORGANIZATION: &str = "123e4567-e89b-12d3-a456-426614174000";
pub const ENVIRONMENT: &str = "123e4567-e89b-12d3-a456-426614174000";

/// A scripted answer served instead of the real one.
#[derive(Debug, Clone, Copy)]
pub enum Failure {
    TooManyRequests { retry_after_secs: u64 },
    Unavailable,
}

#[derive(Default)]
pub struct Inner {
    /// Newest first, as the list is sorted.
    pub payments: Vec<Value>,
    pub failures: VecDeque<Failure>,
    /// Every request: the cursor it asked for (lists) or the id (single payment), and when.
    pub requests: Vec<(String, Instant)>,
    /// A broken API: every page after the first returns the cursor it was asked for.
    pub stuck_cursor: bool,
    /// A broken API: pages from this offset on point back to the page before them (a cycle).
    pub cycle_from: Option<usize>,
}

#[derive(Clone, Default)]
pub struct FakeVoltage(pub Arc<Mutex<Inner>>);

impl FakeVoltage {
    /// Serves on a free local port; returns the base URL (`http://127.0.0.1:PORT/v1`).
    pub async fn start(&self) -> String {
        let app = Router::new()
            .route(
                "/v1/organizations/{org}/environments/{env}/payments",
                get(list),
            )
            .route(
                "/v1/organizations/{org}/environments/{env}/payments/{id}",
                get(one),
            )
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{address}/v1")
    }

    pub fn set_payments(&self, payments: Vec<Value>) {
        self.0.lock().unwrap().payments = payments;
    }

    pub fn fail_next(&self, failures: &[Failure]) {
        self.0
            .lock()
            .unwrap()
            .failures
            .extend(failures.iter().copied());
    }

    pub fn requests(&self) -> Vec<(String, Instant)> {
        self.0.lock().unwrap().requests.clone()
    }
}

/// Checks the key and the scope, records the request, and serves a scripted failure if one is due.
fn gate(
    fake: &FakeVoltage,
    headers: &HeaderMap,
    org: &str,
    env: &str,
    what: String,
) -> Option<Response> {
    let mut inner = fake.0.lock().unwrap();
    inner.requests.push((what, Instant::now()));
    let key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    if key != Some(API_KEY) || org != ORGANIZATION || env != ENVIRONMENT {
        return Some(
            (
                StatusCode::UNAUTHORIZED,
                Json(json!({"message": "unauthorized"})),
            )
                .into_response(),
        );
    }
    match inner.failures.pop_front()? {
        Failure::TooManyRequests { retry_after_secs } => Some(
            (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", retry_after_secs.to_string())],
                "slow down",
            )
                .into_response(),
        ),
        Failure::Unavailable => Some((StatusCode::SERVICE_UNAVAILABLE, "down").into_response()),
    }
}

async fn list(
    State(fake): State<FakeVoltage>,
    Path((org, env)): Path<(String, String)>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let cursor = query.get("cursor").cloned().unwrap_or_default();
    if let Some(refused) = gate(&fake, &headers, &org, &env, format!("list:{cursor}")) {
        return refused;
    }
    assert_eq!(query.get("pagination").map(String::as_str), Some("cursor"));
    assert_eq!(
        query.get("sort_key").map(String::as_str),
        Some("created_at")
    );
    assert_eq!(query.get("sort_order").map(String::as_str), Some("DESC"));
    let limit: usize = query["limit"].parse().unwrap();
    let offset: usize = if cursor.is_empty() {
        0
    } else {
        cursor.trim_start_matches("at-").parse().unwrap()
    };
    let (payments, stuck, cycle_from) = {
        let inner = fake.0.lock().unwrap();
        (inner.payments.clone(), inner.stuck_cursor, inner.cycle_from)
    };
    let end = (offset + limit).min(payments.len());
    let has_more = end < payments.len();
    let next = match cycle_from {
        Some(from) if offset >= from => offset - limit,
        _ if stuck && offset > 0 => offset,
        _ => end,
    };
    Json(json!({
        "items": payments[offset..end],
        "has_more": has_more,
        "next_cursor": has_more.then(|| format!("at-{next}")),
    }))
    .into_response()
}

async fn one(
    State(fake): State<FakeVoltage>,
    Path((org, env, id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = gate(&fake, &headers, &org, &env, format!("get:{id}")) {
        return refused;
    }
    let payments = fake.0.lock().unwrap().payments.clone();
    match payments.into_iter().find(|p| p["id"] == id.as_str()) {
        Some(payment) => Json(payment).into_response(),
        None => (StatusCode::NOT_FOUND, Json(json!({"message": "not found"}))).into_response(),
    }
}

/// The production environment as a reconciliation target, with `key`.
pub fn target(key: &str) -> Target {
    Target {
        environment: "production".into(),
        organization_id: ORGANIZATION.parse::<Uuid>().unwrap(),
        environment_id: ENVIRONMENT.parse::<Uuid>().unwrap(),
        api_key: ApiKey::new(SecretString::from(key.to_owned())),
    }
}

/// A client with quick backoff and `max_attempts` attempts per request.
pub fn client(base_url: &str, max_attempts: u32) -> VoltageApi {
    let retry = RetryPolicy {
        max_attempts,
        base: Duration::from_millis(5),
        cap: Duration::from_secs(5),
    };
    // The fake serves plain HTTP on loopback.
    VoltageApi::new(
        base_url,
        Duration::from_secs(5),
        retry,
        Transport::AllowPlainHttp,
    )
    .unwrap()
}

/// The payment object of a fixture (what `GET …/payments/{id}` returns).
pub fn payment_of(fixture: &[u8]) -> Value {
    let body: Value = serde_json::from_slice(fixture).unwrap();
    body["detail"]["data"].clone()
}

/// A receive payment in the production environment, created `age_secs` ago.
pub fn receive(status: &str, age_secs: i64) -> Value {
    let created = chrono::Utc::now() - chrono::Duration::seconds(age_secs);
    json!({
        "id": Uuid::new_v4().to_string(),
        "direction": "receive",
        "organization_id": ORGANIZATION,
        "environment_id": ENVIRONMENT,
        "wallet_id": Uuid::new_v4().to_string(),
        "created_at": created.to_rfc3339(),
        "updated_at": (created + chrono::Duration::seconds(5)).to_rfc3339(),
        "currency": "btc",
        "type": "bolt11",
        "status": status,
        "error": null,
        "requested_amount": {"amount": 150000, "currency": "btc", "unit": "msat"},
    })
}
