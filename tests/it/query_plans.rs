//! Every documented filter of the event list is served by an index: on a seeded table large enough
//! that PostgreSQL would otherwise read the environment (and with statistics, as in production),
//! the statement `GET /events` runs reads about a page of rows, never a sequential scan.
//!
//! The check runs `EXPLAIN (ANALYZE, FORMAT JSON)` of the very statement the API issues and adds up
//! the rows every scan node produced or discarded: a page of 101 rows costs at most a few pages'
//! worth (the type/event walk reads up to a page per distinct pair), a scan of the environment costs
//! tens of thousands.

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;
use voltage_webhooks::store::{EventQuery, Store};

/// Rows of the environment the filters run against (another environment holds a quarter as many):
/// enough that a scan of it costs ten times a page, few enough to seed in about a second.
const ROWS: i64 = 20_000;
const LIMIT: i64 = 101;
/// What a page may read at most: a scan of the environment, or of all events of a common type,
/// reads far more.
const MAX_ROWS_READ: f64 = 1_500.0;

/// Events shaped like production's mix over 30 days: mostly payment states, a few failures, test
/// events and reconciled events rare. Every third event shares its payment with the previous two.
async fn seed(pool: &PgPool, environment: &str, rows: i64) {
    sqlx::query(
        "INSERT INTO events (id, environment, dedup_key, event_type, event, payment_id, raw_body, \
             source, webhook_id, secret_index, signed_timestamp, received_at) \
         SELECT gen_random_uuid(), $1, sha256(($1 || i)::bytea), k.event_type, k.event, \
             CASE WHEN k.event_type = 'test' THEN NULL ELSE 'pay-' || $1 || (i / 3) END, '{}'::bytea, \
             CASE WHEN i % 50 = 7 THEN 'reconciliation' ELSE 'webhook' END, \
             CASE WHEN i % 50 = 7 THEN NULL ELSE gen_random_uuid() END, \
             CASE WHEN i % 50 = 7 THEN NULL ELSE 0 END, \
             CASE WHEN i % 50 = 7 THEN NULL ELSE 1 END, \
             now() - (i % 30 || ' days')::interval - (random() * interval '1 day') \
         FROM generate_series(1, $2) AS i \
         CROSS JOIN LATERAL (SELECT CASE WHEN i % 100 = 0 THEN 'test' WHEN i % 100 < 3 THEN 'receive' \
              WHEN i % 100 < 5 THEN 'send' WHEN i % 100 < 65 THEN 'receive' ELSE 'send' END AS event_type, \
              CASE WHEN i % 100 = 0 THEN 'created' WHEN i % 100 < 5 THEN 'failed' \
              WHEN i % 100 < 35 THEN 'generated' WHEN i % 100 < 65 THEN 'completed' ELSE 'succeeded' END AS event) AS k",
    )
    .bind(environment)
    .bind(rows)
    .execute(pool)
    .await
    .unwrap();
}

/// Rows produced or discarded by every scan of the plan, over all its loops.
fn rows_read(node: &Value) -> f64 {
    let own = if node["Node Type"].as_str().unwrap_or("").contains("Scan")
        && node["Node Type"] != "CTE Scan"
        && node["Node Type"] != "WorkTable Scan"
        && node["Node Type"] != "Subquery Scan"
    {
        let field = |name: &str| node[name].as_f64().unwrap_or(0.0);
        (field("Actual Rows")
            + field("Rows Removed by Filter")
            + field("Rows Removed by Index Recheck"))
            * field("Actual Loops").max(1.0)
    } else {
        0.0
    };
    let children: f64 = node["Plans"]
        .as_array()
        .map(|plans| plans.iter().map(rows_read).sum())
        .unwrap_or(0.0);
    own + children
}

fn node_types(node: &Value, into: &mut Vec<String>) {
    into.push(node["Node Type"].as_str().unwrap_or("?").to_owned());
    for child in node["Plans"].as_array().into_iter().flatten() {
        node_types(child, into);
    }
}

