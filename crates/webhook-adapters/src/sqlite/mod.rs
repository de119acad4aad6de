//! The embedded SQLite adapter: every port over one database file.
//!
//! Connections are `SyncConnectionWrapper<SqliteConnection>` from diesel-async in a bb8 pool;
//! each operation runs as one `BEGIN IMMEDIATE` transaction on a blocking thread, so writers
//! queue on SQLite's lock (with a busy timeout) instead of failing on a lock upgrade. The file
//! is in WAL mode with `synchronous=FULL`: a commit that returned is on disk.

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
};
use webhook_ports::{
    AttemptLog, AttemptRecord, ClaimedDelivery, DeliveryFilter, DeliveryQueue, EventOutbox,
    Idempotency, LeaseOwner, OutboxError, Page, Pruned, PublishItem, Published, RedeliveryJobs,
    Retention, StoredApiKey, WalletRepository, WalletStoreError, WebhookRepository,
    WebhookStoreError,
};

use crate::queries::{deliveries_listing, due_deliveries, next_due, prune_candidates};
use crate::rows::{
    AdapterError, ApiKeyRow, AttemptRow, DeliveryRow, DeliveryStateChange, EventRow, EventSummary,
    NewAttempt, NewDelivery, WebhookRow, attempt_select, delivery_select, event_select,
    event_summary, from_micros, is_unique_violation, micros, offset, replay, row_to_api_key,
    row_to_attempt, row_to_delivery, row_to_event, row_to_webhook, to_json, to_wallet,
    webhook_columns, webhook_select,
};
use crate::schema::{api_keys, attempts, deliveries, events, wallets, webhooks};

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

type Conn = SyncConnectionWrapper<SqliteConnection>;

/// Settings applied to every connection. `busy_timeout` makes a writer wait for the lock.
const CONNECTION_PRAGMAS: &str =
    "PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL;";

/// Every port over one SQLite file.
#[derive(Clone)]
pub struct SqliteStore {
    pool: Pool<Conn>,
    path: PathBuf,
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
        let pool = Pool::builder()
            .max_size(pool_size.max(1))
            .connection_timeout(Duration::from_secs(10))
            .build(manager)
            .await
            .map_err(|e| open_error(e.to_string()))?;
        Ok(Self {
            pool,
            path: path.to_owned(),
            #[cfg(feature = "testing")]
            faults: std::sync::Arc::default(),
        })
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

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `work` in one immediate (write-locking) transaction on a blocking thread.
    async fn transaction<R, F>(&self, work: F) -> Result<R, AdapterError>
    where
        R: Send + 'static,
        F: FnOnce(&mut SqliteConnection) -> Result<R, AdapterError> + Send + 'static,
    {
        let mut conn = self
            .pool
            .get()
            .await
            .map_err(|e| AdapterError::Unavailable(e.to_string()))?;
        conn.spawn_blocking(move |c| Ok(c.immediate_transaction(work)))
            .await?
    }
}

#[async_trait]
impl WalletRepository for SqliteStore {
    async fn create_wallet(&self, wallet: &Wallet) -> Result<(), WalletStoreError> {
        let row = (
            wallets::id.eq(wallet.id.to_string()),
            wallets::name.eq(wallet.name.as_str().to_owned()),
            wallets::created_at.eq(micros(wallet.created_at)),
            wallets::updated_at.eq(micros(wallet.updated_at)),
        );
        let id = wallet.id;
        self.transaction(move |c| {
            diesel::insert_into(wallets::table)
                .values(row)
                .execute(c)
                .map_err(|e| {
                    if is_unique_violation(&e) {
                        AdapterError::Conflict(format!("wallet {id}"))
                    } else {
                        e.into()
                    }
                })?;
            Ok(())
        })
        .await
        .map_err(Into::into)
    }

    async fn get_wallet(&self, id: WalletId) -> Result<Wallet, WalletStoreError> {
        self.transaction(move |c| {
            let row: (String, String, i64, i64) = wallets::table
                .find(id.to_string())
                .first(c)
                .optional()?
                .ok_or(AdapterError::NotFound)?;
            to_wallet(row)
        })
        .await
        .map_err(Into::into)
    }

