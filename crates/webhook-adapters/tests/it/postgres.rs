//! The contract suite against `PgStore`, plus what only PostgreSQL does: wake-ups across
//! instances and two independent pools sharing one queue.
//!
//! Each test gets its own schema ([`PgTestSchema`]), so tests run in parallel. When the server
//! cannot be reached the tests fail under `CI=true`, and are skipped with a loud message
//! otherwise.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use time::macros::datetime;
use uuid::Uuid;
use webhook_adapters::PgStore;
use webhook_adapters::testing::PgTestSchema;
use webhook_domain::{
    AttemptDetail, CustomHeaders, DeliveryId, Event, EventId, EventType, Jitter, RetryPolicy,
    Timestamp, Wallet, WalletId, WalletName, Webhook, WebhookId, WebhookScope, WebhookUrl,
};
use webhook_ports::{
    AttemptLog, AttemptRecord, DeliveryFilter, DeliveryQueue, EventOutbox, LeaseOwner, Page,
    WalletRepository, WebhookRepository,
};

/// A migrated store in a fresh schema.
pub(crate) async fn fresh() -> Option<(PgTestSchema, PgStore)> {
    let schema = PgTestSchema::create().await?;
    let store = PgStore::connect(&schema.url(), 4).await.unwrap();
    store.migrate().await.unwrap();
    Some((schema, store))
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
    let Some(schema) = PgTestSchema::create().await else {
        return;
    };
    let store = PgStore::connect(&schema.url(), 1).await.unwrap();
    let pending = store.pending_migrations().await.unwrap();
    assert!(!pending.is_empty());
    assert_eq!(store.migrate().await.unwrap().len(), pending.len());
    assert!(store.pending_migrations().await.unwrap().is_empty());
    assert!(store.migrate().await.unwrap().is_empty());
}

#[tokio::test]
async fn pool_state_counts_connections_up_to_the_pool_size() {
    let Some((_schema, store)) = fresh().await else {
        return;
    };
    assert_eq!(store.pool_state().max, 4);
    store.next_due_at(T0, &[]).await.unwrap();
    let state = store.pool_state();
    assert!((1..=4).contains(&state.connections), "{state:?}");
    assert!(state.idle <= state.connections, "{state:?}");
}

#[tokio::test]
async fn connect_error_is_clear_and_hides_the_password() {
    // Port 1 on loopback: nothing listens there.
    let err = PgStore::connect("postgres://me:hunter2@127.0.0.1:1/db", 1)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("cannot connect to PostgreSQL"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(!format!("{err:?}").contains("hunter2"));
}

const T0: OffsetDateTime = datetime!(2026-03-01 00:00:00 UTC);

async fn wallet_with_webhooks(store: &PgStore, webhooks: usize) -> WalletId {
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

/// A store of its own on the database `url`, watching other instances' changes once its
/// listener has started (the forwarder wakes once when it starts listening: from then on
/// nothing is missed): the store and its watch, what wakes, and the webhooks named.
async fn watching(
    url: &str,
) -> (
    (PgStore, webhook_ports::Watch),
    Arc<tokio::sync::Notify>,
    tokio::sync::mpsc::UnboundedReceiver<WebhookId>,
) {
    let watcher = PgStore::connect(url, 1).await.unwrap();
    let wake = Arc::new(tokio::sync::Notify::new());
    let (changes, changed) = tokio::sync::mpsc::unbounded_channel();
    let watch = webhook_ports::StorageLifecycle::watch_changes(
        &watcher,
        Arc::new(Listener {
            wake: wake.clone(),
            changes,
        }),
    )
    .expect("PostgreSQL hears other instances");
    tokio::time::timeout(Duration::from_secs(10), wake.notified())
        .await
        .expect("the listener never started");
    ((watcher, watch), wake, changed)
}

/// A publish through one store wakes a listener set up by another (another instance), and a
/// webhook deleted or disabled through one is named to the listener of another: the
/// `watch_changes` rule of `StorageLifecycle` that only PostgreSQL keeps (SQLite answers no
/// watch).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_wakes_listeners_in_other_instances() {
    let Some((schema, publisher)) = fresh().await else {
        return;
    };
    let (watch, wake, mut changed) = watching(&schema.url()).await;
    let wallet = wallet_with_webhooks(&publisher, 1).await;
    publisher.publish(&event(wallet), None, T0).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), wake.notified())
        .await
        .expect("no wake-up after a publish in another instance");
    let hooks = publisher
        .list_webhooks(wallet, Page::first(10))
        .await
        .unwrap();
    publisher
        .delete_webhook(wallet, hooks[0].id, T0)
        .await
        .unwrap();
    let named = tokio::time::timeout(Duration::from_secs(10), changed.recv())
        .await
        .expect("no word of the deleted webhook in another instance");
    assert_eq!(named, Some(hooks[0].id));
    drop(watch);
}

