//! No secret, and no signature, reaches a log line, even at TRACE with request headers logged.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;
use sqlx::PgPool;
use tracing_subscriber::fmt::MakeWriter;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[sqlx::test]
async fn secrets_and_signatures_never_reach_the_logs(pool: PgPool) {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

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

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
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