    async fn list_wallets(&self, page: Page) -> Result<Vec<Wallet>, WalletStoreError> {
        self.transaction(move |c| {
            let rows: Vec<(String, String, i64, i64)> = wallets::table
                .order((wallets::created_at, wallets::id))
                .offset(offset(page))
                .limit(i64::from(page.limit))
                .load(c)?;
            rows.into_iter().map(to_wallet).collect()
        })
        .await
        .map_err(Into::into)
    }

    async fn add_api_key(&self, key: &StoredApiKey) -> Result<(), WalletStoreError> {
        let wallet = key.wallet_id.to_string();
        let row = (
            api_keys::wallet_id.eq(wallet.clone()),
            api_keys::tag.eq(key.hash.tag.0.to_vec()),
            api_keys::salt.eq(key.hash.salt.to_vec()),
            api_keys::digest.eq(key.hash.digest.to_vec()),
            api_keys::created_at.eq(micros(key.created_at)),
        );
        self.transaction(move |c| {
            let exists: i64 = wallets::table.find(&wallet).count().get_result(c)?;
            if exists == 0 {
                return Err(AdapterError::NotFound);
            }
            diesel::insert_into(api_keys::table)
                .values(row)
                .execute(c)?;
            Ok(())
        })
        .await
        .map_err(Into::into)
    }

    async fn find_api_keys(&self, tag: ApiKeyTag) -> Result<Vec<StoredApiKey>, WalletStoreError> {
        self.transaction(move |c| {
            let rows: Vec<ApiKeyRow> = api_keys::table
                .filter(api_keys::tag.eq(tag.0.to_vec()))
                .select((
                    api_keys::wallet_id,
                    api_keys::salt,
                    api_keys::digest,
                    api_keys::created_at,
                ))
                .load(c)?;
            rows.into_iter()
                .map(|row| row_to_api_key(tag, row))
                .collect()
        })
        .await
        .map_err(Into::into)
    }

    async fn create_entity(&self, _entity: &Entity) -> Result<(), WalletStoreError> {
        todo!("issue 5: adapter")
    }

    async fn get_entity(&self, _id: EntityId) -> Result<Entity, WalletStoreError> {
        todo!("issue 5: adapter")
    }

    async fn admin_token(&self) -> Result<Option<ApiKeyHash>, WalletStoreError> {
        todo!("issue 5: adapter")
    }

    async fn init_admin_token(
        &self,
        _hash: &ApiKeyHash,
        _now: OffsetDateTime,
    ) -> Result<bool, WalletStoreError> {
        todo!("issue 5: adapter")
    }
}

fn insert_webhook(c: &mut SqliteConnection, webhook: &Webhook) -> Result<(), AdapterError> {
    let w = webhook_columns(webhook);
    let id = w.id.clone();
    diesel::insert_into(webhooks::table)
        .values((
            webhooks::id.eq(w.id),
            webhooks::wallet_id.eq(w.wallet_id),
            webhooks::url.eq(w.url),
            webhooks::custom_headers.eq(w.custom_headers),
            webhooks::event_types.eq(w.event_types),
            webhooks::signing_keys.eq(w.signing_keys),
            webhooks::retry_policy.eq(w.retry_policy),
            webhooks::enabled.eq(w.enabled),
            webhooks::ordered.eq(w.ordered),
            webhooks::rate_limit.eq(w.rate_limit),
            webhooks::created_at.eq(w.created_at),
        ))
        .execute(c)
        .map_err(|e| {
            if is_unique_violation(&e) {
                AdapterError::Conflict(format!("webhook {id}"))
            } else {
                e.into()
            }
        })?;
    Ok(())
}

