//! One attempt of one delivery: the call through the handler's stack, the decision that follows
//! (succeeded, retry at t + backoff, or dead), handed to the recorder.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tower::Service as _;
use uuid::Uuid;

use super::lane::Slot;
use super::{Decision, Shared};
use crate::handlers::{AttemptReport, HandlerError, HandlerRequest, RegisteredHandler};
use crate::store::{Claimed, Completion, Next};

/// A finished attempt on its way to the recorder.
#[derive(Debug)]
pub(super) struct Finished {
    pub handler: String,
    pub completion: Completion,
}

#[derive(Debug)]
pub(super) struct Attempt {
    pub shared: Arc<Shared>,
    pub handler: Arc<RegisteredHandler>,
    pub row: Claimed,
    pub token: Uuid,
    pub slot: Slot,
    pub finished: mpsc::Sender<Finished>,
}

pub(super) async fn run(a: Attempt) {
    let Attempt {
        shared,
        handler,
        row,
        token,
        mut slot,
        finished,
    } = a;
    let attempt = u32::try_from(row.attempts).unwrap_or(u32::MAX);
    let delivery_id = row.delivery_id;
    let started_at = chrono::Utc::now();
    let started = Instant::now();
    let report = AttemptReport::default();
    let result = if attempt > handler.retry.max_attempts.saturating_mul(2) {
        // Every attempt beyond the budget started after a worker vanished mid-call: a delivery
        // that keeps killing its workers stops here. One with a known failure never gets here.
        Err(HandlerError::permanent(format!(
            "no outcome recorded for {} attempts (their workers' leases expired)",
            attempt - 1
        )))
    } else {
        slot.service
            .call(request_of(row, attempt, report.clone()))
            .await
    };
    let duration = started.elapsed();
    drop(slot); // the handler's capacity and the max_in_flight permit, free for the next call
    let (outcome, error, next) = match result {
        Ok(()) => ("succeeded", None, Next::Succeeded),
        Err(error) => after_failure(&handler, delivery_id, attempt, error),
    };
    let completion = Completion {
        delivery_id,
        token,
        attempt: i32::try_from(attempt).unwrap_or(i32::MAX),
        started_at,
        duration,
        outcome,
        http_status: report.http_status(),
        error,
        worker: shared.worker.clone(),
        next,
    };
    hand_over(&finished, &handler.name, completion).await;
}

/// Gives the outcome to the recorder, which writes it with others in one statement.
async fn hand_over(finished: &mpsc::Sender<Finished>, handler: &str, completion: Completion) {
    let delivery_id = completion.delivery_id;
    let handed = finished
        .send(Finished {
            handler: handler.to_owned(),
            completion,
        })
        .await;
    if handed.is_err() {
        // Only after the recorder stopped (shutdown deadline): the lease expires, the sweep
        // makes the delivery due again. At least once, never lost.
        tracing::warn!(
            delivery_id,
            "outcome not recorded: the recorder has stopped"
        );
    }
}

/// What a failed attempt is recorded as, its error, and what happens to the delivery next.
fn after_failure(
    handler: &RegisteredHandler,
    delivery_id: i64,
    attempt: u32,
    error: HandlerError,
) -> (&'static str, Option<String>, Next) {
    let outcome = match error {
        HandlerError::Retryable { .. } => "failed",
        HandlerError::Permanent { .. } => "rejected",
    };
    let next = match super::decide(&handler.retry, attempt, &error) {
        Decision::RetryAfter(delay) => {
            tracing::info!(delivery_id, attempt, delay_ms = delay.as_millis() as u64, error = %error, "delivery will be retried");
            Next::RetryAfter(delay, error.to_string())
        }
        Decision::Dead(reason) => {
            tracing::warn!(delivery_id, attempt, handler = %handler.name, %reason, "delivery dead-lettered");
            metrics::counter!(crate::telemetry::metrics::DELIVERIES_DEAD_TOTAL, "handler" => handler.name.clone())
                .increment(1);
            Next::Dead(reason)
        }
    };
    (outcome, Some(error.to_string()), next)
}

fn request_of(row: Claimed, attempt: u32, report: AttemptReport) -> HandlerRequest {
    let raw_body = bytes::Bytes::from(row.raw_body);
    HandlerRequest {
        event_id: row.event_id,
        delivery_id: row.delivery_id,
        environment: row.environment,
        event_type: row.event_type,
        event: row.event,
        payment_id: row.payment_id,
        source: row.source,
        payload: crate::handlers::LazyPayload::new(raw_body.clone()),
        raw_body,
        received_at: row.received_at,
        attempt,
        report,
    }
}