/// A watch whose connection the server cuts reconnects by itself: a webhook deleted after that,
/// through another store, is still named to it (the `watch_changes` rule of
/// `StorageLifecycle`). Other tests' listeners on the same database are cut too; they
/// reconnect the same way, and a wake-up too many is all they see.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_whose_connection_is_cut_reconnects() {
    let Some((schema, changer)) = fresh().await else {
        return;
    };
    let (watch, _wake, mut changed) = watching(&schema.url()).await;

    use diesel_async::{AsyncConnection, RunQueryDsl};
    let mut admin = diesel_async::AsyncPgConnection::establish(&schema.url())
        .await
        .unwrap();
    let cut: Vec<bool> = diesel::sql_query(
        "SELECT pg_terminate_backend(pid) AS cut FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'LISTEN %' \
         AND pid <> pg_backend_pid()",
    )
    .load::<Cut>(&mut admin)
    .await
    .unwrap()
    .into_iter()
    .map(|row| row.cut)
    .collect();
    assert!(cut.iter().any(|c| *c), "no listener connection was cut");

    // A deletion is heard only once the listener is back: delete fresh webhooks until one of
    // them is named. (Other tests' deletions on the same database are named to it too.)
    let wallet = wallet_with_webhooks(&changer, 0).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut deleted = std::collections::HashSet::new();
    'heard: loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no deletion was heard within 20 s of the cut: the watch did not reconnect"
        );
        let webhook = Webhook::new(
            WebhookId::from_uuid(Uuid::new_v4()),
            WebhookScope::Wallet(wallet),
            WebhookUrl::parse("http://127.0.0.1:9/cut").unwrap(),
            CustomHeaders::default(),
            T0,
        );
        changer.create_webhook(&webhook, None).await.unwrap();
        changer
            .delete_webhook(wallet, webhook.id, T0)
            .await
            .unwrap();
        deleted.insert(webhook.id);
        let wait = tokio::time::Instant::now() + Duration::from_millis(500);
        while let Ok(Some(named)) = tokio::time::timeout_at(wait, changed.recv()).await {
            if deleted.contains(&named) {
                break 'heard;
            }
        }
    }
    drop(watch);
}

/// One row of `pg_terminate_backend`.
#[derive(diesel::QueryableByName)]
struct Cut {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    cut: bool,
}

/// What a watch of other instances tells, as a test sees it.
struct Listener {
    wake: Arc<tokio::sync::Notify>,
    changes: tokio::sync::mpsc::UnboundedSender<WebhookId>,
}

impl webhook_ports::ChangeListener for Listener {
    fn published(&self) {
        self.wake.notify_one();
    }

    fn target_changed(&self, webhook: WebhookId) {
        let _ = self.changes.send(webhook);
    }
}

