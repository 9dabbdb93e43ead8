//! `/v1/environments/{environment}/deliveries`: delivery states (e.g. the dead letters), each
//! delivery's attempts, and retry.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::access::{Reader, Writer};
use super::events::query_error;
use crate::error_code::ErrorCode;
use crate::http::{ApiError, AppState};
use crate::store::{AttemptRecord, DeliveryState, RetryOutcome};

const STATUSES: [&str; 4] = ["pending", "in_flight", "succeeded", "dead"];

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeliveryParams {
    /// `pending`, `in_flight`, `succeeded` or `dead`.
    #[param(value_type = Option<super::doc::DeliveryStatus>)]
    pub status: Option<String>,
    /// `next_after` of the previous page.
    pub after: Option<i64>,
    /// 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryPage {
    pub deliveries: Vec<DeliveryState>,
    pub next_after: Option<i64>,
}

#[utoipa::path(get, path = "/v1/environments/{environment}/deliveries", operation_id = "list_deliveries", tag = "deliveries",
    params(("environment" = String, Path), DeliveryParams),
    responses((status = 200, body = DeliveryPage), (status = 400)))]
pub async fn list(
    Reader(access): Reader,
    State(state): State<AppState>,
    query: Result<Query<DeliveryParams>, QueryRejection>,
) -> Result<Json<DeliveryPage>, ApiError> {
    let Query(params) = query.map_err(query_error)?;
    if let Some(status) = params.status.as_deref().filter(|s| !STATUSES.contains(s)) {
        return Err(ApiError::new(
            ErrorCode::InvalidParameter,
            format!("status {status:?}: one of {STATUSES:?}"),
        ));
    }
    let limit = super::page_limit(params.limit)?;
    let mut deliveries = state
        .store
        .list_deliveries(
            &access.environment,
            params.status.as_deref(),
            params.after.unwrap_or(0),
            limit + 1,
        )
        .await
        .map_err(|e| ApiError::unavailable_because(&e))?;
    let more = super::close_page(&mut deliveries, limit);
    let next_after = more.then(|| deliveries.last().map(|d| d.id)).flatten();
    Ok(Json(DeliveryPage {
        deliveries,
        next_after,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AttemptParams {
    /// `next_after` of the previous page.
    pub after: Option<i64>,
    /// 1 to 500 (default 100).
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptPage {
    /// Oldest first. Replays and retries add attempts; none is ever removed before its delivery.
    pub attempts: Vec<AttemptRecord>,
    pub next_after: Option<i64>,
}

/// Every attempt of one delivery: when it started, how long it took, its outcome, the HTTP status
/// or error, and the worker that made it.
#[utoipa::path(get, path = "/v1/environments/{environment}/deliveries/{delivery_id}/attempts", tag = "deliveries",
    params(("environment" = String, Path), ("delivery_id" = i64, Path), AttemptParams),
    responses((status = 200, body = AttemptPage), (status = 400), (status = 404)))]
pub async fn attempts(
    Reader(access): Reader,
    State(state): State<AppState>,
    Path((_, id)): Path<(String, String)>,
    query: Result<Query<AttemptParams>, QueryRejection>,
) -> Result<Json<AttemptPage>, ApiError> {
    let Query(params) = query.map_err(query_error)?;
    let not_found = || {
        ApiError::new(
            ErrorCode::DeliveryNotFound,
            "no such delivery in this environment",
        )
    };
    let id: i64 = id.parse().map_err(|_| not_found())?;
    let limit = super::page_limit(params.limit)?;
    let mut attempts = state
        .store
        .attempts_of(
            &access.environment,
            id,
            params.after.unwrap_or(0),
            limit + 1,
        )
        .await
        .map_err(|e| ApiError::unavailable_because(&e))?
        .ok_or_else(not_found)?;
    let more = super::close_page(&mut attempts, limit);
    let next_after = more.then(|| attempts.last().map(|a| a.id)).flatten();
    Ok(Json(AttemptPage {
        attempts,
        next_after,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RetryResponse {
    pub delivery_id: i64,
    pub status: &'static str,
}

/// Retry a dead delivery now, with a fresh set of attempts.
#[utoipa::path(post, path = "/v1/environments/{environment}/deliveries/{delivery_id}/retry", operation_id = "retry_delivery", tag = "deliveries",
    params(("environment" = String, Path), ("delivery_id" = i64, Path)),
    responses((status = 202, body = RetryResponse), (status = 404), (status = 409), (status = 422)))]
pub async fn retry(
    Writer(access): Writer,
    _: super::NoQuery,
    State(state): State<AppState>,
    Path((_, id)): Path<(String, String)>,
) -> Result<(StatusCode, Json<RetryResponse>), ApiError> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::new(ErrorCode::DeliveryNotFound, "no such delivery"))?;
    // Only to a handler the event is routed to today (a reload may have narrowed the route).
    let route = state
        .store
        .delivery_route(&access.environment, id)
        .await
        .map_err(|e| ApiError::unavailable_because(&e))?;
    if let Some(r) = &route {
        let subscribed = state
            .intake
            .routing
            .matching(&r.environment, &r.event_type, &r.event);
        if !subscribed.contains(&r.handler) {
            return Err(super::events::not_subscribed(&r.handler));
        }
    }
    match state
        .store
        .retry_delivery(&access.environment, id)
        .await
        .map_err(|e| ApiError::unavailable_because(&e))?
    {
        RetryOutcome::Retried => Ok((
            StatusCode::ACCEPTED,
            Json(RetryResponse {
                delivery_id: id,
                status: "pending",
            }),
        )),
        RetryOutcome::NotDead(status) => Err(ApiError::new(
            ErrorCode::NotDead,
            format!("only dead deliveries are retried; this one is {status}"),
        )),
        RetryOutcome::NotFound => Err(ApiError::new(
            ErrorCode::DeliveryNotFound,
            "no such delivery in this environment",
        )),
    }
}
