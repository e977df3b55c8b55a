//! The one trait every upstream implements, and what it answers with.

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::CatalogError;

/// The scope and prefix every adaptor package's name starts with.
pub const PACKAGE_PREFIX: &str = "@openfn/language-";

/// Where the catalogue reads adaptor packages from. Object-safe, so the catalogue can hold a
/// `Box<dyn Strategy>` chosen by configuration (npm or local).
#[async_trait]
pub trait Strategy: Send + Sync {
    /// All `@openfn/language-*` packages, sorted by name, without duplicates: the one call a
    /// refresh makes when nothing changed.
    async fn list(&self) -> Result<Vec<Listed>, CatalogError>;

    /// One package's metadata and versions.
    async fn package(&self, name: &str) -> Result<PackageInfo, CatalogError>;

    /// The text of `configuration-schema.json` of one version, byte for byte as published (it is
    /// checked to be JSON but never re-serialised, so field order survives); `None` when that
    /// version has none.
    async fn schema(&self, name: &str, version: &str) -> Result<Option<String>, CatalogError>;

    /// A package's icon of one shape, PNG preferred over SVG. With `if_none_match` (the ETag of
    /// an earlier [`IconFetch::Found`]) an unchanged icon answers [`IconFetch::NotModified`].
    async fn icon(
        &self,
        name: &str,
        shape: IconShape,
        if_none_match: Option<&str>,
    ) -> Result<IconFetch, CatalogError>;
}

/// A package as a listing names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The full name, e.g. `@openfn/language-http`.
    pub name: String,
    /// Its latest version when the listing tells (a search result, a local `package.json`);
    /// `None` when only its packument would (a configured list), so it must be read.
    pub version: Option<String>,
}

impl Listed {
    /// Sorts by name and drops everything but the first of each name and non-adaptors.
    pub(crate) fn tidy(mut listed: Vec<Listed>) -> Vec<Listed> {
        listed.retain(|l| l.name.starts_with(PACKAGE_PREFIX));
        listed.sort_by(|a, b| a.name.cmp(&b.name));
        listed.dedup_by(|a, b| a.name == b.name);
        listed
    }
}

/// A package as the catalogue offers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageInfo {
    /// The full name, e.g. `@openfn/language-http`.
    pub name: String,
    /// The package's description, if it has one.
    pub description: Option<String>,
    /// The version the `latest` dist-tag points at (locally: package.json's version).
    pub latest: String,
    /// The deprecation message of the latest version: a deprecated adaptor is still listed but
    /// should not be offered for new credentials.
    pub deprecated: Option<String>,
    /// Every published version, in the order upstream lists them.
    pub versions: Vec<VersionInfo>,
}

/// One published version of a package.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionInfo {
    /// The semver string.
    pub version: String,
    /// When it was published, ISO-8601 as upstream wrote it (`None` locally).
    pub published: Option<String>,
    /// The deprecation message, if this version is deprecated.
    pub deprecated: Option<String>,
    /// Subresource-integrity string of the tarball (`sha512-…`).
    pub integrity: Option<String>,
    /// Where the tarball is served.
    pub tarball: Option<String>,
    /// Size of the unpacked package in bytes, as the registry reports it.
    pub unpacked_size: Option<u64>,
    /// Runtime dependencies, name to version range.
    pub dependencies: BTreeMap<String, String>,
}

/// The two icon shapes the adaptors monorepo ships under `assets/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IconShape {
    /// `square.{png,svg}`.
    Square,
    /// `rectangle.{png,svg}`.
    Rectangle,
}

impl IconShape {
    /// The file stem under `assets/`.
    pub fn as_str(self) -> &'static str {
        match self {
            IconShape::Square => "square",
            IconShape::Rectangle => "rectangle",
        }
    }
}

/// The outcome of an icon fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IconFetch {
    /// The icon still has the ETag that was sent.
    NotModified,
    /// The icon's bytes.
    Found {
        /// The file as served.
        bytes: Vec<u8>,
        /// `image/png` or `image/svg+xml`, from the file's extension (raw-file hosts often serve
        /// SVG as `text/plain`, which a browser will not render as an image).
        content_type: &'static str,
        /// The validator to send next time, if upstream gave one.
        etag: Option<String>,
    },
    /// Neither a PNG nor an SVG of this shape exists.
    Missing,
}

/// The icon files tried in order, with their content types.
pub(crate) const ICON_FORMATS: [(&str, &str); 2] = [("png", "image/png"), ("svg", "image/svg+xml")];

/// The part of an adaptor's name after [`PACKAGE_PREFIX`], which names its directory upstream.
///
/// Refuses anything that could step outside `packages/` or carry URL syntax, since the result
/// becomes a path segment both on disk and in URLs.
pub(crate) fn short_name(name: &str) -> Result<&str, CatalogError> {
    let short = name
        .strip_prefix(PACKAGE_PREFIX)
        .filter(|s| {
            !s.is_empty()
                && !s.starts_with('.')
                && s.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
                })
        })
        .ok_or_else(|| CatalogError::BadName(name.to_string()))?;
    Ok(short)
}

/// Accepts a schema file as UTF-8 JSON and returns its exact text.
pub(crate) fn schema_text(bytes: Vec<u8>, at: &str) -> Result<String, CatalogError> {
    let text = String::from_utf8(bytes)
        .map_err(|_| CatalogError::malformed(at, "configuration-schema.json is not UTF-8"))?;
    serde_json::from_str::<serde::de::IgnoredAny>(&text).map_err(|e| CatalogError::json(at, e))?;
    Ok(text)
}
