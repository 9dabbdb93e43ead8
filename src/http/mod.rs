//! The HTTP surface: router, middleware stack, the ingest route, health, and error responses.
//!
//! This is the only module that knows axum. It translates requests into calls on `verify`, `event`
//! and `store`, and their typed outcomes into status codes; it holds no business rules of its own.

mod api;
mod application;
pub(crate) mod error;
mod health;
mod ingest;
mod metrics;
mod probe_cache;
mod server;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::error_handling::HandleErrorLayer;
use axum::extract::{ConnectInfo, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderName, Uri};
use axum::response::IntoResponse as _;
use axum::routing::{get, post};
use axum::Router;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::{Level, Span};

pub use crate::ingest::Accepted;
pub use api::{ApiDoc, StreamSlots};
pub use application::Application;
pub use error::ApiError;
pub use probe_cache::ProbeCache;
pub use server::{bind, serve, ServerLimits};

use crate::auth::client_ip;
use crate::error_code::ErrorCode;
use crate::ingest::Intake;
use crate::store::Store;
use crate::telemetry::metrics as names;
use crate::verify::Registry;

/// Everything a handler may use. Dependencies are explicit here, never `Extension`s.
#[derive(Clone)]
pub struct AppState {
    /// Deliveries: registrations, routes, the group-commit writer, limits and clock.
    pub intake: Intake,
    pub store: Store,
    /// The Prometheus registry `/metrics` renders.
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    pub limits: RequestLimits,
    /// Set on SIGTERM: `/readyz` answers 503 so the load balancer stops sending, before the
    /// listener closes.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
    /// Load balancers whose X-Forwarded-For is believed for allow-lists.
    pub trusted_proxies: Arc<Vec<ipnet::IpNet>>,
    /// `/readyz` and `/metrics` read the database through this, at most once a second.
    pub probes: Arc<ProbeCache>,
    /// The event streams open now, by API key.
    pub streams: Arc<StreamSlots>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("intake", &self.intake)
            .finish_non_exhaustive()
    }
}

/// The application's routes with the full middleware stack, `/metrics` included.
pub fn router(state: AppState) -> Router {
    build_router(state, true)
}

/// The routes for the main listener when `/metrics` is served on `server.admin_listen` instead.
pub fn router_without_metrics(state: AppState) -> Router {
    build_router(state, false)
}

/// The admin listener's routes: metrics and the probes, nothing a caller from outside could use.
pub fn admin_router(state: AppState) -> Router {
    let routes = Router::new()
        .route("/healthz", get(health::live))
        .route("/readyz", get(health::ready))
        .route("/metrics", get(metrics::render))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .with_state(state);
    apply_middleware(routes)
}

fn build_router(state: AppState, with_metrics: bool) -> Router {
    // Deliveries and the query API are limited; health and metrics stay answerable under overload,
    // so a load balancer does not eject a replica that is merely busy.
    let registry = state.intake.registry.clone();
    let limited = Router::new()
        .route("/webhooks/{environment}", post(ingest::receive))
        .merge(api::routes())
        // Registered before the layers below wrap the routes: it applies to the routes so far.
        .method_not_allowed_fallback(method_not_allowed)
        // `Router::layer` wraps each route on its own: the limit below is one semaphore shared by
        // all of them (a per-route `concurrency_limit` would give every route its own slots).
        .layer(
            ServiceBuilder::new()
                // Overload and timeouts become 503 with Retry-After: Voltage retries instead of waiting.
                .layer(HandleErrorLayer::new(
                    move |uri: Uri, error: tower::BoxError| {
                        let registry = registry.clone();
                        async move { refuse(&registry.load(), &uri, error) }
                    },
                ))
                // Refuse at once when every slot is taken, instead of queueing past Voltage's deadline.
                .load_shed()
                .layer(GlobalConcurrencyLimitLayer::new(
                    state.limits.max_concurrent,
                ))
                // A request never runs longer than this; one cut off here was not acknowledged.
                .timeout(state.limits.request_timeout),
        );
    let mut routes = Router::new()
        .route("/healthz", get(health::live))
        .route("/readyz", get(health::ready));
    if with_metrics {
        routes = routes.route("/metrics", get(metrics::render));
    }
    let routes = routes
        .method_not_allowed_fallback(method_not_allowed)
        .merge(limited)
        .fallback(not_found)
        .with_state(state);
    apply_middleware(routes)
}

