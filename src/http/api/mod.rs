//! The query API for downstream services, under `/v1/environments/{environment}`, with API keys
//! scoped to one environment (see `access`), and its OpenAPI document at `/v1/openapi.json`,
//! generated from the handlers' annotations.

mod access;
mod cursor;
mod deliveries;
mod events;
mod payments;
mod stream;

use axum::routing::{get, post};
use axum::{Json, Router};
use utoipa::OpenApi;

use super::AppState;

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
        deliveries::retry
    )
)]
pub struct ApiDoc;

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
            &format!("{env}/deliveries/{{delivery_id}}/retry"),
            post(deliveries::retry),
        )
        .route(
            "/v1/openapi.json",
            get(|| async { Json(ApiDoc::openapi()) }),
        )
}
