//! One delivery, in the order the contract prescribes:
//!
//! environment → allow-list → content type → headers present, registration known, timestamp in its
//! window → bounded body → signature (no parsing before) → parse → event header and scope → dedup
//! key → one committed write → accepted. Everything that can be checked without the body is
//! checked before a byte of it is read, so an unauthenticated caller cannot make the service
//! buffer bodies without knowing a registration id. Every refusal writes nothing, except an
//! authentic body that is not an event: that one is quarantined.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::{header, HeaderMap};
use tracing::Span;
use uuid::Uuid;

use super::GroupCommit;
use crate::auth::within;
use crate::error_code::{ErrorCode, Refusal};
use crate::event::Routing;
use crate::event::{DedupKey, Payload};
use crate::store::{NewEvent, OwnedEvent, Quarantined, Store, Stored};
use crate::telemetry::metrics as names;
use crate::verify::{self, headers, Delivery, Environment, Registry, Verified, VerifyError};

/// The time source for the timestamp window; a fixed one lets tests replay recorded deliveries.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(Utc::now)
}

/// Limits applied to every delivery.
#[derive(Debug, Clone, Copy)]
pub struct IngestSettings {
    pub max_body_bytes: usize,
    pub tolerance_secs: u64,
    /// A body not fully received within this is refused (`body_timeout`): trickling clients are
    /// cut off.
    pub body_read_timeout: std::time::Duration,
}

/// What accepting a delivery needs: the registrations, the routes, the writer and the clock.
#[derive(Clone)]
pub struct Intake {
    /// Swapped whole on SIGHUP: each delivery verifies against one consistent snapshot.
    pub registry: Arc<arc_swap::ArcSwap<Registry>>,
    /// Which handlers each new event is enqueued for, in the event's own transaction.
    pub routing: Arc<Routing>,
    /// Where new events go: group commit in front of the store.
    pub writer: GroupCommit,
    /// Where authentic bodies that are not events are kept.
    pub store: Store,
    pub settings: IngestSettings,
    pub clock: Clock,
}

impl std::fmt::Debug for Intake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intake")
            .field("registry", &self.registry)
            .field("routing", &self.routing)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// A delivery as it arrived: what the transport knows before the body is read.
#[derive(Debug, Clone, Copy)]
pub struct Arrival<'a> {
    /// The environment named by the URL; attacker-chosen until it is found configured.
    pub environment: &'a str,
    /// The caller, as far as the trusted proxies tell.
    pub client: Option<IpAddr>,
    pub headers: &'a HeaderMap,
}

/// The answer to an accepted delivery.
#[derive(Debug, serde::Serialize)]
pub struct Accepted {
    /// `stored` for a new event, `duplicate` for one already committed earlier.
    pub status: &'static str,
    pub event_id: Uuid,
    /// When the writer had the commit: the start of the `answer` stage.
    #[serde(skip)]
    pub committed: tokio::time::Instant,
}

/// One stage of a delivery, in `voltage_webhook_stage_seconds{stage}`.
pub fn record_stage(name: &'static str, took: std::time::Duration) {
    metrics::histogram!(names::WEBHOOK_STAGE_SECONDS, "stage" => name).record(took.as_secs_f64());
}

impl Intake {
    /// Accepts one delivery. `read_body` reads at most the given number of bytes; it is called
    /// only once everything the headers establish has been checked, and is cut off after
    /// `body_read_timeout`. Returns after the event's transaction committed, never before.
    pub async fn accept<F, Fut>(
        &self,
        arrival: Arrival<'_>,
        read_body: F,
    ) -> Result<Accepted, Refusal>
    where
        F: FnOnce(usize) -> Fut,
        Fut: Future<Output = Result<Bytes, Refusal>>,
    {
        let registry = self.registry.load_full();
        let env = admit(&registry, &arrival)?;
        let unread = Delivery {
            webhook_id: header_text(arrival.headers, headers::WEBHOOK_ID),
            timestamp: header_text(arrival.headers, headers::TIMESTAMP),
            signature: header_text(arrival.headers, headers::SIGNATURE),
            body: &[],
        };
        if let Some(id) = unread.webhook_id {
            Span::current().record("webhook_id", truncate(id, 64));
        }
        let prechecked = verify::precheck(
            &registry,
            &env.name,
            &unread,
            (self.clock)(),
            self.settings.tolerance_secs,
        )?;
        let started = Instant::now();
        let body = tokio::time::timeout(
            self.settings.body_read_timeout,
            read_body(self.settings.max_body_bytes),
        )
        .await
        .map_err(|_| {
            Refusal::new(
                ErrorCode::BodyTimeout,
                "the request body did not arrive in time",
            )
        })??;
        record_stage("read_body", started.elapsed());

        let started = Instant::now();
        let verified = prechecked.check_signature(&body);
        record_verified(&env.name, started.elapsed(), &verified);
        let verified = verified?;
        self.store_event(env, arrival.headers, &body, &verified)
            .await
    }

