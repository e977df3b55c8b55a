//! How numbers, times and bodies read on a page.

use sluice_core::clock::Micros;
use sluice_core::BodyObservation;

/// A time as `2026-12-07 14:03:05 UTC`.
pub fn when(us: Micros) -> String {
    let s = crate::wire::ts(us);
    // RFC 3339 with fractions: keep the date and the whole seconds.
    let (date, rest) = s.split_once('T').unwrap_or((&s, ""));
    format!("{date} {} UTC", rest.get(..8).unwrap_or(rest))
}

/// How long ago `us` was, in the largest whole unit.
pub fn ago(us: Micros, now: Micros) -> String {
    let s = (now - us).max(0) / 1_000_000;
    match s {
        0..=59 => format!("{s} s ago"),
        60..=3599 => format!("{} min ago", s / 60),
        3600..=86_399 => format!("{} h ago", s / 3600),
        _ => format!("{} d ago", s / 86_400),
    }
}

/// A duration in µs as `850 µs`, `12.4 ms` or `3.2 s`.
pub fn duration(us: i64) -> String {
    match us {
        i64::MIN..1_000 => format!("{us} µs"),
        1_000..1_000_000 => format!("{:.1} ms", us as f64 / 1e3),
        _ => format!("{:.2} s", us as f64 / 1e6),
    }
}

/// A size in bytes as `512 B`, `4.0 KiB`, `1.5 MiB`.
pub fn bytes(n: i64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// A count with thousands separated: `1 234 567`.
pub fn count(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('\u{202f}');
        }
        out.push(c);
    }
    if n < 0 {
        out.insert(0, '-');
    }
    out
}

/// A recorded error string in plain words.
pub fn explain_error(code: &str) -> String {
    let (code, rest) = code.split_once(':').unwrap_or((code, ""));
    let text = match code {
        "nxdomain" => {
            "The sink's host name does not resolve (DNS answered that it does not exist)."
        }
        "econnrefused" => {
            "The sink refused the connection: nothing listens at that address and port."
        }
        "ehostunreach" => "The sink's host could not be reached over the network.",
        "econnreset" => "The sink reset the connection before answering in full.",
        "closed" => "The sink closed the connection before answering in full.",
        "tls_error" => "The TLS handshake with the sink failed (certificate or protocol).",
        "connect_timeout" => "The connection to the sink was not made within the connect timeout.",
        "response_timeout" => "The sink did not start answering within the response timeout.",
        "idle_timeout" => {
            "The sink paused in the middle of its answer for longer than the idle timeout."
        }
        "client_disconnected" => "The caller went away before the exchange finished.",
        "client_error" => "The caller sent a malformed request body; it was answered 400.",
        "request_too_large" => {
            "The caller's body went past the channel's request size limit; it was answered 413."
        }
        "client_timeout" => {
            "The caller paused its upload for longer than allowed; it was answered 408."
        }
        "interrupted" => {
            "sluice stopped while this request was in flight; it was closed at the next start."
        }
        "persistence_failed" => {
            "The exchange happened but its record could not be completed in the ledger."
        }
        "credential_not_found" => "The channel's sink credential no longer exists.",
        "credential_missing_auth_fields" => {
            "The sink credential lacks the fields needed to authenticate."
        }
        "unsupported_credential_schema" => {
            "sluice has no rule to inject credentials of this schema."
        }
        "oauth_refresh_failed" => "Refreshing the OAuth access token failed.",
        "oauth_reauthorization_required" => "The OAuth grant must be authorised again by a person.",
        _ => {
            return format!(
                "{code}{}",
                if rest.is_empty() {
                    String::new()
                } else {
                    format!(":{rest}")
                }
            )
        }
    };
    if rest.is_empty() {
        text.to_string()
    } else {
        format!("{text} ({})", rest.trim())
    }
}

/// How a body preview is shown.
pub struct Preview {
    /// `json`, `text`, `hex` or `empty`.
    pub kind: &'static str,
    /// What to show.
    pub text: String,
    /// Whether the body was longer than the preview.
    pub truncated: bool,
}

/// A preview as pretty JSON (when the content type says JSON and it parses), text (when it is
/// UTF-8) or a hex dump.
pub fn preview(body: &BodyObservation, content_type: Option<&str>) -> Preview {
    let truncated = body.truncated;
    if body.preview.is_empty() {
        return Preview {
            kind: "empty",
            text: String::new(),
            truncated,
        };
    }
    let text = match std::str::from_utf8(&body.preview) {
        Ok(s) => Some(s),
        // A character cut by the preview limit.
        Err(e) if truncated && e.error_len().is_none() => {
            std::str::from_utf8(&body.preview[..e.valid_up_to()]).ok()
        }
        Err(_) => None,
    };
    let Some(text) = text else {
        return Preview {
            kind: "hex",
            text: hex_dump(&body.preview),
            truncated,
        };
    };
    let json_type = content_type.is_some_and(|t| t.to_ascii_lowercase().contains("json"));
    if json_type && !truncated {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(text) {
            if let Ok(pretty) = serde_json::to_string_pretty(&v) {
                return Preview {
                    kind: "json",
                    text: pretty,
                    truncated,
                };
            }
        }
    }
    Preview {
        kind: "text",
        text: text.to_string(),
        truncated,
    }
}

/// Sixteen bytes a line: offset, hex, and the printable characters.
fn hex_dump(bytes: &[u8]) -> String {
    const SHOWN: usize = 4096;
    let mut out = String::new();
    for (i, chunk) in bytes[..bytes.len().min(SHOWN)].chunks(16).enumerate() {
        let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
        let chars: String = chunk
            .iter()
            .map(|&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        out.push_str(&format!("{:08x}  {:<48} {chars}\n", i * 16, hex.join(" ")));
    }
    if bytes.len() > SHOWN {
        out.push_str(&format!(
            "… {} more bytes of the preview\n",
            bytes.len() - SHOWN
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_read_in_the_largest_sensible_unit() {
        assert_eq!(duration(850), "850 µs");
        assert_eq!(duration(12_400), "12.4 ms");
        assert_eq!(duration(3_200_000), "3.20 s");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(count(1_234_567), "1\u{202f}234\u{202f}567");
    }

    #[test]
    fn previews_pick_json_text_or_hex() {
        let body = |b: &[u8]| BodyObservation {
            preview: b.to_vec(),
            ..Default::default()
        };
        let json = preview(&body(br#"{"a":1}"#), Some("application/json"));
        assert_eq!(json.kind, "json");
        assert!(json.text.contains("\"a\": 1"));
        assert_eq!(
            preview(&body(b"plain"), Some("application/json")).kind,
            "text"
        );
        assert_eq!(preview(&body(&[0, 159, 146, 150]), None).kind, "hex");
    }

    #[test]
    fn errors_are_explained_and_unknown_ones_shown_as_recorded() {
        assert!(explain_error("econnrefused").contains("refused"));
        assert!(explain_error("unsupported_credential_schema:foo").contains("(foo)"));
        assert_eq!(explain_error("something_new"), "something_new");
    }
}
