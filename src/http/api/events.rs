//! `/v1/environments/{environment}/events...`: listing with keyset pages, one event, its exact
//! bytes, its deliveries, and replay.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::access::{Reader, Writer};
use super::cursor;
use super::NoQuery;
use crate::error_code::ErrorCode;
use crate::http::{ApiError, AppState};
use crate::store::{DeliveryState, EventQuery, EventSummary, ReplayOutcome, StoredEvent};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// `send`, `receive`, `test`, ...; several, comma-separated, match any of them.
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    /// `completed`, `failed`, ...; several, comma-separated, match any of them.
    pub event: Option<String>,
    /// `webhook` (delivered by Voltage) or `reconciliation` (recovered by a sweep).
    #[param(value_type = Option<super::doc::Source>)]
    pub source: Option<String>,
    pub payment_id: Option<String>,
    /// RFC 3339; exclusive.
    pub received_after: Option<DateTime<Utc>>,
    /// RFC 3339; exclusive.
    pub received_before: Option<DateTime<Utc>>,
    /// `desc` (default) or `asc`, by time received.
    #[param(value_type = Option<super::doc::Order>)]
    pub order: Option<String>,
    /// 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventPage {
    pub events: Vec<EventSummary>,
    /// The next page's cursor; absent on the last page.
    pub next_cursor: Option<String>,
    /// The position after this page's last event (or the request's cursor when the page is
    /// empty), on every page including the last: with `order=asc`, a caller that reached the end
    /// resumes from here later and gets what arrived since. Absent only when nothing was listed
    /// and no cursor was given.
    pub resume_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventDetail {
    #[serde(flatten)]
    pub summary: EventSummary,
    pub webhook_id: Option<Uuid>,
    /// Which of the registration's secrets verified it (a position, never a secret).
    pub secret_index: Option<i16>,
    /// The body as Voltage sent it, parsed.
    #[schema(value_type = Object)]
    pub payload: Value,
}

pub(super) fn query_error(e: QueryRejection) -> ApiError {
    ApiError::new(ErrorCode::InvalidParameter, e.body_text())
}

pub(super) fn event_id(text: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(text).map_err(|_| ApiError::new(ErrorCode::EventNotFound, "no such event"))
}

pub(super) fn summary(e: &StoredEvent) -> EventSummary {
    EventSummary {
        id: e.id,
        environment: e.environment.clone(),
        event_type: e.event_type.clone(),
        event: e.event.clone(),
        payment_id: e.payment_id.clone(),
        payment_status: e.payment_status.clone(),
        payment_updated_at: e.payment_updated_at,
        source: e.source.clone(),
        received_at: e.received_at,
        last_received_at: e.last_received_at,
        arrival_count: e.arrival_count,
    }
}

async fn load(state: &AppState, environment: &str, id: &str) -> Result<StoredEvent, ApiError> {
    state
        .store
        .event_in(environment, event_id(id)?)
        .await
        .map_err(|e| ApiError::unavailable_because(&e))?
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::EventNotFound,
                "no such event in this environment",
            )
        })
}

/// List events, newest first by default; pages are stable while new events arrive.
#[utoipa::path(get, path = "/v1/environments/{environment}/events", operation_id = "list_events", tag = "events",
    params(("environment" = String, Path), ListParams),
    responses((status = 200, body = EventPage), (status = 400), (status = 401), (status = 403)))]
