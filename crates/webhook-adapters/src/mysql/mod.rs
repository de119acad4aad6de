//! The MySQL adapter (MySQL 8, MariaDB 10.6 and later): every port over one database, for
//! several instances at once.
//!
//! Connections are diesel-async `AsyncMysqlConnection`s (`mysql_async`, no libmysqlclient) in
//! a bb8 pool, each set to `READ COMMITTED`, as PostgreSQL runs: a statement sees what
//! committed before it, so a publish that lost a race on an event id reads the winner's event,
//! and locking reads take no gap locks. Claims lock the rows they take with `FOR UPDATE SKIP
//! LOCKED` inside one transaction ([`claims`]), so concurrent claimers never get the same row
//! and never wait for each other. Publishes lock their targets' rows (ordered targets'
//! exclusively, for their `last_seq`; the others shared) so that a delete or disable is
//! ordered with them. There is no channel between instances: [`StorageLifecycle::
//! watch_changes`] answers `None` and other instances learn of publishes at their next poll.
//!
//! MariaDB has no `FOR SHARE`: shared locks are taken with `LOCK IN SHARE MODE`, which both
//! servers accept ([`SharedLock`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use diesel::mysql::Mysql;
use diesel::query_builder::{AstPass, BoxedSqlQuery, Query, QueryFragment, QueryId, SqlQuery};
use diesel::{
    BoolExpressionMethods, ExpressionMethods, OptionalExtension, QueryDsl, QueryResult,
    QueryableByName, SelectableHelper,
};
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::bb8::{Pool, PooledConnection};
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::{AsyncConnection, AsyncMysqlConnection, RunQueryDsl, SimpleAsyncConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use time::OffsetDateTime;
use webhook_domain::{
    ApiKeyHash, ApiKeyTag, CancelReason, Delivery, DeliveryId, DeliveryStateKind, Entity, EntityId,
    Event, EventId, RedeliveryJob, RedeliveryJobId, Wallet, WalletId, Webhook, WebhookId,
    WebhookScope,
};
use webhook_ports::{
    AttemptLog, AttemptRecord, Backlog, ChangeListener, ClaimRequest, ClaimedDelivery,
    DeliveryFilter, DeliveryQueue, DeliverySearch, EventOutbox, FoundDelivery, Idempotency,
    LeaseOwner, OutboxError, Overview, Page, Pruned, PublishItem, Published, RecentAttempts,
    RedeliveryJobs, Retention, StatsWindow, StorageError, StorageLifecycle, StoredApiKey,
    WalletRepository, WalletStoreError, Watch, WebhookRepository, WebhookStats, WebhookStoreError,
};

mod claims;
mod errors;
#[cfg(feature = "testing")]
mod test_database;

#[cfg(feature = "testing")]
pub(crate) use errors::is_lock_conflict;
#[cfg(feature = "testing")]
pub use test_database::MysqlTestDatabase;

use crate::PoolState;
use crate::port_errors::Classified;
use crate::publishing::{PublishScope, first_publish};
use crate::queries::{
    cancel_unleased, leased_until, prune_candidates, publish_targets, redelivery_batch,
    redelivery_candidates,
};
// The shared statements run these; the plans of the hot queries show them (tests only).
#[cfg(feature = "testing")]
use crate::queries::{backlog, deliveries_listing};
use crate::reachability::Reachability;
use crate::rows::{
    AdapterError, DeliveryRow, DeliveryStateChange, EntityRow, EventRow, JobProgressChange,
    JobWindow, NewAdminToken, NewAttempt, NewEvent, NewRedeliveryJob, RecentAttemptRow,
    RedeliveryJobRow, TARGET_NOT_LIVE, WebhookRow, WebhookSettingsChange, conflict_if_taken,
    delivery_select, event_select, from_micros, group_recent_attempts, is_foreign_key_violation,
    is_unique_violation, job_stop_reason, micros, requeue_all, revision_column, row_to_delivery,
    row_to_event, row_to_webhook, webhook_columns, webhook_select,
};
use crate::schema::{
    admin_token, api_keys, attempts, deliveries, entities, events, redelivery_jobs, wallets,
    webhooks,
};
use crate::sql_id::{Id, sql_id, sql_ids};

/// The statements both backends run alike ([`crate::statements`]), for MySQL's connection.
mod statements {
    crate::statements::shared_statements!(
        diesel_async::AsyncMysqlConnection, diesel_async; [async]; [.await]
    );
}

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/mysql");

/// The named lock (`GET_LOCK`) that instances migrating at once take turns on.
const MIGRATION_LOCK: &str = "webhookd_migrations";
/// The named lock under which instances starting together replace the global webhook.
const GLOBAL_WEBHOOK_LOCK: &str = "webhookd_global_webhook";
/// The longest wait for a named lock, seconds.
const NAMED_LOCK_TIMEOUT_S: i32 = 60;

/// An error of this store with its driver error classified as MySQL's: what becomes a port's
/// error (by `?`, or by [`port`]).
fn classified(e: impl Into<AdapterError>) -> Classified {
    Classified::new(e.into(), errors::driver_fault)
}

/// A port's error for an error of this store.
fn port<E: From<Classified>>(e: impl Into<AdapterError>) -> E {
    classified(e).into()
}

/// How many times a transaction runs at most when InnoDB ends it for a lock conflict.
const LOCK_CONFLICT_TRIES: u32 = 3;

/// The pause before running again a transaction that InnoDB ended for a lock conflict: a few
/// milliseconds, jittered so that the two sides of a deadlock do not meet again in step.
async fn lock_conflict_pause(tries: u32) {
    use std::hash::BuildHasher;
    // A random value without a random-number crate: std seeds each `RandomState` afresh.
    let jitter = std::collections::hash_map::RandomState::new().hash_one(tries) % 16;
    let ms = (5 + jitter) * u64::from(tries);
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// Runs `$work` (an async closure of the connection) in a transaction on the connection
/// `$conn`, and runs it again, up to [`LOCK_CONFLICT_TRIES`] times in all, when InnoDB ends
/// it for a deadlock (1213) or a lock wait timeout (1205): MySQL's manual asks applications
/// to retry such transactions, and whatever the statements' lock order, InnoDB's locks on
/// index entries and gaps leave some cycles possible. The transaction was rolled back (by
/// InnoDB, or by diesel when the work returned the error), so nothing of the failed run
/// remains; the work must have no effect outside the transaction. A macro, not a function:
/// each run needs a fresh closure, and a closure called several times could not hand diesel
/// the `Send` future it asks for. Evaluates to a future of the transaction's result.
macro_rules! retried_transaction {
    ($conn:expr, $work:expr) => {
        async {
            let mut tries = 1;
            loop {
                match $conn.transaction::<_, AdapterError, _>($work).await {
                    Err(AdapterError::Db(e))
                        if tries < LOCK_CONFLICT_TRIES && errors::is_lock_conflict(&e) =>
                    {
                        tracing::debug!(error = %e, tries, "lock conflict; running the transaction again");
                        lock_conflict_pause(tries).await;
                        tries += 1;
                    }
                    done => break done,
                }
            }
        }
    };
}

/// The most rows written by one multi-row insert: MySQL allows 65,535 placeholders in a
/// statement, and a delivery takes 13.
const INSERT_CHUNK: usize = 4_000;

/// The longest wait for a pooled connection.
const POOL_TIMEOUT: Duration = Duration::from_secs(10);
/// Once the server has refused a connection attempt, how much longer a caller waits for a
/// connection before it is told the database is unavailable (as PostgreSQL's store does).
const AFTER_REFUSAL: Duration = Duration::from_millis(500);

/// What every pooled connection runs first: each statement sees what committed before it, and
/// locking reads lock the rows they return, not the gaps between them.
const SESSION_SETUP: &str = "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED";
/// And then: the server's messages in English, whatever its `lc_messages`, since a lock
/// conflict is told by its message (see `errors`).
const SESSION_MESSAGES: &str = "SET SESSION lc_messages = 'en_US'";

type Conn = AsyncMysqlConnection;

/// Every port over one MySQL (or MariaDB) database.
#[derive(Clone)]
pub struct MysqlStore {
    pool: Pool<Conn>,
    pool_size: u32,
    reachability: Reachability,
    url: Arc<str>,
    #[cfg(feature = "testing")]
    faults: Arc<crate::testing::Faults>,
}

impl std::fmt::Debug for MysqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: never shown.
        f.debug_struct("MysqlStore")
            .field("pool", &self.pool.state())
            .finish_non_exhaustive()
    }
}

