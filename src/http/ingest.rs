//! `POST /webhooks/{environment}`: the path of one delivery, in the order the contract prescribes.
//!
//! environment → allow-list → content type → headers present, registration known, timestamp in its
//! window → bounded body → signature (no parsing before) → parse → event header and scope → dedup
//! key → one committed write → 200. Everything that can be checked without the body is checked
//! before a byte of it is read, so an unauthenticated caller cannot make the service buffer bodies
//! without knowing a registration id. Every refusal writes nothing, except an authentic body that
//! is not an event: that one is quarantined.

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Serialize;
use std::net::IpAddr;
use std::time::Instant;
use tracing::Span;

use uuid::Uuid;

use super::{ApiError, AppState};
use crate::event::{DedupKey, Payload};
use crate::store::{NewEvent, OwnedEvent, Quarantined, StoreError, Stored};
use crate::telemetry::metrics as names;
use crate::verify::{self, headers, Delivery, Verified};

#[derive(Debug, Serialize)]
pub struct Accepted {
    /// `stored` for a new event, `duplicate` for one already committed earlier.
    pub status: &'static str,
    pub event_id: Uuid,
}

const UNKNOWN_ENVIRONMENT: &str = "unknown_environment";

pub async fn receive(
    State(state): State<AppState>,
    Path(environment): Path<String>,
    request: Request,
) -> Result<Json<Accepted>, ApiError> {
    let span = Span::current();
    span.record("environment", environment.as_str());
    let (mut parts, body) = request.into_parts();
    let client = super::caller_address(&mut parts, &state).await;
    let result = handle(&state, &environment, &parts.headers, body, client).await;
    let outcome = match &result {
        Ok(accepted) => accepted.status,
        Err(e) => e.code,
    };
    // The label is the path's environment only when it is configured: a path is attacker-chosen.
    let label = if outcome == UNKNOWN_ENVIRONMENT {
        "unknown".to_owned()
    } else {
        environment.clone()
    };
    metrics::counter!(names::WEBHOOK_REQUESTS, "environment" => label, "outcome" => outcome)
        .increment(1);
    match &result {
        Ok(accepted) => {
            span.record("outcome", accepted.status);
            tracing::info!(event_id = %accepted.event_id, outcome = accepted.status, "webhook accepted");
        }
        Err(e) => {
            span.record("outcome", e.code);
            tracing::warn!(status = e.status.as_u16(), code = e.code, detail = %e.detail, "webhook refused");
        }
    }
    result.map(Json)
}

async fn handle(
    state: &AppState,
    environment: &str,
    headers: &HeaderMap,
    body: Body,
    client: Option<IpAddr>,
) -> Result<Accepted, ApiError> {
    let registry = state.registry.load_full();
    let env = registry.environment(environment).ok_or_else(|| {
        ApiError::not_found(
            UNKNOWN_ENVIRONMENT,
            format!("no environment named {environment:?}"),
        )
    })?;
    if !env.allow_ips.is_empty()
        && !client.is_some_and(|ip| env.allow_ips.iter().any(|net| net.contains(&ip)))
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "ip_not_allowed",
            "deliveries for this environment are not accepted from this address",
        ));
    }
    check_content_type(headers)?;
    let unread = Delivery {
        webhook_id: header_text(headers, headers::WEBHOOK_ID),
        timestamp: header_text(headers, headers::TIMESTAMP),
        signature: header_text(headers, headers::SIGNATURE),
        body: &[],
    };
    if let Some(id) = unread.webhook_id {
        Span::current().record("webhook_id", truncate(id, 64));
    }
    let now = (state.clock)();
    let prechecked = verify::precheck(
        &registry,
        &env.name,
        &unread,
        now,
        state.ingest.tolerance_secs,
    )?;
    let body = tokio::time::timeout(
        state.ingest.body_read_timeout,
        read_bounded(body, headers, state.ingest.max_body_bytes),
    )
    .await
    .map_err(|_| {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            "the request body did not arrive in time",
        )
    })??;

    let started = Instant::now();
    let verified = prechecked.check_signature(&body);
    metrics::histogram!(names::WEBHOOK_VERIFY_SECONDS, "environment" => env.name.clone())
        .record(started.elapsed().as_secs_f64());
    let verified = verified?;
    metrics::counter!(
        names::WEBHOOK_VERIFIED,
        "environment" => env.name.clone(),
        "webhook_id" => verified.webhook_id.to_string(),
        "secret_index" => verified.secret_index.to_string()
    )
    .increment(1);
    Span::current().record("secret_index", verified.secret_index);

    let payload = match Payload::parse(&body) {
        Ok(payload) => payload,
        Err(e) => return Err(quarantine(state, &env.name, &body, &verified, e.into()).await),
    };
    payload.check_event_header(header_text(headers, headers::EVENT))?;
    payload.check_scope(env)?;

    let handlers = state
        .routing
        .matching(&env.name, &payload.event_type, &payload.event);
    let new = NewEvent {
        environment: &env.name,
        dedup_key: DedupKey::new(&env.name, &payload, &body),
        payload: &payload,
        raw_body: &body,
        verified: &verified,
        handlers: &handlers,
    };
    // Answered only after the batch holding this event committed; a failed batch is a 503.
    let started = Instant::now();
    let stored = state
        .writer
        .submit(OwnedEvent::from_new(&new))
        .await
        .map_err(|_| ApiError::unavailable())?;
    metrics::histogram!(names::WEBHOOK_WRITE_SECONDS, "environment" => env.name.clone())
        .record(started.elapsed().as_secs_f64());
    Ok(Accepted {
        status: match stored {
            Stored::New(_) => "stored",
            Stored::Duplicate(_) => "duplicate",
        },
        event_id: stored.event_id(),
    })
}

/// Keeps an authentic but unreadable body; answers 400 once it is kept, 503 if it could not be.
async fn quarantine(
    state: &AppState,
    environment: &str,
    body: &[u8],
    verified: &Verified,
    refusal: ApiError,
) -> ApiError {
    let item = Quarantined {
        environment,
        raw_body: body,
        reason: &refusal.detail,
        verified,
    };
    match state.store.quarantine(&item).await {
        Ok(id) => {
            tracing::warn!(quarantine_id = %id, "verified body quarantined");
            refusal
        }
        Err(e) => store_failed(e),
    }
}

fn store_failed(e: StoreError) -> ApiError {
    tracing::error!(error = %e, cause = ?std::error::Error::source(&e), "write did not commit");
    ApiError::unavailable()
}

fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let essence = header_text(headers, header::CONTENT_TYPE.as_str())
        .and_then(|v| v.split(';').next())
        .map(str::trim);
    match essence {
        Some(t) if t.eq_ignore_ascii_case("application/json") => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "content-type must be application/json",
        )),
    }
}

/// Reads at most `limit` bytes: a declared or actual length past it is refused without buffering.
async fn read_bounded(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("body exceeds {limit} bytes"),
        )
    };
    let declared =
        header_text(headers, header::CONTENT_LENGTH.as_str()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(too_large()),
        Err(_) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "unreadable_body",
            "the request body could not be read",
        )),
    }
}

fn header_text<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}
