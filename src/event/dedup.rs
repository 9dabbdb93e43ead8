//! The idempotency key. Voltage sends no event id, so the key comes from content.
//!
//! A payment event is identified by environment, type, event, payment id, status and `updated_at`:
//! a retry re-sends the same payload, and the same event delivered through two registrations of one
//! environment carries the same content, while two partial receipts of one payment differ in
//! `updated_at`. It does not depend on the exact bytes, so a synthetic event built from the payments
//! API for the same state (reconciliation) gets the same key. Anything without a payment id and
//! `updated_at` (test events, unknown shapes) is keyed by a hash of its exact body.

use chrono::SecondsFormat;
use sha2::{Digest, Sha256};

use super::Payload;

/// SHA-256 over a versioned, NUL-separated description of the event; unique per environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DedupKey(pub [u8; 32]);

impl DedupKey {
    pub fn new(environment: &str, payload: &Payload, raw: &[u8]) -> Self {
        let mut hash = Sha256::new();
        let mut field = |bytes: &[u8]| {
            hash.update(bytes);
            hash.update([0u8]);
        };
        field(b"v1");
        field(environment.as_bytes());
        match payload.payment.as_ref() {
            Some(payment) if payment.updated_at_text.is_some() => {
                field(b"payment");
                field(payload.event_type.as_bytes());
                field(payload.event.as_bytes());
                field(payment.id.as_bytes());
                field(payment.status.as_deref().unwrap_or("").as_bytes());
                // Normalised when it parses, so `…58.00000Z` and `…58Z` are one instant.
                let updated = match payment.updated_at {
                    Some(t) => t.to_rfc3339_opts(SecondsFormat::Micros, true),
                    None => payment.updated_at_text.clone().unwrap_or_default(),
                };
                field(updated.as_bytes());
            }
            _ => {
                field(b"body");
                field(raw);
            }
        }
        Self(hash.finalize().into())
    }
}
