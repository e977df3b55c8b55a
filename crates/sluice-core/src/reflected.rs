//! Secrets an exchange carried in its headers, kept out of its stored body previews: a sink
//! that echoes what it received would otherwise put the injected sink credential (or the
//! caller's own) into the ledger, for anyone who may read history. Recorded headers are
//! redacted by name (`headers::Redactor`); this finds the same values in the previews.
//!
//! Only the previews are rewritten: the body's SHA-256 and size stay those of the bytes that
//! passed, and no body is read twice.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::HeaderValue;
use memchr::memmem;

/// What replaces a secret in a preview.
pub const REDACTED: &[u8] = b"[REDACTED]";

/// Shortest value treated as a secret: a shorter one would blank ordinary text.
const MIN_SECRET: usize = 6;

/// The secret values of one exchange (none for most: only channels with credentials).
#[derive(Debug, Clone, Default)]
pub struct Reflected(Vec<Vec<u8>>);

impl Reflected {
    /// Whether there is nothing to look for.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds an authentication header's value: the whole value, its credentials after the
    /// scheme (`Bearer <token>`, `Basic <base64>`, `ApiToken <pat>`), and a Basic password.
    pub fn add_header(&mut self, value: &HeaderValue) {
        let bytes = value.as_bytes();
        self.add(bytes);
        let Ok(text) = value.to_str() else { return };
        let Some((scheme, credentials)) = text.split_once(' ') else {
            return;
        };
        let credentials = credentials.trim();
        self.add(credentials.as_bytes());
        if scheme.eq_ignore_ascii_case("basic") {
            if let Ok(decoded) = STANDARD.decode(credentials) {
                if let Some(colon) = decoded.iter().position(|b| *b == b':') {
                    self.add(&decoded[colon + 1..]);
                }
                self.add(&decoded);
            }
        }
    }

    fn add(&mut self, secret: &[u8]) {
        if secret.len() >= MIN_SECRET && !self.0.iter().any(|s| s == secret) {
            self.0.push(secret.to_vec());
        }
    }

    /// Replaces every secret in `preview` with `[REDACTED]`, longest first (a token inside a
    /// whole header value goes with it). When the body went on past the preview (`truncated`),
    /// a secret's beginning at the preview's end is cut off too.
    pub fn scrub(&self, preview: &mut Vec<u8>, truncated: bool) {
        if self.0.is_empty() {
            return;
        }
        let mut secrets: Vec<&Vec<u8>> = self.0.iter().collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        for secret in secrets {
            if memmem::find(preview, secret).is_none() {
                continue;
            }
            let mut out = Vec::with_capacity(preview.len());
            let mut rest = &preview[..];
            while let Some(at) = memmem::find(rest, secret) {
                out.extend_from_slice(&rest[..at]);
                out.extend_from_slice(REDACTED);
                rest = &rest[at + secret.len()..];
            }
            out.extend_from_slice(rest);
            *preview = out;
        }
        if truncated {
            let cut = self
                .0
                .iter()
                .filter_map(|s| {
                    (MIN_SECRET.min(s.len())..s.len())
                        .rev()
                        .find(|&n| preview.ends_with(&s[..n]))
                })
                .max();
            if let Some(n) = cut {
                preview.truncate(preview.len() - n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrubbed(secrets: &[&str], preview: &str, truncated: bool) -> String {
        let mut r = Reflected::default();
        for s in secrets {
            r.add_header(&HeaderValue::from_str(s).unwrap());
        }
        let mut p = preview.as_bytes().to_vec();
        r.scrub(&mut p, truncated);
        String::from_utf8(p).unwrap()
    }

    #[test]
    fn an_echoed_header_value_token_or_password_is_redacted_wherever_it_appears() {
        assert_eq!(
            scrubbed(
                &["Bearer sink-secret-token"],
                r#"{"authorization":"Bearer sink-secret-token","again":"sink-secret-token"}"#,
                false
            ),
            r#"{"authorization":"[REDACTED]","again":"[REDACTED]"}"#
        );
        // Basic dXNlcjpwYXNzd29yZDE= is user:password1
        assert_eq!(
            scrubbed(
                &["Basic dXNlcjpwYXNzd29yZDE="],
                "auth=Basic dXNlcjpwYXNzd29yZDE= pw=password1",
                false
            ),
            "auth=[REDACTED] pw=[REDACTED]"
        );
        assert_eq!(
            scrubbed(&["Bearer abc"], "abc is short", false),
            "abc is short"
        );
        assert_eq!(scrubbed(&[], "nothing", false), "nothing");
    }

    #[test]
    fn a_secret_cut_by_the_end_of_a_truncated_preview_is_cut_off() {
        assert_eq!(
            scrubbed(&["key-0123456789"], "prefix key-01234", true),
            "prefix "
        );
        assert_eq!(
            scrubbed(&["key-0123456789"], "prefix key-01234", false),
            "prefix key-01234",
            "a whole body ends where it ends"
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Whatever surrounds them, no whole secret is left in a scrubbed preview, and a
            /// truncated one never ends with a secret's beginning.
            #[test]
            fn fuzz_no_secret_survives_a_scrub(
                secrets in proptest::collection::vec("[a-z0-9]{6,12}", 1..4),
                parts in proptest::collection::vec(("[a-z0-9 ]{0,8}", 0usize..4), 0..10),
                truncated in any::<bool>(),
            ) {
                let mut r = Reflected::default();
                for s in &secrets {
                    r.add_header(&HeaderValue::from_str(&format!("Bearer {s}")).unwrap());
                }
                let mut preview = Vec::new();
                for (text, pick) in &parts {
                    preview.extend_from_slice(text.as_bytes());
                    if let Some(s) = secrets.get(*pick) {
                        preview.extend_from_slice(s.as_bytes());
                    }
                }
                r.scrub(&mut preview, truncated);
                for s in &secrets {
                    prop_assert!(memmem::find(&preview, s.as_bytes()).is_none());
                    if truncated {
                        for n in MIN_SECRET..s.len() {
                            prop_assert!(!preview.ends_with(&s.as_bytes()[..n]));
                        }
                    }
                }
            }

            /// Any header value, any preview: no panic.
            #[test]
            fn fuzz_any_header_value_and_preview(
                value in proptest::collection::vec(0x20u8..0x7f, 0..40),
                preview in proptest::collection::vec(any::<u8>(), 0..200),
            ) {
                let mut r = Reflected::default();
                if let Ok(v) = HeaderValue::from_bytes(&value) {
                    r.add_header(&v);
                }
                let mut p = preview;
                r.scrub(&mut p, true);
            }
        }
    }
}
