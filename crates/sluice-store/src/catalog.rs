//! The adaptor catalogue's ledger (tables `adaptors`, `adaptor_versions`, `adaptor_icons` and
//! `catalog_refreshes`; see the migrations). What to fetch and when is decided by the catalogue
//! in `sluice-admin`; this module only stores and reads.

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::changes::Change;
use crate::db::Store;
use crate::error::Result;

/// Refreshes kept in `catalog_refreshes`.
const REFRESHES_KEPT: i64 = 200;

/// One adaptor package as last fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdaptorRow {
    /// Full package name (`@openfn/language-http`).
    pub name: String,
    /// The package's description.
    pub description: Option<String>,
    /// The version `latest` resolves to.
    pub latest: String,
    /// The latest version's deprecation message.
    pub deprecated: Option<String>,
    /// When upstream stopped listing it (microseconds); `None` while listed.
    pub hidden_at: Option<i64>,
    /// The last refresh that listed it.
    pub checked_at: i64,
    /// The last refresh that changed it.
    pub changed_at: i64,
}

/// Whether a version's `configuration-schema.json` was fetched, and what came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaState {
    /// Not asked for yet (only the latest version's schema is fetched by a refresh).
    Unfetched,
    /// Fetched; the text is stored.
    Present,
    /// Fetched; that version has none.
    Absent,
}

impl SchemaState {
    fn as_str(self) -> &'static str {
        match self {
            SchemaState::Unfetched => "unfetched",
            SchemaState::Present => "present",
            SchemaState::Absent => "absent",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "present" => SchemaState::Present,
            "absent" => SchemaState::Absent,
            _ => SchemaState::Unfetched,
        }
    }
}

/// One published version of an adaptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdaptorVersionRow {
    /// The package.
    pub name: String,
    /// Its semver string.
    pub version: String,
    /// Publication time as the registry wrote it.
    pub published: Option<String>,
    /// Deprecation message.
    pub deprecated: Option<String>,
    /// The tarball's subresource integrity.
    pub integrity: Option<String>,
    /// Where the tarball is.
    pub tarball: Option<String>,
    /// Unpacked size in bytes.
    pub unpacked_size: Option<i64>,
    /// Runtime dependencies as a JSON object text.
    pub dependencies: String,
    /// Whether the schema was fetched.
    pub schema_state: SchemaState,
    /// The schema text exactly as published, when present.
    pub schema: Option<String>,
}

/// An adaptor's icon of one shape; its bytes are a file named by `sha256`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdaptorIconRow {
    /// The package.
    pub name: String,
    /// `square` or `rectangle`.
    pub shape: String,
    /// Hex SHA-256 of the bytes.
    pub sha256: String,
    /// `image/png` or `image/svg+xml`.
    pub content_type: String,
    /// The upstream validator to revalidate with.
    pub etag: Option<String>,
    /// When it was fetched.
    pub fetched_at: i64,
}

/// One refresh of the catalogue, as the maintenance page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogRefresh {
    /// When it began and ended (microseconds).
    pub started_at: i64,
    /// When it ended.
    pub finished_at: i64,
    /// The node that ran it.
    pub node: String,
    /// What started it: `interval`, `api`, `cli`, `first_read`.
    pub cause: String,
    /// Whether the listing was read and applied (per-package failures aside).
    pub ok: bool,
    /// JSON: what changed and what failed.
    pub summary: String,
}

fn adaptor(r: &AnyRow) -> Result<AdaptorRow> {
    Ok(AdaptorRow {
        name: r.try_get("name")?,
        description: r.try_get("description")?,
        latest: r.try_get("latest")?,
        deprecated: r.try_get("deprecated")?,
        hidden_at: r.try_get("hidden_at")?,
        checked_at: r.try_get("checked_at")?,
        changed_at: r.try_get("changed_at")?,
    })
}

fn version(r: &AnyRow) -> Result<AdaptorVersionRow> {
    let state: String = r.try_get("schema_state")?;
    Ok(AdaptorVersionRow {
        name: r.try_get("name")?,
        version: r.try_get("version")?,
        published: r.try_get("published")?,
        deprecated: r.try_get("deprecated")?,
        integrity: r.try_get("integrity")?,
        tarball: r.try_get("tarball")?,
        unpacked_size: r.try_get("unpacked_size")?,
        dependencies: r.try_get("dependencies")?,
        schema_state: SchemaState::parse(&state),
        schema: r.try_get("schema")?,
    })
}

