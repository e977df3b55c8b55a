//! Connecting to the ledger, running migrations, and the dialect differences of the backends.

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyPool, ConnectOptions, Executor, Transaction};
use tokio::sync::{broadcast, watch};

use crate::changes::Change;
use crate::error::{Result, StoreError};
use uuid::Uuid;

/// Page cache of each pooled SQLite reader connection (1 MiB; the writer keeps 8 MiB).
const READER_CACHE_SIZE: &str = "PRAGMA cache_size = -1024";

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Which database engine holds the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite file (single node).
    Sqlite,
    /// PostgreSQL server (one or many nodes).
    Postgres,
}

/// Tunables for opening the ledger.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Maximum pooled connections.
    pub max_connections: u32,
    /// How long SQLite waits on a locked database before failing a statement.
    pub sqlite_busy_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 8,
            sqlite_busy_timeout: Duration::from_secs(5),
        }
    }
}

/// The ledger: a connection pool plus the change feed of configuration updates.
#[derive(Clone)]
pub struct Store {
    pub(crate) pool: AnyPool,
    backend: Backend,
    sqlite_path: Option<std::path::PathBuf>,
    busy_timeout: Duration,
    changes: broadcast::Sender<Change>,
    /// This process's id in change notifications (its own come back and are skipped).
    origin: Uuid,
    /// The PostgreSQL URL, for the notification listener.
    pg_url: Option<std::sync::Arc<str>>,
    pub(crate) secrets: Option<std::sync::Arc<crate::secrets::Secrets>>,
    /// While a SQLite ledger runs: shows its requests in flight to this store's readers.
    pub(crate) inflight: crate::ledger::InflightView,
    /// Set while the database is known to be unreachable (see [`Store::unreachable`]).
    outage: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// Why requests are refused while the database does not answer.
pub(crate) const UNREACHABLE: &str = "database unreachable";
/// Time between two pings of a database found unreachable.
const OUTAGE_PROBE: Duration = Duration::from_millis(500);

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish()
    }
}

