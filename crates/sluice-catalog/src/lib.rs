//! The upstream side of sluice's adaptor catalogue.
//!
//! The catalogue offers OpenFn adaptor packages (`@openfn/language-*`): their credential types
//! (each package's `configuration-schema.json`) and icons. Where they come from is a
//! [`Strategy`]:
//!
//! - [`NpmStrategy`] talks to the npm registry or a mirror: it lists through `/-/v1/search` (or a
//!   configured list when a mirror has no search), reads packuments, takes schemas from a CDN URL
//!   pattern or else from the integrity-checked package tarball, and icons from a raw-file host
//!   with `If-None-Match`. Concurrency is bounded separately for fetches and icons.
//! - [`LocalStrategy`] (air-gap) reads monorepo-shaped directories and never touches the network.
//!
//! This crate only reads upstream; caching, storage and the HTTP API live elsewhere.

mod error;
mod integrity;
mod local;
mod npm;
mod packument;
mod strategy;
mod tarball;

pub use error::CatalogError;
pub use local::LocalStrategy;
pub use npm::{NpmConfig, NpmStrategy};
pub use strategy::{
    IconFetch, IconShape, Listed, PackageInfo, Strategy, VersionInfo, PACKAGE_PREFIX,
};
