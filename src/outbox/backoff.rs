//! What happens after a failed attempt: the retry policy's backoff (see [`crate::retry`]),
//! `Retry-After` honoured up to a ceiling, dead after `max_attempts` or at once on a permanent
//! failure.

use std::time::Duration;

use crate::handlers::HandlerError;
use crate::retry::{RetryPolicy, RETRY_AFTER_CEILING};

/// The dispatcher's next step for a failed delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    RetryAfter(Duration),
    Dead(String),
}

pub fn decide(policy: &RetryPolicy, attempt: u32, error: &HandlerError) -> Decision {
    match error {
        HandlerError::Permanent { message } => {
            Decision::Dead(format!("permanent failure: {message}"))
        }
        HandlerError::Retryable { message, .. } if attempt >= policy.max_attempts => {
            Decision::Dead(format!("gave up after {attempt} attempts: {message}"))
        }
        HandlerError::Retryable { retry_after, .. } => Decision::RetryAfter(match retry_after {
            Some(wanted) => (*wanted).min(RETRY_AFTER_CEILING),
            None => policy.jittered(attempt),
        }),
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
    fn retry_after_overrides_the_backoff() {
        let error = HandlerError::Retryable {
            message: "busy".into(),
            retry_after: Some(Duration::from_secs(30)),
        };
        assert_eq!(
            decide(&policy(), 1, &error),
            Decision::RetryAfter(Duration::from_secs(30))
        );
    }

    #[test]
    fn the_last_attempt_and_permanent_failures_are_dead() {
        let p = policy();
        let retryable = HandlerError::retryable("down");
        assert!(matches!(decide(&p, 2, &retryable), Decision::RetryAfter(_)));
        assert!(matches!(decide(&p, 3, &retryable), Decision::Dead(m) if m.contains("3 attempts")));
        assert!(matches!(
            decide(&p, 1, &HandlerError::permanent("gone")),
            Decision::Dead(_)
        ));
    }
}
