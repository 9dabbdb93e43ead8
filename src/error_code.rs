//! Every error code the service answers with, in one list: its wire name, its HTTP status, and
//! where and when it is answered. The error table of `docs/api.md` and the `ErrorCode` schema of
//! the OpenAPI document are generated from [`CATALOG`] (a test fails when either is stale), so a
//! code cannot be added, renamed or given another status without the documentation following.
//!
//! A leaf module: it imports nothing of the service, so `verify`, `event`, `ingest` and `http` can
//! all name their refusals with it.

use std::fmt;

macro_rules! error_codes {
    ($($(#[doc = $doc:literal])* $variant:ident = ($code:literal, $status:literal),)*) => {
        /// A stable, machine-readable refusal. Clients branch on [`ErrorCode::as_str`]; the
        /// status is fixed by the code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[doc = $doc])* $variant,)*
        }

        impl ErrorCode {
            /// Every code, in declaration order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),*];

            /// The wire name, as in `{"error": {"code": "..."}}`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $code,)*
                }
            }

            /// The HTTP status answered with this code.
            pub const fn status(self) -> u16 {
                match self {
                    $(Self::$variant => $status,)*
                }
            }
        }
    };
}

error_codes! {
    // Deliveries.
    /// No environment of the path's name is configured.
    UnknownEnvironment = ("unknown_environment", 404),
    /// The client is outside the environment's or the API key's allow-list.
    IpNotAllowed = ("ip_not_allowed", 403),
    /// `content-type` is not `application/json`.
    UnsupportedMediaType = ("unsupported_media_type", 415),
    /// The body exceeds `server.max_body_bytes`.
    PayloadTooLarge = ("payload_too_large", 413),
    /// The body did not arrive within `server.body_read_timeout_ms`.
    BodyTimeout = ("body_timeout", 408),
    /// The body could not be read.
    UnreadableBody = ("unreadable_body", 400),
    /// A signature header is missing or malformed.
    MissingHeader = ("missing_header", 401),
    /// No registration has this `x-voltage-webhook-id`.
    UnknownWebhook = ("unknown_webhook", 401),
    /// The registration belongs to another environment than the delivery's URL.
    WrongEnvironment = ("wrong_environment", 401),
    /// The timestamp is outside the tolerance window.
    StaleTimestamp = ("stale_timestamp", 401),
    /// The signature matches none of the registration's secrets.
    InvalidSignature = ("invalid_signature", 401),
    /// Authentic, but not an event (quarantined).
    MalformedPayload = ("malformed_payload", 400),
    /// `x-voltage-event` differs from the body's `detail.event`.
    EventMismatch = ("event_mismatch", 400),
    /// The payment belongs to another organization or environment.
    ScopeMismatch = ("scope_mismatch", 422),
    /// The database is unavailable; retry later.
    Unavailable = ("unavailable", 503),
    // Query API.
    /// No `x-api-key` header.
    MissingApiKey = ("missing_api_key", 401),
    /// The API key is unknown, revoked or expired.
    InvalidApiKey = ("invalid_api_key", 401),
    /// The API key belongs to another environment (the same wire name as a delivery's
    /// [`ErrorCode::WrongEnvironment`], answered 403 because the key itself is valid).
    KeyForOtherEnvironment = ("wrong_environment", 403),
    /// A read key on a write route.
    InsufficientPermission = ("insufficient_permission", 403),
    /// A query parameter, path or header value that the route does not accept.
    InvalidParameter = ("invalid_parameter", 400),
    /// A cursor this API did not issue for this query.
    InvalidCursor = ("invalid_cursor", 400),
    /// A request body that is not what the route takes.
    InvalidBody = ("invalid_body", 400),
    /// No such event in this environment.
    EventNotFound = ("event_not_found", 404),
    /// No event of this payment in this environment.
    PaymentNotFound = ("payment_not_found", 404),
    /// No such delivery in this environment.
    DeliveryNotFound = ("delivery_not_found", 404),
    /// A retry of a delivery that is not dead.
    NotDead = ("not_dead", 409),
    /// The key already holds its maximum of open event streams.
    TooManyStreams = ("too_many_streams", 429),
    /// A replay names a handler that is not configured.
    UnknownHandler = ("unknown_handler", 422),
    /// A replay or retry for a handler whose route does not match the event.
    HandlerNotSubscribed = ("handler_not_subscribed", 422),
    /// A replay without names, and no handler is subscribed to the event.
    NoHandlers = ("no_handlers", 422),
    /// The `Idempotency-Key` was used for another event.
    IdempotencyKeyReused = ("idempotency_key_reused", 422),
    // Any route.
    /// No such route.
    NotFound = ("not_found", 404),
    /// A known route called with a method it does not accept.
    MethodNotAllowed = ("method_not_allowed", 405),
    /// `server.max_concurrent_requests` requests are already in progress.
    Overloaded = ("overloaded", 503),
    /// The request took longer than `server.request_timeout_ms`.
    Timeout = ("timeout", 503),
    /// An unexpected failure in the middleware stack (logged).
    Internal = ("internal", 500),
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// A refusal: a code and, for people, a detail that may change. Its HTTP status is the code's.
/// The HTTP edge renders it as `{"error": {"code": "...", "detail": "..."}}`; internal text (SQL,
/// driver errors) never goes into `detail`, it is logged where the error is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: ErrorCode,
    pub detail: String,
}

