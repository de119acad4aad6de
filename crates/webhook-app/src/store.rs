//! The storage backend named by the database URL: embedded SQLite or PostgreSQL. The rest of
//! the app sees only the ports.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use webhook_adapters::{PgStore, SqliteStore};
use webhook_ports::{
    DeliveryQueue, EventOutbox, RedeliveryJobs, Retention, WalletRepository, WebhookRepository,
};

use crate::api::DatabaseStatus;
use crate::metrics::PoolUsage;

/// Where the data lives, parsed from the database URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// An SQLite file (`sqlite://<path>`, or the default under the data directory).
    Sqlite(PathBuf),
    /// A PostgreSQL server (`postgres://` or `postgresql://`); the URL may hold a password.
    Postgres(String),
}

impl Database {
    /// What to show an operator: the file, or the server and database without credentials.
    pub fn describe(&self) -> String {
        match self {
            Database::Sqlite(path) => format!("SQLite file {}", path.display()),
            Database::Postgres(url) => {
                let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
                let host_and_db = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
                let host_and_db = host_and_db.split('?').next().unwrap_or_default();
                format!("PostgreSQL at {host_and_db}")
            }
        }
    }
}

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

/// The store as `/ready` sees it. Migrations only move forward, so once this binary's
/// migrations are all applied, later probes only check that the database answers, through the
/// pool, instead of opening a connection and taking the migration lock each time.
#[derive(Debug)]
pub struct StoreStatus {
    store: Store,
    migrated: std::sync::atomic::AtomicBool,
}

impl StoreStatus {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            migrated: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

#[async_trait]
impl DatabaseStatus for StoreStatus {
    async fn pending_migrations(&self) -> anyhow::Result<Vec<String>> {
        use std::sync::atomic::Ordering::Relaxed;
        if self.migrated.load(Relaxed) {
            // One primary-key read: the database answers. Whether the default wallet exists
            // does not matter.
            match self
                .store
                .wallets()
                .get_wallet(webhook_domain::WalletId::DEFAULT)
                .await
            {
                Ok(_) | Err(webhook_ports::WalletStoreError::NotFound) => {}
                Err(e) => return Err(e.into()),
            }
            return Ok(Vec::new());
        }
        let pending = self.store.pending_migrations().await?;
        self.migrated.store(pending.is_empty(), Relaxed);
        Ok(pending)
    }

    fn pool(&self) -> PoolUsage {
        self.store.pool_usage()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_never_show_credentials() {
        let pg = Database::Postgres(
            "postgres://app:s3cret@db.internal:5432/hooks?sslmode=require".into(),
        );
        assert_eq!(pg.describe(), "PostgreSQL at db.internal:5432/hooks");
        let sqlite = Database::Sqlite(PathBuf::from("data/webhookd.db"));
        assert_eq!(sqlite.describe(), "SQLite file data/webhookd.db");
    }
}
