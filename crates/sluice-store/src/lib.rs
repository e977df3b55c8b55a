//! The sluice ledger: one storage interface over SQLite (default) and PostgreSQL, the
//! migrations of both, the group-commit writer and the change feed that keeps caches fresh.
//!
//! Both backends are reached through `sqlx`'s `Any` driver with the same SQL text (numbered
//! `$N` parameters, types both understand); what differs — migrations and connection setup —
//! lives in [`db`].

pub mod audit;
pub mod auth_methods;
pub mod backup;
pub mod catalog;
pub mod changes;
pub mod channels;
pub mod credentials;
pub mod db;
pub mod error;
mod event_codec;
pub mod event_log;
pub mod health;
pub mod journal;
mod journal_line;
pub mod leader;
pub mod ledger;
mod legacy;
pub mod log_entries;
pub mod projects;
mod request_row;
pub mod requests;
mod rollup;
mod rows;
pub mod secrets;
pub mod sessions;
pub mod settings;
mod sqlite_writer;
#[cfg(test)]
mod test_support;
pub mod tokens;
mod upgrade;
pub mod users;
pub mod wipes;

pub use audit::{AuditEntry, AuditFilter, AuditScope};
pub use auth_methods::RemoveOutcome;
pub use changes::Change;
pub use credentials::Credential;
pub use db::{Backend, Store, StoreOptions};
pub use error::StoreError;
pub use event_log::EventLog;
pub use health::{ChannelHealth, HealthStatus, HealthUpdate};
pub use ledger::{Ledger, LedgerConfig, LedgerError};
pub use log_entries::{ChannelScope, LogEntry, LogFilter, LogPage, Severity, Source};
pub use projects::{Member, Project, ProjectRemoval};
pub use requests::{ChannelStats, Cursor, LatencyBin, RequestFilter, RequestPage, StatusFilter};
pub use secrets::Secrets;
pub use sessions::SessionLimits;
pub use tokens::{ApiToken, NewToken, Role};
pub use users::{NewUser, PasswordState, User, UserPatch, UserRecord};