/// Cancels the unfinished deliveries of one webhook.
fn cancel_deliveries_of(
    c: &mut SqliteConnection,
    webhook: &str,
    reason: CancelReason,
    now: OffsetDateTime,
) -> Result<(), AdapterError> {
    diesel::update(
        deliveries::table
            .filter(deliveries::webhook_id.eq(webhook))
            .filter(deliveries::due_at.is_not_null()),
    )
    .set((
        deliveries::state.eq(DeliveryStateKind::Cancelled.as_str()),
        deliveries::due_at.eq(None::<i64>),
        deliveries::lease_owner.eq(None::<String>),
        deliveries::final_at.eq(Some(micros(now))),
        deliveries::cancel_reason.eq(Some(reason.as_str())),
    ))
    .execute(c)?;
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
                    .filter(webhooks::wallet_id.eq(wallet))
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
        .map_err(Into::into)
    }

    async fn get_webhook(
        &self,
        wallet: WalletId,
        id: WebhookId,
    ) -> Result<Webhook, WebhookStoreError> {
        self.transaction(move |c| {
            let row: WebhookRow = webhooks::table
                .filter(webhooks::id.eq(id.to_string()))
                .filter(webhooks::wallet_id.eq(wallet.to_string()))
                .filter(webhooks::deleted_at.is_null())
                .select(webhook_select!())
                .first(c)
                .optional()?
                .ok_or(AdapterError::NotFound)?;
            row_to_webhook(row)
        })
        .await
        .map_err(Into::into)
    }

    async fn list_webhooks(
        &self,
        wallet: WalletId,
        page: Page,
    ) -> Result<Vec<Webhook>, WebhookStoreError> {
        self.transaction(move |c| {
            let rows: Vec<WebhookRow> = webhooks::table
                .filter(webhooks::wallet_id.eq(wallet.to_string()))
                .filter(webhooks::deleted_at.is_null())
                .order((webhooks::created_at, webhooks::id))
                .offset(offset(page))
                .limit(i64::from(page.limit))
                .select(webhook_select!())
                .load(c)?;
            rows.into_iter().map(row_to_webhook).collect()
        })
        .await
        .map_err(Into::into)
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
                    .filter(webhooks::id.eq(&id))
                    .filter(webhooks::wallet_id.eq(wallet.to_string()))
                    .filter(webhooks::deleted_at.is_null()),
            )
            .set((
                webhooks::deleted_at.eq(Some(micros(now))),
                webhooks::enabled.eq(false),
            ))
            .execute(c)?;
            if deleted == 0 {
                return Err(AdapterError::NotFound);
            }
            cancel_deliveries_of(c, &id, CancelReason::TargetDeleted, now)
        })
        .await
        .map_err(Into::into)
    }

    async fn disable_webhook(
        &self,
        id: WebhookId,
        now: OffsetDateTime,
    ) -> Result<(), WebhookStoreError> {
        self.transaction(move |c| {
            let id = id.to_string();
            let found = diesel::update(webhooks::table.find(&id))
                .set(webhooks::enabled.eq(false))
                .execute(c)?;
            if found == 0 {
                return Err(AdapterError::NotFound);
            }
            cancel_deliveries_of(c, &id, CancelReason::TargetGone, now)
        })
        .await
        .map_err(Into::into)
    }

    async fn set_global_webhook(
        &self,
        webhook: Option<Webhook>,
        now: OffsetDateTime,
    ) -> Result<(), WebhookStoreError> {
        self.transaction(move |c| {
            let current: Option<WebhookRow> = webhooks::table
                .filter(webhooks::wallet_id.is_null())
                .filter(webhooks::deleted_at.is_null())
                .select(webhook_select!())
                .first(c)
                .optional()?;
            if let (Some(row), Some(wanted)) = (&current, &webhook)
                && row.2 == wanted.url.as_str()
                && row.3 == to_json(&wanted.custom_headers)
            {
                return Ok(());
            }
            if let Some(row) = current {
                diesel::update(webhooks::table.find(&row.0))
                    .set((
                        webhooks::deleted_at.eq(Some(micros(now))),
                        webhooks::enabled.eq(false),
                    ))
                    .execute(c)?;
                cancel_deliveries_of(c, &row.0, CancelReason::TargetDeleted, now)?;
            }
            match webhook {
                Some(wanted) => insert_webhook(c, &wanted),
                None => Ok(()),
            }
        })
        .await
        .map_err(Into::into)
    }

    async fn update_webhook(
        &self,
        _webhook: &Webhook,
        _now: OffsetDateTime,
    ) -> Result<(), WebhookStoreError> {
        todo!("issue 5: adapter")
    }
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
            .filter(deliveries::id.eq(delivery.id().to_string()))
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
        #[cfg(feature = "testing")]
        let faults = self.faults.clone();
        self.transaction(move |c| {
            let id = event.id().to_string();
            let wallet = event.wallet_id().to_string();
            // A repeated publish returns the first result.
            let by_key: Option<EventSummary> = match &idempotency {
                Some(idem) => events::table
                    .filter(events::wallet_id.eq(&wallet))
                    .filter(events::idempotency_key.eq(&idem.key))
                    .select(event_summary!())
                    .first(c)
                    .optional()?,
                None => None,
            };
            let found_by_key = by_key.is_some();
            let earlier = match by_key {
                Some(found) => Some(found),
                None => events::table
                    .find(&id)
                    .select(event_summary!())
                    .first(c)
                    .optional()?,
            };
            if let Some(earlier) = earlier {
                return replay(&event, idempotency.as_ref(), found_by_key, earlier);
            }

            let candidates: Vec<WebhookRow> = webhooks::table
                .filter(webhooks::deleted_at.is_null())
                .filter(webhooks::enabled.eq(true))
                .filter(
                    webhooks::wallet_id
                        .eq(&wallet)
                        .or(webhooks::wallet_id.is_null()),
                )
                .select(webhook_select!())
                .load(c)?;
            let mut targets = Vec::new();
            for row in candidates {
                let webhook = row_to_webhook(row)?;
                if webhook.wants(&event) {
                    targets.push(webhook.id);
                }
            }
            let count = i32::try_from(targets.len()).unwrap_or(i32::MAX);
            diesel::insert_into(events::table)
                .values((
                    events::id.eq(&id),
                    events::wallet_id.eq(&wallet),
                    events::event_type.eq(event.event_type().as_str()),
                    events::ts.eq(micros(event.ts().as_datetime())),
                    events::data.eq(to_json(event.data())),
                    events::idempotency_key.eq(idempotency.as_ref().map(|i| i.key.clone())),
                    events::fingerprint.eq(idempotency.as_ref().map(|i| i.fingerprint.clone())),
                    events::deliveries.eq(count),
                    events::created_at.eq(micros(now)),
                ))
                .execute(c)?;
            #[cfg(feature = "testing")]
            if faults.take_publish_after_event() {
                return Err(AdapterError::Injected);
            }
            let rows: Vec<NewDelivery> = targets
                .iter()
                .map(|webhook| NewDelivery::pending(&event, *webhook, now))
                .collect();
            if !rows.is_empty() {
                diesel::insert_into(deliveries::table)
                    .values(rows)
                    .execute(c)?;
            }
            Ok(Published {
                event_id: event.id(),
                deliveries: u32::try_from(count).unwrap_or_default(),
                replayed: false,
            })
        })
        .await
        .map_err(Into::into)
    }

    async fn get_event(&self, wallet: WalletId, id: EventId) -> Result<Event, OutboxError> {
        self.transaction(move |c| {
            let row: EventRow = events::table
                .filter(events::id.eq(id.to_string()))
                .filter(events::wallet_id.eq(wallet.to_string()))
                .select(event_select!())
                .first(c)
                .optional()?
                .ok_or(AdapterError::NotFound)?;
            row_to_event(row)
        })
        .await
        .map_err(Into::into)
    }

    async fn list_deliveries(
        &self,
        wallet: WalletId,
        filter: DeliveryFilter,
        page: Page,
    ) -> Result<Vec<Delivery>, OutboxError> {
        self.transaction(move |c| {
            let rows: Vec<DeliveryRow> = deliveries_listing!(wallet, &filter, page).load(c)?;
            rows.iter().map(row_to_delivery).collect()
        })
        .await
        .map_err(Into::into)
    }

    async fn list_attempts(
        &self,
        wallet: WalletId,
        delivery: DeliveryId,
    ) -> Result<Vec<AttemptLog>, OutboxError> {
        self.transaction(move |c| {
            let id = delivery.to_string();
            let owned: i64 = deliveries::table
                .filter(deliveries::id.eq(&id))
                .filter(deliveries::wallet_id.eq(wallet.to_string()))
                .count()
                .get_result(c)?;
            if owned == 0 {
                return Err(AdapterError::NotFound);
            }
            let rows: Vec<AttemptRow> = attempts::table
                .filter(attempts::delivery_id.eq(&id))
                .order(attempts::id)
                .select(attempt_select!())
                .load(c)?;
            rows.into_iter().map(row_to_attempt).collect()
        })
        .await
        .map_err(Into::into)
    }

    async fn requeue(
        &self,
        wallet: WalletId,
        delivery: DeliveryId,
        now: OffsetDateTime,
    ) -> Result<Delivery, OutboxError> {
        self.transaction(move |c| {
            let row: DeliveryRow = deliveries::table
                .filter(deliveries::id.eq(delivery.to_string()))
                .filter(deliveries::wallet_id.eq(wallet.to_string()))
                .select(delivery_select!())
                .first(c)
                .optional()?
                .ok_or(AdapterError::NotFound)?;
            let requeued = row_to_delivery(&row)?
                .requeue(now)
                .map_err(|e| AdapterError::Conflict(e.to_string()))?;
            diesel::update(deliveries::table.find(&row.0))
                .set(DeliveryStateChange::of(&requeued, None))
                .execute(c)?;
            Ok(requeued)
        })
        .await
        .map_err(Into::into)
    }

    async fn publish_batch(
        &self,
        _items: &[PublishItem],
        _now: OffsetDateTime,
    ) -> Result<Vec<Published>, OutboxError> {
        todo!("issue 5: adapter")
    }

    async fn get_delivery(
        &self,
        _wallet: WalletId,
        _delivery: DeliveryId,
    ) -> Result<Delivery, OutboxError> {
        todo!("issue 5: adapter")
    }
}

