//! Reconciliation: Voltage's webhooks are not the source of truth, so each environment with a
//! Voltage API key is swept periodically, newest payments first, and every state the webhooks
//! never delivered becomes a synthetic event (`source = 'reconciliation'`) through the same
//! storage, dedup and fan-out as a webhook event.
//!
//! A gap is a payment never seen, or one whose API state is newer than the newest stored. The
//! synthetic event carries the webhook event Voltage would have sent for that state, so the dedup
//! key is the same and a webhook arriving later is a duplicate. Only states whose webhook event is
//! certain are synthesized: terminal ones (a send's `completed`/`failed`, a receive's `completed`,
//! `expired`, `failed`) and an unseen receive still `generating`/`receiving` (`generated`). A newer
//! in-progress state of a payment already seen (a partial receipt, a refreshed invoice) cannot be
//! named from the API alone: it is counted as `unnamed` and left to its webhook.

mod run;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, SubsecRound as _, Utc};
use serde_json::{json, Value};

pub use crate::voltage_api::{ApiError, ApiKey, Page, Target, Transport, VoltageApi};
pub use run::run;

use crate::event::Payload;
use crate::event::Routing;
use crate::store::{KnownState, OwnedEvent, Store, StoreError, Stored};
use crate::telemetry::metrics as names;

#[derive(Debug, Clone)]
pub struct ReconcileSettings {
    pub interval: Duration,
    pub page_size: u32,
    /// Paging stops at payments created before this long ago (`None`: the whole history).
    pub lookback: Option<Duration>,
    /// A sweep that needs more pages than this is cut short and fails: a bound on what a broken
    /// or hostile payments API can make one sweep cost.
    pub max_pages: u32,
}

/// What one sweep saw and did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SweepReport {
    pub pages: u32,
    pub payments: u64,
    /// States the webhooks never delivered.
    pub gaps: u64,
    /// Gaps stored as new synthetic events.
    pub stored: u64,
    /// Gaps a webhook filled between our comparison and our write.
    pub duplicates: u64,
    /// Newer in-progress states no webhook event can be named for (see the module docs).
    pub unnamed: u64,
    /// Payments the API returned without an id, status, direction or `updated_at`.
    pub unreadable: u64,
    /// Payments naming another organization or environment than the key's: never stored.
    pub foreign: u64,
}

#[derive(Debug)]
pub enum Sweep {
    Done(SweepReport),
    /// Another replica is sweeping this environment now.
    Busy,
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The sweep could not reach its end: what it stored is kept, but it is not complete.
    #[error("the sweep was cut short after {pages} pages: {reason}")]
    CutShort { pages: u32, reason: CutShort },
}

/// Why a sweep stopped before the end of the payments list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CutShort {
    #[error("the payments API returned a cursor it had returned before in this sweep (a cycle)")]
    CursorCycle,
    #[error("reconcile.max_pages_per_sweep reached before the end of the list")]
    TooManyPages,
}

#[derive(Debug, Clone)]
pub struct Reconciler {
    pub store: Store,
    pub api: VoltageApi,
    /// Which handlers a new synthetic event is enqueued for, as for a webhook event.
    pub routing: Arc<Routing>,
    pub settings: ReconcileSettings,
}

fn cut_short(target: &Target, report: &SweepReport, reason: CutShort) -> ReconcileError {
    tracing::warn!(environment = %target.environment, pages = report.pages, stored = report.stored, %reason, "reconciliation sweep cut short; what it stored is kept");
    ReconcileError::CutShort {
        pages: report.pages,
        reason,
    }
}

/// The advisory lock that makes one replica at a time sweep `environment`.
pub fn lock_name(environment: &str) -> String {
    format!("voltage-webhooks/reconcile/{environment}")
}

