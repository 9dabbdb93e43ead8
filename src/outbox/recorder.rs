//! The recorder: writes finished attempts in batches, one statement for every outcome that is
//! waiting (group commit: the completions of a claim land together), and keeps trying while the
//! database is away, so a known outcome is not lost to a blip and the handler is not called again
//! for it.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Notify};

use super::attempt::Finished;
use super::Shared;
use crate::store::{Completion, Next};

/// Outcomes written per statement at most.
const BATCH: usize = 512;

pub(super) async fn run(
    shared: Arc<Shared>,
    mut outcomes: mpsc::Receiver<Finished>,
    lanes: Vec<(String, Arc<Notify>)>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    while outcomes.recv_many(&mut batch, BATCH).await > 0 {
        let completions: Vec<Completion> = batch.iter().map(|f| f.completion.clone()).collect();
        let held = write(&shared, &completions).await;
        if let Ok(mut running) = shared.running.lock() {
            for c in &completions {
                running.remove(&c.delivery_id);
            }
        }
        let mut retried = HashSet::new();
        for f in batch.drain(..) {
            let id = f.completion.delivery_id;
            if !held.contains(&id) {
                tracing::warn!(
                    delivery_id = id,
                    "lease lost before the outcome was recorded; the attempt is in the history, the delivery's state is another worker's"
                );
            } else if matches!(f.completion.next, Next::RetryAfter(..)) {
                retried.insert(f.handler);
            }
        }
        // A retry is due at its backoff: the lane reads the due time from the database.
        for (name, signal) in &lanes {
            if retried.contains(name) {
                signal.notify_one();
            }
        }
    }
}

/// Writes until it succeeds or the outcomes' leases must have expired (the sweep owns them then).
async fn write(shared: &Shared, completions: &[Completion]) -> HashSet<i64> {
    let give_up = tokio::time::Instant::now() + shared.settings.lease;
    let mut pause = Duration::from_millis(50);
    loop {
        match shared.store.complete(completions).await {
            Ok(held) => return held.into_iter().collect(),
            Err(e) if tokio::time::Instant::now() + pause < give_up => {
                tracing::warn!(error = %e, cause = ?std::error::Error::source(&e), count = completions.len(), "recording outcomes failed; trying again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            Err(e) => {
                // The leases expire and the deliveries are attempted again: at least once.
                tracing::error!(error = %e, count = completions.len(), "recording outcomes failed; giving up on them");
                return HashSet::new();
            }
        }
    }
}
