//! `[reconcile]` and each environment's `voltage_api_key`: the sweep of Voltage's payments API,
//! and the API client that handler confirmation shares.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcileConfig {
    /// Sweep inside `serve` every environment that has a `voltage_api_key`.
    pub enabled: bool,
    /// Voltage Payments API base URL; `https://` (the API key travels with every request).
    pub base_url: String,
    /// Accept an `http://` base URL: only for a local fake of the API (tests, development).
    pub allow_plain_http: bool,
    pub interval_secs: u64,
    /// Payments per page (Voltage's list takes `limit`).
    pub page_size: u32,
    /// A sweep pages back to payments created this many hours ago; 0: the whole history.
    pub lookback_hours: u64,
    /// A sweep needing more pages fails (cut short): bounds what a broken API can make it cost.
    pub max_pages_per_sweep: u32,
    pub request_timeout_ms: u64,
    /// Attempts per API request when it answers 429 or 5xx, or cannot be reached.
    pub max_attempts: u32,
    pub backoff_base_ms: u64,
    pub backoff_cap_ms: u64,
}
