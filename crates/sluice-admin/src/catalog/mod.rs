//! The adaptor catalogue (PRODUCT.md §7): the credential types and icons of OpenFn adaptor
//! packages, kept in the ledger (`sluice_store::catalog`) and refreshed from an upstream
//! [`Strategy`] (npm or local directories, see `sluice-catalog`).
//!
//! Reads go through memory: a [`Snapshot`] of every adaptor, its latest schema compiled and its
//! icons, rebuilt from the ledger at start and whenever the catalogue changes (on any node, by
//! the change feed); and two bounded caches for what is read one key at a time (a version's
//! schema, an icon's bytes), where concurrent misses share one load. The three bundled schemas
//! are the seed: they answer while the catalogue has never loaded, and for types it lacks.

pub mod api;
mod icons;
mod refresh;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use sluice_catalog::{IconShape, Strategy, PACKAGE_PREFIX};
use sluice_store::catalog::{AdaptorRow, SchemaState};
use sluice_store::{Change, EventLog, Store, StoreError};
use tokio::sync::{broadcast, watch};

pub use refresh::{Cause, RefreshError, RefreshReport};

use crate::schemas::{BundledSchemas, CredentialSchema};

/// Distinct version schemas kept in memory.
const SCHEMA_CACHE_ENTRIES: u64 = 1_000;
/// Icon bytes kept in memory.
const ICON_CACHE_BYTES: u64 = 16 << 20;
/// After a failed refresh, reads of a never-loaded catalogue start no other load for this long.
const RETRY_FIRST_LOAD_AFTER: Duration = Duration::from_secs(30);

/// How the catalogue behaves on this node.
#[derive(Debug, Clone)]
pub struct CatalogConfig {
    /// Where it reads from, in words (`npm https://registry.npmjs.org`), for its status.
    pub source: String,
    /// Time between refreshes (zero: none but on demand), for its status.
    pub refresh_interval: Duration,
    /// This node's id, recorded with each refresh it runs.
    pub node: String,
    /// Where icon files live (`<data dir>/adaptor-icons`).
    pub icon_dir: PathBuf,
    /// Longest wait of a read for data not loaded yet (the first load, a schema or icon
    /// fetched on demand).
    pub wait: Duration,
}

/// Why the catalogue could not answer a read.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    /// The load a read waited for did not finish in time.
    #[error("the adaptor catalogue did not load within {0:?}")]
    Timeout(Duration),
    /// The load failed.
    #[error("the adaptor catalogue could not load: {0}")]
    Failed(String),
    /// The ledger failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One adaptor as the catalogue offers it.
#[derive(Debug, Clone)]
pub struct Adaptor {
    /// The ledger's row.
    pub row: AdaptorRow,
    /// The name without `@openfn/language-` (the credential type's name).
    pub short: String,
    /// Whether its latest version has a configuration schema.
    pub has_schema: bool,
}

impl Adaptor {
    /// Offered for new credentials: listed upstream, not deprecated, with a schema.
    pub fn offered(&self) -> bool {
        self.has_schema && self.row.hidden_at.is_none() && self.row.deprecated.is_none()
    }
}

/// An icon as the ledger knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IconRef {
    /// Hex SHA-256 of its bytes.
    pub sha256: String,
    /// Its media type.
    pub content_type: String,
}

impl IconRef {
    /// The file name in URLs: `<shape>-<first 8 hex digits>.<png|svg>`.
    pub fn file(&self, shape: IconShape) -> String {
        format!(
            "{}-{}.{}",
            shape.as_str(),
            &self.sha256[..8],
            icons::extension(&self.content_type)
        )
    }
}

/// What the catalogue holds, as read from the ledger at one moment.
#[derive(Default)]
pub struct Snapshot {
    /// Every adaptor ever listed, by name.
    pub adaptors: Vec<Adaptor>,
    schemas: HashMap<String, Arc<CredentialSchema>>,
    icons: HashMap<(String, IconShape), IconRef>,
    problems: Vec<String>,
}

