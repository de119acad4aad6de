//! The contract suite against `SqliteStore`: a fresh database file per test. Plus what only
//! SQLite needs: reads go on while another connection holds the write lock.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tempfile::TempDir;
use uuid::Uuid;
use webhook_adapters::SqliteStore;
use webhook_domain::{ApiKey, ApiKeyHash, ApiKeyTag, Entity, EntityId, WalletName};
use webhook_ports::{
    DeliveryFilter, DeliveryQueue, EventOutbox, Page, RedeliveryJobs, StoredApiKey,
    WalletRepository, WebhookRepository,
};

use webhook_ports::contract::{T0, at, exhaust_due, one_delivery, redelivery_job, token_hash};

pub(crate) async fn fresh() -> Option<(TempDir, SqliteStore)> {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("t.db"), 4)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    Some((dir, store))
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
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("t.db"), 1)
        .await
        .unwrap();
    let pending = store.pending_migrations().await.unwrap();
    assert!(!pending.is_empty());
    assert_eq!(store.migrate().await.unwrap().len(), pending.len());
    assert!(store.pending_migrations().await.unwrap().is_empty());
    assert!(store.migrate().await.unwrap().is_empty());
}

#[tokio::test]
async fn pool_state_counts_connections_up_to_the_pool_size() {
    use webhook_ports::DeliveryQueue;
    let (_dir, store) = fresh().await.unwrap();
    assert_eq!(store.pool_state().max, 4);
    store
        .next_due_at(time::OffsetDateTime::UNIX_EPOCH, &[])
        .await
        .unwrap();
    let state = store.pool_state();
    assert!((1..=4).contains(&state.connections), "{state:?}");
    assert!(state.idle <= state.connections, "{state:?}");
}

/// The store's busy timeout is 10 s: an operation that queues behind the writer takes that
/// long and then fails, one that does not is done in milliseconds.
const WELL_WITHIN_THE_BUSY_TIMEOUT: Duration = Duration::from_secs(2);

/// One store operation, for running it under a time limit.
type Operation<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

fn operation<'a, T, E: std::fmt::Display>(
    work: impl Future<Output = Result<T, E>> + Send + 'a,
) -> Operation<'a> {
    Box::pin(async move { work.await.map(drop).map_err(|e| e.to_string()) })
}

/// Holds SQLite's write lock from a connection of its own (`BEGIN IMMEDIATE`, as another
/// writer would) until `release` is sent, then commits.
fn hold_the_write_lock(
    path: std::path::PathBuf,
) -> (std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    use diesel::connection::SimpleConnection;
    use diesel::{Connection, SqliteConnection};
    let (locked, is_locked) = std::sync::mpsc::channel();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let mut conn = SqliteConnection::establish(&path.to_string_lossy()).unwrap();
        conn.batch_execute("BEGIN IMMEDIATE").unwrap();
        locked.send(()).unwrap();
        let _ = released.recv();
        conn.batch_execute("COMMIT").unwrap();
    });
    is_locked.recv().unwrap();
    (release, holder)
}

