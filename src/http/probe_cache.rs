//! The database-derived answers of `/readyz` and `/metrics`, refreshed at most once per
//! [`MAX_AGE`]. Both routes are unauthenticated and outside load shedding (a load balancer must
//! reach them under overload), so without a cache a flood of them would hold the pool and ingest
//! would answer 503. With it, any number of calls cost at most one query set a second; callers
//! arriving during a refresh wait for that one refresh instead of starting their own.

use std::future::Future;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

/// How stale a served value may be.
pub const MAX_AGE: Duration = Duration::from_secs(1);

/// One value and when it was read.
#[derive(Debug)]
pub struct Cached<T> {
    slot: Mutex<Option<(Instant, T)>>,
}

impl<T> Default for Cached<T> {
    fn default() -> Self {
        Self {
            slot: Mutex::new(None),
        }
    }
}

impl<T: Clone> Cached<T> {
    /// The value read less than [`MAX_AGE`] ago, or a fresh one from `refresh`.
    pub async fn get<F, Fut>(&self, refresh: F) -> T
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        // Held across the refresh: concurrent callers share it (single flight).
        let mut slot = self.slot.lock().await;
        if let Some((read_at, value)) = slot.as_ref() {
            if read_at.elapsed() < MAX_AGE {
                return value.clone();
            }
        }
        let value = refresh().await;
        *slot = Some((Instant::now(), value.clone()));
        value
    }
}

/// What `/readyz` learned from the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    MigrationsPending,
    DatabaseUnavailable,
}

/// The caches of the probe routes.
#[derive(Debug, Default)]
pub struct ProbeCache {
    pub readiness: Cached<Readiness>,
    /// `()`: the outbox gauges are set when it refreshes and keep their values in between.
    pub outbox_gauges: Cached<()>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn a_value_younger_than_a_second_is_served_without_a_refresh() {
        let cache = Cached::default();
        let refreshes = AtomicUsize::new(0);
        let started = Instant::now();
        for _ in 0..100 {
            let value = cache
                .get(|| async {
                    refreshes.fetch_add(1, Ordering::SeqCst);
                    7
                })
                .await;
            assert_eq!(value, 7);
        }
        // One refresh, plus one per second the loop took on a loaded machine.
        let most = 1 + started.elapsed().as_secs() as usize;
        assert!(refreshes.load(Ordering::SeqCst) <= most);
    }
}
