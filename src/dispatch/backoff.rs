//! What happens after a failed attempt: exponential backoff with full jitter between a base and a
//! cap, `Retry-After` honoured, dead after `max_attempts` or at once on a permanent failure.

use std::time::Duration;

use rand::Rng as _;

use crate::handlers::HandlerError;

/// The longest `Retry-After` honoured, so a broken downstream cannot park a delivery for years.
const RETRY_AFTER_CEILING: Duration = Duration::from_secs(24 * 3600);

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

/// The dispatcher's next step for a failed delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    RetryAfter(Duration),
    Dead(String),
}

impl RetryPolicy {
    pub fn decide(&self, attempt: u32, error: &HandlerError) -> Decision {
        match error {
            HandlerError::Permanent { message } => {
                Decision::Dead(format!("permanent failure: {message}"))
            }
            HandlerError::Retryable { message, .. } if attempt >= self.max_attempts => {
                Decision::Dead(format!("gave up after {attempt} attempts: {message}"))
            }
            HandlerError::Retryable { retry_after, .. } => {
                Decision::RetryAfter(match retry_after {
                    Some(wanted) => (*wanted).min(RETRY_AFTER_CEILING),
                    None => self.jittered(attempt),
                })
            }
        }
    }

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
    fn retry_after_overrides_the_backoff() {
        let error = HandlerError::Retryable {
            message: "busy".into(),
            retry_after: Some(Duration::from_secs(30)),
        };
        assert_eq!(
            policy().decide(1, &error),
            Decision::RetryAfter(Duration::from_secs(30))
        );
    }

    #[test]
    fn the_last_attempt_and_permanent_failures_are_dead() {
        let p = policy();
        let retryable = HandlerError::retryable("down");
        assert!(matches!(p.decide(2, &retryable), Decision::RetryAfter(_)));
        assert!(matches!(p.decide(3, &retryable), Decision::Dead(m) if m.contains("3 attempts")));
        assert!(matches!(
            p.decide(1, &HandlerError::permanent("gone")),
            Decision::Dead(_)
        ));
    }
}
