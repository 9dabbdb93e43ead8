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
                        .or_insert_with(|| error(&codes_of(status)).into());
                }
                // Statuses the annotations list without a body are errors too: give them the body.
                for (status, response) in responses.iter_mut() {
                    if status.starts_with('2') {
                        continue;
                    }
                    if let utoipa::openapi::RefOr::T(r) = response {
                        if r.content.is_empty() {
                            *r = error(&codes_of(status));
                        }
                    }
                }
            }
        }
    }
}

/// The error codes a query-API answer of `status` can carry, from the one list of codes
/// ([`crate::error_code::CATALOG`]; docs/api.md lists when each is answered).
fn codes_of(status: &str) -> String {
    let mut codes: Vec<&str> = Vec::new();
    for entry in crate::error_code::CATALOG {
        let on_api = entry.area != crate::error_code::Area::Deliveries;
        let code = entry.code.as_str();
        if on_api && entry.code.status().to_string() == status && !codes.contains(&code) {
            codes.push(code);
        }
    }
    if codes.is_empty() {
        return "error".to_owned();
    }
    let retry = if status == "503" {
        ": retry after Retry-After seconds"
    } else {
        ""
    };
    format!("{}{retry}", codes.join(", "))
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
