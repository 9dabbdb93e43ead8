//! The Voltage payload model: parsing verified bytes, classifying them, checking their scope and
//! deriving the key that makes a retried delivery the same event.
//!
//! Forward compatible by design: unknown types, events and statuses are kept, not refused; the exact
//! bytes that were signed are the payload. Only the few fields that drive storage and routing are
//! read out of them, borrowed, without building a tree of the whole document (which cost about a
//! fifth of the service's CPU under load).

mod dedup;
pub mod payment_state;

pub use dedup::DedupKey;

mod routing;

pub use routing::{EventFilter, InvalidFilter, Route, Routing};

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::error_code::ErrorCode;
use crate::verify::Environment;

/// A verified body, parsed and classified.
#[derive(Debug, Clone)]
pub struct Payload {
    /// The body's `type`: `send`, `receive`, `test`, or anything Voltage adds later.
    pub event_type: String,
    /// The body's `detail.event`, e.g. `completed`.
    pub event: String,
    pub payment: Option<PaymentRef>,
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
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Malformed(_) => ErrorCode::MalformedPayload,
            Self::EventMismatch { .. } => ErrorCode::EventMismatch,
            Self::ScopeMismatch { .. } => ErrorCode::ScopeMismatch,
        }
    }
}

impl From<PayloadError> for crate::error_code::Refusal {
    fn from(e: PayloadError) -> Self {
        Self::new(e.code(), e.to_string())
    }
}

impl Payload {
    /// Parses a verified body. It must be a JSON object with a string `type` and a `detail` object
    /// with a string `event`; everything else is optional, and fields of unexpected types are
    /// simply not read (the bytes keep them).
    pub fn parse(raw: &[u8]) -> Result<Self, PayloadError> {
        let envelope: Envelope<'_> = serde_json::from_slice(raw)
            .map_err(|e| PayloadError::Malformed(format!("not a Voltage event ({e})")))?;
        Ok(Self {
            event_type: envelope.event_type.into_owned(),
            event: envelope.detail.event.into_owned(),
            payment: envelope.detail.data.and_then(PaymentRef::from_data),
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
        let (org, env_id) = match &self.payment {
            Some(p) => (p.organization_id.as_deref(), p.environment_id.as_deref()),
            None => (None, None),
        };
        check_scope_ids(
            &self.event_type,
            (org, env_id),
            (env.organization_id, env.environment_id),
        )
    }

    /// The name handlers route on: `receive.completed`.
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.event_type, self.event)
    }
}

/// The scope rule, for a payload or a payment the API returned: `found` (organization id,
/// environment id) must be `expected`; send and receive must carry both, other types are checked
/// on whatever ids they carry.
pub(crate) fn check_scope_ids(
    event_type: &str,
    found: (Option<&str>, Option<&str>),
    expected: (Uuid, Uuid),
) -> Result<(), PayloadError> {
    let must_carry = matches!(event_type, "send" | "receive");
    check_id("organization_id", found.0, expected.0, must_carry)?;
    check_id("environment_id", found.1, expected.1, must_carry)
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

/// `{"type": ..., "detail": {"event": ..., "data": ...}}`; other keys are skipped unread.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    event_type: Cow<'a, str>,
    #[serde(borrow)]
    detail: Detail<'a>,
}

#[derive(Deserialize)]
struct Detail<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    /// A payment object on send/receive, a string on test events: kept raw, read only if an object.
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

/// The payment fields the service reads; each raw, so a value of an unexpected type is ignored
/// rather than failing the event.
#[derive(Deserialize)]
struct PaymentFields<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    status: Option<&'a RawValue>,
    #[serde(borrow, default)]
    updated_at: Option<&'a RawValue>,
    #[serde(borrow, default)]
    organization_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    environment_id: Option<&'a RawValue>,
}

impl PaymentRef {
    fn from_data(data: &RawValue) -> Option<Self> {
        let fields: PaymentFields<'_> = serde_json::from_str(data.get()).ok()?;
        let id = text(fields.id)?;
        let updated_at_text = text(fields.updated_at);
        let updated_at = updated_at_text
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc));
        Some(Self {
            id,
            status: text(fields.status),
            updated_at_text,
            updated_at,
            organization_id: text(fields.organization_id),
            environment_id: text(fields.environment_id),
        })
    }
}

/// The value if it is a JSON string (escapes decoded); `None` for anything else.
fn text(raw: Option<&RawValue>) -> Option<String> {
    let raw = raw?.get();
    if !raw.starts_with('"') {
        return None;
    }
    serde_json::from_str::<Cow<'_, str>>(raw)
        .ok()
        .map(Cow::into_owned)
}

#[cfg(test)]
mod tests;