/// Why the MySQL store could not be opened or migrated. The messages never include the
/// database URL, which may hold a password.
#[derive(Debug, thiserror::Error)]
pub enum MysqlOpenError {
    #[error("cannot connect to MySQL: {0}")]
    Connect(String),
    #[error("cannot migrate the MySQL database: {0}")]
    Migrate(String),
}

impl From<MysqlOpenError> for StorageError {
    fn from(e: MysqlOpenError) -> Self {
        Self(Box::new(e))
    }
}

impl MysqlStore {
    /// Pools up to `pool_size` connections to the database at `url` (`mysql://...` or
    /// `mariadb://...`) and checks that one can be made. Does not migrate: see
    /// [`Self::migrate`].
    ///
    /// # Errors
    /// [`MysqlOpenError::Connect`] when the server cannot be reached or refuses the login.
    pub async fn connect(url: &str, pool_size: u32) -> Result<Self, MysqlOpenError> {
        let url = driver_url(url);
        let mut config = ManagerConfig::<Conn>::default();
        config.custom_setup = Box::new(|url| {
            let url = url.to_owned();
            Box::pin(async move {
                let mut conn = Conn::establish(&url).await?;
                for setup in [SESSION_SETUP, SESSION_MESSAGES] {
                    conn.batch_execute(setup)
                        .await
                        .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                }
                Ok(conn)
            })
        });
        let manager = AsyncDieselConnectionManager::<Conn>::new_with_config(&url, config);
        let pool_size = pool_size.max(1);
        let reachability = Reachability::new();
        let pool = Pool::builder()
            .max_size(pool_size)
            .connection_timeout(POOL_TIMEOUT)
            .retry_connection(false)
            // As PostgreSQL's pool: no round trip before each use; a connection the server
            // dropped fails its next statement, which the caller sees as unavailable storage.
            .test_on_check_out(false)
            .error_sink(Box::new(reachability.clone()))
            .connection_customizer(Box::new(reachability.clone()))
            .build(manager)
            .await
            .map_err(|e| MysqlOpenError::Connect(e.to_string()))?;
        let store = Self {
            pool,
            pool_size,
            reachability,
            url: Arc::from(url.as_str()),
            #[cfg(feature = "testing")]
            faults: Arc::default(),
        };
        // bb8 builds lazily: prove now that the server answers.
        store
            .conn()
            .await
            .map_err(|e| MysqlOpenError::Connect(e.to_string()))?;
        Ok(store)
    }

    /// Applies the pending embedded migrations, one instance at a time (a named lock), and
    /// returns the versions applied.
    ///
    /// # Errors
    /// [`MysqlOpenError::Migrate`] naming the failure.
    pub async fn migrate(&self) -> Result<Vec<String>, MysqlOpenError> {
        self.with_migration_harness(|c| {
            c.run_pending_migrations(MIGRATIONS)
                .map(|done| done.iter().map(ToString::to_string).collect())
        })
        .await
    }

    /// The versions of the embedded migrations not yet applied.
    ///
    /// # Errors
    /// [`MysqlOpenError::Migrate`] when the migration table cannot be read.
    pub async fn pending_migrations(&self) -> Result<Vec<String>, MysqlOpenError> {
        self.with_migration_harness(|c| {
            c.pending_migrations(MIGRATIONS)
                .map(|pending| pending.iter().map(|m| m.name().to_string()).collect())
        })
        .await
    }

    /// diesel's migration harness is synchronous: run it on a blocking thread over a dedicated
    /// connection, holding the migration lock (`GET_LOCK`, released when the connection ends
    /// if not before).
    async fn with_migration_harness<F>(&self, work: F) -> Result<Vec<String>, MysqlOpenError>
    where
        F: FnOnce(&mut AsyncConnectionWrapper<Conn>) -> diesel::migration::Result<Vec<String>>
            + Send
            + 'static,
    {
        let url = self.url.clone();
        tokio::task::spawn_blocking(move || {
            use diesel::sql_types::{Integer, Text};
            let fail = |e: &dyn std::fmt::Display| MysqlOpenError::Migrate(e.to_string());
            let mut c: AsyncConnectionWrapper<Conn> =
                diesel::Connection::establish(&url).map_err(|e| fail(&e))?;
            let get = diesel::sql_query("SELECT GET_LOCK(?, ?) AS got")
                .bind::<Text, _>(MIGRATION_LOCK)
                .bind::<Integer, _>(NAMED_LOCK_TIMEOUT_S);
            let got: LockAnswer =
                diesel::RunQueryDsl::get_result(get, &mut c).map_err(|e| fail(&e))?;
            if got.got != Some(1) {
                return Err(MysqlOpenError::Migrate(format!(
                    "another instance held the migration lock for {NAMED_LOCK_TIMEOUT_S} s"
                )));
            }
            let result = work(&mut c).map_err(|e| fail(&e));
            let release =
                diesel::sql_query("SELECT RELEASE_LOCK(?) AS got").bind::<Text, _>(MIGRATION_LOCK);
            let _ = diesel::RunQueryDsl::get_result::<LockAnswer>(release, &mut c);
            result
        })
        .await
        .map_err(|e| MysqlOpenError::Migrate(e.to_string()))?
    }

