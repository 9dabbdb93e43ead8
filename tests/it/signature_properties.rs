//! Properties of the signature scheme: anything correctly signed verifies; flipping any one bit of
//! the body, the timestamp or the signature makes it fail. Nothing here can panic on any input.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use proptest::prelude::*;
use secrecy::SecretString;
use voltage_webhooks::event::Payload;
use voltage_webhooks::verify::{sign, SignatureCheck};

fn secrets() -> Vec<SecretString> {
    vec![
        SecretString::from("vltg_TESTONLYoldSecret00000000000000"),
        SecretString::from("vltg_TESTONLYsyntheticSecret000000000"),
    ]
}

const SECRET: &str = "vltg_TESTONLYsyntheticSecret000000000";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_correctly_signed_body_verifies(body in proptest::collection::vec(any::<u8>(), 0..4096), ts in 0u64..10_000_000_000) {
        let ts = ts.to_string();
        let signature = sign(SECRET, &body, &ts);
        prop_assert_eq!(SignatureCheck::new(&body, &ts, &signature).matching_index(&secrets()), Some(1));
    }

    #[test]
    fn one_flipped_bit_in_the_body_fails(body in proptest::collection::vec(any::<u8>(), 1..2048), bit in any::<prop::sample::Index>()) {
        let signature = sign(SECRET, &body, "1760000000");
        let mut tampered = body.clone();
        let i = bit.index(body.len() * 8);
        tampered[i / 8] ^= 1 << (i % 8);
        prop_assert_eq!(SignatureCheck::new(&tampered, "1760000000", &signature).matching_index(&secrets()), None);
    }

    #[test]
    fn one_flipped_bit_in_the_timestamp_fails(ts in 1_000_000_000u64..9_999_999_999, bit in 0usize..80) {
        let ts = ts.to_string();
        let signature = sign(SECRET, b"{}", &ts);
        let mut bytes = ts.clone().into_bytes();
        let position = (bit / 8) % bytes.len();
        bytes[position] ^= 1 << (bit % 8);
        let tampered = String::from_utf8_lossy(&bytes).into_owned();
        prop_assume!(tampered != ts);
        prop_assert_eq!(SignatureCheck::new(b"{}", &tampered, &signature).matching_index(&secrets()), None);
    }

    #[test]
    fn one_flipped_bit_in_the_signature_fails(body in proptest::collection::vec(any::<u8>(), 0..512), bit in 0usize..256) {
        let signature = sign(SECRET, &body, "1760000000");
        let mut digest = STANDARD.decode(&signature).unwrap();
        digest[bit / 8] ^= 1 << (bit % 8);
        let tampered = STANDARD.encode(digest);
        prop_assert_eq!(SignatureCheck::new(&body, "1760000000", &tampered).matching_index(&secrets()), None);
    }

    #[test]
    fn arbitrary_headers_and_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..1024), ts in ".{0,40}", sig in ".{0,80}") {
        let _ = SignatureCheck::new(&body, &ts, &sig).matching_index(&secrets());
        let _ = Payload::parse(&body);
    }
}
