//! Confirmation before a handler runs (`confirm = true` on a handler): the payment is fetched from
//! the payments API and the call proceeds only if the API agrees with the event. A signature proves
//! the sender holds the secret, not that money moved: a leaked secret, or Voltage's test endpoint,
//! can sign any body. A contradiction is permanent (the delivery is dead-lettered, visible to
//! operators); an API that cannot be reached is retryable.
//!
//! "Agrees": the API knows the payment, in the same direction, and for an event that states a final
//! outcome (`completed`, `failed`, `expired`), with that same status. An event with an in-progress
//! status is confirmed by the payment's existence: the payment may well have moved on since.

use std::collections::HashMap;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use serde_json::Value;
use tower::{BoxError, Layer, Service};

use crate::handlers::{HandlerError, HandlerRequest};
use crate::telemetry::metrics as names;
use crate::voltage_api::{Target, VoltageApi};

const FINAL_STATUSES: [&str; 3] = ["completed", "failed", "expired"];

/// Adds confirmation to a handler's stack; one target (API key) per environment.
#[derive(Debug, Clone)]
pub struct ConfirmLayer {
    api: VoltageApi,
    targets: Arc<HashMap<String, Target>>,
}

impl ConfirmLayer {
    pub fn new(api: VoltageApi, targets: impl IntoIterator<Item = Target>) -> Self {
        Self {
            api,
            targets: Arc::new(
                targets
                    .into_iter()
                    .map(|t| (t.environment.clone(), t))
                    .collect(),
            ),
        }
    }
}

impl<S> Layer<S> for ConfirmLayer {
    type Service = Confirmed<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Confirmed {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Confirmed<S> {
    inner: S,
    layer: ConfirmLayer,
}

impl<S> Service<HandlerRequest> for Confirmed<S>
where
    S: Service<HandlerRequest, Response = ()> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = ();
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<(), BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: HandlerRequest) -> Self::Future {
        // The clone that was made ready stays with this call (tower's usual swap).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            confirm(&layer, &request).await?;
            inner.call(request).await.map_err(Into::into)
        })
    }
}

async fn confirm(layer: &ConfirmLayer, request: &HandlerRequest) -> Result<(), HandlerError> {
    let refuse = |why: String| {
        metrics::counter!(names::CONFIRMATION_REFUSED, "environment" => request.environment.clone())
            .increment(1);
        tracing::warn!(event_id = %request.event_id, environment = %request.environment, reason = %why, "confirmation refused the event");
        HandlerError::permanent(format!("confirmation: {why}"))
    };
    let Some(payment_id) = request.payment_id.as_deref() else {
        return Err(refuse("the event names no payment".to_owned()));
    };
    let Some(target) = layer.targets.get(&request.environment) else {
        return Err(refuse(format!(
            "no Voltage API key is configured for environment {}",
            request.environment
        )));
    };
    let payment = match layer.api.payment(target, payment_id).await {
        Ok(Some(payment)) => payment,
        Ok(None) => {
            return Err(refuse(format!(
                "the payments API does not know payment {payment_id}"
            )))
        }
        // Unreachable, busy, or refusing our key: not the event's fault; try again later.
        Err(e) => return Err(HandlerError::retryable(format!("confirmation: {e}"))),
    };
    let data = &request.payload["detail"]["data"];
    let text = |value: &Value, key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
    let (claimed, actual) = (text(data, "status"), text(&payment, "status"));
    if text(data, "direction") != text(&payment, "direction") {
        return Err(refuse(format!(
            "payment {payment_id} has direction {:?} in the API, {:?} in the event",
            text(&payment, "direction"),
            text(data, "direction")
        )));
    }
    match claimed.as_deref() {
        Some(status) if FINAL_STATUSES.contains(&status) && actual.as_deref() != Some(status) => {
            Err(refuse(format!(
                "payment {payment_id} is {actual:?} in the API, the event says {status:?}"
            )))
        }
        _ => Ok(()),
    }
}
