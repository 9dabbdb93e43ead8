//! The resolved registrations: which webhook id belongs to which environment, with which secrets.

use std::collections::{BTreeMap, HashMap};

use secrecy::SecretString;
use uuid::Uuid;

use super::VerifyError;

/// One environment of the Voltage organization (staging, production, ...), as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    pub name: String,
    /// A send/receive body must carry these ids: they are the only sign of scope inside a body.
    pub organization_id: Uuid,
    pub environment_id: Uuid,
    /// Where deliveries may come from; empty: anywhere.
    pub allow_ips: Vec<ipnet::IpNet>,
}

/// One webhook registration at Voltage and the secrets currently accepted for it.
#[derive(Debug, Clone)]
pub struct Registration {
    pub id: Uuid,
    pub environment: String,
    /// Old and new during a rotation; the position is recorded with each event so an operator can
    /// see when the old one stops being used. `SecretString` keeps the values out of `Debug`.
    pub secrets: Vec<SecretString>,
}

/// Everything verification needs, resolved once at start-up (and again on reload).
#[derive(Debug, Clone, Default)]
pub struct Registry {
    environments: BTreeMap<String, Environment>,
    registrations: HashMap<Uuid, Registration>,
}

impl Registry {
    pub fn new(environments: Vec<Environment>, registrations: Vec<Registration>) -> Self {
        Self {
            environments: environments
                .into_iter()
                .map(|e| (e.name.clone(), e))
                .collect(),
            registrations: registrations.into_iter().map(|r| (r.id, r)).collect(),
        }
    }

    pub fn environment(&self, name: &str) -> Option<&Environment> {
        self.environments.get(name)
    }

    pub fn environments(&self) -> impl Iterator<Item = &Environment> {
        self.environments.values()
    }

    /// The registrations of one environment.
    pub fn registrations_of<'a>(
        &'a self,
        environment: &'a str,
    ) -> impl Iterator<Item = &'a Registration> {
        self.registrations
            .values()
            .filter(move |r| r.environment == environment)
    }

    /// The registration named by an `x-voltage-webhook-id` header value, in any environment.
    pub fn registration(&self, webhook_id: &str) -> Result<&Registration, VerifyError> {
        let id = Uuid::parse_str(webhook_id.trim()).map_err(|_| VerifyError::UnknownWebhook)?;
        self.registrations
            .get(&id)
            .ok_or(VerifyError::UnknownWebhook)
    }
}
