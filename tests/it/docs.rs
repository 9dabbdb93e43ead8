//! The documentation stays true to the code: every configuration key the service accepts is in
//! `docs/configuration.md`, and `docs/openapi.json` is the document the service serves.

use std::collections::BTreeSet;
use std::path::PathBuf;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use figment::error::Kind;
use http_body_util::BodyExt as _;
use serde_json::Value;
use sqlx::PgPool;
use tower::ServiceExt as _;
use voltage_webhooks::config::{Config, ConfigError};

use crate::common;

fn repository_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// One step of a key path: a named key, an entry of a map of tables (`<name>`), or an element of
/// an array of tables (`[]`).
#[derive(Debug, Clone)]
enum Step {
    Key(&'static str),
    Entry,
    Item,
}

/// `environments.<name>.webhooks[].id`: the form the keys take in docs/configuration.md.
fn key_path(path: &[Step]) -> String {
    let mut text = String::new();
    for step in path {
        match step {
            Step::Key(key) => {
                if !text.is_empty() {
                    text.push('.');
                }
                text.push_str(key);
            }
            Step::Entry => text.push_str(".<name>"),
            Step::Item => text.push_str("[]"),
        }
    }
    text
}

/// A key no configuration table has: every table refuses unknown keys, and serde's refusal lists
/// the keys the table accepts.
const PROBE: &str = "__probe";

/// The keys the table at `path` accepts, or `None` when `path` does not hold a table (a value, a
/// list of values, an enum). Learned by giving the service a configuration with an unknown key in
/// that table: the list comes from the configuration types' own `Deserialize`, so it cannot drift.
fn accepted_keys(path: &[Step]) -> Option<&'static [&'static str]> {
    let mut value = format!("{{ {PROBE} = 1 }}");
    for step in path.iter().rev() {
        value = match step {
            Step::Key(key) => format!("{{ {key} = {value} }}"),
            Step::Entry => format!("{{ probe-name = {value} }}"),
            Step::Item => format!("[ {value} ]"),
        };
    }
    // The outermost inline table is the document itself.
    let document = &value[1..value.len() - 1];
    let Err(ConfigError::Load(error)) = Config::from_toml(document) else {
        return None;
    };
    (*error).into_iter().find_map(|e| match e.kind {
        Kind::UnknownField(field, expected) if field == PROBE => Some(expected),
        _ => None,
    })
}

/// Every key path the service accepts under `path`: values are leaves; tables, arrays of tables
/// and maps of tables are walked.
fn collect_keys(path: &[Step], keys: &mut BTreeSet<String>) {
    let Some(fields) = accepted_keys(path) else {
        return;
    };
    for &field in fields {
        let mut at = path.to_vec();
        at.push(Step::Key(field));
        let nested = [None, Some(Step::Item), Some(Step::Entry)]
            .into_iter()
            .map(|step| {
                let mut inner = at.clone();
                inner.extend(step);
                inner
            })
            .find(|inner| accepted_keys(inner).is_some());
        match nested {
            Some(inner) => collect_keys(&inner, keys),
            None => {
                keys.insert(key_path(&at));
            }
        }
    }
}

#[test]
fn every_accepted_configuration_key_is_documented() {
    let mut keys = BTreeSet::new();
    collect_keys(&[], &mut keys);
    // The walk must see nested tables of every shape, or it proves nothing.
    for expected in [
        "server.listen",
        "environments.<name>.organization_id",
        "environments.<name>.webhooks[].secrets[].env",
        "handlers[].url",
    ] {
        assert!(
            keys.contains(expected),
            "the walk over the configuration types did not find {expected}; found {keys:?}"
        );
    }
    let doc_path = repository_file("docs/configuration.md");
    let doc = std::fs::read_to_string(&doc_path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", doc_path.display()));
    let missing: Vec<&String> = keys
        .iter()
        .filter(|key| !doc.contains(&format!("`{key}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/configuration.md does not document {} of the {} configuration keys the service \
         accepts; add each, in backticks, to its table: {missing:?}",
        missing.len(),
        keys.len(),
    );
}

const REGENERATE: &str =
    "UPDATE_OPENAPI=1 DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
     cargo test --test it docs::";

/// JSON pointers where `a` and `b` differ, at most `limit`.
fn differences(a: &Value, b: &Value, at: &str, found: &mut Vec<String>, limit: usize) {
    if found.len() >= limit || a == b {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for key in keys {
                let pointer = format!("{at}/{}", key.replace('~', "~0").replace('/', "~1"));
                match (x.get(key), y.get(key)) {
                    (Some(p), Some(q)) => differences(p, q, &pointer, found, limit),
                    (Some(_), None) => found.push(format!("{pointer} (only in docs/openapi.json)")),
                    (None, _) => found.push(format!("{pointer} (only in the served document)")),
                }
                if found.len() >= limit {
                    return;
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                differences(p, q, &format!("{at}/{i}"), found, limit);
            }
        }
        _ => found.push(if at.is_empty() {
            "/".to_owned()
        } else {
            at.to_owned()
        }),
    }
}

#[sqlx::test]
async fn the_committed_openapi_document_is_the_one_served(pool: PgPool) {
    let response = common::app(pool)
        .oneshot(
            Request::get("/v1/openapi.json")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let served: Value = serde_json::from_slice(&bytes).unwrap();

    let path = repository_file("docs/openapi.json");
    if std::env::var("UPDATE_OPENAPI").is_ok_and(|v| v == "1") {
        let text = serde_json::to_string_pretty(&served).unwrap() + "\n";
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        return;
    }
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "reading {}: {e}; generate it with `{REGENERATE}` and commit it",
            path.display()
        )
    });
    let committed: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!("docs/openapi.json is not JSON ({e}); regenerate it with `{REGENERATE}`")
    });
    let mut found = Vec::new();
    differences(&committed, &served, "", &mut found, 10);
    assert!(
        found.is_empty(),
        "docs/openapi.json differs from what the service serves at /v1/openapi.json, at {found:?}; \
         regenerate it with `{REGENERATE}` and commit it"
    );
}

