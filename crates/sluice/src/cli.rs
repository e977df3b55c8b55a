//! The command line: every setting is a flag and a `SLUICE_*` environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// sluice: an observable HTTP channel gateway.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy, the API and the background jobs.
    Serve(Box<ServeArgs>),
    /// Apply database migrations and exit.
    Migrate(LedgerArgs),
    /// Copy a SQLite ledger, while sluice serves from it, into a new directory to start from
    /// (on PostgreSQL: explains how to use pg_dump instead).
    Backup(BackupArgs),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Manage users: create, list, disable, reset a password.
    #[command(subcommand)]
    User(UserCommand),
    /// Inspect channels.
    #[command(subcommand)]
    Channel(ChannelCommand),
    /// Manage the keys that seal secrets at rest.
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// The adaptor catalogue.
    #[command(subcommand)]
    Catalog(CatalogCommand),
    /// Benchmark toolkit: mock sink and load generator.
    #[command(subcommand)]
    Bench(BenchCommand),
}

/// Where the ledger lives; shared by every subcommand that touches it.
#[derive(Debug, Clone, Args)]
pub struct LedgerArgs {
    /// Directory for the SQLite ledger, the node id and keys.
    #[arg(long, env = "SLUICE_DATA_DIR", default_value = "./sluice-data")]
    pub data_dir: PathBuf,
    /// Database URL: `sqlite://PATH` or `postgres://…` (default: SQLite in the data directory).
    #[arg(long, env = "SLUICE_DATABASE_URL")]
    pub database_url: Option<String>,
}

/// Options of `sluice backup`.
#[derive(Debug, Clone, Args)]
pub struct BackupArgs {
    /// Ledger to copy.
    #[command(flatten)]
    pub ledger: LedgerArgs,
    /// Directory to write the backup into; it must not exist or be empty.
    pub dir: PathBuf,
}

