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

/// Formats milliseconds since the epoch exactly like [`rfc3339`] (`2026-11-23T07:37:45.123Z`)
/// without allocating; the export writes millions of these. Years outside 0000–9999 (only
/// possible in a hand-edited database) fall back to chrono.
pub fn write_rfc3339_ms(ms: i64, out: &mut String) {
    const MS_PER_DAY: i64 = 86_400_000;
    let days = ms.div_euclid(MS_PER_DAY);
    let in_day = ms.rem_euclid(MS_PER_DAY);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    if !(0..=9999).contains(&year) {
        out.push_str(&rfc3339(from_ms(ms)));
        return;
    }
    let (h, m, sec, milli) = (
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000,
    );
    let mut buf = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut v: i64| {
        for i in (0..width).rev() {
            buf[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, h);
    put(14, 2, m);
    put(17, 2, sec);
    put(20, 3, milli);
    // The buffer holds ASCII digits and separators only.
    out.push_str(std::str::from_utf8(&buf).unwrap_or_default());
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

    /// A range as an operator types it: each bound RFC 3339 or a date (YYYY-MM-DD, UTC), either
    /// left open.
    pub fn parse(since: Option<&str>, until: Option<&str>) -> Result<Self, InputError> {
        Self::new(
            since.map(parse_time).transpose()?,
            until.map(parse_time).transpose()?,
        )
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
    fn fast_formatter_matches_chrono() {
        let samples = [
            0i64,
            1,
            -1,
            951_782_400_000,   // 2000-02-29
            1_767_225_599_999, // 2025-12-31T23:59:59.999
            1_793_000_000_123,
            253_402_300_799_999, // 9999-12-31T23:59:59.999
            -62_167_219_200_000, // 0000-01-01
        ];
        let mut x: i64 = 0x2545_f491_4f6c_dd1d;
        let randoms = (0..10_000).map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.rem_euclid(253_402_300_800_000)
        });
        for ms in samples.into_iter().chain(randoms) {
            let mut fast = String::new();
            write_rfc3339_ms(ms, &mut fast);
            assert_eq!(fast, rfc3339(from_ms(ms)), "{ms}");
        }
    }

    #[test]
    fn millisecond_round_trip() {
        let t = parse_time("2026-11-01T08:00:00.123Z").expect("valid");
        assert_eq!(from_ms(to_ms(t)), t);
    }
}
