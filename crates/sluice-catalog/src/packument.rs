//! Parsing an npm packument (`GET /<name>`) into a [`PackageInfo`].

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::{CatalogError, PackageInfo, VersionInfo};

#[derive(Deserialize)]
struct Packument {
    description: Option<String>,
    #[serde(rename = "dist-tags", default)]
    dist_tags: Map<String, Value>,
    // A map that keeps the registry's order (serde_json's `preserve_order`).
    #[serde(default)]
    versions: Map<String, Value>,
    #[serde(default)]
    time: Map<String, Value>,
}

#[derive(Deserialize)]
struct Version {
    #[serde(default)]
    dist: Dist,
    #[serde(default)]
    dependencies: BTreeMap<String, String>,
    deprecated: Option<Value>,
}

#[derive(Deserialize, Default)]
struct Dist {
    integrity: Option<String>,
    tarball: Option<String>,
    #[serde(rename = "unpackedSize")]
    unpacked_size: Option<u64>,
}

/// Parses the packument of `name` read from `at`. Fields the catalogue does not need may be
/// missing or odd; `dist-tags.latest` must name a listed version.
pub(crate) fn parse(name: &str, body: &[u8], at: &str) -> Result<PackageInfo, CatalogError> {
    let doc: Packument = serde_json::from_slice(body).map_err(|e| CatalogError::json(at, e))?;
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    let latest = text(doc.dist_tags.get("latest"))
        .ok_or_else(|| CatalogError::malformed(at, "no dist-tags.latest"))?;
    let mut versions = Vec::with_capacity(doc.versions.len());
    for (version, value) in doc.versions {
        let v: Version = serde_json::from_value(value)
            .map_err(|e| CatalogError::json(format!("{at} (version {version})"), e))?;
        versions.push(VersionInfo {
            published: text(doc.time.get(&version)),
            version,
            // npm writes the deprecation message as a string; "" means un-deprecated.
            deprecated: text(v.deprecated.as_ref()).filter(|m| !m.is_empty()),
            integrity: v.dist.integrity,
            tarball: v.dist.tarball,
            unpacked_size: v.dist.unpacked_size,
            dependencies: v.dependencies,
        });
    }
    let Some(current) = versions.iter().find(|v| v.version == latest) else {
        let reason = format!("dist-tags.latest {latest} is not in versions");
        return Err(CatalogError::malformed(at, reason));
    };
    Ok(PackageInfo {
        name: name.to_string(),
        description: doc.description,
        deprecated: current.deprecated.clone(),
        latest,
        versions,
    })
}