impl Refusal {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
        }
    }

    /// The event could not be committed. Voltage retries non-2xx deliveries, so nothing is lost.
    pub fn unavailable() -> Self {
        Self::new(
            ErrorCode::Unavailable,
            "the event could not be stored; retry later",
        )
    }

    /// A read or write that failed in the database: logged with its cause, answered 503.
    pub fn unavailable_because(error: &(dyn std::error::Error + 'static)) -> Self {
        tracing::error!(error = %error, cause = ?error.source(), "database call failed");
        Self::new(
            ErrorCode::Unavailable,
            "the database is unavailable; retry later",
        )
    }
}

/// Where a code is answered: the sections of the documentation's error table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    /// `POST /webhooks/{environment}`.
    Deliveries,
    /// `/v1/environments/{environment}/...`.
    QueryApi,
    /// Any route, from the middleware.
    AnyRoute,
}

impl Area {
    pub const ALL: [Area; 3] = [Area::Deliveries, Area::QueryApi, Area::AnyRoute];

    fn heading(self) -> &'static str {
        match self {
            Area::Deliveries => "Deliveries (`POST /webhooks/{environment}`)",
            Area::QueryApi => "Query API (`/v1/environments/{environment}/...`)",
            Area::AnyRoute => "Any route",
        }
    }
}

/// One row of the error table: a code, where it is answered and when. For a delivery, `stored`
/// says what was kept of it.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub area: Area,
    pub code: ErrorCode,
    pub when: &'static str,
    pub stored: &'static str,
}

const fn delivery(code: ErrorCode, when: &'static str) -> Entry {
    Entry {
        area: Area::Deliveries,
        code,
        when,
        stored: "no",
    }
}

const fn api(code: ErrorCode, when: &'static str) -> Entry {
    Entry {
        area: Area::QueryApi,
        code,
        when,
        stored: "",
    }
}

const fn any(code: ErrorCode, when: &'static str) -> Entry {
    Entry {
        area: Area::AnyRoute,
        code,
        when,
        stored: "",
    }
}

use ErrorCode as C;

/// The documented error table, in the order it is printed.
pub const CATALOG: &[Entry] = &[
    delivery(C::UnknownEnvironment, "no environment of that name is configured"),
    delivery(C::IpNotAllowed, "the environment has `allow_ips` and the client is outside them"),
    delivery(C::UnsupportedMediaType, "`content-type` is not `application/json`"),
    delivery(C::PayloadTooLarge, "the body (declared or actual) exceeds `server.max_body_bytes`"),
    delivery(C::BodyTimeout, "the body did not arrive within `server.body_read_timeout_ms`"),
    delivery(C::UnreadableBody, "the body could not be read (connection error)"),
    delivery(
        C::MissingHeader,
        "`x-voltage-webhook-id`, `x-voltage-timestamp` or `x-voltage-signature` is missing, or the \
         timestamp is not 1 to 18 decimal digits",
    ),
    delivery(C::UnknownWebhook, "no registration with this `x-voltage-webhook-id`"),
    delivery(
        C::WrongEnvironment,
        "the registration belongs to another environment than the URL's (both are named)",
    ),
    delivery(
        C::StaleTimestamp,
        "the timestamp is further than `server.timestamp_tolerance_secs` from now, past or future",
    ),
    delivery(C::InvalidSignature, "the signature matches none of the registration's secrets"),
    Entry {
        area: Area::Deliveries,
        code: C::MalformedPayload,
        when: "authentic, but not JSON or without a string `type` and `detail.event`",
        stored: "in `quarantine`",
    },
    delivery(C::EventMismatch, "`x-voltage-event` differs from the body's `detail.event`"),
    delivery(
        C::ScopeMismatch,
        "the payment's `organization_id` or `environment_id` is not the environment's",
    ),
    delivery(
        C::Unavailable,
        "the event could not be committed (database unreachable, failed batch)",
    ),
    api(C::MissingApiKey, "no `x-api-key` header"),
    api(C::InvalidApiKey, "the key is unknown, revoked or expired"),
    api(C::KeyForOtherEnvironment, "the key belongs to another environment"),
    api(C::InsufficientPermission, "a read key on a write route"),
    api(C::IpNotAllowed, "the client is outside the key's allow-list"),
    api(
        C::InvalidParameter,
        "a query parameter the route does not know, or given twice; an empty item in a \
         comma-separated list; a `source` other than `webhook`/`reconciliation`; a query \
         parameter that does not parse, `order` other than `asc`/`desc`, `limit` outside 1 to \
         500, an unknown delivery `status`, an `Idempotency-Key` that is empty or longer than 255",
    ),
    api(
        C::InvalidCursor,
        "a `cursor` of `/events`, or an `after` / `Last-Event-ID` of the stream, that this API did \
         not issue for this query",
    ),
    api(C::InvalidBody, "a replay body that is not `{\"handlers\": [...]}`"),
    api(C::EventNotFound, "no such event in this environment (also a malformed event id)"),
    api(C::PaymentNotFound, "no event of this payment in this environment"),
    api(C::DeliveryNotFound, "no such delivery in this environment (also a malformed id)"),
    api(C::NotDead, "retry of a delivery that is not dead"),
    api(
        C::TooManyStreams,
        "the key already holds `server.max_streams_per_api_key` event streams open",
    ),
    api(C::UnknownHandler, "a replay names a handler that is not configured"),
    api(
        C::HandlerNotSubscribed,
        "a replay names, or a retry is for, a handler whose route (environments, event filters) \
         does not match the event",
    ),
    api(C::NoHandlers, "a replay without names, and no handler is subscribed to the event"),
    api(C::IdempotencyKeyReused, "the `Idempotency-Key` was used for another event"),
    api(C::Unavailable, "the database is unavailable"),
    any(
        C::InvalidParameter,
        "the path or query carries a NUL byte (`%00`): no value containing one can ever match, so \
         it is an input error, never a 503",
    ),
    any(C::NotFound, "no such route"),
    any(
        C::Overloaded,
        "`server.max_concurrent_requests` requests are already in progress (deliveries and query \
         API)",
    ),
    any(
        C::Timeout,
        "the request took longer than `server.request_timeout_ms` (a delivery cut off here was \
         not acknowledged)",
    ),
    any(
        C::MethodNotAllowed,
        "a known route called with a method it does not accept; the `Allow` header lists those it \
         does",
    ),
    any(C::Internal, "an unexpected failure in the middleware stack (logged)"),
];

