//! Resolution of the ledger location and the node identity from the command line.

use std::path::Path;

use anyhow::Context;
use std::sync::Arc;

use sluice_store::{Secrets, Store, StoreOptions};

use crate::cli::{LedgerArgs, SecretArgs};

impl LedgerArgs {
    /// The database URL: the flag, or SQLite inside the data directory.
    pub fn url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}/sluice.db", self.data_dir.display()))
    }

    /// Creates the data directory (readable by this user only: it holds the history, the
    /// key file and the journal), opens the ledger and migrates it.
    pub async fn open(&self) -> anyhow::Result<Store> {
        std::fs::create_dir_all(&self.data_dir)
            .with_context(|| format!("creating data directory {}", self.data_dir.display()))?;
        restrict(&self.data_dir)?;
        let url = self.url();
        let store = Store::connect(&url, &StoreOptions::default())
            .await
            .with_context(|| format!("opening the ledger at {}", redact_url(&url)))?;
        store.migrate().await.context("migrating the ledger")?;
        Ok(store)
    }

    /// Opens the ledger with the secret keys of `secrets` (creating the key file if needed).
    pub async fn open_with_secrets(&self, secrets: &SecretArgs) -> anyhow::Result<Store> {
        let store = self.open().await?;
        let keys = Secrets::load(secrets.secret_key.as_deref(), &self.data_dir)
            .context("loading the secret keys")?;
        Ok(store.with_secrets(Arc::new(keys)))
    }

    /// This node's stable id, kept in `<data-dir>/node.id`.
    pub fn node_id(&self) -> anyhow::Result<String> {
        node_id(&self.data_dir)
    }
}

/// Makes the directory `dir` this user's alone (mode 0700), unless it already is.
fn restrict(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir)?.permissions().mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making {} private (mode 0700)", dir.display()))?;
    }
    Ok(())
}

fn node_id(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join("node.id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        let id = id.trim();
        if !id.is_empty() {
            return Ok(id.to_string());
        }
    }
    let id = uuid::Uuid::new_v4().to_string();
    std::fs::write(&path, &id).with_context(|| format!("writing {}", path.display()))?;
    Ok(id)
}

/// A database URL with any password hidden, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..s + 3], user, &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn hides_passwords_in_urls() {
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite://./x.db"), "sqlite://./x.db");
    }
}
