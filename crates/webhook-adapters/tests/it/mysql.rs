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
    let runs = stores.iter().map(|s| s.migrate());
    let applied: Vec<Vec<String>> = futures_util::future::try_join_all(runs).await.unwrap();
    let total: usize = applied.iter().map(Vec::len).sum();
    let pending = stores[0].pending_migrations().await.unwrap();
    assert!(pending.is_empty(), "{pending:?}");
    assert_eq!(total, 1, "each migration applied once: {applied:?}");
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