/// Two dispatchers with their own pools (as two processes would have) share 10,000 deliveries:
/// every one is claimed and completed exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pools_complete_ten_thousand_deliveries_exactly_once() {
    const EVENTS: usize = 1_000;
    const WEBHOOKS: usize = 10;
    let Some((schema, setup)) = fresh().await else {
        return;
    };
    let wallet = wallet_with_webhooks(&setup, WEBHOOKS).await;
    for _ in 0..EVENTS {
        setup.publish(&event(wallet), None, T0).await.unwrap();
    }

    let dispatcher = |name: &'static str| {
        let url = schema.url();
        tokio::spawn(async move {
            let store = PgStore::connect(&url, 2).await.unwrap();
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
                            limit: 100,
                            per_target: 100,
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
    assert!(
        !one.is_empty() && !two.is_empty(),
        "one dispatcher did everything"
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
    assert!(delivered.iter().all(|d| distinct.contains(&d.id())));
    assert_eq!(setup.next_due_at(T0, &[]).await.unwrap(), None);
}

/// Publishes `events` at once under the idempotency key `k`, held together after their
/// lookups of earlier publishes (`gather_publishes`) so that none of them sees another's
/// insert: their answers, in `events`' order.
async fn race_keyed_publishes(
    store: &PgStore,
    events: Vec<Event>,
) -> Vec<webhook_ports::Published> {
    store.faults().gather_publishes(events.len());
    let racers: Vec<_> = events
        .into_iter()
        .map(|the_event| {
            let store = store.clone();
            tokio::spawn(async move {
                let key = webhook_ports::Idempotency {
                    key: "k".to_owned(),
                    fingerprint: "f".to_owned(),
                };
                store.publish(&the_event, Some(key), T0).await.unwrap()
            })
        })
        .collect();
    let mut answers = Vec::new();
    for racer in racers {
        let published = tokio::time::timeout(Duration::from_secs(20), racer)
            .await
            .expect("the racers never all reached the barrier")
            .unwrap();
        answers.push(published);
    }
    answers
}

/// Publishes of one event under one idempotency key that all looked for an earlier publish
/// before any of them inserted (held together by a barrier) still store it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_idempotent_publishes_store_the_event_once() {
    const RACERS: usize = 4;
    let Some((schema, _)) = fresh().await else {
        return;
    };
    let store = PgStore::connect(&schema.url(), RACERS as u32)
        .await
        .unwrap();
    let wallet = wallet_with_webhooks(&store, 2).await;
    let the_event = event(wallet);
    let answers = race_keyed_publishes(&store, vec![the_event; RACERS]).await;
    assert!(answers.iter().all(|p| p.deliveries == 2));
    assert_eq!(answers.iter().filter(|p| !p.replayed).count(), 1);
    let all = store
        .list_deliveries(wallet, DeliveryFilter::default(), Page::first(10))
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
}

/// Publishes of different events under one idempotency key (a producer's retries, each with
/// an id of its own) that all looked for an earlier publish before any of them inserted: one
/// stores its event, the others answer as replays of it, and no delivery of the losers' events
/// is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_publishes_of_one_key_and_different_ids_store_one_event() {
    const RACERS: usize = 4;
    let Some((schema, _)) = fresh().await else {
        return;
    };
    let store = PgStore::connect(&schema.url(), RACERS as u32)
        .await
        .unwrap();
    let wallet = wallet_with_webhooks(&store, 2).await;
    let answers = race_keyed_publishes(&store, (0..RACERS).map(|_| event(wallet)).collect()).await;
    let firsts: Vec<_> = answers.iter().filter(|p| !p.replayed).collect();
    assert_eq!(firsts.len(), 1, "{answers:?}");
    assert!(answers.iter().all(|p| p.event_id == firsts[0].event_id));
    assert!(answers.iter().all(|p| p.deliveries == 2));
    let all = store
        .list_deliveries(wallet, DeliveryFilter::default(), Page::first(10))
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
}

/// Batches racing on the same events (the bulk path's lookup misses what a concurrent batch
/// is storing): each event is stored once with its deliveries, and every call answers, once
/// as the first publish and otherwise as a replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_batches_store_each_event_once() {
    const RACERS: usize = 6;
    const EVENTS: usize = 200;
    let Some((schema, _)) = fresh().await else {
        return;
    };
    let store = PgStore::connect(&schema.url(), RACERS as u32)
        .await
        .unwrap();
    let wallet = wallet_with_webhooks(&store, 2).await;
    let items: Arc<Vec<webhook_ports::PublishItem>> = Arc::new(
        (0..EVENTS)
            .map(|_| webhook_ports::PublishItem {
                event: event(wallet),
                idempotency: None,
            })
            .collect(),
    );
    let racers: Vec<_> = (0..RACERS)
        .map(|_| {
            let (store, items) = (store.clone(), items.clone());
            tokio::spawn(async move { store.publish_batch(&items, T0).await.unwrap() })
        })
        .collect();
    let mut firsts = vec![0_usize; EVENTS];
    for racer in racers {
        let answers = tokio::time::timeout(Duration::from_secs(60), racer)
            .await
            .expect("a racing batch hung")
            .unwrap();
        for (n, answer) in answers.iter().enumerate() {
            assert_eq!(answer.event_id, items[n].event.id());
            assert_eq!(answer.deliveries, 2);
            firsts[n] += usize::from(!answer.replayed);
        }
    }
    assert!(firsts.iter().all(|&f| f == 1), "{firsts:?}");
    let all = store
        .list_deliveries(wallet, DeliveryFilter::default(), Page::first(10_000))
        .await
        .unwrap();
    assert_eq!(all.len(), 2 * EVENTS);
}

/// The migrations create what the diesel schema module says ([`crate::schema_drift`]).
#[tokio::test]
async fn migrations_match_the_schema_module() {
    use crate::schema_drift::{Described, assert_same, diesel_type, with_null};
    use diesel::QueryableByName;
    use diesel_async::RunQueryDsl;
    #[derive(QueryableByName)]
    struct Col {
        #[diesel(sql_type = diesel::sql_types::Text)]
        table_name: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        column_name: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        data_type: String,
        #[diesel(sql_type = diesel::sql_types::Bool)]
        nullable: bool,
        #[diesel(sql_type = diesel::sql_types::Bool)]
        primary_key: bool,
    }
    let Some(schema) = webhook_adapters::testing::PgTestSchema::create().await else {
        return;
    };
    let store = PgStore::connect(&schema.url(), 1).await.unwrap();
    store.migrate().await.unwrap();
    use diesel_async::AsyncConnection;
    let mut conn = diesel_async::AsyncPgConnection::establish(&schema.url())
        .await
        .unwrap();
    let cols: Vec<Col> = diesel::sql_query(
        "SELECT c.table_name::text, c.column_name::text, c.data_type::text, \
                c.is_nullable = 'YES' AS nullable, \
                c.column_name = 'id' AS primary_key \
         FROM information_schema.columns AS c \
         WHERE c.table_schema = current_schema() AND c.table_name NOT LIKE '__diesel%' \
         ORDER BY c.table_name, c.ordinal_position",
    )
    .load(&mut conn)
    .await
    .unwrap();
    let mut actual: Vec<(String, Described)> = Vec::new();
    for c in cols {
        if actual.last().is_none_or(|t| t.0 != c.table_name) {
            actual.push((c.table_name.clone(), Vec::new()));
        }
        let ty = with_null(diesel_type(&c.data_type, c.primary_key), c.nullable);
        if let Some(table) = actual.last_mut() {
            table.1.push((c.column_name, ty));
        }
    }
    assert_same("PostgreSQL", actual);
}