pub async fn list(
    Reader(access): Reader,
    State(state): State<AppState>,
    query: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<EventPage>, ApiError> {
    let Query(params) = query.map_err(query_error)?;
    let ascending = order_ascending(params.order.as_deref())?;
    let limit = super::page_limit(params.limit)?;
    let query = event_query(access.environment, &params, ascending, limit)?;
    let mut events = state
        .store
        .list_events(&query)
        .await
        .map_err(|e| ApiError::unavailable_because(&e))?;
    let more = super::close_page(&mut events, limit);
    let resume_cursor = events
        .last()
        .map(|e| cursor::encode_page(ascending, e.received_at, e.id))
        .or(params.cursor);
    let next_cursor = if more { resume_cursor.clone() } else { None };
    Ok(Json(EventPage {
        events,
        next_cursor,
        resume_cursor,
    }))
}

/// `order`: `desc` (the default) or `asc`.
fn order_ascending(order: Option<&str>) -> Result<bool, ApiError> {
    match order {
        None | Some("desc") => Ok(false),
        Some("asc") => Ok(true),
        Some(other) => Err(ApiError::new(
            ErrorCode::InvalidParameter,
            format!("order {other:?}: use asc or desc"),
        )),
    }
}

/// The store's query for a page of `limit` events (one more is read to know whether another
/// page follows).
fn event_query(
    environment: String,
    params: &ListParams,
    ascending: bool,
    limit: i64,
) -> Result<EventQuery, ApiError> {
    if let Some(source) = params.source.as_deref() {
        if !["webhook", "reconciliation"].contains(&source) {
            return Err(ApiError::new(
                ErrorCode::InvalidParameter,
                format!("source {source:?}: use webhook or reconciliation"),
            ));
        }
    }
    let after = params
        .cursor
        .as_deref()
        .map(|c| cursor::decode_page(c, ascending))
        .transpose()?;
    Ok(EventQuery {
        environment,
        event_types: super::list_param("type", params.event_type.as_deref())?,
        events: super::list_param("event", params.event.as_deref())?,
        source: params.source.clone(),
        payment_id: params.payment_id.clone(),
        received_after: params.received_after,
        received_before: params.received_before,
        ascending,
        limit: limit + 1,
        after,
    })
}

/// One event: metadata and the parsed payload.
#[utoipa::path(get, path = "/v1/environments/{environment}/events/{event_id}", operation_id = "get_event", tag = "events",
    params(("environment" = String, Path), ("event_id" = Uuid, Path)),
    responses((status = 200, body = EventDetail), (status = 404)))]
pub async fn get(
    Reader(access): Reader,
    _: NoQuery,
    State(state): State<AppState>,
    Path((_, id)): Path<(String, String)>,
) -> Result<Json<EventDetail>, ApiError> {
    let e = load(&state, &access.environment, &id).await?;
    Ok(Json(EventDetail {
        summary: summary(&e),
        webhook_id: e.webhook_id,
        secret_index: e.secret_index,
        payload: e.payload(),
    }))
}

/// The exact bytes Voltage signed, byte for byte.
#[utoipa::path(get, path = "/v1/environments/{environment}/events/{event_id}/raw", operation_id = "get_event_raw", tag = "events",
    params(("environment" = String, Path), ("event_id" = Uuid, Path)),
    responses((status = 200, content_type = "application/json", body = Object,
        description = "the body exactly as Voltage signed it: any JSON, byte for byte"), (status = 404)))]
pub async fn raw(
    Reader(access): Reader,
    _: NoQuery,
    State(state): State<AppState>,
    Path((_, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let e = load(&state, &access.environment, &id).await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], e.raw_body).into_response())
}

/// Each handler's delivery state for the event.
#[utoipa::path(get, path = "/v1/environments/{environment}/events/{event_id}/deliveries", operation_id = "list_event_deliveries", tag = "events",
    params(("environment" = String, Path), ("event_id" = Uuid, Path)),
    responses((status = 200, body = Vec<DeliveryState>), (status = 404)))]
pub async fn deliveries(
    Reader(access): Reader,
    _: NoQuery,
    State(state): State<AppState>,
    Path((_, id)): Path<(String, String)>,
) -> Result<Json<Vec<DeliveryState>>, ApiError> {
    let e = load(&state, &access.environment, &id).await?;
    let states = state
        .store
        .deliveries_of(e.id)
        .await
        .map_err(|e| ApiError::unavailable_because(&e))?;
    Ok(Json(states))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// Handler names; absent or empty: every handler subscribed to the event.
    #[serde(default)]
    pub handlers: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReplayResponse {
    pub event_id: Uuid,
    /// `replayed`, or `already_replayed` when the Idempotency-Key was seen before.
    pub status: &'static str,
    /// The handlers enqueued (in-flight deliveries are left to finish).
    pub handlers: Vec<String>,
}

/// Enqueue the event again. With an `Idempotency-Key` header, a repeated call does nothing.
#[utoipa::path(post, path = "/v1/environments/{environment}/events/{event_id}/replay", operation_id = "replay_event", tag = "events",
    params(("environment" = String, Path), ("event_id" = Uuid, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "makes a repeated call a no-op")),
    request_body(content = Option<ReplayRequest>),
    responses((status = 202, body = ReplayResponse), (status = 404), (status = 422)))]
