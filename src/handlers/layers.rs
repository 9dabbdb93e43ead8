//! The layers every handler gets: a tracing span per call, metrics per outcome, and the mapping of
//! any error into a [`HandlerError`] the dispatcher can act on.

use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use futures_util::future::BoxFuture;
use tower::{BoxError, Layer, Service};
use tracing::Instrument as _;

use super::{HandlerError, HandlerRequest};
use crate::telemetry::metrics as names;

/// Maps whatever the inner stack failed with: a handler's own error is kept; a timeout, or any
/// other error (a connection refused, a panic turned error), is retryable.
pub fn classify(error: BoxError) -> HandlerError {
    match error.downcast::<HandlerError>() {
        Ok(handler_error) => *handler_error,
        Err(other) if other.is::<tower::timeout::error::Elapsed>() => {
            HandlerError::retryable("timed out")
        }
        Err(other) => HandlerError::retryable(other.to_string()),
    }
}

/// One `handler` span per call, with the event, delivery and attempt.
#[derive(Debug, Clone)]
pub struct TraceLayer {
    name: Arc<str>,
}

impl TraceLayer {
    pub fn new(name: &str) -> Self {
        Self { name: name.into() }
    }
}

impl<S> Layer<S> for TraceLayer {
    type Service = Traced<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Traced {
            inner,
            name: self.name.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Traced<S> {
    inner: S,
    name: Arc<str>,
}

impl<S> Service<HandlerRequest> for Traced<S>
where
    S: Service<HandlerRequest>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = tracing::instrument::Instrumented<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: HandlerRequest) -> Self::Future {
        let span = tracing::info_span!(
            "handler",
            handler = %self.name,
            event_id = %request.event_id,
            delivery_id = request.delivery_id,
            attempt = request.attempt,
        );
        self.inner.call(request).instrument(span)
    }
}

/// Counts calls by outcome and records their duration, per handler, through the `metrics` facade
/// (exported by whatever recorder the process installs).
#[derive(Debug, Clone)]
pub struct MetricsLayer {
    name: Arc<str>,
}

impl MetricsLayer {
    pub fn new(name: &str) -> Self {
        Self { name: name.into() }
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = Metered<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Metered {
            inner,
            name: self.name.clone(),
            handles: Arc::default(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Metered<S> {
    inner: S,
    name: Arc<str>,
    /// The handler's counters and histogram, registered on its first call (the process's
    /// recorder is installed by then) and shared by every clone: a call does no key lookup.
    handles: Arc<OnceLock<Handles>>,
}

#[derive(Debug)]
struct Handles {
    success: metrics::Counter,
    retryable: metrics::Counter,
    permanent: metrics::Counter,
    seconds: metrics::Histogram,
}

impl Handles {
    fn new(name: &str) -> Self {
        let calls = |outcome: &'static str| metrics::counter!(names::HANDLER_CALLS, "handler" => name.to_owned(), "outcome" => outcome);
        Self {
            success: calls("success"),
            retryable: calls("retryable"),
            permanent: calls("permanent"),
            seconds: metrics::histogram!(names::HANDLER_CALL_SECONDS, "handler" => name.to_owned()),
        }
    }
}

impl<S> Service<HandlerRequest> for Metered<S>
where
    S: Service<HandlerRequest, Response = (), Error = HandlerError>,
    S::Future: Send + 'static,
{
    type Response = ();
    type Error = HandlerError;
    type Future = BoxFuture<'static, Result<(), HandlerError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: HandlerRequest) -> Self::Future {
        let started = Instant::now();
        let name = &self.name;
        self.handles.get_or_init(|| Handles::new(name));
        let handles = self.handles.clone();
        let call = self.inner.call(request);
        Box::pin(async move {
            let result = call.await;
            if let Some(h) = handles.get() {
                match &result {
                    Ok(()) => &h.success,
                    Err(HandlerError::Retryable { .. }) => &h.retryable,
                    Err(HandlerError::Permanent { .. }) => &h.permanent,
                }
                .increment(1);
                h.seconds.record(started.elapsed().as_secs_f64());
            }
            result
        })
    }
}
