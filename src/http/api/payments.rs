//! `GET /v1/environments/{environment}/payments/{payment_id}`: the latest known state of a payment
//! and its event history. The state never moves backwards (see `event::payment_state`).

use axum::extract::{Path, State};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::access::Reader;
use super::events::summary;
use crate::error_code::ErrorCode;
use crate::event::payment_state::{self, Observation};
use crate::http::{ApiError, AppState};
use crate::store::EventSummary;

#[derive(Debug, Serialize, ToSchema)]
pub struct LastEvent {
    pub event_id: Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    pub event: String,
    pub received_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentState {
    pub payment_id: String,
    pub status: Option<String>,
    /// `send` or `receive`.
    pub direction: Option<String>,
    pub currency: Option<String>,
    /// `{amount, currency, unit}` as Voltage sends it (integers in msats, cents or base units).
    #[schema(value_type = Option<Object>)]
    pub amount: Option<Value>,
    pub updated_at: Option<DateTime<Utc>>,
    /// The event that defines the state (not necessarily the last to arrive).
    pub last_event: LastEvent,
    /// Every event of the payment, in the order received.
    pub history: Vec<EventSummary>,
}

#[utoipa::path(get, path = "/v1/environments/{environment}/payments/{payment_id}", operation_id = "get_payment", tag = "payments",
    params(("environment" = String, Path), ("payment_id" = String, Path)),
    responses((status = 200, body = PaymentState), (status = 404)))]
pub async fn get(
    Reader(access): Reader,
    _: super::NoQuery,
    State(state): State<AppState>,
    Path((_, payment_id)): Path<(String, String)>,
) -> Result<Json<PaymentState>, ApiError> {
    let events = state
        .store
        .payment_events(&access.environment, &payment_id)
        .await
        .map_err(|e| ApiError::unavailable_because(&e))?;
    let observations = events.iter().map(|e| Observation {
        status: e.payment_status.as_deref(),
        updated_at: e.payment_updated_at,
        received_at: e.received_at,
    });
    let current = payment_state::current(observations)
        .and_then(|i| events.get(i))
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::PaymentNotFound,
                "no event of this payment in this environment",
            )
        })?;
    let data = current
        .payload()
        .pointer("/detail/data")
        .cloned()
        .unwrap_or(Value::Null);
    let text = |key: &str| data.get(key).and_then(Value::as_str).map(str::to_owned);
    Ok(Json(PaymentState {
        payment_id,
        status: current.payment_status.clone(),
        direction: text("direction"),
        currency: text("currency"),
        amount: payment_state::amount(&data).cloned(),
        updated_at: current.payment_updated_at,
        last_event: LastEvent {
            event_id: current.id,
            event_type: current.event_type.clone(),
            event: current.event.clone(),
            received_at: current.received_at,
        },
        history: events.iter().map(summary).collect(),
    }))
}
