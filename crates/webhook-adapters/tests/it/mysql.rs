//! The contract suite against `MysqlStore` (MySQL 8 or MariaDB 10.6+), plus what only this
//! backend checks: its migrations against the schema module, and two pools sharing one queue.
//!
//! Each test gets its own database ([`MysqlTestDatabase`]), so tests run in parallel. The
//! server is `WEBHOOKD_TEST_MYSQL_URL` (by default `mysql://root@127.0.0.1:3306`). When it
//! cannot be reached the tests fail under `CI=true`, and are skipped with a loud message
//! otherwise.

use std::collections::HashSet;
use std::time::Duration;

use time::OffsetDateTime;
use time::macros::datetime;
use uuid::Uuid;
use webhook_adapters::{MysqlStore, MysqlTestDatabase};
use webhook_domain::{
    AttemptDetail, CustomHeaders, DeliveryId, Event, EventId, EventType, Jitter, RetryPolicy,
    Timestamp, Wallet, WalletId, WalletName, Webhook, WebhookId, WebhookScope, WebhookUrl,
};
use webhook_ports::{
    AttemptLog, AttemptRecord, DeliveryFilter, DeliveryQueue, EventOutbox, LeaseOwner, Page,
    WalletRepository, WebhookRepository,
};

/// A migrated store in a fresh database.
pub(crate) async fn fresh() -> Option<(MysqlTestDatabase, MysqlStore)> {
    let database = MysqlTestDatabase::create().await?;
    let store = MysqlStore::connect(&database.url(), 4).await.unwrap();
    store.migrate().await.unwrap();
    Some((database, store))
}

webhook_ports::contract_suite!(fresh);

/// A publish that fails after writing its event leaves nothing (the rule needs the store's own
/// fault injection, so it is called here rather than by the suite).
#[tokio::test]
async fn publish_fault_atomicity() {
    let Some((_guard, store)) = fresh().await else {
        return;
    };
    webhook_ports::contract::publish_fault_atomicity(&store, || {
        store.faults().fail_next_publish_after_event()
    })
    .await;
}

#[tokio::test]
async fn migrate_reports_what_it_applied() {
    let Some(database) = MysqlTestDatabase::create().await else {
        return;
    };
    let store = MysqlStore::connect(&database.url(), 1).await.unwrap();
    let pending = store.pending_migrations().await.unwrap();
    assert!(!pending.is_empty());
    assert_eq!(store.migrate().await.unwrap().len(), pending.len());
    assert!(store.pending_migrations().await.unwrap().is_empty());
    assert!(store.migrate().await.unwrap().is_empty());
}

/// Instances starting together migrate one at a time (under `GET_LOCK`): each migration is
/// applied once, and every instance ends with nothing pending.
#[tokio::test]
async fn instances_migrating_at_once_apply_each_migration_once() {
    let Some(database) = MysqlTestDatabase::create().await else {
        return;
    };
    let mut stores = Vec::new();
    for _ in 0..4 {
        stores.push(MysqlStore::connect(&database.url(), 1).await.unwrap());
    }
    // Pending migrations are named by their folders, applied ones by their versions.
    let expected: Vec<String> = stores[0]
        .pending_migrations()
        .await
        .unwrap()
        .iter()
        .map(|name| name.split('_').next().unwrap().replace('-', ""))
        .collect();
    let runs = stores.iter().map(|s| s.migrate());
    let applied: Vec<Vec<String>> = futures_util::future::try_join_all(runs).await.unwrap();
    let mut all: Vec<String> = applied.iter().flatten().cloned().collect();
    all.sort();
    let pending = stores[0].pending_migrations().await.unwrap();
    assert!(pending.is_empty(), "{pending:?}");
    assert_eq!(all, expected, "each migration applied once: {applied:?}");
}

