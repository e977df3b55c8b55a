//! Subresource-integrity checks of npm tarballs (`dist.integrity`).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha2::{Digest, Sha512};

/// Checks `bytes` against an SRI string such as `sha512-<base64>`.
///
/// An SRI string may list several hashes separated by whitespace; the bytes pass when they match
/// any `sha512` entry. Weaker algorithms are not trusted, so an SRI string without `sha512` fails,
/// as does a malformed one: a tarball is never read unverified.
pub(crate) fn verify(sri: &str, bytes: &[u8]) -> Result<(), String> {
    let expected: Vec<&str> = sri
        .split_whitespace()
        .filter_map(|h| h.strip_prefix("sha512-"))
        // An SRI hash may carry `?options` after the digest.
        .map(|h| h.split('?').next().unwrap_or(h))
        .collect();
    if expected.is_empty() {
        return Err(format!("no sha512 hash in {sri:?}"));
    }
    let actual = STANDARD.encode(Sha512::digest(bytes));
    if expected.contains(&actual.as_str()) {
        Ok(())
    } else {
        Err(format!("expected {sri}, got sha512-{actual}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_any_sha512_and_refuses_the_rest() {
        let good = format!("sha512-{}", STANDARD.encode(Sha512::digest(b"tarball")));
        assert_eq!(verify(&good, b"tarball"), Ok(()));
        assert_eq!(verify(&format!("sha1-abc {good}"), b"tarball"), Ok(()));
        assert!(verify(&good, b"tarbalL").unwrap_err().contains("expected"));
        assert!(verify("sha1-qUqP5cyxm6YcTAhz05Hph5gvu9M=", b"tarball")
            .unwrap_err()
            .contains("no sha512"));
        assert!(verify("", b"tarball").is_err());
    }
}
