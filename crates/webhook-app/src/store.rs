//! The storage backend named by the database URL: embedded SQLite or PostgreSQL. The rest of
//! the app sees only the ports.

use std::sync::Arc;

use anyhow::Context;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use webhook_adapters::{PgStore, SqliteStore};
use webhook_ports::{
    DeliveryQueue, EventOutbox, RedeliveryJobs, Retention, WalletRepository, WebhookRepository,
};

use crate::metrics::PoolUsage;

pub use crate::database::Database;

/// An open store: every storage port over one backend.
#[derive(Debug, Clone)]
pub enum Store {
    Sqlite(Arc<SqliteStore>),
    Postgres(Arc<PgStore>),
}

impl Store {
    /// Opens (without migrating) the database with up to `pool_size` connections.
    ///
    /// # Errors
    /// When the file cannot be opened or the server cannot be reached.
    pub async fn open(database: &Database, pool_size: u32) -> anyhow::Result<Self> {
        let what = database.describe();
        Ok(match database {
            Database::Sqlite(path) => Store::Sqlite(Arc::new(
                SqliteStore::open(path, pool_size)
                    .await
                    .with_context(|| format!("cannot open the {what}"))?,
            )),
            Database::Postgres(url) => Store::Postgres(Arc::new(
                PgStore::connect(url, pool_size)
                    .await
                    .with_context(|| format!("cannot open the {what}"))?,
            )),
        })
    }

    /// Applies the pending migrations; returns their versions.
    ///
    /// # Errors
    /// When a migration fails (it is rolled back).
    pub async fn migrate(&self) -> anyhow::Result<Vec<String>> {
        Ok(match self {
            Store::Sqlite(s) => s.migrate().await?,
            Store::Postgres(s) => s.migrate().await?,
        })
    }

    /// The migrations not yet applied.
    ///
    /// # Errors
    /// When the migration table cannot be read.
    pub async fn pending_migrations(&self) -> anyhow::Result<Vec<String>> {
        Ok(match self {
            Store::Sqlite(s) => s.pending_migrations().await?,
            Store::Postgres(s) => s.pending_migrations().await?,
        })
    }

    /// The connection pool's numbers now, without I/O.
    pub fn pool_usage(&self) -> PoolUsage {
        let state = match self {
            Store::Sqlite(s) => s.pool_state(),
            Store::Postgres(s) => s.pool_state(),
        };
        PoolUsage {
            connections: state.connections,
            idle: state.idle,
            max: state.max,
        }
    }

    /// Wakes `wake` whenever any instance on the same database publishes, and sends on `changes`
    /// the webhooks any instance deletes or disables (PostgreSQL `LISTEN`); `None` for SQLite,
    /// where the API of this process tells its dispatcher itself.
    pub fn forward_wakeups(
        &self,
        wake: Arc<Notify>,
        changes: tokio::sync::mpsc::UnboundedSender<webhook_domain::WebhookId>,
    ) -> Option<JoinHandle<()>> {
        match self {
            Store::Sqlite(_) => None,
            Store::Postgres(s) => Some(s.forward_wakeups(wake, changes)),
        }
    }

    pub fn wallets(&self) -> Arc<dyn WalletRepository> {
        match self {
            Store::Sqlite(s) => s.clone(),
            Store::Postgres(s) => s.clone(),
        }
    }

    pub fn webhooks(&self) -> Arc<dyn WebhookRepository> {
        match self {
            Store::Sqlite(s) => s.clone(),
            Store::Postgres(s) => s.clone(),
        }
    }

    pub fn outbox(&self) -> Arc<dyn EventOutbox> {
        match self {
            Store::Sqlite(s) => s.clone(),
            Store::Postgres(s) => s.clone(),
        }
    }

    pub fn queue(&self) -> Arc<dyn DeliveryQueue> {
        match self {
            Store::Sqlite(s) => s.clone(),
            Store::Postgres(s) => s.clone(),
        }
    }

    pub fn jobs(&self) -> Arc<dyn RedeliveryJobs> {
        match self {
            Store::Sqlite(s) => s.clone(),
            Store::Postgres(s) => s.clone(),
        }
    }

    pub fn retention(&self) -> Arc<dyn Retention> {
        match self {
            Store::Sqlite(s) => s.clone(),
            Store::Postgres(s) => s.clone(),
        }
    }
}
