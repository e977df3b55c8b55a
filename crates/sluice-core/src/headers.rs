//! The header pipeline: hop-by-hop removal, the authoritative request id, and redaction.

use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::header_list::{self, HeaderList};

/// Headers that describe one connection and never cross a proxy (RFC 9110 §7.6.1), parsed once:
/// removing by `&str` would parse each name on every call, twice per proxied request.
pub static HOP_BY_HOP: [HeaderName; 9] = [
    http::header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    http::header::PROXY_AUTHENTICATE,
    http::header::PROXY_AUTHORIZATION,
    HeaderName::from_static("proxy-connection"),
    http::header::TE,
    http::header::TRAILER,
    http::header::TRANSFER_ENCODING,
    http::header::UPGRADE,
];

/// Header names whose values are stored as `[REDACTED]` by default.
pub const DEFAULT_REDACTED: [&str; 5] = [
    "authorization",
    "x-api-key",
    "proxy-authorization",
    "cookie",
    "set-cookie",
];

/// What the ledger stores in place of a redacted value.
pub const REDACTED: &str = "[REDACTED]";

/// Removes hop-by-hop headers, including every name listed in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    // One pass over the names present (a handful) finds most requests with none of them,
    // instead of a hashed lookup per hop-by-hop name.
    if headers.keys().any(|k| HOP_BY_HOP.contains(k)) {
        for name in &HOP_BY_HOP {
            headers.remove(name);
        }
    }
}

