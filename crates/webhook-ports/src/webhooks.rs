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
    /// The webhook changed after it was read (its stored revision is no longer the one the
    /// change was made from): read it again and make the change anew.
    #[error("the webhook changed since it was read")]
    Stale,
    #[error("the database is unavailable")]
    Unavailable(#[source] BoxError),
    #[error("the storage backend failed")]
    Backend(#[source] BoxError),
}

/// Registered targets. Wallet-scoped calls MUST behave as if another wallet's webhooks did not
/// exist.
///
/// Whenever a change below cancels a webhook's unfinished deliveries, it cancels those that no
/// live lease holds: a delivery in flight is left to its holder, and what the holder leaves
/// unfinished is cancelled by [`crate::DeliveryQueue::settle_target`] or by the next
/// claim that meets the target (see there). Such a change is ordered with publishes: a publish
/// that read the webhook before the change commits first and its deliveries are cancelled too;
/// one that reads it after sees the change. Turning `ordered` on places the webhook's
/// unfinished deliveries at the end of its sequence, in the order they were stored.
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
    /// signing keys, retry policy, enabled, ordered, rate limit) with those of `webhook`, if its
    /// stored revision is still `webhook.revision` (the one it was read at): a compare-and-set,
    /// which adds one to the revision and returns the new one. Its id, scope and creation time
    /// stay. Turning `enabled` off cancels the webhook's unfinished deliveries (reason
    /// `TargetDisabled`) in the same transaction.
    ///
    /// # Errors
    /// MUST return `NotFound`, changing nothing, when the id is unknown, deleted, global, or
    /// belongs to another wallet than `webhook.scope` names. MUST return `Stale`, changing
    /// nothing, when the stored revision is not `webhook.revision`: the webhook changed since it
    /// was read (an update, a disable or a delete in between), and writing would undo that.
    async fn update_webhook(
        &self,
        webhook: &Webhook,
        now: OffsetDateTime,
    ) -> Result<u64, WebhookStoreError>;

    /// Deletes a webhook, adding one to its revision, and cancels its unfinished deliveries
    /// (reason `TargetDeleted`).
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

    /// Disables a wallet webhook (the target answered 410 Gone), adding one to its revision,
    /// and cancels its unfinished deliveries (reason `TargetGone`). Disabling a disabled webhook
    /// is a no-op. The global webhook MUST be left as it is, enabled and with its deliveries:
    /// only the configuration changes it ([`Self::set_global_webhook`]), as in Identus, which
    /// never disables it.
    ///
    /// # Errors
    /// MUST return `NotFound` when the id is unknown.
    async fn disable_webhook(
        &self,
        id: WebhookId,
        now: OffsetDateTime,
    ) -> Result<(), WebhookStoreError>;

    /// Makes the one global target have the settings of `webhook` (scope `Global`), or removes
    /// it with `None`. When a global webhook is stored, it MUST keep its id and take the
    /// settings in place, so that its unfinished deliveries are sent with them (a new URL or
    /// `Authorization` header included), and its revision goes up by one; settings that are
    /// already the stored ones (per [`Webhook::same_settings`]) MUST change nothing. When none
    /// is stored, `webhook` is stored as given. `None` deletes the stored one and cancels its
    /// unfinished deliveries (reason `TargetDeleted`); turning `enabled` off cancels them with
    /// reason `TargetDisabled`.
    ///
    /// # Errors
    /// `Unavailable` or `Backend` only.
    async fn set_global_webhook(
        &self,
        webhook: Option<Webhook>,
        now: OffsetDateTime,
    ) -> Result<(), WebhookStoreError>;
}
