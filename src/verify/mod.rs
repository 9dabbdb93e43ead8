//! The order in which a delivery is checked, and the registrations it is checked against.
//!
//! This module owns the question "did a holder of one of this registration's secrets send exactly
//! these bytes, recently?". It knows nothing about HTTP (the caller hands it header values and the
//! raw body) and nothing about JSON: nothing is parsed before it is verified.
//!
//! The scheme itself (`base64(HMAC-SHA256(secret, body || "." || timestamp))`, the constant-time
//! comparison with every candidate, the timestamp window, the header names) is the
//! `voltage-signature` crate (`crates/voltage-signature`); this module adds the registry, the
//! environment check and Voltage's order of checks, and maps the crate's errors to the service's.

mod registry;

pub use registry::{Environment, Registration, Registry};
pub use voltage_signature::{headers, sign, SignatureCheck};

use voltage_signature::SignatureError;

use chrono::{DateTime, Utc};

use crate::error_code::ErrorCode;
use uuid::Uuid;

/// What a delivery carries that verification needs, before anything is trusted.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    pub webhook_id: Option<&'a str>,
    pub timestamp: Option<&'a str>,
    pub signature: Option<&'a str>,
    pub body: &'a [u8],
}

/// Why a delivery was refused. Each variant maps to one stable error code at the HTTP edge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing or malformed header {0}")]
    MissingHeader(&'static str),
    #[error("no webhook registration with this id is configured")]
    UnknownWebhook,
    #[error("webhook registration belongs to environment {registered}, not {requested}")]
    WrongEnvironment {
        registered: String,
        requested: String,
    },
    #[error("timestamp is {skew_secs} s away from now, outside the allowed {tolerance_secs} s")]
    StaleTimestamp { skew_secs: i64, tolerance_secs: u64 },
    #[error("signature does not match any secret of this registration")]
    InvalidSignature,
}

impl From<SignatureError> for VerifyError {
    /// A malformed timestamp is reported as a malformed header, as before the scheme became a crate.
    fn from(error: SignatureError) -> Self {
        match error {
            SignatureError::MalformedTimestamp => Self::MissingHeader(headers::TIMESTAMP),
            SignatureError::StaleTimestamp {
                skew_secs,
                tolerance_secs,
            } => Self::StaleTimestamp {
                skew_secs,
                tolerance_secs,
            },
            SignatureError::InvalidSignature => Self::InvalidSignature,
        }
    }
}

impl VerifyError {
    /// The stable machine-readable code clients and dashboards key on.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::MissingHeader(_) => ErrorCode::MissingHeader,
            Self::UnknownWebhook => ErrorCode::UnknownWebhook,
            Self::WrongEnvironment { .. } => ErrorCode::WrongEnvironment,
            Self::StaleTimestamp { .. } => ErrorCode::StaleTimestamp,
            Self::InvalidSignature => ErrorCode::InvalidSignature,
        }
    }
}

impl From<VerifyError> for crate::error_code::Refusal {
    fn from(e: VerifyError) -> Self {
        Self::new(e.code(), e.to_string())
    }
}

/// Proof that a delivery was verified: which registration and which of its secrets (by position,
/// never by value) matched. Only [`verify`] constructs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub webhook_id: Uuid,
    pub secret_index: usize,
    /// The signed timestamp header, in Unix seconds.
    pub timestamp: i64,
}

/// What the headers alone establish: the registration is known and in this environment, the
/// timestamp is inside the window. Checked before the body is read, so a request that cannot be
/// authentic costs no buffer.
#[derive(Debug, Clone, Copy)]
pub struct Prechecked<'a> {
    registration: &'a Registration,
    timestamp_text: &'a str,
    signature: &'a str,
    timestamp: i64,
}

/// The header checks, in the order Voltage prescribes: headers present, registration known and in
/// this environment, timestamp inside the window. The body is not needed (and not read) yet.
pub fn precheck<'a>(
    registry: &'a Registry,
    environment: &str,
    delivery: &Delivery<'a>,
    now: DateTime<Utc>,
    tolerance_secs: u64,
) -> Result<Prechecked<'a>, VerifyError> {
    let webhook_id = delivery
        .webhook_id
        .ok_or(VerifyError::MissingHeader(headers::WEBHOOK_ID))?;
    let timestamp_text = delivery
        .timestamp
        .ok_or(VerifyError::MissingHeader(headers::TIMESTAMP))?;
    let signature = delivery
        .signature
        .ok_or(VerifyError::MissingHeader(headers::SIGNATURE))?;

    let registration = registry.registration(webhook_id)?;
    if registration.environment != environment {
        return Err(VerifyError::WrongEnvironment {
            registered: registration.environment.clone(),
            requested: environment.to_owned(),
        });
    }

    let timestamp =
        voltage_signature::check_timestamp(timestamp_text, now.timestamp(), tolerance_secs)?;
    Ok(Prechecked {
        registration,
        timestamp_text,
        signature,
        timestamp,
    })
}

impl Prechecked<'_> {
    /// The signature over `body` against every candidate secret, in constant time.
    pub fn check_signature(&self, body: &[u8]) -> Result<Verified, VerifyError> {
        let check = SignatureCheck::new(body, self.timestamp_text, self.signature);
        let secret_index = check
            .matching_index(&self.registration.secrets)
            .ok_or(VerifyError::InvalidSignature)?;
        Ok(Verified {
            webhook_id: self.registration.id,
            secret_index,
            timestamp: self.timestamp,
        })
    }
}

/// Checks one delivery whose body is at hand: [`precheck`], then the signature.
pub fn verify(
    registry: &Registry,
    environment: &str,
    delivery: &Delivery<'_>,
    now: DateTime<Utc>,
    tolerance_secs: u64,
) -> Result<Verified, VerifyError> {
    precheck(registry, environment, delivery, now, tolerance_secs)?.check_signature(delivery.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> (Registry, Uuid) {
        let id = Uuid::from_u128(7);
        let registry = Registry::new(
            vec![Environment {
                name: "production".into(),
                organization_id: id,
                environment_id: id,
                allow_ips: Vec::new(),
            }],
            vec![Registration {
                id,
                environment: "production".into(),
                secrets: vec!["vltg_a".into()],
            }],
        );
        (registry, id)
    }

    #[test]
    fn the_crate_errors_map_to_the_service_codes() {
        let (registry, id) = registry();
        let id = id.to_string();
        let now = DateTime::from_timestamp(1_000_000, 0).expect("valid time");
        let signature = sign("vltg_a", b"{}", "1000000");
        let delivery = |timestamp, body| Delivery {
            webhook_id: Some(&id),
            timestamp: Some(timestamp),
            signature: Some(&signature),
            body,
        };
        let code = |d: &Delivery<'_>| {
            verify(&registry, "production", d, now, 300).map_err(|e| e.code().as_str())
        };
        assert_eq!(
            code(&delivery("1000000", b"{}")).map(|v| v.secret_index),
            Ok(0)
        );
        assert_eq!(code(&delivery("+1000000", b"{}")), Err("missing_header"));
        assert_eq!(code(&delivery("999699", b"{}")), Err("stale_timestamp"));
        assert_eq!(code(&delivery("1000000", b"{ }")), Err("invalid_signature"));
        assert_eq!(
            verify(&registry, "production", &delivery("-1", b"{}"), now, 300),
            Err(VerifyError::MissingHeader(headers::TIMESTAMP))
        );
    }
}
