//! Domain types and rules of sluice: channels, snapshots, request records and the pure
//! functions of the proxy path (URL join, header pipeline, redaction, outcome classification).
//! Nothing here performs I/O.

pub mod access;
pub mod channel;
pub mod clock;
pub mod egress;
pub mod event_kind;
pub mod exchange;
pub mod header_list;
pub mod headers;
pub mod health;
pub mod hops;
pub mod keyring;
pub mod outcome;
pub mod reflected;
pub mod sink_auth;
pub mod source_auth;
pub mod url_join;

pub use channel::{Channel, ChannelConfig, Snapshot, Timeouts};
pub use exchange::{BodyObservation, EventRecord, RequestRecord, RequestState, Timings};
pub use header_list::HeaderList;
pub use outcome::ExchangeError;
