//! Group commit: concurrent requests share transactions. Writers gather up to `max_events` queued
//! events, or wait at most `max_wait` for more, then write them with one multi-row statement and
//! one commit ([`Store::insert_batch`]) and answer each request with its own outcome. Nobody is
//! answered before the commit; every request of a failed batch gets an error (and so a 503).
//!
//! Several writers run at once, so one batch gathers while another commits.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot, Mutex};
use tokio::time::Instant;

use crate::store::{OwnedEvent, Store, Stored};

#[derive(Debug, Clone, Copy)]
pub struct GroupCommitSettings {
    /// Events per transaction at most (1: every request its own transaction).
    pub max_events: usize,
    /// How long a batch waits for more events once it has one.
    pub max_wait: Duration,
    /// Batches in progress at once (each holds one connection while it writes).
    pub writers: usize,
}

/// The batch this request was in did not commit; the cause is logged once by the writer.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the batch holding this event did not commit")]
pub struct BatchFailed;

struct Job {
    event: OwnedEvent,
    queued: Instant,
    reply: oneshot::Sender<Result<(Stored, CommitTimings), BatchFailed>>,
}

/// Where an event's time in group commit went (the per-stage latency of a delivery).
#[derive(Debug, Clone, Copy)]
pub struct CommitTimings {
    /// From [`GroupCommit::submit`] until its batch's statement started: the queue and the
    /// gathering of the batch.
    pub batch_wait: Duration,
    /// The batch's statement, commit included.
    pub write: Duration,
    /// When the writer had the commit's answer: the caller measures from here how long it took to
    /// be woken up and answer.
    pub committed: Instant,
}

/// The queue in front of the writers; cheap to clone. Writers stop when every clone is dropped.
#[derive(Debug, Clone)]
pub struct GroupCommit {
    queue: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").finish_non_exhaustive()
    }
}

impl GroupCommit {
    /// Starts the writers on the current runtime.
    pub fn start(store: Store, settings: GroupCommitSettings) -> Self {
        let max_events = settings.max_events.max(1);
        let (queue, receiver) = mpsc::channel(max_events * settings.writers.max(1) * 2);
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..settings.writers.max(1) {
            tokio::spawn(write_batches(store.clone(), receiver.clone(), settings));
        }
        Self { queue }
    }

    /// Queues the event and waits for its batch's commit.
    pub async fn submit(&self, event: OwnedEvent) -> Result<Stored, BatchFailed> {
        Ok(self.submit_timed(event).await?.0)
    }

    /// [`GroupCommit::submit`], with where the time went.
    pub async fn submit_timed(
        &self,
        event: OwnedEvent,
    ) -> Result<(Stored, CommitTimings), BatchFailed> {
        let (reply, outcome) = oneshot::channel();
        let queued = Instant::now();
        self.queue
            .send(Job {
                event,
                queued,
                reply,
            })
            .await
            .map_err(|_| BatchFailed)?;
        outcome.await.map_err(|_| BatchFailed)?
    }
}

async fn write_batches(
    store: Store,
    receiver: Arc<Mutex<mpsc::Receiver<Job>>>,
    settings: GroupCommitSettings,
) {
    loop {
        // One writer gathers at a time; the others are committing meanwhile.
        let jobs = {
            let mut receiver = receiver.lock().await;
            match gather(&mut receiver, settings).await {
                Some(jobs) => jobs,
                None => return,
            }
        };
        let started = Instant::now();
        let (events, replies): (Vec<_>, Vec<_>) = jobs
            .into_iter()
            .map(|j| {
                (
                    j.event,
                    (j.reply, started.saturating_duration_since(j.queued)),
                )
            })
            .unzip();
        match store.insert_batch(&events).await {
            Ok(outcomes) => {
                let committed = Instant::now();
                let write = committed - started;
                for ((reply, batch_wait), outcome) in replies.into_iter().zip(outcomes) {
                    let timings = CommitTimings {
                        batch_wait,
                        write,
                        committed,
                    };
                    // The caller may have gone; the event is stored.
                    let _ = reply.send(Ok((outcome, timings)));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, cause = ?std::error::Error::source(&e), events = events.len(), "batch did not commit");
                for (reply, _) in replies {
                    let _ = reply.send(Err(BatchFailed));
                }
            }
        }
    }
}

/// The first job waits as long as it takes; then up to `max_events`, or until `max_wait` passes.
async fn gather(
    receiver: &mut mpsc::Receiver<Job>,
    settings: GroupCommitSettings,
) -> Option<Vec<Job>> {
    let first = receiver.recv().await?;
    let deadline = Instant::now() + settings.max_wait;
    let mut jobs = vec![first];
    while jobs.len() < settings.max_events {
        match receiver.try_recv() {
            Ok(job) => jobs.push(job),
            Err(TryRecvError::Disconnected) => break,
            Err(TryRecvError::Empty) => {
                match tokio::time::timeout_at(deadline, receiver.recv()).await {
                    Ok(Some(job)) => jobs.push(job),
                    Ok(None) | Err(_) => break,
                }
            }
        }
    }
    Some(jobs)
}
