use super::*;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/voltage");

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).expect("fixture readable")
}

fn production() -> Environment {
    Environment {
        name: "production".into(),
        organization_id: Uuid::parse_str("b0684ab8-1130-46af-8f70-71519442f108").expect("uuid"),
        environment_id: Uuid::parse_str("123e4567-e89b-12d3-a456-426614174000").expect("uuid"),
        allow_ips: Vec::new(),
    }
}

#[test]
fn a_receive_event_is_classified_with_its_payment() {
    let payload = Payload::parse(&fixture("receive-generated-bolt11.json")).expect("parses");
    assert_eq!(payload.qualified_name(), "receive.generated");
    let payment = payload.payment.as_ref().expect("payment");
    assert_eq!(payment.id, "11ca843c-bdaa-44b6-965a-39ac550fcef7");
    assert_eq!(payment.status.as_deref(), Some("receiving"));
    assert!(payment.updated_at.is_some());
    payload.check_scope(&production()).expect("in scope");
}

#[test]
fn a_payment_of_another_organization_is_out_of_scope() {
    let payload = Payload::parse(&fixture("send-succeeded-bolt11.json")).expect("parses");
    let err = payload.check_scope(&production()).expect_err("other org");
    assert_eq!(err.code().as_str(), "scope_mismatch");
}

#[test]
fn a_send_event_without_scope_ids_is_out_of_scope() {
    let body = br#"{"type":"send","detail":{"event":"succeeded","data":{"id":"p1"}}}"#;
    let payload = Payload::parse(body).expect("parses");
    assert!(payload.check_scope(&production()).is_err());
}

#[test]
fn test_events_carry_no_payment_and_need_no_scope() {
    let payload = Payload::parse(&fixture("test-created.json")).expect("parses");
    assert!(payload.payment.is_none());
    payload
        .check_scope(&production())
        .expect("test events have no scope");
}

#[test]
fn unknown_types_and_events_are_accepted() {
    let body = br#"{"type":"refund","detail":{"event":"queued","data":{"anything":[1,2]}}}"#;
    let payload = Payload::parse(body).expect("parses");
    assert_eq!(payload.qualified_name(), "refund.queued");
}

#[test]
fn bodies_that_are_not_voltage_events_are_malformed() {
    for body in [
        &b"not json"[..],
        b"[]",
        b"{\"detail\":{\"event\":\"x\"}}",
        b"{\"type\":\"send\"}",
        b"{\"type\":\"send\",\"detail\":\"x\"}",
        b"{\"type\":1,\"detail\":{\"event\":\"x\"}}",
        b"{\"type\":\"send\",\"detail\":{}}",
    ] {
        let err = Payload::parse(body).expect_err("malformed");
        assert_eq!(
            err.code(),
            crate::error_code::ErrorCode::MalformedPayload,
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn the_event_header_must_match_the_signed_event() {
    let payload = Payload::parse(&fixture("test-created.json")).expect("parses");
    assert!(payload.check_event_header(None).is_ok());
    assert!(payload.check_event_header(Some("created")).is_ok());
    assert_eq!(
        payload
            .check_event_header(Some("test.created"))
            .expect_err("mismatch")
            .code(),
        crate::error_code::ErrorCode::EventMismatch
    );
}

#[test]
fn the_same_state_reformatted_has_the_same_key_but_another_state_does_not() {
    let raw = fixture("send-failed-onchain.json");
    let payload = Payload::parse(&raw).expect("parses");
    let key = DedupKey::new("production", &payload, &raw);

    // Whitespace and key order do not change the event.
    let json: serde_json::Value = serde_json::from_slice(&raw).expect("JSON");
    let reformatted = serde_json::to_vec_pretty(&json).expect("serializes");
    let same = Payload::parse(&reformatted).expect("parses");
    assert_eq!(DedupKey::new("production", &same, &reformatted), key);

    // Another environment, or a later updated_at, is another event.
    assert_ne!(DedupKey::new("staging", &payload, &raw), key);
    let mut later = json.clone();
    later["detail"]["data"]["updated_at"] = "2025-02-12T21:23:00Z".into();
    let later_raw = serde_json::to_vec(&later).expect("serializes");
    let later = Payload::parse(&later_raw).expect("parses");
    assert_ne!(DedupKey::new("production", &later, &later_raw), key);
}

#[test]
fn updated_at_with_trailing_zeros_is_the_same_instant() {
    let make = |ts: &str| {
        let raw = format!(
            r#"{{"type":"send","detail":{{"event":"failed","data":{{"id":"p","status":"failed","updated_at":"{ts}"}}}}}}"#
        );
        let payload = Payload::parse(raw.as_bytes()).expect("parses");
        DedupKey::new("production", &payload, raw.as_bytes())
    };
    assert_eq!(
        make("2025-02-12T21:22:58.00000Z"),
        make("2025-02-12T21:22:58Z")
    );
}

#[test]
fn bodies_without_payment_identity_are_keyed_by_their_bytes() {
    let a = br#"{"type":"test","detail":{"event":"created","data":"testing"}}"#;
    let b = br#"{"type":"test","detail":{"event":"created","data":"testing2"}}"#;
    let key = |raw: &[u8]| DedupKey::new("production", &Payload::parse(raw).expect("parses"), raw);
    assert_eq!(key(a), key(a));
    assert_ne!(key(a), key(b));
}

#[test]
fn fields_of_unexpected_types_are_not_read_and_shapes_that_are_not_events_are_refused() {
    let payload = Payload::parse(
        br#"{"type":"receive","extra":[1,{"a":null}],"detail":{"event":"completed","data":{"id":"p\u0031","status":5,"updated_at":null,"organization_id":{"x":1}}}}"#,
    )
    .expect("parses");
    let payment = payload.payment.expect("a payment");
    assert_eq!(payment.id, "p1", "escapes are decoded");
    assert_eq!(payment.status, None);
    assert_eq!(payment.updated_at_text, None);
    assert_eq!(payment.organization_id, None);

    let test = Payload::parse(br#"{"type":"test","detail":{"event":"created","data":"hello"}}"#)
        .expect("parses");
    assert_eq!(test.payment, None);
    let no_id = Payload::parse(br#"{"type":"send","detail":{"event":"failed","data":{"id":7}}}"#)
        .expect("parses");
    assert_eq!(no_id.payment, None);

    for malformed in [
        &br#"[]"#[..],
        br#"{"detail":{"event":"x"}}"#,
        br#"{"type":1,"detail":{"event":"x"}}"#,
        br#"{"type":"send","detail":"x"}"#,
        br#"{"type":"send","detail":{}}"#,
        br#"{"type":"send","detail":{"event":"x"}"#,
    ] {
        assert!(
            matches!(Payload::parse(malformed), Err(PayloadError::Malformed(_))),
            "{}",
            String::from_utf8_lossy(malformed)
        );
    }
}
