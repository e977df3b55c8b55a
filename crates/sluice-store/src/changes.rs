//! The change feed: configuration changes announced to every in-process cache.

use uuid::Uuid;

/// A configuration change that invalidates cached state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A channel was created, changed or deleted.
    Channel(Uuid),
    /// A source auth method was created or deleted.
    AuthMethod(Uuid),
    /// A sink credential was created, changed (also by a token refresh) or deleted.
    Credential(Uuid),
}
