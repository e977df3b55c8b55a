//! The diff-driven refresh: list upstream, fetch only the packages whose version differs from
//! the ledger's (and revalidate known icons), hide what upstream stopped listing.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{stream, StreamExt};
use serde::Serialize;
use serde_json::{json, Value};
use sluice_catalog::{CatalogError, IconFetch, IconShape, Listed, PackageInfo};
use sluice_core::clock::now_us;
use sluice_store::catalog::{AdaptorIconRow, AdaptorRow, AdaptorVersionRow, CatalogRefresh};
use sluice_store::{Severity, Source, StoreError};
use tokio::sync::watch;

use super::icons::{self, sha256};
use super::{package_name, Catalog, IconRef};

/// Packages refreshed at once (the strategy bounds its own requests further).
const PACKAGES_AT_ONCE: usize = 8;
const SHAPES: [IconShape; 2] = [IconShape::Square, IconShape::Rectangle];

/// What started a refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The refresh interval.
    Interval,
    /// `POST /api/v1/catalog/refresh` (or the maintenance page's button).
    Api,
    /// `sluice catalog refresh`.
    Cli,
    /// A read that found the catalogue never loaded.
    FirstRead,
}

impl Cause {
    fn as_str(self) -> &'static str {
        match self {
            Cause::Interval => "interval",
            Cause::Api => "api",
            Cause::Cli => "cli",
            Cause::FirstRead => "first_read",
        }
    }
}

/// What one refresh did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct RefreshReport {
    /// Packages the listing named (1 for a refresh of one package).
    pub listed: usize,
    /// Packages new to the ledger.
    pub added: Vec<String>,
    /// Packages whose metadata, versions or latest schema changed.
    pub updated: Vec<String>,
    /// Packages upstream stopped listing, now hidden.
    pub hidden: Vec<String>,
    /// Hidden packages listed again.
    pub shown: Vec<String>,
    /// Icons changed, as `<package>/<shape>`.
    pub icons: Vec<String>,
    /// Packages (or `<package>/<shape>` icons) that could not be refreshed, with why (the rest
    /// were).
    pub failed: BTreeMap<String, String>,
    /// How long it took.
    pub duration_ms: u64,
}

impl RefreshReport {
    /// Whether the ledger changed.
    pub fn changed(&self) -> bool {
        let lists = [
            &self.added,
            &self.updated,
            &self.hidden,
            &self.shown,
            &self.icons,
        ];
        lists.iter().any(|l| !l.is_empty())
    }
}

/// Why a refresh did nothing.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// Upstream could not be listed.
    #[error("listing the adaptors failed: {0}")]
    Listing(String),
    /// Upstream listed nothing; taken as a fault upstream, not as every package gone.
    #[error("the listing named no adaptor; nothing was changed")]
    EmptyListing,
    /// The one package asked for is not upstream.
    #[error("no such adaptor upstream: {0}")]
    UnknownPackage(String),
    /// The package asked for could not be refreshed.
    #[error("{0}")]
    Package(String),
    /// The ledger failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An upstream call's outcome label for `sluice_catalog_upstream_calls_total`.
pub(super) trait Outcome {
    fn outcome(&self) -> &'static str {
        "ok"
    }
}
impl Outcome for Vec<Listed> {}
impl Outcome for PackageInfo {}
impl Outcome for Option<String> {
    fn outcome(&self) -> &'static str {
        if self.is_some() {
            "ok"
        } else {
            "missing"
        }
    }
}
impl Outcome for IconFetch {
    fn outcome(&self) -> &'static str {
        match self {
            IconFetch::Found { .. } => "ok",
            IconFetch::NotModified => "not_modified",
            IconFetch::Missing => "missing",
        }
    }
}

/// Counts an upstream call by kind and outcome.
pub(super) fn counted<T: Outcome>(
    kind: &'static str,
    result: Result<T, CatalogError>,
) -> Result<T, CatalogError> {
    let outcome = match &result {
        Ok(v) => v.outcome(),
        Err(CatalogError::UnknownPackage(_)) => "missing",
        Err(_) => "error",
    };
    metrics::counter!("sluice_catalog_upstream_calls_total", "kind" => kind, "outcome" => outcome)
        .increment(1);
    result
}

