//! Times as they travel: ISO 8601 in UTC with milliseconds, which Athena and
//! DuckDB both parse, and the SDK's own time type converted by
//! `aws-smithy-types-convert`.

use aws_smithy_types_convert::date_time::DateTimeExt;
use chrono::{DateTime, SecondsFormat, Utc};

pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// An SDK time in chrono's terms (`None` only beyond chrono's range).
pub fn from_sdk(t: &aws_smithy_types::DateTime) -> Option<DateTime<Utc>> {
    t.to_chrono_utc().ok()
}

pub fn to_sdk(t: DateTime<Utc>) -> aws_smithy_types::DateTime {
    aws_smithy_types::DateTime::from_chrono_utc(t)
}

/// An RFC 3339 time, if it is one.
pub fn parse(raw: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(raw)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Whether the time `a` is later than `b` (RFC 3339 text); a time that is
/// absent or unreadable is never later, and nothing is later than it.
pub fn later(a: Option<&str>, b: Option<&str>) -> bool {
    match (a.and_then(parse), b.and_then(parse)) {
        (Some(a), Some(b)) => a > b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn times_round_trip_through_the_sdk_type_and_print_with_milliseconds() {
        let t = Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap();
        assert_eq!(from_sdk(&to_sdk(t)), Some(t));
        assert_eq!(timestamp(t), "2026-11-23T10:00:00.000Z");
        assert_eq!(parse("2026-11-23T10:00:00Z"), Some(t));
        assert_eq!(parse("1763280000"), None);
        assert!(later(
            Some("2026-11-24T00:00:00Z"),
            Some("2026-11-23T23:59:59.999Z")
        ));
        assert!(!later(
            Some("2026-11-23T00:00:00Z"),
            Some("2026-11-23T00:00:00.000Z")
        ));
        assert!(!later(None, Some("2026-11-23T00:00:00Z")));
        assert!(!later(Some("2026-11-23T00:00:00Z"), Some("not a time")));
    }
}