    /// Parses, checks and commits a verified body; a body that is not an event is quarantined.
    async fn store_event(
        &self,
        env: &Environment,
        headers: &HeaderMap,
        body: &Bytes,
        verified: &Verified,
    ) -> Result<Accepted, Refusal> {
        let started = Instant::now();
        let payload = match Payload::parse(body) {
            Ok(payload) => payload,
            Err(e) => return Err(self.quarantine(&env.name, body, verified, e.into()).await),
        };
        payload.check_event_header(header_text(headers, headers::EVENT))?;
        payload.check_scope(env)?;

        let handlers = self
            .routing
            .matching(&env.name, &payload.event_type, &payload.event);
        let new = NewEvent {
            environment: &env.name,
            dedup_key: DedupKey::new(&env.name, &payload, body),
            payload: &payload,
            raw_body: body,
            verified,
            handlers: &handlers,
        };
        let owned = OwnedEvent::from_new(&new);
        record_stage("parse", started.elapsed());
        // Answered only after the batch holding this event committed; a failed batch is a 503.
        let started = Instant::now();
        let (stored, timings) = self
            .writer
            .submit_timed(owned)
            .await
            .map_err(|_| Refusal::unavailable())?;
        record_stage("batch_wait", timings.batch_wait);
        record_stage("write", timings.write);
        metrics::histogram!(names::WEBHOOK_WRITE_SECONDS, "environment" => env.name.clone())
            .record(started.elapsed().as_secs_f64());
        Ok(Accepted {
            status: match stored {
                Stored::New(_) => "stored",
                Stored::Duplicate(_) => "duplicate",
            },
            event_id: stored.event_id(),
            committed: timings.committed,
        })
    }

    /// Keeps an authentic but unreadable body; the refusal once it is kept, 503 if it could not be.
    async fn quarantine(
        &self,
        environment: &str,
        body: &[u8],
        verified: &Verified,
        refusal: Refusal,
    ) -> Refusal {
        let item = Quarantined {
            environment,
            raw_body: body,
            reason: &refusal.detail,
            verified,
        };
        match self.store.quarantine(&item).await {
            Ok(id) => {
                tracing::warn!(quarantine_id = %id, "verified body quarantined");
                refusal
            }
            Err(e) => {
                tracing::error!(error = %e, cause = ?std::error::Error::source(&e), "write did not commit");
                Refusal::unavailable()
            }
        }
    }
}

/// The environment, its allow-list and the content type: what is refused before any header of
/// the signature scheme is looked at.
fn admit<'r>(registry: &'r Registry, arrival: &Arrival<'_>) -> Result<&'r Environment, Refusal> {
    let environment = arrival.environment;
    let env = registry.environment(environment).ok_or_else(|| {
        Refusal::new(
            ErrorCode::UnknownEnvironment,
            format!("no environment named {environment:?}"),
        )
    })?;
    if !env.allow_ips.is_empty() && !within(&env.allow_ips, arrival.client) {
        return Err(Refusal::new(
            ErrorCode::IpNotAllowed,
            "deliveries for this environment are not accepted from this address",
        ));
    }
    check_content_type(arrival.headers)?;
    Ok(env)
}

/// The signature check's time, and which registration and secret position verified it.
fn record_verified(
    environment: &str,
    took: std::time::Duration,
    verified: &Result<Verified, VerifyError>,
) {
    record_stage("verify", took);
    metrics::histogram!(names::WEBHOOK_VERIFY_SECONDS, "environment" => environment.to_owned())
        .record(took.as_secs_f64());
    let Ok(verified) = verified else {
        return;
    };
    metrics::counter!(
        names::WEBHOOK_VERIFIED,
        "environment" => environment.to_owned(),
        "webhook_id" => verified.webhook_id.to_string(),
        "secret_index" => verified.secret_index.to_string()
    )
    .increment(1);
    Span::current().record("secret_index", verified.secret_index);
}

fn check_content_type(headers: &HeaderMap) -> Result<(), Refusal> {
    let essence = header_text(headers, header::CONTENT_TYPE.as_str())
        .and_then(|v| v.split(';').next())
        .map(str::trim);
    match essence {
        Some(t) if t.eq_ignore_ascii_case("application/json") => Ok(()),
        _ => Err(Refusal::new(
            ErrorCode::UnsupportedMediaType,
            "content-type must be application/json",
        )),
    }
}

/// A header's value as text; absent and non-text values alike are `None`.
pub fn header_text<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}