/// What refreshing one package changed.
#[derive(Default)]
struct PackageChange {
    added: bool,
    updated: bool,
    icons: Vec<String>,
    /// Icons that could not be revalidated (`<package>/<shape>`, why): the package stands.
    icon_failures: Vec<(String, String)>,
}

/// A version's fields that upstream owns, to tell whether a packument changed anything.
fn version_key(v: &AdaptorVersionRow) -> impl PartialEq + '_ {
    (
        &v.version,
        &v.published,
        &v.deprecated,
        &v.integrity,
        &v.tarball,
        v.unpacked_size,
        &v.dependencies,
    )
}

fn version_rows(info: &PackageInfo) -> Vec<AdaptorVersionRow> {
    info.versions
        .iter()
        .map(|v| AdaptorVersionRow {
            name: info.name.clone(),
            version: v.version.clone(),
            published: v.published.clone(),
            deprecated: v.deprecated.clone(),
            integrity: v.integrity.clone(),
            tarball: v.tarball.clone(),
            unpacked_size: v.unpacked_size.and_then(|n| i64::try_from(n).ok()),
            dependencies: json!(v.dependencies).to_string(),
            schema_state: sluice_store::catalog::SchemaState::Unfetched,
            schema: None,
        })
        .collect()
}

impl Catalog {
    /// Refreshes every package (`only: None`) or one, forced; one refresh runs at a time on a
    /// node. Records the refresh, tells every node when something changed, and reports it.
    pub async fn refresh(
        self: &Arc<Self>,
        cause: Cause,
        only: Option<&str>,
    ) -> Result<RefreshReport, RefreshError> {
        let _one_at_a_time = self.refreshing.lock().await;
        let (started, clock) = (now_us(), Instant::now());
        let mut result = self.refresh_all(only).await;
        let elapsed = clock.elapsed();
        metrics::histogram!("sluice_catalog_refresh_seconds").record(elapsed.as_secs_f64());
        if let Ok(report) = &mut result {
            report.duration_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        }
        let (summary, changed) = match &result {
            Ok(report) => (json!(report), report.changed()),
            Err(e) => (json!({ "error": e.to_string() }), false),
        };
        let record = CatalogRefresh {
            started_at: started,
            finished_at: now_us(),
            node: self.config.node.clone(),
            cause: cause.as_str().into(),
            ok: result.is_ok(),
            summary: summary.to_string(),
        };
        if let Err(e) = self.store.record_catalog_refresh(&record, changed).await {
            tracing::warn!(error = %e, "could not record the catalogue refresh");
        }
        if changed {
            if let Err(e) = self.rebuild().await {
                tracing::warn!(error = %e, "could not reread the adaptor catalogue");
            }
        }
        if let Err(e) = &result {
            let why = e.to_string();
            self.loads.send_modify(|l| {
                l.failed += 1;
                l.failed_at = Some(Instant::now());
                l.last_error = Some(why);
            });
        }
        self.report_event(cause, &result, summary);
        result
    }

    /// Tells the event log what a refresh did, when it did or failed anything.
    fn report_event(
        &self,
        cause: Cause,
        result: &Result<RefreshReport, RefreshError>,
        details: Value,
    ) {
        let Some(events) = &self.events else {
            return;
        };
        let (severity, message) = match result {
            // An operator's typo, answered 422; nothing upstream is wrong.
            Err(RefreshError::UnknownPackage(_)) => return,
            Err(e) => (
                Severity::Error,
                format!("adaptor catalogue refresh failed: {e}"),
            ),
            Ok(r) if !r.failed.is_empty() => (
                Severity::Warn,
                format!(
                    "adaptor catalogue refreshed; {} package(s) failed",
                    r.failed.len()
                ),
            ),
            Ok(r) if r.changed() => (
                Severity::Info,
                format!(
                    "adaptor catalogue refreshed: {} added, {} updated, {} hidden",
                    r.added.len(),
                    r.updated.len(),
                    r.hidden.len()
                ),
            ),
            Ok(_) => return,
        };
        let mut details = details;
        details["cause"] = cause.as_str().into();
        events.emit(severity, Source::Catalog, None, message, details);
    }

