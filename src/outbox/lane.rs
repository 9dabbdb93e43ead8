//! One handler's lane: wait until the handler can start a call, claim no more of its due
//! deliveries than it can start now, start them, and sleep until the next one is due.
//!
//! Capacity comes first, the claim second: a claimed row starts its call at once, so its lease
//! covers the call and no queue. Waiting for the handler's own capacity holds nothing another
//! handler needs; a `max_in_flight` permit is taken only once the handler is ready.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::FutureExt as _;
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;
use uuid::Uuid;

use super::attempt::{self, Finished};
use super::Shared;
use crate::handlers::{Handler, RegisteredHandler};
use crate::store::{ClaimRequest, Claimed};

/// Shortest wait when due rows exist but another dispatcher holds them (SKIP LOCKED).
const CONTENDED_WAIT: Duration = Duration::from_millis(10);

#[derive(Debug)]
pub(super) struct Lane {
    pub shared: Arc<Shared>,
    pub handler: Arc<RegisteredHandler>,
    /// Woken by NOTIFY, by the sweep, and by the recorder after it scheduled a retry.
    pub signal: Arc<Notify>,
    pub finished: mpsc::Sender<Finished>,
    pub attempts: TaskTracker,
    pub shutdown: CancellationToken,
}

/// A call that can start now: the handler's service, ready (its concurrency slot reserved), and
/// a `max_in_flight` permit. Dropping it gives both back.
#[derive(Debug)]
pub(super) struct Slot {
    pub service: Handler,
    pub _permit: OwnedSemaphorePermit,
}

/// Where the lane's next claim starts in its handler's due index: a little before the rows it
/// already took, and from the oldest once per poll interval.
///
/// From the oldest every time would read every dead index entry the claimed rows left behind
/// (they stay until VACUUM), so a claim at the end of a drained backlog would cost as much as the
/// backlog. But rows do not commit in the order of their due time: a new row is due at its
/// transaction's start, and of two group-commit batches the one that started first may commit
/// last. So a claim starts [`LATE_COMMIT`] before the latest due time taken, which catches such
/// rows at once, and once per poll interval from the oldest, which catches anything later still
/// (a long transaction, a claim of another dispatcher rolled back). A scan from the oldest moves
/// the cursor back to the rows it took, so the claims after it go on from there: old rows drain
/// at the claim rate, not a batch per poll interval.
#[derive(Debug)]
struct Cursor {
    from: Option<DateTime<Utc>>,
    full_scan_at: Instant,
    /// The claim in progress scans from the oldest.
    from_oldest: bool,
}

/// How far behind the latest due time taken a lane's claim starts: longer than a group-commit
/// batch's statement takes, short enough that the dead entries read again stay few.
const LATE_COMMIT: chrono::TimeDelta = chrono::TimeDelta::milliseconds(250);

impl Cursor {
    fn new() -> Self {
        Self {
            from: None,
            full_scan_at: Instant::now(),
            from_oldest: false,
        }
    }

    fn next(&mut self, poll: Duration) -> Option<DateTime<Utc>> {
        self.from_oldest = self.from.is_none() || self.full_scan_at.elapsed() >= poll;
        if self.from_oldest {
            self.full_scan_at = Instant::now();
            return None;
        }
        self.resume_from()
    }

    /// Where a scan that is not from the oldest starts.
    fn resume_from(&self) -> Option<DateTime<Utc>> {
        self.from.map(|from| from - LATE_COMMIT)
    }

    /// After a claim that took `rows`.
    fn claimed(&mut self, rows: &[Claimed]) {
        if let Some(last) = rows.iter().map(|r| r.next_attempt_at).max() {
            self.from = match self.from {
                Some(from) if !self.from_oldest => Some(from.max(last)),
                _ => Some(last),
            };
        }
    }
}

