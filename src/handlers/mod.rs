//! Handlers: where stored events go. Each is a `tower::Service<HandlerRequest>` wrapped in a stack
//! of layers (tracing, metrics, outcome classification, timeout, concurrency limit).
//!
//! This module owns the request and error types, routing, the stack, and the built-in kinds
//! (`http`, `nats`, `log`). It does not schedule or retry: the dispatcher decides, durably, from the
//! classified outcome. Library users register their own services (see `examples/custom_handler.rs`).

mod build;
mod confirm;
mod http;
mod layers;
mod log;
mod nats;

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde_json::Value;
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceBuilder};
use uuid::Uuid;

pub use self::build::{build, HandlerSpec, KindSpec};
pub use self::http::{HttpHandler, InvalidSigningKey, StandardWebhookSigner};
pub use self::log::LogHandler;
pub use self::nats::{nats_subject, NatsHandler, StreamSettings};
pub use confirm::ConfirmLayer;
pub use layers::classify;

use crate::event::{Route, Routing};
use crate::retry::RetryPolicy;

/// One stored event on its way to one handler, for one attempt.
#[derive(Debug, Clone)]
pub struct HandlerRequest {
    pub event_id: Uuid,
    pub delivery_id: i64,
    pub environment: String,
    pub event_type: String,
    pub event: String,
    pub payment_id: Option<String>,
    /// `webhook`, or `reconciliation` when the event was built from the payments API because the
    /// webhook never came.
    pub source: String,
    pub payload: Value,
    /// The exact bytes Voltage signed.
    pub raw_body: Bytes,
    pub received_at: DateTime<Utc>,
    /// Starts at 1.
    pub attempt: u32,
    /// Where the handler leaves what the attempt history shows beyond the outcome.
    pub report: AttemptReport,
}

/// What a handler reports about its call for the attempt history: the HTTP status it received.
/// Shared between the clone the handler gets and the dispatcher that records the attempt.
#[derive(Debug, Clone, Default)]
pub struct AttemptReport(Arc<AtomicU16>);

impl AttemptReport {
    pub fn set_http_status(&self, status: u16) {
        self.0.store(status, Ordering::Relaxed);
    }

    pub fn http_status(&self) -> Option<u16> {
        Some(self.0.load(Ordering::Relaxed)).filter(|&s| s != 0)
    }
}

impl HandlerRequest {
    /// The JSON document built-in handlers send: the event's identity and the payload as Voltage
    /// sent it. The same bytes on every attempt, so receivers can deduplicate on `event_id`.
    pub fn to_json(&self) -> Vec<u8> {
        let document = serde_json::json!({
            "event_id": self.event_id,
            "environment": self.environment,
            "type": self.event_type,
            "event": self.event,
            "payment_id": self.payment_id,
            "source": self.source,
            "received_at": self.received_at,
            "payload": self.payload,
        });
        // Serializing a `Value` cannot fail.
        serde_json::to_vec(&document).unwrap_or_default()
    }
}

/// How an attempt failed, which decides what the dispatcher does next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// Try again later; `retry_after` overrides the backoff when the handler knows better.
    #[error("{message}")]
    Retryable {
        message: String,
        retry_after: Option<Duration>,
    },
    /// Trying again cannot help: the delivery is dead-lettered at once.
    #[error("{message}")]
    Permanent { message: String },
}

impl HandlerError {
    pub fn retryable(message: impl Into<String>) -> Self {
        Self::Retryable {
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Self::Permanent {
            message: message.into(),
        }
    }
}

/// A handler with its layers, shareable between the dispatcher's tasks.
pub type Handler = BoxCloneSyncService<HandlerRequest, (), HandlerError>;

/// Limits applied around one handler.
#[derive(Debug, Clone, Copy)]
pub struct StackSettings {
    pub timeout: Duration,
    /// At most this many calls of this handler at once, per process.
    pub concurrency: usize,
}

/// Wraps `inner` in the standard stack. Order, outermost first: tracing span, metrics, outcome
/// classification (timeouts and unexpected errors become retryable), timeout, concurrency limit.
pub fn stack<S>(name: &str, settings: StackSettings, inner: S) -> Handler
where
    S: Service<HandlerRequest, Response = ()> + Clone + Send + Sync + 'static,
    S::Error: Into<tower::BoxError>,
    S::Future: Send + 'static,
{
    stack_with(name, settings, None, inner)
}

/// [`stack`], with confirmation against the payments API (innermost, so the handler's timeout and
/// concurrency limit cover the API call too) when `confirm` is given.
pub fn stack_with<S>(
    name: &str,
    settings: StackSettings,
    confirm: Option<ConfirmLayer>,
    inner: S,
) -> Handler
where
    S: Service<HandlerRequest, Response = ()> + Clone + Send + Sync + 'static,
    S::Error: Into<tower::BoxError>,
    S::Future: Send + 'static,
{
    let service = ServiceBuilder::new()
        .layer(layers::TraceLayer::new(name))
        .layer(layers::MetricsLayer::new(name))
        .map_err(layers::classify)
        .timeout(settings.timeout)
        .concurrency_limit(settings.concurrency)
        .option_layer(confirm)
        // One error type on both sides of the optional layer.
        .map_err(Into::<tower::BoxError>::into)
        .service(inner);
    BoxCloneSyncService::new(service)
}

/// A handler ready for the dispatcher: its name (the outbox's `handler` column), its route, its
/// retry policy and its service.
#[derive(Clone)]
pub struct RegisteredHandler {
    pub name: String,
    pub route: Route,
    pub retry: RetryPolicy,
    pub service: Handler,
}

impl std::fmt::Debug for RegisteredHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisteredHandler")
            .field("name", &self.name)
            .field("route", &self.route)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// Every handler of this process.
/// A second handler with a name already registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a handler named {0:?} is already registered")]
pub struct DuplicateHandler(pub String);

#[derive(Debug, Clone, Default)]
pub struct HandlerSet {
    handlers: Vec<RegisteredHandler>,
}

impl HandlerSet {
    /// Adds a handler; a second handler with the same name is refused.
    pub fn register(&mut self, handler: RegisteredHandler) -> Result<(), DuplicateHandler> {
        if self.handlers.iter().any(|h| h.name == handler.name) {
            return Err(DuplicateHandler(handler.name));
        }
        self.handlers.push(handler);
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&RegisteredHandler> {
        self.handlers.iter().find(|h| h.name == name)
    }

    /// Every handler, in registration order.
    pub fn all(&self) -> Vec<RegisteredHandler> {
        self.handlers.clone()
    }

    pub fn names(&self) -> Vec<String> {
        self.handlers.iter().map(|h| h.name.clone()).collect()
    }

    pub fn routing(&self) -> Routing {
        Routing::new(
            self.handlers
                .iter()
                .map(|h| (h.name.clone(), h.route.clone()))
                .collect(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.handlers.is_empty()
    }
}
