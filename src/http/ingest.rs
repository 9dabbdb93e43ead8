//! `POST /webhooks/{environment}`: the thin route over [`crate::ingest`]. It hands the path, the
//! caller's address, the headers and a bounded body reader to [`Intake::accept`], which holds the
//! contract's order of checks; it counts and logs the outcome and renders it.

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap};
use axum::Json;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use std::time::Instant;
use tracing::Span;

use super::{ApiError, AppState};
use crate::error_code::ErrorCode;
use crate::ingest::{header_text, record_stage, Accepted, Arrival};
use crate::telemetry::metrics as names;

pub async fn receive(
    State(state): State<AppState>,
    Path(environment): Path<String>,
    request: Request,
) -> Result<Json<Accepted>, ApiError> {
    let received = Instant::now();
    let span = Span::current();
    span.record("environment", environment.as_str());
    let (mut parts, body) = request.into_parts();
    let client = super::caller_address(&mut parts, &state).await;
    let arrival = Arrival {
        environment: &environment,
        client,
        headers: &parts.headers,
    };
    let headers = &parts.headers;
    let result = state
        .intake
        .accept(arrival, |limit| read_bounded(body, headers, limit))
        .await;
    record_outcome(&environment, &result);
    if let Ok(accepted) = &result {
        record_stage("answer", accepted.committed.elapsed());
    }
    metrics::histogram!(names::WEBHOOK_REQUEST_SECONDS).record(received.elapsed().as_secs_f64());
    result.map(Json)
}

fn record_outcome(environment: &str, result: &Result<Accepted, ApiError>) {
    let span = Span::current();
    let outcome = match result {
        Ok(accepted) => accepted.status,
        Err(e) => e.code.as_str(),
    };
    // The label is the path's environment only when it is configured: a path is attacker-chosen.
    let label = match result {
        Err(e) if e.code == ErrorCode::UnknownEnvironment => "unknown".to_owned(),
        _ => environment.to_owned(),
    };
    metrics::counter!(names::WEBHOOK_REQUESTS, "environment" => label, "outcome" => outcome)
        .increment(1);
    match result {
        Ok(accepted) => {
            span.record("outcome", accepted.status);
            tracing::info!(event_id = %accepted.event_id, outcome = accepted.status, "webhook accepted");
        }
        Err(e) => {
            span.record("outcome", e.code.as_str());
            tracing::warn!(status = e.code.status(), code = e.code.as_str(), detail = %e.detail, "webhook refused");
        }
    }
}

/// Reads at most `limit` bytes: a declared or actual length past it is refused without buffering.
async fn read_bounded(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
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
            ErrorCode::UnreadableBody,
            "the request body could not be read",
        )),
    }
}
