//! API keys: environment scope, permissions, revocation, expiry, rotation, allow-lists (with and
//! without trusted proxies), and no key in clear anywhere in the database.

use std::time::Duration;

use crate::common::api::*;
use crate::common::*;
use axum::http::StatusCode;
use sqlx::PgPool;
use voltage_webhooks::auth::{generate_key, Permission};
use voltage_webhooks::store::Store;

const EVENTS: &str = "/v1/environments/production/events";

#[sqlx::test]
async fn a_key_reads_only_its_own_environment(pool: PgPool) {
    let production = key(
        &pool,
        "svc-production-read",
        "production",
        Permission::Read,
        &[],
    )
    .await;
    let staging = key(&pool, "svc-staging-read", "staging", Permission::Read, &[]).await;
    let app = api(pool.clone());
    assert_eq!(send(&app, get(EVENTS, &production)).await.0, StatusCode::OK);
    let (status, body) = send(&app, get(EVENTS, &staging)).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "wrong_environment")
    );
    // Also for an environment that does not exist: no hint about what does.
    let (status, _) = send(&app, get("/v1/environments/nope/events", &production)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[sqlx::test]
async fn a_read_key_cannot_replay_or_retry_but_a_write_key_can(pool: PgPool) {
    let read = key(&pool, "read", "production", Permission::Read, &[]).await;
    let write = key(&pool, "write", "production", Permission::Write, &[]).await;
    let app = api(pool.clone());
    let (_, stored) = send(&app, production(&fixture("test-created.json"))).await;
    let replay = format!("{EVENTS}/{}/replay", stored["event_id"].as_str().unwrap());
    let (status, body) = send(&app, post(&replay, &read, "")).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "insufficient_permission")
    );
    let (status, body) = send(
        &app,
        post("/v1/environments/production/deliveries/1/retry", &read, ""),
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "insufficient_permission")
    );
    let (status, body) = send(&app, post(&replay, &write, "")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    // A write key also reads.
    assert_eq!(send(&app, get(EVENTS, &write)).await.0, StatusCode::OK);
}

