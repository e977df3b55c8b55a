//! sluice-proxy