impl Store {
    /// Why requests cannot be recorded now, when they cannot: a SQLite ledger file refusing
    /// completions (a full disk), or a database found unreachable. The proxy refuses requests
    /// meanwhile; `/readyz` reports it.
    pub fn not_recording(&self) -> Option<&'static str> {
        if !self.inflight.recording() {
            Some(crate::ledger::STUCK)
        } else if self.is_unreachable() {
            Some(UNREACHABLE)
        } else {
            None
        }
    }

    /// Whether the database is known to be unreachable now (one atomic load: the PostgreSQL
    /// ledger asks it for every request).
    pub(crate) fn is_unreachable(&self) -> bool {
        self.outage.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Marks the database unreachable (a write or ping failed for want of it) until a ping,
    /// tried every [`OUTAGE_PROBE`], is answered. Meanwhile new requests are refused at once
    /// instead of each waiting out the pool's connect timeout.
    pub(crate) fn unreachable(&self) {
        if self.outage.swap(true, std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        tracing::error!("{UNREACHABLE}; refusing requests until it answers");
        let store = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(OUTAGE_PROBE).await;
                if sqlx::query("SELECT 1").execute(&store.pool).await.is_ok() {
                    break;
                }
            }
            store
                .outage
                .store(false, std::sync::atomic::Ordering::Relaxed);
            tracing::info!("the database answers again");
        });
    }

    /// Opens the ledger at `url` (`sqlite://path` or `postgres://…`), creating a SQLite file
    /// if needed. Does not migrate; call [`Store::migrate`].
    pub async fn connect(url: &str, opts: &StoreOptions) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            return Err(sqlx::Error::Configuration(
                format!("unsupported database URL scheme in {url:?}: use sqlite:// or postgres://")
                    .into(),
            )
            .into());
        };
        let url = match backend {
            Backend::Sqlite if !url.contains("mode=") => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}mode=rwc")
            }
            _ => url.to_string(),
        };
        let connect = AnyConnectOptions::from_str(&url)?.disable_statement_logging();
        let busy_ms = opts.sqlite_busy_timeout.as_millis();
        let sqlite_path = (backend == Backend::Sqlite).then(|| {
            let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
            std::path::PathBuf::from(rest.split('?').next().unwrap_or(rest))
        });
        let sqlite = backend == Backend::Sqlite;
        let pool = AnyPoolOptions::new()
            .max_connections(opts.max_connections)
            // A PostgreSQL server that is down makes the pool retry its connection until this
            // passes: the first request after an outage begins waits that long for its 503
            // (later ones are refused at once, see `Store::unreachable`).
            .acquire_timeout(Duration::from_secs(if sqlite { 10 } else { 3 }))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        // Before the first table exists (a no-op later): larger pages mean
                        // fewer WAL frames, each a write call, per batch of completions.
                        conn.execute(LEDGER_PAGE_SIZE).await?;
                        // WAL lets readers run beside the single writer; NORMAL syncs at
                        // checkpoints, which survives a process crash (see docs/tuning-log.md).
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        // Readers scan far more than any cache holds (the channel list's
                        // `requests_24h` counts a day of index entries), and the file cache
                        // serves re-reads: with SQLite's default of 2 MiB a connection, the
                        // pool's scans grew the process by ~87 MiB, with 1 MiB by ~43 MiB,
                        // at the same speed (docs/BENCHMARKS.md, session 16).
                        conn.execute(READER_CACHE_SIZE).await?;
                        conn.execute(format!("PRAGMA busy_timeout = {busy_ms}").as_str())
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(connect)
            .await?;
        let (changes, _) = broadcast::channel(1024);
        Ok(Self {
            pool,
            backend,
            sqlite_path,
            busy_timeout: opts.sqlite_busy_timeout,
            changes,
            origin: Uuid::new_v4(),
            pg_url: (backend == Backend::Postgres).then(|| url.as_str().into()),
            secrets: None,
            inflight: Default::default(),
            outage: Default::default(),
        })
    }

    /// Applies pending migrations of this backend, then the upgrades they leave to code
    /// (importing an older ledger's request batches and event files, rebuilding roll-ups).
    pub async fn migrate(&self) -> Result<()> {
        match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&self.pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&self.pool).await?,
        }
        crate::upgrade::run(self).await
    }

    /// The PostgreSQL URL, when the ledger is PostgreSQL.
    pub(crate) fn pg_url(&self) -> Option<&str> {
        self.pg_url.as_deref()
    }

    /// The engine behind this store.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The SQLite file and busy timeout, when the ledger is SQLite.
    pub(crate) fn sqlite_file(&self) -> Option<(&std::path::Path, Duration)> {
        self.sqlite_path.as_deref().map(|p| (p, self.busy_timeout))
    }

    /// Begins a transaction that reads configuration and then changes it. On SQLite a deferred
    /// transaction reads from a snapshot, and its first write fails at once with "database is
    /// locked" when a ledger writer committed since (under traffic, nearly always); so this one
    /// takes the ledger file's write lock first (waiting up to the busy timeout) and reads the
    /// newest data.
    pub(crate) async fn begin_write(&self) -> Result<Transaction<'static, Any>> {
        let mut tx = self.pool.begin().await?;
        if self.backend == Backend::Sqlite {
            // A write that changes nothing still takes the lock.
            tx.execute("UPDATE projects SET id = id WHERE 0").await?;
        }
        Ok(tx)
    }

    /// Checks that the database answers (marking it unreachable when it does not).
    pub async fn ping(&self) -> Result<()> {
        let res = sqlx::query("SELECT 1").execute(&self.pool).await;
        res.map(drop).map_err(|e| {
            let e = StoreError::from(e);
            if e.is_unavailable() {
                self.unreachable();
            }
            e
        })
    }

    /// Subscribes to configuration changes.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// Applies every configuration change to `target` (a cache) from a task of its own, until
    /// `target` is dropped or the store closes. Changes a slow subscriber missed arrive as
    /// [`Change::Unknown`], so a cache has one rule for "anything may have changed".
    pub fn on_change<T: Send + Sync + 'static>(
        &self,
        target: &std::sync::Arc<T>,
        apply: fn(&T, Change),
    ) {
        let target = std::sync::Arc::downgrade(target);
        let mut rx = self.changes.subscribe();
        tokio::spawn(async move {
            loop {
                let change = match rx.recv().await {
                    Ok(c) => c,
                    Err(broadcast::error::RecvError::Lagged(_)) => Change::Unknown,
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                let Some(target) = target.upgrade() else {
                    return;
                };
                apply(&target, change);
            }
        });
    }

    /// Announces a configuration change to every subscriber, and on PostgreSQL to every other
    /// node (a `NOTIFY` after the change committed).
    pub fn publish(&self, change: Change) {
        // No subscriber is fine: nothing is cached yet.
        let _ = self.changes.send(change);
        if self.backend == Backend::Postgres {
            let store = self.clone();
            tokio::spawn(async move {
                if let Err(e) = store.announce(change).await {
                    tracing::warn!(error = %e, "could not tell other nodes of a change");
                }
            });
        }
    }

    /// Tells other nodes of a change and waits until the database took the notification (a
    /// one-shot command exits right after; [`Store::publish`] would send it too late).
    pub async fn announce(&self, change: Change) -> Result<()> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(crate::changes::NOTIFY_CHANNEL)
                .bind(change.payload(self.origin))
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Whether this node runs the background jobs, followed until `shutdown`: on PostgreSQL the
    /// one node holding the jobs' advisory lock (see `leader.rs`), on SQLite always this one.
    pub fn follow_leadership(&self, shutdown: watch::Receiver<bool>) -> watch::Receiver<bool> {
        match &self.pg_url {
            None => watch::channel(true).1,
            Some(url) => {
                let (lead, led) = watch::channel(false);
                tokio::spawn(crate::leader::hold(
                    self.clone(),
                    url.to_string(),
                    lead,
                    shutdown,
                ));
                led
            }
        }
    }

    /// On PostgreSQL, starts relaying other nodes' configuration changes into this store's
    /// feed (until every clone of the store is dropped); on SQLite there are no other nodes.
    pub fn follow_other_nodes(&self) {
        if let Some(url) = &self.pg_url {
            tokio::spawn(crate::changes::relay_remote(
                url.to_string(),
                self.origin,
                self.changes.downgrade(),
            ));
        }
    }

    /// Closes every pooled connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Page size of a new SQLite ledger file: with 8 KiB pages instead of SQLite's 4 KiB the history
/// writer and the checkpointer spent ~1.4 µs less CPU per request (docs/tuning-log.md).
const LEDGER_PAGE_SIZE: &str = "PRAGMA page_size = 8192";

/// The SQLite file that held the requests in flight beside the ledger file `main` before the
/// plain ledger (`sluice.db` → `sluice-inflight.db`); an upgrade imports and removes it.
pub fn inflight_file(main: &std::path::Path) -> std::path::PathBuf {
    beside(main, "-inflight.db")
}

/// The path beside the ledger file `main` named after its stem and `suffix`.
pub(crate) fn beside(main: &std::path::Path, suffix: &str) -> std::path::PathBuf {
    let stem = main
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "ledger".into());
    main.with_file_name(format!("{stem}{suffix}"))
}
