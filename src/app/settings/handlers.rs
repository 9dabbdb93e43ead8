//! `[[handlers]]` and `[dispatch]` turned into what the dispatcher and the handler stacks run
//! with, naming the configuration key of every mistake.

use std::time::Duration;

use super::positive;
use crate::config::{check_name, Config, ConfigError, HandlerConfig, HandlerKind};
use crate::event::{EventFilter, Route};
use crate::handlers::{
    HandlerSpec, KindSpec, StackSettings, StandardWebhookSigner, StreamSettings,
};
use crate::outbox::DispatchSettings;
use crate::retry::RetryPolicy;

impl Config {
    pub fn dispatch_settings(&self) -> Result<DispatchSettings, ConfigError> {
        let d = &self.dispatch;
        positive("dispatch.batch_size", d.batch_size as u64)?;
        positive("dispatch.lease_secs", d.lease_secs)?;
        positive("dispatch.poll_interval_ms", d.poll_interval_ms)?;
        positive("dispatch.max_in_flight", d.max_in_flight as u64)?;
        Ok(DispatchSettings {
            batch_size: d.batch_size,
            lease: Duration::from_secs(d.lease_secs),
            poll_interval: Duration::from_millis(d.poll_interval_ms),
            max_in_flight: d.max_in_flight,
            shutdown_deadline: Duration::from_millis(self.shutdown.deadline_ms),
        })
    }

    /// Every `[[handlers]]` entry, checked and with its secret resolved.
    pub fn handler_specs(&self) -> Result<Vec<HandlerSpec>, ConfigError> {
        let lease = self.dispatch_settings()?.lease;
        let mut specs: Vec<HandlerSpec> = Vec::new();
        for (i, handler) in self.handlers.iter().enumerate() {
            let key = format!("handlers[{i}]");
            if specs.iter().any(|s| s.name == handler.name) {
                return Err(ConfigError::invalid(
                    format!("{key}.name"),
                    format!("{:?} is used twice", handler.name),
                ));
            }
            specs.push(self.handler_spec(&key, handler, lease)?);
        }
        Ok(specs)
    }

    fn handler_spec(
        &self,
        key: &str,
        h: &HandlerConfig,
        lease: Duration,
    ) -> Result<HandlerSpec, ConfigError> {
        check_name(&format!("{key}.name"), &h.name)?;
        positive(&format!("{key}.timeout_ms"), h.timeout_ms)?;
        positive(&format!("{key}.concurrency"), h.concurrency as u64)?;
        positive(&format!("{key}.max_attempts"), u64::from(h.max_attempts))?;
        positive(&format!("{key}.backoff_base_ms"), h.backoff_base_ms)?;
        if h.backoff_cap_ms < h.backoff_base_ms {
            return Err(ConfigError::invalid(
                format!("{key}.backoff_cap_ms"),
                "must be at least backoff_base_ms",
            ));
        }
        let timeout = Duration::from_millis(h.timeout_ms);
        if timeout + Duration::from_secs(1) > lease {
            return Err(ConfigError::invalid(
                format!("{key}.timeout_ms"),
                format!(
                    "must be at least 1 s shorter than dispatch.lease_secs ({} s)",
                    lease.as_secs()
                ),
            ));
        }
        Ok(HandlerSpec {
            name: h.name.clone(),
            route: self.route(key, h)?,
            retry: RetryPolicy {
                max_attempts: h.max_attempts,
                base: Duration::from_millis(h.backoff_base_ms),
                cap: Duration::from_millis(h.backoff_cap_ms),
            },
            stack: StackSettings {
                timeout,
                concurrency: h.concurrency,
            },
            confirm: self.check_confirm(key, h)?,
            kind: kind_spec(key, h)?,
        })
    }

    fn route(&self, key: &str, h: &HandlerConfig) -> Result<Route, ConfigError> {
        if let Some(environments) = &h.environments {
            for env in environments {
                if !self.environments.contains_key(env) {
                    return Err(ConfigError::invalid(
                        format!("{key}.environments"),
                        format!("no environment named {env:?}"),
                    ));
                }
            }
        }
        if h.events.is_empty() {
            return Err(ConfigError::invalid(
                format!("{key}.events"),
                "at least one filter is required (\"*\" for all)",
            ));
        }
        let filters = h
            .events
            .iter()
            .map(|f| {
                EventFilter::parse(f)
                    .map_err(|e| ConfigError::invalid(format!("{key}.events"), e.to_string()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Route {
            environments: h.environments.clone(),
            filters,
        })
    }
}

fn kind_spec(key: &str, h: &HandlerConfig) -> Result<KindSpec, ConfigError> {
    let http_keys = [("url", h.url.is_some()), ("secret", h.secret.is_some())];
    let nats_keys = [
        ("subject_prefix", h.subject_prefix.is_some()),
        ("stream", h.stream.is_some()),
        ("create_stream", h.create_stream.is_some()),
        ("duplicate_window_secs", h.duplicate_window_secs.is_some()),
    ];
    let foreign: Vec<(&str, bool)> = match h.kind {
        HandlerKind::Http => nats_keys.to_vec(),
        HandlerKind::Nats => http_keys.to_vec(),
        HandlerKind::Log => http_keys.iter().chain(&nats_keys).copied().collect(),
    };
    if let Some((name, _)) = foreign.iter().find(|(_, set)| *set) {
        return Err(ConfigError::invalid(
            format!("{key}.{name}"),
            format!("not a key of kind {:?}", h.kind),
        ));
    }
    match h.kind {
        HandlerKind::Log => Ok(KindSpec::Log),
        HandlerKind::Http => http_spec(key, h),
        HandlerKind::Nats => nats_spec(key, h),
    }
}

fn http_spec(key: &str, h: &HandlerConfig) -> Result<KindSpec, ConfigError> {
    let url_key = format!("{key}.url");
    let url = h
        .url
        .as_deref()
        .ok_or_else(|| ConfigError::invalid(&url_key, "required for kind \"http\""))?;
    let url = url::Url::parse(url).map_err(|e| ConfigError::invalid(&url_key, e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ConfigError::invalid(
            url_key,
            "must be an http or https URL",
        ));
    }
    let secret_key = format!("{key}.secret");
    let secret = h
        .secret
        .as_ref()
        .ok_or_else(|| {
            ConfigError::invalid(
                &secret_key,
                "required for kind \"http\" (a Standard Webhooks whsec_ key)",
            )
        })?
        .resolve(&secret_key)?;
    let signer = StandardWebhookSigner::from_secret(&secret)
        .map_err(|e| ConfigError::invalid(&secret_key, e.to_string()))?;
    Ok(KindSpec::Http { url, signer })
}

fn nats_spec(key: &str, h: &HandlerConfig) -> Result<KindSpec, ConfigError> {
    let prefix = h.subject_prefix.clone().unwrap_or_else(|| "voltage".into());
    let valid_prefix = prefix.split('.').all(|t| {
        !t.is_empty()
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    });
    if !valid_prefix {
        return Err(ConfigError::invalid(
            format!("{key}.subject_prefix"),
            "dot-separated tokens of a-z, 0-9, - and _",
        ));
    }
    let create = match (h.create_stream.unwrap_or(false), &h.stream) {
        (true, Some(name)) => Some(StreamSettings {
            name: name.clone(),
            duplicate_window: Duration::from_secs(h.duplicate_window_secs.unwrap_or(120)),
        }),
        (true, None) => {
            return Err(ConfigError::invalid(
                format!("{key}.stream"),
                "required when create_stream = true",
            ))
        }
        (false, _) => None,
    };
    Ok(KindSpec::Nats { prefix, create })
}