pub(super) async fn run(lane: Lane) {
    let settings = lane.shared.settings;
    let mut cursor = Cursor::new();
    loop {
        let slots = tokio::select! {
            slots = capacity(&lane.handler.service, &lane.shared.calls, settings.batch_size) => slots,
            () = lane.shutdown.cancelled() => return,
        };
        let (claimed, asked) = match slots {
            Ok(slots) => {
                let asked = slots.len();
                (claim_and_start(&lane, slots, &mut cursor).await, asked)
            }
            Err(e) => {
                tracing::warn!(handler = %lane.handler.name, error = %e, "handler not ready");
                (0, 0)
            }
        };
        if claimed > 0 && claimed == asked {
            continue; // more may be due right now
        }
        // Fewer rows than slots: every row due now was taken (a row committed since is announced
        // by its NOTIFY, which the signal keeps), so no second claim that would find nothing.
        let wait = idle_wait(&lane, cursor.resume_from()).await;
        tokio::select! {
            () = lane.signal.notified() => {}
            () = tokio::time::sleep(wait) => {}
            () = lane.shutdown.cancelled() => return,
        }
    }
}

/// One ready slot, waited for, then as many more as are free right now, up to `max`.
async fn capacity(
    service: &Handler,
    calls: &Arc<Semaphore>,
    max: usize,
) -> Result<Vec<Slot>, crate::handlers::HandlerError> {
    let first = service.clone().ready_oneshot().await?;
    let Ok(permit) = calls.clone().acquire_owned().await else {
        return Ok(Vec::new()); // never closed
    };
    let mut slots = vec![Slot {
        service: first,
        _permit: permit,
    }];
    while slots.len() < max {
        let Ok(permit) = calls.clone().try_acquire_owned() else {
            break;
        };
        match service.clone().ready_oneshot().now_or_never() {
            Some(Ok(ready)) => slots.push(Slot {
                service: ready,
                _permit: permit,
            }),
            _ => break,
        }
    }
    Ok(slots)
}

/// Claims as many due rows as there are slots and starts a call in each; returns how many.
async fn claim_and_start(lane: &Lane, slots: Vec<Slot>, cursor: &mut Cursor) -> usize {
    let token = Uuid::new_v4();
    let request = ClaimRequest {
        handler: &lane.handler.name,
        from: cursor.next(lane.shared.settings.poll_interval),
        limit: i64::try_from(slots.len()).unwrap_or(i64::MAX),
        lease: lane.shared.settings.lease,
        token,
        worker: &lane.shared.worker,
    };
    let claimed = match lane.shared.store.claim(&request).await {
        Ok(claimed) => claimed,
        Err(e) => {
            tracing::warn!(handler = %lane.handler.name, error = %e, cause = ?std::error::Error::source(&e), "claiming deliveries failed");
            return 0;
        }
    };
    let count = claimed.len();
    cursor.claimed(&claimed);
    if let Ok(mut running) = lane.shared.running.lock() {
        running.extend(claimed.iter().map(|row| row.delivery_id));
    }
    // Slots left over (fewer rows were due) are dropped here, freeing their capacity.
    for (row, slot) in claimed.into_iter().zip(slots) {
        lane.attempts.spawn(attempt::run(attempt::Attempt {
            shared: lane.shared.clone(),
            handler: Arc::clone(&lane.handler),
            row,
            token,
            slot,
            finished: lane.finished.clone(),
        }));
    }
    count
}

/// How long to sleep when nothing was due: until the handler's next delivery is due, at most
/// the poll interval.
async fn idle_wait(lane: &Lane, from: Option<DateTime<Utc>>) -> Duration {
    let poll = lane.shared.settings.poll_interval;
    match lane
        .shared
        .store
        .next_due_in(&lane.handler.name, from)
        .await
    {
        Ok(Some(seconds)) if seconds <= 0.0 => CONTENDED_WAIT,
        Ok(Some(seconds)) => Duration::try_from_secs_f64(seconds)
            .unwrap_or(poll)
            .min(poll),
        Ok(None) => poll,
        Err(e) => {
            tracing::warn!(handler = %lane.handler.name, error = %e, "reading the next due time failed");
            poll
        }
    }
}
