//! The PostgreSQL adapter: every port over one database, for several instances at once.
//!
//! Connections are diesel-async `AsyncPgConnection`s (tokio-postgres, no libpq) in a bb8 pool.
//! Claims are one statement with `FOR UPDATE SKIP LOCKED`, so concurrent claimers in any
//! process never get the same row and never wait for each other; no lock or connection is
//! held while a delivery is in flight. Outcomes of a whole batch, their states and attempts, are
//! one statement. A publish that creates deliveries sends a `NOTIFY` on commit, which the watch of
//! [`StorageLifecycle::watch_changes`] turns into an in-process wake-up in every instance.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use diesel::pg::Pg;
use diesel::query_builder::{BoxedSqlQuery, SqlQuery};
use diesel::sql_types::{Array, BigInt, Bool, Integer, Nullable, Text};
use diesel::{
    BoolExpressionMethods, ExpressionMethods, OptionalExtension, QueryDsl, QueryableByName,
    SelectableHelper,
};
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::pooled_connection::bb8::{Pool, PooledConnection};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use futures_util::StreamExt;
use futures_util::future::try_join_all;
use time::OffsetDateTime;
use webhook_domain::{
    ApiKeyHash, ApiKeyTag, CancelReason, Delivery, DeliveryId, DeliveryState, DeliveryStateKind,
    Entity, EntityId, Event, EventId, RedeliveryJob, RedeliveryJobId, Wallet, WalletId, Webhook,
    WebhookId, WebhookScope,
};
use webhook_ports::{
    AttemptLog, AttemptRecord, Backlog, ChangeListener, ClaimRequest, ClaimedDelivery,
    DeliveryFilter, DeliveryQueue, DeliverySearch, EventOutbox, FoundDelivery, Idempotency,
    LeaseOwner, OutboxError, Overview, Page, Pruned, PublishItem, Published, RecentAttempts,
    RedeliveryJobs, Retention, StatsWindow, StorageError, StorageLifecycle, StoredApiKey,
    WalletRepository, WalletStoreError, Watch, WebhookRepository, WebhookStats, WebhookStoreError,
};

use crate::PoolState;
use crate::port_errors::Classified;
use crate::publishing::{PublishScope, first_publish};
use crate::queries::{
    cancel_unleased, leased_until, prune_candidates, publish_targets, redelivery_batch,
    redelivery_candidates,
};
use crate::sql_id::{Id, sql_id, sql_ids};
// The shared statements run these; the plans of the hot queries show them (tests only).
#[cfg(feature = "testing")]
use crate::queries::{backlog, deliveries_listing};
use crate::reachability::Reachability;
use crate::rows::{
    AdapterError, DeliveryColumns, DeliveryRow, DeliveryStateChange, EntityRow, EventSummary,
    JobProgressChange, JobWindow, NewAdminToken, NewAttempt, NewEvent, NewRedeliveryJob,
    RecentAttemptRow, RedeliveryJobRow, TARGET_NOT_LIVE, WebhookColumns, WebhookRow,
    WebhookSettingsChange, conflict_if_taken, delivery_select, event_summary, from_micros,
    group_recent_attempts, is_foreign_key_violation, is_unique_violation, job_stop_reason, micros,
    requeue_all, revision_column, row_to_delivery, row_to_event, row_to_webhook, state_columns,
    to_delivery, to_webhook, webhook_columns, webhook_select,
};
use crate::schema::{
    admin_token, api_keys, attempts, deliveries, entities, events, redelivery_jobs, wallets,
    webhooks,
};

mod errors;

/// The statements both backends run alike ([`crate::statements`]), for PostgreSQL's connection.
mod statements {
    crate::statements::shared_statements!(diesel_async::AsyncPgConnection, diesel_async; [async]; [.await]);
}

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// An error of this store with its driver error classified as PostgreSQL's: what becomes a
/// port's error (by `?`, or by [`port`]).
fn classified(e: impl Into<AdapterError>) -> Classified {
    Classified::new(e.into(), errors::driver_fault)
}

/// A port's error for an error of this store.
fn port<E: From<Classified>>(e: impl Into<AdapterError>) -> E {
    classified(e).into()
}

/// The channel a publish notifies when it created deliveries.
const WAKE_CHANNEL: &str = "webhookd_due";

/// The channel a deleted or disabled webhook is notified on, its id as the payload.
const TARGETS_CHANNEL: &str = "webhookd_targets";

/// Any fixed number, so that instances starting together migrate one at a time.
const MIGRATION_LOCK: i64 = 0x7765_6268_6f6f_6b64; // "webhookd"

/// The most rows written by one multi-row insert (PostgreSQL allows 65,535 bind parameters,
/// and a delivery takes 13).
const INSERT_CHUNK: usize = 4_000;

/// The longest wait for a pooled connection.
const POOL_TIMEOUT: Duration = Duration::from_secs(10);
/// Once the server has refused a connection attempt, how much longer a caller waits for a
/// connection (an idle one, or a new attempt's) before it is told the database is
/// unavailable: long enough for a connection to a server that is back, short enough that a
/// publish answers 503 at once while it is away.
const AFTER_REFUSAL: Duration = Duration::from_millis(500);

/// Every port over one PostgreSQL database.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool<AsyncPgConnection>,
    pool_size: u32,
    reachability: Reachability,
    url: Arc<str>,
    #[cfg(feature = "testing")]
    faults: Arc<crate::testing::Faults>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: never shown.
        f.debug_struct("PgStore")
            .field("pool", &self.pool.state())
            .finish_non_exhaustive()
    }
}

/// Why the PostgreSQL store could not be opened or migrated. The messages never include the
/// database URL, which may hold a password.
#[derive(Debug, thiserror::Error)]
pub enum PgOpenError {
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(String),
    #[error("cannot migrate the PostgreSQL database: {0}")]
    Migrate(String),
}

impl PgStore {
    /// Pools up to `pool_size` connections to the database at `url` (`postgres://...`) and
    /// checks that one can be made. Does not migrate: see [`Self::migrate`].
    ///
    /// # Errors
    /// [`PgOpenError::Connect`] when the server cannot be reached or refuses the login.
    pub async fn connect(url: &str, pool_size: u32) -> Result<Self, PgOpenError> {
        let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new(url);
        let pool_size = pool_size.max(1);
        let reachability = Reachability::new();
        let pool = Pool::builder()
            .max_size(pool_size)
            .connection_timeout(POOL_TIMEOUT)
            // A refused attempt is not retried in the background: the next check-out tries
            // again at once, so that a server that is back is used at once.
            .retry_connection(false)
            // No `SELECT 1` before each use: it was a round trip carrying no work on every
            // statement. A connection the server dropped (a restart, an idle timeout) fails
            // its next statement instead, which the caller sees as unavailable storage and
            // tries again, and diesel-async marks it broken so the pool replaces it.
            .test_on_check_out(false)
            .error_sink(Box::new(reachability.clone()))
            .connection_customizer(Box::new(reachability.clone()))
            .build(manager)
            .await
            .map_err(|e| PgOpenError::Connect(e.to_string()))?;
        let store = Self {
            pool,
            pool_size,
            reachability,
            url: Arc::from(url),
            #[cfg(feature = "testing")]
            faults: Arc::default(),
        };
        // bb8 builds lazily: prove now that the server answers.
        store
            .conn()
            .await
            .map_err(|e| PgOpenError::Connect(e.to_string()))?;
        Ok(store)
    }

    /// Applies the pending embedded migrations, one instance at a time (an advisory lock), and
    /// returns the versions applied.
    ///
    /// # Errors
    /// [`PgOpenError::Migrate`] naming the failure; a failed migration is rolled back.
    pub async fn migrate(&self) -> Result<Vec<String>, PgOpenError> {
        self.with_migration_harness(|c| {
            c.run_pending_migrations(MIGRATIONS)
                .map(|done| done.iter().map(ToString::to_string).collect())
        })
        .await
    }

    /// The versions of the embedded migrations not yet applied.
    ///
    /// # Errors
    /// [`PgOpenError::Migrate`] when the migration table cannot be read.
    pub async fn pending_migrations(&self) -> Result<Vec<String>, PgOpenError> {
        self.with_migration_harness(|c| {
            c.pending_migrations(MIGRATIONS)
                .map(|pending| pending.iter().map(|m| m.name().to_string()).collect())
        })
        .await
    }

    /// diesel's migration harness is synchronous: run it on a blocking thread over a dedicated
    /// connection, holding the migration lock.
    async fn with_migration_harness<F>(&self, work: F) -> Result<Vec<String>, PgOpenError>
    where
        F: FnOnce(
                &mut AsyncConnectionWrapper<AsyncPgConnection>,
            ) -> diesel::migration::Result<Vec<String>>
            + Send
            + 'static,
    {
        let url = self.url.clone();
        tokio::task::spawn_blocking(move || {
            use diesel::connection::SimpleConnection;
            let fail = |e: &dyn std::fmt::Display| PgOpenError::Migrate(e.to_string());
            let mut c: AsyncConnectionWrapper<AsyncPgConnection> =
                diesel::Connection::establish(&url).map_err(|e| fail(&e))?;
            SimpleConnection::batch_execute(
                &mut c,
                &format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"),
            )
            .map_err(|e| fail(&e))?;
            let result = work(&mut c).map_err(|e| fail(&e));
            let _ = SimpleConnection::batch_execute(
                &mut c,
                &format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"),
            );
            result
        })
        .await
        .map_err(|e| PgOpenError::Migrate(e.to_string()))?
    }

