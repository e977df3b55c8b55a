//! Secrets at rest: a keyring of AEAD keys (XChaCha20-Poly1305). The first key seals, every key
//! opens; each sealed record carries the id of its key and a random nonce of its own.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Length of a key in bytes.
pub const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;

/// Why a keyring could not be built or a record opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    /// A key is not 32 bytes of base64 or hex.
    #[error("invalid secret key: {0}")]
    InvalidKey(String),
    /// No key at all was given.
    #[error("no secret key given")]
    Empty,
    /// The record was sealed under a key this keyring does not hold.
    #[error("unknown secret key id {0}")]
    UnknownKey(String),
    /// The record does not authenticate under its key (tampered or wrong key).
    #[error("sealed record does not authenticate")]
    Tampered,
}

/// A record sealed under one key: the key's id and `base64(nonce || ciphertext)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// Id of the key that sealed it.
    pub key_id: String,
    /// Base64 of the nonce followed by the ciphertext and tag.
    pub data: String,
}

struct Key {
    id: String,
    cipher: XChaCha20Poly1305,
}

/// Keys by id; the first one seals.
pub struct Keyring {
    keys: Vec<Key>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|k| k.id.as_str()).collect();
        f.debug_struct("Keyring").field("key_ids", &ids).finish()
    }
}

/// A fresh random key, base64-encoded (the form key files and `SLUICE_SECRET_KEY` hold).
pub fn generate_key() -> String {
    let mut raw = [0u8; KEY_LEN];
    rand::rng().fill_bytes(&mut raw);
    STANDARD.encode(raw)
}

/// The id of a key: the first 16 hex digits of a SHA-256 over it (reveals nothing of the key).
fn key_id(raw: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(b"sluice-secret-key-id:");
    h.update(raw);
    hex::encode(h.finalize())[..16].to_string()
}

fn decode_key(text: &str) -> Result<Vec<u8>, KeyringError> {
    let raw = if text.len() == 2 * KEY_LEN && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(text).ok()
    } else {
        STANDARD.decode(text).ok()
    };
    match raw {
        Some(r) if r.len() == KEY_LEN => Ok(r),
        _ => Err(KeyringError::InvalidKey(format!(
            "expected {KEY_LEN} bytes as base64 or hex"
        ))),
    }
}

impl Keyring {
    /// Parses keys separated by commas or new lines (`#` starts a comment line); the first seals.
    pub fn parse(text: &str) -> Result<Self, KeyringError> {
        let mut keys: Vec<Key> = Vec::new();
        for part in text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .flat_map(|l| l.split(','))
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let raw = decode_key(part)?;
            let id = key_id(&raw);
            if keys.iter().any(|k| k.id == id) {
                continue;
            }
            let cipher = XChaCha20Poly1305::new_from_slice(&raw)
                .map_err(|e| KeyringError::InvalidKey(e.to_string()))?;
            keys.push(Key { id, cipher });
        }
        if keys.is_empty() {
            return Err(KeyringError::Empty);
        }
        Ok(Self { keys })
    }

    /// Id of the key that seals.
    pub fn current_id(&self) -> &str {
        &self.keys[0].id
    }

    /// Whether a key with this id is held.
    pub fn has_key(&self, id: &str) -> bool {
        self.keys.iter().any(|k| k.id == id)
    }

    /// Seals `plaintext` under the current key, bound to `aad` (e.g. the record's id).
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Sealed {
        let key = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let ct = key
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory data");
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Sealed {
            key_id: key.id.clone(),
            data: STANDARD.encode(out),
        }
    }

    /// Opens a record sealed by [`Keyring::seal`] with the same `aad`.
    pub fn open(&self, sealed: &Sealed, aad: &[u8]) -> Result<Vec<u8>, KeyringError> {
        let key = self
            .keys
            .iter()
            .find(|k| k.id == sealed.key_id)
            .ok_or_else(|| KeyringError::UnknownKey(sealed.key_id.clone()))?;
        let raw = STANDARD
            .decode(&sealed.data)
            .map_err(|_| KeyringError::Tampered)?;
        if raw.len() < NONCE_LEN {
            return Err(KeyringError::Tampered);
        }
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        key.cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
            .map_err(|_| KeyringError::Tampered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_with_fresh_nonces() {
        let ring = Keyring::parse(&generate_key()).unwrap();
        let a = ring.seal(b"hunter2", b"id-1");
        let b = ring.seal(b"hunter2", b"id-1");
        assert_ne!(a.data, b.data, "nonce per record");
        assert_eq!(a.key_id, ring.current_id());
        assert!(!a.data.contains("hunter2"));
        assert_eq!(ring.open(&a, b"id-1").unwrap(), b"hunter2");
        assert_eq!(ring.open(&a, b"id-2"), Err(KeyringError::Tampered));
    }

    #[test]
    fn old_keys_open_new_key_seals() {
        let old = generate_key();
        let new = generate_key();
        let before = Keyring::parse(&old).unwrap();
        let sealed = before.seal(b"x", b"");
        let after = Keyring::parse(&format!("{new}\n{old}\n")).unwrap();
        assert_ne!(after.current_id(), before.current_id());
        assert_eq!(after.open(&sealed, b"").unwrap(), b"x");
        assert_eq!(after.seal(b"x", b"").key_id, after.current_id());
        let only_new = Keyring::parse(&new).unwrap();
        assert!(matches!(
            only_new.open(&sealed, b""),
            Err(KeyringError::UnknownKey(_))
        ));
    }

    #[test]
    fn rejects_bad_keys() {
        assert!(Keyring::parse("short").is_err());
        assert_eq!(Keyring::parse(" \n# c\n").unwrap_err(), KeyringError::Empty);
        assert!(Keyring::parse(&"ab".repeat(32)).is_ok(), "hex keys work");
    }
}
