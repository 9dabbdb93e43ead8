//! `[retention]`: how long events, dead deliveries and quarantined bodies are kept.

use std::time::Duration;

use serde::Deserialize;

use super::{Config, ConfigError, Warnings};

/// Unset `events_days` / `dead_days` keep that kind forever (the default: deleting payment history
/// is the operator's decision). Nothing is ever removed inside `dedup_days` of its last arrival.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Events (with their succeeded deliveries), quarantined bodies and replay records older
    /// than this are removed, once no delivery needs them.
    pub events_days: Option<u32>,
    /// Dead deliveries completed longer ago than this are removed.
    pub dead_days: Option<u32>,
    /// The dedup horizon: a redelivery this long after the first must still be a duplicate.
    pub dedup_days: u32,
    /// How often a replica tries to run a pass (one replica at a time runs it).
    pub interval_secs: u64,
    /// Rows per delete statement: small, so locks are short.
    pub batch_size: u32,
}

/// What the retention sweep runs with: `[retention]`, validated.
#[derive(Debug, Clone)]
pub struct RetentionPolicy {
    pub events_days: Option<u32>,
    pub dead_days: Option<u32>,
    pub dedup_days: u32,
    pub batch_size: i64,
    pub interval: Duration,
}

impl RetentionPolicy {
    /// Whether anything can expire at all.
    pub fn is_active(&self) -> bool {
        self.events_days.is_some() || self.dead_days.is_some()
    }
}

impl Config {
    /// The validated retention policy, with a warning when `events_days` is below the horizon.
    pub fn retention_policy(&self) -> Result<(RetentionPolicy, Warnings), ConfigError> {
        let r = &self.retention;
        let mut warnings = Warnings::new();
        for (key, value) in [
            ("retention.dedup_days", u64::from(r.dedup_days)),
            ("retention.interval_secs", r.interval_secs),
            ("retention.batch_size", u64::from(r.batch_size)),
            ("retention.events_days", r.events_days.map_or(1, u64::from)),
            ("retention.dead_days", r.dead_days.map_or(1, u64::from)),
        ] {
            super::positive(key, value)?;
        }
        if let Some(days) = r.events_days.filter(|days| *days < r.dedup_days) {
            warnings.push(format!(
                "retention.events_days = {days} is below retention.dedup_days = {}: events are kept {} days",
                r.dedup_days, r.dedup_days
            ));
        }
        let policy = RetentionPolicy {
            events_days: r.events_days,
            dead_days: r.dead_days,
            dedup_days: r.dedup_days,
            batch_size: i64::from(r.batch_size),
            interval: Duration::from_secs(r.interval_secs),
        };
        Ok((policy, warnings))
    }
}
