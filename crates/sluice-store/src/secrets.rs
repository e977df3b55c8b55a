//! Where the keys that seal secrets at rest come from: `--secret-key` / `SLUICE_SECRET_KEY`
//! (one or more keys, comma-separated, the first seals), or `<data-dir>/secret.key`, created on
//! first start with mode 0600 and holding the newest key first.
//!
//! A key file is re-read whenever a record names a key this process does not hold and before
//! every seal, so `sluice secrets rotate` run beside a serving process needs no restart: the
//! server keeps opening old records, opens re-sealed ones, and seals new ones with the new key.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use sluice_core::keyring::{generate_key, Keyring, KeyringError, Sealed};

use crate::error::{Result, StoreError};

/// Name of the key file inside the data directory.
pub const KEY_FILE: &str = "secret.key";

enum Source {
    Given,
    File(PathBuf),
}

/// The keyring in force, and where to reload it from.
pub struct Secrets {
    ring: RwLock<Arc<Keyring>>,
    source: Source,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("ring", &*self.ring.read())
            .finish()
    }
}

fn keyring_error(e: KeyringError) -> StoreError {
    StoreError::Secrets(e.to_string())
}

fn io_error(path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Secrets(format!("{}: {e}", path.display()))
}

/// Writes `text` to `path` with mode 0600, replacing it atomically.
fn write_private(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("key.tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(|e| io_error(&tmp, e))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| io_error(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_error(path, e))
}

impl Secrets {
    /// Keys given on the command line or in the environment.
    pub fn given(keys: &str) -> Result<Self> {
        Ok(Self {
            ring: RwLock::new(Arc::new(Keyring::parse(keys).map_err(keyring_error)?)),
            source: Source::Given,
        })
    }

    /// Keys of `<dir>/secret.key`, creating the file with a fresh key when it is missing.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join(KEY_FILE);
        if !path.exists() {
            write_private(
                &path,
                &format!(
                    "# sluice secret keys: the first seals, all open. Keep this file private.\n{}\n",
                    generate_key()
                ),
            )?;
        }
        let text = std::fs::read_to_string(&path).map_err(|e| io_error(&path, e))?;
        Ok(Self {
            ring: RwLock::new(Arc::new(Keyring::parse(&text).map_err(keyring_error)?)),
            source: Source::File(path),
        })
    }

    /// `given` when set, else the key file in `dir`.
    pub fn load(given: Option<&str>, dir: &Path) -> Result<Self> {
        match given {
            Some(k) => Self::given(k),
            None => Self::from_dir(dir),
        }
    }

    /// The keyring in force.
    pub fn keyring(&self) -> Arc<Keyring> {
        self.ring.read().clone()
    }

    /// Re-reads the key file (no-op for given keys).
    fn reload(&self) -> Result<()> {
        if let Source::File(path) = &self.source {
            let text = std::fs::read_to_string(path).map_err(|e| io_error(path, e))?;
            let ring = Keyring::parse(&text).map_err(keyring_error)?;
            *self.ring.write() = Arc::new(ring);
        }
        Ok(())
    }

    /// Seals `plaintext` under the newest key.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Sealed> {
        if let Err(e) = self.reload() {
            tracing::warn!(error = %e, "could not re-read the key file; sealing with the loaded key");
        }
        Ok(self.keyring().seal(plaintext, aad))
    }

    /// Opens a sealed record, reloading the key file once if its key is not loaded.
    pub fn open(&self, sealed: &Sealed, aad: &[u8]) -> Result<Vec<u8>> {
        let ring = self.keyring();
        match ring.open(sealed, aad) {
            Err(KeyringError::UnknownKey(_)) if matches!(self.source, Source::File(_)) => {
                self.reload()?;
                self.keyring().open(sealed, aad).map_err(keyring_error)
            }
            other => other.map_err(keyring_error),
        }
    }

    /// Puts a fresh key first in the key file (older keys stay, so records sealed under them
    /// remain readable) and returns its id. With given keys nothing changes: the first given
    /// key is the target of re-sealing.
    pub fn rotate(&self) -> Result<String> {
        if let Source::File(path) = &self.source {
            let old = std::fs::read_to_string(path).map_err(|e| io_error(path, e))?;
            let kept: Vec<&str> = old
                .lines()
                .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
                .collect();
            write_private(
                path,
                &format!(
                    "# sluice secret keys: the first seals, all open. Keep this file private.\n{}\n{}\n",
                    generate_key(),
                    kept.join("\n")
                ),
            )?;
            self.reload()?;
        }
        Ok(self.keyring().current_id().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_private_and_rotation_keeps_old_records_readable() {
        let dir = std::env::temp_dir().join(format!("sluice-keys-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = Secrets::from_dir(&dir).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let sealed = a.seal(b"pw", b"1").unwrap();
        // a second process (the rotate command) adds a key; the first one follows without restart
        let b = Secrets::from_dir(&dir).unwrap();
        let new_id = b.rotate().unwrap();
        assert_ne!(new_id, sealed.key_id);
        let resealed = b.seal(b"pw", b"1").unwrap();
        assert_eq!(a.open(&resealed, b"1").unwrap(), b"pw");
        assert_eq!(a.open(&sealed, b"1").unwrap(), b"pw");
        assert_eq!(a.seal(b"x", b"").unwrap().key_id, new_id);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