#[sqlx::test]
async fn every_filter_of_the_event_list_reads_about_a_page_through_an_index(pool: PgPool) {
    seed(&pool, "production", ROWS).await;
    seed(&pool, "staging", ROWS / 4).await;
    sqlx::query("ANALYZE events").execute(&pool).await.unwrap();
    let store = Store::new(pool.clone());

    let (some_payment,): (String,) = sqlx::query_as(
        "SELECT payment_id FROM events WHERE environment = 'production' AND payment_id IS NOT NULL \
         ORDER BY received_at DESC LIMIT 1 OFFSET 500",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let (cursor_at, cursor_id): (DateTime<Utc>, Uuid) = sqlx::query_as(
        "SELECT received_at, id FROM events WHERE environment = 'production' \
         AND event_type = 'receive' ORDER BY received_at DESC, id DESC LIMIT 1 OFFSET 3000",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let list = |values: &[&str]| values.iter().map(|v| (*v).to_owned()).collect::<Vec<_>>();
    let now = Utc::now();
    let base = EventQuery {
        environment: "production".into(),
        limit: LIMIT,
        ..EventQuery::default()
    };
    let cases: Vec<(&str, EventQuery)> = vec![
        ("no filter", base.clone()),
        (
            "type=test",
            EventQuery {
                event_types: list(&["test"]),
                ..base.clone()
            },
        ),
        (
            "type=receive",
            EventQuery {
                event_types: list(&["receive"]),
                ..base.clone()
            },
        ),
        (
            "type=send,test",
            EventQuery {
                event_types: list(&["send", "test"]),
                ..base.clone()
            },
        ),
        (
            "event=failed",
            EventQuery {
                events: list(&["failed"]),
                ..base.clone()
            },
        ),
        (
            "type=receive&event=completed",
            EventQuery {
                event_types: list(&["receive"]),
                events: list(&["completed"]),
                ..base.clone()
            },
        ),
        (
            "type=receive&event=failed,generated",
            EventQuery {
                event_types: list(&["receive"]),
                events: list(&["failed", "generated"]),
                ..base.clone()
            },
        ),
        (
            "payment_id",
            EventQuery {
                payment_id: Some(some_payment.clone()),
                ..base.clone()
            },
        ),
        (
            "payment_id&type=receive",
            EventQuery {
                payment_id: Some(some_payment),
                event_types: list(&["receive"]),
                ..base.clone()
            },
        ),
        (
            "source=reconciliation",
            EventQuery {
                source: Some("reconciliation".into()),
                ..base.clone()
            },
        ),
        (
            "source=webhook",
            EventQuery {
                source: Some("webhook".into()),
                ..base.clone()
            },
        ),
        (
            "source=reconciliation&type=send",
            EventQuery {
                source: Some("reconciliation".into()),
                event_types: list(&["send"]),
                ..base.clone()
            },
        ),
        (
            "source=webhook&event=failed",
            EventQuery {
                source: Some("webhook".into()),
                events: list(&["failed"]),
                ..base.clone()
            },
        ),
        (
            "time range",
            EventQuery {
                received_after: Some(now - Duration::days(12)),
                received_before: Some(now - Duration::days(10)),
                ..base.clone()
            },
        ),
        (
            "time range&type=test",
            EventQuery {
                event_types: list(&["test"]),
                received_after: Some(now - Duration::days(12)),
                received_before: Some(now - Duration::days(10)),
                ..base.clone()
            },
        ),
        (
            "type=test, ascending",
            EventQuery {
                event_types: list(&["test"]),
                ascending: true,
                ..base.clone()
            },
        ),
        (
            "type=receive, next page",
            EventQuery {
                event_types: list(&["receive"]),
                after: Some((cursor_at, cursor_id)),
                ..base.clone()
            },
        ),
        (
            "event=failed, ascending, next page",
            EventQuery {
                events: list(&["failed"]),
                ascending: true,
                after: Some((cursor_at, cursor_id)),
                ..base.clone()
            },
        ),
    ];

    let mut failures = Vec::new();
    for (name, query) in &cases {
        let plan = store.explain_list_events(query).await.unwrap();
        let root = &plan[0]["Plan"];
        let mut types = Vec::new();
        node_types(root, &mut types);
        let read = rows_read(root);
        if types.iter().any(|t| t == "Seq Scan") || read > MAX_ROWS_READ {
            failures.push(format!(
                "{name}: {read} rows read (at most {MAX_ROWS_READ}), nodes {types:?}\n{}",
                serde_json::to_string_pretty(root).unwrap()
            ));
        }
        // The plan is the statement the API runs: it must still answer the filter.
        let page = store.list_events(query).await.unwrap();
        for e in &page {
            assert!(
                query.event_types.is_empty() || query.event_types.contains(&e.event_type),
                "{name}"
            );
            assert!(
                query.events.is_empty() || query.events.contains(&e.event),
                "{name}"
            );
            assert!(
                query.source.as_ref().is_none_or(|s| *s == e.source),
                "{name}"
            );
            assert_eq!(e.environment, "production", "{name}");
        }
        let order_ok = page.windows(2).all(|w| {
            let (a, b) = ((w[0].received_at, w[0].id), (w[1].received_at, w[1].id));
            if query.ascending {
                a < b
            } else {
                a > b
            }
        });
        assert!(order_ok, "{name}: page out of order");
    }
    assert!(
        failures.is_empty(),
        "filters that read the environment:\n{}",
        failures.join("\n\n")
    );
}

/// The type/event walk returns exactly what the plain filter does, page after page.
#[sqlx::test]
async fn pages_through_the_kind_index_match_a_plain_filter(pool: PgPool) {
    seed(&pool, "production", ROWS / 2).await;
    let store = Store::new(pool.clone());
    for ascending in [false, true] {
        let mut query = EventQuery {
            environment: "production".into(),
            event_types: vec!["receive".into(), "test".into()],
            events: vec!["failed".into(), "created".into()],
            ascending,
            limit: 97,
            ..EventQuery::default()
        };
        let mut listed = Vec::new();
        loop {
            let page = store.list_events(&query).await.unwrap();
            let Some(last) = page.last() else { break };
            query.after = Some((last.received_at, last.id));
            listed.extend(page.iter().map(|e| e.id));
        }
        let order = if ascending { "ASC" } else { "DESC" };
        let expected: Vec<Uuid> = sqlx::query_scalar(&format!(
            "SELECT id FROM events WHERE environment = 'production' \
             AND event_type IN ('receive', 'test') AND event IN ('failed', 'created') \
             ORDER BY received_at {order}, id {order}"
        ))
        .fetch_all(&pool)
        .await
        .unwrap();
        assert!(
            expected.len() > 250,
            "the seed has {} matches",
            expected.len()
        );
        assert_eq!(listed, expected, "ascending: {ascending}");
    }
}
