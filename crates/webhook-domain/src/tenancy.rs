//! Wallets (tenants) and the API keys that authenticate them. Keys are stored only as a salted
//! SHA-256 digest plus a short lookup tag; comparisons are constant-time.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use thiserror::Error;
use time::OffsetDateTime;

use crate::{EntityId, WalletId};

/// A tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wallet {
    pub id: WalletId,
    pub name: WalletName,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// An IAM entity, as Identus has them: a named principal of one wallet. API keys bound to the
/// entity open its wallet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entity {
    pub id: EntityId,
    pub name: WalletName,
    pub wallet_id: WalletId,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// A wallet's (or an entity's) display name: 1 to 128 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletName(String);

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("name: must be 1 to 128 characters without control characters")]
pub struct WalletNameError;

impl WalletName {
    /// # Errors
    /// [`WalletNameError`] when empty, too long or holding control characters.
    pub fn new(name: &str) -> Result<Self, WalletNameError> {
        let len = name.chars().count();
        if len == 0 || len > 128 || name.chars().any(char::is_control) {
            return Err(WalletNameError);
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An API key in clear, as a client presents it. `Debug` never shows it, and `==` compares in
/// constant time (for keys of equal length).
#[derive(Clone)]
pub struct ApiKey(String);

impl PartialEq for ApiKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Eq for ApiKey {}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("apiKey: must be 1 to 256 visible ASCII characters without spaces")]
pub struct ApiKeyError;

impl ApiKey {
    /// # Errors
    /// [`ApiKeyError`] when empty, longer than 256 bytes, or holding anything but visible ASCII.
    pub fn parse(text: &str) -> Result<Self, ApiKeyError> {
        if text.is_empty() || text.len() > 256 || !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ApiKeyError);
        }
        Ok(Self(text.to_owned()))
    }

    /// A new key from 32 random bytes supplied by the caller.
    pub fn from_random(bytes: [u8; 32]) -> Self {
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// The key itself, to show once to whoever created it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// The first 8 bytes of an unsalted, domain-separated SHA-256 of a key: lets storage find the
/// few candidate rows for a presented key without keeping anything that verifies it alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ApiKeyTag(pub [u8; 8]);

impl ApiKeyTag {
    pub fn of(key: &ApiKey) -> Self {
        let digest = Sha256::new()
            .chain_update(b"webhookd api key tag\0")
            .chain_update(key.0.as_bytes())
            .finalize();
        let mut tag = [0u8; 8];
        tag.copy_from_slice(&digest[..8]);
        Self(tag)
    }
}

/// What is stored of a key: its tag, a random salt and `SHA-256(salt || key)`. `==` compares
/// the digests in constant time.
#[derive(Clone)]
pub struct ApiKeyHash {
    pub tag: ApiKeyTag,
    pub salt: [u8; 16],
    pub digest: [u8; 32],
}

impl PartialEq for ApiKeyHash {
    fn eq(&self, other: &Self) -> bool {
        let same_digest: bool = self.digest.ct_eq(&other.digest).into();
        // Tag and salt are not secret; `&` rather than `&&` keeps the digest comparison whole.
        same_digest & (self.tag == other.tag) & (self.salt == other.salt)
    }
}

impl Eq for ApiKeyHash {}

impl ApiKeyHash {
    /// Hashes `key` with a random `salt` supplied by the caller.
    pub fn new(key: &ApiKey, salt: [u8; 16]) -> Self {
        Self {
            tag: ApiKeyTag::of(key),
            salt,
            digest: salted_digest(&salt, key),
        }
    }

    /// Whether `key` is the key this hash was made from; constant-time in the digest.
    pub fn matches(&self, key: &ApiKey) -> bool {
        salted_digest(&self.salt, key).ct_eq(&self.digest).into()
    }
}

impl fmt::Debug for ApiKeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKeyHash(<redacted>)")
    }
}

fn salted_digest(salt: &[u8; 16], key: &ApiKey) -> [u8; 32] {
    Sha256::new()
        .chain_update(salt)
        .chain_update(key.0.as_bytes())
        .finalize()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_matches_only_its_key() {
        let key = ApiKey::parse("default").unwrap();
        let hash = ApiKeyHash::new(&key, [9; 16]);
        assert!(hash.matches(&key));
        assert!(!hash.matches(&ApiKey::parse("Default").unwrap()));
        let other_salt = ApiKeyHash::new(&key, [8; 16]);
        assert_ne!(
            hash.digest, other_salt.digest,
            "the salt changes the digest"
        );
        assert_eq!(
            hash.tag, other_salt.tag,
            "the tag does not depend on the salt"
        );
    }

    /// Keys that differ at the first byte, at the last byte, or in length: `matches` and `==`
    /// (both constant-time) must refuse each, and accept only the key itself.
    #[test]
    fn secret_comparisons_refuse_every_near_miss() {
        let key = ApiKey::parse("k3y-0123456789-abcdef").unwrap();
        let near_misses = [
            "X3y-0123456789-abcdef",  // first byte
            "k3y-0123456789-abcdeX",  // last byte
            "k3y-0123456789-abcde",   // shorter
            "k3y-0123456789-abcdef0", // longer
        ];
        let hash = ApiKeyHash::new(&key, [3; 16]);
        assert!(hash.matches(&key));
        assert_eq!(key, ApiKey::parse(key.expose()).unwrap());
        for text in near_misses {
            let other = ApiKey::parse(text).unwrap();
            assert!(!hash.matches(&other), "{text}");
            assert_ne!(key, other, "{text}");
            assert_ne!(hash, ApiKeyHash::new(&other, [3; 16]), "{text}");
        }
        assert_eq!(hash, ApiKeyHash::new(&key, [3; 16]));
        // Same key, another salt: another stored hash.
        assert_ne!(hash, ApiKeyHash::new(&key, [4; 16]));
    }

    #[test]
    fn keys_are_validated_and_never_shown_by_debug() {
        assert!(ApiKey::parse("").is_err());
        assert!(ApiKey::parse("has space").is_err());
        assert!(ApiKey::parse(&"k".repeat(257)).is_err());
        let key = ApiKey::from_random([1; 32]);
        assert_eq!(key.expose().len(), 43);
        assert_eq!(format!("{key:?}"), "ApiKey(<redacted>)");
    }

    #[test]
    fn wallet_names_are_validated() {
        assert!(WalletName::new("Alice").is_ok());
        assert!(WalletName::new("").is_err());
        assert!(WalletName::new("a\nb").is_err());
    }
}
