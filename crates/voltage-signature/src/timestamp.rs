//! The timestamp header and the window around now that a receiver accepts.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::SignatureError;

/// Now in Unix seconds, from the system clock (0 if the clock is before 1970).
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The timestamp header as Unix seconds. Voltage sends decimal digits only; signs, spaces,
/// exponents and values of more than 18 digits are refused rather than guessed at.
///
/// ```
/// use voltage_signature::{parse_timestamp, SignatureError};
/// assert_eq!(parse_timestamp("1745355553"), Ok(1_745_355_553));
/// assert_eq!(parse_timestamp("+1745355553"), Err(SignatureError::MalformedTimestamp));
/// ```
pub fn parse_timestamp(text: &str) -> Result<i64, SignatureError> {
    if text.is_empty() || text.len() > 18 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SignatureError::MalformedTimestamp);
    }
    text.parse().map_err(|_| SignatureError::MalformedTimestamp)
}

/// Refuses a `timestamp` more than `tolerance_secs` away from `now` (both Unix seconds), in the
/// past or the future alike: a timestamp from the future is as suspect as an old one.
pub fn check_window(timestamp: i64, now: i64, tolerance_secs: u64) -> Result<(), SignatureError> {
    let skew_secs = timestamp.saturating_sub(now);
    if skew_secs.unsigned_abs() > tolerance_secs {
        return Err(SignatureError::StaleTimestamp {
            skew_secs,
            tolerance_secs,
        });
    }
    Ok(())
}

/// [`parse_timestamp`] then [`check_window`]: the header's Unix seconds if inside the window.
pub fn check_timestamp(
    timestamp_header: &str,
    now: i64,
    tolerance_secs: u64,
) -> Result<i64, SignatureError> {
    let timestamp = parse_timestamp(timestamp_header)?;
    check_window(timestamp, now, tolerance_secs)?;
    Ok(timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_with_anything_but_digits_are_refused() {
        for bad in [
            "",
            "-1",
            "+1745355553",
            "1745355553 ",
            " 1745355553",
            "1.7e9",
            "0x10",
            "99999999999999999999",
        ] {
            assert_eq!(
                parse_timestamp(bad),
                Err(SignatureError::MalformedTimestamp),
                "{bad:?}"
            );
        }
        assert_eq!(parse_timestamp("1745355553"), Ok(1_745_355_553));
        assert_eq!(parse_timestamp("0"), Ok(0));
    }

    #[test]
    fn the_window_applies_to_past_and_future_alike() {
        assert!(check_window(1_000_000 - 300, 1_000_000, 300).is_ok());
        assert!(check_window(1_000_000 + 300, 1_000_000, 300).is_ok());
        assert_eq!(
            check_window(1_000_000 - 301, 1_000_000, 300),
            Err(SignatureError::StaleTimestamp {
                skew_secs: -301,
                tolerance_secs: 300
            })
        );
        assert!(check_window(1_000_000 + 301, 1_000_000, 300).is_err());
        assert!(check_window(i64::MIN, i64::MAX, u64::MAX).is_ok());
    }

    #[test]
    fn check_timestamp_parses_then_checks_the_window() {
        assert_eq!(check_timestamp("1000000", 1_000_100, 300), Ok(1_000_000));
        assert_eq!(
            check_timestamp("1e6", 1_000_000, 300),
            Err(SignatureError::MalformedTimestamp)
        );
        assert!(matches!(
            check_timestamp("1000000", 2_000_000, 300),
            Err(SignatureError::StaleTimestamp { .. })
        ));
    }

    #[test]
    fn now_is_after_2020() {
        assert!(now_unix() > 1_577_836_800);
    }
}
