//! A storage backend as a whole: what the app does with a database beside reading and writing
//! rows (migrating it, watching its pool, hearing what other instances on it did), and
//! [`Storage`], every storage port of one backend in one object.

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;
use webhook_domain::WebhookId;

use crate::{
    BoxError, DeliveryQueue, EventOutbox, RedeliveryJobs, Retention, WalletRepository,
    WebhookRepository,
};

/// A connection pool at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolState {
    /// Connections open, idle or in use.
    pub connections: u32,
    /// Open connections not in use.
    pub idle: u32,
    /// The most connections the pool opens.
    pub max: u32,
}

/// A backend could not be opened, migrated or read for its migrations; the driver's error
/// says why.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct StorageError(pub BoxError);

/// Told what other instances on the same database did, so that this one need not wait for
/// its next poll to learn it.
pub trait ChangeListener: Send + Sync {
    /// Some instance committed a publish with deliveries (or may have, after a reconnect).
    fn published(&self);
    /// Some instance deleted or disabled this webhook.
    fn target_changed(&self, webhook: WebhookId);
}

/// Something that runs until dropped.
pub type Watch = Box<dyn Any + Send + Sync>;

/// The life of a storage backend beside its rows.
///
/// Contract:
/// - `migrate` MUST bring the schema up to date and answer the migrations it applied; run
///   again, it applies none.
/// - `pending_migrations` MUST answer, in order, the migrations `migrate` would apply: none
///   right after it.
/// - `pool_state` MUST NOT do I/O.
/// - `watch_changes` MAY answer `None` when the backend has no way to hear other processes
///   (then only this process's own API tells its dispatcher); a watch reconnects by itself
///   and tells `published` after each reconnect, since a publish may have been missed.
#[async_trait]
pub trait StorageLifecycle: Send + Sync {
    /// Applies the pending migrations; answers their versions.
    async fn migrate(&self) -> Result<Vec<String>, StorageError>;
    /// The migrations not applied yet.
    async fn pending_migrations(&self) -> Result<Vec<String>, StorageError>;
    /// The connection pool now, without I/O.
    fn pool_state(&self) -> PoolState;
    /// Starts telling `listener` what other instances do, until the answer is dropped.
    fn watch_changes(&self, listener: Arc<dyn ChangeListener>) -> Option<Watch>;
}

/// Every storage port of one backend: what a storage adapter implements, and what the app
/// holds as `Arc<dyn Storage>`, handing out each port from it.
pub trait Storage:
    StorageLifecycle
    + WalletRepository
    + WebhookRepository
    + EventOutbox
    + DeliveryQueue
    + RedeliveryJobs
    + Retention
    + std::fmt::Debug
{
}

impl<T> Storage for T where
    T: StorageLifecycle
        + WalletRepository
        + WebhookRepository
        + EventOutbox
        + DeliveryQueue
        + RedeliveryJobs
        + Retention
        + std::fmt::Debug
{
}
