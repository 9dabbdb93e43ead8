//! A payment's latest known state, derived from its events. Voltage does not promise delivery
//! order, so the state never moves backwards: a status further along its lifecycle wins over one
//! before it, whatever arrived last; among equals, the later `updated_at` wins.

use chrono::{DateTime, Utc};
use serde_json::Value;

/// How far along its lifecycle a status is. send: sending → approved → completed | failed;
/// receive: generating → receiving → completed | expired | failed. Unknown statuses rank lowest,
/// so a new enum value never overrides a known terminal state.
pub fn status_rank(status: Option<&str>) -> u8 {
    match status {
        Some("sending" | "generating") => 1,
        Some("approved" | "receiving") => 2,
        Some("completed" | "failed" | "expired") => 3,
        _ => 0,
    }
}

/// The facts of one event that decide the state.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    pub status: Option<&'a str>,
    pub updated_at: Option<DateTime<Utc>>,
    pub received_at: DateTime<Utc>,
}

/// The index of the observation that defines the current state.
pub fn current<'a>(observations: impl IntoIterator<Item = Observation<'a>>) -> Option<usize> {
    observations
        .into_iter()
        .enumerate()
        .max_by_key(|(_, o)| (status_rank(o.status), o.updated_at, o.received_at))
        .map(|(i, _)| i)
}

/// The amount of a payment object: what was requested (receives) or the rail's amount (sends).
pub fn amount(payment: &Value) -> Option<&Value> {
    payment
        .get("requested_amount")
        .filter(|v| !v.is_null())
        .or_else(|| payment.pointer("/data/amount"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).expect("time")
    }

    fn obs(status: &str, updated: i64, received: i64) -> Observation<'_> {
        Observation {
            status: Some(status),
            updated_at: Some(at(updated)),
            received_at: at(received),
        }
    }

    #[test]
    fn a_late_earlier_status_does_not_regress_a_terminal_one() {
        // completed arrived first, the older `receiving` last.
        let events = [
            obs("generating", 1, 10),
            obs("completed", 3, 11),
            obs("receiving", 2, 12),
        ];
        assert_eq!(current(events), Some(1));
    }

    #[test]
    fn among_equal_ranks_the_later_update_wins() {
        let events = [
            obs("receiving", 5, 10),
            obs("receiving", 7, 11),
            obs("receiving", 6, 12),
        ];
        assert_eq!(current(events), Some(1));
    }

    #[test]
    fn unknown_statuses_never_override_known_ones() {
        let events = [obs("approved", 1, 10), obs("settling", 9, 11)];
        assert_eq!(current(events), Some(0));
    }
}
