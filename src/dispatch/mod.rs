//! The dispatcher: claims due outbox rows under a lease, calls each row's handler through its
//! tower stack, and records the outcome (succeeded, retry at t + backoff, or dead).
//!
//! Any number of dispatchers run against one database (inside `serve` or as `dispatch`
//! processes). PostgreSQL's row locks and leases keep a delivery in at most one worker at a time;
//! the database, not this process, holds every delivery's state, so a crash loses nothing.
//! NOTIFY only shortens the wait: polling finds everything a lost notification would have.

mod backoff;
mod wake;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::{Service, ServiceExt as _};
use uuid::Uuid;

pub use backoff::{Decision, RetryPolicy};

use crate::handlers::{HandlerRequest, HandlerSet};
use crate::store::{ClaimRequest, Claimed, Store, StoreError};

#[derive(Debug, Clone, Copy)]
pub struct DispatchSettings {
    /// Rows taken per claim.
    pub batch_size: usize,
    /// How long a claim holds a row. Must exceed every handler's timeout: a lease that expires
    /// while the call is still running lets a second worker start the same delivery.
    pub lease: Duration,
    /// The longest wait between claims when no notification arrives.
    pub poll_interval: Duration,
    /// Attempts running at once in this process, over all handlers.
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

impl Dispatcher {
    pub fn new(store: Store, handlers: Arc<HandlerSet>, settings: DispatchSettings) -> Self {
        Self {
            store,
            handlers,
            settings,
        }
    }

    /// Runs until `shutdown` is cancelled, then waits for the attempts already started.
    pub async fn run(self, shutdown: CancellationToken) {
        let names = self.handlers.names();
        if names.is_empty() {
            tracing::info!("no handlers configured: the dispatcher has nothing to do");
            return;
        }
        let wake = Arc::new(Notify::new());
        let listener = tokio::spawn(wake::listen(
            self.store.pool().clone(),
            wake.clone(),
            shutdown.clone(),
        ));
        let permits = Arc::new(Semaphore::new(self.settings.max_in_flight));
        let attempts = TaskTracker::new();

        while !shutdown.is_cancelled() {
            let free = permits.available_permits().min(self.settings.batch_size);
            let full_batch = if free == 0 {
                false
            } else {
                self.claim_and_start(&names, free, &permits, &attempts, &shutdown)
                    .await
                    == free
            };
            if full_batch {
                continue; // more may be due right now
            }
            tokio::select! {
                () = wake.notified() => {}
                () = tokio::time::sleep(self.settings.poll_interval) => {}
                () = shutdown.cancelled() => {}
            }
        }
        listener.abort();
        attempts.close();
        if tokio::time::timeout(self.settings.shutdown_deadline, attempts.wait())
            .await
            .is_err()
        {
            // Their leases expire and other workers take them: at least once, never lost.
            tracing::warn!(
                "handler calls still running at the shutdown deadline; their leases will expire"
            );
        }
    }

    /// Claims up to `limit` rows and starts an attempt for each; returns how many it claimed.
    async fn claim_and_start(
        &self,
        names: &[String],
        limit: usize,
        permits: &Arc<Semaphore>,
        attempts: &TaskTracker,
        shutdown: &CancellationToken,
    ) -> usize {
        let token = Uuid::new_v4();
        let request = ClaimRequest {
            handlers: names,
            limit: i64::try_from(limit).unwrap_or(i64::MAX),
            lease: self.settings.lease,
            token,
        };
        let claimed = match self.store.claim(&request).await {
            Ok(claimed) => claimed,
            Err(e) => {
                tracing::warn!(error = %e, cause = ?std::error::Error::source(&e), "claiming deliveries failed");
                return 0;
            }
        };
        let count = claimed.len();
        for row in claimed {
            // The loop claims no more rows than there are free permits, and only it takes them.
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                break;
            };
            attempts.spawn(self.clone().attempt(row, token, permit, shutdown.clone()));
        }
        count
    }

    /// One attempt of one delivery, and its outcome recorded under the claim's token.
    async fn attempt(
        self,
        row: Claimed,
        token: Uuid,
        _permit: OwnedSemaphorePermit,
        shutdown: CancellationToken,
    ) {
        let Some(handler) = self.handlers.get(&row.handler) else {
            return; // unreachable: only rows of known handlers are claimed
        };
        let attempt = u32::try_from(row.attempts).unwrap_or(u32::MAX);
        let delivery_id = row.delivery_id;
        let result = if attempt > handler.retry.max_attempts {
            // Claimed again after its worker vanished on the last allowed attempt.
            Err(crate::handlers::HandlerError::permanent(format!(
                "lease lost on attempt {}; no attempts left",
                attempt - 1
            )))
        } else {
            let mut service = handler.service.clone();
            let ready = tokio::select! {
                ready = service.ready() => ready,
                // Still waiting for the handler's concurrency limit: not started, so hand it back.
                () = shutdown.cancelled() => {
                    log_recorded(delivery_id, self.store.release(delivery_id, token).await);
                    return;
                }
            };
            match ready {
                Ok(ready) => ready.call(request_of(row, attempt)).await,
                Err(e) => Err(e),
            }
        };
        let recorded = match result {
            Ok(()) => self.store.succeed(delivery_id, token).await,
            Err(error) => match handler.retry.decide(attempt, &error) {
                Decision::RetryAfter(delay) => {
                    tracing::info!(delivery_id, attempt, delay_ms = delay.as_millis() as u64, error = %error, "delivery will be retried");
                    self.store
                        .retry_later(delivery_id, token, delay, &error.to_string())
                        .await
                }
                Decision::Dead(reason) => {
                    tracing::warn!(delivery_id, attempt, handler = %handler.name, %reason, "delivery dead-lettered");
                    metrics::counter!(crate::telemetry::metrics::DELIVERIES_DEAD_TOTAL, "handler" => handler.name.clone())
                        .increment(1);
                    self.store.dead_letter(delivery_id, token, &reason).await
                }
            },
        };
        log_recorded(delivery_id, recorded);
    }
}

fn log_recorded(delivery_id: i64, recorded: Result<bool, StoreError>) {
    match recorded {
        Ok(true) => {}
        Ok(false) => tracing::warn!(
            delivery_id,
            "lease lost before the outcome was recorded; another worker owns it"
        ),
        // The lease will expire and the delivery will be attempted again: at least once, not lost.
        Err(e) => tracing::error!(delivery_id, error = %e, "recording the outcome failed"),
    }
}

fn request_of(row: Claimed, attempt: u32) -> HandlerRequest {
    HandlerRequest {
        event_id: row.event_id,
        delivery_id: row.delivery_id,
        environment: row.environment,
        event_type: row.event_type,
        event: row.event,
        payment_id: row.payment_id,
        source: row.source,
        payload: serde_json::from_slice(&row.raw_body).unwrap_or_default(),
        raw_body: row.raw_body.into(),
        received_at: row.received_at,
        attempt,
    }
}
