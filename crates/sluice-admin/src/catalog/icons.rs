//! Adaptor icons: their bytes are files named by content hash in a directory of the data
//! directory (each node has its own; one that lacks a file fetches it once, on first read).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use sluice_catalog::{IconFetch, IconShape};

use super::{package_name, Catalog, IconRef};

/// The file extension of an icon's media type.
pub(super) fn extension(content_type: &str) -> &'static str {
    if content_type.contains("svg") {
        "svg"
    } else {
        "png"
    }
}

/// The shape a stored name stands for.
pub(super) fn shape(name: &str) -> Option<IconShape> {
    [IconShape::Square, IconShape::Rectangle]
        .into_iter()
        .find(|s| s.as_str() == name)
}

/// Hex SHA-256 of `bytes`.
pub(super) fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn path(dir: &Path, icon: &IconRef) -> PathBuf {
    dir.join(format!("{}.{}", icon.sha256, extension(&icon.content_type)))
}

/// Writes an icon's file unless it is there already (its name is its content's hash).
/// Written under a temporary name and renamed, so a reader never sees half a file.
pub(super) async fn write(dir: &Path, icon: &IconRef, bytes: &[u8]) -> std::io::Result<()> {
    let target = path(dir, icon);
    if tokio::fs::try_exists(&target).await? {
        return Ok(());
    }
    tokio::fs::create_dir_all(dir).await?;
    let partial = target.with_extension(format!("part-{}", uuid::Uuid::new_v4().simple()));
    tokio::fs::write(&partial, bytes).await?;
    tokio::fs::rename(&partial, &target).await
}

/// What an icon URL answers.
#[derive(Debug)]
pub enum IconAnswer {
    /// The icon's bytes and media type.
    Current(Bytes, String),
    /// The file name asked for is not the current one: this one is.
    Moved(String),
    /// No such adaptor, shape or icon.
    Unknown,
}

impl Catalog {
    /// The icon at `/adaptors/icons/{short}/{file}`.
    pub async fn icon(self: &Arc<Self>, short: &str, file: &str) -> Result<IconAnswer, String> {
        let Some(shape) = file.split_once('-').and_then(|(s, _)| shape(s)) else {
            return Ok(IconAnswer::Unknown);
        };
        let snapshot = self.loaded().await.map_err(|e| e.to_string())?;
        let Some(icon) = snapshot.icon(short, shape).cloned() else {
            return Ok(IconAnswer::Unknown);
        };
        let current = icon.file(shape);
        if file != current {
            return Ok(IconAnswer::Moved(current));
        }
        let catalog = self.clone();
        let (name, wanted) = (package_name(short), icon.clone());
        let entry = self
            .icon_bytes
            .entry(icon.sha256.clone())
            .or_try_insert_with(async move { catalog.icon_bytes(&name, shape, &wanted).await })
            .await
            .map_err(|e| e.to_string())?;
        let hit = if entry.is_fresh() { "miss" } else { "hit" };
        metrics::counter!("sluice_catalog_cache_total", "cache" => "icon", "result" => hit)
            .increment(1);
        Ok(IconAnswer::Current(entry.into_value(), icon.content_type))
    }

    /// An icon's bytes from its file, or, on a node that lacks the file, from upstream (kept
    /// only if they still hash to what the ledger says).
    async fn icon_bytes(
        &self,
        name: &str,
        shape: IconShape,
        icon: &IconRef,
    ) -> Result<Bytes, String> {
        let file = path(&self.config.icon_dir, icon);
        match tokio::fs::read(&file).await {
            Ok(bytes) => return Ok(bytes.into()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{}: {e}", file.display())),
        }
        let fetch = self.strategy.icon(name, shape, None);
        let fetched = match tokio::time::timeout(self.config.wait, fetch).await {
            Err(_) => {
                return Err(format!(
                    "upstream did not answer within {:?}",
                    self.config.wait
                ))
            }
            Ok(result) => super::refresh::counted("icon", result).map_err(|e| e.to_string())?,
        };
        let IconFetch::Found { bytes, .. } = fetched else {
            return Err("upstream no longer has this icon".into());
        };
        if sha256(&bytes) != icon.sha256 {
            return Err("upstream's icon changed since the last refresh".into());
        }
        write(&self.config.icon_dir, icon, &bytes)
            .await
            .map_err(|e| format!("{}: {e}", file.display()))?;
        Ok(bytes.into())
    }
}