    async fn refresh_all(&self, only: Option<&str>) -> Result<RefreshReport, RefreshError> {
        let known: HashMap<String, AdaptorRow> = self
            .store
            .catalog_adaptors()
            .await?
            .into_iter()
            .map(|a| (a.name.clone(), a))
            .collect();
        let listed = match only {
            Some(name) => vec![Listed {
                name: package_name(name),
                version: None,
            }],
            None => {
                let listed = counted("list", self.strategy.list().await);
                let listed = listed.map_err(|e| RefreshError::Listing(e.to_string()))?;
                if listed.is_empty() {
                    return Err(RefreshError::EmptyListing);
                }
                listed
            }
        };
        let icons: HashMap<(String, String), AdaptorIconRow> = self
            .store
            .catalog_icons()
            .await?
            .into_iter()
            .map(|i| ((i.name.clone(), i.shape.clone()), i))
            .collect();
        let now = now_us();
        let forced = only.is_some();
        // Futures made first, then polled a few at once (a closure inside the stream would
        // not be `Send` for every lifetime, which `tokio::spawn` needs).
        let icons = &icons;
        let tasks: Vec<_> = listed
            .iter()
            .map(|l| {
                let known = known.get(&l.name);
                async move {
                    let change = self.refresh_package(l, known, forced, icons, now).await;
                    (l.name.clone(), change)
                }
            })
            .collect();
        let outcomes: Vec<_> = stream::iter(tasks)
            .buffer_unordered(PACKAGES_AT_ONCE)
            .collect()
            .await;
        let mut report = RefreshReport {
            listed: listed.len(),
            ..RefreshReport::default()
        };
        for (name, outcome) in outcomes {
            match outcome {
                Ok(change) => {
                    if change.added {
                        report.added.push(name.clone());
                    } else if change.updated {
                        report.updated.push(name.clone());
                    }
                    report.icons.extend(change.icons);
                    report.failed.extend(change.icon_failures);
                }
                Err(PackageError::Unknown) if forced => {
                    return Err(RefreshError::UnknownPackage(name))
                }
                Err(e) if forced => return Err(RefreshError::Package(e.to_string())),
                Err(e) => {
                    report.failed.insert(name, e.to_string());
                }
            }
        }
        if !forced {
            let names: Vec<String> = listed.into_iter().map(|l| l.name).collect();
            (report.hidden, report.shown) = self.store.apply_catalog_listing(&names, now).await?;
        }
        for list in [&mut report.added, &mut report.updated, &mut report.icons] {
            list.sort();
        }
        Ok(report)
    }

    /// Fetches one package when its listed version is not the ledger's (or `force`), and
    /// revalidates its icons.
    async fn refresh_package(
        &self,
        listed: &Listed,
        known: Option<&AdaptorRow>,
        force: bool,
        icons: &HashMap<(String, String), AdaptorIconRow>,
        now: i64,
    ) -> Result<PackageChange, PackageError> {
        let name = &listed.name;
        let mut change = PackageChange::default();
        let current = !force && known.is_some_and(|k| listed.version.as_ref() == Some(&k.latest));
        let mut fetched = false;
        if !current {
            fetched = true;
            let changed = self.fetch_package(name, known, now).await?;
            change.added = changed && known.is_none();
            change.updated = changed && known.is_some();
        }
        for shape in SHAPES {
            let stored = icons.get(&(name.clone(), shape.as_str().to_string()));
            // Icons ship with releases: one never seen is looked for when the package is read.
            if stored.is_none() && !fetched {
                continue;
            }
            let key = format!("{name}/{}", shape.as_str());
            match self.refresh_icon(name, shape, stored, now).await {
                Ok(true) => change.icons.push(key),
                Ok(false) => {}
                Err(e) => change.icon_failures.push((key, e.to_string())),
            }
        }
        Ok(change)
    }

