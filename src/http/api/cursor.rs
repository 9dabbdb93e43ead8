//! Opaque cursors: URL-safe Base64 of a versioned position, so clients cannot depend on the form.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error_code::ErrorCode;
use crate::http::ApiError;

fn invalid() -> ApiError {
    ApiError::new(
        ErrorCode::InvalidCursor,
        "the cursor is not one this API issued for this query",
    )
}

fn decode(cursor: &str) -> Result<String, ApiError> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    String::from_utf8(bytes).map_err(|_| invalid())
}

/// A page position in `GET /events`: `(received_at, id)` of the last row, tied to the order.
pub fn encode_page(ascending: bool, at: DateTime<Utc>, id: Uuid) -> String {
    let order = if ascending { "a" } else { "d" };
    URL_SAFE_NO_PAD.encode(format!("p1:{order}:{}:{id}", at.timestamp_micros()))
}

pub fn decode_page(cursor: &str, ascending: bool) -> Result<(DateTime<Utc>, Uuid), ApiError> {
    let text = decode(cursor)?;
    let mut parts = text.splitn(4, ':');
    let (Some("p1"), Some(order), Some(micros), Some(id)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid());
    };
    if (order == "a") != ascending {
        return Err(invalid());
    }
    let at = micros
        .parse()
        .ok()
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(invalid)?;
    Ok((at, Uuid::parse_str(id).map_err(|_| invalid())?))
}

/// A position in the event stream: `(txid, id)`.
pub fn encode_feed(txid: &str, id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(format!("f1:{txid}:{id}"))
}

pub fn decode_feed(cursor: &str) -> Result<(String, Uuid), ApiError> {
    let text = decode(cursor)?;
    let mut parts = text.splitn(3, ':');
    let (Some("f1"), Some(txid), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(invalid());
    };
    // xid8 is an unsigned 64-bit number: a position past it can never be reached.
    if txid.is_empty() || !txid.bytes().all(|b| b.is_ascii_digit()) || txid.parse::<u64>().is_err()
    {
        return Err(invalid());
    }
    Ok((txid.to_owned(), Uuid::parse_str(id).map_err(|_| invalid())?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_the_other_order_or_garbage() {
        let at = DateTime::from_timestamp_micros(1_760_000_000_123_456).expect("time");
        let id = Uuid::now_v7();
        let cursor = encode_page(true, at, id);
        assert_eq!(decode_page(&cursor, true).expect("decodes"), (at, id));
        assert!(decode_page(&cursor, false).is_err());
        assert!(decode_page("garbage", true).is_err());
        let feed = encode_feed("123", id);
        assert_eq!(decode_feed(&feed).expect("decodes"), ("123".to_owned(), id));
        assert!(decode_feed(&encode_feed("1;DROP", id)).is_err());
        assert!(decode_feed(&encode_feed("18446744073709551615", id)).is_ok());
        assert!(decode_feed(&encode_feed("18446744073709551616", id)).is_err());
    }
}
