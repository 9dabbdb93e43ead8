//! The Voltage payload model: parsing verified bytes, classifying them, checking their scope and
//! deriving the key that makes a retried delivery the same event.
//!
//! Forward compatible by design: unknown types, events and statuses are kept, not refused, and the
//! payload stays a `serde_json::Value` beside the exact bytes that were signed. Only the few fields
//! that drive storage and routing are read out of it.

mod dedup;
pub mod payment_state;

pub use dedup::DedupKey;

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::verify::Environment;

/// A verified body, parsed and classified.
#[derive(Debug, Clone)]
pub struct Payload {
    /// The body's `type`: `send`, `receive`, `test`, or anything Voltage adds later.
    pub event_type: String,
    /// The body's `detail.event`, e.g. `completed`.
    pub event: String,
    pub payment: Option<PaymentRef>,
    pub json: Value,
}

/// What identifies the payment a send/receive event is about, read from `detail.data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRef {
    pub id: String,
    pub status: Option<String>,
    /// Kept as sent, for the dedup key: Voltage re-sends the same string on a retry.
    pub updated_at_text: Option<String>,
    pub updated_at: Option<DateTime<Utc>>,
    pub organization_id: Option<String>,
    pub environment_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("body is not a Voltage event: {0}")]
    Malformed(String),
    #[error("x-voltage-event header {header:?} does not match detail.event {body:?}")]
    EventMismatch { header: String, body: String },
    #[error("payment's {field} {found:?} does not belong to this environment")]
    ScopeMismatch { field: &'static str, found: String },
}

impl PayloadError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed_payload",
            Self::EventMismatch { .. } => "event_mismatch",
            Self::ScopeMismatch { .. } => "scope_mismatch",
        }
    }
}

impl Payload {
    /// Parses a verified body. It must be a JSON object with a string `type` and a `detail` object
    /// with a string `event`; everything else is optional and kept as it came.
    pub fn parse(raw: &[u8]) -> Result<Self, PayloadError> {
        let json: Value = serde_json::from_slice(raw)
            .map_err(|e| PayloadError::Malformed(format!("not JSON ({e})")))?;
        let event_type = string_at(&json, "/type")
            .ok_or_else(|| PayloadError::Malformed("no string `type`".into()))?;
        if !json.get("detail").is_some_and(Value::is_object) {
            return Err(PayloadError::Malformed("no object `detail`".into()));
        }
        let event = string_at(&json, "/detail/event")
            .ok_or_else(|| PayloadError::Malformed("no string `detail.event`".into()))?;
        let payment = json.pointer("/detail/data").and_then(PaymentRef::from_data);
        Ok(Self {
            event_type,
            event,
            payment,
            json,
        })
    }

    /// `x-voltage-event` is not signed; when present it must agree with the signed body.
    pub fn check_event_header(&self, header: Option<&str>) -> Result<(), PayloadError> {
        match header {
            Some(h) if h != self.event => Err(PayloadError::EventMismatch {
                header: h.to_owned(),
                body: self.event.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// A payment event must name this environment's organization and environment. Send and receive
    /// events must carry both ids; other types are checked on whatever ids they do carry.
    pub fn check_scope(&self, env: &Environment) -> Result<(), PayloadError> {
        let must_carry = matches!(self.event_type.as_str(), "send" | "receive");
        let (org, env_id) = match &self.payment {
            Some(p) => (p.organization_id.as_deref(), p.environment_id.as_deref()),
            None => (None, None),
        };
        check_id("organization_id", org, env.organization_id, must_carry)?;
        check_id("environment_id", env_id, env.environment_id, must_carry)
    }

    /// The name handlers route on: `receive.completed`.
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.event_type, self.event)
    }
}

fn check_id(
    field: &'static str,
    found: Option<&str>,
    expected: Uuid,
    required: bool,
) -> Result<(), PayloadError> {
    match found {
        Some(text) if Uuid::parse_str(text).ok() == Some(expected) => Ok(()),
        None if !required => Ok(()),
        other => Err(PayloadError::ScopeMismatch {
            field,
            found: other.unwrap_or("(absent)").to_owned(),
        }),
    }
}

impl PaymentRef {
    fn from_data(data: &Value) -> Option<Self> {
        let id = string_at(data, "/id")?;
        let updated_at_text = string_at(data, "/updated_at");
        let updated_at = updated_at_text
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc));
        Some(Self {
            id,
            status: string_at(data, "/status"),
            updated_at_text,
            updated_at,
            organization_id: string_at(data, "/organization_id"),
            environment_id: string_at(data, "/environment_id"),
        })
    }
}

fn string_at(value: &Value, pointer: &str) -> Option<String> {
    value.pointer(pointer)?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests;