impl Reconciler {
    /// One sweep of `target`, unless another replica holds its lock.
    pub async fn sweep(&self, target: &Target) -> Result<Sweep, ReconcileError> {
        let Some(lock) = self
            .store
            .try_session_lock(&lock_name(&target.environment))
            .await?
        else {
            return Ok(Sweep::Busy);
        };
        let started = Instant::now();
        let result = self.sweep_locked(target).await;
        lock.release().await;
        let environment = target.environment.clone();
        let report = result.inspect_err(|_| {
            // A failed or cut-short sweep is counted, and the last-complete gauge stays where it was.
            metrics::counter!(names::RECONCILE_FAILURES, "environment" => environment.clone())
                .increment(1);
        })?;
        metrics::histogram!(names::RECONCILE_SWEEP_SECONDS, "environment" => environment.clone())
            .record(started.elapsed().as_secs_f64());
        metrics::gauge!(names::RECONCILE_LAST_COMPLETE, "environment" => environment)
            .set(Utc::now().timestamp() as f64);
        Ok(Sweep::Done(report))
    }

    async fn sweep_locked(&self, target: &Target) -> Result<SweepReport, ReconcileError> {
        let horizon = self
            .settings
            .lookback
            .and_then(|lookback| chrono::Duration::from_std(lookback).ok())
            .map(|lookback| Utc::now() - lookback);
        let mut report = SweepReport::default();
        let mut cursor: Option<String> = None;
        let mut seen = std::collections::HashSet::new();
        loop {
            if report.pages >= self.settings.max_pages {
                return Err(cut_short(target, &report, CutShort::TooManyPages));
            }
            let page = self
                .api
                .list_payments(target, cursor.as_deref(), self.settings.page_size)
                .await?;
            report.pages += 1;
            report.payments += page.payments.len() as u64;
            let past_horizon = self
                .reconcile_page(target, &page, horizon, &mut report)
                .await?;
            match page.next_cursor {
                // A cursor seen before (the same one again, or one back to an earlier page) would
                // page forever: the sweep is cut short, and reported as the failure it is.
                Some(next) if !past_horizon && !seen.insert(next.clone()) => {
                    return Err(cut_short(target, &report, CutShort::CursorCycle));
                }
                Some(next) if !past_horizon => cursor = Some(next),
                _ => break,
            }
        }
        Ok(report)
    }

    /// Compares one page with the store and writes its gaps in one batch. Returns whether the
    /// page reached payments older than the horizon (the list is newest first: stop paging).
    async fn reconcile_page(
        &self,
        target: &Target,
        page: &Page,
        horizon: Option<DateTime<Utc>>,
        report: &mut SweepReport,
    ) -> Result<bool, ReconcileError> {
        let (states, past_horizon) = ours_within(target, page, horizon, report);
        let ids: Vec<String> = states.iter().map(|s| s.id.to_owned()).collect();
        let known = self
            .store
            .latest_payment_states(&target.environment, &ids)
            .await?;
        let mut events = Vec::new();
        for state in &states {
            let seen = known.get(state.id);
            if !state.is_newer_than(seen) {
                continue;
            }
            report.gaps += 1;
            let Some(event) = state.webhook_event(seen.is_some()) else {
                report.unnamed += 1;
                continue;
            };
            if let Some(event) = self.synthesize(target, state, event) {
                events.push(event);
            }
        }
        self.store_gaps(target, &events, report).await?;
        Ok(past_horizon)
    }

    /// Writes the synthesized events in one batch and counts what was new.
    async fn store_gaps(
        &self,
        target: &Target,
        events: &[OwnedEvent],
        report: &mut SweepReport,
    ) -> Result<(), ReconcileError> {
        if events.is_empty() {
            return Ok(());
        }
        for outcome in self.store.insert_batch(events).await? {
            match outcome {
                Stored::New(_) => report.stored += 1,
                Stored::Duplicate(_) => report.duplicates += 1,
            }
        }
        metrics::counter!(names::RECONCILE_GAPS, "environment" => target.environment.clone())
            .increment(events.len() as u64);
        Ok(())
    }

