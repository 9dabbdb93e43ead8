//! The query API for downstream services, under `/v1/environments/{environment}`, with API keys
//! scoped to one environment (see `access`), and its OpenAPI document at `/v1/openapi.json`,
//! generated from the handlers' annotations.

mod access;
mod cursor;
mod deliveries;
pub(crate) mod doc;

use doc::Errors;
mod events;
mod payments;
mod stream;

pub use stream::StreamSlots;

use axum::routing::{get, post};
use axum::{Json, Router};
use utoipa::OpenApi;

use super::{ApiError, AppState};
use crate::error_code::ErrorCode;

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "voltage-webhooks query API",
        description = "Events, payment state and deliveries \
        of one environment. Every route needs an `x-api-key` header with a key of that environment; \
        POST routes need a write key."
    ),
    paths(
        events::list,
        events::get,
        events::raw,
        events::deliveries,
        events::replay,
        stream::stream,
        payments::get,
        deliveries::list,
        deliveries::attempts,
        deliveries::retry
    ),
    components(schemas(
        crate::http::error::ErrorBody,
        crate::http::error::ErrorDetail,
        doc::Order,
        doc::Source,
        doc::DeliveryStatus
    )),
    modifiers(&Errors)
)]
pub struct ApiDoc;

/// For routes that take no query parameters: any parameter is refused with 400, as on the routes
/// that take some (a misspelled filter must not silently return everything).
#[derive(Debug, Clone, Copy)]
pub struct NoQuery;

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for NoQuery {
    type Rejection = ApiError;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, ApiError> {
        match parts.uri.query() {
            Some(query) if !query.is_empty() => Err(ApiError::new(
                ErrorCode::InvalidParameter,
                "this route takes no query parameters",
            )),
            _ => Ok(Self),
        }
    }
}

/// A comma-separated list of values (`type=send,receive`); empty items are refused.
fn list_param(name: &str, value: Option<&str>) -> Result<Vec<String>, ApiError> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let items: Vec<String> = value.split(',').map(str::to_owned).collect();
    if items.iter().any(String::is_empty) {
        return Err(ApiError::new(
            ErrorCode::InvalidParameter,
            format!("{name}: a comma-separated list of values, none empty"),
        ));
    }
    Ok(items)
}

/// The largest page any listing returns.
const MAX_PAGE: i64 = 500;

/// A listing's page size: 1 to 500, 100 when absent.
fn page_limit(requested: Option<i64>) -> Result<i64, ApiError> {
    let limit = requested.unwrap_or(100);
    if (1..=MAX_PAGE).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::new(
            ErrorCode::InvalidParameter,
            format!("limit must be 1 to {MAX_PAGE}"),
        ))
    }
}

/// Listings fetch `limit + 1` rows: the extra one only says whether another page exists.
fn close_page<T>(rows: &mut Vec<T>, limit: i64) -> bool {
    let more = rows.len() as i64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(0));
    more
}

pub fn routes() -> Router<AppState> {
    let env = "/v1/environments/{environment}";
    Router::new()
        .route(&format!("{env}/events"), get(events::list))
        .route(&format!("{env}/events/stream"), get(stream::stream))
        .route(&format!("{env}/events/{{event_id}}"), get(events::get))
        .route(&format!("{env}/events/{{event_id}}/raw"), get(events::raw))
        .route(
            &format!("{env}/events/{{event_id}}/deliveries"),
            get(events::deliveries),
        )
        .route(
            &format!("{env}/events/{{event_id}}/replay"),
            post(events::replay),
        )
        .route(
            &format!("{env}/payments/{{payment_id}}"),
            get(payments::get),
        )
        .route(&format!("{env}/deliveries"), get(deliveries::list))
        .route(
            &format!("{env}/deliveries/{{delivery_id}}/attempts"),
            get(deliveries::attempts),
        )
        .route(
            &format!("{env}/deliveries/{{delivery_id}}/retry"),
            post(deliveries::retry),
        )
        .route(
            "/v1/openapi.json",
            get(|| async { Json(ApiDoc::openapi()) }),
        )
}