/// Where the keys sealing credentials come from.
#[derive(Debug, Clone, Args)]
pub struct SecretArgs {
    /// Secret keys (32 bytes, base64 or hex; several comma-separated, the first seals). Default:
    /// `<data-dir>/secret.key`, generated on first start with mode 0600.
    #[arg(long, env = "SLUICE_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Options of `sluice serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Ledger location.
    #[command(flatten)]
    pub ledger: LedgerArgs,
    /// Secret keys.
    #[command(flatten)]
    pub secrets: SecretArgs,
    /// Address of the proxy (and of the API and UI unless --admin-listen is set).
    #[arg(long, env = "SLUICE_LISTEN", default_value = "127.0.0.1:4000")]
    pub listen: SocketAddr,
    /// Separate address for the API and UI.
    #[arg(long, env = "SLUICE_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// Threads serving the `--listen` address, each with its own connections (default: one
    /// per core).
    #[arg(long, env = "SLUICE_PROXY_THREADS", default_value_t = default_proxy_threads(),
          value_parser = clap::value_parser!(u16).range(1..))]
    pub proxy_threads: u16,
    /// Longest time a caller may take to send a request's head, from its first byte or from
    /// connecting (`10s`, `500ms`, …).
    #[arg(long, env = "SLUICE_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = crate::parse::parse)]
    pub header_read_timeout: std::time::Duration,
    /// Longest time a caller's connection may stay open idle between requests.
    #[arg(long, env = "SLUICE_KEEP_ALIVE_TIMEOUT", default_value = "60s", value_parser = crate::parse::parse)]
    pub keep_alive_timeout: std::time::Duration,
    /// Most callers' connections open at once on each listener; past it new connections wait
    /// until one closes (default: half the file descriptors the process may open, less a
    /// reserve).
    #[arg(long, env = "SLUICE_MAX_CONNECTIONS", default_value_t = crate::connections::default_max_connections(),
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Wrong credentials (or unknown channels) one client address may present to a channel in
    /// a `--source-auth-window`; past it the address gets 429 on that channel until the window
    /// ends (`0`: no limit).
    #[arg(long, env = "SLUICE_SOURCE_AUTH_FAILURES", default_value_t = 10)]
    pub source_auth_failures: u32,
    /// The window source-auth failures are counted over; the event log sums each one.
    #[arg(long, env = "SLUICE_SOURCE_AUTH_WINDOW", default_value = "1m", value_parser = crate::parse::parse)]
    pub source_auth_window: std::time::Duration,
    /// Serve `/metrics` to anyone (by default it needs an instance token or a superuser, as
    /// it names every channel).
    #[arg(long, env = "SLUICE_PUBLIC_METRICS")]
    pub public_metrics: bool,
    /// Base URL callers use to reach the proxy (used in `proxy_url`).
    #[arg(long, env = "SLUICE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Log format.
    #[arg(long, env = "SLUICE_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// PEM bundle trusted for sinks in addition to the web roots.
    #[arg(long, env = "SLUICE_EXTRA_CA_FILE")]
    pub extra_ca_file: Option<PathBuf>,
    /// Networks (`10.0.0.0/8`), addresses or host names (`dhis2.lan`) sinks, health probes and
    /// OAuth token calls may reach although loopback, private, link-local, CGNAT or unspecified;
    /// repeatable, or comma-separated.
    #[arg(
        long = "egress-allow",
        env = "SLUICE_EGRESS_ALLOW",
        value_delimiter = ','
    )]
    pub egress_allow: Vec<String>,
    /// Allow every address, private ones included (sluice's behaviour before egress policies).
    #[arg(long, env = "SLUICE_EGRESS_ALLOW_PRIVATE")]
    pub egress_allow_private: bool,
    /// PEM certificate chain to serve HTTPS with, on every listener (with `--tls-key`); read
    /// again on SIGHUP or when the file changes, without dropping connections.
    #[arg(long, env = "SLUICE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of `--tls-cert`.
    #[arg(long, env = "SLUICE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The adaptor catalogue.
    #[command(flatten)]
    pub catalog: CatalogArgs,
    /// Default connect timeout towards sinks, in milliseconds.
    #[arg(long, env = "SLUICE_CONNECT_TIMEOUT_MS", default_value_t = 5_000)]
    pub connect_timeout_ms: u64,
    /// Default time allowed for the sink's response head, in milliseconds.
    #[arg(long, env = "SLUICE_RESPONSE_TIMEOUT_MS", default_value_t = 15_000)]
    pub response_timeout_ms: u64,
    /// Default longest pause between body chunks, in milliseconds.
    #[arg(long, env = "SLUICE_IDLE_TIMEOUT_MS", default_value_t = 30_000)]
    pub idle_timeout_ms: u64,
    /// Most operations the ledger writer commits in one transaction.
    #[arg(long, env = "SLUICE_LEDGER_MAX_BATCH", default_value_t = 512)]
    pub ledger_max_batch: usize,
    /// Longest time a completion record waits to be batched with others, in milliseconds.
    #[arg(long, env = "SLUICE_LEDGER_COMPLETION_DELAY_MS", default_value_t = 3)]
    pub ledger_completion_delay_ms: u64,
    /// Longest wait for in-flight exchanges at shutdown, in seconds.
    #[arg(long, env = "SLUICE_SHUTDOWN_GRACE_SECS", default_value_t = 30)]
    pub shutdown_grace_secs: u64,
    /// Time between health probes of every enabled channel's sink: seconds, or a number with
    /// a unit (`250ms`, `30s`, `5m`, `2h`, `1d`); `0` turns the monitor off.
    #[arg(long, env = "SLUICE_HEALTH_INTERVAL", default_value = "5m", value_parser = crate::parse::parse)]
    pub health_interval: std::time::Duration,
    /// Health probes in flight at once.
    #[arg(long, env = "SLUICE_HEALTH_CONCURRENCY", default_value_t = 8)]
    pub health_concurrency: usize,
    /// Proxied requests in a row failing because of the sink (refused, timeout, 5xx) that mark
    /// it unhealthy at once; `0` turns passive health off.
    #[arg(long, env = "SLUICE_PASSIVE_HEALTH_FAILURES", default_value_t = 5)]
    pub passive_health_failures: u32,
    /// URL notified (JSON POST) when a channel turns unhealthy or healthy; repeatable, or a
    /// comma-separated list in the environment variable.
    #[arg(long = "webhook-url", env = "SLUICE_WEBHOOK_URL", value_delimiter = ',', value_parser = crate::parse::webhook_url)]
    pub webhook_urls: Vec<String>,
    /// Days without traffic after which an enabled channel is reported stale.
    #[arg(long, env = "SLUICE_STALE_THRESHOLD_DAYS", default_value_t = 7)]
    pub stale_threshold_days: u32,
    /// Days persisted event-log entries are kept.
    #[arg(long, env = "SLUICE_EVENT_RETENTION_DAYS", default_value_t = 30)]
    pub event_retention_days: u32,
    /// A sign-in session ends after this long without a call (`30m`, `12h`, …).
    #[arg(long, env = "SLUICE_SESSION_IDLE_TIMEOUT", default_value = "12h", value_parser = crate::parse::parse)]
    pub session_idle_timeout: std::time::Duration,
    /// A sign-in session ends this long after it began, whatever happens (`7d`, …).
    #[arg(long, env = "SLUICE_SESSION_MAX_AGE", default_value = "7d", value_parser = crate::parse::parse)]
    pub session_max_age: std::time::Duration,
}

