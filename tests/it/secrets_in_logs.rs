//! No secret, and no signature, reaches a log line, even at TRACE with request headers logged.

use crate::common::capture::Capture;
use crate::common::*;
use sqlx::PgPool;

#[sqlx::test]
async fn secrets_and_signatures_never_reach_the_logs(pool: PgPool) {
    let capture = Capture::default();
    let _guard = capture.install();

    let app = app(pool.clone());
    let body = fixture("receive-completed-bolt11.json");
    let accepted = production(&body);
    let signatures = vec![accepted.headers()["x-voltage-signature"]
        .to_str()
        .unwrap()
        .to_owned()];
    let requests = vec![
        accepted,
        delivery(
            "production",
            PRODUCTION_WEBHOOK,
            OLD_SECRET,
            b"not json",
            now(),
        ),
        delivery(
            "production",
            PRODUCTION_WEBHOOK,
            "vltg_TESTONLYwrongSecret00000000000",
            &body,
            now(),
        ),
        delivery("production", STAGING_WEBHOOK, STAGING_SECRET, &body, now()),
        delivery("staging", STAGING_WEBHOOK, STAGING_SECRET, &body, now()),
    ];
    for request in requests {
        send(&app, request).await;
    }

    let logs = capture.text();
    // The capture works: the expected lines are there, headers included.
    for expected in [
        "webhook accepted",
        "webhook refused",
        "quarantined",
        "x-voltage-timestamp",
        "production",
    ] {
        assert!(
            logs.contains(expected),
            "log capture lacks {expected:?}:\n{logs}"
        );
    }
    for secret in [
        NEW_SECRET,
        OLD_SECRET,
        SECOND_SECRET,
        STAGING_SECRET,
        "vltg_TESTONLYwrongSecret",
    ] {
        assert!(!logs.contains(secret), "a secret reached the logs");
    }
    for signature in signatures {
        assert!(!logs.contains(&signature), "a signature reached the logs");
    }
}
