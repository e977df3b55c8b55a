//! The change feed: configuration changes announced to every in-process cache.

use uuid::Uuid;

/// A configuration change that invalidates cached state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A channel was created, changed or deleted.
    Channel(Uuid),
}