#[tokio::test]
async fn connect_error_is_clear_and_hides_the_password() {
    // Port 1 on loopback: nothing listens there.
    let err = MysqlStore::connect("mysql://me:hunter2@127.0.0.1:1/db", 1)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("cannot connect to MySQL"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

#[tokio::test]
async fn pool_state_counts_connections_up_to_the_pool_size() {
    let Some((_database, store)) = fresh().await else {
        return;
    };
    assert_eq!(store.pool_state().max, 4);
    store.next_due_at(T0, &[]).await.unwrap();
    let state = store.pool_state();
    assert!((1..=4).contains(&state.connections), "{state:?}");
    assert!(state.idle <= state.connections, "{state:?}");
}

const T0: OffsetDateTime = datetime!(2026-03-01 00:00:00 UTC);

async fn wallet_with_webhooks(store: &MysqlStore, webhooks: usize) -> WalletId {
    let wallet = Wallet {
        id: WalletId::from_uuid(Uuid::new_v4()),
        name: WalletName::new("load").unwrap(),
        created_at: T0,
        updated_at: T0,
    };
    store.create_wallet(&wallet).await.unwrap();
    for n in 0..webhooks {
        let webhook = Webhook::new(
            WebhookId::from_uuid(Uuid::new_v4()),
            WebhookScope::Wallet(wallet.id),
            WebhookUrl::parse(&format!("http://127.0.0.1:9/{n}")).unwrap(),
            CustomHeaders::default(),
            T0,
        );
        store.create_webhook(&webhook, None).await.unwrap();
    }
    wallet.id
}

fn event(wallet: WalletId) -> Event {
    Event::new(
        EventId::from_uuid(Uuid::new_v4()),
        Timestamp::from_datetime(T0),
        EventType::parse("load.test").unwrap(),
        serde_json::json!({ "n": 1 }),
        wallet,
    )
    .unwrap()
}

/// Two stores (two pools, as two instances would have) claim and complete one queue at once
/// with `FOR UPDATE SKIP LOCKED`: every delivery is leased to exactly one of them and
/// completed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pools_complete_two_thousand_deliveries_exactly_once() {
    const EVENTS: usize = 200;
    const WEBHOOKS: usize = 10;
    let Some((database, setup)) = fresh().await else {
        return;
    };
    let wallet = wallet_with_webhooks(&setup, WEBHOOKS).await;
    for _ in 0..EVENTS {
        setup.publish(&event(wallet), None, T0).await.unwrap();
    }

    let dispatcher = |name: &'static str| {
        let url = database.url();
        tokio::spawn(async move {
            let store = MysqlStore::connect(&url, 2).await.unwrap();
            let me = LeaseOwner(name.to_owned());
            let mut done = Vec::new();
            loop {
                let now = OffsetDateTime::now_utc();
                let claimed = store
                    .claim_due(
                        &me,
                        &webhook_ports::ClaimRequest {
                            now,
                            lease: Duration::from_secs(600),
                            limit: 50,
                            per_target: 10,
                            skip: Vec::new(),
                        },
                    )
                    .await
                    .unwrap();
                if claimed.is_empty() {
                    break done;
                }
                let ok = AttemptDetail::Response {
                    status: 200,
                    retry_after: None,
                };
                let records: Vec<AttemptRecord> = claimed
                    .iter()
                    .map(|c| AttemptRecord {
                        delivery: c
                            .delivery
                            .on_attempt(&ok.outcome(), &RetryPolicy::identus(), now, Jitter::MAX)
                            .unwrap()
                            .0,
                        attempt: AttemptLog {
                            number: 1,
                            started_at: now,
                            duration: Duration::from_millis(1),
                            detail: ok,
                            response_excerpt: None,
                            error: None,
                        },
                    })
                    .collect();
                let lost = store.record_attempts(&me, &records).await.unwrap();
                assert!(lost.is_empty(), "{name} lost leases: {lost:?}");
                done.extend(claimed.iter().map(|c| c.delivery.id()));
            }
        })
    };
    let (one, two) = (dispatcher("one"), dispatcher("two"));
    let (one, two) = (one.await.unwrap(), two.await.unwrap());

    let total = EVENTS * WEBHOOKS;
    assert_eq!(
        one.len() + two.len(),
        total,
        "{} + {}",
        one.len(),
        two.len()
    );
    let distinct: HashSet<DeliveryId> = one.iter().chain(&two).copied().collect();
    assert_eq!(distinct.len(), total, "a delivery was completed twice");
    let delivered = setup
        .list_deliveries(
            wallet,
            DeliveryFilter {
                state: Some(webhook_domain::DeliveryStateKind::Delivered),
                ..DeliveryFilter::default()
            },
            Page::first(u32::try_from(total + 1).unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(delivered.len(), total);
    assert!(delivered.iter().all(|d| d.attempts() == 1));
    assert_eq!(setup.next_due_at(T0, &[]).await.unwrap(), None);
}

/// A target disabled on one pool while the other records the results of attempts to it and to
/// another target: every call succeeds, however InnoDB orders their locks. A disable cancels
/// through the deliveries it read, by primary key, and outcomes write theirs in id order, so
/// the two never wait for each other in a cycle; and should InnoDB still end one of them as a
/// deadlock, the store runs it again. Before that, a disable's cancelling `UPDATE` (which went
/// through `deliveries_claimable`, the index entry before the row) and an outcome's `UPDATE`
/// by primary key (the row before the index entry) deadlocked, and one of them failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disables_and_outcomes_on_two_pools_never_fail() {
    use webhook_domain::{CancelReason, DeliveryState, DeliveryStateKind};
    const ROUNDS: usize = 40;
    const EVENTS: usize = 30;
    let Some((database, api)) = fresh().await else {
        return;
    };
    let dispatcher = MysqlStore::connect(&database.url(), 4).await.unwrap();
    let me = LeaseOwner("dispatcher".to_owned());
    // A target that stays enabled: its deliveries are recorded alongside the disabled one's.
    let wallet = wallet_with_webhooks(&api, 1).await;
    for round in 0..ROUNDS {
        let target = Webhook::new(
            WebhookId::from_uuid(Uuid::new_v4()),
            WebhookScope::Wallet(wallet),
            WebhookUrl::parse(&format!("http://127.0.0.1:9/round/{round}")).unwrap(),
            CustomHeaders::default(),
            T0,
        );
        api.create_webhook(&target, None).await.unwrap();
        for _ in 0..EVENTS {
            api.publish(&event(wallet), None, T0).await.unwrap();
        }
        let now = OffsetDateTime::now_utc();
        let claimed = dispatcher
            .claim_due(
                &me,
                &webhook_ports::ClaimRequest {
                    now,
                    lease: Duration::from_secs(600),
                    limit: 1_000,
                    per_target: 1_000,
                    skip: Vec::new(),
                },
            )
            .await
            .unwrap();
        assert_eq!(claimed.len(), 2 * EVENTS, "round {round}");
        // Deliveries of the target that wait while it is disabled: they are cancelled.
        for _ in 0..EVENTS {
            api.publish(&event(wallet), None, T0).await.unwrap();
        }
        let ok = AttemptDetail::Response {
            status: 200,
            retry_after: None,
        };
        let records: Vec<AttemptRecord> = claimed
            .iter()
            .map(|c| AttemptRecord {
                delivery: c
                    .delivery
                    .on_attempt(&ok.outcome(), &RetryPolicy::identus(), now, Jitter::MAX)
                    .unwrap()
                    .0,
                attempt: AttemptLog {
                    number: 1,
                    started_at: now,
                    duration: Duration::from_millis(1),
                    detail: ok,
                    response_excerpt: None,
                    error: None,
                },
            })
            .collect();
        let outcomes = async {
            for batch in records.chunks(10) {
                let lost = dispatcher.record_attempts(&me, batch).await;
                assert_eq!(lost.unwrap(), Vec::new(), "round {round}");
            }
        };
        let disable = async {
            let disabled = api.disable_webhook(target.id, now).await;
            assert!(disabled.is_ok(), "round {round}: {disabled:?}");
        };
        tokio::join!(outcomes, disable);

        let of_target = api
            .list_deliveries(
                wallet,
                DeliveryFilter {
                    webhook_id: Some(target.id),
                    ..DeliveryFilter::default()
                },
                Page::first(u32::try_from(3 * EVENTS).unwrap()),
            )
            .await
            .unwrap();
        assert_eq!(of_target.len(), 2 * EVENTS, "round {round}");
        let recorded: HashSet<DeliveryId> = claimed.iter().map(|c| c.delivery.id()).collect();
        for delivery in &of_target {
            if recorded.contains(&delivery.id()) {
                assert_eq!(
                    delivery.state().kind(),
                    DeliveryStateKind::Delivered,
                    "round {round}: {delivery:?}"
                );
            } else {
                assert!(
                    matches!(
                        delivery.state(),
                        DeliveryState::Cancelled {
                            reason: CancelReason::TargetGone,
                            ..
                        }
                    ),
                    "round {round}: {delivery:?}"
                );
            }
        }
        // The other target's deliveries published after the claim are left for the next round.
        let live_waiting = dispatcher
            .claim_due(
                &me,
                &webhook_ports::ClaimRequest {
                    now,
                    lease: Duration::from_secs(600),
                    limit: 1_000,
                    per_target: 1_000,
                    skip: Vec::new(),
                },
            )
            .await
            .unwrap();
        assert_eq!(live_waiting.len(), EVENTS, "round {round}");
        let records: Vec<AttemptRecord> = live_waiting
            .iter()
            .map(|c| AttemptRecord {
                delivery: c
                    .delivery
                    .on_attempt(&ok.outcome(), &RetryPolicy::identus(), now, Jitter::MAX)
                    .unwrap()
                    .0,
                attempt: AttemptLog {
                    number: 1,
                    started_at: now,
                    duration: Duration::from_millis(1),
                    detail: ok,
                    response_excerpt: None,
                    error: None,
                },
            })
            .collect();
        let lost = dispatcher.record_attempts(&me, &records).await.unwrap();
        assert!(lost.is_empty(), "round {round}: {lost:?}");
    }
    assert_eq!(api.next_due_at(T0, &[]).await.unwrap(), None);
}

/// The migrations create what the diesel schema module says ([`crate::schema_drift`]), read
/// from MySQL's catalogue: `CHAR` columns are the schema's ids, other text is `Text`,
/// `TINYINT(1)` (what `BOOLEAN` becomes) is `Bool`, `VARBINARY` is `Binary`. Invisible
/// columns (the generated `deliveries.unfinished` that MySQL's indexes begin with) are
/// MySQL's own and not in the schema module.
#[tokio::test]
async fn migrations_match_the_schema_module() {
    use crate::schema_drift::{Described, assert_same, with_null};
    use diesel::QueryableByName;
    use diesel_async::{AsyncConnection, RunQueryDsl};
    #[derive(QueryableByName)]
    struct Col {
        #[diesel(sql_type = diesel::sql_types::Text)]
        table_name: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        column_name: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        column_type: String,
        #[diesel(sql_type = diesel::sql_types::Bool)]
        nullable: bool,
    }
    let Some((database, _store)) = fresh().await else {
        return;
    };
    let mut conn = diesel_async::AsyncMysqlConnection::establish(&database.url())
        .await
        .unwrap();
    let cols: Vec<Col> = diesel::sql_query(
        "SELECT CAST(c.table_name AS CHAR) AS table_name, \
                CAST(c.column_name AS CHAR) AS column_name, \
                CAST(c.column_type AS CHAR) AS column_type, \
                c.is_nullable = 'YES' AS nullable \
         FROM information_schema.columns AS c \
         WHERE c.table_schema = DATABASE() AND c.table_name NOT LIKE '\\_\\_diesel%' \
           AND c.extra NOT LIKE '%INVISIBLE%' \
         ORDER BY c.table_name, c.ordinal_position",
    )
    .load(&mut conn)
    .await
    .unwrap();
    let diesel_type = |column_type: &str| {
        let lower = column_type.to_ascii_lowercase();
        let base = lower.split('(').next().unwrap_or_default();
        match base {
            "char" => "Id",
            "varchar" | "text" | "mediumtext" | "longtext" => "Text",
            "bigint" => "BigInt",
            "int" => "Integer",
            "tinyint" if lower == "tinyint(1)" => "Bool",
            "varbinary" | "blob" => "Binary",
            other => panic!("a migration uses the SQL type {other:?}, unknown to this test"),
        }
        .to_owned()
    };
    let mut actual: Vec<(String, Described)> = Vec::new();
    for c in cols {
        if actual.last().is_none_or(|t| t.0 != c.table_name) {
            actual.push((c.table_name.clone(), Vec::new()));
        }
        let ty = with_null(diesel_type(&c.column_type), c.nullable);
        if let Some(table) = actual.last_mut() {
            table.1.push((c.column_name, ty));
        }
    }
    assert_same("MySQL", actual);
}

/// Lock conflicts provoked on demand: what "another instance" does is played on a connection
/// of the test's own, step by step, and the store's transaction is seen waiting for its lock
/// in `information_schema.innodb_trx` before the next step. Nothing is timed; the deadlines
/// only make a test fail instead of hanging.
mod lock_conflicts {
    use std::sync::Arc;
    use std::time::Duration;

    use diesel::QueryableByName;
    use diesel::sql_types::{BigInt, Text};
    use diesel_async::{AsyncConnection, AsyncMysqlConnection, RunQueryDsl, SimpleAsyncConnection};
    use uuid::Uuid;
    use webhook_adapters::testing::mysql_is_lock_conflict;
    use webhook_adapters::{MysqlStore, MysqlTestDatabase};
    use webhook_domain::{
        CancelReason, CustomHeaders, Delivery, DeliveryState, DeliveryStateKind, Wallet,
        WalletName, Webhook, WebhookId, WebhookScope, WebhookUrl,
    };
    use webhook_ports::{DeliveryFilter, EventOutbox, Page, WalletRepository, WebhookRepository};

    use super::{T0, event, fresh};

    /// How long a step may take before the test fails rather than hang.
    const DEADLINE: Duration = Duration::from_secs(60);

    #[derive(QueryableByName)]
    struct Text1 {
        #[diesel(sql_type = Text)]
        text: String,
    }

    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }

    /// A connection of the test's own to `database`, with the session the store's pooled
    /// connections have (READ COMMITTED, the server's messages in English).
    async fn raw(database: &MysqlTestDatabase) -> AsyncMysqlConnection {
        let mut conn = AsyncMysqlConnection::establish(&database.url())
            .await
            .unwrap();
        for setup in [
            "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
            "SET SESSION lc_messages = 'en_US'",
        ] {
            conn.batch_execute(setup).await.unwrap();
        }
        conn
    }

    /// A store, a wallet webhook (`target`) and `waiting` deliveries waiting for it (their
    /// ids in id order), beside 400 of its deliveries that are finished, as in a store that
    /// has run for a while: with so few rows to read, MySQL would read the whole table by
    /// primary key rather than through an index of `due_at`.
    struct Scene {
        database: MysqlTestDatabase,
        store: Arc<MysqlStore>,
        wallet: webhook_domain::WalletId,
        target: WebhookId,
        ids: Vec<String>,
    }

    async fn scene() -> Option<Scene> {
        let waiting = 20;
        let (database, store) = fresh().await?;
        let wallet = Wallet {
            id: webhook_domain::WalletId::from_uuid(Uuid::new_v4()),
            name: WalletName::new("locks").unwrap(),
            created_at: T0,
            updated_at: T0,
        };
        store.create_wallet(&wallet).await.unwrap();
        let target = Webhook::new(
            WebhookId::from_uuid(Uuid::new_v4()),
            WebhookScope::Wallet(wallet.id),
            WebhookUrl::parse("http://127.0.0.1:9/locks").unwrap(),
            CustomHeaders::default(),
            T0,
        );
        store.create_webhook(&target, None).await.unwrap();
        for _ in 0..waiting {
            store.publish(&event(wallet.id), None, T0).await.unwrap();
        }
        let mut conn = raw(&database).await;
        conn.batch_execute(
            "INSERT INTO deliveries (id, event_id, webhook_id, wallet_id, state, due_at, \
             attempts, attempts_made, final_at, first_due, created_at) \
             SELECT UUID(), d.event_id, d.webhook_id, d.wallet_id, 'delivered', NULL, 1, 1, \
                    d.first_due, d.first_due, d.created_at \
             FROM deliveries AS d CROSS JOIN deliveries AS e",
        )
        .await
        .unwrap();
        let ids: Vec<Text1> = diesel::sql_query(
            "SELECT CAST(id AS CHAR) AS text FROM deliveries \
             WHERE webhook_id = ? AND due_at IS NOT NULL ORDER BY id",
        )
        .bind::<Text, _>(target.id.to_string())
        .load(&mut conn)
        .await
        .unwrap();
        let ids: Vec<String> = ids.into_iter().map(|r| r.text).collect();
        assert_eq!(ids.len(), waiting);
        Some(Scene {
            database,
            store: Arc::new(store),
            wallet: wallet.id,
            target: target.id,
            ids,
        })
    }

    impl Scene {
        async fn deliveries(&self) -> Vec<Delivery> {
            self.store
                .list_deliveries(
                    self.wallet,
                    DeliveryFilter {
                        webhook_id: Some(self.target),
                        ..DeliveryFilter::default()
                    },
                    Page::first(1_000),
                )
                .await
                .unwrap()
                .into_iter()
                .filter(|d| self.ids.contains(&d.id().to_string()))
                .collect()
        }
    }

    /// Locks the row of delivery `id` by primary key, and nothing else: the first half of an
    /// outcome's `UPDATE` by primary key (row, then the index entries of what it changes).
    async fn lock_row(conn: &mut AsyncMysqlConnection, id: &str) {
        let locked: Vec<Text1> = diesel::sql_query(
            "SELECT CAST(id AS CHAR) AS text FROM deliveries WHERE id = ? FOR UPDATE",
        )
        .bind::<Text, _>(id)
        .load(conn)
        .await
        .unwrap();
        assert_eq!(locked.len(), 1, "{id}");
    }

    /// The second half: what an outcome that delivered `id` writes, which changes the row's
    /// entries in every index of `due_at` (`deliveries_claimable` among them) and `state`.
    async fn write_delivered(
        conn: &mut AsyncMysqlConnection,
        id: &str,
    ) -> Result<usize, diesel::result::Error> {
        diesel::sql_query(
            "UPDATE deliveries SET state = 'delivered', due_at = NULL, lease_owner = NULL, \
             attempts = attempts + 1, attempts_made = attempts_made + 1, final_at = ? \
             WHERE id = ?",
        )
        .bind::<BigInt, _>(T0.unix_timestamp() * 1_000_000)
        .bind::<Text, _>(id)
        .execute(conn)
        .await
    }

    /// Waits until a transaction on another connection to this database (the store's) waits
    /// for a lock, failing if `task` (the store's call) ends first or the deadline passes.
    async fn until_the_store_waits<T>(
        watcher: &mut AsyncMysqlConnection,
        task: &tokio::task::JoinHandle<T>,
    ) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let waiting: Count = diesel::sql_query(
                "SELECT CAST(COUNT(*) AS SIGNED) AS n FROM information_schema.innodb_trx AS t \
                 JOIN information_schema.processlist AS p ON p.id = t.trx_mysql_thread_id \
                 WHERE p.db = DATABASE() AND p.id <> CONNECTION_ID() \
                   AND t.trx_state = 'LOCK WAIT'",
            )
            .get_result(watcher)
            .await
            .unwrap();
            if waiting.n > 0 {
                return;
            }
            assert!(
                !task.is_finished(),
                "the store's call ended without waiting for the row the test holds: the \
                 scene does not reproduce the conflict"
            );
            assert!(
                tokio::time::Instant::now() < deadline,
                "the store's call did not wait for the row within {DEADLINE:?}"
            );
            // InnoDB refreshes what `innodb_trx` shows only when nobody has read it for
            // 100 ms: polling faster would keep showing the same stale list.
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The deadlock of two instances, on demand: another instance's outcome holds a waiting
    /// delivery's row (locked by primary key, its index entries not yet changed) when a
    /// disable of its target comes to that delivery; then the outcome changes the row's due
    /// time, which changes its entries in `deliveries_claimable` and the other indexes of
    /// `due_at`. A disable that cancelled with one `UPDATE` through such an index held the
    /// delivery's index entry while it waited for the row, and the outcome's change then
    /// closed the cycle: InnoDB ended one of them with 1213. Here the outcome's side is the
    /// lighter one, so it would be InnoDB's victim, and the store's retry cannot hide the
    /// cycle. A disable that takes each row by primary key holds no index entry of a row it
    /// waits for: the outcome goes through, and the disable, once it gets the row, finds it
    /// delivered and leaves it so.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_disable_never_holds_the_index_entry_of_a_row_it_waits_for() {
        let Some(scene) = scene().await else {
            return;
        };
        // The last in id order (and in due order: all are due at T0): the disable reaches it
        // after the others, whichever order it takes them in.
        let x = scene.ids.last().unwrap().clone();
        let mut outcome = raw(&scene.database).await;
        let mut watcher = raw(&scene.database).await;

        assert_one_update_goes_through_an_index_of_due_at(&mut watcher, &scene).await;

        outcome.batch_execute("START TRANSACTION").await.unwrap();
        lock_row(&mut outcome, &x).await;
        let disable = tokio::spawn({
            let store = Arc::clone(&scene.store);
            let target = scene.target;
            async move { store.disable_webhook(target, T0).await }
        });
        until_the_store_waits(&mut watcher, &disable).await;
        let written = tokio::time::timeout(DEADLINE, write_delivered(&mut outcome, &x))
            .await
            .expect("the outcome's write did not end");
        let end = if written.is_ok() {
            "COMMIT"
        } else {
            "ROLLBACK"
        };
        outcome.batch_execute(end).await.unwrap();
        let disabled = tokio::time::timeout(DEADLINE, disable)
            .await
            .expect("the disable did not end")
            .unwrap();

        assert_eq!(
            written.as_ref().map_err(ToString::to_string),
            Ok(&1),
            "the outcome's write of {x} failed: the disable held an index entry of the row \
             while it waited for the row"
        );
        assert!(disabled.is_ok(), "{disabled:?}");
        let deliveries = scene.deliveries().await;
        assert_eq!(deliveries.len(), scene.ids.len());
        for delivery in &deliveries {
            if delivery.id().to_string() == x {
                assert_eq!(
                    delivery.state().kind(),
                    DeliveryStateKind::Delivered,
                    "{delivery:?}"
                );
                assert_eq!(delivery.attempts(), 1, "{delivery:?}");
            } else {
                assert!(
                    matches!(
                        delivery.state(),
                        DeliveryState::Cancelled {
                            reason: CancelReason::TargetGone,
                            ..
                        }
                    ),
                    "{delivery:?}"
                );
            }
        }
    }

    /// The premise of the test above: in its scene, one `UPDATE` with the cancel's condition
    /// (the statement the store ran before) would go through an index whose entries the
    /// outcome's write changes, not read the table by primary key.
    async fn assert_one_update_goes_through_an_index_of_due_at(
        conn: &mut AsyncMysqlConnection,
        scene: &Scene,
    ) {
        #[derive(QueryableByName)]
        struct Plan {
            #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
            key: Option<String>,
        }
        let plan: Vec<Plan> = diesel::sql_query(
            "EXPLAIN UPDATE deliveries SET state = 'cancelled', due_at = NULL \
             WHERE webhook_id = ? AND due_at IS NOT NULL \
               AND state IN ('pending', 'in_flight', 'retry_scheduled') \
               AND (state <> 'in_flight' OR due_at <= ?)",
        )
        .bind::<Text, _>(scene.target.to_string())
        .bind::<BigInt, _>(T0.unix_timestamp() * 1_000_000)
        .load(conn)
        .await
        .unwrap();
        let key = plan.into_iter().next().and_then(|p| p.key);
        assert!(
            matches!(
                key.as_deref(),
                Some(
                    "deliveries_claimable"
                        | "deliveries_due_by_target"
                        | "deliveries_unfinished_by_target"
                        | "deliveries_ordered_queue"
                )
            ),
            "one UPDATE would read the deliveries through {key:?}, not an index of due_at: \
             the scene no longer reproduces the deadlock"
        );
    }

    /// A disable that InnoDB ends as a deadlock's victim runs again and succeeds. Another
    /// instance holds the row of the last waiting delivery (X) and has written 200 attempts
    /// (a heavy transaction, so InnoDB rolls back the disable rather than it); the disable,
    /// which cancels in id order, holds the first (Y) and waits for X; the other then writes
    /// Y. The other takes rows out of id order, as no writer of the store does: this is the
    /// cycle that the lock order cannot rule out for every writer, and InnoDB ends it with
    /// 1213. Without the retry, the disable fails with it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_disable_ended_as_a_deadlock_victim_runs_again() {
        const ATTEMPTS: usize = 200;
        let Some(scene) = scene().await else {
            return;
        };
        let y = scene.ids[0].clone();
        let x = scene.ids.last().unwrap().clone();
        let mut other = raw(&scene.database).await;
        let mut watcher = raw(&scene.database).await;

        other.batch_execute("START TRANSACTION").await.unwrap();
        lock_row(&mut other, &x).await;
        let target = scene.target;
        let rows =
            vec![format!("('{x}', 1, 0, 1000, 'response', 500, NULL, NULL, '{target}')"); ATTEMPTS];
        other
            .batch_execute(&format!(
                "INSERT INTO attempts (delivery_id, number, started_at, duration_us, outcome, \
                 status_code, response_excerpt, error, webhook_id) VALUES {}",
                rows.join(", ")
            ))
            .await
            .unwrap();
        let disable = tokio::spawn({
            let store = Arc::clone(&scene.store);
            let target = scene.target;
            async move { store.disable_webhook(target, T0).await }
        });
        until_the_store_waits(&mut watcher, &disable).await;
        let written = tokio::time::timeout(DEADLINE, write_delivered(&mut other, &y))
            .await
            .expect("the other's write did not end");
        let end = if written.is_ok() {
            "COMMIT"
        } else {
            "ROLLBACK"
        };
        other.batch_execute(end).await.unwrap();
        let disabled = tokio::time::timeout(DEADLINE, disable)
            .await
            .expect("the disable did not end")
            .unwrap();

        assert_eq!(
            written.as_ref().map_err(ToString::to_string),
            Ok(&1),
            "InnoDB was to end the lighter transaction, the disable's"
        );
        assert!(disabled.is_ok(), "{disabled:?}");
        for delivery in &scene.deliveries().await {
            let expected = if delivery.id().to_string() == y {
                DeliveryStateKind::Delivered
            } else {
                DeliveryStateKind::Cancelled
            };
            assert_eq!(delivery.state().kind(), expected, "{delivery:?}");
        }
        let attempts: Count = diesel::sql_query(
            "SELECT CAST(COUNT(*) AS SIGNED) AS n FROM attempts WHERE delivery_id = ?",
        )
        .bind::<Text, _>(&x)
        .get_result(&mut watcher)
        .await
        .unwrap();
        assert_eq!(attempts.n, i64::try_from(ATTEMPTS).unwrap());
    }

    /// What the store takes for a lock conflict (and runs again) is what the server sends
    /// through diesel-async: a real deadlock (1213) of two connections that update two rows
    /// in opposite orders, and a real lock wait timeout (1205); another server error is not.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_servers_lock_conflicts_are_known_as_such() {
        let Some(database) = MysqlTestDatabase::create().await else {
            return;
        };
        let mut a = raw(&database).await;
        let mut b = raw(&database).await;
        a.batch_execute(
            "CREATE TABLE lock_rows (id INT NOT NULL PRIMARY KEY, n INT NOT NULL) \
             ENGINE = InnoDB",
        )
        .await
        .unwrap();
        a.batch_execute("INSERT INTO lock_rows VALUES (1, 0), (2, 0)")
            .await
            .unwrap();
        let bump = |id: i32| {
            diesel::sql_query("UPDATE lock_rows SET n = n + 1 WHERE id = ?")
                .bind::<diesel::sql_types::Integer, _>(id)
        };

        // 1213: each holds one row and asks for the other's.
        a.batch_execute("START TRANSACTION").await.unwrap();
        b.batch_execute("START TRANSACTION").await.unwrap();
        bump(1).execute(&mut a).await.unwrap();
        bump(2).execute(&mut b).await.unwrap();
        let (on_a, on_b) = tokio::time::timeout(DEADLINE, async {
            tokio::join!(bump(2).execute(&mut a), bump(1).execute(&mut b))
        })
        .await
        .expect("the deadlock was not ended");
        a.batch_execute("ROLLBACK").await.unwrap();
        b.batch_execute("ROLLBACK").await.unwrap();
        let deadlock = match (on_a, on_b) {
            (Err(e), Ok(_)) | (Ok(_), Err(e)) => e,
            other => panic!("exactly one side of the deadlock was to fail: {other:?}"),
        };
        assert!(mysql_is_lock_conflict(&deadlock), "{deadlock:?}");

        // 1205: b waits a second for the row a holds.
        b.batch_execute("SET SESSION innodb_lock_wait_timeout = 1")
            .await
            .unwrap();
        a.batch_execute("START TRANSACTION").await.unwrap();
        b.batch_execute("START TRANSACTION").await.unwrap();
        bump(1).execute(&mut a).await.unwrap();
        let timeout = tokio::time::timeout(DEADLINE, bump(1).execute(&mut b))
            .await
            .expect("the lock wait did not time out")
            .unwrap_err();
        a.batch_execute("ROLLBACK").await.unwrap();
        b.batch_execute("ROLLBACK").await.unwrap();
        assert!(mysql_is_lock_conflict(&timeout), "{timeout:?}");

        let other = diesel::sql_query("UPDATE no_such_table SET n = 1")
            .execute(&mut a)
            .await
            .unwrap_err();
        assert!(!mysql_is_lock_conflict(&other), "{other:?}");
    }
}