    /// Listens for publishes from every instance on the database and tells `listener` of each,
    /// so idle dispatchers start at once instead of at their next poll; and of webhooks deleted
    /// or disabled by any instance, so that the dispatcher drops what it holds of them.
    /// Reconnects by itself (telling of a publish once after each reconnect, in case one was
    /// missed meanwhile); runs until the task is aborted.
    fn forward_wakeups(&self, listener: Arc<dyn ChangeListener>) -> tokio::task::JoinHandle<()> {
        let url = self.url.clone();
        tokio::spawn(async move {
            loop {
                match AsyncPgConnection::establish(&url).await {
                    Ok(mut conn) => {
                        let listen = format!("LISTEN {WAKE_CHANNEL}; LISTEN {TARGETS_CHANNEL}");
                        match conn.batch_execute(&listen).await {
                            Ok(()) => {
                                listener.published();
                                let mut stream = std::pin::pin!(conn.notifications_stream());
                                while let Some(note) = stream.next().await {
                                    match note {
                                        Ok(note) if note.channel == TARGETS_CHANNEL => {
                                            if let Ok(id) = note.payload.parse() {
                                                listener.target_changed(id);
                                            }
                                        }
                                        Ok(_) => listener.published(),
                                        Err(e) => {
                                            tracing::warn!(error = %e, "lost the publish listener");
                                            break;
                                        }
                                    }
                                }
                            }
                            Err(e) => tracing::warn!(error = %e, "cannot listen for publishes"),
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot connect the publish listener"),
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    }

    /// The connection pool's numbers now (no I/O), for monitoring. The migration harness and
    /// the publish listener use connections of their own, outside the pool.
    pub fn pool_state(&self) -> PoolState {
        let state = self.pool.state();
        PoolState {
            connections: state.connections,
            idle: state.idle_connections,
            max: self.pool_size,
        }
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

    /// A pooled connection, within the pool's timeout, or soon after the server refused a
    /// connection attempt ([`AFTER_REFUSAL`]): waiting longer for a server that is down would
    /// only make every caller hang.
    async fn conn(&self) -> Result<PooledConnection<'_, AsyncPgConnection>, AdapterError> {
        let refused = async {
            let reason = self.reachability.until_refused().await;
            tokio::time::sleep(AFTER_REFUSAL).await;
            reason
        };
        tokio::select! {
            biased;
            got = self.pool.get() => {
                // Checked out untested: only a connection made (the pool's customizer) tells
                // that the server answers.
                got.map_err(|e| AdapterError::Unavailable(e.to_string()))
            }
            reason = refused => Err(AdapterError::Unavailable(format!(
                "the server refused the last connection attempt: {reason}"
            ))),
        }
    }
}

type Conn = AsyncPgConnection;

impl From<PgOpenError> for StorageError {
    fn from(e: PgOpenError) -> Self {
        Self(Box::new(e))
    }
}

/// Aborts its task when dropped: the watch [`StorageLifecycle::watch_changes`] answers.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// PostgreSQL in the registry: `postgres://` or `postgresql://` URLs, as libpq takes them.
pub(crate) const BACKEND: crate::StorageBackend = crate::StorageBackend {
    name: "PostgreSQL",
    schemes: &["postgres", "postgresql"],
    example: "postgres://user:password@host:port/database",
    check: |_| Ok(()),
    describe: |url| {
        let rest = url.split_once("://").map_or(url, |(_, r)| r);
        let host_and_db = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
        let host_and_db = host_and_db.split('?').next().unwrap_or_default();
        format!("PostgreSQL at {host_and_db}")
    },
    open: |url, pool_size| {
        Box::pin(async move {
            let store = PgStore::connect(&url, pool_size)
                .await
                .map_err(StorageError::from)?;
            Ok(Arc::new(store) as Arc<dyn webhook_ports::Storage>)
        })
    },
    #[cfg(feature = "testing")]
    testing: crate::testing::TestSupport {
        // A schema of its own, dropped with the guard.
        fresh: |_dir| {
            Box::pin(async move {
                let schema = crate::testing::PgTestSchema::create().await?;
                Some(crate::testing::FreshDatabase {
                    url: schema.url(),
                    guard: Box::new(schema),
                })
            })
        },
        snapshot: |url| Box::pin(async move { crate::snapshot::postgres(&url).await }),
    },
};

#[async_trait]
impl StorageLifecycle for PgStore {
    async fn migrate(&self) -> Result<Vec<String>, StorageError> {
        PgStore::migrate(self).await.map_err(StorageError::from)
    }

    async fn pending_migrations(&self) -> Result<Vec<String>, StorageError> {
        PgStore::pending_migrations(self)
            .await
            .map_err(StorageError::from)
    }

    fn pool_state(&self) -> PoolState {
        PgStore::pool_state(self)
    }

    fn watch_changes(&self, listener: Arc<dyn ChangeListener>) -> Option<Watch> {
        Some(Box::new(AbortOnDrop(self.forward_wakeups(listener))))
    }
}

#[async_trait]
impl WalletRepository for PgStore {
    async fn create_wallet(&self, wallet: &Wallet) -> Result<(), WalletStoreError> {
        let mut c = self.conn().await.map_err(classified)?;
        diesel::insert_into(wallets::table)
            .values((
                wallets::id.eq(sql_id(wallet.id)),
                wallets::name.eq(wallet.name.as_str()),
                wallets::created_at.eq(micros(wallet.created_at)),
                wallets::updated_at.eq(micros(wallet.updated_at)),
            ))
            .execute(&mut c)
            .await
            .map_err(conflict_if_taken(format!("wallet {}", wallet.id)))
            .map_err(classified)?;
        Ok(())
    }

    async fn get_wallet(&self, id: WalletId) -> Result<Wallet, WalletStoreError> {
        let mut c = self.conn().await.map_err(classified)?;
        statements::wallet(&mut c, id).await.map_err(port)
    }

    async fn list_wallets(&self, page: Page) -> Result<Vec<Wallet>, WalletStoreError> {
        let mut c = self.conn().await.map_err(classified)?;
        statements::wallets_page(&mut c, page).await.map_err(port)
    }

    async fn add_api_key(&self, key: &StoredApiKey) -> Result<(), WalletStoreError> {
        let mut c = self.conn().await.map_err(classified)?;
        let wallet = key.wallet_id.to_string();
        // The foreign key refuses an unknown wallet; no separate read needed.
        let inserted = diesel::insert_into(api_keys::table)
            .values((
                api_keys::wallet_id.eq(sql_id(&wallet)),
                api_keys::tag.eq(key.hash.tag.0.as_slice()),
                api_keys::salt.eq(key.hash.salt.as_slice()),
                api_keys::digest.eq(key.hash.digest.as_slice()),
                api_keys::created_at.eq(micros(key.created_at)),
            ))
            .execute(&mut c)
            .await;
        match inserted {
            Ok(_) => Ok(()),
            Err(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::ForeignKeyViolation,
                _,
            )) => Err(WalletStoreError::NotFound),
            Err(e) => Err(port(e)),
        }
    }

    async fn find_api_keys(&self, tag: ApiKeyTag) -> Result<Vec<StoredApiKey>, WalletStoreError> {
        let mut c = self.conn().await.map_err(classified)?;
        statements::api_keys_tagged(&mut c, tag).await.map_err(port)
    }

    async fn create_entity(&self, entity: &Entity) -> Result<(), WalletStoreError> {
        let mut c = self.conn().await.map_err(classified)?;
        // The foreign key refuses an unknown wallet and the primary key a taken id, both
        // before anything is stored; no separate read needed.
        let inserted = diesel::insert_into(entities::table)
            .values(EntityRow::of(entity))
            .execute(&mut c)
            .await;
        match inserted {
            Ok(_) => Ok(()),
            Err(e) if is_foreign_key_violation(&e) => Err(WalletStoreError::NotFound),
            Err(e) if is_unique_violation(&e) => Err(port(AdapterError::Conflict(format!(
                "entity {}",
                entity.id
            )))),
            Err(e) => Err(port(e)),
        }
    }

    async fn get_entity(&self, id: EntityId) -> Result<Entity, WalletStoreError> {
        let mut c = self.conn().await.map_err(classified)?;
        statements::entity(&mut c, id).await.map_err(port)
    }

    async fn admin_token(&self) -> Result<Option<ApiKeyHash>, WalletStoreError> {
        let mut c = self.conn().await.map_err(classified)?;
        statements::admin_token(&mut c).await.map_err(port)
    }

    async fn init_admin_token(
        &self,
        hash: &ApiKeyHash,
        now: OffsetDateTime,
    ) -> Result<bool, WalletStoreError> {
        let mut c = self.conn().await.map_err(classified)?;
        // Of racing inserts of the one row, the first to commit stores it; the others wait
        // for it and then insert nothing.
        let inserted = diesel::insert_into(admin_token::table)
            .values(NewAdminToken::of(hash, now))
            .on_conflict_do_nothing()
            .execute(&mut c)
            .await
            .map_err(classified)?;
        Ok(inserted == 1)
    }
}

async fn insert_webhook(c: &mut Conn, webhook: &Webhook) -> Result<(), AdapterError> {
    let w = webhook_columns(webhook);
    diesel::insert_into(webhooks::table)
        .values((
            webhooks::id.eq(sql_id(&w.id)),
            webhooks::wallet_id.eq(w.wallet_id.as_ref().map(sql_id)),
            webhooks::url.eq(&w.url),
            webhooks::custom_headers.eq(&w.custom_headers),
            webhooks::event_types.eq(&w.event_types),
            webhooks::signing_keys.eq(&w.signing_keys),
            webhooks::retry_policy.eq(&w.retry_policy),
            webhooks::enabled.eq(w.enabled),
            webhooks::ordered.eq(w.ordered),
            webhooks::rate_limit.eq(w.rate_limit),
            webhooks::created_at.eq(w.created_at),
            webhooks::revision.eq(w.revision),
        ))
        .execute(c)
        .await
        .map_err(conflict_if_taken(format!("webhook {}", w.id)))?;
    Ok(())
}

/// Cancels the unfinished deliveries of one webhook that no live lease holds, and tells every
/// instance's dispatcher (on commit) to drop what it holds of the webhook: a delivery in flight
/// ends with its attempt, and what its holder leaves unfinished is cancelled by
/// [`DeliveryQueue::settle_target`] or by the next claim that meets the webhook.
async fn cancel_deliveries_of(
    c: &mut Conn,
    webhook: &str,
    reason: CancelReason,
    now: OffsetDateTime,
) -> Result<(), AdapterError> {
    cancel_unleased!(webhook, reason, now).execute(c).await?;
    diesel::sql_query("SELECT pg_notify($1, $2)")
        .bind::<Text, _>(TARGETS_CHANNEL)
        .bind::<Text, _>(webhook)
        .execute(c)
        .await?;
    Ok(())
}

/// Locks a webhook's row against publishes (which read their targets `FOR KEY SHARE`) until
/// the end of the transaction: a publish that read the webhook before commits first, and is
/// seen by what follows; one that comes after sees the change.
async fn lock_webhook(c: &mut Conn, webhook: &str) -> Result<(), AdapterError> {
    let _: Option<String> = webhooks::table
        .find(sql_id(webhook))
        .select(webhooks::id)
        .for_update()
        .first(c)
        .await
        .optional()?;
    Ok(())
}

#[async_trait]
impl WebhookRepository for PgStore {
    async fn create_webhook(
        &self,
        webhook: &Webhook,
        limit: Option<u32>,
    ) -> Result<(), WebhookStoreError> {
        let mut c = self.conn().await.map_err(classified)?;
        c.transaction::<_, AdapterError, _>(async |c| {
            if let (Some(limit), Some(wallet)) = (limit, webhook_columns(webhook).wallet_id) {
                // Lock the wallet row: concurrent creates in one wallet count one at a time.
                let _: Option<String> = wallets::table
                    .find(sql_id(&wallet))
                    .select(wallets::id)
                    .for_update()
                    .first(c)
                    .await
                    .optional()?;
                let count: i64 = webhooks::table
                    .filter(webhooks::wallet_id.eq(sql_id(&wallet)))
                    .filter(webhooks::deleted_at.is_null())
                    .count()
                    .get_result(c)
                    .await?;
                if count >= i64::from(limit) {
                    return Err(AdapterError::LimitReached(limit));
                }
            }
            insert_webhook(c, webhook).await
        })
        .await
        .map_err(port)
    }

    async fn get_webhook(
        &self,
        wallet: WalletId,
        id: WebhookId,
    ) -> Result<Webhook, WebhookStoreError> {
        let mut c = self.conn().await.map_err(classified)?;
        statements::webhook(&mut c, wallet, id).await.map_err(port)
    }

    async fn list_webhooks(
        &self,
        wallet: WalletId,
        page: Page,
    ) -> Result<Vec<Webhook>, WebhookStoreError> {
        let mut c = self.conn().await.map_err(classified)?;
        statements::webhooks_page(&mut c, wallet, page)
            .await
            .map_err(port)
    }

    async fn delete_webhook(
        &self,
        wallet: WalletId,
        id: WebhookId,
        now: OffsetDateTime,
    ) -> Result<(), WebhookStoreError> {
        let mut c = self.conn().await.map_err(classified)?;
        c.transaction::<_, AdapterError, _>(async |c| {
            let id = id.to_string();
            lock_webhook(c, &id).await?;
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
            .execute(c)
            .await?;
            if deleted == 0 {
                return Err(AdapterError::NotFound);
            }
            cancel_deliveries_of(c, &id, CancelReason::TargetDeleted, now).await
        })
        .await
        .map_err(port)
    }

    async fn disable_webhook(
        &self,
        id: WebhookId,
        now: OffsetDateTime,
    ) -> Result<(), WebhookStoreError> {
        let mut c = self.conn().await.map_err(classified)?;
        c.transaction::<_, AdapterError, _>(async |c| {
            let id = id.to_string();
            lock_webhook(c, &id).await?;
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
            .execute(c)
            .await?;
            if disabled == 0 {
                let known: i64 = webhooks::table
                    .find(sql_id(&id))
                    .count()
                    .get_result(c)
                    .await?;
                return if known == 0 {
                    Err(AdapterError::NotFound)
                } else {
                    Ok(())
                };
            }
            cancel_deliveries_of(c, &id, CancelReason::TargetGone, now).await
        })
        .await
        .map_err(port)
    }

    async fn set_global_webhook(
        &self,
        webhook: Option<Webhook>,
        now: OffsetDateTime,
    ) -> Result<(), WebhookStoreError> {
        let mut c = self.conn().await.map_err(classified)?;
        c.transaction::<_, AdapterError, _>(async |c| {
            // Instances starting together replace the global webhook one at a time.
            diesel::sql_query(format!(
                "SELECT pg_advisory_xact_lock({})",
                MIGRATION_LOCK + 1
            ))
            .execute(c)
            .await?;
            let current: Option<Webhook> = webhooks::table
                .filter(webhooks::wallet_id.is_null())
                .filter(webhooks::deleted_at.is_null())
                .select(webhook_select!())
                .for_update()
                .first(c)
                .await
                .optional()?
                .map(row_to_webhook)
                .transpose()?;
            match (current, &webhook) {
                (None, None) => Ok(()),
                (None, Some(wanted)) => insert_webhook(c, wanted).await,
                (Some(stored), Some(wanted)) if stored.same_settings(wanted) => Ok(()),
                // In place: what waits for it is sent with the new settings.
                (Some(stored), Some(wanted)) => {
                    let id = stored.id.to_string();
                    diesel::update(webhooks::table.find(sql_id(&id)))
                        .set((
                            WebhookSettingsChange::of(wanted),
                            webhooks::revision.eq(webhooks::revision + 1),
                        ))
                        .execute(c)
                        .await?;
                    if stored.enabled && !wanted.enabled {
                        cancel_deliveries_of(c, &id, CancelReason::TargetDisabled, now).await?;
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
                        .execute(c)
                        .await?;
                    cancel_deliveries_of(c, &id, CancelReason::TargetDeleted, now).await
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
        let mut c = self.conn().await.map_err(classified)?;
        c.transaction::<_, AdapterError, _>(async |c| {
            let id = webhook.id.to_string();
            // Locked, so that a concurrent change waits for this one and then finds the
            // revision it wrote.
            let (was_enabled, was_ordered, revision): (bool, bool, i64) = webhooks::table
                .filter(webhooks::id.eq(sql_id(&id)))
                .filter(webhooks::wallet_id.eq(sql_id(wallet)))
                .filter(webhooks::deleted_at.is_null())
                .select((webhooks::enabled, webhooks::ordered, webhooks::revision))
                .for_update()
                .first(c)
                .await
                .optional()?
                .ok_or(AdapterError::NotFound)?;
            if revision != revision_column(webhook.revision) {
                return Err(AdapterError::Stale);
            }
            diesel::update(webhooks::table.find(sql_id(&id)))
                .set((
                    WebhookSettingsChange::of(webhook),
                    webhooks::revision.eq(revision + 1),
                ))
                .execute(c)
                .await?;
            if was_enabled && !webhook.enabled {
                cancel_deliveries_of(c, &id, CancelReason::TargetDisabled, now).await?;
            }
            if !was_ordered && webhook.ordered {
                // The row lock made every publish that read the webhook unordered commit
                // first: its deliveries are numbered here, in the order they were stored.
                diesel::sql_query(NUMBER_UNORDERED)
                    .bind::<Id, _>(sql_id(&id))
                    .execute(c)
                    .await?;
            }
            u64::try_from(revision + 1).map_err(AdapterError::corrupt)
        })
        .await
        .map_err(port)
    }
}

/// Publishes one event inside the caller's transaction, statement after statement: the answer
/// of an earlier publish (also one earlier in the same transaction), or the event stored, with
/// its deliveries queued in `scope` for [`insert_deliveries`]. The way of a batch (or a single
/// publish) that [`publish_bulk`] found raced: it waits for the concurrent publish and answers
/// as it did.
async fn publish_in(
    c: &mut Conn,
    scope: &mut PublishScope,
    event: &Event,
    idempotency: Option<&Idempotency>,
    now: OffsetDateTime,
) -> Result<Published, AdapterError> {
    if let Some(first) = statements::earlier_publish(c, event, idempotency).await? {
        return Ok(first);
    }
    let wallet = event.wallet_id();
    if scope.needs_targets(wallet) {
        let rows: Vec<WebhookRow> = publish_targets!(wallet.to_string())
            .for_key_share()
            .load(c)
            .await?;
        scope.add_targets(wallet, rows)?;
    }
    let deliveries = scope.fan_out(event, now);
    let inserted = diesel::insert_into(events::table)
        .values(NewEvent::of(event, idempotency, deliveries.len(), now))
        .on_conflict_do_nothing()
        .execute(c)
        .await?;
    if inserted == 0 {
        // A concurrent publish of the same id or key committed first: answer as it did.
        return statements::earlier_publish(c, event, idempotency)
            .await?
            .ok_or_else(|| AdapterError::Conflict(format!("event id {} is taken", event.id())));
    }
    scope.fault_after_event()?;
    scope.queue_deliveries(event, &deliveries, now);
    Ok(first_publish(event, deliveries.len()))
}

/// The events stored earlier that a batch publish in `$wallets` replays: those with one of
/// `$ids` or one of the idempotency keys `$keys`. Both are unique per wallet only, and the
/// wallets are asked for so that the primary key (wallet, id) and the key index (wallet, key)
/// find them; a pair of another wallet of the batch may come back, and the caller keys what it
/// reads by wallet.
macro_rules! earlier_events {
    ($wallets:expr, $ids:expr, $keys:expr) => {
        // The wallet in both arms: PostgreSQL answers each arm from its own index and ORs
        // the bitmaps; with the wallet outside the OR it reads the wallet's whole range.
        events::table.filter(
            events::wallet_id
                .eq_any(sql_ids($wallets))
                .and(events::id.eq_any(sql_ids($ids)))
                .or(events::wallet_id
                    .eq_any(sql_ids($wallets))
                    .and(events::idempotency_key.eq_any($keys))),
        )
    };
}

/// Publishes a batch inside the caller's transaction with one lookup of earlier events, one
/// read of each wallet's targets, and multi-row inserts: what [`publish_in`] does per event, in
/// two pipelined round trips (three with an ordered target). `Raced` when a concurrent
/// transaction stored one of the events after the lookup.
async fn publish_bulk(
    c: &mut Conn,
    scope: &mut PublishScope,
    items: &[PublishItem],
    now: OffsetDateTime,
) -> Result<Vec<Published>, AdapterError> {
    let ids: Vec<String> = items.iter().map(|i| i.event.id().to_string()).collect();
    let keys: Vec<String> = items
        .iter()
        .filter_map(|i| i.idempotency.as_ref().map(|k| k.key.clone()))
        .collect();
    let mut wallets: Vec<WalletId> = items.iter().map(|i| i.event.wallet_id()).collect();
    wallets.sort_unstable();
    wallets.dedup();
    let wallet_texts: Vec<String> = wallets.iter().map(ToString::to_string).collect();
    let unread: Vec<WalletId> = wallets
        .into_iter()
        .filter(|&wallet| scope.needs_targets(wallet))
        .collect();
    // The lookup of earlier events and the reads of the wallets' targets are independent:
    // they go as one pipeline, one round trip.
    let shared: &Conn = c;
    let target_reads = unread.iter().map(|wallet| {
        publish_targets!(wallet.to_string())
            .for_key_share()
            .load::<WebhookRow>(&mut &*shared)
    });
    let earlier_read = earlier_events!(&wallet_texts, &ids, &keys)
        .select((event_summary!(), events::idempotency_key))
        .load::<(EventSummary, Option<String>)>(&mut &*shared);
    let (earlier, targets) = tokio::try_join!(earlier_read, try_join_all(target_reads))?;
    for (wallet, rows) in unread.into_iter().zip(targets) {
        scope.add_targets(wallet, rows)?;
    }
    // Tests hold racing publishes here, between their lookup and their inserts.
    #[cfg(feature = "testing")]
    if let Some(barrier) = scope
        .faults()
        .and_then(crate::testing::Faults::publish_barrier)
    {
        barrier.wait().await;
    }
    let (published, rows) = scope.plan(items, earlier, now)?;
    number_ordered(c, scope).await?;
    // The events, their deliveries and the wake-up go as one pipeline. A concurrent publish
    // that stored one of the events (its id, or its idempotency key under another id) after
    // the lookup makes the event insert leave it out: that is `Raced`, whatever the rest of
    // the pipeline met (a delivery of an event left out breaks its foreign key, and the
    // transaction is aborted from there on); it is all rolled back.
    let shared: &Conn = c;
    let event_inserts = rows.chunks(INSERT_CHUNK).map(|chunk| {
        diesel::insert_into(events::table)
            .values(chunk)
            .on_conflict_do_nothing()
            .execute(&mut &*shared)
    });
    let (stored, queued) = tokio::join!(try_join_all(event_inserts), insert_queued(shared, scope));
    if stored?.iter().sum::<usize>() != rows.len() {
        return Err(AdapterError::Raced);
    }
    queued?;
    scope.fault_after_event()?;
    Ok(published)
}

/// Inserts the deliveries queued in `scope` and, when there are any, wakes the dispatchers of
/// every instance once the transaction commits.
async fn insert_deliveries(c: &mut Conn, scope: &mut PublishScope) -> Result<(), AdapterError> {
    number_ordered(c, scope).await?;
    insert_queued(c, scope).await
}

/// Draws the sequence numbers of the deliveries queued in `scope` for ordered targets. Each
/// target's numbers are drawn under its row lock, held until the commit: a concurrent publish
/// to the same target waits here, so numbers follow the commit order.
async fn number_ordered(c: &mut Conn, scope: &mut PublishScope) -> Result<(), AdapterError> {
    for (webhook, count) in scope.ordered_counts() {
        let last: i64 = diesel::update(webhooks::table.find(sql_id(&webhook)))
            .set(webhooks::last_seq.eq(webhooks::last_seq + count))
            .returning(webhooks::last_seq)
            .get_result(c)
            .await?;
        scope.number(&webhook, last - count + 1);
    }
    Ok(())
}

/// The multi-row inserts of the deliveries queued in `scope` and, when there are any, the
/// `NOTIFY` that wakes the dispatchers on commit, sent as one pipeline.
async fn insert_queued(c: &Conn, scope: &PublishScope) -> Result<(), AdapterError> {
    let rows = scope.deliveries();
    if rows.is_empty() {
        return Ok(());
    }
    let inserts = rows.chunks(INSERT_CHUNK).map(|chunk| {
        diesel::insert_into(deliveries::table)
            .values(chunk)
            .execute(&mut &*c)
    });
    // Delivered to listeners when the transaction commits, not before.
    let wake = diesel::sql_query(format!("NOTIFY {WAKE_CHANNEL}")).execute(&mut &*c);
    tokio::try_join!(try_join_all(inserts), wake)?;
    Ok(())
}

/// Places the unfinished deliveries of the webhook $1 that have no place in its sequence (it
/// was not ordered when they were published) at its end, in the order they were stored.
const NUMBER_UNORDERED: &str = "\
WITH numbered AS (
    SELECT d.id, row_number() OVER (ORDER BY d.created_at, d.id) AS n
    FROM deliveries AS d
    WHERE d.webhook_id = $1 AND d.due_at IS NOT NULL AND d.seq IS NULL
),
moved AS (
    UPDATE webhooks SET last_seq = last_seq + (SELECT count(*) FROM numbered)
    WHERE id = $1
    RETURNING last_seq - (SELECT count(*) FROM numbered) AS before
)
UPDATE deliveries AS d SET seq = moved.before + numbered.n
FROM numbered, moved
WHERE d.id = numbered.id";

/// A row of one id column, as raw statements return it.
#[derive(QueryableByName)]
struct IdRow {
    #[diesel(sql_type = Id)]
    id: String,
}

/// Which rows a bulk state write may change, besides those with the given ids.
#[derive(Debug, Clone, Copy)]
enum StateGuard<'a> {
    /// Only deliveries still in flight under this owner's lease: outcomes and releases.
    LeasedTo(&'a str),
    /// Any: the caller locked the rows in its transaction (requeues).
    Locked,
}

/// Writes new delivery states (lease given up) in one statement, where `guard` allows;
/// returns the ids written.
async fn write_states(
    c: &mut Conn,
    changed: &[&Delivery],
    guard: StateGuard<'_>,
) -> Result<Vec<String>, AdapterError> {
    if changed.is_empty() {
        return Ok(Vec::new());
    }
    let written: Vec<IdRow> = states_statement(changed, guard).load(c).await?;
    Ok(written.into_iter().map(|w| w.id).collect())
}

/// The statement of [`write_states`]: the new states travel as parallel arrays, joined to their
/// rows through the primary key (`tests/it/query_plans.rs` checks the plan).
fn states_statement<'a>(
    changed: &[&Delivery],
    guard: StateGuard<'a>,
) -> BoxedSqlQuery<'a, Pg, SqlQuery> {
    bind_states(
        diesel::sql_query(states_sql(guard)).into_boxed(),
        changed,
        guard,
    )
}

/// The `UPDATE` of [`states_statement`], returning the ids written: the states are its
/// parameters $1 to $8 and, when guarded by a lease, its state and owner $9 and $10.
fn states_sql(guard: StateGuard<'_>) -> String {
    let guarded = match guard {
        StateGuard::LeasedTo(_) => " AND d.state = $9 AND d.lease_owner = $10",
        StateGuard::Locked => "",
    };
    format!(
        "UPDATE deliveries AS d \
         SET state = v.state, due_at = v.due_at, attempts = v.attempts, lease_owner = NULL, \
             final_at = v.final_at, cancel_reason = v.cancel_reason, first_due = v.first_due, \
             attempts_made = v.attempts_made \
         FROM unnest($1::uuid[], $2::text[], $3::int8[], $4::int4[], $5::int8[], $6::text[], \
                     $7::int8[], $8::int4[]) \
              AS v (id, state, due_at, attempts, final_at, cancel_reason, first_due, \
                    attempts_made) \
         WHERE d.id = v.id{guarded} \
         RETURNING d.id",
    )
}

/// Binds the parameters of [`states_sql`] to `statement`.
fn bind_states<'a>(
    statement: BoxedSqlQuery<'a, Pg, SqlQuery>,
    changed: &[&Delivery],
    guard: StateGuard<'a>,
) -> BoxedSqlQuery<'a, Pg, SqlQuery> {
    let mut ids = Vec::with_capacity(changed.len());
    let mut states = Vec::with_capacity(changed.len());
    let mut due = Vec::with_capacity(changed.len());
    let mut attempts = Vec::with_capacity(changed.len());
    let mut attempts_made = Vec::with_capacity(changed.len());
    let mut finals = Vec::with_capacity(changed.len());
    let mut reasons = Vec::with_capacity(changed.len());
    let mut first_due = Vec::with_capacity(changed.len());
    for delivery in changed {
        let s = DeliveryStateChange::of(delivery, None);
        ids.push(sql_id(delivery.id()));
        states.push(s.state);
        due.push(s.due_at);
        attempts.push(s.attempts);
        attempts_made.push(s.attempts_made);
        finals.push(s.final_at);
        reasons.push(s.cancel_reason);
        first_due.push(s.first_due);
    }
    let statement = statement
        .bind::<Array<Id>, _>(ids)
        .bind::<Array<Text>, _>(states)
        .bind::<Array<Nullable<BigInt>>, _>(due)
        .bind::<Array<Integer>, _>(attempts)
        .bind::<Array<Nullable<BigInt>>, _>(finals)
        .bind::<Array<Nullable<Text>>, _>(reasons)
        .bind::<Array<BigInt>, _>(first_due)
        .bind::<Array<Integer>, _>(attempts_made);
    match guard {
        StateGuard::LeasedTo(owner) => statement
            .bind::<Text, _>(DeliveryStateKind::InFlight.as_str())
            .bind::<Text, _>(owner),
        StateGuard::Locked => statement,
    }
}

/// The statement of [`DeliveryQueue::record_attempts`], one round trip for a whole batch: the
/// new states are written as [`states_statement`] writes them under `owner`'s lease, and an
/// attempt row is added, in the records' order, for each delivery written; it returns the ids
/// of the deliveries whose attempt was added. One statement is one transaction: no attempt is
/// kept without its state, nor a state without its attempt.
fn outcomes_statement<'a>(
    records: &[AttemptRecord],
    owner: &'a str,
) -> BoxedSqlQuery<'a, Pg, SqlQuery> {
    let guard = StateGuard::LeasedTo(owner);
    let sql = format!(
        "WITH written AS ({states}) \
         INSERT INTO attempts (delivery_id, number, started_at, duration_us, outcome, \
                               status_code, response_excerpt, error, webhook_id) \
         SELECT a.delivery_id, a.number, a.started_at, a.duration_us, a.outcome, \
                a.status_code, a.response_excerpt, a.error, a.webhook_id \
         FROM unnest($11::uuid[], $12::int4[], $13::int8[], $14::int8[], $15::text[], \
                     $16::int4[], $17::text[], $18::text[], $19::uuid[]) WITH ORDINALITY \
              AS a (delivery_id, number, started_at, duration_us, outcome, status_code, \
                    response_excerpt, error, webhook_id, n) \
         WHERE a.delivery_id IN (SELECT w.id FROM written AS w) \
         ORDER BY a.n \
         RETURNING delivery_id AS id",
        states = states_sql(guard),
    );
    let changed: Vec<&Delivery> = records.iter().map(|r| &r.delivery).collect();
    let statement = bind_states(diesel::sql_query(sql).into_boxed(), &changed, guard);
    let rows: Vec<NewAttempt> = records.iter().map(NewAttempt::of).collect();
    statement
        .bind::<Array<Id>, _>(
            rows.iter()
                .map(|r| r.delivery_id.clone())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Integer>, _>(rows.iter().map(|r| r.number).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(rows.iter().map(|r| r.started_at).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(rows.iter().map(|r| r.duration_us).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(rows.iter().map(|r| r.outcome).collect::<Vec<_>>())
        .bind::<Array<Nullable<Integer>>, _>(rows.iter().map(|r| r.status_code).collect::<Vec<_>>())
        .bind::<Array<Nullable<Text>>, _>(
            rows.iter()
                .map(|r| r.response_excerpt.clone())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Nullable<Text>>, _>(rows.iter().map(|r| r.error.clone()).collect::<Vec<_>>())
        .bind::<Array<Id>, _>(rows.into_iter().map(|r| r.webhook_id).collect::<Vec<_>>())
}

#[async_trait]
impl EventOutbox for PgStore {
    async fn publish(
        &self,
        event: &Event,
        idempotency: Option<Idempotency>,
        now: OffsetDateTime,
    ) -> Result<Published, OutboxError> {
        // The batch path, which pipelines its statements: four round trips instead of seven.
        let item = PublishItem {
            event: event.clone(),
            idempotency,
        };
        let mut published = self.publish_batch(std::slice::from_ref(&item), now).await?;
        published
            .pop()
            .ok_or_else(|| OutboxError::Backend("a publish of one event answered nothing".into()))
    }

    async fn get_event(&self, wallet: WalletId, id: EventId) -> Result<Event, OutboxError> {
        let mut c = self.conn().await.map_err(classified)?;
        statements::event(&mut c, wallet, id).await.map_err(port)
    }

    async fn list_deliveries(
        &self,
        wallet: WalletId,
        filter: DeliveryFilter,
        page: Page,
    ) -> Result<Vec<Delivery>, OutboxError> {
        let mut c = self.conn().await.map_err(classified)?;
        statements::deliveries_page(&mut c, wallet, &filter, page)
            .await
            .map_err(port)
    }

    async fn search_deliveries(
        &self,
        wallet: WalletId,
        search: DeliverySearch,
    ) -> Result<Vec<FoundDelivery>, OutboxError> {
        let mut c = self.conn().await.map_err(classified)?;
        statements::search_deliveries(&mut c, wallet, &search)
            .await
            .map_err(port)
    }

    async fn webhook_stats(
        &self,
        wallet: WalletId,
        webhook: WebhookId,
        window: StatsWindow,
    ) -> Result<WebhookStats, OutboxError> {
        let mut c = self.conn().await.map_err(classified)?;
        let sql = crate::queries::stats_sql(|n| format!("${n}"), "/", "BIGINT");
        statements::webhook_stats(&mut c, wallet, webhook, &window, &sql)
            .await
            .map_err(port)
    }

    async fn overview(&self, attempts_since: OffsetDateTime) -> Result<Overview, OutboxError> {
        let mut c = self.conn().await.map_err(classified)?;
        statements::overview(&mut c, attempts_since)
            .await
            .map_err(port)
    }

    async fn list_attempts(
        &self,
        wallet: WalletId,
        delivery: DeliveryId,
    ) -> Result<Vec<AttemptLog>, OutboxError> {
        let mut c = self.conn().await.map_err(classified)?;
        statements::attempts_of(&mut c, wallet, delivery)
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
        let mut c = self.conn().await.map_err(classified)?;
        let rows: Vec<RecentAttemptRow> =
            recent_attempts_statement(wallet, deliveries, per_delivery)
                .load(&mut c)
                .await
                .map_err(classified)?;
        group_recent_attempts(rows).map_err(port)
    }

    async fn requeue(
        &self,
        wallet: WalletId,
        delivery: DeliveryId,
        now: OffsetDateTime,
    ) -> Result<Delivery, OutboxError> {
        let mut c = self.conn().await.map_err(classified)?;
        c.transaction::<_, AdapterError, _>(async |c| {
            let row: DeliveryRow = deliveries::table
                .filter(deliveries::id.eq(sql_id(delivery)))
                .filter(deliveries::wallet_id.eq(sql_id(wallet)))
                .select(delivery_select!())
                .for_update()
                .first(c)
                .await
                .optional()?
                .ok_or(AdapterError::NotFound)?;
            // Shared: a delete or disable of the webhook waits for this, or this for it.
            let live: Option<bool> = webhooks::table
                .find(sql_id(&row.2))
                .select(webhooks::enabled.and(webhooks::deleted_at.is_null()))
                .for_share()
                .first(c)
                .await
                .optional()?;
            if live != Some(true) {
                return Err(AdapterError::Conflict(TARGET_NOT_LIVE.to_owned()));
            }
            let requeued = row_to_delivery(&row)?
                .requeue(now)
                .map_err(|e| AdapterError::Conflict(e.to_string()))?;
            write_states(c, &[&requeued], StateGuard::Locked).await?;
            if requeued.state().kind() == DeliveryStateKind::Pending {
                diesel::sql_query(format!("NOTIFY {WAKE_CHANNEL}"))
                    .execute(c)
                    .await?;
            }
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
        let mut c = self.conn().await.map_err(classified)?;
        // A handful of statements for the whole batch; when a concurrent publish stored some
        // of the same events meanwhile, the batch is redone one event at a time.
        let bulk = c
            .transaction::<_, AdapterError, _>(async |c| {
                let mut scope = self.publish_scope();
                publish_bulk(c, &mut scope, items, now).await
            })
            .await;
        if !matches!(bulk, Err(AdapterError::Raced)) {
            return bulk.map_err(port);
        }
        c.transaction::<_, AdapterError, _>(async |c| {
            let mut scope = self.publish_scope();
            let mut published = Vec::with_capacity(items.len());
            for item in items {
                let idempotency = item.idempotency.as_ref();
                published.push(publish_in(c, &mut scope, &item.event, idempotency, now).await?);
            }
            insert_deliveries(c, &mut scope).await?;
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
        let mut c = self.conn().await.map_err(classified)?;
        statements::delivery(&mut c, wallet, delivery)
            .await
            .map_err(port)
    }
}

/// The attempts of the wallet $1's deliveries among $2: of each, the $3 most recent, in the
/// order they were made, with the number it has in all. One statement for a whole page: for
/// each delivery, found through its primary key, one count and one backward read of at most $3
/// entries of `attempts_by_delivery`, however long its history.
const RECENT_ATTEMPTS: &str = "\
SELECT d.id AS delivery_id, a.number, a.started_at, a.duration_us, a.outcome, a.status_code,
       a.response_excerpt, a.error, n.total
FROM deliveries AS d
CROSS JOIN LATERAL (
    SELECT count(*) AS total FROM attempts WHERE attempts.delivery_id = d.id
) AS n
CROSS JOIN LATERAL (
    SELECT id, number, started_at, duration_us, outcome, status_code, response_excerpt, error
    FROM attempts WHERE attempts.delivery_id = d.id
    ORDER BY id DESC
    LIMIT $3
) AS a
WHERE d.id = ANY($2) AND d.wallet_id = $1
ORDER BY d.id, a.id";

fn recent_attempts_statement(
    wallet: WalletId,
    deliveries: &[DeliveryId],
    per_delivery: u32,
) -> BoxedSqlQuery<'static, Pg, SqlQuery> {
    diesel::sql_query(RECENT_ATTEMPTS)
        .into_boxed()
        .bind::<Id, _>(sql_id(wallet))
        .bind::<Array<Id>, _>(sql_ids(deliveries))
        .bind::<BigInt, _>(i64::from(per_delivery))
}

/// One claimed delivery joined with its event and target, as the claim statement returns it:
/// its state and due time as they were before the claim.
#[derive(QueryableByName)]
struct ClaimedRow {
    #[diesel(sql_type = Id)]
    id: String,
    #[diesel(sql_type = Id)]
    event_id: String,
    #[diesel(sql_type = Id)]
    webhook_id: String,
    #[diesel(sql_type = Text)]
    state: String,
    #[diesel(sql_type = Nullable<BigInt>)]
    due_at: Option<i64>,
    #[diesel(sql_type = Integer)]
    attempts: i32,
    #[diesel(sql_type = Integer)]
    attempts_made: i32,
    #[diesel(sql_type = BigInt)]
    first_due: i64,
    #[diesel(sql_type = Id)]
    event_wallet_id: String,
    #[diesel(sql_type = Text)]
    event_type: String,
    #[diesel(sql_type = BigInt)]
    event_ts: i64,
    #[diesel(sql_type = Text)]
    event_data: String,
    #[diesel(sql_type = Nullable<Id>)]
    webhook_wallet_id: Option<String>,
    #[diesel(sql_type = Text)]
    url: String,
    #[diesel(sql_type = Text)]
    custom_headers: String,
    #[diesel(sql_type = Nullable<Text>)]
    event_types: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    signing_keys: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    retry_policy: Option<String>,
    #[diesel(sql_type = Bool)]
    enabled: bool,
    #[diesel(sql_type = Bool)]
    ordered: bool,
    #[diesel(sql_type = Nullable<Integer>)]
    rate_limit: Option<i32>,
    #[diesel(sql_type = BigInt)]
    webhook_created_at: i64,
    #[diesel(sql_type = BigInt)]
    webhook_revision: i64,
}

/// The targets that hold unfinished deliveries, each with its earliest due time (a due time,
/// or the end of a lease): a loose scan of `deliveries_due_by_target`, one index descent per
/// target, so that its cost grows with the number of such targets, never with their backlogs.
/// The prefix of [`CLAIM`] and [`NEXT_DUE`].
const TARGETS: &str = "\
WITH RECURSIVE targets (webhook_id, earliest) AS (
    (SELECT d.webhook_id, d.due_at FROM deliveries AS d
     WHERE d.due_at IS NOT NULL
     ORDER BY d.webhook_id, d.due_at LIMIT 1)
    UNION ALL
    SELECT n.webhook_id, n.due_at FROM targets AS t
    CROSS JOIN LATERAL (
        SELECT d.webhook_id, d.due_at FROM deliveries AS d
        WHERE d.due_at IS NOT NULL AND d.webhook_id > t.webhook_id
        ORDER BY d.webhook_id, d.due_at LIMIT 1
    ) AS n
)";

/// The first unfinished delivery of the ordered target `s.webhook_id` in its sequence (its
/// publish order), through `deliveries_ordered_queue`.
const ORDERED_HEAD: &str = "\
SELECT d.id, d.due_at FROM deliveries AS d
WHERE d.webhook_id = s.webhook_id AND d.due_at IS NOT NULL AND d.seq IS NOT NULL
ORDER BY d.seq LIMIT 1";

/// Whether a delivery of target `s.webhook_id` is in flight under a lease live at $1 ($2 is
/// the in-flight state's name). For an ordered target only its first delivery (or one requeued
/// before it) can have a due time after now, so this reads a row or two.
const IN_FLIGHT: &str = "\
SELECT 1 FROM deliveries AS f
WHERE f.webhook_id = s.webhook_id AND f.due_at > $1 AND f.state = $2";

/// Leases due deliveries and returns them with their event and target in one round trip:
/// $1 now, $2 the in-flight state, $3 the lease's end, $4 the owner, $5 the most deliveries
/// and targets, $6 the webhooks to skip, $7 the most deliveries of one target.
///
/// The due deliveries of deleted or disabled targets met on the way are cancelled (`dead`,
/// `swept`): rows no live lease holds, left behind by an instance that died holding them or
/// recorded after the change. The targets come from [`TARGETS`]; those served are live,
/// enabled, not skipped, with
/// something due, and for an ordered target, a first delivery that is due while nothing of the
/// target is in flight; the earliest due first. Each unordered one gives its earliest due rows
/// (`deliveries_due_by_target`), its share of $5 and at most $7, locked as they are read and
/// skipping rows another claimer holds, so that concurrent claimers of one target take
/// different rows. Each ordered one gives its first row, locked only after it was chosen: if
/// another claimer holds it, the target gives nothing, never the row after it. Locks re-check
/// the due time of rows that changed meanwhile. No statement walks a target's rows beyond what
/// it takes. The ids travel as an array so that the update finds its rows through the primary
/// key. Each row comes back with its state and due time from before the claim (`taken`), so
/// that [`to_claimed`] makes the leased delivery with the domain's [`Delivery::claim`], the one
/// statement of the rule, and refuses a row the rule would not lease.
fn claim_sql() -> String {
    format!(
        "{TARGETS},
dead AS (
    SELECT t.webhook_id, w.deleted_at IS NOT NULL AS deleted FROM targets AS t
    JOIN webhooks AS w ON w.id = t.webhook_id
    WHERE t.earliest <= $1 AND (w.deleted_at IS NOT NULL OR NOT w.enabled)
),
swept AS (
    UPDATE deliveries AS d
    SET state = '{CANCELLED}', due_at = NULL, lease_owner = NULL, final_at = $1,
        cancel_reason = CASE WHEN dead.deleted THEN '{TARGET_DELETED}'
                             ELSE '{TARGET_DISABLED}' END
    FROM dead
    WHERE d.webhook_id = dead.webhook_id AND d.due_at <= $1
),
served AS (
    SELECT t.webhook_id, t.earliest, w.ordered FROM targets AS t
    JOIN webhooks AS w ON w.id = t.webhook_id
    WHERE t.earliest <= $1 AND t.webhook_id <> ALL($6)
      AND w.enabled AND w.deleted_at IS NULL
      AND (NOT w.ordered OR (
          (SELECT h.due_at FROM ({ORDERED_HEAD_OF_T}) AS h) <= $1
          AND NOT EXISTS ({IN_FLIGHT_OF_T})))
    ORDER BY t.earliest
    LIMIT $5
),
unordered AS (
    SELECT c.id, c.due_at, c.state FROM served AS s
    CROSS JOIN LATERAL (
        SELECT d.id, d.due_at, d.state FROM deliveries AS d
        WHERE d.webhook_id = s.webhook_id AND d.due_at <= $1
        ORDER BY d.due_at
        LIMIT LEAST($7, GREATEST(1, CEIL($5::numeric / (SELECT count(*) FROM served))))
        FOR UPDATE SKIP LOCKED
    ) AS c
    WHERE NOT s.ordered
),
heads AS (
    SELECT d.id, d.due_at, d.state FROM deliveries AS d
    WHERE d.id IN (
        SELECT h.id FROM served AS s CROSS JOIN LATERAL ({ORDERED_HEAD}) AS h
        WHERE s.ordered)
      AND d.due_at <= $1
    FOR UPDATE SKIP LOCKED
),
taken AS (
    SELECT id, due_at, state FROM unordered UNION ALL SELECT id, due_at, state FROM heads
),
claimed AS (
    UPDATE deliveries SET state = $2, due_at = $3, lease_owner = $4
    WHERE id = ANY(ARRAY(SELECT t.id FROM taken AS t ORDER BY t.due_at LIMIT $5))
    RETURNING id, event_id, webhook_id, wallet_id, attempts, attempts_made, first_due
)
SELECT c.id, c.event_id, c.webhook_id, t.state, t.due_at, c.attempts, c.attempts_made,
       c.first_due,
       e.wallet_id AS event_wallet_id, e.event_type, e.ts AS event_ts, e.data AS event_data,
       w.wallet_id AS webhook_wallet_id, w.url, w.custom_headers, w.event_types,
       w.signing_keys, w.retry_policy, w.enabled, w.ordered, w.rate_limit,
       w.created_at AS webhook_created_at, w.revision AS webhook_revision
FROM claimed AS c
JOIN taken AS t ON t.id = c.id
JOIN events AS e ON e.wallet_id = c.wallet_id AND e.id = c.event_id
JOIN webhooks AS w ON w.id = c.webhook_id
ORDER BY t.due_at, c.id",
        ORDERED_HEAD_OF_T = ORDERED_HEAD.replace("s.webhook_id", "t.webhook_id"),
        IN_FLIGHT_OF_T = IN_FLIGHT.replace("s.webhook_id", "t.webhook_id"),
        CANCELLED = DeliveryStateKind::Cancelled.as_str(),
        TARGET_DELETED = CancelReason::TargetDeleted.as_str(),
        TARGET_DISABLED = CancelReason::TargetDisabled.as_str(),
    )
}

/// The earliest time a claim at $1 skipping the webhooks in $2 could lease something ($3 the
/// in-flight state): over the live, enabled targets of [`TARGETS`] not skipped, an unordered
/// target's earliest due time, and an ordered target's first delivery's, or the end of the
/// lease of the one in flight if that is later.
fn next_due_sql() -> String {
    format!(
        "{TARGETS}
SELECT min(CASE WHEN s.ordered THEN GREATEST(
                (SELECT h.due_at FROM ({ORDERED_HEAD}) AS h),
                (SELECT max(f.due_at) FROM deliveries AS f
                 WHERE f.webhook_id = s.webhook_id AND f.due_at > $1 AND f.state = $3))
            ELSE s.earliest END) AS next
FROM (SELECT t.webhook_id, t.earliest, w.ordered FROM targets AS t
      JOIN webhooks AS w ON w.id = t.webhook_id
      WHERE t.webhook_id <> ALL($2) AND w.enabled AND w.deleted_at IS NULL) AS s"
    )
}

static CLAIM: std::sync::LazyLock<String> = std::sync::LazyLock::new(claim_sql);
static NEXT_DUE: std::sync::LazyLock<String> = std::sync::LazyLock::new(next_due_sql);

/// The claim statement with its parameters.
fn claim_statement<'a>(
    request: &ClaimRequest,
    leased_until: OffsetDateTime,
    owner: &'a LeaseOwner,
) -> BoxedSqlQuery<'a, Pg, SqlQuery> {
    // The columns of the domain's in-flight state (the attempt number is not stored).
    let leased = state_columns(DeliveryState::InFlight {
        attempt: 1,
        leased_until,
    });
    diesel::sql_query(CLAIM.as_str())
        .into_boxed()
        .bind::<BigInt, _>(micros(request.now))
        .bind::<Text, _>(leased.state)
        .bind::<Nullable<BigInt>, _>(leased.due_at)
        .bind::<Text, _>(owner.0.as_str())
        .bind::<BigInt, _>(i64::from(request.limit))
        .bind::<Array<Id>, _>(sql_ids(&request.skip))
        .bind::<BigInt, _>(i64::from(request.per_target.max(1)))
}

/// The next-due statement with its parameters.
fn next_due_statement(
    now: OffsetDateTime,
    skip: &[WebhookId],
) -> BoxedSqlQuery<'static, Pg, SqlQuery> {
    diesel::sql_query(NEXT_DUE.as_str())
        .into_boxed()
        .bind::<BigInt, _>(micros(now))
        .bind::<Array<Id>, _>(sql_ids(skip))
        .bind::<Text, _>(DeliveryStateKind::InFlight.as_str())
}

/// The row of [`NEXT_DUE`].
#[derive(QueryableByName)]
struct NextDueRow {
    #[diesel(sql_type = Nullable<BigInt>)]
    next: Option<i64>,
}

/// A claimed row as the port hands it out: the delivery leased by [`Delivery::claim`] at
/// `now` until `leased_until`, from its state before the claim. A row the domain would not
/// lease means the statement and the rule disagree: `Corrupt`, never a lease handed out.
fn to_claimed(
    row: ClaimedRow,
    now: OffsetDateTime,
    leased_until: OffsetDateTime,
) -> Result<ClaimedDelivery, AdapterError> {
    let before = to_delivery(DeliveryColumns {
        id: &row.id,
        event_id: &row.event_id,
        webhook_id: &row.webhook_id,
        state: &row.state,
        due_at: row.due_at,
        attempts: row.attempts,
        attempts_made: row.attempts_made,
        final_at: None,
        cancel_reason: None,
        first_due: row.first_due,
    })?;
    let delivery = before.claim(now, leased_until).map_err(|refused| {
        AdapterError::corrupt(format_args!(
            "the claim statement leased a delivery that the claim rule refuses: {refused}"
        ))
    })?;
    let event = row_to_event((
        row.event_id,
        row.event_wallet_id,
        row.event_type,
        row.event_ts,
        row.event_data,
    ))?;
    let webhook = to_webhook(WebhookColumns {
        id: row.webhook_id,
        wallet_id: row.webhook_wallet_id,
        url: row.url,
        custom_headers: row.custom_headers,
        event_types: row.event_types,
        signing_keys: row.signing_keys,
        retry_policy: row.retry_policy,
        enabled: row.enabled,
        ordered: row.ordered,
        rate_limit: row.rate_limit,
        created_at: row.webhook_created_at,
        revision: row.webhook_revision,
    })?;
    Ok(ClaimedDelivery {
        delivery,
        event,
        webhook,
    })
}

#[async_trait]
impl RedeliveryJobs for PgStore {
    async fn create_redelivery_job(
        &self,
        job: &RedeliveryJob,
    ) -> Result<RedeliveryJob, OutboxError> {
        let mut c = self.conn().await.map_err(classified)?;
        c.transaction::<_, AdapterError, _>(async |c| {
            let owned: i64 = webhooks::table
                .filter(webhooks::id.eq(sql_id(job.webhook_id)))
                .filter(webhooks::wallet_id.eq(sql_id(job.wallet_id)))
                .count()
                .get_result(c)
                .await?;
            if owned == 0 {
                return Err(AdapterError::NotFound);
            }
            let total: i64 = redelivery_candidates!(&JobWindow::of(job))
                .count()
                .get_result(c)
                .await?;
            let stored = RedeliveryJob {
                total: u64::try_from(total).map_err(AdapterError::corrupt)?,
                ..job.clone()
            };
            diesel::insert_into(redelivery_jobs::table)
                .values(NewRedeliveryJob::of(&stored))
                .execute(c)
                .await
                .map_err(conflict_if_taken(format!("redelivery job {}", job.id)))?;
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
        let mut c = self.conn().await.map_err(classified)?;
        statements::redelivery_job(&mut c, wallet, id)
            .await
            .map_err(port)
    }

    async fn running_redelivery_jobs(&self) -> Result<Vec<RedeliveryJob>, OutboxError> {
        let mut c = self.conn().await.map_err(classified)?;
        statements::running_redelivery_jobs(&mut c)
            .await
            .map_err(port)
    }

    async fn step_redelivery_job(
        &self,
        id: RedeliveryJobId,
        limit: u32,
        now: OffsetDateTime,
    ) -> Result<RedeliveryJob, OutboxError> {
        let mut c = self.conn().await.map_err(classified)?;
        c.transaction::<_, AdapterError, _>(async |c| {
            // Locking the job makes steppers of one job take turns: the second sees the
            // first's progress, and a completed job is left alone.
            let job = redelivery_jobs::table
                .find(sql_id(id))
                .select(RedeliveryJobRow::as_select())
                .for_update()
                .first(c)
                .await
                .optional()?
                .ok_or(AdapterError::NotFound)?
                .into_job()?;
            // A step of nothing must not complete the job.
            if job.state.is_finished() || limit == 0 {
                return Ok(job);
            }
            // A job of a webhook that was deleted or disabled requeues nothing more. The shared
            // lock makes a delete or disable wait for this step (whose requeued deliveries it
            // then cancels), and this step wait for one in progress (which it then sees).
            let webhook: Option<(bool, Option<i64>)> = webhooks::table
                .find(sql_id(job.webhook_id))
                .select((webhooks::enabled, webhooks::deleted_at))
                .for_share()
                .first(c)
                .await
                .optional()?;
            if let Some(reason) = job_stop_reason(webhook) {
                let stopped = job.stop(reason, now);
                diesel::update(redelivery_jobs::table.find(sql_id(id)))
                    .set(JobProgressChange::of(&stopped))
                    .execute(c)
                    .await?;
                return Ok(stopped);
            }
            // Rows another transaction holds (a single requeue, a pruning batch) are skipped:
            // it is changing them anyway.
            let rows: Vec<DeliveryRow> = redelivery_batch!(&JobWindow::of(&job), limit)
                .for_update()
                .skip_locked()
                .load(c)
                .await?;
            let requeued = requeue_all(&rows, now)?;
            let changed: Vec<&Delivery> = requeued.iter().collect();
            write_states(c, &changed, StateGuard::Locked).await?;
            let stepped = job.after_step(requeued.len() as u64, now);
            diesel::update(redelivery_jobs::table.find(sql_id(id)))
                .set(JobProgressChange::of(&stepped))
                .execute(c)
                .await?;
            if !requeued.is_empty() {
                diesel::sql_query(format!("NOTIFY {WAKE_CHANNEL}"))
                    .execute(c)
                    .await?;
            }
            Ok(stepped)
        })
        .await
        .map_err(port)
    }
}

#[async_trait]
impl DeliveryQueue for PgStore {
    async fn claim_due(
        &self,
        owner: &LeaseOwner,
        request: &ClaimRequest,
    ) -> Result<Vec<ClaimedDelivery>, OutboxError> {
        let leased_until = webhook_domain::add_saturating(request.now, request.lease);
        let mut c = self.conn().await.map_err(classified)?;
        let rows: Vec<ClaimedRow> = claim_statement(request, leased_until, owner)
            .load(&mut c)
            .await
            .map_err(classified)?;
        rows.into_iter()
            .map(|row| to_claimed(row, request.now, leased_until))
            .collect::<Result<_, _>>()
            .map_err(port)
    }

    async fn record_attempts(
        &self,
        owner: &LeaseOwner,
        records: &[AttemptRecord],
    ) -> Result<Vec<DeliveryId>, OutboxError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.conn().await.map_err(classified)?;
        let written: Vec<IdRow> = outcomes_statement(records, &owner.0)
            .load(&mut c)
            .await
            .map_err(classified)?;
        let written: std::collections::HashSet<String> =
            written.into_iter().map(|w| w.id).collect();
        Ok(records
            .iter()
            .map(|record| record.delivery.id())
            .filter(|id| !written.contains(&id.to_string()))
            .collect())
    }

    async fn release(&self, owner: &LeaseOwner, released: &[Delivery]) -> Result<(), OutboxError> {
        if released.is_empty() {
            return Ok(());
        }
        let mut c = self.conn().await.map_err(classified)?;
        let changed: Vec<&Delivery> = released.iter().collect();
        write_states(&mut c, &changed, StateGuard::LeasedTo(&owner.0))
            .await
            .map_err(classified)?;
        Ok(())
    }

    async fn next_due_at(
        &self,
        now: OffsetDateTime,
        skip: &[WebhookId],
    ) -> Result<Option<OffsetDateTime>, OutboxError> {
        let mut c = self.conn().await.map_err(classified)?;
        let row: NextDueRow = next_due_statement(now, skip)
            .get_result(&mut c)
            .await
            .map_err(classified)?;
        row.next.map(from_micros).transpose().map_err(port)
    }

    async fn settle_target(
        &self,
        webhook: WebhookId,
        now: OffsetDateTime,
    ) -> Result<Option<OffsetDateTime>, OutboxError> {
        let id = webhook.to_string();
        let mut c = self.conn().await.map_err(classified)?;
        c.transaction::<_, AdapterError, _>(async |c| {
            let state: Option<(bool, Option<i64>)> = webhooks::table
                .find(sql_id(&id))
                .select((webhooks::enabled, webhooks::deleted_at))
                .first(c)
                .await
                .optional()?;
            let reason = match state {
                Some((_, Some(_))) => CancelReason::TargetDeleted,
                Some((false, None)) => CancelReason::TargetDisabled,
                // Live and enabled, or unknown: nothing to settle.
                _ => return Ok(None),
            };
            cancel_unleased!(&id, reason, now).execute(c).await?;
            let until: Option<i64> = leased_until!(&id, micros(now)).first(c).await?;
            until.map(from_micros).transpose()
        })
        .await
        .map_err(port)
    }

    async fn backlog(&self, now: OffsetDateTime) -> Result<Backlog, OutboxError> {
        let mut c = self.conn().await.map_err(classified)?;
        statements::backlog(&mut c, now).await.map_err(port)
    }
}

#[async_trait]
impl Retention for PgStore {
    async fn prune(&self, before: OffsetDateTime, limit: u32) -> Result<Pruned, OutboxError> {
        let mut c = self.conn().await.map_err(classified)?;
        c.transaction::<_, AdapterError, _>(async |c| {
            let old: Vec<(String, String)> =
                prune_candidates!(micros(before), limit).load(c).await?;
            if old.is_empty() {
                return Ok(Pruned::default());
            }
            // Events are keyed by (wallet, id): the batch travels as two parallel arrays.
            let (wallets, ids): (Vec<String>, Vec<String>) = old.into_iter().unzip();
            // Lock the final deliveries, so that a concurrent requeue waits for this batch
            // (and then finds its delivery gone) instead of racing it. Unfinished rows, the
            // only ones claims touch, are never locked here.
            let finished: Vec<IdRow> = diesel::sql_query(
                "SELECT d.id FROM deliveries AS d \
                 JOIN unnest($1::uuid[], $2::uuid[]) AS old (wallet_id, event_id) \
                   ON d.wallet_id = old.wallet_id AND d.event_id = old.event_id \
                 WHERE d.due_at IS NULL \
                 FOR UPDATE OF d",
            )
            .bind::<Array<Id>, _>(sql_ids(&wallets))
            .bind::<Array<Id>, _>(sql_ids(&ids))
            .load(c)
            .await?;
            let finished: Vec<String> = finished.into_iter().map(|row| row.id).collect();
            let attempts_removed = diesel::delete(
                attempts::table.filter(attempts::delivery_id.eq_any(sql_ids(&finished))),
            )
            .execute(c)
            .await?;
            let deliveries_removed =
                diesel::delete(deliveries::table.filter(deliveries::id.eq_any(sql_ids(&finished))))
                    .execute(c)
                    .await?;
            let events_removed = diesel::sql_query(
                "DELETE FROM events AS e \
                 USING unnest($1::uuid[], $2::uuid[]) AS old (wallet_id, id) \
                 WHERE e.wallet_id = old.wallet_id AND e.id = old.id \
                   AND NOT EXISTS (SELECT 1 FROM deliveries AS d \
                                   WHERE d.wallet_id = e.wallet_id AND d.event_id = e.id)",
            )
            .bind::<Array<Id>, _>(sql_ids(&wallets))
            .bind::<Array<Id>, _>(sql_ids(&ids))
            .execute(c)
            .await?;
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

#[cfg(feature = "testing")]
impl PgStore {
    /// Runs the claim and the next-due statement for `request` under `EXPLAIN (ANALYZE,
    /// FORMAT JSON)` in a transaction that is rolled back, so nothing is leased: the plans with
    /// what each step actually read, for tests of how much work a claim does.
    ///
    /// # Errors
    /// When a statement cannot be explained.
    pub async fn explain_analyze_claim(
        &self,
        request: &ClaimRequest,
    ) -> Result<Vec<(String, serde_json::Value)>, OutboxError> {
        use crate::queries::Explain;
        let owner = LeaseOwner("explain".to_owned());
        let leased_until = webhook_domain::add_saturating(request.now, request.lease);
        let mut c = self.conn().await.map_err(classified)?;
        let mut plans = Vec::new();
        let explained = c
            .transaction::<(), AdapterError, _>(async |c| {
                let prefix = "EXPLAIN (ANALYZE, FORMAT JSON) ";
                let claim: Vec<String> =
                    Explain::<_, Text>::new(prefix, claim_statement(request, leased_until, &owner))
                        .load(c)
                        .await?;
                let next: Vec<String> =
                    Explain::<_, Text>::new(prefix, next_due_statement(request.now, &request.skip))
                        .load(c)
                        .await?;
                for (name, text) in [("claim", claim), ("next due", next)] {
                    let plan =
                        serde_json::from_str(&text.concat()).map_err(AdapterError::corrupt)?;
                    plans.push((name.to_owned(), plan));
                }
                // Nothing of the claim may stay.
                Err(AdapterError::NotFound)
            })
            .await;
        match explained {
            Err(AdapterError::NotFound) => Ok(plans),
            Err(e) => Err(port(e)),
            Ok(()) => unreachable!("the transaction always rolls back"),
        }
    }
}

#[cfg(feature = "testing")]
impl PgStore {
    /// The console's reads run under `EXPLAIN (ANALYZE, FORMAT JSON)`: the delivery search
    /// (each filter, a page after `cursor`), a webhook's stats over 24 hours and the attempts
    /// of the last minute, as (name, plan) pairs, with what each step read.
    ///
    /// # Errors
    /// When a statement cannot be explained.
    pub async fn explain_console_queries(
        &self,
        wallet: WalletId,
        webhook: WebhookId,
        event_type: &str,
        cursor: webhook_ports::SearchPosition,
    ) -> Result<Vec<(String, serde_json::Value)>, OutboxError> {
        use crate::queries::{
            Explain, deliveries_search, deliveries_search_by_type, event_types_of_page,
        };
        const PREFIX: &str = "EXPLAIN (ANALYZE, FORMAT JSON) ";
        let mut c = self.conn().await.map_err(classified)?;
        let mut texts: Vec<(String, Vec<String>)> = Vec::new();
        for (name, search, range) in crate::queries::console_searches(webhook, event_type, cursor) {
            let limit = search.limit;
            let text = match &search.event_type {
                Some(kind) => {
                    let query = deliveries_search_by_type!(wallet, &search, kind, range, limit);
                    Explain::<_, Text>::new(PREFIX, query).load(&mut c).await
                }
                None => {
                    let query = deliveries_search!(wallet, &search, range, limit);
                    Explain::<_, Text>::new(PREFIX, query).load(&mut c).await
                }
            };
            texts.push((name, text.map_err(classified)?));
        }
        // A page a thousandth of the loaded events, as a page of 50 of 50,000.
        let page: Vec<String> = (0..5).map(|_| uuid::Uuid::new_v4().to_string()).collect();
        let plan = Explain::<_, Text>::new(PREFIX, event_types_of_page!(wallet, &page));
        texts.push((
            "event types of a page".to_owned(),
            plan.load(&mut c).await.map_err(classified)?,
        ));
        let until = cursor.created_at;
        let window = crate::queries::console_stats_window(until);
        let id = webhook.to_string();
        let sql = crate::queries::stats_sql(|n| format!("${n}"), "/", "BIGINT");
        let plan = Explain::<_, Text>::new(
            PREFIX,
            crate::queries::bind_stats!(diesel::sql_query(sql), &id, &window),
        );
        texts.push((
            "webhook stats".to_owned(),
            plan.load(&mut c).await.map_err(classified)?,
        ));
        let plan = Explain::<_, Text>::new(
            PREFIX,
            attempts::table
                .filter(attempts::started_at.ge(micros(until)))
                .count(),
        );
        texts.push((
            "attempts of the last minute".to_owned(),
            plan.load(&mut c).await.map_err(classified)?,
        ));
        texts
            .into_iter()
            .map(|(name, text)| {
                serde_json::from_str(&text.concat())
                    .map(|plan| (name, plan))
                    .map_err(|e| port(AdapterError::corrupt(e)))
            })
            .collect()
    }
}

#[cfg(feature = "testing")]
impl PgStore {
    /// The plans PostgreSQL chooses for the hot statements (the claim, a batch of outcomes, the
    /// delivery listings, the attempts of a listed page, a redelivery step, the next due time,
    /// the backlog, a pruning batch),
    /// as (name, plan) pairs, for tests that check they read indexes rather than whole tables.
    ///
    /// # Errors
    /// When a statement cannot be explained.
    pub async fn explain_hot_queries(
        &self,
        wallet: WalletId,
        event: EventId,
        webhook: WebhookId,
        prune_before: OffsetDateTime,
    ) -> Result<Vec<(String, String)>, OutboxError> {
        use crate::queries::Explain;
        // A batch a thousandth of the loaded table, as 500 would be of half a million rows:
        // for a batch close to the table's size a full scan is rightly cheaper.
        const BATCH: u32 = 50;
        let mut c = self.conn().await.map_err(classified)?;
        let now = OffsetDateTime::now_utc();
        let owner = LeaseOwner("explain".to_owned());
        let mut plans = Vec::new();
        let mut add =
            |name: &str, lines: Vec<String>| plans.push((name.to_owned(), lines.join("\n")));

        let plan = Explain::<_, Text>::new(
            "EXPLAIN ",
            claim_statement(
                &ClaimRequest {
                    now,
                    lease: Duration::ZERO,
                    limit: BATCH,
                    per_target: 32,
                    skip: vec![webhook],
                },
                now,
                &owner,
            ),
        );
        add("claim", plan.load(&mut c).await.map_err(classified)?);

        let sample: Vec<Delivery> = (0..BATCH)
            .map(|_| {
                Delivery::restore(
                    DeliveryId::from_uuid(uuid::Uuid::new_v4()),
                    event,
                    webhook,
                    now,
                    1,
                    1,
                    DeliveryState::Delivered { at: now },
                )
            })
            .collect();
        let records: Vec<AttemptRecord> = sample
            .into_iter()
            .map(|delivery| AttemptRecord {
                delivery,
                attempt: AttemptLog {
                    number: 1,
                    started_at: now,
                    duration: Duration::from_millis(1),
                    detail: webhook_domain::AttemptDetail::Response {
                        status: 200,
                        retry_after: None,
                    },
                    response_excerpt: None,
                    error: None,
                },
            })
            .collect();
        let plan = Explain::<_, Text>::new("EXPLAIN ", outcomes_statement(&records, "explain"));
        add(
            "record outcomes",
            plan.load(&mut c).await.map_err(classified)?,
        );

        let filters = crate::queries::listing_filters(event, webhook);
        for (name, filter) in filters {
            let query = deliveries_listing!(wallet, &filter, Page::first(100));
            let plan = Explain::<_, Text>::new("EXPLAIN ", query);
            add(name, plan.load(&mut c).await.map_err(classified)?);
        }

        let window = JobWindow {
            wallet_id: wallet.to_string(),
            webhook_id: webhook.to_string(),
            since: 0,
            until: micros(now),
            created_at: micros(now),
        };
        let step = redelivery_batch!(&window, BATCH).for_update().skip_locked();
        let plan = Explain::<_, Text>::new("EXPLAIN ", step);
        add(
            "redelivery step",
            plan.load(&mut c).await.map_err(classified)?,
        );

        // A page a thousandth of the table, as above.
        let page: Vec<DeliveryId> = (0..BATCH)
            .map(|_| DeliveryId::from_uuid(uuid::Uuid::new_v4()))
            .collect();
        let plan =
            Explain::<_, Text>::new("EXPLAIN ", recent_attempts_statement(wallet, &page, 100));
        add(
            "attempts of a page",
            plan.load(&mut c).await.map_err(classified)?,
        );

        // A batch a thousandth of the loaded events, as above.
        let wallets = [wallet.to_string()];
        let ids: Vec<String> = (0..BATCH / 10)
            .map(|_| uuid::Uuid::new_v4().to_string())
            .collect();
        let plan = Explain::<_, Text>::new(
            "EXPLAIN ",
            earlier_events!(&wallets, &ids, &ids)
                .select((event_summary!(), events::idempotency_key)),
        );
        add(
            "events a batch publish replays",
            plan.load(&mut c).await.map_err(classified)?,
        );

        let plan = Explain::<_, Text>::new("EXPLAIN ", next_due_statement(now, &[webhook]));

        add("next due", plan.load(&mut c).await.map_err(classified)?);

        let plan = Explain::<_, Text>::new("EXPLAIN ", backlog!(micros(now)));
        add("backlog", plan.load(&mut c).await.map_err(classified)?);

        let plan = Explain::<_, Text>::new(
            "EXPLAIN ",
            prune_candidates!(micros(prune_before), 1000_u32),
        );
        add(
            "prune candidates",
            plan.load(&mut c).await.map_err(classified)?,
        );
        Ok(plans)
    }
}
