//! The metrics registry: every metric is recorded through the `metrics` facade and rendered in the
//! Prometheus text format at `GET /metrics`. Names are listed here, once, so dashboards and code
//! agree on them.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Deliveries received, by environment and outcome (`stored`, `duplicate`, or the refusal code).
/// Refusals by the request limits (`overloaded`, `timeout`) are counted here too.
pub const WEBHOOK_REQUESTS: &str = "voltage_webhook_requests_total";
/// Query API requests the limits refused, by outcome (`overloaded`, `timeout`).
pub const API_REQUESTS_REFUSED: &str = "voltage_api_requests_refused_total";
/// Which secret position of which registration verified a delivery: when position 1 (the old secret
/// of a rotation) stops appearing, it can be retired.
pub const WEBHOOK_VERIFIED: &str = "voltage_webhook_verified_total";
/// Time spent checking a delivery's signature against every candidate secret (the header checks
/// run before the body is read and are not included).
pub const WEBHOOK_VERIFY_SECONDS: &str = "voltage_webhook_verify_seconds";
/// Time from handing an event to group commit until its batch committed.
pub const WEBHOOK_WRITE_SECONDS: &str = "voltage_webhook_write_seconds";
/// Each stage of a delivery, by `stage`, so a tail can be traced to where it is spent:
/// `read_body` (the body's bytes, after the header checks), `verify` (the signature), `parse`
/// (JSON, event header and scope checks, dedup key, routing), `batch_wait` (queued for group
/// commit until its batch's statement started), `write` (that statement and its commit) and
/// `answer` (from the commit until the request's task had the outcome and returned the response to
/// the server; the socket write is not included). A delivery is counted in the stages it reached.
pub const WEBHOOK_STAGE_SECONDS: &str = "voltage_webhook_stage_seconds";
/// A delivery from the handler's start until it returned its response, whatever the outcome.
pub const WEBHOOK_REQUEST_SECONDS: &str = "voltage_webhook_request_seconds";
/// Handler calls by handler and outcome (`success`, `retryable`, `permanent`), and their duration.
pub const HANDLER_CALLS: &str = "voltage_handler_calls_total";
pub const HANDLER_CALL_SECONDS: &str = "voltage_handler_call_seconds";
/// Deliveries dead-lettered, by handler.
pub const DELIVERIES_DEAD_TOTAL: &str = "voltage_deliveries_dead_lettered_total";
/// Read from the database at each scrape: the outbox backlog and the dead letters waiting.
pub const OUTBOX_PENDING: &str = "voltage_outbox_pending";
pub const OUTBOX_OLDEST_PENDING_SECONDS: &str = "voltage_outbox_oldest_pending_seconds";
pub const DELIVERIES_DEAD: &str = "voltage_deliveries_dead";
/// Rows retention removed, by kind (`events`, `dead_deliveries`, `quarantined`, `replays`), and
/// when this replica last finished a pass (Unix seconds).
pub const RETENTION_REMOVED: &str = "voltage_retention_removed_total";
/// Reconciliation, by environment: states the webhooks never delivered, each sweep's duration, when
/// the last sweep completed (Unix seconds: alert when it falls behind), and failed sweeps.
pub const RECONCILE_GAPS: &str = "voltage_reconcile_gaps_total";
pub const RECONCILE_SWEEP_SECONDS: &str = "voltage_reconcile_sweep_seconds";
pub const RECONCILE_LAST_COMPLETE: &str = "voltage_reconcile_last_complete_sweep_timestamp_seconds";
pub const RECONCILE_FAILURES: &str = "voltage_reconcile_sweep_failures_total";
/// Handler calls a confirmation stopped because the payments API contradicted the event.
pub const CONFIRMATION_REFUSED: &str = "voltage_confirmation_refused_total";
pub const RETENTION_LAST_PASS: &str = "voltage_retention_last_pass_timestamp_seconds";

/// The values of `stage` of [`WEBHOOK_STAGE_SECONDS`], in the order a delivery passes them.
pub const WEBHOOK_STAGES: [&str; 6] = [
    "read_body",
    "verify",
    "parse",
    "batch_wait",
    "write",
    "answer",
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Bucket bounds (seconds) of every histogram: all of them are durations, from a signature check
/// (microseconds) to a reconciliation sweep (minutes). Histograms rather than the exporter's default
/// summaries: buckets add up across replicas (a p99 of the fleet), quantiles of each process do
/// not; and recording into buckets is cheap, while the summaries' sketches took the upkeep ~0.1 s of
/// a runtime thread every 5 s at 12k requests/s, the tail of the ingest latency.
const BUCKETS: [f64; 18] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0, 30.0, 120.0, 600.0,
];

/// Finer bounds for the stages of a delivery and its whole time: they are milliseconds, and the
/// p99 target (15 ms) is a bound, so a percentile read from the buckets says which side it is on.
const STAGE_BUCKETS: [f64; 22] = [
    0.000_05, 0.000_1, 0.000_2, 0.000_5, 0.001, 0.002, 0.003, 0.005, 0.007_5, 0.01, 0.015, 0.02,
    0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How often recorded samples are folded into the buckets (off the async runtime's threads).
const UPKEEP_EVERY: Duration = Duration::from_secs(1);

/// Installs the process-wide recorder once and returns its handle (later calls return the same).
/// Must run inside the runtime: it starts the task that keeps histograms bounded.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&BUCKETS)
                .expect("the bucket list is not empty")
                .set_buckets_for_metric(Matcher::Full(WEBHOOK_STAGE_SECONDS.into()), &STAGE_BUCKETS)
                .expect("the bucket list is not empty")
                .set_buckets_for_metric(
                    Matcher::Full(WEBHOOK_REQUEST_SECONDS.into()),
                    &STAGE_BUCKETS,
                )
                .expect("the bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!(
                    "a metrics recorder was already installed; /metrics shows only this registry"
                );
            }
            let upkeep = handle.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(UPKEEP_EVERY).await;
                    let upkeep = upkeep.clone();
                    // A blocking thread: the drain must never hold up a request's task.
                    let _ = tokio::task::spawn_blocking(move || upkeep.run_upkeep()).await;
                }
            });
            handle
        })
        .clone()
}