    /// The connection pool's numbers now (no I/O), for monitoring. The migration harness uses
    /// a connection of its own, outside the pool.
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
    /// connection attempt ([`AFTER_REFUSAL`]).
    async fn conn(&self) -> Result<PooledConnection<'_, Conn>, AdapterError> {
        let refused = async {
            let reason = self.reachability.until_refused().await;
            tokio::time::sleep(AFTER_REFUSAL).await;
            reason
        };
        tokio::select! {
            biased;
            got = self.pool.get() => got.map_err(|e| AdapterError::Unavailable(e.to_string())),
            reason = refused => Err(AdapterError::Unavailable(format!(
                "the server refused the last connection attempt: {reason}"
            ))),
        }
    }
}

/// The answer of `GET_LOCK` and `RELEASE_LOCK`: 1 when taken (released), 0 on a timeout,
/// NULL on an error.
#[derive(QueryableByName)]
struct LockAnswer {
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Integer>)]
    got: Option<i32>,
}

/// `url` as `mysql_async` takes it: a `mariadb://` URL is a `mysql://` one.
fn driver_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("mariadb") => {
            format!("mysql://{rest}")
        }
        _ => url.to_owned(),
    }
}

/// `host:port/database` of a MySQL URL, without the user, password and options.
fn location(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.split('?').next().unwrap_or_default();
    rest.rsplit_once('@').map_or(rest, |(_, h)| h)
}

/// MySQL in the registry: `mysql://` or `mariadb://` URLs, as `mysql_async` takes them.
pub(crate) const BACKEND: crate::StorageBackend = crate::StorageBackend {
    name: "MySQL",
    schemes: &["mysql", "mariadb"],
    example: "mysql://root@127.0.0.1:3306/webhookd",
    check: |url| {
        let database = location(url).split_once('/').map(|(_, db)| db);
        match database {
            Some(db) if !db.is_empty() => Ok(()),
            _ => Err(
                "mysql:// needs a host and a database, as in mysql://root@127.0.0.1:3306/webhookd"
                    .to_owned(),
            ),
        }
    },
    describe: |url| format!("MySQL at {}", location(url)),
    open: |url, pool_size| {
        Box::pin(async move {
            let store = MysqlStore::connect(&url, pool_size)
                .await
                .map_err(StorageError::from)?;
            Ok(Arc::new(store) as Arc<dyn webhook_ports::Storage>)
        })
    },
    #[cfg(feature = "testing")]
    testing: crate::testing::TestSupport {
        // A database of its own, dropped with the guard.
        fresh: |_dir| {
            Box::pin(async move {
                let database = MysqlTestDatabase::create().await?;
                Some(crate::testing::FreshDatabase {
                    url: database.url(),
                    guard: Box::new(database),
                })
            })
        },
        snapshot: |url| Box::pin(async move { test_database::snapshot(&url).await }),
    },
};

/// `query` read with shared row locks held to the end of the transaction: `LOCK IN SHARE
/// MODE`, which MySQL and MariaDB both take (MariaDB has no `FOR SHARE`).
#[derive(Debug, Clone)]
struct SharedLock<Q>(Q);

impl<Q: QueryFragment<Mysql>> QueryFragment<Mysql> for SharedLock<Q> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Mysql>) -> QueryResult<()> {
        self.0.walk_ast(out.reborrow())?;
        out.push_sql(" LOCK IN SHARE MODE");
        Ok(())
    }
}

impl<Q> QueryId for SharedLock<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for SharedLock<Q> {
    type SqlType = Q::SqlType;
}

#[async_trait]
impl StorageLifecycle for MysqlStore {
    async fn migrate(&self) -> Result<Vec<String>, StorageError> {
        MysqlStore::migrate(self).await.map_err(StorageError::from)
    }

    async fn pending_migrations(&self) -> Result<Vec<String>, StorageError> {
        MysqlStore::pending_migrations(self)
            .await
            .map_err(StorageError::from)
    }

    fn pool_state(&self) -> PoolState {
        MysqlStore::pool_state(self)
    }

    /// None: MySQL has no notification channel between sessions. An instance's own API tells
    /// its dispatcher; other instances learn at their next poll.
    fn watch_changes(&self, _listener: Arc<dyn ChangeListener>) -> Option<Watch> {
        None
    }
}

