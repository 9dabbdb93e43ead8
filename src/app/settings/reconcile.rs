//! `[reconcile]` and each environment's `voltage_api_key` turned into the sweep's settings, its
//! targets and the Voltage API client that handler confirmation shares.

use std::time::Duration;

use super::positive;
use crate::config::{Config, ConfigError, HandlerConfig};
use crate::reconcile::ReconcileSettings;
use crate::retry::RetryPolicy;
use crate::voltage_api::{ApiKey, Target, Transport, VoltageApi};

impl Config {
    pub fn reconcile_settings(&self) -> Result<ReconcileSettings, ConfigError> {
        let r = &self.reconcile;
        positive("reconcile.interval_secs", r.interval_secs)?;
        positive("reconcile.page_size", u64::from(r.page_size))?;
        positive(
            "reconcile.max_pages_per_sweep",
            u64::from(r.max_pages_per_sweep),
        )?;
        Ok(ReconcileSettings {
            interval: Duration::from_secs(r.interval_secs),
            page_size: r.page_size,
            lookback: (r.lookback_hours > 0).then(|| Duration::from_secs(r.lookback_hours * 3600)),
            max_pages: r.max_pages_per_sweep,
        })
    }

    /// The payments API client (sweeps and confirmation share it).
    pub fn voltage_api(&self) -> Result<VoltageApi, ConfigError> {
        let r = &self.reconcile;
        positive("reconcile.request_timeout_ms", r.request_timeout_ms)?;
        positive("reconcile.max_attempts", u64::from(r.max_attempts))?;
        positive("reconcile.backoff_base_ms", r.backoff_base_ms)?;
        if r.backoff_cap_ms < r.backoff_base_ms {
            return Err(ConfigError::invalid(
                "reconcile.backoff_cap_ms",
                "must be at least reconcile.backoff_base_ms",
            ));
        }
        let url = url::Url::parse(&r.base_url)
            .map_err(|e| ConfigError::invalid("reconcile.base_url", e.to_string()))?;
        let transport = match url.scheme() {
            "https" => Transport::HttpsOnly,
            "http" if r.allow_plain_http => Transport::AllowPlainHttp,
            "http" => {
                return Err(ConfigError::invalid(
                    "reconcile.base_url",
                    "must be an https:// URL (the API key travels with every request); \
                     set reconcile.allow_plain_http = true only for a local fake of the API",
                ))
            }
            _ => {
                return Err(ConfigError::invalid(
                    "reconcile.base_url",
                    "must be an https:// URL",
                ))
            }
        };
        let retry = RetryPolicy {
            max_attempts: r.max_attempts,
            base: Duration::from_millis(r.backoff_base_ms),
            cap: Duration::from_millis(r.backoff_cap_ms),
        };
        VoltageApi::new(
            &r.base_url,
            Duration::from_millis(r.request_timeout_ms),
            retry,
            transport,
        )
        .map_err(|e| ConfigError::invalid("reconcile.base_url", e.to_string()))
    }

    /// Confirmation needs an API key in every environment the handler covers.
    pub(super) fn check_confirm(&self, key: &str, h: &HandlerConfig) -> Result<bool, ConfigError> {
        if !h.confirm {
            return Ok(false);
        }
        let covered: Vec<&String> = match &h.environments {
            Some(names) => names.iter().collect(),
            None => self.environments.keys().collect(),
        };
        for name in covered {
            let has_key = self
                .environments
                .get(name)
                .is_some_and(|env| env.voltage_api_key.is_some());
            if !has_key {
                return Err(ConfigError::invalid(
                    format!("{key}.confirm"),
                    format!(
                        "environments.{name}.voltage_api_key is required to confirm its events"
                    ),
                ));
            }
        }
        Ok(true)
    }

    /// Every environment with a `voltage_api_key`, its key resolved.
    pub fn reconcile_targets(&self) -> Result<Vec<Target>, ConfigError> {
        let mut targets = Vec::new();
        for (name, env) in &self.environments {
            if let Some(reference) = &env.voltage_api_key {
                let api_key = reference.resolve(&format!("environments.{name}.voltage_api_key"))?;
                targets.push(Target {
                    environment: name.clone(),
                    organization_id: env.organization_id,
                    environment_id: env.environment_id,
                    api_key: ApiKey::new(api_key),
                });
            }
        }
        Ok(targets)
    }
}
