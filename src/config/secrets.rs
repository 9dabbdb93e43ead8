//! Where a secret comes from: an environment variable, a file (e.g. a mounted Kubernetes Secret), or
//! an inline value for local use.

use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::ConfigError;

/// `{ env = "NAME" }`, `{ file = "/path" }` or `{ value = "..." }`: exactly one of them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    env: Option<String>,
    file: Option<PathBuf>,
    value: Option<SecretString>,
}

impl SecretRef {
    pub fn from_env(name: impl Into<String>) -> Self {
        Self {
            env: Some(name.into()),
            file: None,
            value: None,
        }
    }

    pub fn is_inline(&self) -> bool {
        self.value.is_some()
    }

    /// Reads the secret. Surrounding whitespace (a file's final newline) is trimmed; an empty
    /// result is an error, since an empty HMAC key would accept forgeries by anyone who guesses it.
    pub fn resolve(&self, key: &str) -> Result<SecretString, ConfigError> {
        let raw = match (&self.env, &self.file, &self.value) {
            (Some(name), None, None) => std::env::var(name).map_err(|_| {
                ConfigError::invalid(key, format!("environment variable {name} is not set"))
            })?,
            (None, Some(path), None) => std::fs::read_to_string(path).map_err(|e| {
                ConfigError::invalid(key, format!("cannot read {}: {}", path.display(), e.kind()))
            })?,
            (None, None, Some(value)) => value.expose_secret().to_owned(),
            _ => return Err(ConfigError::invalid(
                key,
                "a secret is exactly one of { env = NAME }, { file = PATH } or { value = \"...\" }",
            )),
        };
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(ConfigError::invalid(key, "the secret is empty"));
        }
        Ok(SecretString::from(trimmed.to_owned()))
    }
}
