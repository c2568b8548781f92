//! Field encryption at rest: AES-256-GCM with a random 96-bit nonce per field, stored as
//! `v2.keyid:base64(nonce || ciphertext)`, and a keyed blind index for the fields that must be
//! searchable (the visitor id) without being readable.
//!
//! Format 2 binds each field to where it belongs: the associated data is the table, the row id
//! and the field name ([`Aad`]), so a ciphertext copied into another row or column does not
//! decrypt. Rows written before (`keyid:base64`, no associated data) still read. The blind
//! index uses its own key, derived from the encryption key with a label, so the one key never
//! serves two purposes; searches also try the index of the earlier format.
//!
//! Keys form a ring: the first encrypts, every key decrypts, so rotation is adding a new first
//! key while the old ones stay until no row uses them. Key material is only ever taken from
//! the environment or a key file, never from the config file kept in the repository.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::Aes256Gcm;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use blake2::digest::Mac;
use rand::Rng;

use crate::redact::Secret;

/// Environment variable with the base64 of a 32-byte key.
pub const KEY_ENV: &str = "KEFU_ENCRYPTION_KEY";
/// Environment variable naming that key's id (default `k1`).
pub const KEY_ID_ENV: &str = "KEFU_ENCRYPTION_KEY_ID";

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error(
        "the store is enabled (store.url) but no encryption key was given: set {KEY_ENV} to the \
         base64 of 32 random bytes (e.g. `head -c 32 /dev/urandom | base64`), or name a key file \
         with KEFU__STORE__KEY_FILE (lines `id=base64key`), or run scripts/run which creates \
         one; or disable the store with KEFU__STORE__URL=\"\""
    )]
    NoKey,
    #[error("encryption key `{id}` ({origin}): {message}")]
    BadKey {
        id: String,
        origin: String,
        message: String,
    },
    #[error("cannot read key file {path}: {source}")]
    KeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("field was encrypted with key `{0}`, which is not in the key ring")]
    UnknownKey(String),
    #[error("stored field is malformed (expected `keyid:base64`)")]
    Malformed,
    #[error("cannot decrypt a stored field with key `{0}` (wrong key or tampered data)")]
    Decrypt(String),
    #[error("encryption failed")]
    Encrypt,
}

/// Where the key material comes from, captured from the environment map given to
/// [`crate::Settings::load`] (so tests inject it the same way an operator sets it).
#[derive(Debug, Clone, Default)]
pub struct KeySource {
    pub env_key: Option<Secret>,
    pub env_key_id: Option<String>,
}

impl KeySource {
    pub fn from_env(env: &HashMap<String, String>) -> Self {
        Self {
            env_key: env
                .get(KEY_ENV)
                .filter(|v| !v.trim().is_empty())
                .map(|v| Secret::new(v.trim())),
            env_key_id: env
                .get(KEY_ID_ENV)
                .filter(|v| !v.trim().is_empty())
                .map(|v| v.trim().to_string()),
        }
    }
}

/// Prefix of format 2 ciphertexts and blind indexes (`.` is never part of a key id).
const V2: &str = "v2.";

/// Where an encrypted field lives: authenticated with it, never stored.
#[derive(Debug, Clone, Copy)]
pub struct Aad<'a> {
    pub table: &'a str,
    pub row: &'a str,
    pub field: &'a str,
}

impl Aad<'_> {
    fn bytes(&self) -> Vec<u8> {
        // Length-prefixed, so no two contexts share an encoding.
        let mut out = b"kefu-field-v2".to_vec();
        for part in [self.table, self.row, self.field] {
            out.extend_from_slice(&(part.len() as u64).to_be_bytes());
            out.extend_from_slice(part.as_bytes());
        }
        out
    }
}

/// The blind-index key of an encryption key: a keyed BLAKE2b of a fixed label.
fn index_key(key: &[u8; 32]) -> Option<[u8; 32]> {
    let mut mac = blake2::Blake2bMac512::new_from_slice(key).ok()?;
    mac.update(b"kefu blind-index key derivation v2");
    let tag = mac.finalize().into_bytes();
    tag[..32].try_into().ok()
}

/// The keys that decrypt, the first of which encrypts.
pub struct KeyRing {
    keys: Vec<(String, Aes256Gcm, [u8; 32])>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _, _)| id.as_str()).collect();
        write!(f, "KeyRing({ids:?})")
    }
}