/// A refusal by the limits, counted like any other: deliveries in `voltage_webhook_requests_total`
/// (by environment when it is configured), API requests in `voltage_api_requests_refused_total`.
fn refuse(registry: &Registry, uri: &Uri, error: tower::BoxError) -> ApiError {
    let refusal = if error.is::<tower::load_shed::error::Overloaded>() {
        ApiError::new(
            ErrorCode::Overloaded,
            "too many requests in progress; retry later",
        )
    } else if error.is::<tower::timeout::error::Elapsed>() {
        ApiError::new(ErrorCode::Timeout, "the request took too long; retry later")
    } else {
        tracing::error!(error = %error, "request failed in the middleware stack");
        ApiError::new(ErrorCode::Internal, "internal error")
    };
    match uri.path().strip_prefix("/webhooks/") {
        Some(environment) => {
            // The path is attacker-chosen: only a configured environment becomes a label.
            let label = match registry.environment(environment) {
                Some(env) => env.name.clone(),
                None => "unknown".to_owned(),
            };
            ::metrics::counter!(names::WEBHOOK_REQUESTS, "environment" => label, "outcome" => refusal.code.as_str())
                .increment(1);
        }
        None => {
            ::metrics::counter!(names::API_REQUESTS_REFUSED, "outcome" => refusal.code.as_str())
                .increment(1)
        }
    }
    tracing::warn!(
        status = refusal.code.status(),
        code = refusal.code.as_str(),
        "request refused by the limits"
    );
    refusal
}

/// Concurrency and time limits of the request routes.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    pub max_concurrent: usize,
    pub request_timeout: std::time::Duration,
    /// Event streams one API key may hold open at once.
    pub max_streams_per_key: usize,
}

/// Credentials that must never reach a log line, even at DEBUG where headers are logged.
const SENSITIVE_HEADERS: [HeaderName; 4] = [
    header::AUTHORIZATION,
    header::COOKIE,
    HeaderName::from_static("x-api-key"),
    HeaderName::from_static("x-voltage-signature"),
];

/// The middleware order, outermost first.
fn apply_middleware(routes: Router) -> Router {
    routes.layer(
        ServiceBuilder::new()
            // A NUL byte can never be stored or matched (PostgreSQL text refuses it): refuse it as
            // the input error it is, before a query turns it into a 503 clients would retry.
            .layer(axum::middleware::from_fn(refuse_nul))
            // Mark credentials sensitive before any layer below can see (and log) them.
            .layer(SetSensitiveRequestHeadersLayer::new(SENSITIVE_HEADERS))
            // Give every request an id (or keep the caller's x-request-id).
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            // One span per request; the ingest handler fills in environment, webhook id, outcome.
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(request_span)
                    .on_request(|request: &Request, _: &Span| {
                        tracing::debug!(headers = ?request.headers(), "request");
                    })
                    .on_response(DefaultOnResponse::new().level(Level::INFO)),
            )
            // Echo the request id, so a Voltage delivery log entry can be matched to our logs.
            .layer(PropagateRequestIdLayer::x_request_id()),
    )
}

fn request_span(request: &Request) -> Span {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        request_id,
        environment = tracing::field::Empty,
        webhook_id = tracing::field::Empty,
        secret_index = tracing::field::Empty,
        api_key_id = tracing::field::Empty,
        outcome = tracing::field::Empty,
    )
}

/// 400 for a URL whose path or query carries a percent-encoded NUL byte.
async fn refuse_nul(request: Request, next: axum::middleware::Next) -> axum::response::Response {
    let uri = request.uri();
    let has_nul = |text: &str| text.as_bytes().windows(3).any(|w| w == b"%00");
    if has_nul(uri.path()) || uri.query().is_some_and(has_nul) {
        return ApiError::new(
            ErrorCode::InvalidParameter,
            "a path or query value contains a NUL byte (%00)",
        )
        .into_response();
    }
    next.run(request).await
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such route")
}

/// The route exists, the method does not: the documented error body; axum adds the `Allow` header.
async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "this route does not accept this method; the Allow header lists those it does",
    )
}

/// The socket peer, or the client behind trusted proxies (see `auth::client_ip`); `None` when it
/// cannot be told, which every allow-list refuses. Header lines are passed as bytes: dropping one
/// that is not visible ASCII would make the proxy itself look like the client.
pub(crate) async fn caller_address(parts: &mut Parts, state: &AppState) -> Option<IpAddr> {
    let ConnectInfo(peer) = ConnectInfo::<SocketAddr>::from_request_parts(parts, state)
        .await
        .ok()?;
    let forwarded: Vec<&[u8]> = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    client_ip(peer.ip(), &forwarded, &state.trusted_proxies)
}
