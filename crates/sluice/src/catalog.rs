//! The adaptor catalogue's wiring: the upstream the flags choose, the catalogue of `serve`, and
//! `sluice catalog refresh`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use sluice_admin::catalog::{Catalog, CatalogConfig, Cause};
use sluice_catalog::{LocalStrategy, NpmConfig, NpmStrategy, Strategy};
use sluice_store::{Change, EventLog, Store};
use tokio::sync::watch;

use crate::cli::{CatalogArgs, CatalogCommand, CatalogStrategy, LedgerArgs};

/// Exit status of `sluice catalog refresh` when another node leads and nothing was done.
const NOT_THE_LEADER: i32 = 3;

/// The upstream the flags name, and how it is described on the catalogue's status.
fn strategy(
    args: &CatalogArgs,
    extra_ca: Option<&Path>,
) -> anyhow::Result<(Arc<dyn Strategy>, String)> {
    let kind = args
        .catalog_strategy
        .unwrap_or(match args.catalog_dirs.is_empty() {
            true => CatalogStrategy::Npm,
            false => CatalogStrategy::Local,
        });
    if kind == CatalogStrategy::Local {
        if args.catalog_dirs.is_empty() {
            anyhow::bail!("--catalog-strategy local needs at least one --catalog-dir");
        }
        if let Some(missing) = args.catalog_dirs.iter().find(|d| !d.is_dir()) {
            anyhow::bail!(
                "the adaptor catalogue's directory {} is not a directory",
                missing.display()
            );
        }
        let shown: Vec<String> = args
            .catalog_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        let local = LocalStrategy::new(args.catalog_dirs.clone());
        return Ok((Arc::new(local), format!("local {}", shown.join(", "))));
    }
    let mut config = NpmConfig::new(&args.catalog_registry_url);
    config.packages = match &args.catalog_packages {
        Some(list) => package_list(list)?,
        None => Vec::new(),
    };
    config.schema_url = args.catalog_schema_url.clone();
    config.icons_url = Some(args.catalog_icons_url.clone()).filter(|u| !u.is_empty());
    config.timeout = args.catalog_timeout;
    config.fetch_concurrency = args.catalog_fetch_concurrency;
    config.icon_concurrency = args.catalog_icon_concurrency;
    if let Some(path) = extra_ca {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        config.extra_ca_pem = Some(pem);
    }
    let npm = NpmStrategy::new(config).context("the adaptor catalogue's settings")?;
    Ok((Arc::new(npm), format!("npm {}", args.catalog_registry_url)))
}

/// `--catalog-packages`: a file of names (one per line, first column), or a comma-separated list.
fn package_list(value: &str) -> anyhow::Result<Vec<String>> {
    let text = match Path::new(value).is_file() {
        true => std::fs::read_to_string(value).with_context(|| format!("reading {value}"))?,
        false => value.replace(',', "\n"),
    };
    Ok(text
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| !name.starts_with('#'))
        .map(str::to_string)
        .collect())
}

/// The catalogue of this node, warmed from the ledger; `leading` tells whether it refreshes.
pub async fn start(
    args: &CatalogArgs,
    extra_ca: Option<&Path>,
    store: &Store,
    data_dir: &Path,
    node: String,
    events: Option<EventLog>,
    leading: watch::Receiver<bool>,
) -> anyhow::Result<Arc<Catalog>> {
    let (strategy, source) = strategy(args, extra_ca)?;
    let config = CatalogConfig {
        source,
        refresh_interval: args.catalog_refresh_interval,
        node,
        icon_dir: data_dir.join("adaptor-icons"),
        wait: args.catalog_wait,
    };
    Catalog::start(store.clone(), strategy, config, events, leading)
        .await
        .context("reading the adaptor catalogue from the ledger")
}

/// `sluice catalog …`
pub async fn command(cmd: CatalogCommand) -> anyhow::Result<()> {
    let CatalogCommand::Refresh {
        ledger,
        catalog,
        extra_ca_file,
        package,
    } = cmd;
    refresh(&ledger, &catalog, extra_ca_file, package.as_deref()).await
}

/// `sluice catalog refresh`: refreshes from this process unless a serving node leads (exit 3),
/// prints the report as JSON, exits 1 when the refresh or any package failed.
async fn refresh(
    ledger: &LedgerArgs,
    args: &CatalogArgs,
    extra_ca: Option<PathBuf>,
    package: Option<&str>,
) -> anyhow::Result<()> {
    let store = ledger.open().await?;
    let Some(lead) = store.try_lead_once().await? else {
        eprintln!(
            "sluice: another node leads the background jobs and refreshes the catalogue; \
             nothing was done (ask it with POST /api/v1/catalog/refresh)"
        );
        store.close().await;
        std::process::exit(NOT_THE_LEADER);
    };
    let leading = watch::channel(true).1;
    let node = ledger.node_id()?;
    let catalog = start(
        args,
        extra_ca.as_deref(),
        &store,
        &ledger.data_dir,
        node,
        None,
        leading,
    );
    let outcome = catalog.await?.refresh(Cause::Cli, package).await;
    let failed = match &outcome {
        Ok(report) => {
            println!("{}", serde_json::to_string_pretty(report)?);
            if report.changed() {
                // Serving nodes on PostgreSQL reread the catalogue.
                store.announce(Change::Catalog).await?;
            }
            !report.failed.is_empty()
        }
        Err(e) => {
            eprintln!("sluice: catalogue refresh failed: {e}");
            true
        }
    };
    drop(lead);
    store.close().await;
    if failed {
        std::process::exit(1);
    }
    Ok(())
}