/// Whether a caller-supplied request id may be kept: 20–200 characters of `[A-Za-z0-9._-]`.
pub fn is_valid_request_id(id: &str) -> bool {
    (20..=200).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Appends `peer` to an existing `X-Forwarded-For` value.
pub fn append_forwarded_for(existing: Option<&HeaderValue>, peer: &str) -> String {
    match existing.and_then(|v| v.to_str().ok()).map(str::trim) {
        Some(prev) if !prev.is_empty() => format!("{prev}, {peer}"),
        _ => peer.to_string(),
    }
}

/// The first entry of `X-Forwarded-For`, if present and non-empty.
pub fn first_forwarded_for(value: Option<&HeaderValue>) -> Option<String> {
    let first = value?.to_str().ok()?.split(',').next()?.trim();
    (!first.is_empty()).then(|| first.to_string())
}

/// A case-insensitive set of header names whose values are redacted when recorded.
#[derive(Debug, Clone)]
pub struct Redactor {
    names: Vec<String>,
}

impl Default for Redactor {
    fn default() -> Self {
        Self::new(DEFAULT_REDACTED.iter().copied())
    }
}

impl Redactor {
    /// A redactor for the given names (compared case-insensitively).
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            names: names.into_iter().map(|n| n.to_ascii_lowercase()).collect(),
        }
    }

    /// Whether the value of `name` must not be stored.
    pub fn is_redacted(&self, name: &str) -> bool {
        self.names.iter().any(|n| n.eq_ignore_ascii_case(name))
    }

    /// Ordered `[name, value]` pairs of `headers`, duplicates kept, redacted values replaced.
    pub fn record(&self, headers: &HeaderMap) -> HeaderList {
        let mut list = header_list::Builder::with_capacity(64 * headers.len() + 2);
        for (name, value) in headers {
            if self.is_redacted(name.as_str()) {
                list.push(name.as_str(), REDACTED);
            } else {
                match value.to_str() {
                    Ok(v) => list.push(name.as_str(), v),
                    // Bytes past ASCII: kept where they are UTF-8, replaced where they are not.
                    Err(_) => list.push(name.as_str(), &String::from_utf8_lossy(value.as_bytes())),
                }
            }
        }
        list.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_hop_by_hop_and_connection_listed_names() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, x-private".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("x-private", "1".parse().unwrap());
        h.insert("te", "trailers".parse().unwrap());
        h.insert("transfer-encoding", "chunked".parse().unwrap());
        h.insert("upgrade", "h2c".parse().unwrap());
        h.insert("x-kept", "yes".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert_eq!(h["x-kept"], "yes");
    }

    #[test]
    fn request_id_rules() {
        assert!(is_valid_request_id("abcdefghij0123456789"));
        assert!(is_valid_request_id(&"a.b_c-".repeat(30)));
        assert!(!is_valid_request_id("short"));
        assert!(!is_valid_request_id(&"a".repeat(201)));
        assert!(!is_valid_request_id("abcdefghij 123456789"));
    }

    #[test]
    fn forwarded_for_appends_and_reads_first() {
        let v = HeaderValue::from_static("10.0.0.1, 10.0.0.2");
        assert_eq!(
            append_forwarded_for(Some(&v), "127.0.0.1"),
            "10.0.0.1, 10.0.0.2, 127.0.0.1"
        );
        assert_eq!(append_forwarded_for(None, "127.0.0.1"), "127.0.0.1");
        assert_eq!(first_forwarded_for(Some(&v)).as_deref(), Some("10.0.0.1"));
    }

    #[test]
    fn recorded_values_keep_utf8_and_replace_invalid_bytes() {
        let mut h = HeaderMap::new();
        h.append(
            "x-name",
            HeaderValue::from_bytes("café".as_bytes()).unwrap(),
        );
        h.append("x-raw", HeaderValue::from_bytes(b"a\xffb").unwrap());
        h.append("x-quoted", HeaderValue::from_static("say \"hi\"\tnow"));
        let rec = Redactor::default().record(&h).pairs();
        assert_eq!(rec[0].1, "café");
        assert_eq!(rec[1].1, "a\u{fffd}b");
        assert_eq!(rec[2].1, "say \"hi\"\tnow");
    }

    #[test]
    fn redaction_keeps_order_and_duplicates() {
        let mut h = HeaderMap::new();
        h.append("set-cookie", "a=1".parse().unwrap());
        h.append("set-cookie", "b=2".parse().unwrap());
        h.append("x-trace", "t".parse().unwrap());
        h.append("Authorization", "Bearer secret".parse().unwrap());
        let rec = Redactor::default().record(&h).pairs();
        assert_eq!(rec.len(), 4);
        assert!(rec.iter().all(|(_, v)| !v.contains("secret") && v != "a=1"));
        assert_eq!(
            rec.iter().filter(|(n, _)| n == "set-cookie").count(),
            2,
            "duplicates are kept"
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// The proxy turns a kept request id into a header value unchecked.
            #[test]
            fn fuzz_a_kept_request_id_is_always_a_header_value(id in any::<String>()) {
                if is_valid_request_id(&id) {
                    prop_assert!(HeaderValue::from_str(&id).is_ok());
                }
            }

            #[test]
            fn fuzz_no_hop_by_hop_or_connection_listed_header_is_forwarded(
                names in proptest::collection::vec("[a-z][a-z-]{0,11}", 0..6),
                listed in proptest::collection::vec("[a-zA-Z][a-zA-Z-]{0,11}", 0..4),
            ) {
                let mut h = HeaderMap::new();
                for n in names.iter().chain(&listed) {
                    h.append(
                        http::HeaderName::from_bytes(n.to_ascii_lowercase().as_bytes()).unwrap(),
                        HeaderValue::from_static("v"),
                    );
                }
                h.insert(
                    http::header::CONNECTION,
                    HeaderValue::from_str(&listed.join(", ")).unwrap(),
                );
                h.insert(http::header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
                strip_hop_by_hop(&mut h);
                for l in &listed {
                    prop_assert!(!h.contains_key(l.to_ascii_lowercase().as_str()), "{l}");
                }
                prop_assert!(!h.contains_key(http::header::CONNECTION));
                prop_assert!(!h.contains_key(http::header::TRANSFER_ENCODING));
            }
        }
    }
}
