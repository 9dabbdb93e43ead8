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
use std::sync::{Arc, OnceLock};
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
    /// The payload as a JSON tree, parsed from `raw_body` the first time a handler reads it (the
    /// built-in handlers never do: they send the stored bytes).
    pub payload: LazyPayload,
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

/// An event's payload: its stored bytes, parsed into a [`Value`] only when first dereferenced, once
/// per request (clones share the parse).
#[derive(Clone, Default)]
pub struct LazyPayload {
    raw: Bytes,
    parsed: Arc<OnceLock<Value>>,
}

impl LazyPayload {
    pub fn new(raw: Bytes) -> Self {
        Self {
            raw,
            parsed: Arc::default(),
        }
    }

    /// The parsed payload; `Null` when the bytes are not JSON (stored events always are).
    pub fn value(&self) -> &Value {
        self.parsed
            .get_or_init(|| serde_json::from_slice(&self.raw).unwrap_or_default())
    }
}

impl std::ops::Deref for LazyPayload {
    type Target = Value;
    fn deref(&self) -> &Value {
        self.value()
    }
}

impl From<Value> for LazyPayload {
    fn from(value: Value) -> Self {
        let raw = serde_json::to_vec(&value).unwrap_or_default();
        Self {
            raw: raw.into(),
            parsed: Arc::new(OnceLock::from(value)),
        }
    }
}

impl std::fmt::Debug for LazyPayload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LazyPayload({} bytes)", self.raw.len())
    }
}

/// The document of [`HandlerRequest::to_json`], keys in the order `serde_json::json!` gave them.
#[derive(serde::Serialize)]
struct Document<'a> {
    environment: &'a str,
    event: &'a str,
    event_id: &'a Uuid,
    payload: &'a serde_json::value::RawValue,
    payment_id: Option<&'a str>,
    received_at: &'a DateTime<Utc>,
    source: &'a str,
    #[serde(rename = "type")]
    event_type: &'a str,
}

impl HandlerRequest {
    /// The JSON document built-in handlers send: the event's identity and the payload as Voltage
    /// sent it (its stored bytes, not parsed and serialized again). The same bytes on every
    /// attempt, so receivers can deduplicate on `event_id`.
    pub fn to_json(&self) -> Vec<u8> {
        let null = serde_json::value::RawValue::NULL;
        // Checked, not trusted: bytes that are not one JSON value would break the document.
        let payload =
            serde_json::from_slice::<&serde_json::value::RawValue>(&self.raw_body).unwrap_or(null);
        let document = Document {
            environment: &self.environment,
            event: &self.event,
            event_id: &self.event_id,
            payload,
            payment_id: self.payment_id.as_deref(),
            received_at: &self.received_at,
            source: &self.source,
            event_type: &self.event_type,
        };
        let mut out = Vec::with_capacity(self.raw_body.len() + 320);
        // Serializing strings, a UUID, a date and raw JSON into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, &document);
        out
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

#[cfg(test)]
mod tests {
    use super::*;

    fn request(raw_body: &'static [u8]) -> HandlerRequest {
        let raw_body = Bytes::from_static(raw_body);
        HandlerRequest {
            event_id: Uuid::nil(),
            delivery_id: 7,
            environment: "production".into(),
            event_type: "receive".into(),
            event: "succeeded".into(),
            payment_id: Some("p-1".into()),
            source: "webhook".into(),
            payload: LazyPayload::new(raw_body.clone()),
            raw_body,
            received_at: DateTime::<Utc>::UNIX_EPOCH,
            attempt: 1,
            report: AttemptReport::default(),
        }
    }

    #[test]
    fn the_document_carries_the_stored_bytes_as_its_payload_without_parsing_them() {
        let body: &[u8] =
            br#"{"type": "receive",  "detail": {"data": {"amount_msats": 1000, "id": "p-1"}}}"#;
        let request = request(body);
        let document = request.to_json();
        // Byte for byte: whitespace and key order as Voltage sent them, nothing parsed again.
        assert!(
            document.windows(body.len()).any(|w| w == body),
            "{}",
            String::from_utf8_lossy(&document)
        );
        assert!(
            request.payload.parsed.get().is_none(),
            "to_json parsed the payload"
        );
        let parsed: Value = serde_json::from_slice(&document).expect("valid JSON");
        assert_eq!(
            parsed,
            serde_json::json!({
                "event_id": Uuid::nil(),
                "environment": "production",
                "type": "receive",
                "event": "succeeded",
                "payment_id": "p-1",
                "source": "webhook",
                "received_at": DateTime::<Utc>::UNIX_EPOCH,
                "payload": serde_json::from_slice::<Value>(body).expect("body"),
            })
        );
        // The tree is still there for handlers that read it, parsed once for all clones.
        let clone = request.clone();
        assert_eq!(
            request.payload.pointer("/detail/data/id"),
            Some(&Value::from("p-1"))
        );
        assert!(clone.payload.parsed.get().is_some());
    }

    #[test]
    fn bytes_that_are_not_json_become_a_null_payload_not_a_broken_document() {
        for body in [&b"{\"a\": 1"[..], b"", b"1 2"] {
            let request = request(body);
            let parsed: Value = serde_json::from_slice(&request.to_json()).expect("valid JSON");
            assert_eq!(parsed["payload"], Value::Null, "{body:?}");
            assert_eq!(*request.payload, Value::Null);
        }
    }
}
