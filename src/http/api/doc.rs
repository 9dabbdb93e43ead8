//! What the OpenAPI document says beyond the handlers' annotations: the `x-api-key` security
//! scheme on every operation, the error body, and every error response a route can give (the
//! access checks, the input checks, the limits), so a client generated from it knows them all.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, ResponseBuilder};

/// The values the listings accept, for the document only (the handlers parse strings and answer
/// 400 `invalid_parameter` to anything else).
#[derive(Debug, utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)] // described, never built: the handlers read strings
pub enum Order {
    Asc,
    Desc,
}

#[derive(Debug, utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)] // described, never built: the handlers read strings
pub enum Source {
    Webhook,
    Reconciliation,
}

#[derive(Debug, utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)] // described, never built: the handlers read strings
pub enum DeliveryStatus {
    Pending,
    InFlight,
    Succeeded,
    Dead,
}

const SCHEME: &str = "api_key";

/// Every operation needs a key, may be refused by the access checks, the input checks and the
/// limits; operations with an id in the path may not find it.
#[derive(Debug)]
pub struct Errors;

impl utoipa::Modify for Errors {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            SCHEME,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "x-api-key",
                "a key of the path's environment (`voltage-webhooks api-key create`)",
            ))),
        );
        for (path, item) in openapi.paths.paths.iter_mut() {
            let has_id = path.matches('{').count() > 1;
            for operation in [&mut item.get, &mut item.post].into_iter().flatten() {
                operation.security =
                    Some(vec![SecurityRequirement::new(SCHEME, Vec::<String>::new())]);
                let responses = &mut operation.responses.responses;
                let mut always = vec!["400", "401", "403", "503"];
                if has_id {
                    always.push("404");
                }
                for status in always {
                    responses
                        .entry(status.to_owned())
                        .or_insert_with(|| error(codes_of(status)).into());
                }
                // Statuses the annotations list without a body are errors too: give them the body.
                for (status, response) in responses.iter_mut() {
                    if status.starts_with('2') {
                        continue;
                    }
                    if let utoipa::openapi::RefOr::T(r) = response {
                        if r.content.is_empty() {
                            *r = error(codes_of(status));
                        }
                    }
                }
            }
        }
    }
}

/// The error codes each status can carry (docs/api.md lists when).
fn codes_of(status: &str) -> &'static str {
    match status {
        "400" => "invalid_parameter (an unknown, repeated or malformed parameter, a NUL byte), invalid_cursor, invalid_body",
        "401" => "missing_api_key, invalid_api_key",
        "403" => "wrong_environment, insufficient_permission, ip_not_allowed",
        "404" => "event_not_found, payment_not_found, delivery_not_found",
        "409" => "not_dead: only a dead delivery is retried",
        "422" => "unknown_handler, handler_not_subscribed, no_handlers, idempotency_key_reused",
        "429" => "too_many_streams: the key holds server.max_streams_per_api_key streams",
        "503" => "unavailable, overloaded, timeout: retry after Retry-After seconds",
        _ => "error",
    }
}

fn error(codes: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(codes)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
}
