//! Arbitrary bytes through payload parsing, classification, scope and dedup key: never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voltage_webhooks::event::{DedupKey, Payload};
use voltage_webhooks::verify::Environment;

fuzz_target!(|data: &[u8]| {
    if let Ok(payload) = Payload::parse(data) {
        let env = Environment { name: "production".into(), organization_id: uuid::Uuid::nil(), environment_id: uuid::Uuid::nil(), allow_ips: Vec::new() };
        let _ = payload.check_scope(&env);
        let _ = payload.check_event_header(Some("completed"));
        let _ = DedupKey::new("production", &payload, data);
    }
});