impl Snapshot {
    /// Whether the catalogue has ever loaded (the ledger holds an adaptor).
    pub fn loaded(&self) -> bool {
        !self.adaptors.is_empty()
    }

    /// An adaptor by short or full name.
    pub fn adaptor(&self, name: &str) -> Option<&Adaptor> {
        let short = short(name);
        self.adaptors.iter().find(|a| a.short == short)
    }

    /// An adaptor's icon of one shape.
    pub fn icon(&self, short: &str, shape: IconShape) -> Option<&IconRef> {
        self.icons.get(&(short.to_string(), shape))
    }

    /// The URL path of an adaptor's icon.
    pub fn icon_url(&self, short: &str, shape: IconShape) -> Option<String> {
        let icon = self.icon(short, shape)?;
        Some(format!("/adaptors/icons/{short}/{}", icon.file(shape)))
    }

    /// How many adaptors are in each state.
    pub fn counts(&self) -> Counts {
        let count = |f: &dyn Fn(&Adaptor) -> bool| self.adaptors.iter().filter(|a| f(a)).count();
        let listed = |a: &Adaptor| a.row.hidden_at.is_none();
        Counts {
            adaptors: count(&listed),
            offered: count(&Adaptor::offered),
            deprecated: count(&|a| listed(a) && a.row.deprecated.is_some()),
            hidden: count(&|a| !listed(a)),
            with_schema: count(&|a| a.has_schema),
            icons: self.icons.len(),
        }
    }

    /// Latest-version schemas that did not compile (shown on the maintenance page).
    pub fn problems(&self) -> &[String] {
        &self.problems
    }
}

/// How many adaptors are in each state.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Counts {
    /// Listed upstream.
    pub adaptors: usize,
    /// Offered for new credentials (listed, not deprecated, with a schema).
    pub offered: usize,
    /// Listed and deprecated.
    pub deprecated: usize,
    /// Gone upstream.
    pub hidden: usize,
    /// With a credential schema (hidden ones included: they still resolve).
    pub with_schema: usize,
    /// Icons stored.
    pub icons: usize,
}

/// Where a read stands against the loads: bumped when the snapshot is rebuilt, and when a
/// refresh fails, so a waiting read learns of either.
#[derive(Debug, Clone, Default)]
struct Loads {
    rebuilt: u64,
    failed: u64,
    failed_at: Option<std::time::Instant>,
    last_error: Option<String>,
}

/// The catalogue of one node.
pub struct Catalog {
    store: Store,
    strategy: Arc<dyn Strategy>,
    config: CatalogConfig,
    events: Option<EventLog>,
    bundled: BundledSchemas,
    snapshot: RwLock<Arc<Snapshot>>,
    loads: watch::Sender<Loads>,
    leading: watch::Receiver<bool>,
    first_load_started: AtomicBool,
    refreshing: tokio::sync::Mutex<()>,
    schemas: moka::future::Cache<(String, String), Option<Arc<str>>>,
    icon_bytes: moka::future::Cache<String, bytes::Bytes>,
}

/// An adaptor's short name (`http` for `@openfn/language-http` or `http`).
pub fn short(name: &str) -> &str {
    name.strip_prefix(PACKAGE_PREFIX).unwrap_or(name)
}

/// The package name of a short or full name.
pub fn package_name(name: &str) -> String {
    format!("{PACKAGE_PREFIX}{}", short(name))
}