impl KeyRing {
    /// The environment key first (if any), then the key file's keys in file order.
    pub fn load(source: &KeySource, key_file: &Path) -> Result<Self, CryptoError> {
        let mut entries: Vec<(String, String, String)> = Vec::new();
        if let Some(key) = &source.env_key {
            let id = source.env_key_id.clone().unwrap_or_else(|| "k1".into());
            entries.push((id, key.expose().to_string(), KEY_ENV.to_string()));
        }
        if !key_file.as_os_str().is_empty() {
            let text =
                std::fs::read_to_string(key_file).map_err(|source| CryptoError::KeyFile {
                    path: key_file.to_path_buf(),
                    source,
                })?;
            let origin = key_file.display().to_string();
            for line in text.lines().map(str::trim) {
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let (id, key) = match line.split_once('=') {
                    // base64 may end in `=`, so an id is only what precedes the first `=` when
                    // it looks like an id; a bare key line gets the id `k1`.
                    Some((id, key)) if valid_id(id.trim()) => (id.trim(), key.trim()),
                    _ => ("k1", line),
                };
                entries.push((id.to_string(), key.to_string(), origin.clone()));
            }
        }
        let mut keys = Vec::new();
        for (id, b64, origin) in entries {
            let bad = |message: String| CryptoError::BadKey {
                id: id.clone(),
                origin: origin.clone(),
                message,
            };
            if !valid_id(&id) {
                return Err(bad("ids are 1-32 letters, digits, `-` or `_`".into()));
            }
            let raw = B64
                .decode(b64.as_bytes())
                .map_err(|e| bad(format!("not base64: {e}")))?;
            let bytes: [u8; 32] = raw
                .try_into()
                .map_err(|r: Vec<u8>| bad(format!("{} bytes, expected 32", r.len())))?;
            let cipher = Aes256Gcm::new_from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
            if keys.iter().all(|(k, _, _)| *k != id) {
                keys.push((id, cipher, bytes));
            }
        }
        if keys.is_empty() {
            return Err(CryptoError::NoKey);
        }
        Ok(Self { keys })
    }

    /// A ring from raw keys, newest first (tests and tools).
    pub fn from_keys(keys: &[(&str, [u8; 32])]) -> Result<Self, CryptoError> {
        let mut ring = Vec::new();
        for (id, bytes) in keys {
            let cipher = Aes256Gcm::new_from_slice(bytes).map_err(|_| CryptoError::Encrypt)?;
            ring.push((id.to_string(), cipher, *bytes));
        }
        if ring.is_empty() {
            return Err(CryptoError::NoKey);
        }
        Ok(Self { keys: ring })
    }

    /// The id of the key that encrypts.
    pub fn current_id(&self) -> &str {
        self.keys
            .first()
            .map(|(id, _, _)| id.as_str())
            .unwrap_or("")
    }

    /// `v2.keyid:base64(nonce || ciphertext)` of `plain` under the current key, bound to
    /// `aad` (what [`Self::decrypt_field`] must be given to open it).
    pub fn encrypt_field(&self, plain: &str, aad: Aad<'_>) -> Result<String, CryptoError> {
        self.seal(V2, plain.as_bytes(), &aad.bytes())
    }

