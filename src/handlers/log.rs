//! The `log` handler: one structured log line per event (target `voltage_webhooks::events`).

use std::task::{Context, Poll};

use futures_util::future::{ready, Ready};
use tower::Service;

use super::{HandlerError, HandlerRequest};

#[derive(Debug, Clone, Default)]
pub struct LogHandler;

impl Service<HandlerRequest> for LogHandler {
    type Response = ();
    type Error = HandlerError;
    type Future = Ready<Result<(), HandlerError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: HandlerRequest) -> Self::Future {
        tracing::info!(
            target: "voltage_webhooks::events",
            event_id = %request.event_id,
            environment = %request.environment,
            event_type = %request.event_type,
            event = %request.event,
            payment_id = request.payment_id.as_deref().unwrap_or(""),
            status = request.payload.pointer("/detail/data/status").and_then(|s| s.as_str()).unwrap_or(""),
            received_at = %request.received_at,
            "voltage event"
        );
        ready(Ok(()))
    }
}
