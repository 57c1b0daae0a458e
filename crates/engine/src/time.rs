//! Time as the engine sees it: UTC instants stored as integer milliseconds (portable SQL),
//! shown as RFC 3339. Parsing of operator-typed times lives here so every face accepts the same forms.

use chrono::{DateTime, NaiveDate, SecondsFormat, TimeZone, Utc};

use crate::error::InputError;

pub type Timestamp = DateTime<Utc>;

/// Milliseconds since the Unix epoch, the storage form of every time column.
pub fn to_ms(t: Timestamp) -> i64 {
    t.timestamp_millis()
}

/// Inverse of [`to_ms`]. Out-of-range values (only possible in a hand-edited database) clamp to the epoch.
pub fn from_ms(ms: i64) -> Timestamp {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// RFC 3339 in UTC with millisecond precision, e.g. `2026-11-23T07:37:45.123Z`.
pub fn rfc3339(t: Timestamp) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses an operator-typed time: RFC 3339 with any offset, or a bare date meaning midnight UTC.
pub fn parse_time(input: &str) -> Result<Timestamp, InputError> {
    let s = input.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d")
        && let Some(t) = d.and_hms_opt(0, 0, 0)
    {
        return Ok(Utc.from_utc_datetime(&t));
    }
    Err(InputError::InvalidTime(input.to_owned()))
}

/// A half-open interval `[since, until)`; either end may be open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeRange {
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
}

impl TimeRange {
    pub fn new(since: Option<Timestamp>, until: Option<Timestamp>) -> Result<Self, InputError> {
        if let (Some(s), Some(u)) = (since, until)
            && s >= u
        {
            return Err(InputError::InvertedRange {
                since: rfc3339(s),
                until: rfc3339(u),
            });
        }
        Ok(Self { since, until })
    }

    pub fn all() -> Self {
        Self::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc3339_with_offset_into_utc() {
        let t = parse_time("2026-11-01T15:00:00+07:00").expect("valid");
        assert_eq!(rfc3339(t), "2026-11-01T08:00:00.000Z");
    }

    #[test]
    fn parses_bare_date_as_utc_midnight() {
        let t = parse_time("2026-11-01").expect("valid");
        assert_eq!(rfc3339(t), "2026-11-01T00:00:00.000Z");
    }

    #[test]
    fn rejects_garbage_and_impossible_dates() {
        for bad in ["", "yesterday", "2026-13-01", "2026-02-30", "1700000000"] {
            assert!(parse_time(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn inverted_and_empty_ranges_are_rejected() {
        let a = parse_time("2026-11-02").expect("valid");
        let b = parse_time("2026-11-01").expect("valid");
        assert!(matches!(
            TimeRange::new(Some(a), Some(b)),
            Err(InputError::InvertedRange { .. })
        ));
        assert!(TimeRange::new(Some(a), Some(a)).is_err());
        assert!(TimeRange::new(Some(b), Some(a)).is_ok());
    }

    #[test]
    fn millisecond_round_trip() {
        let t = parse_time("2026-11-01T08:00:00.123Z").expect("valid");
        assert_eq!(from_ms(to_ms(t)), t);
    }
}
