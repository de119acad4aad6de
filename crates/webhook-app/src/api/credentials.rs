//! The credentials the API checks keys against: the admin token's salted hash
//! (`AdminCredential`) and the memory of wallet keys that opened a wallet lately
//! (`KnownKeys`). Neither holds a key in clear. How a request presents a key, and what it is
//! answered, is `auth`'s.

use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use webhook_domain::{ApiKey, ApiKeyHash, WalletId};

/// The admin token as the API checks it: only its salted hash is held.
#[derive(Debug)]
pub(crate) struct AdminCredential(ApiKeyHash);

impl AdminCredential {
    pub(crate) fn new(hash: ApiKeyHash) -> Self {
        Self(hash)
    }

    pub(super) fn admits(&self, presented: &ApiKey) -> bool {
        self.0.matches(presented)
    }
}

/// Keys that opened a wallet lately, so that a busy producer's key is checked against the
/// database once a minute rather than on every request. Entries are salted digests, never the
/// keys. Keys cannot be revoked yet; when they can, revocation must clear this.
#[derive(Debug)]
pub(crate) struct KnownKeys {
    salt: [u8; 16],
    entries: std::sync::Mutex<std::collections::HashMap<[u8; 32], (WalletId, Instant)>>,
}

/// How long a key is trusted without asking the database again.
const KNOWN_FOR: Duration = Duration::from_secs(60);
/// Keys remembered at most; past that the memory starts afresh.
const MAX_KNOWN: usize = 10_000;

impl KnownKeys {
    pub(crate) fn new(salt: [u8; 16]) -> Self {
        Self {
            salt,
            entries: std::sync::Mutex::default(),
        }
    }

    fn digest(&self, key: &ApiKey) -> [u8; 32] {
        Sha256::new()
            .chain_update(self.salt)
            .chain_update(key.expose().as_bytes())
            .finalize()
            .into()
    }

    pub(super) fn get(&self, key: &ApiKey) -> Option<WalletId> {
        let digest = self.digest(key);
        let entries = self.entries.lock().ok()?;
        entries
            .get(&digest)
            .filter(|(_, at)| at.elapsed() < KNOWN_FOR)
            .map(|(wallet, _)| *wallet)
    }

    pub(super) fn insert(&self, key: &ApiKey, wallet: WalletId) {
        let digest = self.digest(key);
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= MAX_KNOWN {
                entries.clear();
            }
            entries.insert(digest, (wallet, Instant::now()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_keys_remember_only_what_opened_a_wallet() {
        let known = KnownKeys::new([7; 16]);
        let key = ApiKey::parse("producer-key").unwrap();
        let other = ApiKey::parse("producer-kez").unwrap();
        assert_eq!(known.get(&key), None);
        known.insert(&key, WalletId::DEFAULT);
        assert_eq!(known.get(&key), Some(WalletId::DEFAULT));
        assert_eq!(known.get(&other), None);
    }
}