pub async fn replay(
    Writer(access): Writer,
    _: NoQuery,
    State(state): State<AppState>,
    Path((_, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<ReplayResponse>), ApiError> {
    let request = replay_request(&body)?;
    let key = idempotency_key(&headers)?;
    let e = load(&state, &access.environment, &id).await?;
    let handlers = handlers_for(&state, &e, request.handlers)?;
    let outcome = state
        .store
        .replay(&access.environment, e.id, &handlers, key.as_deref())
        .await
        .map_err(|e| ApiError::unavailable_because(&e))?;
    let (status, handlers) = replay_answer(outcome)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(ReplayResponse {
            event_id: e.id,
            status,
            handlers,
        }),
    ))
}

fn replay_request(body: &Bytes) -> Result<ReplayRequest, ApiError> {
    if body.is_empty() {
        return Ok(ReplayRequest::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::new(ErrorCode::InvalidBody, e.to_string()))
}

/// The `Idempotency-Key` header: 1 to 255 visible characters, when given.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let key = headers
        .get("idempotency-key")
        .map(|v| v.to_str().unwrap_or_default().to_owned());
    if key.as_ref().is_some_and(|k| k.is_empty() || k.len() > 255) {
        return Err(ApiError::new(
            ErrorCode::InvalidParameter,
            "Idempotency-Key must be 1 to 255 visible characters",
        ));
    }
    Ok(key)
}

/// The answer's status word and handlers, or the refusal, for what the store did.
fn replay_answer(outcome: ReplayOutcome) -> Result<(&'static str, Vec<String>), ApiError> {
    match outcome {
        ReplayOutcome::Replayed { handlers } => Ok(("replayed", handlers)),
        ReplayOutcome::AlreadyDone { handlers } => Ok(("already_replayed", handlers)),
        ReplayOutcome::KeyReused => Err(ApiError::new(
            ErrorCode::IdempotencyKeyReused,
            "this Idempotency-Key was used for another event",
        )),
        ReplayOutcome::NotFound => Err(ApiError::new(
            ErrorCode::EventNotFound,
            "no such event in this environment",
        )),
    }
}

/// The handlers a replay goes to: those named, each of which must be subscribed to the event (its
/// route matches the event's environment and `type.event`), or every subscribed one. A write key
/// of one environment must not reach a handler configured for another, or for other events.
fn handlers_for(
    state: &AppState,
    e: &StoredEvent,
    named: Vec<String>,
) -> Result<Vec<String>, ApiError> {
    let known = state.intake.routing.names();
    if let Some(unknown) = named.iter().find(|n| !known.contains(n)) {
        return Err(ApiError::new(
            ErrorCode::UnknownHandler,
            format!("no handler named {unknown:?}"),
        ));
    }
    let subscribed = state
        .intake
        .routing
        .matching(&e.environment, &e.event_type, &e.event);
    if let Some(other) = named.iter().find(|n| !subscribed.contains(n)) {
        return Err(not_subscribed(other));
    }
    let handlers = if named.is_empty() { subscribed } else { named };
    if handlers.is_empty() {
        return Err(ApiError::new(
            ErrorCode::NoHandlers,
            "no handler is subscribed to this event",
        ));
    }
    Ok(handlers)
}

pub(super) fn not_subscribed(handler: &str) -> ApiError {
    ApiError::new(
        ErrorCode::HandlerNotSubscribed,
        format!(
            "handler {handler:?} is not subscribed to this event (environment or event filter)"
        ),
    )
}