impl Catalog {
    /// A catalogue over `store` and `strategy`, warmed from the ledger (an unreachable upstream
    /// does not stop it: reads answer from the ledger and the seed). `leading` tells whether
    /// this node may refresh (the elected node of a cluster).
    pub async fn start(
        store: Store,
        strategy: Arc<dyn Strategy>,
        config: CatalogConfig,
        events: Option<EventLog>,
        leading: watch::Receiver<bool>,
    ) -> Result<Arc<Self>, StoreError> {
        let catalog = Arc::new(Catalog {
            store,
            strategy,
            config,
            events,
            bundled: BundledSchemas::new(),
            snapshot: RwLock::new(Arc::new(Snapshot::default())),
            loads: watch::channel(Loads::default()).0,
            leading,
            first_load_started: AtomicBool::new(false),
            refreshing: tokio::sync::Mutex::new(()),
            schemas: moka::future::Cache::new(SCHEMA_CACHE_ENTRIES),
            icon_bytes: moka::future::Cache::builder()
                .weigher(|_, v: &bytes::Bytes| u32::try_from(v.len()).unwrap_or(u32::MAX))
                .max_capacity(ICON_CACHE_BYTES)
                .build(),
        });
        if catalog.store.backend() == sluice_store::Backend::Sqlite {
            follow_other_processes(&catalog).await?;
        }
        catalog.rebuild().await?;
        follow_changes(&catalog);
        Ok(catalog)
    }

    /// Where the catalogue reads from, in words.
    pub fn source(&self) -> &str {
        &self.config.source
    }

    /// Time between refreshes (zero: only on demand).
    pub fn refresh_interval(&self) -> Duration {
        self.config.refresh_interval
    }

    /// Whether this node refreshes (it runs the background jobs).
    pub fn leads(&self) -> bool {
        *self.leading.borrow()
    }

    /// The catalogue's state for its maintenance page: source, counts, recent refreshes.
    pub async fn status(&self) -> Result<serde_json::Value, StoreError> {
        let snapshot = self.snapshot();
        let refreshes: Vec<serde_json::Value> = self
            .store
            .catalog_refreshes(20)
            .await?
            .into_iter()
            .map(|r| {
                serde_json::json!({
                    "started_at": crate::wire::ts(r.started_at),
                    "finished_at": crate::wire::ts(r.finished_at),
                    "node": r.node,
                    "cause": r.cause,
                    "ok": r.ok,
                    "summary": serde_json::from_str::<serde_json::Value>(&r.summary).unwrap_or_default(),
                })
            })
            .collect();
        Ok(serde_json::json!({
            "source": self.config.source,
            "refresh_interval_secs": self.config.refresh_interval.as_secs(),
            "leading": self.leads(),
            "loaded": snapshot.loaded(),
            "counts": snapshot.counts(),
            "problems": snapshot.problems,
            "refreshes": refreshes,
        }))
    }

