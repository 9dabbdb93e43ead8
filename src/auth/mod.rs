//! Downstream access: API keys (generation, hashing, permissions) and the client-address rule
//! behind IP allow-lists. Knows nothing about HTTP: the HTTP module hands it header values.
//!
//! Keys follow Voltage's model for its own API: one environment per key, read or write, an optional
//! IP allow-list, a descriptive name, rotation with a grace period.

mod client_ip;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore as _;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

pub use client_ip::{client_ip, parse_cidrs, within};

/// Every key starts with this, so a leaked one is recognisable by secret scanners.
pub const KEY_PREFIX: &str = "vwk_";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Permission {
    Read,
    Write,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "read" => Some(Self::Read),
            "write" => Some(Self::Write),
            _ => None,
        }
    }

    /// read allows every GET; write also allows replay and retry.
    pub fn allows(self, needed: Permission) -> bool {
        self >= needed
    }
}

/// A new key: shown once, then only its hash is kept.
#[derive(Debug)]
pub struct NewKey {
    pub plaintext: SecretString,
    pub hash: [u8; 32],
    /// The first characters, for listings.
    pub hint: String,
}

/// `vwk_` + 32 random bytes (256 bits) in URL-safe Base64.
pub fn generate_key() -> NewKey {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let plaintext = format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let hint = plaintext[..KEY_PREFIX.len() + 4].to_owned();
    let hash = hash_key(&plaintext);
    NewKey {
        plaintext: SecretString::from(plaintext),
        hash,
        hint,
    }
}

/// The stored form of a key. A plain SHA-256 suffices (no slow hash): the key is 256 random bits,
/// not a password, so there is nothing to brute-force.
pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

pub fn hash_secret(key: &SecretString) -> [u8; 32] {
    hash_key(key.expose_secret())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_prefixed_random_and_hashed() {
        let a = generate_key();
        let b = generate_key();
        assert!(a.plaintext.expose_secret().starts_with("vwk_"));
        assert_eq!(a.plaintext.expose_secret().len(), 4 + 43);
        assert_ne!(a.plaintext.expose_secret(), b.plaintext.expose_secret());
        assert_eq!(a.hash, hash_key(a.plaintext.expose_secret()));
        assert!(a.plaintext.expose_secret().starts_with(&a.hint));
        assert!(!format!("{a:?}").contains(a.plaintext.expose_secret()));
    }

    #[test]
    fn write_includes_read_but_not_the_reverse() {
        assert!(Permission::Write.allows(Permission::Read));
        assert!(!Permission::Read.allows(Permission::Write));
    }
}
