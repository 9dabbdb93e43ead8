//! LISTEN for new outbox rows and turn each notification into a wake-up of the dispatch loop.
//!
//! `PgListener::recv` is not raced in `select!` (it is not documented as cancel-safe); it runs
//! here, in its own task, and each lane waits on its own `Notify`, which keeps one wake-up for later.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::store::WAKE_CHANNEL;

/// Wakes every lane (one `Notify` each) on each notification.
pub async fn listen(pool: PgPool, wake: Vec<Arc<Notify>>, shutdown: CancellationToken) {
    while !shutdown.is_cancelled() {
        match PgListener::connect_with(&pool).await {
            Ok(mut listener) => {
                if let Err(e) = listener.listen(WAKE_CHANNEL).await {
                    tracing::warn!(error = %e, "LISTEN failed; polling only until it succeeds");
                } else {
                    // recv() reconnects by itself; an error means it could not.
                    while listener.recv().await.is_ok() {
                        wake.iter().for_each(|w| w.notify_one());
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "LISTEN connection failed; polling only until it succeeds")
            }
        }
        // Wake once after a reconnect: notifications sent meanwhile were lost.
        wake.iter().for_each(|w| w.notify_one());
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