    /// What the catalogue holds now (without waiting for a first load).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.read().clone()
    }

    /// Reads the ledger into a new snapshot and drops the cached version schemas.
    async fn rebuild(&self) -> Result<(), StoreError> {
        let began = std::time::Instant::now();
        let rows = self.store.catalog_adaptors().await?;
        let latest = self.store.catalog_latest_schemas().await?;
        let mut problems = Vec::new();
        let mut schemas = HashMap::new();
        for (name, text) in latest {
            let short = short(&name).to_string();
            // serde_json keeps the text's key order: the form follows the schema's own.
            let compiled = serde_json::from_str(&text)
                .map_err(|e| format!("schema {short}: {e}"))
                .and_then(|doc| CredentialSchema::compile(&short, doc));
            match compiled {
                Ok(schema) => {
                    schemas.insert(short, Arc::new(schema));
                }
                Err(e) => problems.push(e),
            }
        }
        let icons = self
            .store
            .catalog_icons()
            .await?
            .into_iter()
            .filter_map(|i| {
                let shape = icons::shape(&i.shape)?;
                let key = (short(&i.name).to_string(), shape);
                let icon = IconRef {
                    sha256: i.sha256,
                    content_type: i.content_type,
                };
                Some((key, icon))
            })
            .collect();
        let adaptors = rows
            .into_iter()
            .map(|row| {
                let short = short(&row.name).to_string();
                let has_schema = schemas.contains_key(&short);
                Adaptor {
                    row,
                    short,
                    has_schema,
                }
            })
            .collect();
        *self.snapshot.write() = Arc::new(Snapshot {
            adaptors,
            schemas,
            icons,
            problems,
        });
        self.schemas.invalidate_all();
        self.loads.send_modify(|l| l.rebuilt += 1);
        tracing::debug!(elapsed = ?began.elapsed(), "adaptor catalogue reread from the ledger");
        Ok(())
    }

    /// The snapshot once the catalogue has loaded: at once if it has, else after waiting (at
    /// most the configured bound) for the first load, which this node starts if it may refresh.
    pub async fn loaded(self: &Arc<Self>) -> Result<Arc<Snapshot>, Unavailable> {
        let mut loads = self.loads.subscribe();
        let seen = loads.borrow_and_update().clone();
        let snapshot = self.snapshot();
        if snapshot.loaded() {
            return Ok(snapshot);
        }
        if let Some(why) = self.recently_failed() {
            return Err(Unavailable::Failed(why));
        }
        if *self.leading.borrow() && !self.first_load_started.swap(true, Ordering::SeqCst) {
            let catalog = self.clone();
            tokio::spawn(async move {
                let _ = catalog.refresh(Cause::FirstRead, None).await;
                catalog.first_load_started.store(false, Ordering::SeqCst);
            });
        }
        let news = |l: &Loads| l.rebuilt != seen.rebuilt || l.failed != seen.failed;
        let waited = tokio::time::timeout(self.config.wait, loads.wait_for(news)).await;
        let snapshot = self.snapshot();
        match waited {
            _ if snapshot.loaded() => Ok(snapshot),
            Err(_) => Err(Unavailable::Timeout(self.config.wait)),
            Ok(_) => {
                let why = self.loads.borrow().last_error.clone();
                Err(Unavailable::Failed(why.unwrap_or_else(|| {
                    "upstream listed no adaptor that could be read".into()
                })))
            }
        }
    }

    /// Why the last refresh failed, if it did within [`RETRY_FIRST_LOAD_AFTER`]: reads then
    /// answer at once instead of starting another load (an unreachable upstream is not asked
    /// again on every page view).
    fn recently_failed(&self) -> Option<String> {
        let loads = self.loads.borrow();
        let at = loads.failed_at?;
        (at.elapsed() < RETRY_FIRST_LOAD_AFTER)
            .then(|| loads.last_error.clone().unwrap_or_default())
    }

    /// The credential schema called `name` (short or package name) if the catalogue or the seed
    /// has it. A name the seed lacks waits for the catalogue's first load; `Err` says why the
    /// catalogue could not tell.
    pub async fn credential_schema(
        self: &Arc<Self>,
        name: &str,
    ) -> Result<Option<Arc<CredentialSchema>>, Unavailable> {
        if let Some(s) = self.schema(name) {
            return Ok(Some(s));
        }
        let snapshot = self.loaded().await?;
        Ok(snapshot.schemas.get(short(name)).cloned())
    }

    /// The schema of a credential type as known now: the catalogue's, else the seed's.
    pub fn schema(&self, name: &str) -> Option<Arc<CredentialSchema>> {
        let short = short(name);
        let snapshot = self.snapshot.read();
        let found = snapshot.schemas.get(short).cloned();
        found.or_else(|| self.bundled.schema(short))
    }

    /// The credential types offered for new credentials, by name, each with its square icon's
    /// URL: the catalogue's offered adaptors and the seed's types.
    pub fn credential_types(&self) -> Vec<(String, Option<String>)> {
        let snapshot = self.snapshot();
        let mut types: Vec<(String, Option<String>)> = snapshot
            .adaptors
            .iter()
            .filter(|a| a.offered())
            .map(|a| {
                (
                    a.short.clone(),
                    snapshot.icon_url(&a.short, IconShape::Square),
                )
            })
            .collect();
        for name in self.bundled.names() {
            if !types.iter().any(|(n, _)| *n == name) {
                types.push((name, None));
            }
        }
        types.sort();
        types
    }

    /// The text of one version's schema (`None`: that version has none), fetched from upstream
    /// and kept the first time it is asked for. `Ok(None)` also when the adaptor or version
    /// is unknown: see [`SchemaRead`].
    pub async fn schema_text(
        self: &Arc<Self>,
        name: &str,
        version: &str,
    ) -> Result<SchemaRead, Unavailable> {
        let package = package_name(name);
        let key = (package.clone(), version.to_string());
        let catalog = self.clone();
        let entry = self
            .schemas
            .entry(key)
            .or_try_insert_with(async move { catalog.load_schema(&package, version).await })
            .await;
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => return Err(Unavailable::Failed(e.to_string())),
        };
        let hit = if entry.is_fresh() { "miss" } else { "hit" };
        metrics::counter!("sluice_catalog_cache_total", "cache" => "schema", "result" => hit)
            .increment(1);
        Ok(match entry.into_value() {
            Some(text) => SchemaRead::Found(text),
            None => SchemaRead::Missing,
        })
    }

    /// A version's schema from the ledger, or from upstream (then saved) when not fetched yet.
    async fn load_schema(&self, package: &str, version: &str) -> Result<Option<Arc<str>>, String> {
        let row = self.store.catalog_version(package, version).await;
        let row = row.map_err(|e| e.to_string())?;
        let Some(row) = row else {
            return Ok(None);
        };
        match row.schema_state {
            SchemaState::Present => return Ok(row.schema.map(Arc::from)),
            SchemaState::Absent => return Ok(None),
            SchemaState::Unfetched => {}
        }
        let fetched =
            tokio::time::timeout(self.config.wait, self.strategy.schema(package, version));
        let text = match fetched.await {
            Err(_) => {
                return Err(format!(
                    "upstream did not answer within {:?}",
                    self.config.wait
                ))
            }
            Ok(result) => refresh::counted("schema", result).map_err(|e| e.to_string())?,
        };
        let saved = self
            .store
            .save_adaptor_schema(package, version, text.as_deref())
            .await;
        saved.map_err(|e| e.to_string())?;
        Ok(text.map(Arc::from))
    }
}