/// Where the adaptor catalogue (credential types, their schemas and icons) comes from.
#[derive(Debug, Clone, Args)]
pub struct CatalogArgs {
    /// `npm` (a registry or mirror) or `local` (directories, never the network). Default:
    /// `local` when `--catalog-dir` is given, else `npm`.
    #[arg(long, env = "SLUICE_CATALOG_STRATEGY", value_enum)]
    pub catalog_strategy: Option<CatalogStrategy>,
    /// Directory laid out like the adaptors monorepo (`packages/<name>/package.json`,
    /// `configuration-schema.json`, `assets/`); repeatable, the first directory wins for a
    /// package found twice.
    #[arg(
        long = "catalog-dir",
        env = "SLUICE_CATALOG_DIR",
        value_delimiter = ','
    )]
    pub catalog_dirs: Vec<PathBuf>,
    /// The npm registry or mirror.
    #[arg(
        long,
        env = "SLUICE_CATALOG_REGISTRY_URL",
        default_value = "https://registry.npmjs.org"
    )]
    pub catalog_registry_url: String,
    /// Packages to read when the registry has no search endpoint: a comma-separated list, or
    /// a file with one name per line (the first column of a TSV).
    #[arg(long, env = "SLUICE_CATALOG_PACKAGES")]
    pub catalog_packages: Option<String>,
    /// Schema URL pattern with `{name}` and `{version}` (a CDN, e.g.
    /// `https://cdn.jsdelivr.net/npm/{name}@{version}/configuration-schema.json`); without it
    /// schemas come from the package tarballs.
    #[arg(long, env = "SLUICE_CATALOG_SCHEMA_URL")]
    pub catalog_schema_url: Option<String>,
    /// Raw-file base URL of the adaptors monorepo, for icons (`packages/<name>/assets/`).
    #[arg(
        long,
        env = "SLUICE_CATALOG_ICONS_URL",
        default_value = "https://raw.githubusercontent.com/OpenFn/adaptors/main"
    )]
    pub catalog_icons_url: String,
    /// Time between refreshes (`1h`, `30m`, …); `0` refreshes only on demand.
    #[arg(long, env = "SLUICE_CATALOG_REFRESH_INTERVAL", default_value = "1h", value_parser = crate::parse::parse)]
    pub catalog_refresh_interval: std::time::Duration,
    /// Longest wait of a read for catalogue data not loaded yet.
    #[arg(long, env = "SLUICE_CATALOG_WAIT", default_value = "15s", value_parser = crate::parse::parse)]
    pub catalog_wait: std::time::Duration,
    /// Limit on each upstream request.
    #[arg(long, env = "SLUICE_CATALOG_TIMEOUT", default_value = "30s", value_parser = crate::parse::parse)]
    pub catalog_timeout: std::time::Duration,
    /// Upstream listing, packument, schema and tarball requests in flight at once.
    #[arg(long, env = "SLUICE_CATALOG_FETCH_CONCURRENCY", default_value_t = 8)]
    pub catalog_fetch_concurrency: usize,
    /// Upstream icon requests in flight at once.
    #[arg(long, env = "SLUICE_CATALOG_ICON_CONCURRENCY", default_value_t = 20)]
    pub catalog_icon_concurrency: usize,
}

