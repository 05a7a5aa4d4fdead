//! RFC 3339 timestamps as Kubernetes writes them (`2026-06-01T12:00:00Z`, UTC, whole seconds).
//! The clock itself is never read here: callers pass `now` in, so the core stays testable.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Formats unix seconds as RFC 3339 UTC with a `Z` suffix and no fraction.
pub fn rfc3339(unix: i64) -> String {
    match OffsetDateTime::from_unix_timestamp(unix) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => "1970-01-01T00:00:00Z".to_string(),
    }
}

/// Formats unix seconds as a calendar date `YYYY-MM-DD` (UTC).
pub fn date(unix: i64) -> String {
    let mut s = rfc3339(unix);
    s.truncate(10);
    s
}

/// Parses an RFC 3339 timestamp into unix seconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    OffsetDateTime::parse(s.trim(), &Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        assert_eq!(rfc3339(1_780_272_000), "2026-06-01T00:00:00Z");
        assert_eq!(parse_rfc3339("2026-06-01T00:00:00Z"), Some(1_780_272_000));
        assert_eq!(
            parse_rfc3339("2026-06-01T02:00:00+02:00"),
            Some(1_780_272_000)
        );
        assert_eq!(date(1_780_272_000), "2026-06-01");
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