/// A version's schema as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaRead {
    /// The schema's text, byte for byte as published.
    Found(Arc<str>),
    /// The version is unknown or has no schema.
    Missing,
}

/// How often a SQLite node looks for a refresh made by another process (`sluice catalog
/// refresh` beside a running `serve`; PostgreSQL nodes hear of it through the change feed).
const OTHER_PROCESSES_EVERY: Duration = Duration::from_secs(5);

/// Rebuilds the snapshot when the newest recorded refresh is not the one last seen, until the
/// catalogue is dropped: a SQLite ledger has no change feed between processes.
async fn follow_other_processes(catalog: &Arc<Catalog>) -> Result<(), StoreError> {
    let mut seen = catalog.store.last_catalog_refresh_id().await?;
    let weak = Arc::downgrade(catalog);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(OTHER_PROCESSES_EVERY).await;
            let Some(catalog) = weak.upgrade() else {
                return;
            };
            let newest = match catalog.store.last_catalog_refresh_id().await {
                Ok(id) => id,
                Err(e) => {
                    tracing::debug!(error = %e, "could not read the last catalogue refresh");
                    continue;
                }
            };
            if newest != seen {
                if let Err(e) = catalog.rebuild().await {
                    tracing::warn!(error = %e, "could not reread the adaptor catalogue");
                }
                seen = newest;
            }
        }
    });
    Ok(())
}

/// Rebuilds the snapshot on every catalogue change (this node's or another's) until the
/// catalogue is dropped.
fn follow_changes(catalog: &Arc<Catalog>) {
    let weak = Arc::downgrade(catalog);
    let mut changes = catalog.store.subscribe();
    tokio::spawn(async move {
        loop {
            match changes.recv().await {
                Ok(Change::Catalog | Change::Unknown)
                | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            }
            let Some(catalog) = weak.upgrade() else {
                return;
            };
            if let Err(e) = catalog.rebuild().await {
                tracing::warn!(error = %e, "could not reread the adaptor catalogue");
            }
        }
    });
}
