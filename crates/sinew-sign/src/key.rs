//! Secret keys and where the verifier finds them.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

pub(crate) type HmacSha256 = Hmac<Sha256>;

/// A shared HMAC secret.
///
/// The bytes are kept only as a keyed HMAC-SHA256 state (so every signature
/// skips the key schedule); they never appear in `Debug`, logs or errors.
/// Cloning is cheap (reference counted).
///
/// ```
/// use sinew_sign::SecretKey;
/// let key = SecretKey::from_text("s3cret").unwrap();
/// assert_eq!(format!("{key:?}"), "SecretKey(<redacted, 6 bytes>)");
/// ```
#[derive(Clone)]
pub struct SecretKey {
    inner: Arc<KeyInner>,
}

struct KeyInner {
    mac: HmacSha256,
    len: usize,
}

/// A key could not be built from what was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// The key is empty.
    Empty,
    /// The text is not valid standard base64.
    InvalidBase64,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Empty => f.write_str("the key is empty"),
            KeyError::InvalidBase64 => f.write_str("the key is not valid base64"),
        }
    }
}

impl std::error::Error for KeyError {}

impl SecretKey {
    /// A key made of these bytes.
    pub fn from_bytes(bytes: impl AsRef<[u8]>) -> Result<Self, KeyError> {
        let bytes = bytes.as_ref();
        if bytes.is_empty() {
            return Err(KeyError::Empty);
        }
        let mac = HmacSha256::new_from_slice(bytes).map_err(|_| KeyError::Empty)?;
        Ok(Self {
            inner: Arc::new(KeyInner {
                mac,
                len: bytes.len(),
            }),
        })
    }

    /// A key made of the UTF-8 bytes of `text` (the legacy profile's keys).
    pub fn from_text(text: &str) -> Result<Self, KeyError> {
        Self::from_bytes(text.as_bytes())
    }

    /// A key given as standard base64 (with or without padding).
    pub fn from_base64(b64: &str) -> Result<Self, KeyError> {
        let trimmed = b64.trim();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(trimmed)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed))
            .map_err(|_| KeyError::InvalidBase64)?;
        Self::from_bytes(bytes)
    }

    /// The length of the key in bytes.
    pub fn len(&self) -> usize {
        self.inner.len
    }

    /// Always `false`: empty keys are refused.
    pub fn is_empty(&self) -> bool {
        self.inner.len == 0
    }

    /// HMAC-SHA256 of `data` under this key.
    pub fn hmac_sha256(&self, data: &[u8]) -> [u8; 32] {
        let mut mac = self.inner.mac.clone();
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    /// Constant-time check that `tag` is the HMAC-SHA256 of `data`.
    pub fn verify_hmac_sha256(&self, data: &[u8], tag: &[u8]) -> bool {
        let mut mac = self.inner.mac.clone();
        mac.update(data);
        // `verify_slice` compares in constant time (subtle).
        mac.verify_slice(tag).is_ok()
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(<redacted, {} bytes>)", self.inner.len)
    }
}

/// Where a verifier looks up keys.
///
/// Several key ids may be valid at once (key rotation: add the new id, move
/// the signers over, then remove the old one). Legacy-profile keys are looked
/// up by the caller's service id.
pub trait KeyStore: Send + Sync + 'static {
    /// The RFC 9421 key with this `keyid`, if known.
    fn key(&self, key_id: &str) -> Option<SecretKey>;

    /// The legacy-profile key of the service `service_id`, if known.
    fn legacy_key(&self, service_id: &str) -> Option<SecretKey>;
}

impl<T: KeyStore + ?Sized> KeyStore for Arc<T> {
    fn key(&self, key_id: &str) -> Option<SecretKey> {
        (**self).key(key_id)
    }

    fn legacy_key(&self, service_id: &str) -> Option<SecretKey> {
        (**self).legacy_key(service_id)
    }
}

/// A fixed set of keys held in memory.
///
/// ```
/// use sinew_sign::{KeyStore, SecretKey, StaticKeyStore};
/// let keys = StaticKeyStore::new()
///     .with_key("orders-2026-01", SecretKey::from_text("old").unwrap())
///     .with_key("orders-2026-02", SecretKey::from_text("new").unwrap())
///     .with_legacy_key("orders", SecretKey::from_text("legacy").unwrap());
/// assert!(keys.key("orders-2026-01").is_some());
/// assert!(keys.key("orders").is_none());
/// assert!(keys.legacy_key("orders").is_some());
/// ```
#[derive(Clone, Default)]
pub struct StaticKeyStore {
    keys: HashMap<String, SecretKey>,
    legacy: HashMap<String, SecretKey>,
}

impl StaticKeyStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add (or replace) the RFC 9421 key `key_id`.
    pub fn with_key(mut self, key_id: impl Into<String>, key: SecretKey) -> Self {
        self.keys.insert(key_id.into(), key);
        self
    }

    /// Add (or replace) the legacy key of service `service_id`.
    pub fn with_legacy_key(mut self, service_id: impl Into<String>, key: SecretKey) -> Self {
        self.legacy.insert(service_id.into(), key);
        self
    }
}

impl fmt::Debug for StaticKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<&String> = self.keys.keys().collect();
        ids.sort();
        let mut legacy: Vec<&String> = self.legacy.keys().collect();
        legacy.sort();
        f.debug_struct("StaticKeyStore")
            .field("key_ids", &ids)
            .field("legacy_service_ids", &legacy)
            .finish()
    }
}

impl KeyStore for StaticKeyStore {
    fn key(&self, key_id: &str) -> Option<SecretKey> {
        self.keys.get(key_id).cloned()
    }

    fn legacy_key(&self, service_id: &str) -> Option<SecretKey> {
        self.legacy.get(service_id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_printed() {
        let key = SecretKey::from_text("hunter2-very-secret").unwrap();
        let store = StaticKeyStore::new()
            .with_key("k1", key.clone())
            .with_legacy_key("svc", key.clone());
        let dbg = format!("{key:?} {store:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("k1") && dbg.contains("svc"));
    }

    #[test]
    fn base64_and_errors() {
        assert_eq!(SecretKey::from_base64("AAEC").unwrap().len(), 3);
        assert_eq!(SecretKey::from_base64("AAE").unwrap().len(), 2);
        assert_eq!(
            SecretKey::from_base64("!!").unwrap_err(),
            KeyError::InvalidBase64
        );
        assert_eq!(SecretKey::from_text("").unwrap_err(), KeyError::Empty);
    }

    #[test]
    fn hmac_matches_plain_hmac() {
        let key = SecretKey::from_text("k").unwrap();
        let mut mac = HmacSha256::new_from_slice(b"k").unwrap();
        mac.update(b"data");
        let expected: [u8; 32] = mac.finalize().into_bytes().into();
        assert_eq!(key.hmac_sha256(b"data"), expected);
        assert!(key.verify_hmac_sha256(b"data", &expected));
        assert!(!key.verify_hmac_sha256(b"datb", &expected));
        assert!(!key.verify_hmac_sha256(b"data", &expected[..31]));
    }
}