/// The error table as Markdown, one section per [`Area`]: what `docs/api.md` carries between its
/// `error-codes` markers.
pub fn markdown_table() -> String {
    let mut out = String::new();
    for area in Area::ALL {
        out.push_str(&format!("### {}\n\n", area.heading()));
        if area == Area::Deliveries {
            out.push_str("| status | code | when | stored? |\n|---|---|---|---|\n");
        } else {
            out.push_str("| status | code | when |\n|---|---|---|\n");
        }
        for entry in CATALOG.iter().filter(|e| e.area == area) {
            let (status, code) = (entry.code.status(), entry.code.as_str());
            if area == Area::Deliveries {
                out.push_str(&format!(
                    "| {status} | `{code}` | {} | {} |\n",
                    entry.when, entry.stored
                ));
            } else {
                out.push_str(&format!("| {status} | `{code}` | {} |\n", entry.when));
            }
        }
        out.push('\n');
    }
    out
}

/// The wire names, each once, in declaration order: the `enum` of the OpenAPI schema.
pub fn wire_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Vec::new();
    for code in ErrorCode::ALL {
        if !names.contains(&code.as_str()) {
            names.push(code.as_str());
        }
    }
    names
}

impl utoipa::PartialSchema for ErrorCode {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
        let description = "Stable, machine-readable: branch on this. Every code, its status and \
                           when it is answered are listed in docs/api.md (Error codes), \
                           generated from the same list as this enum.";
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::String))
            .enum_values(Some(wire_names()))
            .description(Some(description))
            .into()
    }
}

impl utoipa::ToSchema for ErrorCode {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_documented_and_every_documented_row_is_unique() {
        for code in ErrorCode::ALL {
            assert!(
                CATALOG.iter().any(|e| e.code == *code),
                "{code:?} is not in the catalog"
            );
        }
        for (i, a) in CATALOG.iter().enumerate() {
            for b in &CATALOG[i + 1..] {
                assert!(
                    !(a.area == b.area && a.code.as_str() == b.code.as_str()),
                    "{} twice in {:?}",
                    a.code,
                    a.area
                );
            }
        }
    }

    #[test]
    fn a_wire_name_shared_by_two_codes_is_in_different_areas() {
        // `wrong_environment` is a delivery's 401 and an API key's 403; nothing else shares.
        let shared: Vec<_> = ErrorCode::ALL
            .iter()
            .filter(|c| {
                ErrorCode::ALL
                    .iter()
                    .filter(|d| d.as_str() == c.as_str())
                    .count()
                    > 1
            })
            .collect();
        assert_eq!(
            shared,
            [
                &ErrorCode::WrongEnvironment,
                &ErrorCode::KeyForOtherEnvironment
            ]
        );
    }

    #[test]
    fn statuses_are_client_errors_except_the_retryable_and_internal_ones() {
        for code in ErrorCode::ALL {
            let status = code.status();
            let server_side = matches!(
                code,
                ErrorCode::Unavailable
                    | ErrorCode::Overloaded
                    | ErrorCode::Timeout
                    | ErrorCode::Internal
            );
            assert_eq!(status >= 500, server_side, "{code:?} {status}");
        }
    }
}
