//! HMAC-SHA256 over `body "." timestamp`, compared against every candidate secret in constant time.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use sha2::Sha256;
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

type HmacSha256 = Hmac<Sha256>;

/// The length of an HMAC-SHA256 digest in bytes (44 characters of padded Base64).
pub const DIGEST_LEN: usize = 32;

/// Signs `body "." timestamp` with `secret` the way Voltage does: the value of the
/// [`crate::headers::SIGNATURE`] header. For senders, tests and load generators; a receiver
/// compares with [`SignatureCheck`], never by signing and comparing strings.
///
/// ```
/// let signature = voltage_signature::sign("vltg_secret", b"{}", "1760000000");
/// assert_eq!(signature.len(), 44);
/// ```
pub fn sign(secret: &str, body: &[u8], timestamp: &str) -> String {
    STANDARD.encode(digest(secret.as_bytes(), body, timestamp))
}

fn digest(key: &[u8], body: &[u8], timestamp: &str) -> [u8; DIGEST_LEN] {
    // HMAC accepts keys of any length, so this cannot fail. (An empty key would accept forgeries
    // by anyone who guesses it: receivers refuse empty secrets when loading them.)
    let mut mac = HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(body);
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.finalize().into_bytes().into()
}

/// One delivery's claimed signature, ready to be compared with a registration's secrets.
#[derive(Debug)]
pub struct SignatureCheck<'a> {
    body: &'a [u8],
    timestamp: &'a str,
    /// `None` when the header is not 32 bytes of standard padded Base64: nothing can match then,
    /// and saying so early reveals nothing about any secret.
    claimed: Option<[u8; DIGEST_LEN]>,
}

impl<'a> SignatureCheck<'a> {
    /// The raw body, the timestamp header and the signature header, exactly as received
    /// (surrounding whitespace of the signature header is ignored).
    pub fn new(body: &'a [u8], timestamp: &'a str, signature_header: &str) -> Self {
        let claimed = STANDARD
            .decode(signature_header.trim())
            .ok()
            .and_then(|bytes| <[u8; DIGEST_LEN]>::try_from(bytes).ok());
        Self {
            body,
            timestamp,
            claimed,
        }
    }

    /// The position of the secret that produced the claimed signature, if any; the first one when
    /// several did.
    ///
    /// Every candidate is computed and compared, whatever matched before it, and the position is
    /// selected with `subtle` rather than a branch: the time taken depends only on how many
    /// candidates there are, not on which one matched or how many bytes agreed.
    pub fn matching_index<S: ExposeSecret<str>>(&self, secrets: &[S]) -> Option<usize> {
        let claimed = self.claimed?;
        let mut found = Choice::from(0);
        let mut index = 0u32;
        for (position, secret) in secrets.iter().enumerate() {
            let expected = digest(secret.expose_secret().as_bytes(), self.body, self.timestamp);
            let matches = expected.ct_eq(&claimed);
            let position = u32::try_from(position).unwrap_or(u32::MAX);
            index.conditional_assign(&position, matches & !found);
            found |= matches;
        }
        bool::from(found).then_some(index as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn secrets(values: &[&str]) -> Vec<SecretString> {
        values.iter().map(|v| SecretString::from(*v)).collect()
    }

    #[test]
    fn the_published_real_delivery_verifies() {
        let body = br#"{"type":"test","detail":{"event":"created","data":"testing"}}"#;
        let sig = "XjsqHFOaQNUN02C2N8UMgXq8R/z5DqH2fjtfS4H7hWQ=";
        assert_eq!(
            sign("vltg_mGKaFQHrBNLd9oGfchNapC89cYC8fgtE", body, "1745355553"),
            sig
        );
        let check = SignatureCheck::new(body, "1745355553", sig);
        let candidates = secrets(&["vltg_other", "vltg_mGKaFQHrBNLd9oGfchNapC89cYC8fgtE"]);
        assert_eq!(check.matching_index(&candidates), Some(1));
    }

    #[test]
    fn the_first_matching_position_is_reported_when_two_secrets_match() {
        let sig = sign("vltg_a", b"{}", "1");
        let check = SignatureCheck::new(b"{}", "1", &sig);
        assert_eq!(
            check.matching_index(&secrets(&["vltg_b", "vltg_a", "vltg_a"])),
            Some(1)
        );
    }

    #[test]
    fn undecodable_or_short_signatures_match_nothing() {
        let candidates = secrets(&["vltg_a"]);
        for claimed in ["", "not base64!", "AAAA", &STANDARD.encode([0u8; 31])] {
            assert_eq!(
                SignatureCheck::new(b"{}", "1", claimed).matching_index(&candidates),
                None
            );
        }
    }

    #[test]
    fn no_candidates_match_nothing() {
        let sig = sign("vltg_a", b"{}", "1");
        let none: [SecretString; 0] = [];
        assert_eq!(
            SignatureCheck::new(b"{}", "1", &sig).matching_index(&none),
            None
        );
    }

    #[test]
    fn surrounding_whitespace_in_the_signature_header_is_ignored() {
        let sig = format!(" {} ", sign("vltg_a", b"{}", "1"));
        let check = SignatureCheck::new(b"{}", "1", &sig);
        assert_eq!(check.matching_index(&secrets(&["vltg_a"])), Some(0));
    }
}