fn icon(r: &AnyRow) -> Result<AdaptorIconRow> {
    Ok(AdaptorIconRow {
        name: r.try_get("name")?,
        shape: r.try_get("shape")?,
        sha256: r.try_get("sha256")?,
        content_type: r.try_get("content_type")?,
        etag: r.try_get("etag")?,
        fetched_at: r.try_get("fetched_at")?,
    })
}

const SAVE_SCHEMA: &str = "UPDATE adaptor_versions SET schema_state = $1, schema = $2 \
     WHERE name = $3 AND version = $4";

fn schema_state(schema: Option<&str>) -> SchemaState {
    match schema {
        Some(_) => SchemaState::Present,
        None => SchemaState::Absent,
    }
}

const VERSION_COLUMNS: &str = "name, version, published, deprecated, integrity, tarball, \
     unpacked_size, dependencies, schema_state, schema";

impl Store {
    /// Every adaptor ever listed, hidden ones included, by name.
    pub async fn catalog_adaptors(&self) -> Result<Vec<AdaptorRow>> {
        sqlx::query("SELECT * FROM adaptors ORDER BY name")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(adaptor)
            .collect()
    }

    /// One adaptor's versions, in the order they were first stored.
    pub async fn catalog_versions(&self, name: &str) -> Result<Vec<AdaptorVersionRow>> {
        let sql = format!(
            "SELECT {VERSION_COLUMNS} FROM adaptor_versions WHERE name = $1 ORDER BY published NULLS FIRST, version"
        );
        sqlx::query(&sql)
            .bind(name)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(version)
            .collect()
    }

    /// One version of an adaptor, schema included.
    pub async fn catalog_version(
        &self,
        name: &str,
        version_: &str,
    ) -> Result<Option<AdaptorVersionRow>> {
        let sql = format!(
            "SELECT {VERSION_COLUMNS} FROM adaptor_versions WHERE name = $1 AND version = $2"
        );
        sqlx::query(&sql)
            .bind(name)
            .bind(version_)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(version)
            .transpose()
    }

