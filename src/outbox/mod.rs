//! The dispatcher: one lane per handler claims that handler's due deliveries under a lease, only
//! as many as the handler can start calling now, calls them through its tower stack, and hands
//! each outcome to one recorder that writes them in batches (succeeded, retry at t + backoff, or
//! dead, plus a row of attempt history each).
//!
//! Any number of dispatchers run against one database (inside `serve` or as `dispatch`
//! processes). PostgreSQL's row locks and leases keep a delivery in at most one call at a time:
//! a row is claimed only when a call can start at once, so its lease covers the call and nothing
//! else; the lease outlasts the handler's timeout (config checks it); and a separate sweep makes
//! expired leases due again, never those this process is still running or recording. The database,
//! not this process, holds every delivery's state, so a crash loses nothing. NOTIFY only shortens
//! the wait: polling finds everything a lost notification would have.

mod attempt;
mod backoff;
mod lane;
mod recorder;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use backoff::{decide, Decision};

use crate::handlers::HandlerSet;
use crate::store::Store;

#[derive(Debug, Clone, Copy)]
pub struct DispatchSettings {
    /// Most rows taken per claim (a handler never gets more than it has free capacity for).
    pub batch_size: usize,
    /// How long a claim holds a row. Must exceed every handler's timeout: the lease starts when
    /// the call starts, and a lease that expired while the call still ran would let a second
    /// worker start the same delivery.
    pub lease: Duration,
    /// The longest wait between claims when no notification arrives, and the sweep's period.
    pub poll_interval: Duration,
    /// Handler calls running at once in this process, over all handlers.
    pub max_in_flight: usize,
    /// On shutdown, how long running handler calls may take to finish.
    pub shutdown_deadline: Duration,
}

impl Default for DispatchSettings {
    fn default() -> Self {
        Self {
            batch_size: 64,
            lease: Duration::from_secs(60),
            poll_interval: Duration::from_millis(500),
            max_in_flight: 128,
            shutdown_deadline: Duration::from_secs(25),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Dispatcher {
    store: Store,
    handlers: Arc<HandlerSet>,
    settings: DispatchSettings,
}

/// What the lanes, the attempts, the recorder and the sweep of one dispatcher share.
#[derive(Debug)]
struct Shared {
    store: Store,
    settings: DispatchSettings,
    /// `host:pid:dispatcher`, written into every attempt this dispatcher makes.
    worker: String,
    /// Deliveries this dispatcher is calling or has yet to record: the sweep never takes these
    /// back, so a worker never re-claims its own delivery.
    running: Mutex<HashSet<i64>>,
    /// `max_in_flight`: one permit per running call.
    calls: Arc<Semaphore>,
}

impl Shared {
    fn running_ids(&self) -> Vec<i64> {
        self.running
            .lock()
            .map(|r| r.iter().copied().collect())
            .unwrap_or_default()
    }
}

impl Dispatcher {
    pub fn new(store: Store, handlers: Arc<HandlerSet>, settings: DispatchSettings) -> Self {
        Self {
            store,
            handlers,
            settings,
        }
    }

    /// Runs until `shutdown` is cancelled, then waits for the calls already started and records
    /// their outcomes.
    pub async fn run(self, shutdown: CancellationToken) {
        let handlers = self.handlers.all();
        if handlers.is_empty() {
            tracing::info!("no handlers configured: the dispatcher has nothing to do");
            return;
        }
        let shared = Arc::new(Shared {
            store: self.store.clone(),
            settings: self.settings,
            worker: worker_name(),
            running: Mutex::default(),
            calls: Arc::new(Semaphore::new(self.settings.max_in_flight)),
        });
        let signals: Vec<(String, Arc<Notify>)> = handlers
            .iter()
            .map(|h| (h.name.clone(), Arc::new(Notify::new())))
            .collect();
        let wakes: Vec<Arc<Notify>> = signals.iter().map(|(_, n)| n.clone()).collect();
        let listener = tokio::spawn(self.store.listen_for_work(wakes.clone(), shutdown.clone()));
        let (finished, outcomes) = mpsc::channel(4 * self.settings.max_in_flight.max(64));
        let recorder = tokio::spawn(recorder::run(shared.clone(), outcomes, signals.clone()));
        let sweep = tokio::spawn(sweep(shared.clone(), wakes, shutdown.clone()));
        let attempts = TaskTracker::new();
        let lanes: Vec<_> = handlers
            .into_iter()
            .zip(signals)
            .map(|(handler, (_, signal))| {
                tokio::spawn(lane::run(lane::Lane {
                    shared: shared.clone(),
                    handler: Arc::new(handler),
                    signal,
                    finished: finished.clone(),
                    attempts: attempts.clone(),
                    shutdown: shutdown.clone(),
                }))
            })
            .collect();
        drop(finished);
        for lane in lanes {
            let _ = lane.await;
        }
        listener.abort();
        finish(attempts, recorder, self.settings.shutdown_deadline).await;
        let _ = sweep.await;
    }
}

/// After the lanes stopped: waits for the calls already running and for the recorder to write
/// their outcomes, both bounded by the shutdown deadline.
async fn finish(
    attempts: TaskTracker,
    recorder: tokio::task::JoinHandle<()>,
    shutdown_deadline: Duration,
) {
    attempts.close();
    let deadline = tokio::time::Instant::now() + shutdown_deadline;
    if tokio::time::timeout_at(deadline, attempts.wait())
        .await
        .is_err()
    {
        // Their leases expire and other workers take them: at least once, never lost.
        tracing::warn!(
            "handler calls still running at the shutdown deadline; their leases will expire"
        );
    }
    // The recorder ends once every attempt has handed over its outcome and it wrote them.
    if tokio::time::timeout_at(deadline + Duration::from_secs(2), recorder)
        .await
        .is_err()
    {
        tracing::warn!(
            "outcomes still unrecorded at the shutdown deadline; their leases will expire"
        );
    }
}

/// Every poll interval: expired leases (a worker died) become due again, and the lanes are woken.
async fn sweep(shared: Arc<Shared>, wakes: Vec<Arc<Notify>>, shutdown: CancellationToken) {
    const BATCH: i64 = 1000;
    loop {
        tokio::select! {
            () = tokio::time::sleep(shared.settings.poll_interval) => {}
            () = shutdown.cancelled() => return,
        }
        match shared
            .store
            .sweep_expired(&shared.running_ids(), BATCH)
            .await
        {
            Ok(0) => {}
            Ok(swept) => {
                tracing::warn!(
                    swept,
                    "deliveries whose worker's lease expired are due again"
                );
                wakes.iter().for_each(|w| w.notify_one());
            }
            Err(e) => {
                tracing::warn!(error = %e, cause = ?std::error::Error::source(&e), "sweeping expired leases failed")
            }
        }
    }
}

/// `host:pid:` and a short random id, so two dispatchers of one process tell apart too.
fn worker_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into());
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}:{}:{}", std::process::id(), &id[..8])
}
