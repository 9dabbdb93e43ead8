//! Arbitrary header values and bodies through verification, both the `voltage-signature` crate's
//! `verify` and the service's (registry, environment, order of checks): never a panic, and nothing
//! verifies without the secret. Input: webhook id, timestamp and signature headers, then the body,
//! separated by NUL bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voltage_webhooks::verify::{verify, Delivery, Environment, Registration, Registry};

fn text(part: Option<&[u8]>) -> Option<&str> {
    part.and_then(|p| std::str::from_utf8(p).ok())
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(4, |b| *b == 0);
    let (webhook_id, timestamp, signature) = (text(parts.next()), text(parts.next()), text(parts.next()));
    let body = parts.next().unwrap_or_default();
    let id = uuid::Uuid::from_u128(1);
    let registry = Registry::new(
        vec![Environment { name: "production".into(), organization_id: id, environment_id: id, allow_ips: Vec::new() }],
        vec![Registration { id, environment: "production".into(), secrets: vec!["vltg_fuzzSecret".into()] }],
    );
    let delivery = Delivery { webhook_id, timestamp, signature, body };
    let now = chrono::DateTime::from_timestamp(1_760_000_000, 0).unwrap_or_default();
    // A random input carrying a valid signature would be a forgery.
    assert!(verify(&registry, "production", &delivery, now, u64::MAX).is_err());
    if let (Some(timestamp), Some(signature)) = (timestamp, signature) {
        let secrets = [secrecy::SecretString::from("vltg_fuzzSecret")];
        assert!(voltage_signature::verify(&secrets, body, timestamp, signature, 1_760_000_000, u64::MAX).is_err());
    }
});
