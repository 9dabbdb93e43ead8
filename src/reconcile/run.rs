//! The periodic sweeps inside `serve` (or `reconcile` without `--once`): one task per environment
//! with an API key, each sweeping every `interval` (jittered, so replicas do not line up); a replica
//! that finds the environment's lock taken skips its turn.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Reconciler, Sweep, Target};

/// Sweeps every target until `stop`; returns when every task has stopped.
pub async fn run(reconciler: Reconciler, targets: Vec<Target>, stop: CancellationToken) {
    let mut tasks = tokio::task::JoinSet::new();
    for target in targets {
        let reconciler = reconciler.clone();
        let stop = stop.clone();
        tasks.spawn(async move { sweep_periodically(&reconciler, &target, &stop).await });
    }
    while tasks.join_next().await.is_some() {}
}

async fn sweep_periodically(reconciler: &Reconciler, target: &Target, stop: &CancellationToken) {
    let interval = reconciler.settings.interval;
    // The first sweep soon after start-up, spread over at most a minute.
    let mut delay = interval
        .min(Duration::from_secs(60))
        .mul_f64(rand::random::<f64>());
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
        // A sweep is cut short by shutdown: what it stored is committed; the next one starts over.
        let outcome = tokio::select! {
            () = stop.cancelled() => return,
            outcome = reconciler.sweep(target) => outcome,
        };
        match outcome {
            Ok(Sweep::Done(report)) => {
                if report.foreign > 0 || report.unreadable > 0 {
                    tracing::warn!(environment = %target.environment, foreign = report.foreign, unreadable = report.unreadable, "the payments API returned payments that were not stored: check the key's environment");
                }
                tracing::info!(environment = %target.environment, ?report, "reconciliation sweep done");
            }
            Ok(Sweep::Busy) => {
                tracing::debug!(environment = %target.environment, "another replica is sweeping this environment")
            }
            // Counted in `voltage_reconcile_sweep_failures_total` by the sweep itself.
            Err(e) => {
                tracing::warn!(environment = %target.environment, error = %e, "reconciliation sweep failed; retrying next interval");
            }
        }
        // ±10%, so replicas started together drift apart.
        delay = interval.mul_f64(0.9 + 0.2 * rand::random::<f64>());
    }
}