/// The queue's tables are vacuumed and analysed once a hundredth of them has changed, not
/// PostgreSQL's default fifth: their rows die fast (each delivery is updated twice, never HOT).
#[tokio::test]
async fn the_queue_tables_are_vacuumed_early() {
    use diesel::QueryableByName;
    use diesel_async::{AsyncConnection, RunQueryDsl};
    #[derive(QueryableByName)]
    struct Options {
        #[diesel(sql_type = diesel::sql_types::Text)]
        table_name: String,
        #[diesel(sql_type = diesel::sql_types::Array<diesel::sql_types::Text>)]
        options: Vec<String>,
    }
    let Some((schema, _store)) = fresh().await else {
        return;
    };
    let mut conn = diesel_async::AsyncPgConnection::establish(&schema.url())
        .await
        .unwrap();
    let tables: Vec<Options> = diesel::sql_query(
        "SELECT c.relname::text AS table_name, coalesce(c.reloptions, '{}') AS options \
         FROM pg_class AS c \
         WHERE c.relnamespace = current_schema()::regnamespace \
           AND c.relname IN ('deliveries', 'events', 'attempts') \
         ORDER BY c.relname",
    )
    .load(&mut conn)
    .await
    .unwrap();
    let names: Vec<&str> = tables.iter().map(|t| t.table_name.as_str()).collect();
    assert_eq!(names, ["attempts", "deliveries", "events"]);
    for table in &tables {
        for option in [
            "autovacuum_vacuum_scale_factor=0.01",
            "autovacuum_vacuum_insert_scale_factor=0.01",
            "autovacuum_analyze_scale_factor=0.02",
        ] {
            assert!(
                table.options.iter().any(|o| o == option),
                "{} has {:?}, not {option}",
                table.table_name,
                table.options
            );
        }
    }
}

/// The migration to native `uuid` ids keeps every row, and so does its way back: deliveries
/// stored with uuid ids survive the down migration (to text) and the up migration again, and
/// read back the same through the store.
#[tokio::test]
async fn native_ids_migrate_both_ways_without_losing_rows() {
    use diesel_async::{AsyncConnection, RunQueryDsl, SimpleAsyncConnection};
    const UP: &str = include_str!("../../migrations/postgres/2026-12-05-000000_native_ids/up.sql");
    const DOWN: &str =
        include_str!("../../migrations/postgres/2026-12-05-000000_native_ids/down.sql");
    #[derive(diesel::QueryableByName)]
    struct Type {
        #[diesel(sql_type = diesel::sql_types::Text)]
        data_type: String,
    }
    async fn id_type(conn: &mut diesel_async::AsyncPgConnection) -> String {
        let found: Vec<Type> = diesel::sql_query(
            "SELECT data_type::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = 'deliveries' \
               AND column_name = 'id'",
        )
        .load(conn)
        .await
        .unwrap();
        found[0].data_type.clone()
    }
    let Some((schema, store)) = fresh().await else {
        return;
    };
    let wallet = wallet_with_webhooks(&store, 3).await;
    for _ in 0..4 {
        store.publish(&event(wallet), None, T0).await.unwrap();
    }
    let listed = || store.list_deliveries(wallet, DeliveryFilter::default(), Page::first(100));
    let before = listed().await.unwrap();
    assert_eq!(before.len(), 12);
    let mut conn = diesel_async::AsyncPgConnection::establish(&schema.url())
        .await
        .unwrap();
    assert_eq!(id_type(&mut conn).await, "uuid");
    conn.batch_execute(DOWN).await.unwrap();
    assert_eq!(id_type(&mut conn).await, "text");
    conn.batch_execute(UP).await.unwrap();
    assert_eq!(id_type(&mut conn).await, "uuid");
    assert_eq!(listed().await.unwrap(), before);
}