    /// `{format}keyid:base64(nonce || ciphertext)` of `plain` under the current key with a
    /// fresh random nonce, bound to `aad` (empty: none, as AES-GCM defines it).
    fn seal(&self, format: &str, plain: &[u8], aad: &[u8]) -> Result<String, CryptoError> {
        let (id, cipher, _) = self.keys.first().ok_or(CryptoError::NoKey)?;
        let mut nonce = [0u8; 12];
        rand::rng().fill(&mut nonce);
        let n = aes_gcm::Nonce::try_from(&nonce[..]).map_err(|_| CryptoError::Encrypt)?;
        let payload = aes_gcm::aead::Payload { msg: plain, aad };
        let sealed = cipher
            .encrypt(&n, payload)
            .map_err(|_| CryptoError::Encrypt)?;
        let mut out = Vec::with_capacity(12 + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(format!("{format}{id}:{}", B64.encode(out)))
    }

    /// The plain text of a field: format 2 must have been written for `aad`; a field of the
    /// earlier format (no associated data) opens as before.
    pub fn decrypt_field(&self, stored: &str, aad: Aad<'_>) -> Result<String, CryptoError> {
        match stored.strip_prefix(V2) {
            Some(rest) => self.open(rest, &aad.bytes()),
            None => self.decrypt(stored),
        }
    }

    /// `keyid:base64(nonce || ciphertext)` of `plain` under the current key, without
    /// associated data (the earlier format; new rows use [`Self::encrypt_field`]).
    pub fn encrypt(&self, plain: &str) -> Result<String, CryptoError> {
        self.seal("", plain.as_bytes(), b"")
    }

    /// The plain text of a field written by [`Self::encrypt`] with any key of the ring.
    pub fn decrypt(&self, stored: &str) -> Result<String, CryptoError> {
        self.open(stored, b"")
    }

    /// As [`Self::encrypt_field`] for bytes (attachment chunks): the same format and key.
    pub fn encrypt_bytes(&self, plain: &[u8], aad: Aad<'_>) -> Result<String, CryptoError> {
        self.seal(V2, plain, &aad.bytes())
    }

    /// The bytes sealed by [`Self::encrypt_bytes`] for `aad`.
    pub fn decrypt_bytes(&self, stored: &str, aad: Aad<'_>) -> Result<Vec<u8>, CryptoError> {
        let rest = stored.strip_prefix(V2).ok_or(CryptoError::Malformed)?;
        self.open_raw(rest, &aad.bytes())
    }

    fn open(&self, stored: &str, aad: &[u8]) -> Result<String, CryptoError> {
        let (id, _) = stored.split_once(':').ok_or(CryptoError::Malformed)?;
        let plain = self.open_raw(stored, aad)?;
        String::from_utf8(plain).map_err(|_| CryptoError::Decrypt(id.to_string()))
    }

    fn open_raw(&self, stored: &str, aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let (id, b64) = stored.split_once(':').ok_or(CryptoError::Malformed)?;
        let (_, cipher, _) = self
            .keys
            .iter()
            .find(|(k, _, _)| k == id)
            .ok_or_else(|| CryptoError::UnknownKey(id.to_string()))?;
        let raw = B64
            .decode(b64.as_bytes())
            .map_err(|_| CryptoError::Malformed)?;
        if raw.len() < 12 + 16 {
            return Err(CryptoError::Malformed);
        }
        let (nonce, sealed) = raw.split_at(12);
        let n = aes_gcm::Nonce::try_from(nonce).map_err(|_| CryptoError::Malformed)?;
        let payload = aes_gcm::aead::Payload { msg: sealed, aad };
        cipher
            .decrypt(&n, payload)
            .map_err(|_| CryptoError::Decrypt(id.to_string()))
    }

    /// The blind index of `value` under every key of the ring (current first): equal values
    /// give equal indexes under one key, and nothing about the value can be read from it.
    /// Searching with all of them finds rows written before a rotation; the indexes of the
    /// earlier format (keyed with the encryption key itself) follow, for rows written then.
    pub fn blind_indexes(&self, value: &str) -> Vec<String> {
        let index = |id: &str, key: &[u8; 32], prefix: &str| {
            let mut mac = blake2::Blake2bMac512::new_from_slice(key).ok()?;
            mac.update(b"kefu-visitor-index\0");
            mac.update(value.as_bytes());
            let tag = mac.finalize().into_bytes();
            Some(format!("{prefix}{id}:{}", B64.encode(&tag[..24])))
        };
        let current = self
            .keys
            .iter()
            .filter_map(|(id, _, key)| index(id, &index_key(key)?, V2));
        let legacy = self
            .keys
            .iter()
            .filter_map(|(id, _, key)| index(id, key, ""));
        current.chain(legacy).collect()
    }

    /// A key for another purpose (`label` names it), derived from the current encryption key
    /// by a labelled BLAKE2b MAC, so every node holding the key derives the same one and the
    /// encryption key itself never serves two purposes.
    pub fn derived_key(&self, label: &str) -> Option<[u8; 32]> {
        let (_, _, key) = self.keys.first()?;
        let mut mac = blake2::Blake2bMac512::new_from_slice(key).ok()?;
        mac.update(b"kefu key derivation\0");
        mac.update(label.as_bytes());
        let tag = mac.finalize().into_bytes();
        tag[..32].try_into().ok()
    }

    /// The blind index under the current key (what new rows store).
    pub fn blind_index(&self, value: &str) -> String {
        self.blind_indexes(value)
            .into_iter()
            .next()
            .unwrap_or_default()
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 32
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
#[path = "crypto_tests.rs"]
mod tests;
