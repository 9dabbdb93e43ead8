//! The hand-off: the deliveries of an event this process just received go to this process's
//! dispatcher in the statement that stores the event, already claimed, when their handler can
//! start a call now.
//!
//! A delivery handed off costs no claim statement, no second row version and no NOTIFY: the row
//! is inserted `in_flight` under the writer's lease (attempt 1, started now), and the call starts
//! as soon as the commit is known. Nothing else changes: the lease outlasts the handler's timeout,
//! the outcome is recorded by the recorder, fenced on the token, and if this process dies before
//! or during the call the sweep makes the delivery due again (a `lease_expired` attempt), exactly
//! as for a claimed row. A handler without a free slot gets its row pending, claimed by a lane as
//! before: capacity first, so the lease never covers a queue.
//!
//! Group commit asks for slots before the batch's statement ([`Handoff::reserve`]) and gives the
//! committed rows their calls after it ([`Reservation::start`]); slots of events that turned out
//! duplicates, or of a batch that did not commit, are dropped, which frees them.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use super::attempt::{self, Finished};
use super::lane::{try_slot, Slot};
use super::Shared;
use crate::handlers::RegisteredHandler;
use crate::store::{self, Claimed, HandedOff, HandoffLease, OwnedEvent, Stored};
use crate::telemetry::metrics::DELIVERIES_HANDED_OFF;

/// A cheap handle for the ingest path; it hands off nothing until its dispatcher runs, nor once
/// the dispatcher is shutting down.
#[derive(Debug, Clone, Default)]
pub struct Handoff {
    running: Arc<OnceLock<Running>>,
}

/// What the running dispatcher lends the hand-off.
#[derive(Debug)]
pub(super) struct Running {
    pub shared: Arc<Shared>,
    pub handlers: HashMap<String, Arc<RegisteredHandler>>,
    /// Weak: the recorder stops once the lanes and attempts are gone, whoever holds a handle.
    pub finished: mpsc::WeakSender<Finished>,
    pub attempts: TaskTracker,
    pub shutdown: CancellationToken,
}

/// Slots reserved for one batch, per input event and handler, and the lease they go in under.
#[derive(Debug)]
pub struct Reservation {
    running: Arc<OnceLock<Running>>,
    token: Uuid,
    slots: Vec<Vec<Option<Slot>>>,
    claimed: Vec<Vec<bool>>,
}

impl Handoff {
    pub(super) fn attach(&self, running: Running) {
        if self.running.set(running).is_err() {
            tracing::warn!("a hand-off serves one dispatcher; the second one claims on its own");
        }
    }

    /// Whether a dispatcher takes hand-offs (it started and is not shutting down).
    pub fn is_running(&self) -> bool {
        self.running
            .get()
            .is_some_and(|r| !r.shutdown.is_cancelled())
    }

    /// A slot for every delivery of `events` whose handler can start a call now; `None` when
    /// there is none (or no dispatcher runs here), and the batch is written as before.
    pub fn reserve(&self, events: &[OwnedEvent]) -> Option<Reservation> {
        let running = self.running.get()?;
        if running.shutdown.is_cancelled() {
            return None;
        }
        let mut any = false;
        let slots: Vec<Vec<Option<Slot>>> = events
            .iter()
            .map(|event| {
                event
                    .handlers
                    .iter()
                    .map(|name| {
                        let handler = running.handlers.get(name)?;
                        let slot = try_slot(&handler.service, &running.shared.calls);
                        any |= slot.is_some();
                        slot
                    })
                    .collect()
            })
            .collect();
        any.then(|| Reservation {
            running: self.running.clone(),
            token: Uuid::new_v4(),
            claimed: slots
                .iter()
                .map(|s| s.iter().map(Option::is_some).collect())
                .collect(),
            slots,
        })
    }
}

impl Reservation {
    /// What the batch's statement needs: the lease and which deliveries go in claimed.
    pub fn handoff(&self) -> Option<store::Handoff<'_>> {
        let running = self.running.get()?;
        Some(store::Handoff {
            lease: HandoffLease {
                token: self.token,
                lease: running.shared.settings.lease,
                worker: &running.shared.worker,
            },
            claimed: &self.claimed,
        })
    }

    /// After the commit: starts the call of every delivery the batch inserted claimed. The
    /// other slots are dropped, and so freed.
    pub fn start(mut self, events: &[OwnedEvent], stored: &[Stored], handed_off: Vec<HandedOff>) {
        let Some(running) = self.running.get() else {
            return;
        };
        let Some(finished) = running.finished.upgrade() else {
            // The dispatcher stopped between reserve and commit: the leases expire and the sweep
            // of another dispatcher (or of the next start) makes the deliveries due again.
            tracing::warn!(
                count = handed_off.len(),
                "deliveries handed off after the dispatcher stopped"
            );
            return;
        };
        let position: HashMap<Uuid, usize> = stored
            .iter()
            .enumerate()
            .filter_map(|(at, s)| match s {
                Stored::New(id) => Some((*id, at)),
                Stored::Duplicate(_) => None,
            })
            .collect();
        for delivery in handed_off {
            let found = position.get(&delivery.event_id).and_then(|&at| {
                let event = &events[at];
                let nth = event.handlers.iter().position(|h| *h == delivery.handler)?;
                let slot = self.slots[at][nth].take()?;
                Some((event, slot))
            });
            let (Some((event, slot)), Some(handler)) =
                (found, running.handlers.get(&delivery.handler))
            else {
                tracing::error!(delivery_id = delivery.delivery_id, "a delivery handed off without its slot; the sweep takes it when its lease expires");
                continue;
            };
            metrics::counter!(DELIVERIES_HANDED_OFF, "handler" => handler.name.clone())
                .increment(1);
            let row = claimed(event, delivery);
            attempt::spawn(
                attempt::Attempt {
                    shared: running.shared.clone(),
                    handler: Arc::clone(handler),
                    row,
                    token: self.token,
                    slot,
                    finished: finished.clone(),
                },
                &running.attempts,
            );
        }
    }
}

/// The row a claim would have returned, from the event in memory.
fn claimed(event: &OwnedEvent, delivery: HandedOff) -> Claimed {
    Claimed {
        delivery_id: delivery.delivery_id,
        handler: delivery.handler,
        attempts: 1,
        next_attempt_at: delivery.received_at,
        event_id: delivery.event_id,
        environment: event.environment.clone(),
        event_type: event.event_type.clone(),
        event: event.event.clone(),
        payment_id: event.payment_id.clone(),
        source: event.origin.source().to_owned(),
        raw_body: event.raw_body.to_vec(),
        received_at: delivery.received_at,
    }
}