/// What `openapi-spec-validator` and schemathesis (`.ci/check-openapi.sh`) need from the document,
/// checked without them: ids are unique, every operation names the `x-api-key` scheme and
/// documents its error answers with the error body, and the raw body is JSON, not integers.
#[test]
fn the_openapi_document_is_complete_for_validators_and_generated_clients() {
    use voltage_webhooks::http::ApiDoc;
    let doc = serde_json::to_value(<ApiDoc as utoipa::OpenApi>::openapi()).unwrap();
    assert_eq!(
        doc["components"]["securitySchemes"]["api_key"],
        serde_json::json!({"type": "apiKey", "in": "header", "name": "x-api-key",
            "description": "a key of the path's environment (`voltage-webhooks api-key create`)"})
    );
    let mut ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let id = operation["operationId"].as_str().unwrap();
            assert!(ids.insert(id.to_owned()), "operationId {id} twice");
            assert_eq!(
                operation["security"],
                serde_json::json!([{"api_key": []}]),
                "{method} {path}"
            );
            let responses = operation["responses"].as_object().unwrap();
            for status in ["400", "401", "403", "503"] {
                assert!(
                    responses.contains_key(status),
                    "{method} {path}: no {status}"
                );
            }
            for (status, response) in responses {
                if !status.starts_with('2') {
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorBody",
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }
    let raw = &doc["paths"]["/v1/environments/{environment}/events/{event_id}/raw"]["get"];
    assert_eq!(
        raw["responses"]["200"]["content"]["application/json"]["schema"],
        serde_json::json!({"type": "object"})
    );
}

/// The error table of docs/api.md is generated from the one list of codes (`src/error_code.rs`):
/// a code added, renamed or given another status without the docs following fails here.
#[test]
fn the_error_table_of_the_api_docs_is_the_list_of_codes() {
    const BEGIN: &str = "<!-- error-codes:begin";
    const END: &str = "<!-- error-codes:end -->";
    let path = repository_file("docs/api.md");
    let text = std::fs::read_to_string(&path).expect("docs/api.md");
    let begin = text
        .find(BEGIN)
        .expect("docs/api.md has the error-codes:begin marker");
    let body_start = begin + text[begin..].find("-->\n").expect("marker closes") + 4;
    let end = text
        .find(END)
        .expect("docs/api.md has the error-codes:end marker");
    let generated = voltage_webhooks::error_code::markdown_table();
    if std::env::var("UPDATE_DOCS").is_ok_and(|v| v == "1") {
        let updated = format!("{}{generated}{}", &text[..body_start], &text[end..]);
        std::fs::write(&path, updated).expect("writing docs/api.md");
        return;
    }
    assert_eq!(
        text[body_start..end],
        generated,
        "docs/api.md's error table is stale: regenerate it with \
         `UPDATE_DOCS=1 DATABASE_URL=... cargo test --test it docs::` and commit it"
    );
}

/// Every code the OpenAPI document's `ErrorCode` schema lists is a code of the list, and back.
#[test]
fn the_openapi_error_code_enum_is_the_list_of_codes() {
    let text = std::fs::read_to_string(repository_file("docs/openapi.json")).expect("openapi");
    let doc: Value = serde_json::from_str(&text).expect("JSON");
    let listed: Vec<&str> = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .expect("ErrorCode is an enum schema")
        .iter()
        .map(|v| v.as_str().expect("string"))
        .collect();
    assert_eq!(listed, voltage_webhooks::error_code::wire_names());
}
