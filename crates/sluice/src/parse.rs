//! Command-line value parsers: humane durations (`300` seconds, `250ms`, `30s`, `5m`, `2h`,
//! `1d`) and webhook URLs.

use std::time::Duration;

/// Parses a duration: an integer with an optional unit (`ms`, `s`, `m`, `h`, `d`; none means
/// seconds).
pub fn parse(raw: &str) -> Result<Duration, String> {
    let s = raw.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{raw:?} is not a duration such as 300, 30s, 5m, 2h or 1d"))?;
    let ms = match unit.trim() {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {raw:?}; use ms, s, m, h or d"
            ))
        }
    };
    n.checked_mul(ms)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{raw:?} is too long"))
}

/// Parses a webhook URL (http or https with a host).
pub fn webhook_url(raw: &str) -> Result<String, String> {
    sluice_health::syntax::check(raw)
        .map(|_| raw.to_string())
        .map_err(|e| e.detail())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse("300"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse("1d"), Ok(Duration::from_secs(86_400)));
        assert!(parse("5 minutes").is_err());
        assert!(parse("m").is_err());
        assert!(parse("-1").is_err());
    }

    mod properties {
        use super::super::parse;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn fuzz_the_duration_parser_answers_any_text(raw in any::<String>()) {
                let _ = parse(&raw);
            }

            #[test]
            fn fuzz_a_number_and_unit_read_back_exactly(
                n in 0u64..10_000_000,
                unit in prop_oneof![Just(("ms", 1u64)), Just(("s", 1_000)), Just(("", 1_000)),
                                    Just(("m", 60_000)), Just(("h", 3_600_000)), Just(("d", 86_400_000))],
            ) {
                let (suffix, ms) = unit;
                prop_assert_eq!(
                    parse(&format!("{n}{suffix}")).unwrap(),
                    std::time::Duration::from_millis(n * ms)
                );
            }
        }
    }
}
