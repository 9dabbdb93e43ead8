//! Retry primitives shared by everything that calls something that may fail for a while: the
//! dispatcher (a handler's deliveries), the Voltage API client and the `http` handler (whose
//! downstream may answer `Retry-After`). Exponential backoff with full jitter between a base and a
//! cap; `Retry-After` read as delay-seconds or an HTTP date.
//!
//! A leaf module: it imports nothing of the service.

use std::time::Duration;

use http::header::{HeaderMap, RETRY_AFTER};
use rand::Rng as _;

/// The longest `Retry-After` honoured, so a broken downstream cannot park a delivery for years.
pub const RETRY_AFTER_CEILING: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; after the last failed one the delivery is dead.
    pub max_attempts: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 12,
            base: Duration::from_secs(1),
            cap: Duration::from_secs(3600),
        }
    }
}

impl RetryPolicy {
    /// Full jitter: uniform in `[0, min(cap, base * 2^(attempt-1))]`.
    pub fn jittered(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(32);
        let ceiling = self
            .base
            .saturating_mul(1u32 << exponent.min(31))
            .min(self.cap);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::rng().random_range(0..=nanos))
    }
}

/// `Retry-After` as delay-seconds or an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
        .to_std()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            base: Duration::from_millis(100),
            cap: Duration::from_millis(350),
        }
    }

    #[test]
    fn delays_stay_under_the_exponential_ceiling_and_the_cap() {
        let p = policy();
        for _ in 0..500 {
            assert!(p.jittered(1) <= Duration::from_millis(100));
            assert!(p.jittered(2) <= Duration::from_millis(200));
            assert!(p.jittered(3) <= Duration::from_millis(350));
            assert!(p.jittered(40) <= Duration::from_millis(350));
        }
        // Jitter actually spreads the delays.
        let distinct: std::collections::HashSet<_> = (0..50).map(|_| p.jittered(3)).collect();
        assert!(distinct.len() > 10);
    }

    #[test]
    fn retry_after_accepts_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "7".parse().expect("header"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        let later = chrono::Utc::now() + chrono::Duration::seconds(120);
        headers.insert(
            RETRY_AFTER,
            later
                .to_rfc2822()
                .replace("+0000", "GMT")
                .parse()
                .expect("header"),
        );
        let parsed = retry_after(&headers).expect("date parsed");
        assert!(
            parsed > Duration::from_secs(110) && parsed <= Duration::from_secs(120),
            "{parsed:?}"
        );
    }
}
