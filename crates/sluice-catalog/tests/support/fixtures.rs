//! The adaptor fixtures and small icons the tests make.

#![allow(dead_code)] // shared with sluice's tests; each binary uses a different part

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sluice_catalog::{IconFetch, IconShape, Strategy};

/// The four packages with fixture directories, by short name.
pub const FIXTURE_PACKAGES: [&str; 4] = ["dhis2", "googlesheets", "http", "msgraph"];

/// A 1×1 PNG.
pub fn png() -> Vec<u8> {
    STANDARD
        .decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=")
        .unwrap()
}

/// A small SVG.
pub const SVG: &[u8] = br#"<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>"#;

/// The adaptor fixtures: `../shared/` beside the repository, else the workplace's copy.
pub fn fixtures() -> PathBuf {
    let beside = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/adaptors");
    [beside, PathBuf::from("/work/shared/fixtures/adaptors")]
        .into_iter()
        .find(|p| p.join("README.md").exists())
        .expect("adaptor fixtures not found beside the repository nor in /work/shared")
}

/// The fixture schema of a package by short name, exactly as on disk.
pub fn fixture_schema(short: &str) -> String {
    std::fs::read_to_string(
        fixtures()
            .join("packages")
            .join(short)
            .join("configuration-schema.json"),
    )
    .unwrap()
}

/// One icon fetch that must not fail.
pub async fn icon(
    strategy: &dyn Strategy,
    name: &str,
    shape: IconShape,
    etag: Option<&str>,
) -> IconFetch {
    strategy.icon(name, shape, etag).await.unwrap()
}

/// The bytes, content type and ETag of a found icon; panics on anything else.
pub fn found(fetch: IconFetch) -> (Vec<u8>, &'static str, String) {
    match fetch {
        IconFetch::Found {
            bytes,
            content_type,
            etag,
        } => (bytes, content_type, etag.expect("an ETag")),
        other => panic!("no icon: {other:?}"),
    }
}