#[sqlx::test]
async fn missing_unknown_revoked_and_expired_keys_get_401(pool: PgPool) {
    let app = api(pool.clone());
    let store = Store::new(pool.clone());
    let request = axum::http::Request::get(EVENTS)
        .body(axum::body::Body::empty())
        .unwrap();
    let (status, body) = send(&app, request).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "missing_api_key")
    );
    let unknown = generate_key();
    let (status, body) = send(
        &app,
        get(
            EVENTS,
            secrecy::ExposeSecret::expose_secret(&unknown.plaintext),
        ),
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "invalid_api_key")
    );

    let revoked = key(&pool, "revoked", "production", Permission::Read, &[]).await;
    assert_eq!(send(&app, get(EVENTS, &revoked)).await.0, StatusCode::OK);
    assert_eq!(store.revoke_api_key("revoked").await.unwrap(), 1);
    let (status, body) = send(&app, get(EVENTS, &revoked)).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "invalid_api_key")
    );

    let expired = key(&pool, "expired", "production", Permission::Read, &[]).await;
    sqlx::query(
        "UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE name = 'expired'",
    )
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(
        send(&app, get(EVENTS, &expired)).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[sqlx::test]
async fn a_rotated_key_stays_valid_for_its_grace_and_not_after(pool: PgPool) {
    let app = api(pool.clone());
    let store = Store::new(pool.clone());
    let old = key(&pool, "billing", "production", Permission::Read, &[]).await;
    let new = generate_key();
    store
        .rotate_api_key("billing", Duration::from_secs(3600), &new)
        .await
        .unwrap()
        .unwrap();
    let new = secrecy::ExposeSecret::expose_secret(&new.plaintext).to_owned();
    assert_eq!(
        send(&app, get(EVENTS, &old)).await.0,
        StatusCode::OK,
        "old key in its grace"
    );
    assert_eq!(send(&app, get(EVENTS, &new)).await.0, StatusCode::OK);
    // The grace ends.
    sqlx::query("UPDATE api_keys SET expires_at = now() WHERE superseded_at IS NOT NULL")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(
        send(&app, get(EVENTS, &old)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(send(&app, get(EVENTS, &new)).await.0, StatusCode::OK);
    // Rotating again replaces the new key; there is one current key per name.
    assert!(store
        .rotate_api_key("billing", Duration::ZERO, &generate_key())
        .await
        .unwrap()
        .is_some());
    assert!(store
        .rotate_api_key("nobody", Duration::ZERO, &generate_key())
        .await
        .unwrap()
        .is_none());
}

#[sqlx::test]
async fn an_allow_list_admits_only_its_addresses_and_ignores_a_forged_forwarded_for(pool: PgPool) {
    let k = key(
        &pool,
        "ledger",
        "production",
        Permission::Read,
        &["203.0.113.0/24"],
    )
    .await;
    let inside = api_from(pool.clone(), "203.0.113.5", &[]);
    assert_eq!(send(&inside, get(EVENTS, &k)).await.0, StatusCode::OK);
    let outside = api_from(pool.clone(), "198.51.100.1", &[]);
    let (status, body) = send(&outside, get(EVENTS, &k)).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "ip_not_allowed")
    );
    // An untrusted peer claiming to forward for an allowed address changes nothing.
    let mut forged = get(EVENTS, &k);
    forged
        .headers_mut()
        .insert("x-forwarded-for", "203.0.113.5".parse().unwrap());
    assert_eq!(send(&outside, forged).await.0, StatusCode::FORBIDDEN);
}

#[sqlx::test]
async fn behind_a_trusted_proxy_the_rightmost_untrusted_forwarded_address_is_the_client(
    pool: PgPool,
) {
    let k = key(
        &pool,
        "ledger",
        "production",
        Permission::Read,
        &["203.0.113.0/24"],
    )
    .await;
    let via_proxy = api_from(pool.clone(), "10.0.0.2", &["10.0.0.0/8"]);
    let with = |xff: &str| {
        let mut request = get(EVENTS, &k);
        request
            .headers_mut()
            .insert("x-forwarded-for", xff.parse().unwrap());
        request
    };
    assert_eq!(
        send(&via_proxy, with("203.0.113.5")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        send(&via_proxy, with("198.51.100.7, 203.0.113.5, 10.0.0.9"))
            .await
            .0,
        StatusCode::OK
    );
    // The client wrote an allowed address on the left; the proxy appended the real one.
    assert_eq!(
        send(&via_proxy, with("203.0.113.5, 198.51.100.1")).await.0,
        StatusCode::FORBIDDEN
    );
    // The proxy itself is not an allowed client.
    assert_eq!(
        send(&via_proxy, get(EVENTS, &k)).await.0,
        StatusCode::FORBIDDEN
    );
}

#[sqlx::test]
async fn no_key_is_stored_in_clear_anywhere_in_the_database(pool: PgPool) {
    let mut keys = Vec::new();
    for (name, permission) in [("a", Permission::Read), ("b", Permission::Write)] {
        keys.push(key(&pool, name, "production", permission, &["10.0.0.0/8"]).await);
    }
    let rotated = generate_key();
    Store::new(pool.clone())
        .rotate_api_key("a", Duration::from_secs(60), &rotated)
        .await
        .unwrap();
    keys.push(secrecy::ExposeSecret::expose_secret(&rotated.plaintext).to_owned());
    let app = api_from(pool.clone(), "10.1.1.1", &[]);
    for k in &keys {
        send(&app, get(EVENTS, k)).await;
    }
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(tables.contains(&"api_keys".to_owned()));
    for table in tables {
        let dump: String = sqlx::query_scalar(&format!(
            "SELECT coalesce(string_agg(t::text, ' '), '') FROM {table} t"
        ))
        .fetch_one(&pool)
        .await
        .unwrap();
        for k in &keys {
            assert!(!dump.contains(&k[4..]), "a key in clear in table {table}");
            assert!(
                !dump.contains(&hex_of(k)),
                "an unhashed key's bytes in {table}"
            );
        }
    }
    let hashes: Vec<Vec<u8>> = sqlx::query_scalar("SELECT key_hash FROM api_keys")
        .fetch_all(&pool)
        .await
        .unwrap();
    for k in &keys {
        assert!(hashes.contains(&voltage_webhooks::auth::hash_key(k).to_vec()));
    }
}

fn hex_of(key: &str) -> String {
    hex::encode(key.as_bytes())
}

#[sqlx::test]
async fn a_forwarded_for_hop_that_is_not_text_never_makes_the_proxy_the_client(pool: PgPool) {
    // A key for local callers only, behind a proxy on loopback: the proxy itself is "allowed".
    let k = key(
        &pool,
        "local-only",
        "production",
        Permission::Read,
        &["127.0.0.0/8"],
    )
    .await;
    let via_proxy = api_from(pool.clone(), "127.0.0.1", &["127.0.0.0/8"]);
    let with = |xff: &[u8]| {
        let mut request = get(EVENTS, &k);
        request.headers_mut().insert(
            "x-forwarded-for",
            axum::http::HeaderValue::from_bytes(xff).unwrap(),
        );
        request
    };
    // nginx's $proxy_add_x_forwarded_for appends the real client to whatever the client sent.
    for xff in [
        &b"\xff, 203.0.113.7"[..],
        b"\xff",
        b"203.0.113.7\xff",
        b"junk",
    ] {
        let (status, body) = send(&via_proxy, with(xff)).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::FORBIDDEN, "ip_not_allowed"),
            "{xff:?}"
        );
    }
    assert_eq!(send(&via_proxy, with(b"127.0.0.9")).await.0, StatusCode::OK);
}