#[async_trait]
impl RedeliveryJobs for SqliteStore {
    async fn create_redelivery_job(
        &self,
        _job: &RedeliveryJob,
    ) -> Result<RedeliveryJob, OutboxError> {
        todo!("issue 5: adapter")
    }

    async fn get_redelivery_job(
        &self,
        _wallet: WalletId,
        _id: RedeliveryJobId,
    ) -> Result<RedeliveryJob, OutboxError> {
        todo!("issue 5: adapter")
    }

    async fn running_redelivery_jobs(&self) -> Result<Vec<RedeliveryJob>, OutboxError> {
        todo!("issue 5: adapter")
    }

    async fn step_redelivery_job(
        &self,
        _id: RedeliveryJobId,
        _limit: u32,
        _now: OffsetDateTime,
    ) -> Result<RedeliveryJob, OutboxError> {
        todo!("issue 5: adapter")
    }
}

#[async_trait]
impl DeliveryQueue for SqliteStore {
    async fn claim_due(
        &self,
        owner: &LeaseOwner,
        now: OffsetDateTime,
        lease: Duration,
        limit: u32,
        skip: &[WebhookId],
    ) -> Result<Vec<ClaimedDelivery>, OutboxError> {
        let owner = owner.0.clone();
        let leased_until = webhook_domain::add_saturating(now, lease);
        let skip: Vec<String> = skip.iter().map(ToString::to_string).collect();
        self.transaction(move |c| {
            let rows: Vec<DeliveryRow> = due_deliveries!(micros(now), limit, &skip).load(c)?;
            let mut leased = Vec::with_capacity(rows.len());
            for row in &rows {
                let delivery = row_to_delivery(row)?
                    .claim(now, leased_until)
                    .map_err(AdapterError::corrupt)?;
                diesel::update(deliveries::table.find(&row.0))
                    .set(DeliveryStateChange::of(&delivery, Some(owner.clone())))
                    .execute(c)?;
                leased.push(delivery);
            }
            // One read each for the events and the targets of the whole batch.
            let event_ids: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
            let events: HashMap<EventId, Event> = events::table
                .filter(events::id.eq_any(&event_ids))
                .select(event_select!())
                .load::<EventRow>(c)?
                .into_iter()
                .map(|row| row_to_event(row).map(|e| (e.id(), e)))
                .collect::<Result<_, _>>()?;
            let webhook_ids: Vec<&str> = rows.iter().map(|r| r.2.as_str()).collect();
            let targets: HashMap<WebhookId, Webhook> = webhooks::table
                .filter(webhooks::id.eq_any(&webhook_ids))
                .select(webhook_select!())
                .load::<WebhookRow>(c)?
                .into_iter()
                .map(|row| row_to_webhook(row).map(|w| (w.id, w)))
                .collect::<Result<_, _>>()?;
            leased
                .into_iter()
                .map(|delivery| {
                    let missing = |what| {
                        AdapterError::corrupt(format_args!(
                            "delivery {}: {what} missing",
                            delivery.id()
                        ))
                    };
                    Ok(ClaimedDelivery {
                        event: events
                            .get(&delivery.event_id())
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
        .map_err(Into::into)
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
        .map_err(Into::into)
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
        .map_err(Into::into)
    }

    async fn next_due_at(&self) -> Result<Option<OffsetDateTime>, OutboxError> {
        self.transaction(|c| {
            let next: Option<i64> = next_due!().first(c)?;
            next.map(from_micros).transpose()
        })
        .await
        .map_err(Into::into)
    }
}

#[async_trait]
impl Retention for SqliteStore {
    async fn prune(&self, before: OffsetDateTime, limit: u32) -> Result<Pruned, OutboxError> {
        // One immediate transaction: a requeue cannot interleave, and claims (of unfinished
        // rows, which this never touches) wait at most for this one short batch.
        self.transaction(move |c| {
            let old: Vec<String> = prune_candidates!(micros(before), limit).load(c)?;
            if old.is_empty() {
                return Ok(Pruned::default());
            }
            let finished = deliveries::table
                .filter(deliveries::event_id.eq_any(&old))
                .select(deliveries::id);
            let attempts_removed =
                diesel::delete(attempts::table.filter(attempts::delivery_id.eq_any(finished)))
                    .execute(c)?;
            let deliveries_removed =
                diesel::delete(deliveries::table.filter(deliveries::event_id.eq_any(&old)))
                    .execute(c)?;
            let events_removed =
                diesel::delete(events::table.filter(events::id.eq_any(&old))).execute(c)?;
            Ok(Pruned {
                events: events_removed as u64,
                deliveries: deliveries_removed as u64,
                attempts: attempts_removed as u64,
            })
        })
        .await
        .map_err(Into::into)
    }
}

#[cfg(feature = "testing")]
impl SqliteStore {
    /// The plans SQLite chooses for the hot queries (the claim read, the delivery listings,
    /// the next due time, a pruning batch), as (name, plan) pairs, for tests that check they
    /// search indexes rather than scan tables.
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
        use diesel::sql_types::{Integer, Text};

        use crate::queries::Explain;
        type PlanRow = (Integer, Integer, Integer, Text);
        fn plan<Q>(c: &mut SqliteConnection, query: Q) -> Result<String, AdapterError>
        where
            Q: diesel::query_builder::QueryFragment<diesel::sqlite::Sqlite>,
        {
            let rows: Vec<(i32, i32, i32, String)> =
                Explain::<_, PlanRow>::new("EXPLAIN QUERY PLAN ", query).load(c)?;
            Ok(rows.into_iter().map(|r| r.3).collect::<Vec<_>>().join("\n"))
        }
        self.transaction(move |c| {
            let now = micros(OffsetDateTime::now_utc());
            let mut plans = vec![
                (
                    "claim".to_owned(),
                    plan(c, due_deliveries!(now, 50_u32, &[] as &[String]))?,
                ),
                ("next due".to_owned(), plan(c, next_due!())?),
                (
                    "prune candidates".to_owned(),
                    plan(c, prune_candidates!(micros(prune_before), 1000_u32))?,
                ),
            ];
            let filters = crate::queries::listing_filters(event, webhook);
            for (name, filter) in filters {
                plans.push((
                    name.to_owned(),
                    plan(c, deliveries_listing!(wallet, &filter, Page::first(100)))?,
                ));
            }
            Ok(plans)
        })
        .await
        .map_err(Into::into)
    }
}
