//! RFC 3339 timestamps as Kubernetes writes them (`2026-06-01T12:00:00Z`, UTC, whole seconds).
//! The clock itself is never read here: callers pass `now` in, so the core stays testable.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Formats unix seconds as RFC 3339 UTC with a `Z` suffix and no fraction (whole seconds
/// carry none); a time RFC 3339 cannot write (before year 0) as the epoch.
pub(crate) fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_string())
}

/// Formats unix seconds as a calendar date `YYYY-MM-DD` (UTC).
pub(crate) fn date(unix: i64) -> String {
    let mut s = rfc3339(unix);
    s.truncate(10);
    s
}

/// Parses an RFC 3339 timestamp into unix seconds.
pub(crate) fn parse_rfc3339(s: &str) -> Option<i64> {
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
        // The ends of what the hook may see: a certificate valid until 9999, a clock at 0.
        assert_eq!(rfc3339(253_402_300_799), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(-62_135_596_800), "0001-01-01T00:00:00Z");
        assert_eq!(rfc3339(i64::MAX), "1970-01-01T00:00:00Z");
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
