//! The upstream side of sluice's adaptor catalogue.
//!
//! The catalogue offers OpenFn adaptor packages (`@openfn/language-*`): their credential types
//! (each package's `configuration-schema.json`) and icons. Where they come from is a
//! [`Strategy`]:
//!
//! - [`LocalStrategy`] (air-gap) reads monorepo-shaped directories and never touches the network.
//!
//! This crate only reads upstream; caching, storage and the HTTP API live elsewhere.

mod error;
mod local;
mod strategy;

pub use error::CatalogError;
pub use local::LocalStrategy;
pub use strategy::{IconFetch, IconShape, PackageInfo, Strategy, VersionInfo, PACKAGE_PREFIX};
