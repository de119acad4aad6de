//! The embedded SQLite adapter: every port over one database file.
//!
//! Connections are `SyncConnectionWrapper<SqliteConnection>` from diesel-async in a bb8 pool;
//! each operation runs as one transaction on a blocking thread. An operation that writes begins
//! with `BEGIN IMMEDIATE`, so writers queue on SQLite's lock (with a busy timeout) instead of
//! failing on a lock upgrade. Within one process they first queue on a fair in-process lock
//! ([`SqliteStore::transaction`]): SQLite's busy handler polls the lock with sleeps of up to
//! 100 ms, which let a writer that just came in pass one that has waited, and left the lock
//! idle between polls; other processes (the CLI beside a running service) still meet the busy
//! timeout. An operation that only reads begins with a deferred `BEGIN` and reads WAL's
//! snapshot without waiting for a writer. The file is in WAL mode with `synchronous=FULL`: a
//! commit that returned is on disk.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use diesel_async::pooled_connection::bb8::Pool;
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_async::{AsyncConnection, SimpleAsyncConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use time::OffsetDateTime;
use webhook_domain::{
    ApiKeyHash, ApiKeyTag, CancelReason, Delivery, DeliveryId, DeliveryStateKind, Entity, EntityId,
    Event, EventId, RedeliveryJob, RedeliveryJobId, Wallet, WalletId, Webhook, WebhookId,
    WebhookScope,
};
use webhook_ports::{
    AttemptLog, AttemptRecord, Backlog, ClaimRequest, ClaimedDelivery, DeliveryFilter,
    DeliveryQueue, DeliverySearch, EventOutbox, FoundDelivery, Idempotency, LeaseOwner,
    OutboxError, Overview, Page, Pruned, PublishItem, Published, RecentAttempts, RedeliveryJobs,
    Retention, StatsWindow, StoredApiKey, WalletRepository, WalletStoreError, WebhookRepository,
    WebhookStats, WebhookStoreError,
};

mod claims;
mod errors;

use crate::PoolState;
use crate::port_errors::Classified;
use crate::publishing::{PublishScope, first_publish};
use crate::queries::{
    cancel_unleased, leased_until, prune_candidates, publish_targets, redelivery_batch,
    redelivery_candidates,
};
use crate::sql_id::{sql_id, sql_ids};
// The shared statements run these; the plans of the hot queries show them (tests only).
#[cfg(feature = "testing")]
use crate::queries::{
    backlog, deliveries_listing, deliveries_search, deliveries_search_by_type, event_types_of_page,
};
use crate::rows::{
    AdapterError, DeliveryRow, DeliveryStateChange, EntityRow, EventRow, JobProgressChange,
    JobWindow, NewAdminToken, NewAttempt, NewEvent, NewRedeliveryJob, RecentAttemptRow,
    RedeliveryJobRow, TARGET_NOT_LIVE, WebhookRow, WebhookSettingsChange, conflict_if_taken,
    delivery_select, event_select, from_micros, group_recent_attempts, job_stop_reason, micros,
    requeue_all, revision_column, row_to_delivery, row_to_event, row_to_webhook, to_json,
    webhook_columns, webhook_select,
};
use crate::schema::{
    admin_token, api_keys, attempts, deliveries, entities, events, redelivery_jobs, wallets,
    webhooks,
};

/// The statements both backends run alike ([`crate::statements`]), for SQLite's connection.
mod statements {
    crate::statements::shared_statements!(diesel::sqlite::SqliteConnection, diesel; []; []);
}

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// An error of this store with its driver error classified as SQLite's: what becomes a
/// port's error (by `?`, or by [`port`]).
fn classified(e: impl Into<AdapterError>) -> Classified {
    Classified::new(e.into(), errors::driver_fault)
}

/// A port's error for an error of this store.
fn port<E: From<Classified>>(e: impl Into<AdapterError>) -> E {
    classified(e).into()
}

/// The most rows written by one multi-row insert: SQLite allows 32,766 bind parameters, and a
/// delivery takes 13.
const INSERT_CHUNK: usize = 2_000;

type Conn = SyncConnectionWrapper<SqliteConnection>;

/// The longest a write waits for its turn in this process, as long as SQLite's busy timeout.
const WRITE_TURN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How often the store refreshes the planner's statistics (see
/// [`SqliteStore::refresh_statistics`]).
const STATISTICS_INTERVAL: Duration = Duration::from_secs(10 * 60);

/// The statistics refresh: `analyze` of every table, reading at most `analysis_limit` rows of
/// each index (70 ms on 1,000,000 deliveries here, against 0.6 s for all of them, and it holds
/// the write lock meanwhile). `PRAGMA optimize` skips tables it judges unchanged, and a much
/// smaller limit, which samples only the start of each index, misled the planner in
/// `sqlite_statistics_follow_the_data_without_a_restart`.
const REFRESH_STATISTICS: &str = "PRAGMA analysis_limit = 100000; ANALYZE;";

/// The store's background upkeep, stopped when the last clone of the store is dropped.
struct Upkeep(tokio::task::JoinHandle<()>);

impl Drop for Upkeep {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Settings applied to every connection. `busy_timeout` makes a writer wait for the lock.
const CONNECTION_PRAGMAS: &str =
    "PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL;";

/// Every port over one SQLite file.
#[derive(Clone)]
pub struct SqliteStore {
    pool: Pool<Conn>,
    pool_size: u32,
    /// This process's writers take turns here, first come first served.
    write_turn: std::sync::Arc<tokio::sync::Semaphore>,
    path: PathBuf,
    /// Refreshes the planner's statistics every [`STATISTICS_INTERVAL`].
    _upkeep: std::sync::Arc<Upkeep>,
    #[cfg(feature = "testing")]
    faults: std::sync::Arc<crate::testing::Faults>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

/// Why the SQLite store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SqliteOpenError {
    #[error("cannot create the data directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the SQLite database {path}: {message}")]
    Open { path: PathBuf, message: String },
    #[error("cannot migrate the SQLite database {path}: {message}")]
    Migrate { path: PathBuf, message: String },
}

impl SqliteStore {
    /// Opens (creating it and its directory if needed) the database file at `path` in WAL mode
    /// and pools up to `pool_size` connections. Does not migrate: see [`Self::migrate`].
    ///
    /// # Errors
    /// [`SqliteOpenError`] saying which step failed and why.
    pub async fn open(path: &Path, pool_size: u32) -> Result<Self, SqliteOpenError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| SqliteOpenError::CreateDir {
                path: dir.to_owned(),
                source,
            })?;
        }
        let url = path.to_string_lossy().into_owned();
        let open_error = |message: String| SqliteOpenError::Open {
            path: path.to_owned(),
            message,
        };
        // WAL is a property of the file: set it once, before the pool's connections exist.
        // `optimize` refreshes the planner's statistics where they are stale, so listings pick
        // the most selective index.
        Self::blocking(&url, |conn| {
            diesel::connection::SimpleConnection::batch_execute(
                conn,
                "PRAGMA journal_mode = WAL; PRAGMA optimize = 0x10002;",
            )
            .map_err(|e| e.to_string())
        })
        .await
        .map_err(open_error)?;

        let mut config = ManagerConfig::<Conn>::default();
        config.custom_setup = Box::new(|url| {
            let url = url.to_owned();
            Box::pin(async move {
                let mut conn = Conn::establish(&url).await?;
                conn.batch_execute(CONNECTION_PRAGMAS)
                    .await
                    .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                Ok(conn)
            })
        });
        let manager = AsyncDieselConnectionManager::<Conn>::new_with_config(url, config);
        let pool_size = pool_size.max(1);
        let pool = Pool::builder()
            .max_size(pool_size)
            .connection_timeout(Duration::from_secs(10))
            .build(manager)
            .await
            .map_err(|e| open_error(e.to_string()))?;
        let write_turn = std::sync::Arc::new(tokio::sync::Semaphore::new(1));
        let upkeep = tokio::spawn(Self::keep_statistics(pool.clone(), write_turn.clone()));
        Ok(Self {
            pool,
            pool_size,
            write_turn,
            path: path.to_owned(),
            _upkeep: std::sync::Arc::new(Upkeep(upkeep)),
            #[cfg(feature = "testing")]
            faults: std::sync::Arc::default(),
        })
    }

    /// Refreshes the planner's statistics, as the data may have outgrown them. The `optimize` at open
    /// finds the tables of a fresh install empty (or missing), and a long-running service would
    /// otherwise plan against that until its next start: without statistics SQLite picks
    /// indexes by rules of thumb, and some of the console's searches then read and sort a
    /// whole wallet.
    ///
    /// # Errors
    /// When the database cannot be reached or refuses the statements.
    pub async fn refresh_statistics(&self) -> Result<(), webhook_ports::StorageError> {
        Self::refresh(&self.pool, &self.write_turn)
            .await
            .map_err(webhook_ports::StorageError)
    }

    async fn keep_statistics(pool: Pool<Conn>, write_turn: std::sync::Arc<tokio::sync::Semaphore>) {
        let mut every = tokio::time::interval(STATISTICS_INTERVAL);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is now: `open` has just run `optimize`.
        every.tick().await;
        loop {
            every.tick().await;
            if let Err(e) = Self::refresh(&pool, &write_turn).await {
                tracing::warn!(error = %e, "cannot refresh SQLite's planner statistics");
            }
        }
    }

    /// `analyze` writes its results: it waits for its turn as the store's writers do.
    async fn refresh(
        pool: &Pool<Conn>,
        write_turn: &tokio::sync::Semaphore,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let _turn = tokio::time::timeout(WRITE_TURN_TIMEOUT, write_turn.acquire()).await??;
        let mut conn = pool.get().await?;
        conn.batch_execute(REFRESH_STATISTICS).await?;
        Ok(())
    }

    /// Applies the pending embedded migrations and returns the versions applied.
    ///
    /// # Errors
    /// [`SqliteOpenError::Migrate`] naming the failure; a failed migration is rolled back.
    pub async fn migrate(&self) -> Result<Vec<String>, SqliteOpenError> {
        Self::blocking(&self.path.to_string_lossy(), |conn| {
            conn.run_pending_migrations(MIGRATIONS)
                .map(|done| done.iter().map(ToString::to_string).collect())
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|message| self.migrate_error(message))
    }

    /// The versions of the embedded migrations not yet applied.
    ///
    /// # Errors
    /// [`SqliteOpenError::Migrate`] when the migration table cannot be read.
    pub async fn pending_migrations(&self) -> Result<Vec<String>, SqliteOpenError> {
        Self::blocking(&self.path.to_string_lossy(), |conn| {
            conn.pending_migrations(MIGRATIONS)
                .map(|pending| pending.iter().map(|m| m.name().to_string()).collect())
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|message| self.migrate_error(message))
    }

    fn migrate_error(&self, message: String) -> SqliteOpenError {
        SqliteOpenError::Migrate {
            path: self.path.clone(),
            message,
        }
    }

    /// Runs `work` on a dedicated synchronous connection on a blocking thread.
    async fn blocking<R, F>(url: &str, work: F) -> Result<R, String>
    where
        R: Send + 'static,
        F: FnOnce(&mut SqliteConnection) -> Result<R, String> + Send + 'static,
    {
        let url = url.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut conn = SqliteConnection::establish(&url).map_err(|e| e.to_string())?;
            diesel::connection::SimpleConnection::batch_execute(&mut conn, CONNECTION_PRAGMAS)
                .map_err(|e| e.to_string())?;
            work(&mut conn)
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// Arms failures inside operations, for tests.
    #[cfg(feature = "testing")]
    pub fn faults(&self) -> &crate::testing::Faults {
        &self.faults
    }

    /// A scope for the events of one publish transaction, reaching the armed faults in tests.
    fn publish_scope(&self) -> PublishScope {
        #[cfg(feature = "testing")]
        return PublishScope::with_faults(self.faults.clone());
        #[cfg(not(feature = "testing"))]
        PublishScope::default()
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The connection pool's numbers now (no I/O), for monitoring. Migrations use connections
    /// of their own, outside the pool.
    pub fn pool_state(&self) -> PoolState {
        let state = self.pool.state();
        PoolState {
            connections: state.connections,
            idle: state.idle_connections,
            max: self.pool_size,
        }
    }

    /// Runs `work` in one immediate (write-locking) transaction on a blocking thread, once the
    /// writers of this process that came first are done.
    async fn transaction<R, F>(&self, work: F) -> Result<R, AdapterError>
    where
        R: Send + 'static,
        F: FnOnce(&mut SqliteConnection) -> Result<R, AdapterError> + Send + 'static,
    {
        let _turn = tokio::time::timeout(WRITE_TURN_TIMEOUT, self.write_turn.acquire())
            .await
            .map_err(|_| {
                AdapterError::Unavailable(format!(
                    "no turn to write within {} s: the database is busy",
                    WRITE_TURN_TIMEOUT.as_secs()
                ))
            })?
            .map_err(|_| AdapterError::Unavailable("the store was closed".to_owned()))?;
        let mut conn = self
            .pool
            .get()
            .await
            .map_err(|e| AdapterError::Unavailable(e.to_string()))?;
        conn.spawn_blocking(move |c| Ok(c.immediate_transaction(work)))
            .await?
    }

    /// Runs read-only `work` in one deferred transaction (`BEGIN`) on a blocking thread. In WAL
    /// mode it reads the snapshot of its first statement and never takes the write lock, so
    /// lookups and listings go on while a writer holds it. `work` must not write: a deferred
    /// transaction that writes has to upgrade its lock, and fails as busy when it cannot.
    async fn read<R, F>(&self, work: F) -> Result<R, AdapterError>
    where
        R: Send + 'static,
        F: FnOnce(&mut SqliteConnection) -> Result<R, AdapterError> + Send + 'static,
    {
        let mut conn = self
            .pool
            .get()
            .await
            .map_err(|e| AdapterError::Unavailable(e.to_string()))?;
        conn.spawn_blocking(move |c| Ok(c.transaction(work)))
            .await?
    }
}

/// The events a claimed batch delivers: `$wallets` and `$ids` list the batch's wallets and
/// event ids (texts). Event ids are unique per wallet, so both are asked for, which lets the
/// primary key (wallet, id) find them; a pair that was not asked for may come back too (an id
/// of one wallet that another also uses), so callers key what they read by both.
macro_rules! events_of_batch {
    ($wallets:expr, $ids:expr) => {
        events::table
            .filter(events::wallet_id.eq_any(sql_ids($wallets)))
            .filter(events::id.eq_any(sql_ids($ids)))
    };
}

/// SQLite in the registry: `sqlite://<path>`, a file path after the scheme.
pub(crate) const BACKEND: crate::StorageBackend = crate::StorageBackend {
    name: "SQLite",
    schemes: &["sqlite"],
    example: "sqlite://data/webhookd.db",
    check: |url| match sqlite_path(url) {
        Some(_) => Ok(()),
        None => Err("sqlite:// needs a file path, as in sqlite://data/webhookd.db".to_owned()),
    },
    describe: |url| format!("SQLite file {}", sqlite_path(url).unwrap_or_default()),
    open: |url, pool_size| {
        Box::pin(async move {
            let path = sqlite_path(&url).unwrap_or_default().to_owned();
            let store = SqliteStore::open(Path::new(&path), pool_size)
                .await
                .map_err(webhook_ports::StorageError::from)?;
            Ok(std::sync::Arc::new(store) as std::sync::Arc<dyn webhook_ports::Storage>)
        })
    },
    #[cfg(feature = "testing")]
    testing: crate::testing::TestSupport {
        // The caller's directory keeps the file: nothing more to hold.
        fresh: |dir| {
            let url = format!("sqlite://{}", dir.join("webhookd.db").display());
            Box::pin(async move {
                Some(crate::testing::FreshDatabase {
                    url,
                    guard: Box::new(()),
                })
            })
        },
        snapshot: |url| {
            Box::pin(async move {
                let path = sqlite_path(&url).unwrap_or_default().to_owned();
                tokio::task::spawn_blocking(move || crate::snapshot::sqlite(Path::new(&path)))
                    .await
                    .expect("the snapshot task")
            })
        },
    },
};

impl From<SqliteOpenError> for webhook_ports::StorageError {
    fn from(e: SqliteOpenError) -> Self {
        Self(Box::new(e))
    }
}

/// The file path of an `sqlite://` URL; `None` when it names none.
fn sqlite_path(url: &str) -> Option<&str> {
    let (_, path) = url.split_once("://")?;
    (!path.is_empty()).then_some(path)
}

#[async_trait]
impl webhook_ports::StorageLifecycle for SqliteStore {
    async fn migrate(&self) -> Result<Vec<String>, webhook_ports::StorageError> {
        SqliteStore::migrate(self)
            .await
            .map_err(webhook_ports::StorageError::from)
    }

    async fn pending_migrations(&self) -> Result<Vec<String>, webhook_ports::StorageError> {
        SqliteStore::pending_migrations(self)
            .await
            .map_err(webhook_ports::StorageError::from)
    }

    fn pool_state(&self) -> PoolState {
        SqliteStore::pool_state(self)
    }

    /// None: SQLite has no channel between processes. A process's own API tells its
    /// dispatcher; another process sharing the file learns at its next poll.
    fn watch_changes(
        &self,
        _listener: std::sync::Arc<dyn webhook_ports::ChangeListener>,
    ) -> Option<webhook_ports::Watch> {
        None
    }
}

#[async_trait]
impl WalletRepository for SqliteStore {
    async fn create_wallet(&self, wallet: &Wallet) -> Result<(), WalletStoreError> {
        let row = (
            wallets::id.eq(sql_id(wallet.id)),
            wallets::name.eq(wallet.name.as_str().to_owned()),
            wallets::created_at.eq(micros(wallet.created_at)),
            wallets::updated_at.eq(micros(wallet.updated_at)),
        );
        let id = wallet.id;
        self.transaction(move |c| {
            diesel::insert_into(wallets::table)
                .values(row)
                .execute(c)
                .map_err(conflict_if_taken(format!("wallet {id}")))?;
            Ok(())
        })
        .await
        .map_err(port)
    }

    async fn get_wallet(&self, id: WalletId) -> Result<Wallet, WalletStoreError> {
        self.read(move |c| statements::wallet(c, id))
            .await
            .map_err(port)
    }

    async fn list_wallets(&self, page: Page) -> Result<Vec<Wallet>, WalletStoreError> {
        self.read(move |c| statements::wallets_page(c, page))
            .await
            .map_err(port)
    }

    async fn add_api_key(&self, key: &StoredApiKey) -> Result<(), WalletStoreError> {
        let wallet = key.wallet_id.to_string();
        let row = (
            api_keys::wallet_id.eq(sql_id(wallet.clone())),
            api_keys::tag.eq(key.hash.tag.0.to_vec()),
            api_keys::salt.eq(key.hash.salt.to_vec()),
            api_keys::digest.eq(key.hash.digest.to_vec()),
            api_keys::created_at.eq(micros(key.created_at)),
        );
        self.transaction(move |c| {
            let exists: i64 = wallets::table.find(sql_id(&wallet)).count().get_result(c)?;
            if exists == 0 {
                return Err(AdapterError::NotFound);
            }
            diesel::insert_into(api_keys::table)
                .values(row)
                .execute(c)?;
            Ok(())
        })
        .await
        .map_err(port)
    }

    async fn find_api_keys(&self, tag: ApiKeyTag) -> Result<Vec<StoredApiKey>, WalletStoreError> {
        self.read(move |c| statements::api_keys_tagged(c, tag))
            .await
            .map_err(port)
    }

    async fn create_entity(&self, entity: &Entity) -> Result<(), WalletStoreError> {
        let row = EntityRow::of(entity);
        let id = entity.id;
        self.transaction(move |c| {
            let exists: i64 = wallets::table
                .find(row.wallet_id.clone())
                .count()
                .get_result(c)?;
            if exists == 0 {
                return Err(AdapterError::NotFound);
            }
            diesel::insert_into(entities::table)
                .values(row)
                .execute(c)
                .map_err(conflict_if_taken(format!("entity {id}")))?;
            Ok(())
        })
        .await
        .map_err(port)
    }

    async fn get_entity(&self, id: EntityId) -> Result<Entity, WalletStoreError> {
        self.read(move |c| statements::entity(c, id))
            .await
            .map_err(port)
    }

    async fn admin_token(&self) -> Result<Option<ApiKeyHash>, WalletStoreError> {
        self.read(statements::admin_token).await.map_err(port)
    }

    async fn init_admin_token(
        &self,
        hash: &ApiKeyHash,
        now: OffsetDateTime,
    ) -> Result<bool, WalletStoreError> {
        let row = NewAdminToken::of(hash, now);
        self.transaction(move |c| {
            // The one row's primary key makes every insert after the first do nothing.
            let inserted = diesel::insert_into(admin_token::table)
                .values(row)
                .on_conflict_do_nothing()
                .execute(c)?;
            Ok(inserted == 1)
        })
        .await
        .map_err(port)
    }
}

fn insert_webhook(c: &mut SqliteConnection, webhook: &Webhook) -> Result<(), AdapterError> {
    let w = webhook_columns(webhook);
    let id = w.id.clone();
    diesel::insert_into(webhooks::table)
        .values((
            webhooks::id.eq(sql_id(w.id)),
            webhooks::wallet_id.eq(w.wallet_id.map(sql_id)),
            webhooks::url.eq(w.url),
            webhooks::custom_headers.eq(w.custom_headers),
            webhooks::event_types.eq(w.event_types),
            webhooks::signing_keys.eq(w.signing_keys),
            webhooks::retry_policy.eq(w.retry_policy),
            webhooks::enabled.eq(w.enabled),
            webhooks::ordered.eq(w.ordered),
            webhooks::rate_limit.eq(w.rate_limit),
            webhooks::created_at.eq(w.created_at),
            webhooks::revision.eq(w.revision),
        ))
        .execute(c)
        .map_err(conflict_if_taken(format!("webhook {id}")))?;
    Ok(())
}

/// Cancels the unfinished deliveries of one webhook that no live lease holds (see the port):
/// a delivery in flight ends with its attempt, and what its holder leaves unfinished is
/// cancelled by [`DeliveryQueue::settle_target`] or by the next claim that meets the webhook.
fn cancel_deliveries_of(
    c: &mut SqliteConnection,
    webhook: &str,
    reason: CancelReason,
    now: OffsetDateTime,
) -> Result<(), AdapterError> {
    cancel_unleased!(webhook, reason, now).execute(c)?;
    Ok(())
}

/// Places the unfinished deliveries of `webhook` that have no place in its sequence (it was not
/// ordered when they were published) at its end, in the order they were stored. SQLite runs
/// one writer at a time: no publish can interleave.
fn number_unordered(c: &mut SqliteConnection, webhook: &str) -> Result<(), AdapterError> {
    let waiting: Vec<String> = deliveries::table
        .filter(deliveries::webhook_id.eq(sql_id(webhook)))
        .filter(deliveries::due_at.is_not_null())
        .filter(deliveries::seq.is_null())
        .order((deliveries::created_at, deliveries::id))
        .select(deliveries::id)
        .load(c)?;
    let count = i64::try_from(waiting.len()).map_err(AdapterError::corrupt)?;
    let last: i64 = diesel::update(webhooks::table.find(sql_id(webhook)))
        .set(webhooks::last_seq.eq(webhooks::last_seq + count))
        .returning(webhooks::last_seq)
        .get_result(c)?;
    for (seq, id) in (last - count + 1..).zip(&waiting) {
        diesel::update(deliveries::table.find(sql_id(id)))
            .set(deliveries::seq.eq(Some(seq)))
            .execute(c)?;
    }
    Ok(())
}

#[async_trait]
impl WebhookRepository for SqliteStore {
    async fn create_webhook(
        &self,
        webhook: &Webhook,
        limit: Option<u32>,
    ) -> Result<(), WebhookStoreError> {
        let webhook = webhook.clone();
        self.transaction(move |c| {
            if let (Some(limit), Some(wallet)) = (limit, webhook_columns(&webhook).wallet_id) {
                let count: i64 = webhooks::table
                    .filter(webhooks::wallet_id.eq(sql_id(wallet)))
                    .filter(webhooks::deleted_at.is_null())
                    .count()
                    .get_result(c)?;
                if count >= i64::from(limit) {
                    return Err(AdapterError::LimitReached(limit));
                }
            }
            insert_webhook(c, &webhook)
        })
        .await
        .map_err(port)
    }

    async fn get_webhook(
        &self,
        wallet: WalletId,
        id: WebhookId,
    ) -> Result<Webhook, WebhookStoreError> {
        self.read(move |c| statements::webhook(c, wallet, id))
            .await
            .map_err(port)
    }

    async fn list_webhooks(
        &self,
        wallet: WalletId,
        page: Page,
    ) -> Result<Vec<Webhook>, WebhookStoreError> {
        self.read(move |c| statements::webhooks_page(c, wallet, page))
            .await
            .map_err(port)
    }

    async fn delete_webhook(
        &self,
        wallet: WalletId,
        id: WebhookId,
        now: OffsetDateTime,
    ) -> Result<(), WebhookStoreError> {
        self.transaction(move |c| {
            let id = id.to_string();
            let deleted = diesel::update(
                webhooks::table
                    .filter(webhooks::id.eq(sql_id(&id)))
                    .filter(webhooks::wallet_id.eq(sql_id(wallet)))
                    .filter(webhooks::deleted_at.is_null()),
            )
            .set((
                webhooks::deleted_at.eq(Some(micros(now))),
                webhooks::enabled.eq(false),
                webhooks::revision.eq(webhooks::revision + 1),
            ))
            .execute(c)?;
            if deleted == 0 {
                return Err(AdapterError::NotFound);
            }
            cancel_deliveries_of(c, &id, CancelReason::TargetDeleted, now)
        })
        .await
        .map_err(port)
    }

    async fn disable_webhook(
        &self,
        id: WebhookId,
        now: OffsetDateTime,
    ) -> Result<(), WebhookStoreError> {
        self.transaction(move |c| {
            let id = id.to_string();
            // Only an enabled wallet webhook changes: the global one follows the configuration.
            let disabled = diesel::update(
                webhooks::table
                    .find(sql_id(&id))
                    .filter(webhooks::enabled.eq(true))
                    .filter(webhooks::wallet_id.is_not_null()),
            )
            .set((
                webhooks::enabled.eq(false),
                webhooks::revision.eq(webhooks::revision + 1),
            ))
            .execute(c)?;
            if disabled == 0 {
                let known: i64 = webhooks::table.find(sql_id(&id)).count().get_result(c)?;
                return if known == 0 {
                    Err(AdapterError::NotFound)
                } else {
                    Ok(())
                };
            }
            cancel_deliveries_of(c, &id, CancelReason::TargetGone, now)
        })
        .await
        .map_err(port)
    }

    async fn set_global_webhook(
        &self,
        webhook: Option<Webhook>,
        now: OffsetDateTime,
    ) -> Result<(), WebhookStoreError> {
        self.transaction(move |c| {
            let current: Option<Webhook> = webhooks::table
                .filter(webhooks::wallet_id.is_null())
                .filter(webhooks::deleted_at.is_null())
                .select(webhook_select!())
                .first(c)
                .optional()?
                .map(row_to_webhook)
                .transpose()?;
            match (current, webhook) {
                (None, None) => Ok(()),
                (None, Some(wanted)) => insert_webhook(c, &wanted),
                (Some(stored), Some(wanted)) if stored.same_settings(&wanted) => Ok(()),
                // In place: what waits for it is sent with the new settings.
                (Some(stored), Some(wanted)) => {
                    let id = stored.id.to_string();
                    diesel::update(webhooks::table.find(sql_id(&id)))
                        .set((
                            WebhookSettingsChange::of(&wanted),
                            webhooks::revision.eq(webhooks::revision + 1),
                        ))
                        .execute(c)?;
                    if stored.enabled && !wanted.enabled {
                        cancel_deliveries_of(c, &id, CancelReason::TargetDisabled, now)?;
                    }
                    Ok(())
                }
                (Some(stored), None) => {
                    let id = stored.id.to_string();
                    diesel::update(webhooks::table.find(sql_id(&id)))
                        .set((
                            webhooks::deleted_at.eq(Some(micros(now))),
                            webhooks::enabled.eq(false),
                            webhooks::revision.eq(webhooks::revision + 1),
                        ))
                        .execute(c)?;
                    cancel_deliveries_of(c, &id, CancelReason::TargetDeleted, now)
                }
            }
        })
        .await
        .map_err(port)
    }

    async fn update_webhook(
        &self,
        webhook: &Webhook,
        now: OffsetDateTime,
    ) -> Result<u64, WebhookStoreError> {
        let WebhookScope::Wallet(wallet) = webhook.scope else {
            return Err(WebhookStoreError::NotFound);
        };
        let id = webhook.id.to_string();
        let settings = WebhookSettingsChange::of(webhook);
        let disables = !webhook.enabled;
        let orders = webhook.ordered;
        let read_at = revision_column(webhook.revision);
        // The immediate transaction makes the check and the write one step for every writer.
        self.transaction(move |c| {
            let (was_enabled, was_ordered, revision): (bool, bool, i64) = webhooks::table
                .filter(webhooks::id.eq(sql_id(&id)))
                .filter(webhooks::wallet_id.eq(sql_id(wallet)))
                .filter(webhooks::deleted_at.is_null())
                .select((webhooks::enabled, webhooks::ordered, webhooks::revision))
                .first(c)
                .optional()?
                .ok_or(AdapterError::NotFound)?;
            if revision != read_at {
                return Err(AdapterError::Stale);
            }
            diesel::update(webhooks::table.find(sql_id(&id)))
                .set((settings, webhooks::revision.eq(revision + 1)))
                .execute(c)?;
            if was_enabled && disables {
                cancel_deliveries_of(c, &id, CancelReason::TargetDisabled, now)?;
            }
            if !was_ordered && orders {
                number_unordered(c, &id)?;
            }
            u64::try_from(revision + 1).map_err(AdapterError::corrupt)
        })
        .await
        .map_err(port)
    }
}

/// Writes a delivery's new state (lease given up) whatever its current one: for requeues,
/// which read the row in the same transaction.
fn write_state(c: &mut SqliteConnection, delivery: &Delivery) -> Result<(), AdapterError> {
    diesel::update(deliveries::table.find(sql_id(delivery.id())))
        .set(DeliveryStateChange::of(delivery, None))
        .execute(c)?;
    Ok(())
}

/// Publishes one event inside the caller's transaction, as [`EventOutbox::publish`] does: the
/// answer of an earlier publish (also one earlier in the same transaction), or the event
/// stored, with its deliveries queued in `scope` for [`insert_deliveries`].
fn publish_in(
    c: &mut SqliteConnection,
    scope: &mut PublishScope,
    event: &Event,
    idempotency: Option<&Idempotency>,
    now: OffsetDateTime,
) -> Result<Published, AdapterError> {
    if let Some(first) = statements::earlier_publish(c, event, idempotency)? {
        return Ok(first);
    }
    let wallet = event.wallet_id();
    if scope.needs_targets(wallet) {
        let rows: Vec<WebhookRow> = publish_targets!(wallet.to_string()).load(c)?;
        scope.add_targets(wallet, rows)?;
    }
    let deliveries = scope.fan_out(event, now);
    diesel::insert_into(events::table)
        .values(NewEvent::of(event, idempotency, deliveries.len(), now))
        .execute(c)?;
    scope.fault_after_event()?;
    scope.queue_deliveries(event, &deliveries, now);
    Ok(first_publish(event, deliveries.len()))
}

/// Inserts the deliveries queued in `scope` with multi-row statements.
fn insert_deliveries(
    c: &mut SqliteConnection,
    scope: &mut PublishScope,
) -> Result<(), AdapterError> {
    // Writers take turns on SQLite's lock: a sequence drawn here follows the commit order.
    for (webhook, count) in scope.ordered_counts() {
        let last: i64 = diesel::update(webhooks::table.find(sql_id(&webhook)))
            .set(webhooks::last_seq.eq(webhooks::last_seq + count))
            .returning(webhooks::last_seq)
            .get_result(c)?;
        scope.number(&webhook, last - count + 1);
    }
    for chunk in scope.deliveries().chunks(INSERT_CHUNK) {
        diesel::insert_into(deliveries::table)
            .values(chunk)
            .execute(c)?;
    }
    Ok(())
}

/// The attempts of the deliveries in ?1 (a JSON array of ids) of the wallet ?2: of each, the ?3
/// most recent, in the order they were made, with the number it has in all. The window
/// functions number each delivery's attempts from the newest and count them, so a whole page
/// takes one statement; each delivery's attempts are read through `attempts_by_delivery`.
const RECENT_ATTEMPTS: &str = "\
SELECT t.delivery_id, t.number, t.started_at, t.duration_us, t.outcome, t.status_code,
       t.response_excerpt, t.error, t.total
FROM (
    SELECT a.id, a.delivery_id, a.number, a.started_at, a.duration_us, a.outcome,
           a.status_code, a.response_excerpt, a.error,
           row_number() OVER (PARTITION BY a.delivery_id ORDER BY a.id DESC) AS newer,
           count(*) OVER (PARTITION BY a.delivery_id) AS total
    FROM deliveries AS d JOIN attempts AS a ON a.delivery_id = d.id
    WHERE d.id IN (SELECT value FROM json_each(?1)) AND d.wallet_id = ?2
) AS t
WHERE t.newer <= ?3
ORDER BY t.delivery_id, t.id";

fn recent_attempts_statement(
    wallet: WalletId,
    ids: &[String],
    per_delivery: u32,
) -> diesel::query_builder::BoxedSqlQuery<
    'static,
    diesel::sqlite::Sqlite,
    diesel::query_builder::SqlQuery,
> {
    use diesel::sql_types::{BigInt, Text};
    diesel::sql_query(RECENT_ATTEMPTS)
        .into_boxed()
        .bind::<Text, _>(to_json(&ids))
        .bind::<Text, _>(wallet.to_string())
        .bind::<BigInt, _>(i64::from(per_delivery))
}

/// [`crate::queries::stats_sql`] in SQLite's words.
fn stats_sql() -> String {
    crate::queries::stats_sql(|n| format!("?{n}"), "/", "BIGINT")
}

/// Writes a delivery's new state (lease given up), only while it is leased to `owner`.
/// Returns whether it was.
fn write_leased_state(
    c: &mut SqliteConnection,
    owner: &str,
    delivery: &Delivery,
) -> Result<bool, AdapterError> {
    let n = diesel::update(
        deliveries::table
            .filter(deliveries::id.eq(sql_id(delivery.id())))
            .filter(deliveries::state.eq(DeliveryStateKind::InFlight.as_str()))
            .filter(deliveries::lease_owner.eq(owner)),
    )
    .set(DeliveryStateChange::of(delivery, None))
    .execute(c)?;
    Ok(n == 1)
}

#[async_trait]
impl EventOutbox for SqliteStore {
    async fn publish(
        &self,
        event: &Event,
        idempotency: Option<Idempotency>,
        now: OffsetDateTime,
    ) -> Result<Published, OutboxError> {
        let event = event.clone();
        let mut scope = self.publish_scope();
        self.transaction(move |c| {
            let published = publish_in(c, &mut scope, &event, idempotency.as_ref(), now)?;
            insert_deliveries(c, &mut scope)?;
            Ok(published)
        })
        .await
        .map_err(port)
    }

    async fn get_event(&self, wallet: WalletId, id: EventId) -> Result<Event, OutboxError> {
        self.read(move |c| statements::event(c, wallet, id))
            .await
            .map_err(port)
    }

    async fn list_deliveries(
        &self,
        wallet: WalletId,
        filter: DeliveryFilter,
        page: Page,
    ) -> Result<Vec<Delivery>, OutboxError> {
        self.read(move |c| statements::deliveries_page(c, wallet, &filter, page))
            .await
            .map_err(port)
    }

    async fn search_deliveries(
        &self,
        wallet: WalletId,
        search: DeliverySearch,
    ) -> Result<Vec<FoundDelivery>, OutboxError> {
        self.read(move |c| statements::search_deliveries(c, wallet, &search))
            .await
            .map_err(port)
    }

    async fn webhook_stats(
        &self,
        wallet: WalletId,
        webhook: WebhookId,
        window: StatsWindow,
    ) -> Result<WebhookStats, OutboxError> {
        self.read(move |c| statements::webhook_stats(c, wallet, webhook, &window, &stats_sql()))
            .await
            .map_err(port)
    }

    async fn overview(&self, attempts_since: OffsetDateTime) -> Result<Overview, OutboxError> {
        self.read(move |c| statements::overview(c, attempts_since))
            .await
            .map_err(port)
    }

    async fn list_attempts(
        &self,
        wallet: WalletId,
        delivery: DeliveryId,
    ) -> Result<Vec<AttemptLog>, OutboxError> {
        self.read(move |c| statements::attempts_of(c, wallet, delivery))
            .await
            .map_err(port)
    }

    async fn list_attempts_of(
        &self,
        wallet: WalletId,
        deliveries: &[DeliveryId],
        per_delivery: u32,
    ) -> Result<HashMap<DeliveryId, RecentAttempts>, OutboxError> {
        if deliveries.is_empty() {
            return Ok(HashMap::new());
        }
        let ids: Vec<String> = deliveries.iter().map(ToString::to_string).collect();
        self.read(move |c| {
            let rows: Vec<RecentAttemptRow> =
                recent_attempts_statement(wallet, &ids, per_delivery).load(c)?;
            group_recent_attempts(rows)
        })
        .await
        .map_err(port)
    }

    async fn requeue(
        &self,
        wallet: WalletId,
        delivery: DeliveryId,
        now: OffsetDateTime,
    ) -> Result<Delivery, OutboxError> {
        self.transaction(move |c| {
            let row: DeliveryRow = deliveries::table
                .filter(deliveries::id.eq(sql_id(delivery)))
                .filter(deliveries::wallet_id.eq(sql_id(wallet)))
                .select(delivery_select!())
                .first(c)
                .optional()?
                .ok_or(AdapterError::NotFound)?;
            let live: Option<bool> = webhooks::table
                .find(sql_id(&row.2))
                .select(webhooks::enabled.and(webhooks::deleted_at.is_null()))
                .first(c)
                .optional()?;
            if live != Some(true) {
                return Err(AdapterError::Conflict(TARGET_NOT_LIVE.to_owned()));
            }
            let requeued = row_to_delivery(&row)?
                .requeue(now)
                .map_err(|e| AdapterError::Conflict(e.to_string()))?;
            write_state(c, &requeued)?;
            Ok(requeued)
        })
        .await
        .map_err(port)
    }

    async fn publish_batch(
        &self,
        items: &[PublishItem],
        now: OffsetDateTime,
    ) -> Result<Vec<Published>, OutboxError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let items = items.to_vec();
        let mut scope = self.publish_scope();
        self.transaction(move |c| {
            let published = items
                .iter()
                .map(|item| {
                    let idempotency = item.idempotency.as_ref();
                    publish_in(c, &mut scope, &item.event, idempotency, now)
                })
                .collect::<Result<Vec<_>, _>>()?;
            insert_deliveries(c, &mut scope)?;
            Ok(published)
        })
        .await
        .map_err(port)
    }

    async fn get_delivery(
        &self,
        wallet: WalletId,
        delivery: DeliveryId,
    ) -> Result<Delivery, OutboxError> {
        self.read(move |c| statements::delivery(c, wallet, delivery))
            .await
            .map_err(port)
    }
}

#[async_trait]
impl RedeliveryJobs for SqliteStore {
    async fn create_redelivery_job(
        &self,
        job: &RedeliveryJob,
    ) -> Result<RedeliveryJob, OutboxError> {
        let job = job.clone();
        self.transaction(move |c| {
            let owned: i64 = webhooks::table
                .filter(webhooks::id.eq(sql_id(job.webhook_id)))
                .filter(webhooks::wallet_id.eq(sql_id(job.wallet_id)))
                .count()
                .get_result(c)?;
            if owned == 0 {
                return Err(AdapterError::NotFound);
            }
            let total: i64 = redelivery_candidates!(&JobWindow::of(&job))
                .count()
                .get_result(c)?;
            let stored = RedeliveryJob {
                total: u64::try_from(total).map_err(AdapterError::corrupt)?,
                ..job
            };
            diesel::insert_into(redelivery_jobs::table)
                .values(NewRedeliveryJob::of(&stored))
                .execute(c)
                .map_err(conflict_if_taken(format!("redelivery job {}", stored.id)))?;
            Ok(stored)
        })
        .await
        .map_err(port)
    }

    async fn get_redelivery_job(
        &self,
        wallet: WalletId,
        id: RedeliveryJobId,
    ) -> Result<RedeliveryJob, OutboxError> {
        self.read(move |c| statements::redelivery_job(c, wallet, id))
            .await
            .map_err(port)
    }

    async fn running_redelivery_jobs(&self) -> Result<Vec<RedeliveryJob>, OutboxError> {
        self.read(statements::running_redelivery_jobs)
            .await
            .map_err(port)
    }

    async fn step_redelivery_job(
        &self,
        id: RedeliveryJobId,
        limit: u32,
        now: OffsetDateTime,
    ) -> Result<RedeliveryJob, OutboxError> {
        // One immediate transaction: steppers of a job (and every other writer) take turns.
        self.transaction(move |c| {
            let job = redelivery_jobs::table
                .find(sql_id(id))
                .select(RedeliveryJobRow::as_select())
                .first(c)
                .optional()?
                .ok_or(AdapterError::NotFound)?
                .into_job()?;
            // A step of nothing must not complete the job.
            if job.state.is_finished() || limit == 0 {
                return Ok(job);
            }
            // A job of a webhook that was deleted or disabled requeues nothing more; the
            // immediate transaction orders this check with every delete and disable.
            let webhook: Option<(bool, Option<i64>)> = webhooks::table
                .find(sql_id(job.webhook_id))
                .select((webhooks::enabled, webhooks::deleted_at))
                .first(c)
                .optional()?;
            if let Some(reason) = job_stop_reason(webhook) {
                let stopped = job.stop(reason, now);
                diesel::update(redelivery_jobs::table.find(sql_id(id)))
                    .set(JobProgressChange::of(&stopped))
                    .execute(c)?;
                return Ok(stopped);
            }
            let rows: Vec<DeliveryRow> = redelivery_batch!(&JobWindow::of(&job), limit).load(c)?;
            let requeued = requeue_all(&rows, now)?;
            for delivery in &requeued {
                write_state(c, delivery)?;
            }
            let stepped = job.after_step(requeued.len() as u64, now);
            diesel::update(redelivery_jobs::table.find(sql_id(id)))
                .set(JobProgressChange::of(&stepped))
                .execute(c)?;
            Ok(stepped)
        })
        .await
        .map_err(port)
    }
}

#[async_trait]
impl DeliveryQueue for SqliteStore {
    async fn claim_due(
        &self,
        owner: &LeaseOwner,
        request: &ClaimRequest,
    ) -> Result<Vec<ClaimedDelivery>, OutboxError> {
        let owner = owner.0.clone();
        let request = request.clone();
        let now = request.now;
        let leased_until = webhook_domain::add_saturating(now, request.lease);
        self.transaction(move |c| {
            let rows = claims::candidates(c, &request)?;
            let mut leased = Vec::with_capacity(rows.len());
            for (row, wallet) in &rows {
                let delivery = row_to_delivery(row)?
                    .claim(now, leased_until)
                    .map_err(AdapterError::corrupt)?;
                diesel::update(deliveries::table.find(sql_id(&row.0)))
                    .set(DeliveryStateChange::of(&delivery, Some(owner.clone())))
                    .execute(c)?;
                leased.push((delivery, crate::rows::parse_id::<WalletId>(wallet)?));
            }
            // One read each for the events and the targets of the whole batch. Event ids are
            // unique per wallet: an event is found by its delivery's wallet too.
            let event_ids: Vec<&str> = rows.iter().map(|(r, _)| r.1.as_str()).collect();
            let mut wallets: Vec<&str> = rows.iter().map(|(_, w)| w.as_str()).collect();
            wallets.sort_unstable();
            wallets.dedup();
            let events: HashMap<(WalletId, EventId), Event> =
                events_of_batch!(&wallets, &event_ids)
                    .select(event_select!())
                    .load::<EventRow>(c)?
                    .into_iter()
                    .map(|row| row_to_event(row).map(|e| ((e.wallet_id(), e.id()), e)))
                    .collect::<Result<_, _>>()?;
            let webhook_ids: Vec<&str> = rows.iter().map(|(r, _)| r.2.as_str()).collect();
            let targets: HashMap<WebhookId, Webhook> = webhooks::table
                .filter(webhooks::id.eq_any(sql_ids(&webhook_ids)))
                .select(webhook_select!())
                .load::<WebhookRow>(c)?
                .into_iter()
                .map(|row| row_to_webhook(row).map(|w| (w.id, w)))
                .collect::<Result<_, _>>()?;
            leased
                .into_iter()
                .map(|(delivery, wallet)| {
                    let missing = |what| {
                        AdapterError::corrupt(format_args!(
                            "delivery {}: {what} missing",
                            delivery.id()
                        ))
                    };
                    Ok(ClaimedDelivery {
                        event: events
                            .get(&(wallet, delivery.event_id()))
                            .cloned()
                            .ok_or_else(|| missing("event"))?,
                        webhook: targets
                            .get(&delivery.webhook_id())
                            .cloned()
                            .ok_or_else(|| missing("webhook"))?,
                        delivery,
                    })
                })
                .collect()
        })
        .await
        .map_err(port)
    }

    async fn record_attempts(
        &self,
        owner: &LeaseOwner,
        records: &[AttemptRecord],
    ) -> Result<Vec<DeliveryId>, OutboxError> {
        let owner = owner.0.clone();
        let records = records.to_vec();
        self.transaction(move |c| {
            let mut lost = Vec::new();
            for record in &records {
                if !write_leased_state(c, &owner, &record.delivery)? {
                    lost.push(record.delivery.id());
                    continue;
                }
                diesel::insert_into(attempts::table)
                    .values(NewAttempt::of(record))
                    .execute(c)?;
            }
            Ok(lost)
        })
        .await
        .map_err(port)
    }

    async fn release(&self, owner: &LeaseOwner, released: &[Delivery]) -> Result<(), OutboxError> {
        let owner = owner.0.clone();
        let released = released.to_vec();
        self.transaction(move |c| {
            for delivery in &released {
                write_leased_state(c, &owner, delivery)?;
            }
            Ok(())
        })
        .await
        .map_err(port)
    }

    async fn next_due_at(
        &self,
        now: OffsetDateTime,
        skip: &[WebhookId],
    ) -> Result<Option<OffsetDateTime>, OutboxError> {
        let skip: Vec<String> = skip.iter().map(ToString::to_string).collect();
        self.read(move |c| {
            claims::next_due(c, micros(now), &skip)?
                .map(from_micros)
                .transpose()
        })
        .await
        .map_err(port)
    }

    async fn settle_target(
        &self,
        webhook: WebhookId,
        now: OffsetDateTime,
    ) -> Result<Option<OffsetDateTime>, OutboxError> {
        let id = webhook.to_string();
        self.transaction(move |c| {
            let state: Option<(bool, Option<i64>)> = webhooks::table
                .find(sql_id(&id))
                .select((webhooks::enabled, webhooks::deleted_at))
                .first(c)
                .optional()?;
            let reason = match state {
                Some((_, Some(_))) => CancelReason::TargetDeleted,
                Some((false, None)) => CancelReason::TargetDisabled,
                // Live and enabled, or unknown: nothing to settle.
                _ => return Ok(None),
            };
            cancel_unleased!(&id, reason, now).execute(c)?;
            let until: Option<i64> = leased_until!(&id, micros(now)).first(c)?;
            until.map(from_micros).transpose()
        })
        .await
        .map_err(port)
    }

    async fn backlog(&self, now: OffsetDateTime) -> Result<Backlog, OutboxError> {
        self.read(move |c| statements::backlog(c, now))
            .await
            .map_err(port)
    }
}

#[async_trait]
impl Retention for SqliteStore {
    async fn prune(&self, before: OffsetDateTime, limit: u32) -> Result<Pruned, OutboxError> {
        // One immediate transaction: a requeue cannot interleave, and claims (of unfinished
        // rows, which this never touches) wait at most for this one short batch.
        self.transaction(move |c| {
            let old: Vec<(String, String)> = prune_candidates!(micros(before), limit).load(c)?;
            if old.is_empty() {
                return Ok(Pruned::default());
            }
            // Events are keyed by (wallet, id): one round of statements per wallet of the
            // batch, each cheap in process.
            let mut by_wallet: HashMap<String, Vec<String>> = HashMap::new();
            for (wallet, id) in old {
                by_wallet.entry(wallet).or_default().push(id);
            }
            let (mut events_removed, mut deliveries_removed, mut attempts_removed) = (0, 0, 0);
            for (wallet, ids) in &by_wallet {
                let of_batch = || {
                    deliveries::table
                        .filter(deliveries::wallet_id.eq(sql_id(wallet)))
                        .filter(deliveries::event_id.eq_any(sql_ids(ids)))
                };
                attempts_removed += diesel::delete(
                    attempts::table
                        .filter(attempts::delivery_id.eq_any(of_batch().select(deliveries::id))),
                )
                .execute(c)?;
                deliveries_removed += diesel::delete(of_batch()).execute(c)?;
                events_removed += diesel::delete(
                    events::table
                        .filter(events::wallet_id.eq(sql_id(wallet)))
                        .filter(events::id.eq_any(sql_ids(ids))),
                )
                .execute(c)?;
            }
            Ok(Pruned {
                events: events_removed as u64,
                deliveries: deliveries_removed as u64,
                attempts: attempts_removed as u64,
            })
        })
        .await
        .map_err(port)
    }
}

/// The plan SQLite chooses for `query`, one line per step.
#[cfg(feature = "testing")]
fn plan<Q>(c: &mut SqliteConnection, query: Q) -> Result<String, AdapterError>
where
    Q: diesel::query_builder::QueryFragment<diesel::sqlite::Sqlite>,
{
    use diesel::sql_types::{Integer, Text};

    use crate::queries::Explain;
    type PlanRow = (Integer, Integer, Integer, Text);
    let rows: Vec<(i32, i32, i32, String)> =
        Explain::<_, PlanRow>::new("EXPLAIN QUERY PLAN ", query).load(c)?;
    Ok(rows.into_iter().map(|r| r.3).collect::<Vec<_>>().join("\n"))
}

#[cfg(feature = "testing")]
impl SqliteStore {
    /// The plans SQLite chooses for the console's reads: the delivery search (each filter, a
    /// page after `cursor`), a webhook's stats over 24 hours and the attempts of the last
    /// minute, as (name, plan) pairs.
    ///
    /// # Errors
    /// When a query cannot be explained.
    pub async fn explain_console_queries(
        &self,
        wallet: WalletId,
        webhook: WebhookId,
        event_type: &str,
        cursor: webhook_ports::SearchPosition,
    ) -> Result<Vec<(String, String)>, OutboxError> {
        let searches = crate::queries::console_searches(webhook, event_type, cursor);
        self.read(move |c| {
            let mut plans = Vec::new();
            for (name, search, range) in &searches {
                let explained = match &search.event_type {
                    Some(kind) => plan(
                        c,
                        deliveries_search_by_type!(wallet, search, kind, *range, search.limit),
                    )?,
                    None => plan(c, deliveries_search!(wallet, search, *range, search.limit))?,
                };
                plans.push((name.clone(), explained));
            }
            // A page a thousandth of the loaded events, as a page of 50 of 50,000.
            let page: Vec<String> = (0..5).map(|_| uuid::Uuid::new_v4().to_string()).collect();
            plans.push((
                "event types of a page".to_owned(),
                plan(c, event_types_of_page!(wallet, &page))?,
            ));
            let until = cursor.created_at;
            let window = crate::queries::console_stats_window(until);
            let id = webhook.to_string();
            plans.push((
                "webhook stats".to_owned(),
                plan(
                    c,
                    crate::queries::bind_stats!(diesel::sql_query(stats_sql()), &id, &window),
                )?,
            ));
            plans.push((
                "attempts of the last minute".to_owned(),
                plan(
                    c,
                    attempts::table
                        .filter(attempts::started_at.ge(micros(until)))
                        .count(),
                )?,
            ));
            Ok(plans)
        })
        .await
        .map_err(port)
    }

    /// The plans SQLite chooses for the hot queries (the claim read, the delivery listings, the
    /// attempts of a listed page, a redelivery step, the next due time, the backlog, a pruning
    /// batch), as (name, plan)
    /// pairs, for tests that check they search indexes rather than scan tables.
    ///
    /// # Errors
    /// When a query cannot be explained.
    pub async fn explain_hot_queries(
        &self,
        wallet: WalletId,
        event: EventId,
        webhook: WebhookId,
        prune_before: OffsetDateTime,
    ) -> Result<Vec<(String, String)>, OutboxError> {
        self.transaction(move |c| {
            let now = micros(OffsetDateTime::now_utc());
            let mut plans = claims::explain(c, &webhook.to_string(), now)?;
            plans.extend([
                ("backlog".to_owned(), plan(c, backlog!(now))?),
                (
                    "prune candidates".to_owned(),
                    plan(c, prune_candidates!(micros(prune_before), 1000_u32))?,
                ),
            ]);
            let filters = crate::queries::listing_filters(event, webhook);
            for (name, filter) in filters {
                plans.push((
                    name.to_owned(),
                    plan(c, deliveries_listing!(wallet, &filter, Page::first(100)))?,
                ));
            }
            let window = JobWindow {
                wallet_id: wallet.to_string(),
                webhook_id: webhook.to_string(),
                since: 0,
                until: now,
                created_at: now,
            };
            plans.push((
                "redelivery step".to_owned(),
                plan(c, redelivery_batch!(&window, 50_u32))?,
            ));
            let page: Vec<String> = (0..50).map(|_| uuid::Uuid::new_v4().to_string()).collect();
            plans.push((
                "events of a claimed batch".to_owned(),
                plan(
                    c,
                    events_of_batch!(&[wallet.to_string()], &page).select(event_select!()),
                )?,
            ));
            plans.push((
                "attempts of a page".to_owned(),
                plan(c, recent_attempts_statement(wallet, &page, 100))?,
            ));
            Ok(plans)
        })
        .await
        .map_err(port)
    }
}