    /// The schema of every adaptor's latest version that has one: (name, schema text).
    pub async fn catalog_latest_schemas(&self) -> Result<Vec<(String, String)>> {
        sqlx::query(
            "SELECT a.name, v.schema FROM adaptors a JOIN adaptor_versions v \
             ON v.name = a.name AND v.version = a.latest \
             WHERE v.schema_state = 'present' ORDER BY a.name",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("name")?, r.try_get("schema")?)))
        .collect()
    }

    /// Every stored icon.
    pub async fn catalog_icons(&self) -> Result<Vec<AdaptorIconRow>> {
        sqlx::query("SELECT * FROM adaptor_icons ORDER BY name, shape")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(icon)
            .collect()
    }

    /// Saves an adaptor and its versions as fetched, in one transaction: new versions are
    /// added, known ones get their metadata updated and keep their fetched schema; with
    /// `schema`, one version's fetched schema (`None`: it has none) is saved too.
    pub async fn save_adaptor(
        &self,
        a: &AdaptorRow,
        versions: &[AdaptorVersionRow],
        schema: Option<(&str, Option<&str>)>,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO adaptors (name, description, latest, deprecated, hidden_at, checked_at, \
             changed_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (name) DO UPDATE SET \
             description = excluded.description, latest = excluded.latest, \
             deprecated = excluded.deprecated, hidden_at = excluded.hidden_at, \
             checked_at = excluded.checked_at, changed_at = excluded.changed_at",
        )
        .bind(&a.name)
        .bind(&a.description)
        .bind(&a.latest)
        .bind(&a.deprecated)
        .bind(a.hidden_at)
        .bind(a.checked_at)
        .bind(a.changed_at)
        .execute(&mut *tx)
        .await?;
        for v in versions {
            sqlx::query(
                "INSERT INTO adaptor_versions (name, version, published, deprecated, integrity, \
                 tarball, unpacked_size, dependencies) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (name, version) DO UPDATE SET published = excluded.published, \
                 deprecated = excluded.deprecated, integrity = excluded.integrity, \
                 tarball = excluded.tarball, unpacked_size = excluded.unpacked_size, \
                 dependencies = excluded.dependencies",
            )
            .bind(&a.name)
            .bind(&v.version)
            .bind(&v.published)
            .bind(&v.deprecated)
            .bind(&v.integrity)
            .bind(&v.tarball)
            .bind(v.unpacked_size)
            .bind(&v.dependencies)
            .execute(&mut *tx)
            .await?;
        }
        if let Some((version_, text)) = schema {
            sqlx::query(SAVE_SCHEMA)
                .bind(schema_state(text).as_str())
                .bind(text)
                .bind(&a.name)
                .bind(version_)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records a fetched schema (`None`: that version has none).
    pub async fn save_adaptor_schema(
        &self,
        name: &str,
        version_: &str,
        schema: Option<&str>,
    ) -> Result<()> {
        sqlx::query(SAVE_SCHEMA)
            .bind(schema_state(schema).as_str())
            .bind(schema)
            .bind(name)
            .bind(version_)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Saves an icon's row (its file is written first by the caller).
    pub async fn save_adaptor_icon(&self, i: &AdaptorIconRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO adaptor_icons (name, shape, sha256, content_type, etag, fetched_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name, shape) DO UPDATE SET \
             sha256 = excluded.sha256, content_type = excluded.content_type, \
             etag = excluded.etag, fetched_at = excluded.fetched_at",
        )
        .bind(&i.name)
        .bind(&i.shape)
        .bind(&i.sha256)
        .bind(&i.content_type)
        .bind(&i.etag)
        .bind(i.fetched_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets an icon upstream no longer has.
    pub async fn delete_adaptor_icon(&self, name: &str, shape: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM adaptor_icons WHERE name = $1 AND shape = $2")
            .bind(name)
            .bind(shape)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Applies a full listing: adaptors it lacks are hidden (from `now`), those it names are
    /// shown again and marked checked. Returns the names newly hidden and newly shown again.
    pub async fn apply_catalog_listing(
        &self,
        listed: &[String],
        now: i64,
    ) -> Result<(Vec<String>, Vec<String>)> {
        let listed: std::collections::HashSet<&str> = listed.iter().map(String::as_str).collect();
        let known = self.catalog_adaptors().await?;
        let mut tx = self.begin_write().await?;
        let (mut hidden, mut shown) = (Vec::new(), Vec::new());
        for a in &known {
            let (is_listed, was_hidden) = (listed.contains(a.name.as_str()), a.hidden_at.is_some());
            let hidden_at = match (is_listed, was_hidden) {
                (false, false) => {
                    hidden.push(a.name.clone());
                    Some(now)
                }
                (true, true) => {
                    shown.push(a.name.clone());
                    None
                }
                _ => continue,
            };
            sqlx::query("UPDATE adaptors SET hidden_at = $1, changed_at = $2 WHERE name = $3")
                .bind(hidden_at)
                .bind(now)
                .bind(&a.name)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("UPDATE adaptors SET checked_at = $1 WHERE hidden_at IS NULL")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok((hidden, shown))
    }

    /// Records a refresh, keeps the most recent ones, and when it changed the catalogue tells
    /// every node's cache.
    pub async fn record_catalog_refresh(&self, r: &CatalogRefresh, changed: bool) -> Result<()> {
        sqlx::query(
            "INSERT INTO catalog_refreshes (started_at, finished_at, node, cause, ok, summary) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(r.started_at)
        .bind(r.finished_at)
        .bind(&r.node)
        .bind(&r.cause)
        .bind(i64::from(r.ok))
        .bind(&r.summary)
        .execute(&self.pool)
        .await?;
        sqlx::query(
            "DELETE FROM catalog_refreshes WHERE id <= \
             (SELECT MAX(id) FROM catalog_refreshes) - $1",
        )
        .bind(REFRESHES_KEPT)
        .execute(&self.pool)
        .await?;
        if changed {
            self.publish(Change::Catalog);
        }
        Ok(())
    }

    /// The id of the newest recorded refresh (`None`: none yet): it changes with every refresh.
    pub async fn last_catalog_refresh_id(&self) -> Result<Option<i64>> {
        let id: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM catalog_refreshes")
            .fetch_one(&self.pool)
            .await?;
        Ok(id)
    }

    /// The most recent refreshes, newest first.
    pub async fn catalog_refreshes(&self, limit: i64) -> Result<Vec<CatalogRefresh>> {
        sqlx::query(
            "SELECT started_at, finished_at, node, cause, ok, summary FROM catalog_refreshes \
             ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            let ok: i64 = r.try_get("ok")?;
            Ok(CatalogRefresh {
                started_at: r.try_get("started_at")?,
                finished_at: r.try_get("finished_at")?,
                node: r.try_get("node")?,
                cause: r.try_get("cause")?,
                ok: ok != 0,
                summary: r.try_get("summary")?,
            })
        })
        .collect()
    }
}
