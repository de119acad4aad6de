//! Wallets and the API keys bound to them.

use async_trait::async_trait;
use thiserror::Error;
use time::OffsetDateTime;
use webhook_domain::{ApiKeyHash, ApiKeyTag, Entity, EntityId, Wallet, WalletId};

use crate::{BoxError, Page};

/// A key as stored: the wallet it opens and its hash (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredApiKey {
    pub wallet_id: WalletId,
    pub hash: ApiKeyHash,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Error)]
pub enum WalletStoreError {
    #[error("wallet not found")]
    NotFound,
    #[error("already exists: {0}")]
    Conflict(String),
    #[error("the database is unavailable")]
    Unavailable(#[source] BoxError),
    #[error("the storage backend failed")]
    Backend(#[source] BoxError),
}

/// Tenants and their credentials.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait WalletRepository: Send + Sync {
    /// Stores a new wallet.
    ///
    /// # Errors
    /// MUST return `Conflict` when a wallet with the same id exists, leaving it unchanged.
    async fn create_wallet(&self, wallet: &Wallet) -> Result<(), WalletStoreError>;

    /// # Errors
    /// MUST return `NotFound` when no wallet has this id.
    async fn get_wallet(&self, id: WalletId) -> Result<Wallet, WalletStoreError>;

    /// Wallets in creation order (then by id).
    ///
    /// # Errors
    /// `Unavailable` or `Backend` only.
    async fn list_wallets(&self, page: Page) -> Result<Vec<Wallet>, WalletStoreError>;

    /// Binds a key to a wallet.
    ///
    /// # Errors
    /// MUST return `NotFound` when the wallet does not exist. (Keys are salted, so storage
    /// cannot tell that a key is bound twice; the caller checks with [`Self::find_api_keys`].)
    async fn add_api_key(&self, key: &StoredApiKey) -> Result<(), WalletStoreError>;

    /// The stored keys whose tag is `tag`: the only candidates for a presented key. The caller
    /// checks each with [`ApiKeyHash::matches`].
    ///
    /// # Errors
    /// `Unavailable` or `Backend` only; no match is an empty list.
    async fn find_api_keys(&self, tag: ApiKeyTag) -> Result<Vec<StoredApiKey>, WalletStoreError>;

    /// Stores a new IAM entity of an existing wallet.
    ///
    /// # Errors
    /// MUST return `NotFound` when its wallet does not exist and `Conflict` when an entity with
    /// the same id exists, storing nothing in either case.
    async fn create_entity(&self, entity: &Entity) -> Result<(), WalletStoreError>;

    /// # Errors
    /// MUST return `NotFound` when no entity has this id.
    async fn get_entity(&self, id: EntityId) -> Result<Entity, WalletStoreError>;

    /// The stored admin token, if one was ever stored (only its hash is kept).
    ///
    /// # Errors
    /// `Unavailable` or `Backend` only.
    async fn admin_token(&self) -> Result<Option<ApiKeyHash>, WalletStoreError>;

    /// Stores `hash` as the admin token unless one is stored already. Returns whether it was
    /// stored. MUST be atomic: of several instances racing at first start, exactly one stores
    /// its token and the others get `false`.
    ///
    /// # Errors
    /// `Unavailable` or `Backend` only.
    async fn init_admin_token(
        &self,
        hash: &ApiKeyHash,
        now: OffsetDateTime,
    ) -> Result<bool, WalletStoreError>;
}