    /// The body Voltage would have delivered for this state, as an event ready for the store.
    fn synthesize(&self, target: &Target, state: &ApiState<'_>, event: &str) -> Option<OwnedEvent> {
        let body = json!({
            "type": state.direction,
            "detail": { "event": event, "data": state.payment },
        });
        let raw = Bytes::from(serde_json::to_vec(&body).ok()?);
        let payload = Payload::parse(&raw).ok()?;
        let handlers =
            self.routing
                .matching(&target.environment, &payload.event_type, &payload.event);
        tracing::info!(environment = %target.environment, payment_id = state.id, event_type = state.direction, event, status = state.status, "reconciliation: a state the webhooks did not deliver");
        Some(OwnedEvent::reconciled(
            &target.environment,
            &payload,
            raw,
            handlers,
        ))
    }
}

/// A payment as the API returned it, with the fields the comparison needs.
#[derive(Debug)]
struct ApiState<'a> {
    payment: &'a Value,
    id: &'a str,
    direction: &'a str,
    status: &'a str,
    updated_at: DateTime<Utc>,
    created_at: Option<DateTime<Utc>>,
}

/// The page's readable payments of `target`'s environment, newer than `horizon`; and whether the
/// page reached past the horizon (the list is newest first: stop paging).
fn ours_within<'p>(
    target: &Target,
    page: &'p Page,
    horizon: Option<DateTime<Utc>>,
    report: &mut SweepReport,
) -> (Vec<ApiState<'p>>, bool) {
    let mut past_horizon = false;
    let states = page
        .payments
        .iter()
        .filter_map(|payment| {
            let state = ApiState::read(payment);
            report.unreadable += u64::from(state.is_none());
            state
        })
        .filter(|state| {
            let old = horizon.is_some_and(|h| state.created_at.is_some_and(|c| c < h));
            past_horizon |= old;
            !old
        })
        .filter(|state| {
            let ours = state.belongs_to(target);
            report.foreign += u64::from(!ours);
            ours
        })
        .collect();
    (states, past_horizon)
}

impl<'a> ApiState<'a> {
    fn read(payment: &'a Value) -> Option<Self> {
        let text = |key: &str| payment.get(key).and_then(Value::as_str);
        let time = |key: &str| {
            text(key)
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                // Stored (and keyed) to the microsecond, so compared to the microsecond.
                .map(|t| t.with_timezone(&Utc).trunc_subsecs(6))
        };
        Some(Self {
            payment,
            id: text("id")?,
            direction: text("direction").filter(|d| matches!(*d, "send" | "receive"))?,
            status: text("status")?,
            updated_at: time("updated_at")?,
            created_at: time("created_at"),
        })
    }

    /// The key is scoped to one environment, but a payment naming another (or, as a webhook body
    /// of it would be refused at ingest, naming none) is never stored here: ingest's scope rule.
    fn belongs_to(&self, target: &Target) -> bool {
        let id = |key: &str| self.payment.get(key).and_then(Value::as_str);
        crate::event::check_scope_ids(
            self.direction,
            (id("organization_id"), id("environment_id")),
            (target.organization_id, target.environment_id),
        )
        .is_ok()
    }

    fn is_newer_than(&self, seen: Option<&KnownState>) -> bool {
        let Some(seen) = seen else { return true };
        match seen.updated_at {
            None => true,
            Some(at) if self.updated_at > at => true,
            Some(at) => self.updated_at == at && seen.status.as_deref() != Some(self.status),
        }
    }

    /// The webhook event Voltage sends for this state, when it is certain.
    fn webhook_event(&self, seen: bool) -> Option<&'static str> {
        match (self.direction, self.status) {
            ("send", "completed") => Some("succeeded"),
            ("send", "failed") | ("receive", "failed") => Some("failed"),
            ("receive", "completed") => Some("completed"),
            ("receive", "expired") => Some("expired"),
            ("receive", "generating" | "receiving") if !seen => Some("generated"),
            _ => None,
        }
    }
}
