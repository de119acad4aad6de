//! Webhook targets.

use async_trait::async_trait;
use thiserror::Error;
use time::OffsetDateTime;
use webhook_domain::{WalletId, Webhook, WebhookId};

use crate::{BoxError, Page};

#[derive(Debug, Error)]
pub enum WebhookStoreError {
    #[error("webhook not found")]
    NotFound,
    #[error("the wallet already has {limit} webhooks, the most allowed")]
    LimitReached { limit: u32 },
    #[error("already exists: {0}")]
    Conflict(String),
    #[error("the database is unavailable")]
    Unavailable(#[source] BoxError),
    #[error("the storage backend failed")]
    Backend(#[source] BoxError),
}

/// Registered targets. Wallet-scoped calls MUST behave as if another wallet's webhooks did not
/// exist.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait WebhookRepository: Send + Sync {
    /// Stores a wallet-scoped webhook.
    ///
    /// # Errors
    /// MUST return `LimitReached` when `limit` is given and the wallet already has that many
    /// webhooks (checked atomically with the insert); `Conflict` when the id exists.
    async fn create_webhook(
        &self,
        webhook: &Webhook,
        limit: Option<u32>,
    ) -> Result<(), WebhookStoreError>;

    /// # Errors
    /// MUST return `NotFound` when the id is unknown or belongs to another wallet.
    async fn get_webhook(
        &self,
        wallet: WalletId,
        id: WebhookId,
    ) -> Result<Webhook, WebhookStoreError>;

    /// The wallet's webhooks, oldest first.
    ///
    /// # Errors
    /// `Unavailable` or `Backend` only.
    async fn list_webhooks(
        &self,
        wallet: WalletId,
        page: Page,
    ) -> Result<Vec<Webhook>, WebhookStoreError>;

    /// Replaces the settings of a live wallet webhook (URL, custom headers, event types,
    /// signing keys, retry policy, enabled, ordered, rate limit) with those of `webhook`; its
    /// id, scope and creation time stay. Turning `enabled` off cancels the webhook's unfinished
    /// deliveries (reason `TargetDisabled`) in the same transaction.
    ///
    /// # Errors
    /// MUST return `NotFound`, changing nothing, when the id is unknown, deleted, global, or
    /// belongs to another wallet than `webhook.scope` names.
    async fn update_webhook(
        &self,
        webhook: &Webhook,
        now: OffsetDateTime,
    ) -> Result<(), WebhookStoreError>;

    /// Deletes a webhook and cancels its unfinished deliveries (reason `TargetDeleted`).
    ///
    /// # Errors
    /// MUST return `NotFound` when the id is unknown or belongs to another wallet, deleting
    /// nothing.
    async fn delete_webhook(
        &self,
        wallet: WalletId,
        id: WebhookId,
        now: OffsetDateTime,
    ) -> Result<(), WebhookStoreError>;

    /// Disables a webhook of any scope (the target answered 410 Gone) and cancels its
    /// unfinished deliveries (reason `TargetGone`). Disabling a disabled webhook is a no-op.
    ///
    /// # Errors
    /// MUST return `NotFound` when the id is unknown.
    async fn disable_webhook(
        &self,
        id: WebhookId,
        now: OffsetDateTime,
    ) -> Result<(), WebhookStoreError>;

    /// Makes `webhook` (scope `Global`) the one global target, or removes it with `None`.
    /// An unchanged URL and headers keep the stored row (and its id); a changed one replaces it
    /// and cancels the old one's unfinished deliveries.
    ///
    /// # Errors
    /// `Unavailable` or `Backend` only.
    async fn set_global_webhook(
        &self,
        webhook: Option<Webhook>,
        now: OffsetDateTime,
    ) -> Result<(), WebhookStoreError>;
}
