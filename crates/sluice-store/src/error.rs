//! The error type of the storage boundary.

/// What went wrong talking to the ledger.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was broken (e.g. a duplicate channel name).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The row to change does not exist.
    #[error("not found")]
    NotFound,
    /// The row changed since it was read (optimistic locking).
    #[error("stale lock_version")]
    Stale,
    /// A stored value could not be decoded.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The dedicated SQLite write connection failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A file of the ledger (its journal) could not be read or written, or a thread started.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// Secrets could not be sealed or opened (no key, unknown key, tampered record).
    #[error("secrets: {0}")]
    Secrets(String),
    /// Running migrations failed.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// Maps a unique-constraint violation to [`StoreError::Conflict`], leaving others as they are.
    pub(crate) fn from_write(err: sqlx::Error, what: &str) -> Self {
        if let sqlx::Error::Database(db) = &err {
            if db.is_unique_violation() {
                return StoreError::Conflict(what.to_string());
            }
        }
        StoreError::Database(err)
    }
}

impl StoreError {
    /// Whether the database could not be reached at all (refused or lost connections, a server
    /// shutting down or starting), as opposed to refusing one statement: the same write may
    /// succeed once it is back.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut) => true,
            // SQLSTATE class 08 (connection exception) and 57P (a server shutting down, or
            // not yet accepting connections).
            StoreError::Database(sqlx::Error::Database(db)) => db
                .code()
                .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
            _ => false,
        }
    }

    /// An I/O failure while doing `what`.
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| StoreError::Io { what, source }
    }
}

/// Result alias of the storage boundary.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