/// Reads do not queue behind a writer: while another connection holds the write lock, every
/// read-only operation of the store answers at once from WAL's snapshot, and a write waits
/// until the lock is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_on_while_another_connection_writes() {
    let (_dir, store) = fresh().await.unwrap();
    let (wallet, webhook, event, delivery) = one_delivery(&store).await;
    let key = ApiKey::parse("key-of-the-reader").unwrap();
    let stored_key = StoredApiKey {
        wallet_id: wallet,
        hash: ApiKeyHash::new(&key, [5; 16]),
        created_at: T0,
    };
    store.add_api_key(&stored_key).await.unwrap();
    let entity = Entity {
        id: EntityId::from_uuid(Uuid::new_v4()),
        name: WalletName::new("reader").unwrap(),
        wallet_id: wallet,
        created_at: T0,
        updated_at: T0,
    };
    store.create_entity(&entity).await.unwrap();
    store
        .init_admin_token(&token_hash("admin", 1), T0)
        .await
        .unwrap();
    exhaust_due(&store, T0).await;
    let job = redelivery_job(wallet, webhook.id, T0, at(10), at(5));
    store.create_redelivery_job(&job).await.unwrap();

    let listed = [delivery.id()];
    let (release, holder) = hold_the_write_lock(store.path().to_owned());
    let reads: Vec<(&str, Operation<'_>)> = vec![
        ("get_wallet", operation(store.get_wallet(wallet))),
        (
            "list_wallets",
            operation(store.list_wallets(Page::first(10))),
        ),
        (
            "find_api_keys",
            operation(store.find_api_keys(ApiKeyTag::of(&key))),
        ),
        ("get_entity", operation(store.get_entity(entity.id))),
        ("admin_token", operation(store.admin_token())),
        (
            "get_webhook",
            operation(store.get_webhook(wallet, webhook.id)),
        ),
        (
            "list_webhooks",
            operation(store.list_webhooks(wallet, Page::first(10))),
        ),
        ("get_event", operation(store.get_event(wallet, event.id()))),
        (
            "list_deliveries",
            operation(store.list_deliveries(wallet, DeliveryFilter::default(), Page::first(10))),
        ),
        (
            "get_delivery",
            operation(store.get_delivery(wallet, delivery.id())),
        ),
        (
            "list_attempts",
            operation(store.list_attempts(wallet, delivery.id())),
        ),
        (
            "list_attempts_of",
            operation(store.list_attempts_of(wallet, &listed, 10)),
        ),
        (
            "get_redelivery_job",
            operation(store.get_redelivery_job(wallet, job.id)),
        ),
        (
            "running_redelivery_jobs",
            operation(store.running_redelivery_jobs()),
        ),
        ("backlog", operation(store.backlog(at(1)))),
        (
            "next_due_at",
            operation(store.next_due_at(time::OffsetDateTime::UNIX_EPOCH, &[])),
        ),
    ];
    for (name, read) in reads {
        let started = std::time::Instant::now();
        let answer = tokio::time::timeout(WELL_WITHIN_THE_BUSY_TIMEOUT, read)
            .await
            .unwrap_or_else(|_| panic!("{name} waited for the writer"));
        answer.unwrap_or_else(|e| panic!("{name} failed after {:?}: {e}", started.elapsed()));
    }

    // A write still queues behind the writer, and goes through once it commits.
    let other = webhook_domain::Wallet {
        id: webhook_domain::WalletId::from_uuid(Uuid::new_v4()),
        name: WalletName::new("writer").unwrap(),
        created_at: T0,
        updated_at: T0,
    };
    let writer = store.clone();
    let write = tokio::spawn(async move { writer.create_wallet(&other).await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !write.is_finished(),
        "a write went through under another writer's lock"
    );
    release.send(()).unwrap();
    tokio::time::timeout(WELL_WITHIN_THE_BUSY_TIMEOUT, write)
        .await
        .expect("the write did not go through once the lock was released")
        .unwrap()
        .unwrap();
    holder.join().unwrap();
}

/// The migrations create what the diesel schema module says ([`crate::schema_drift`]).
#[tokio::test]
async fn migrations_match_the_schema_module() {
    use crate::schema_drift::{assert_same, diesel_type, with_null};
    use diesel::{Connection, QueryableByName, RunQueryDsl, SqliteConnection};
    #[derive(QueryableByName)]
    struct Col {
        #[diesel(sql_type = diesel::sql_types::Text)]
        name: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        r#type: String,
        #[diesel(sql_type = diesel::sql_types::Integer)]
        notnull: i32,
        #[diesel(sql_type = diesel::sql_types::Integer)]
        pk: i32,
    }
    #[derive(QueryableByName)]
    struct Name {
        #[diesel(sql_type = diesel::sql_types::Text)]
        name: String,
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("drift.db");
    let store = SqliteStore::open(&path, 1).await.unwrap();
    store.migrate().await.unwrap();
    let mut conn = SqliteConnection::establish(&path.to_string_lossy()).unwrap();
    let tables: Vec<Name> = diesel::sql_query(
        "SELECT name FROM sqlite_master WHERE type = 'table' \
         AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '__diesel%'",
    )
    .load(&mut conn)
    .unwrap();
    let actual = tables
        .into_iter()
        .map(|t| {
            let cols: Vec<Col> = diesel::sql_query(format!("PRAGMA table_info({})", t.name))
                .load(&mut conn)
                .unwrap();
            let described = cols
                .into_iter()
                .map(|c| {
                    let ty = diesel_type(&c.r#type, c.pk == 1);
                    (c.name, with_null(ty, c.notnull == 0 && c.pk == 0))
                })
                .collect();
            (t.name, described)
        })
        .collect();
    assert_same("SQLite", actual);
}