    /// Reads a package's packument (and its latest schema, if not stored yet) and saves what
    /// differs from the ledger; whether anything did.
    async fn fetch_package(
        &self,
        name: &str,
        known: Option<&AdaptorRow>,
        now: i64,
    ) -> Result<bool, PackageError> {
        let info = counted("packument", self.strategy.package(name).await)?;
        let stored = self.store.catalog_versions(name).await?;
        let rows = version_rows(&info);
        let latest_fetched = stored.iter().any(|v| {
            v.version == info.latest
                && v.schema_state != sluice_store::catalog::SchemaState::Unfetched
        });
        let schema = match latest_fetched {
            true => None,
            false => Some(counted(
                "schema",
                self.strategy.schema(name, &info.latest).await,
            )?),
        };
        let row = AdaptorRow {
            name: name.to_string(),
            description: info.description.clone(),
            latest: info.latest.clone(),
            deprecated: info.deprecated.clone(),
            hidden_at: known.and_then(|k| k.hidden_at),
            checked_at: now,
            changed_at: now,
        };
        let same_row = known.is_some_and(|k| {
            (&k.description, &k.latest, &k.deprecated)
                == (&row.description, &row.latest, &row.deprecated)
        });
        // Upstream's order and the ledger's may differ: compare version by version.
        let same_versions = stored.len() == rows.len()
            && rows.iter().all(|b| {
                let a = stored.iter().find(|a| a.version == b.version);
                a.is_some_and(|a| version_key(a) == version_key(b))
            });
        if same_row && same_versions && schema.is_none() {
            return Ok(false);
        }
        let latest_schema = schema
            .as_ref()
            .map(|s| (info.latest.as_str(), s.as_deref()));
        self.store.save_adaptor(&row, &rows, latest_schema).await?;
        Ok(true)
    }

    /// Revalidates one icon (conditionally when one is stored); whether it changed.
    async fn refresh_icon(
        &self,
        name: &str,
        shape: IconShape,
        stored: Option<&AdaptorIconRow>,
        now: i64,
    ) -> Result<bool, PackageError> {
        let etag = stored.and_then(|s| s.etag.as_deref());
        let fetched = counted("icon", self.strategy.icon(name, shape, etag).await)?;
        let (bytes, content_type, etag) = match fetched {
            IconFetch::NotModified => return Ok(false),
            IconFetch::Missing => {
                return Ok(self.store.delete_adaptor_icon(name, shape.as_str()).await?)
            }
            IconFetch::Found {
                bytes,
                content_type,
                etag,
            } => (bytes, content_type, etag),
        };
        let icon = IconRef {
            sha256: sha256(&bytes),
            content_type: content_type.to_string(),
        };
        let same = stored
            .is_some_and(|s| (&s.sha256, &s.content_type) == (&icon.sha256, &icon.content_type));
        if same && stored.is_some_and(|s| s.etag == etag) {
            return Ok(false);
        }
        if !same {
            icons::write(&self.config.icon_dir, &icon, &bytes)
                .await
                .map_err(|e| PackageError::Other(format!("writing an icon: {e}")))?;
        }
        let row = AdaptorIconRow {
            name: name.to_string(),
            shape: shape.as_str().to_string(),
            sha256: icon.sha256,
            content_type: icon.content_type,
            etag,
            fetched_at: now,
        };
        self.store.save_adaptor_icon(&row).await?;
        Ok(!same)
    }

    /// Refreshes on the interval (the first tick due at the last refresh plus the interval)
    /// until `stop`.
    pub async fn run(self: Arc<Self>, interval: Duration, mut stop: watch::Receiver<bool>) {
        let every = i64::try_from(interval.as_micros()).unwrap_or(i64::MAX);
        loop {
            let wait = match self.store.catalog_refreshes(1).await {
                Ok(last) => last.first().map_or(0, |r| {
                    r.finished_at.saturating_add(every).saturating_sub(now_us())
                }),
                Err(e) => {
                    tracing::warn!(error = %e, "catalogue refresh: cannot read the last one");
                    60_000_000
                }
            };
            let wait = Duration::from_micros(u64::try_from(wait).unwrap_or(0));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            tokio::select! {
                _ = self.refresh(Cause::Interval, None) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }
}

/// Why one package could not be refreshed.
#[derive(Debug, thiserror::Error)]
enum PackageError {
    #[error("not upstream")]
    Unknown,
    #[error("{0}")]
    Upstream(CatalogError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Other(String),
}

impl From<CatalogError> for PackageError {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::UnknownPackage(_) => PackageError::Unknown,
            e => PackageError::Upstream(e),
        }
    }
}
