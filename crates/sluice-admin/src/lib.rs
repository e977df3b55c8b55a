//! sluice-admin
