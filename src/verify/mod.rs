//! Voltage's webhook signature scheme and the order in which a delivery is checked.
//!
//! This module owns the question "did a holder of one of this registration's secrets send exactly
//! these bytes, recently?". It knows nothing about HTTP (the caller hands it header values and the
//! raw body) and nothing about JSON: nothing is parsed before it is verified.
//!
//! The scheme (see `docs/voltage-contract.md`): `base64(HMAC-SHA256(secret, body || "." || timestamp))`,
//! keyed with the secret string as UTF-8 *including* its `vltg_` prefix.

mod registry;
mod signature;

pub use registry::{Environment, Registration, Registry};
pub use signature::{sign, SignatureCheck};

use chrono::{DateTime, Utc};

use crate::error_code::ErrorCode;
use uuid::Uuid;

/// The header names Voltage sends, lower-case as `http` stores them.
pub mod headers {
    pub const WEBHOOK_ID: &str = "x-voltage-webhook-id";
    pub const TIMESTAMP: &str = "x-voltage-timestamp";
    pub const SIGNATURE: &str = "x-voltage-signature";
    pub const EVENT: &str = "x-voltage-event";
}

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

    let timestamp = parse_timestamp(timestamp_text)?;
    check_window(timestamp, now, tolerance_secs)?;
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

/// Voltage sends decimal digits only; signs, spaces or exponents are refused rather than guessed at.
fn parse_timestamp(text: &str) -> Result<i64, VerifyError> {
    let malformed = VerifyError::MissingHeader(headers::TIMESTAMP);
    if text.is_empty() || text.len() > 18 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed);
    }
    text.parse().map_err(|_| malformed)
}

fn check_window(
    timestamp: i64,
    now: DateTime<Utc>,
    tolerance_secs: u64,
) -> Result<(), VerifyError> {
    let skew_secs = timestamp.saturating_sub(now.timestamp());
    if skew_secs.unsigned_abs() > tolerance_secs {
        return Err(VerifyError::StaleTimestamp {
            skew_secs,
            tolerance_secs,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_with_anything_but_digits_are_refused() {
        for bad in [
            "",
            "-1",
            "+1745355553",
            "1745355553 ",
            "1.7e9",
            "0x10",
            "99999999999999999999",
        ] {
            assert_eq!(
                parse_timestamp(bad),
                Err(VerifyError::MissingHeader(headers::TIMESTAMP)),
                "{bad:?}"
            );
        }
        assert_eq!(parse_timestamp("1745355553"), Ok(1_745_355_553));
    }

    #[test]
    fn the_window_applies_to_past_and_future_alike() {
        let now = DateTime::from_timestamp(1_000_000, 0).expect("valid time");
        assert!(check_window(1_000_000 - 300, now, 300).is_ok());
        assert!(check_window(1_000_000 + 300, now, 300).is_ok());
        assert!(check_window(1_000_000 - 301, now, 300).is_err());
        assert!(check_window(1_000_000 + 301, now, 300).is_err());
    }
}
