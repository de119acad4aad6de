//! The storage backend named by the database URL (embedded SQLite or PostgreSQL, or any
//! backend of `webhook_adapters::STORAGE_BACKENDS`), opened here and held as one
//! `Arc<dyn Storage>`. The rest of the app sees only the ports.

use std::sync::Arc;

use anyhow::Context;
use webhook_ports::{
    ChangeListener, DeliveryQueue, EventOutbox, RedeliveryJobs, Retention, Storage,
    WalletRepository, Watch, WebhookRepository,
};

use crate::metrics::PoolUsage;

pub use crate::database::Database;

/// An open store: every storage port over one backend.
#[derive(Debug, Clone)]
pub struct Store(Arc<dyn Storage>);

impl Store {
    /// Opens (without migrating) the database with up to `pool_size` connections, through the
    /// backend its URL's scheme names.
    ///
    /// # Errors
    /// When the file cannot be opened or the server cannot be reached.
    pub async fn open(database: &Database, pool_size: u32) -> anyhow::Result<Self> {
        let storage = (database.storage_backend().open)(database.url().to_owned(), pool_size)
            .await
            .with_context(|| format!("cannot open the {}", database.describe()))?;
        Ok(Self(storage))
    }

    /// Applies the pending migrations; returns their versions.
    ///
    /// # Errors
    /// When a migration fails (it is rolled back).
    pub async fn migrate(&self) -> anyhow::Result<Vec<String>> {
        Ok(self.0.migrate().await?)
    }

    /// The migrations not yet applied.
    ///
    /// # Errors
    /// When the migration table cannot be read.
    pub async fn pending_migrations(&self) -> anyhow::Result<Vec<String>> {
        Ok(self.0.pending_migrations().await?)
    }

    /// The connection pool's numbers now, without I/O.
    pub(crate) fn pool_usage(&self) -> PoolUsage {
        let state = self.0.pool_state();
        PoolUsage {
            connections: state.connections,
            idle: state.idle,
            max: state.max,
        }
    }

    /// Tells `listener` whenever any instance on the same database publishes, and of the
    /// webhooks any instance deletes or disables, until the answer is dropped; `None` where
    /// the backend cannot hear other processes (SQLite), and the API of this process tells its
    /// dispatcher itself.
    pub(crate) fn watch_changes(&self, listener: Arc<dyn ChangeListener>) -> Option<Watch> {
        self.0.watch_changes(listener)
    }

    pub fn wallets(&self) -> Arc<dyn WalletRepository> {
        self.0.clone()
    }

    pub fn webhooks(&self) -> Arc<dyn WebhookRepository> {
        self.0.clone()
    }

    pub fn outbox(&self) -> Arc<dyn EventOutbox> {
        self.0.clone()
    }

    pub(crate) fn queue(&self) -> Arc<dyn DeliveryQueue> {
        self.0.clone()
    }

    pub fn jobs(&self) -> Arc<dyn RedeliveryJobs> {
        self.0.clone()
    }

    pub(crate) fn retention(&self) -> Arc<dyn Retention> {
        self.0.clone()
    }
}
