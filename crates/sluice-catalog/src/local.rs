//! The `local` (air-gap) strategy: directories laid out like the adaptors monorepo.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::strategy::{schema_text, short_name, ICON_FORMATS, PACKAGE_PREFIX};
use crate::{CatalogError, IconFetch, IconShape, Listed, PackageInfo, Strategy, VersionInfo};

/// Reads adaptor packages from `<dir>/packages/<short name>/{package.json,
/// configuration-schema.json,assets/*}` in one or more directories, and never touches the
/// network. When several directories hold a package, the first one listed wins, so an operator
/// can put a patched copy in front of a stock checkout.
#[derive(Debug, Clone)]
pub struct LocalStrategy {
    dirs: Vec<PathBuf>,
}

/// The fields of `package.json` the catalogue uses.
#[derive(Deserialize)]
struct Manifest {
    name: String,
    version: String,
    description: Option<String>,
    #[serde(default)]
    dependencies: BTreeMap<String, String>,
}

impl LocalStrategy {
    /// Reads from `dirs`, in order of precedence. Nothing is read until asked.
    pub fn new(dirs: Vec<PathBuf>) -> Self {
        LocalStrategy { dirs }
    }

    /// The directory and manifest of `name`: the first `packages/<short name>/` whose
    /// `package.json` names it.
    async fn find(&self, name: &str) -> Result<(PathBuf, Manifest), CatalogError> {
        let short = short_name(name)?;
        for dir in &self.dirs {
            let package = dir.join("packages").join(short);
            if let Some(manifest) = manifest(&package).await? {
                if manifest.name == name {
                    return Ok((package, manifest));
                }
            }
        }
        Err(CatalogError::UnknownPackage(name.to_string()))
    }
}

#[async_trait]
impl Strategy for LocalStrategy {
    /// Every `packages/*/package.json` naming an `@openfn/language-*` package from its own
    /// directory (`packages/http` for `@openfn/language-http`), the same rule lookups use.
    async fn list(&self) -> Result<Vec<Listed>, CatalogError> {
        let mut names = Vec::new();
        for dir in &self.dirs {
            let packages = dir.join("packages");
            let path = packages.clone();
            let io = |source| CatalogError::Io {
                path: path.clone(),
                source,
            };
            let mut entries = tokio::fs::read_dir(&packages).await.map_err(io)?;
            while let Some(entry) = entries.next_entry().await.map_err(io)? {
                let Some(manifest) = manifest(&entry.path()).await? else {
                    continue;
                };
                let own_dir = manifest
                    .name
                    .strip_prefix(PACKAGE_PREFIX)
                    .is_some_and(|short| entry.file_name().to_str() == Some(short));
                if own_dir {
                    names.push(Listed {
                        name: manifest.name,
                        version: Some(manifest.version),
                    });
                }
            }
        }
        // A stable sort: of a package in several directories, the first directory's is kept.
        Ok(Listed::tidy(names))
    }

    async fn package(&self, name: &str) -> Result<PackageInfo, CatalogError> {
        let (_, m) = self.find(name).await?;
        Ok(PackageInfo {
            name: m.name,
            description: m.description,
            latest: m.version.clone(),
            deprecated: None,
            versions: vec![VersionInfo {
                version: m.version,
                dependencies: m.dependencies,
                ..VersionInfo::default()
            }],
        })
    }

    /// The schema of the one version the directory holds; `None` for any other version.
    async fn schema(&self, name: &str, version: &str) -> Result<Option<String>, CatalogError> {
        let (package, manifest) = self.find(name).await?;
        if manifest.version != version {
            return Ok(None);
        }
        let path = package.join("configuration-schema.json");
        read_optional(&path)
            .await?
            .map(|bytes| schema_text(bytes, &path.display().to_string()))
            .transpose()
    }

    /// The icon file with an ETag derived from its content, so a caller revalidates the same
    /// way as against a raw-file host.
    async fn icon(
        &self,
        name: &str,
        shape: IconShape,
        if_none_match: Option<&str>,
    ) -> Result<IconFetch, CatalogError> {
        let (package, _) = self.find(name).await?;
        for (ext, content_type) in ICON_FORMATS {
            let path = package
                .join("assets")
                .join(format!("{}.{ext}", shape.as_str()));
            let Some(bytes) = read_optional(&path).await? else {
                continue;
            };
            let etag = format!("\"{}\"", URL_SAFE_NO_PAD.encode(Sha256::digest(&bytes)));
            if if_none_match.is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag)) {
                return Ok(IconFetch::NotModified);
            }
            return Ok(IconFetch::Found {
                bytes,
                content_type,
                etag: Some(etag),
            });
        }
        Ok(IconFetch::Missing)
    }
}

/// The parsed `package.json` in `package`, `None` when there is none.
async fn manifest(package: &Path) -> Result<Option<Manifest>, CatalogError> {
    let path = package.join("package.json");
    let Some(bytes) = read_optional(&path).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| CatalogError::json(path.display(), e))
}

/// A file's bytes, `None` when it does not exist.
async fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, CatalogError> {
    match tokio::fs::read(path).await {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => Ok(None),
        Err(source) => Err(CatalogError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}
