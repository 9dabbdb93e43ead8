//! Verification and parsing costs per request: `cargo bench --bench verify`.
//!
//! Signature check (the `voltage-signature` crate) over 1 KB and 64 KB bodies with one and two
//! candidate secrets (a rotation), the service's whole `verify` path (registry lookup, timestamp
//! window, HMAC), and payload parsing with classification and the dedup key.

use std::hint::black_box;

use chrono::{DateTime, Utc};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use secrecy::SecretString;
use uuid::Uuid;
use voltage_signature::{sign, SignatureCheck};
use voltage_webhooks::event::{DedupKey, Payload};
use voltage_webhooks::verify::{verify, Delivery, Environment, Registration, Registry};

const SECRET: &str = "vltg_TESTONLYsyntheticSecret000000000";
const OLD: &str = "vltg_TESTONLYoldSecret00000000000000";

fn body_of(size: usize) -> Vec<u8> {
    let filler = "x".repeat(size.saturating_sub(60));
    format!(r#"{{"type":"test","detail":{{"event":"created","data":"{filler}"}}}}"#).into_bytes()
}

fn signature_check(c: &mut Criterion) {
    let mut group = c.benchmark_group("signature_check");
    for size in [1024, 64 * 1024] {
        let body = body_of(size);
        // Signed with the last candidate, so every candidate is computed (as it always is).
        let signature = sign(SECRET, &body, "1760000000");
        group.throughput(Throughput::Bytes(body.len() as u64));
        for candidates in [1usize, 2] {
            let secrets: Vec<SecretString> = [OLD, SECRET][2 - candidates..]
                .iter()
                .map(|s| SecretString::from(*s))
                .collect();
            group.bench_with_input(
                BenchmarkId::new(format!("{candidates}_secrets"), size),
                &body,
                |b, body| {
                    b.iter(|| {
                        SignatureCheck::new(black_box(body), "1760000000", &signature)
                            .matching_index(&secrets)
                    })
                },
            );
        }
    }
    group.finish();
}

fn full_verify(c: &mut Criterion) {
    let webhook = Uuid::new_v4();
    let registry = Registry::new(
        vec![Environment {
            name: "production".into(),
            organization_id: Uuid::nil(),
            environment_id: Uuid::nil(),
            allow_ips: Vec::new(),
        }],
        vec![Registration {
            id: webhook,
            environment: "production".into(),
            secrets: vec![SECRET.into(), OLD.into()],
        }],
    );
    let body = body_of(1500);
    let signature = sign(SECRET, &body, "1760000000");
    let id = webhook.to_string();
    let now = DateTime::<Utc>::from_timestamp(1_760_000_000, 0).expect("time");
    c.bench_function("verify_1500_bytes_rotation", |b| {
        b.iter(|| {
            let delivery = Delivery {
                webhook_id: Some(&id),
                timestamp: Some("1760000000"),
                signature: Some(&signature),
                body: black_box(&body),
            };
            verify(&registry, "production", &delivery, now, 300)
        })
    });
}

fn parsing(c: &mut Criterion) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/voltage/receive-completed-bolt11.json"
    );
    let body = std::fs::read(path).expect("fixture");
    c.bench_function("parse_classify_dedup_receive_completed", |b| {
        b.iter(|| {
            let payload = Payload::parse(black_box(&body)).expect("parses");
            DedupKey::new("production", &payload, &body)
        })
    });
}

criterion_group!(benches, signature_check, full_verify, parsing);
criterion_main!(benches);
