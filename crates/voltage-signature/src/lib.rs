//! Voltage Payments webhook signatures.
//!
//! Voltage signs each delivery with `base64(HMAC-SHA256(secret, body || "." || timestamp))`:
//!
//! - the key is the shared secret string as UTF-8 bytes, *including* its `vltg_` prefix (it is not
//!   decoded);
//! - the message is the raw body bytes, one `.` byte, then the [`headers::TIMESTAMP`] header string
//!   (Unix seconds in decimal digits): the body comes first;
//! - the [`headers::SIGNATURE`] header carries the digest in standard padded Base64.
//!
//! A receiver picks the candidate secrets by [`headers::WEBHOOK_ID`] (a registration has more than
//! one during a rotation), refuses a timestamp outside its window ([`check_timestamp`]), compares the
//! signature with every candidate in constant time ([`SignatureCheck`]), and only then parses the
//! body. [`verify`] does the last two steps in that order.
//!
//! This crate depends on no web framework, database or async runtime: it takes header values and
//! the raw body as they arrived, and the current time as Unix seconds ([`now_unix`]).
//!
//! # Example
//!
//! ```
//! use secrecy::SecretString;
//! use voltage_signature::{sign, verify, SignatureError};
//!
//! let body = br#"{"type":"test","detail":{"event":"created","data":"testing"}}"#;
//! let timestamp = "1745355553";
//! let signature = sign("vltg_mGKaFQHrBNLd9oGfchNapC89cYC8fgtE", body, timestamp);
//! assert_eq!(signature, "XjsqHFOaQNUN02C2N8UMgXq8R/z5DqH2fjtfS4H7hWQ=");
//!
//! // During a rotation both the old and the new secret are candidates.
//! let secrets = [
//!     SecretString::from("vltg_oldSecret"),
//!     SecretString::from("vltg_mGKaFQHrBNLd9oGfchNapC89cYC8fgtE"),
//! ];
//! let now = 1_745_355_600; // in a receiver: voltage_signature::now_unix()
//! let verified = verify(&secrets, body, timestamp, &signature, now, 300)?;
//! assert_eq!(verified.secret_index, 1);
//! assert_eq!(verified.timestamp, 1_745_355_553);
//!
//! // A tampered body, or a timestamp outside the window, is refused.
//! assert_eq!(
//!     verify(&secrets, b"{}", timestamp, &signature, now, 300),
//!     Err(SignatureError::InvalidSignature)
//! );
//! assert!(matches!(
//!     verify(&secrets, body, timestamp, &signature, now + 3600, 300),
//!     Err(SignatureError::StaleTimestamp { .. })
//! ));
//! # Ok::<(), SignatureError>(())
//! ```
#![deny(missing_docs)]

mod signature;
mod timestamp;

pub use signature::{sign, SignatureCheck, DIGEST_LEN};
pub use timestamp::{check_timestamp, check_window, now_unix, parse_timestamp};

/// The header names Voltage sends, lower-case (as the `http` crate stores them).
pub mod headers {
    /// The registration's UUID: selects the candidate secrets.
    pub const WEBHOOK_ID: &str = "x-voltage-webhook-id";
    /// Unix seconds in decimal digits; signed together with the body.
    pub const TIMESTAMP: &str = "x-voltage-timestamp";
    /// Standard padded Base64 of the HMAC-SHA256 digest.
    pub const SIGNATURE: &str = "x-voltage-signature";
    /// The body's `detail.event` (not signed: the body is authoritative).
    pub const EVENT: &str = "x-voltage-event";
}

/// Why a timestamp or signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The timestamp header is not decimal digits only (signs, spaces, exponents and overlong
    /// values are refused rather than guessed at).
    #[error("malformed timestamp header {}", headers::TIMESTAMP)]
    MalformedTimestamp,
    /// The timestamp is further from now than the tolerance, in the past or the future.
    #[error("timestamp is {skew_secs} s away from now, outside the allowed {tolerance_secs} s")]
    StaleTimestamp {
        /// The timestamp minus now, in seconds: negative in the past.
        skew_secs: i64,
        /// The allowed distance either way, in seconds.
        tolerance_secs: u64,
    },
    /// The signature matches none of the candidate secrets (or is not 32 bytes of Base64).
    #[error("signature does not match any candidate secret")]
    InvalidSignature,
}

/// What a successful [`verify`] established.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// The position of the candidate secret that matched (never its value).
    pub secret_index: usize,
    /// The signed timestamp, in Unix seconds.
    pub timestamp: i64,
}

/// Checks one delivery against its registration's candidate secrets: the timestamp is parsed and
/// checked against the window first (cheap, and needs no secret), then the signature is compared
/// with every candidate in constant time.
///
/// `now` is Unix seconds ([`now_unix`]); `tolerance_secs` applies to the past and the future alike.
pub fn verify<S: secrecy::ExposeSecret<str>>(
    secrets: &[S],
    body: &[u8],
    timestamp_header: &str,
    signature_header: &str,
    now: i64,
    tolerance_secs: u64,
) -> Result<Verified, SignatureError> {
    let timestamp = check_timestamp(timestamp_header, now, tolerance_secs)?;
    let secret_index = SignatureCheck::new(body, timestamp_header, signature_header)
        .matching_index(secrets)
        .ok_or(SignatureError::InvalidSignature)?;
    Ok(Verified {
        secret_index,
        timestamp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    #[test]
    fn verify_checks_the_window_before_the_signature() {
        let secrets = [SecretString::from("vltg_a")];
        // A bad signature and a stale timestamp: the timestamp is reported.
        assert!(matches!(
            verify(&secrets, b"{}", "1", "AAAA", 1_000_000, 300),
            Err(SignatureError::StaleTimestamp { .. })
        ));
        assert_eq!(
            verify(&secrets, b"{}", "x", "AAAA", 1_000_000, 300),
            Err(SignatureError::MalformedTimestamp)
        );
        let signature = sign("vltg_a", b"{}", "1000000");
        assert_eq!(
            verify(&secrets, b"{}", "1000000", &signature, 1_000_000, 300),
            Ok(Verified {
                secret_index: 0,
                timestamp: 1_000_000
            })
        );
        assert_eq!(
            verify(&secrets, b"{ }", "1000000", &signature, 1_000_000, 300),
            Err(SignatureError::InvalidSignature)
        );
    }
}

/// The README's example, compiled and run as a doctest (`cargo test -p voltage-signature --doc`).
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