/// The catalogue's upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CatalogStrategy {
    /// The npm registry or a mirror of it.
    Npm,
    /// Local directories (air-gapped).
    Local,
}

/// `sluice catalog …`
#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Refresh the catalogue now and print what changed. Exit status: 0 done, 1 failed, 3 not
    /// the leader (a serving node of the cluster runs the refreshes) and nothing done.
    Refresh {
        /// Ledger location.
        #[command(flatten)]
        ledger: LedgerArgs,
        /// The upstream.
        #[command(flatten)]
        catalog: CatalogArgs,
        /// PEM bundle trusted for the upstream in addition to the web roots.
        #[arg(long, env = "SLUICE_EXTRA_CA_FILE")]
        extra_ca_file: Option<PathBuf>,
        /// Refresh only this adaptor (short or package name), whatever its version.
        #[arg(long)]
        package: Option<String>,
    },
}

/// `sluice token …`
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token and print it on the last line.
    Create {
        /// Ledger location.
        #[command(flatten)]
        ledger: LedgerArgs,
        /// A name for the token (shown in the audit trail).
        #[arg(long)]
        name: String,
        /// The user whose rights the token carries (default: an instance token, holding its
        /// role on every project).
        #[arg(long)]
        user: Option<String>,
        /// Only this project (its name or id); needs `--user`.
        #[arg(long, requires = "user")]
        project: Option<String>,
        /// Role granted (instance token), or the cap on the user's rights.
        #[arg(long, default_value = "superuser", value_parser = ["superuser", "admin", "editor", "viewer"])]
        role: String,
    },
}

/// `sluice user …`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user. The password is read from standard input with `--password-stdin`, or
    /// generated, printed once on the last line, and must be changed at first sign-in.
    Create {
        /// Ledger location.
        #[command(flatten)]
        ledger: LedgerArgs,
        /// Sign-in name (unique whatever its case).
        #[arg(long)]
        username: String,
        /// Name shown to people (default: the username).
        #[arg(long)]
        display_name: Option<String>,
        /// Manages users, projects and settings, and every project.
        #[arg(long)]
        superuser: bool,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users: id, username, superuser, disabled, last sign-in.
    List {
        /// Ledger location.
        #[command(flatten)]
        ledger: LedgerArgs,
    },
    /// Disable a user: no sign-in, sessions ended, tokens refused.
    Disable {
        /// Ledger location.
        #[command(flatten)]
        ledger: LedgerArgs,
        /// The user.
        username: String,
    },
    /// Give a user a new one-time password, printed once on the last line.
    ResetPassword {
        /// Ledger location.
        #[command(flatten)]
        ledger: LedgerArgs,
        /// The user.
        username: String,
    },
}

/// `sluice channel …`
#[derive(Debug, Subcommand)]
pub enum ChannelCommand {
    /// List channels: id, enabled, name, sink URL.
    List {
        /// Ledger location.
        #[command(flatten)]
        ledger: LedgerArgs,
    },
}

/// `sluice secrets …`
#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Re-seal every credential under a new key (key file: a fresh key is added first; given
    /// keys: the first given key). Older keys stay readable; serving processes need no restart.
    Rotate {
        /// Ledger location.
        #[command(flatten)]
        ledger: LedgerArgs,
        /// Secret keys.
        #[command(flatten)]
        secrets: SecretArgs,
    },
}

/// `sluice bench …`
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Run the mock sink.
    Sink(sluice_bench::sink::SinkArgs),
    /// Drive load through sluice (or directly at a sink) and report.
    Load(Box<sluice_bench::load::LoadArgs>),
}

/// One proxy thread per core the process may use.
fn default_proxy_threads() -> u16 {
    std::thread::available_parallelism().map_or(1, |n| u16::try_from(n.get()).unwrap_or(u16::MAX))
}
