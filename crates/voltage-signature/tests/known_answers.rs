//! The known-answer vectors (`tests/vectors/known-answers.json`, copied from the service's
//! `tests/fixtures/voltage/`): every valid vector signs to its signature and verifies; every invalid
//! one (wrong order, wrong separator, key without its prefix, re-serialized body) is refused.

use secrecy::SecretString;
use serde_json::Value;
use voltage_signature::{sign, verify, SignatureCheck, SignatureError};

const VECTORS: &str = include_str!("vectors/known-answers.json");

fn body_file(name: &str) -> &'static [u8] {
    match name {
        "receive-completed-bolt11.json" => include_bytes!("vectors/receive-completed-bolt11.json"),
        "send-succeeded-bolt11.json" => include_bytes!("vectors/send-succeeded-bolt11.json"),
        other => panic!("no vector body {other}: copy it into tests/vectors/"),
    }
}

struct Vector {
    what: String,
    secret: String,
    timestamp: String,
    body: Vec<u8>,
    signature: String,
    valid: bool,
}

fn vectors() -> Vec<Vector> {
    let all: Vec<Value> = serde_json::from_str(VECTORS).expect("valid JSON");
    all.into_iter()
        .map(|v| {
            let text = |key: &str| v[key].as_str().expect(key).to_owned();
            let body = match v["body"].as_str() {
                Some(body) => body.as_bytes().to_vec(),
                None => body_file(v["body_file"].as_str().expect("body or body_file")).to_vec(),
            };
            Vector {
                what: text("what"),
                secret: text("secret"),
                timestamp: text("timestamp"),
                body,
                signature: text("signature"),
                valid: v["valid"].as_bool().expect("valid"),
            }
        })
        .collect()
}

#[test]
fn there_are_valid_and_invalid_vectors() {
    let all = vectors();
    assert!(all.iter().filter(|v| v.valid).count() >= 4);
    assert!(all.iter().filter(|v| !v.valid).count() >= 4);
}

#[test]
fn valid_vectors_sign_to_their_signature_and_verify() {
    for v in vectors().iter().filter(|v| v.valid) {
        assert_eq!(
            sign(&v.secret, &v.body, &v.timestamp),
            v.signature,
            "{}",
            v.what
        );
        let secrets = [
            SecretString::from("vltg_TESTONLYoldSecret00000000000000"),
            SecretString::from(v.secret.as_str()),
        ];
        let now: i64 = v.timestamp.parse().expect("digits");
        let verified = verify(&secrets, &v.body, &v.timestamp, &v.signature, now + 10, 300)
            .unwrap_or_else(|e| panic!("{}: {e}", v.what));
        assert_eq!(verified.secret_index, 1, "{}", v.what);
        assert_eq!(verified.timestamp, now, "{}", v.what);
    }
}

#[test]
fn invalid_vectors_are_refused() {
    for v in vectors().iter().filter(|v| !v.valid) {
        let secrets = [SecretString::from(v.secret.as_str())];
        let check = SignatureCheck::new(&v.body, &v.timestamp, &v.signature);
        assert_eq!(check.matching_index(&secrets), None, "{}", v.what);
        let now: i64 = v.timestamp.parse().expect("digits");
        assert_eq!(
            verify(&secrets, &v.body, &v.timestamp, &v.signature, now, 300),
            Err(SignatureError::InvalidSignature),
            "{}",
            v.what
        );
    }
}
