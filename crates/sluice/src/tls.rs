//! Serving HTTPS directly (`--tls-cert`, `--tls-key`): the pair is read at start, and again on
//! SIGHUP or when either file changes. A reload swaps the pair new handshakes get; connections
//! already open keep theirs, so none is dropped. ALPN offers HTTP/2 before HTTP/1.1.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use parking_lot::RwLock;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use serde_json::json;
use sluice_store::{EventLog, Severity, Source};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// How often the files are checked for a change.
const CHECK_EVERY: Duration = Duration::from_secs(2);

/// The certificate and key in force, and where they are read from.
#[derive(Debug)]
pub struct Certificate {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    read_at: RwLock<Option<(SystemTime, SystemTime)>>,
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().clone())
    }
}

/// The files' modification times, to tell a change.
fn stamps(cert: &Path, key: &Path) -> Option<(SystemTime, SystemTime)> {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    Some((modified(cert)?, modified(key)?))
}

/// Reads a PEM certificate chain and its private key.
fn read_pair(cert: &Path, key: &Path) -> anyhow::Result<CertifiedKey> {
    let pem = std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
    let chain = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: not a PEM certificate chain", cert.display()))?;
    anyhow::ensure!(!chain.is_empty(), "{} holds no certificate", cert.display());
    let pem = std::fs::read(key).with_context(|| format!("reading {}", key.display()))?;
    let private = rustls_pemfile::private_key(&mut pem.as_slice())
        .with_context(|| format!("{}: not a PEM private key", key.display()))?
        .with_context(|| format!("{} holds no private key", key.display()))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&private)
        .with_context(|| format!("{}: unsupported private key", key.display()))?;
    let pair = CertifiedKey::new(chain, signer);
    pair.keys_match()
        .with_context(|| format!("{} is not the key of {}", key.display(), cert.display()))?;
    Ok(pair)
}

impl Certificate {
    /// Reads the pair; fails with a message naming the file at fault.
    pub fn load(cert: &Path, key: &Path) -> anyhow::Result<Arc<Self>> {
        let read_at = stamps(cert, key);
        let pair = read_pair(cert, key)?;
        Ok(Arc::new(Certificate {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current: RwLock::new(Arc::new(pair)),
            read_at: RwLock::new(read_at),
        }))
    }

    /// The acceptor of every listener: TLS 1.2 and 1.3, HTTP/2 and HTTP/1.1 by ALPN.
    pub fn acceptor(self: &Arc<Self>) -> anyhow::Result<TlsAcceptor> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }

    /// Reads the pair again; a pair that cannot be read leaves the one in force.
    fn reload(&self, events: &EventLog, why: &str) {
        *self.read_at.write() = stamps(&self.cert, &self.key);
        match read_pair(&self.cert, &self.key) {
            Ok(pair) => {
                *self.current.write() = Arc::new(pair);
                let message = "TLS certificate reloaded";
                events.emit(
                    Severity::Info,
                    Source::System,
                    None,
                    message,
                    json!({ "on": why }),
                );
            }
            Err(e) => {
                let message =
                    format!("TLS certificate not reloaded, the previous one stays: {e:#}");
                events.emit(
                    Severity::Error,
                    Source::System,
                    None,
                    message,
                    json!({ "on": why }),
                );
            }
        }
    }

    /// Reloads on SIGHUP and when either file's modification time changes, until `stop`.
    pub fn watch(
        self: Arc<Self>,
        events: EventLog,
        mut stop: watch::Receiver<bool>,
    ) -> anyhow::Result<JoinHandle<()>> {
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("installing the SIGHUP handler")?;
        Ok(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = hangup.recv() => self.reload(&events, "SIGHUP"),
                    _ = tokio::time::sleep(CHECK_EVERY) => {
                        let now = stamps(&self.cert, &self.key);
                        if now.is_some() && now != *self.read_at.read() {
                            self.reload(&events, "file change");
                        }
                    }
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        }))
    }
}
