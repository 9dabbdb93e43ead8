//! `[[handlers]]`, `[dispatch]` and `[nats]`: validated into [`HandlerSpec`]s, naming the key of
//! every mistake.

use serde::Deserialize;

use super::SecretRef;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatchConfig {
    /// Run a dispatcher inside `serve` (`dispatch` runs one regardless).
    pub enabled: bool,
    pub batch_size: usize,
    pub lease_secs: u64,
    pub poll_interval_ms: u64,
    pub max_in_flight: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsConfig {
    /// Connected only when a `nats` handler is configured.
    pub url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HandlerKind {
    Http,
    Nats,
    Log,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandlerConfig {
    pub name: String,
    pub kind: HandlerKind,
    /// Absent: every environment.
    pub environments: Option<Vec<String>>,
    #[serde(default = "every_event")]
    pub events: Vec<String>,
    /// Fetch the payment from the payments API before each call; proceed only if it agrees.
    /// Every environment the handler covers needs a `voltage_api_key`.
    #[serde(default)]
    pub confirm: bool,
    #[serde(default = "defaults::timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "defaults::concurrency")]
    pub concurrency: usize,
    #[serde(default = "defaults::max_attempts")]
    pub max_attempts: u32,
    #[serde(default = "defaults::backoff_base_ms")]
    pub backoff_base_ms: u64,
    #[serde(default = "defaults::backoff_cap_ms")]
    pub backoff_cap_ms: u64,
    // kind = "http"
    pub url: Option<String>,
    pub secret: Option<SecretRef>,
    // kind = "nats"
    pub subject_prefix: Option<String>,
    pub stream: Option<String>,
    pub create_stream: Option<bool>,
    pub duplicate_window_secs: Option<u64>,
}

fn every_event() -> Vec<String> {
    vec!["*".into()]
}

mod defaults {
    pub fn timeout_ms() -> u64 {
        10_000
    }
    pub fn concurrency() -> usize {
        16
    }
    pub fn max_attempts() -> u32 {
        12
    }
    pub fn backoff_base_ms() -> u64 {
        1_000
    }
    pub fn backoff_cap_ms() -> u64 {
        3_600_000
    }
}
