//! Wall-clock timestamps as integer microseconds since the Unix epoch, and their RFC 3339 form.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Microseconds since the Unix epoch, the one time unit of the ledger.
pub type Micros = i64;

/// The current wall-clock time in microseconds.
pub fn now_us() -> Micros {
    let now = OffsetDateTime::now_utc();
    (now.unix_timestamp_nanos() / 1_000) as Micros
}

/// Formats a timestamp as RFC 3339 UTC with exactly six fractional digits.
pub fn to_rfc3339(us: Micros) -> String {
    let secs = us.div_euclid(1_000_000);
    let frac = us.rem_euclid(1_000_000);
    let dt = OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        dt.year(),
        u8::from(dt.month()),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        frac
    )
}

/// Parses an RFC 3339 timestamp (any offset) into microseconds.
pub fn parse_rfc3339(s: &str) -> Option<Micros> {
    let dt = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    Some((dt.unix_timestamp_nanos() / 1_000) as Micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_microseconds_and_round_trips() {
        let us = 1_700_000_000_123_456;
        let s = to_rfc3339(us);
        assert_eq!(s, "2023-11-14T22:13:20.123456Z");
        assert_eq!(parse_rfc3339(&s), Some(us));
    }

    #[test]
    fn parses_offsets() {
        assert_eq!(
            parse_rfc3339("2023-11-14T23:13:20+01:00"),
            Some(1_700_000_000_000_000)
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