#[async_trait]
impl WalletRepository for MysqlStore {
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
        // The foreign key refuses an unknown wallet; no separate read needed.
        let inserted = diesel::insert_into(api_keys::table)
            .values((
                api_keys::wallet_id.eq(sql_id(key.wallet_id)),
                api_keys::tag.eq(key.hash.tag.0.as_slice()),
                api_keys::salt.eq(key.hash.salt.as_slice()),
                api_keys::digest.eq(key.hash.digest.as_slice()),
                api_keys::created_at.eq(micros(key.created_at)),
            ))
            .execute(&mut c)
            .await;
        match inserted {
            Ok(_) => Ok(()),
            Err(e) if is_foreign_key_violation(&e) => Err(WalletStoreError::NotFound),
            Err(e) => Err(port(e)),
        }
    }

    async fn find_api_keys(&self, tag: ApiKeyTag) -> Result<Vec<StoredApiKey>, WalletStoreError> {
        let mut c = self.conn().await.map_err(classified)?;
        statements::api_keys_tagged(&mut c, tag).await.map_err(port)
    }

    async fn create_entity(&self, entity: &Entity) -> Result<(), WalletStoreError> {
        let mut c = self.conn().await.map_err(classified)?;
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
        // Of racing inserts of the one row, the first stores it; the others find its key
        // taken and store nothing.
        let inserted = diesel::insert_into(admin_token::table)
            .values(NewAdminToken::of(hash, now))
            .execute(&mut c)
            .await;
        match inserted {
            Ok(n) => Ok(n == 1),
            Err(e) if is_unique_violation(&e) => Ok(false),
            Err(e) => Err(port(e)),
        }
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

/// Cancels the unfinished deliveries of one webhook that no live lease holds: a delivery in
/// flight ends with its attempt, and what its holder leaves unfinished is cancelled by
/// [`DeliveryQueue::settle_target`] or by the next claim that meets the webhook.
///
/// The ids are read first, without locks, and each row is then cancelled by primary key in id
/// order, its condition checked again on the row as it is then. One `UPDATE` with the
/// condition (as the other backends run it) goes through a secondary index such as
/// `deliveries_claimable`, and InnoDB locks the index entry before the row; an outcome's
/// `UPDATE` by primary key locks the row, then the index entries of the due time it changes.
/// The two deadlocked (error 1213). Here every writer of unfinished deliveries takes the rows
/// first, in id order ([`DeliveryQueue::record_attempts`], [`DeliveryQueue::release`]), and
/// the index entries only by changing its own rows. A row leased after the read keeps its
/// lease (the condition is checked again); one whose lease ends after it is cancelled by the
/// next settle or claim, as when the lease ends after the cancel.
async fn cancel_deliveries_of(
    c: &mut Conn,
    webhook: &str,
    reason: CancelReason,
    now: OffsetDateTime,
) -> Result<(), AdapterError> {
    let mut ids: Vec<String> = crate::queries::unleased_of!(webhook, now)
        .select(deliveries::id)
        .load(c)
        .await?;
    ids.sort_unstable();
    for id in &ids {
        // `id = ?` is a unique lookup: the row is locked through the primary key, whatever
        // else the condition names.
        cancel_unleased!(webhook, reason, now)
            .filter(deliveries::id.eq(sql_id(id)))
            .execute(c)
            .await?;
    }
    Ok(())
}

/// Locks a webhook's row against publishes (which read their targets with shared locks)
/// until the end of the transaction: a publish that read the webhook before commits first,
/// and is seen by what follows; one that comes after sees the change.
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

/// Takes the named lock `name` for this connection's session, waiting up to
/// [`NAMED_LOCK_TIMEOUT_S`].
async fn get_named_lock(c: &mut Conn, name: &str) -> Result<(), AdapterError> {
    use diesel::sql_types::{Integer, Text};
    let got: LockAnswer = diesel::sql_query("SELECT GET_LOCK(?, ?) AS got")
        .bind::<Text, _>(name)
        .bind::<Integer, _>(NAMED_LOCK_TIMEOUT_S)
        .get_result(c)
        .await?;
    if got.got == Some(1) {
        Ok(())
    } else {
        Err(AdapterError::Unavailable(format!(
            "the lock {name} was held by another instance for {NAMED_LOCK_TIMEOUT_S} s"
        )))
    }
}

/// Releases the named lock `name` of this connection's session.
async fn release_named_lock(c: &mut Conn, name: &str) -> Result<(), AdapterError> {
    use diesel::sql_types::Text;
    let _: LockAnswer = diesel::sql_query("SELECT RELEASE_LOCK(?) AS got")
        .bind::<Text, _>(name)
        .get_result(c)
        .await?;
    Ok(())
}

/// Places the unfinished deliveries of `webhook` (whose row the caller holds locked) that have
/// no place in its sequence at its end, in the order they were stored.
async fn number_unordered(c: &mut Conn, webhook: &str) -> Result<(), AdapterError> {
    let waiting: Vec<String> = deliveries::table
        .filter(deliveries::webhook_id.eq(sql_id(webhook)))
        .filter(deliveries::due_at.is_not_null())
        .filter(deliveries::seq.is_null())
        .order((deliveries::created_at, deliveries::id))
        .select(deliveries::id)
        .for_update()
        .load(c)
        .await?;
    if waiting.is_empty() {
        return Ok(());
    }
    let count = i64::try_from(waiting.len()).map_err(AdapterError::corrupt)?;
    let first = draw_sequence(c, webhook, count).await?;
    for (seq, id) in (first..).zip(&waiting) {
        diesel::update(deliveries::table.find(sql_id(id)))
            .set(deliveries::seq.eq(Some(seq)))
            .execute(c)
            .await?;
    }
    Ok(())
}

/// Draws `count` sequence numbers of the ordered target `webhook` and returns the first. The
/// update locks the target's row to the end of the transaction: a concurrent publish to the
/// same target waits, so numbers follow the commit order.
async fn draw_sequence(c: &mut Conn, webhook: &str, count: i64) -> Result<i64, AdapterError> {
    diesel::update(webhooks::table.find(sql_id(webhook)))
        .set(webhooks::last_seq.eq(webhooks::last_seq + count))
        .execute(c)
        .await?;
    let last: i64 = webhooks::table
        .find(sql_id(webhook))
        .select(webhooks::last_seq)
        .first(c)
        .await?;
    Ok(last - count + 1)
}

#[async_trait]
impl WebhookRepository for MysqlStore {
    async fn create_webhook(
        &self,
        webhook: &Webhook,
        limit: Option<u32>,
    ) -> Result<(), WebhookStoreError> {
        let mut c = self.conn().await.map_err(classified)?;
        retried_transaction!(c, async |c| {
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
        retried_transaction!(c, async |c| {
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
        retried_transaction!(c, async |c| {
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
        // Instances starting together replace the global webhook one at a time: there is no
        // row to lock while there is none.
        get_named_lock(&mut c, GLOBAL_WEBHOOK_LOCK)
            .await
            .map_err(port::<WebhookStoreError>)?;
        let replaced = retried_transaction!(c, async |c| {
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
        .await;
        let released = release_named_lock(&mut c, GLOBAL_WEBHOOK_LOCK).await;
        replaced.map_err(port::<WebhookStoreError>)?;
        released.map_err(port)
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
        retried_transaction!(c, async |c| {
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
                number_unordered(c, &id).await?;
            }
            u64::try_from(revision + 1).map_err(AdapterError::corrupt)
        })
        .await
        .map_err(port)
    }
}

/// Locks the candidate targets of the wallets of `items` and keeps them in `scope`: first the
/// ordered ones exclusively (their `last_seq` is drawn later in the transaction), by primary
/// key in id order, then all of them shared, so that a delete or disable of one waits for this
/// publish, or this publish for it. The ordered ones are found by a plain read first: a
/// locking read with the condition would lock (and wait for) every target it looks at.
async fn lock_targets(
    c: &mut Conn,
    scope: &mut PublishScope,
    items: &[PublishItem],
) -> Result<(), AdapterError> {
    let mut wallets: Vec<WalletId> = items.iter().map(|i| i.event.wallet_id()).collect();
    wallets.sort_unstable();
    wallets.dedup();
    let texts: Vec<String> = wallets.iter().map(ToString::to_string).collect();
    let ordered: Vec<String> = webhooks::table
        .filter(webhooks::deleted_at.is_null())
        .filter(webhooks::enabled.eq(true))
        .filter(webhooks::ordered.eq(true))
        .filter(
            webhooks::wallet_id
                .eq_any(sql_ids(&texts))
                .or(webhooks::wallet_id.is_null()),
        )
        .select(webhooks::id)
        .load(c)
        .await?;
    if !ordered.is_empty() {
        let _: Vec<String> = webhooks::table
            .filter(webhooks::id.eq_any(sql_ids(&ordered)))
            .order(webhooks::id)
            .select(webhooks::id)
            .for_update()
            .load(c)
            .await?;
    }
    for wallet in wallets {
        let rows: Vec<WebhookRow> = SharedLock(publish_targets!(wallet.to_string()))
            .load(c)
            .await?;
        scope.add_targets(wallet, rows)?;
    }
    Ok(())
}

/// Publishes one event inside the caller's transaction, as [`EventOutbox::publish`] does: the
/// answer of an earlier publish (also one earlier in the same transaction), or the event
/// stored, with its deliveries queued in `scope` for [`insert_deliveries`]. The targets of its
/// wallet must be in `scope` ([`lock_targets`]).
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
    let deliveries = scope.fan_out(event, now);
    let inserted = diesel::insert_into(events::table)
        .values(NewEvent::of(event, idempotency, deliveries.len(), now))
        .execute(c)
        .await;
    match inserted {
        Ok(_) => {}
        // A concurrent publish of the same id or key committed first (InnoDB made this insert
        // wait for it): answer as it did. Only the statement failed; the transaction goes on,
        // and reads what committed before (READ COMMITTED).
        Err(e) if is_unique_violation(&e) => {
            return statements::earlier_publish(c, event, idempotency)
                .await?
                .ok_or_else(|| {
                    AdapterError::Conflict(format!("event id {} is taken", event.id()))
                });
        }
        Err(e) => return Err(e.into()),
    }
    scope.fault_after_event()?;
    scope.queue_deliveries(event, &deliveries, now);
    Ok(first_publish(event, deliveries.len()))
}

/// Numbers the deliveries queued in `scope` for ordered targets and inserts them all with
/// multi-row statements.
async fn insert_deliveries(c: &mut Conn, scope: &mut PublishScope) -> Result<(), AdapterError> {
    for (webhook, count) in scope.ordered_counts() {
        let first = draw_sequence(c, &webhook, count).await?;
        scope.number(&webhook, first);
    }
    for chunk in scope.deliveries().chunks(INSERT_CHUNK) {
        diesel::insert_into(deliveries::table)
            .values(chunk)
            .execute(c)
            .await?;
    }
    Ok(())
}

/// Writes a delivery's new state (lease given up) whatever its current one: for requeues,
/// which hold the row locked.
async fn write_state(c: &mut Conn, delivery: &Delivery) -> Result<(), AdapterError> {
    diesel::update(deliveries::table.find(sql_id(delivery.id())))
        .set(DeliveryStateChange::of(delivery, None))
        .execute(c)
        .await?;
    Ok(())
}

/// Writes a delivery's new state (lease given up), only while it is leased to `owner`.
/// Returns whether it was.
async fn write_leased_state(
    c: &mut Conn,
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
    .execute(c)
    .await?;
    Ok(n == 1)
}

/// The attempts of the wallet's deliveries `ids`: of each, the `per_delivery` most recent, in
/// the order they were made, with the number it has in all. The window functions number each
/// delivery's attempts from the newest and count them, so a whole page takes one statement;
/// each delivery's attempts are read through `attempts_by_delivery`.
fn recent_attempts_statement(
    wallet: WalletId,
    ids: &[String],
    per_delivery: u32,
) -> BoxedSqlQuery<'static, Mysql, SqlQuery> {
    use diesel::sql_types::BigInt;
    let placeholders = vec!["?"; ids.len()].join(", ");
    let sql = format!(
        "SELECT t.delivery_id, t.number, t.started_at, t.duration_us, t.outcome, t.status_code,
                t.response_excerpt, t.error, t.total
         FROM (
             SELECT a.id, a.delivery_id, a.number, a.started_at, a.duration_us, a.outcome,
                    a.status_code, a.response_excerpt, a.error,
                    row_number() OVER (PARTITION BY a.delivery_id ORDER BY a.id DESC) AS newer,
                    count(*) OVER (PARTITION BY a.delivery_id) AS total
             FROM deliveries AS d JOIN attempts AS a ON a.delivery_id = d.id
             WHERE d.id IN ({placeholders}) AND d.wallet_id = ?
         ) AS t
         WHERE t.newer <= ?
         ORDER BY t.delivery_id, t.id"
    );
    let mut statement = diesel::sql_query(sql).into_boxed();
    for id in ids {
        statement = statement.bind::<Id, _>(sql_id(id));
    }
    statement
        .bind::<Id, _>(sql_id(wallet))
        .bind::<BigInt, _>(i64::from(per_delivery))
}

/// The index a search without an event type reads, named to MySQL: by state
/// `deliveries_by_state`, by webhook `deliveries_by_webhook`, otherwise
/// `deliveries_by_wallet`.
fn search_index(search: &DeliverySearch) -> &'static str {
    if search.state.is_some() {
        "deliveries_by_state"
    } else if search.webhook_id.is_some() {
        "deliveries_by_webhook"
    } else {
        "deliveries_by_wallet"
    }
}

/// [`crate::queries::deliveries_search`] in MySQL's words, with its index forced: MariaDB
/// reads the wallet's prefix of the index from its end for `ORDER BY created_at DESC` (`ref`
/// access, ignoring the bound on `created_at`), which reads every newer delivery before the
/// page; and it prefers `deliveries_by_wallet` to `deliveries_by_state` by state. Named, the
/// index is read as one range from the page's first row.
fn search_statement(
    wallet: WalletId,
    search: &DeliverySearch,
    range: crate::queries::SearchRange,
    limit: u32,
) -> BoxedSqlQuery<'static, Mysql, SqlQuery> {
    use diesel::sql_types::{BigInt, Text};

    use crate::queries::SearchRange;
    let mut sql = format!(
        "SELECT id, event_id, webhook_id, state, due_at, attempts, final_at, cancel_reason, \
                first_due, attempts_made, created_at \
         FROM deliveries FORCE INDEX ({}) WHERE wallet_id = ?",
        search_index(search)
    );
    let mut conditions = Vec::new();
    if search.state.is_some() {
        conditions.push(" AND state = ?");
    }
    if search.webhook_id.is_some() {
        conditions.push(" AND webhook_id = ?");
    }
    if search.since.is_some() {
        conditions.push(" AND created_at >= ?");
    }
    if search.until.is_some() {
        conditions.push(" AND created_at < ?");
    }
    match range {
        SearchRange::All => {}
        SearchRange::TiesAfter(_) => conditions.push(" AND created_at = ? AND id < ?"),
        SearchRange::Before(_) => conditions.push(" AND created_at < ?"),
    }
    sql.extend(conditions);
    sql.push_str(" ORDER BY created_at DESC, id DESC LIMIT ?");
    let mut query = diesel::sql_query(sql)
        .into_boxed()
        .bind::<crate::sql_id::Id, _>(sql_id(wallet));
    if let Some(state) = search.state {
        query = query.bind::<Text, _>(state.as_str());
    }
    if let Some(webhook) = search.webhook_id {
        query = query.bind::<crate::sql_id::Id, _>(sql_id(webhook));
    }
    if let Some(since) = search.since {
        query = query.bind::<BigInt, _>(micros(since));
    }
    if let Some(until) = search.until {
        query = query.bind::<BigInt, _>(micros(until));
    }
    match range {
        SearchRange::All => {}
        SearchRange::TiesAfter(after) => {
            query = query
                .bind::<BigInt, _>(micros(after.created_at))
                .bind::<crate::sql_id::Id, _>(sql_id(after.id));
        }
        SearchRange::Before(at) => query = query.bind::<BigInt, _>(micros(at)),
    }
    query.bind::<BigInt, _>(i64::from(limit))
}

/// One range of a search: [`search_statement`] without an event type; with one, the shared
/// join through `events_by_type` (whose order by event time, then delivery id, MySQL sorts:
/// see `docs/api.md`).
async fn search_range(
    c: &mut Conn,
    wallet: WalletId,
    search: &DeliverySearch,
    range: crate::queries::SearchRange,
    limit: u32,
) -> Result<Vec<crate::rows::SearchRow>, AdapterError> {
    match search.event_type {
        Some(_) => statements::search_range(c, wallet, search, range, limit).await,
        None => {
            let rows: Vec<crate::rows::SearchRowByName> =
                search_statement(wallet, search, range, limit)
                    .load(c)
                    .await?;
            Ok(rows
                .into_iter()
                .map(crate::rows::SearchRowByName::into_row)
                .collect())
        }
    }
}

/// The shared statement `search_deliveries` with MySQL's [`search_range`].
async fn search_deliveries(
    c: &mut Conn,
    wallet: WalletId,
    search: &DeliverySearch,
) -> Result<Vec<FoundDelivery>, AdapterError> {
    use crate::queries::{SearchRange, event_types_of_page};
    let limit = search.limit;
    let mut rows = match search.after {
        None => search_range(c, wallet, search, SearchRange::All, limit).await?,
        Some(after) => {
            search_range(c, wallet, search, SearchRange::TiesAfter(after), limit).await?
        }
    };
    if let Some(after) = search.after {
        let missing = limit.saturating_sub(u32::try_from(rows.len()).unwrap_or(u32::MAX));
        if missing > 0 {
            let before = SearchRange::Before(after.created_at);
            rows.extend(search_range(c, wallet, search, before, missing).await?);
        }
    }
    if let Some(kind) = &search.event_type {
        return crate::rows::rows_to_found(rows, |_| Some(kind.clone()));
    }
    let mut ids: Vec<&str> = rows.iter().map(|(row, _)| row.1.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    let types: Vec<(String, String)> = event_types_of_page!(wallet, &ids).load(c).await?;
    let types = crate::rows::event_types(types)?;
    crate::rows::rows_to_found(rows, |event| types.get(event).cloned())
}

#[async_trait]
impl EventOutbox for MysqlStore {
    async fn publish(
        &self,
        event: &Event,
        idempotency: Option<Idempotency>,
        now: OffsetDateTime,
    ) -> Result<Published, OutboxError> {
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
        search_deliveries(&mut c, wallet, &search)
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
        let sql = crate::queries::stats_sql(|_| "?".to_owned(), "DIV", "SIGNED");
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
        let ids: Vec<String> = deliveries.iter().map(ToString::to_string).collect();
        let mut c = self.conn().await.map_err(classified)?;
        let rows: Vec<RecentAttemptRow> = recent_attempts_statement(wallet, &ids, per_delivery)
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
        retried_transaction!(c, async |c| {
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
            let live: Vec<bool> = SharedLock(
                webhooks::table
                    .filter(webhooks::id.eq(sql_id(&row.2)))
                    .select(webhooks::enabled.and(webhooks::deleted_at.is_null())),
            )
            .load(c)
            .await?;
            if live.into_iter().next() != Some(true) {
                return Err(AdapterError::Conflict(TARGET_NOT_LIVE.to_owned()));
            }
            let requeued = row_to_delivery(&row)?
                .requeue(now)
                .map_err(|e| AdapterError::Conflict(e.to_string()))?;
            write_state(c, &requeued).await?;
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
        retried_transaction!(c, async |c| {
            let mut scope = self.publish_scope();
            lock_targets(c, &mut scope, items).await?;
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

/// The events a claimed batch delivers: `$wallets` and `$ids` list the batch's wallets and
/// event ids (texts). Event ids are unique per wallet, so both are asked for, which lets the
/// primary key (wallet, id) find them; a pair that was not asked for may come back too, so
/// callers key what they read by both.
macro_rules! events_of_batch {
    ($wallets:expr, $ids:expr) => {
        events::table
            .filter(events::wallet_id.eq_any(sql_ids($wallets)))
            .filter(events::id.eq_any(sql_ids($ids)))
    };
}

#[async_trait]
impl RedeliveryJobs for MysqlStore {
    async fn create_redelivery_job(
        &self,
        job: &RedeliveryJob,
    ) -> Result<RedeliveryJob, OutboxError> {
        let mut c = self.conn().await.map_err(classified)?;
        retried_transaction!(c, async |c| {
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
        retried_transaction!(c, async |c| {
            // Locking the job makes steppers of one job take turns.
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
            // lock orders this step with a delete or disable.
            let webhook: Option<(bool, Option<i64>)> = SharedLock(
                webhooks::table
                    .filter(webhooks::id.eq(sql_id(job.webhook_id)))
                    .select((webhooks::enabled, webhooks::deleted_at)),
            )
            .load(c)
            .await?
            .into_iter()
            .next();
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
            for delivery in &requeued {
                write_state(c, delivery).await?;
            }
            let stepped = job.after_step(requeued.len() as u64, now);
            diesel::update(redelivery_jobs::table.find(sql_id(id)))
                .set(JobProgressChange::of(&stepped))
                .execute(c)
                .await?;
            Ok(stepped)
        })
        .await
        .map_err(port)
    }
}

#[async_trait]
impl DeliveryQueue for MysqlStore {
    async fn claim_due(
        &self,
        owner: &LeaseOwner,
        request: &ClaimRequest,
    ) -> Result<Vec<ClaimedDelivery>, OutboxError> {
        let now = request.now;
        let leased_until = webhook_domain::add_saturating(now, request.lease);
        let mut c = self.conn().await.map_err(classified)?;
        retried_transaction!(c, async |c| {
            let rows = claims::candidates(c, request).await?;
            let mut leased = Vec::with_capacity(rows.len());
            for (row, wallet) in &rows {
                // The domain's rule leases the row; one it would refuse is never handed out.
                let delivery =
                    row_to_delivery(row)?
                        .claim(now, leased_until)
                        .map_err(|refused| {
                            AdapterError::corrupt(format_args!(
                                "the claim took a delivery that the claim rule refuses: {refused}"
                            ))
                        })?;
                diesel::update(deliveries::table.find(sql_id(&row.0)))
                    .set(DeliveryStateChange::of(&delivery, Some(owner.0.clone())))
                    .execute(c)
                    .await?;
                leased.push((delivery, crate::rows::parse_id::<WalletId>(wallet)?));
            }
            if leased.is_empty() {
                return Ok(Vec::new());
            }
            // One read each for the events and the targets of the whole batch.
            let event_ids: Vec<&str> = rows.iter().map(|(r, _)| r.1.as_str()).collect();
            let mut wallets: Vec<&str> = rows.iter().map(|(_, w)| w.as_str()).collect();
            wallets.sort_unstable();
            wallets.dedup();
            let events: HashMap<(WalletId, EventId), Event> =
                events_of_batch!(&wallets, &event_ids)
                    .select(event_select!())
                    .load::<EventRow>(c)
                    .await?
                    .into_iter()
                    .map(|row| row_to_event(row).map(|e| ((e.wallet_id(), e.id()), e)))
                    .collect::<Result<_, _>>()?;
            let webhook_ids: Vec<&str> = rows.iter().map(|(r, _)| r.2.as_str()).collect();
            let targets: HashMap<WebhookId, Webhook> = webhooks::table
                .filter(webhooks::id.eq_any(sql_ids(&webhook_ids)))
                .select(webhook_select!())
                .load::<WebhookRow>(c)
                .await?
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
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.conn().await.map_err(classified)?;
        retried_transaction!(c, async |c| {
            let mut lost = Vec::new();
            let mut kept = Vec::with_capacity(records.len());
            // In id order, as every writer of unfinished rows locks them (see
            // `cancel_deliveries_of`): two transactions never wait for each other in a cycle.
            let mut records: Vec<&AttemptRecord> = records.iter().collect();
            records.sort_unstable_by_key(|r| r.delivery.id().to_string());
            for record in records {
                if write_leased_state(c, &owner.0, &record.delivery).await? {
                    kept.push(NewAttempt::of(record));
                } else {
                    lost.push(record.delivery.id());
                }
            }
            if !kept.is_empty() {
                diesel::insert_into(attempts::table)
                    .values(kept)
                    .execute(c)
                    .await?;
            }
            Ok(lost)
        })
        .await
        .map_err(port)
    }

    async fn release(&self, owner: &LeaseOwner, released: &[Delivery]) -> Result<(), OutboxError> {
        if released.is_empty() {
            return Ok(());
        }
        let mut c = self.conn().await.map_err(classified)?;
        retried_transaction!(c, async |c| {
            // In id order, as `record_attempts` writes.
            let mut released: Vec<&Delivery> = released.iter().collect();
            released.sort_unstable_by_key(|d| d.id().to_string());
            for delivery in released {
                write_leased_state(c, &owner.0, delivery).await?;
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
        let mut c = self.conn().await.map_err(classified)?;
        let next = claims::next_due(&mut c, micros(now), &skip)
            .await
            .map_err(port::<OutboxError>)?;
        next.map(from_micros).transpose().map_err(port)
    }

    async fn settle_target(
        &self,
        webhook: WebhookId,
        now: OffsetDateTime,
    ) -> Result<Option<OffsetDateTime>, OutboxError> {
        let id = webhook.to_string();
        let mut c = self.conn().await.map_err(classified)?;
        retried_transaction!(c, async |c| {
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
            cancel_deliveries_of(c, &id, reason, now).await?;
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
impl Retention for MysqlStore {
    async fn prune(&self, before: OffsetDateTime, limit: u32) -> Result<Pruned, OutboxError> {
        let mut c = self.conn().await.map_err(classified)?;
        retried_transaction!(c, async |c| {
            let old: Vec<(String, String)> =
                prune_candidates!(micros(before), limit).load(c).await?;
            if old.is_empty() {
                return Ok(Pruned::default());
            }
            // Events are keyed by (wallet, id): one round of statements per wallet of the
            // batch.
            let mut by_wallet: HashMap<String, Vec<String>> = HashMap::new();
            for (wallet, id) in old {
                by_wallet.entry(wallet).or_default().push(id);
            }
            let (mut events_removed, mut deliveries_removed, mut attempts_removed) = (0, 0, 0);
            for (wallet, ids) in &by_wallet {
                // Lock the final deliveries, so that a concurrent requeue waits for this batch
                // (and then finds its delivery gone) instead of racing it. Unfinished rows,
                // the only ones claims touch, are never locked here.
                let finished: Vec<String> = deliveries::table
                    .filter(deliveries::wallet_id.eq(sql_id(wallet)))
                    .filter(deliveries::event_id.eq_any(sql_ids(ids)))
                    .filter(deliveries::due_at.is_null())
                    .select(deliveries::id)
                    .for_update()
                    .load(c)
                    .await?;
                if !finished.is_empty() {
                    attempts_removed += diesel::delete(
                        attempts::table.filter(attempts::delivery_id.eq_any(sql_ids(&finished))),
                    )
                    .execute(c)
                    .await?;
                    deliveries_removed += diesel::delete(
                        deliveries::table.filter(deliveries::id.eq_any(sql_ids(&finished))),
                    )
                    .execute(c)
                    .await?;
                }
                events_removed += diesel::delete(
                    events::table
                        .filter(events::wallet_id.eq(sql_id(wallet)))
                        .filter(events::id.eq_any(sql_ids(ids)))
                        .filter(diesel::dsl::not(diesel::dsl::exists(
                            deliveries::table
                                .filter(deliveries::wallet_id.eq(sql_id(wallet)))
                                .filter(deliveries::event_id.eq(events::id)),
                        ))),
                )
                .execute(c)
                .await?;
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

/// The plan MySQL chooses for `query`: `EXPLAIN FORMAT=JSON`'s document.
#[cfg(feature = "testing")]
async fn plan<Q>(c: &mut Conn, query: Q) -> Result<String, AdapterError>
where
    Q: QueryFragment<Mysql> + Send,
{
    plan_with(c, "EXPLAIN FORMAT=JSON ", query).await
}

/// `query` explained with `prefix` (`EXPLAIN FORMAT=JSON `, or MariaDB's `ANALYZE FORMAT=JSON
/// `, which runs it and adds what each step read), as one JSON document.
#[cfg(feature = "testing")]
async fn plan_with<Q>(c: &mut Conn, prefix: &'static str, query: Q) -> Result<String, AdapterError>
where
    Q: QueryFragment<Mysql> + Send,
{
    use diesel::sql_types::{Nullable, Text};

    use crate::queries::Explain;
    // One document per statement. MySQL and MariaDB shape it differently, but in both each
    // table read is an object with its `table_name` and `access_type`.
    let rows: Vec<String> = Explain::<_, Nullable<Text>>::new(prefix, query)
        .load::<Option<String>>(c)
        .await?
        .into_iter()
        .flatten()
        .collect();
    Ok(rows.join("\n"))
}

#[cfg(feature = "testing")]
impl MysqlStore {
    /// The plans MySQL chooses for the hot queries (the steps of a claim, the delivery
    /// listings, a redelivery step, the backlog, a pruning batch, the events of a claimed
    /// batch, the attempts of a listed page), as (name, plan) pairs, for
    /// tests that check they read indexes rather than whole tables. Each plan is `EXPLAIN
    /// FORMAT=JSON`'s document.
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
        let mut c = self.conn().await.map_err(classified)?;
        let explained: Result<Vec<(String, String)>, AdapterError> = async {
            let c = &mut *c;
            let now = micros(OffsetDateTime::now_utc());
            let mut plans =
                claims::explain(c, "EXPLAIN FORMAT=JSON ", &webhook.to_string(), now).await?;
            plans.push(("backlog".to_owned(), plan(c, backlog!(now)).await?));
            plans.push((
                "prune candidates".to_owned(),
                plan(c, prune_candidates!(micros(prune_before), 1000_u32)).await?,
            ));
            for (name, filter) in crate::queries::listing_filters(event, webhook) {
                plans.push((
                    name.to_owned(),
                    plan(c, deliveries_listing!(wallet, &filter, Page::first(100))).await?,
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
                plan(c, redelivery_batch!(&window, 50_u32)).await?,
            ));
            let page: Vec<String> = (0..50).map(|_| uuid::Uuid::new_v4().to_string()).collect();
            plans.push((
                "events of a claimed batch".to_owned(),
                plan(
                    c,
                    events_of_batch!(&[wallet.to_string()], &page).select(event_select!()),
                )
                .await?,
            ));
            plans.push((
                "attempts of a page".to_owned(),
                plan(c, recent_attempts_statement(wallet, &page, 100)).await?,
            ));
            Ok(plans)
        }
        .await;
        explained.map_err(port)
    }

    /// Each step of a claim run at `now` for `webhook` with MariaDB's `ANALYZE FORMAT=JSON`,
    /// which runs it and reports the rows each table read gave (`r_rows`, per loop), as (name,
    /// document) pairs. MariaDB only: MySQL 8 has no such statement.
    ///
    /// # Errors
    /// When a step cannot be analysed (on MySQL, always).
    /// The plans MySQL chooses for the console's reads (see
    /// `SqliteStore::explain_console_queries`), as (name, JSON plan) pairs; with `prefix`
    /// `ANALYZE FORMAT=JSON ` on MariaDB, with what each step read.
    ///
    /// # Errors
    /// When a query cannot be explained.
    pub async fn explain_console_queries(
        &self,
        prefix: &'static str,
        wallet: WalletId,
        webhook: WebhookId,
        event_type: &str,
        cursor: webhook_ports::SearchPosition,
    ) -> Result<Vec<(String, String)>, OutboxError> {
        use crate::queries::{deliveries_search_by_type, event_types_of_page};
        let mut c = self.conn().await.map_err(classified)?;
        let explained: Result<Vec<(String, String)>, AdapterError> = async {
            let c = &mut *c;
            let mut plans = Vec::new();
            let searches = crate::queries::console_searches(webhook, event_type, cursor);
            for (name, search, range) in searches {
                let limit = search.limit;
                let explained = match &search.event_type {
                    Some(kind) => {
                        let query = deliveries_search_by_type!(wallet, &search, kind, range, limit);
                        plan_with(c, prefix, query).await?
                    }
                    None => {
                        plan_with(c, prefix, search_statement(wallet, &search, range, limit))
                            .await?
                    }
                };
                plans.push((name, explained));
            }
            // A page a thousandth of the loaded events, as a page of 50 of 50,000.
            let page: Vec<String> = (0..5).map(|_| uuid::Uuid::new_v4().to_string()).collect();
            plans.push((
                "event types of a page".to_owned(),
                plan_with(c, prefix, event_types_of_page!(wallet, &page)).await?,
            ));
            let until = cursor.created_at;
            let window = crate::queries::console_stats_window(until);
            let id = webhook.to_string();
            let sql = crate::queries::stats_sql(|_| "?".to_owned(), "DIV", "SIGNED");
            plans.push((
                "webhook stats".to_owned(),
                plan_with(
                    c,
                    prefix,
                    crate::queries::bind_stats!(diesel::sql_query(sql), &id, &window),
                )
                .await?,
            ));
            plans.push((
                "attempts of the last minute".to_owned(),
                plan_with(
                    c,
                    prefix,
                    attempts::table
                        .filter(attempts::started_at.ge(micros(until)))
                        .count(),
                )
                .await?,
            ));
            Ok(plans)
        }
        .await;
        explained.map_err(port)
    }

    pub async fn analyze_claim_steps(
        &self,
        webhook: WebhookId,
        now: OffsetDateTime,
    ) -> Result<Vec<(String, String)>, OutboxError> {
        let mut c = self.conn().await.map_err(classified)?;
        claims::explain(
            &mut c,
            "ANALYZE FORMAT=JSON ",
            &webhook.to_string(),
            micros(now),
        )
        .await
        .map_err(port)
    }
}
