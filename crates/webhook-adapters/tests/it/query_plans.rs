//! The hot queries read indexes, not whole tables: with realistic volumes loaded (50,000
//! deliveries, most of them finished) and statistics gathered, neither planner chooses a full
//! scan of deliveries, events or attempts for the claim, a batch of outcomes, the listings, the
//! attempts of a listed page, a redelivery step, the next due time, the backlog or a pruning
//! batch.

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use uuid::Uuid;
use webhook_adapters::testing::PgTestSchema;
use webhook_adapters::{PgStore, SqliteStore};
use webhook_domain::{EventId, WalletId, WebhookId};

const WALLET: &str = "00000000-0000-4000-8000-00000000000a";
const OTHER: &str = "00000000-0000-4000-8000-00000000000b";

/// Portable SQL (PostgreSQL and SQLite) that loads two wallets, 100 webhooks, 5,000 events and
/// 50,000 deliveries of which the last 1,000 are due, with one attempt per finished delivery.
fn load_sql() -> String {
    let wallet_of = |n: &str| format!("CASE WHEN {n} % 2 = 0 THEN '{WALLET}' ELSE '{OTHER}' END");
    let series = |max: u32| {
        format!("WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {max})")
    };
    format!(
        "INSERT INTO wallets VALUES ('{WALLET}', 'a', 0, 0), ('{OTHER}', 'b', 0, 0);
         {webhooks} INSERT INTO webhooks (id, wallet_id, url, custom_headers, enabled, created_at)
             SELECT 'h' || n, {hook_wallet}, 'http://127.0.0.1:9/', '{{}}', TRUE, n FROM g;
         {events} INSERT INTO events (id, wallet_id, event_type, ts, data, deliveries, created_at)
             SELECT 'e' || n, {event_wallet}, 'load.test', n, '{{}}', 10, n FROM g;
         {deliveries} INSERT INTO deliveries (id, event_id, webhook_id, wallet_id, state, due_at,
                 attempts, final_at, first_due, created_at)
             SELECT 'd' || n, 'e' || ((n - 1) / 10 + 1), 'h' || ((n - 1) % 100 + 1),
                 {delivery_wallet},
                 CASE WHEN n > 49000 THEN 'pending' ELSE 'delivered' END,
                 CASE WHEN n > 49000 THEN n ELSE NULL END, 1,
                 CASE WHEN n > 49000 THEN NULL ELSE n END, n, n FROM g;
         {attempts} INSERT INTO attempts (delivery_id, number, started_at, duration_us, outcome,
                 status_code)
             SELECT 'd' || n, 1, n, 1000, 'response', 200 FROM g;
         ANALYZE;",
        webhooks = series(100),
        hook_wallet = wallet_of("n"),
        events = series(5_000),
        event_wallet = wallet_of("n"),
        deliveries = series(50_000),
        delivery_wallet = wallet_of("((n - 1) / 10 + 1)"),
        attempts = series(49_000),
    )
}

/// The wallet, an event and a webhook to list by, and a pruning cut-off that keeps all but the
/// oldest 2% of events (stored at 1 to 5,000 microseconds).
fn arguments() -> (WalletId, EventId, WebhookId, time::OffsetDateTime) {
    (
        WalletId::from_uuid(Uuid::parse_str(WALLET).unwrap()),
        EventId::from_uuid(Uuid::new_v4()),
        WebhookId::from_uuid(Uuid::new_v4()),
        time::OffsetDateTime::from_unix_timestamp_nanos(100_000).unwrap(),
    )
}

fn assert_no_full_scans(backend: &str, plans: &[(String, String)], full_scan: &[&str]) {
    assert!(plans.len() >= 7, "{plans:?}");
    for (name, plan) in plans {
        for pattern in full_scan {
            assert!(
                !plan
                    .lines()
                    .any(|line| line.trim_start().starts_with(pattern)),
                "{backend}: {name} scans a whole table:\n{plan}"
            );
        }
    }
}

#[tokio::test]
async fn sqlite_hot_queries_search_indexes() {
    use diesel::connection::SimpleConnection;
    use diesel::{Connection, SqliteConnection};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plans.db");
    let store = SqliteStore::open(&path, 1).await.unwrap();
    store.migrate().await.unwrap();
    let mut conn = SqliteConnection::establish(&path.to_string_lossy()).unwrap();
    conn.batch_execute(&load_sql()).unwrap();
    let (wallet, event, webhook, before) = arguments();
    let plans = store
        .explain_hot_queries(wallet, event, webhook, before)
        .await
        .unwrap();
    assert_no_full_scans(
        "SQLite",
        &plans,
        &["SCAN deliveries", "SCAN events", "SCAN attempts"],
    );
    assert_reads_exhausted_rows_only("SQLite", &plans);
    assert_reads_attempts_by_delivery("SQLite", &plans);
}

/// The attempts of a listed page are read delivery by delivery through `attempts_by_delivery`.
fn assert_reads_attempts_by_delivery(backend: &str, plans: &[(String, String)]) {
    let (_, plan) = plans
        .iter()
        .find(|(name, _)| name == "attempts of a page")
        .expect("no plan for the attempts of a page");
    assert!(
        plan.contains("attempts_by_delivery"),
        "{backend}: the attempts of a page are not read through attempts_by_delivery:\n{plan}"
    );
}

/// A redelivery step reads the partial index of exhausted deliveries, not every delivery of
/// the window.
fn assert_reads_exhausted_rows_only(backend: &str, plans: &[(String, String)]) {
    let (_, plan) = plans
        .iter()
        .find(|(name, _)| name == "redelivery step")
        .expect("no plan for the redelivery step");
    assert!(
        plan.contains("deliveries_exhausted_by_webhook"),
        "{backend}: the redelivery step does not read the exhausted deliveries' index:\n{plan}"
    );
}

#[tokio::test]
async fn postgres_hot_queries_use_indexes() {
    let Some(schema) = PgTestSchema::create().await else {
        return;
    };
    let store = PgStore::connect(&schema.url(), 1).await.unwrap();
    store.migrate().await.unwrap();
    let mut conn = AsyncPgConnection::establish(&schema.url()).await.unwrap();
    conn.batch_execute(&load_sql()).await.unwrap();
    let (wallet, event, webhook, before) = arguments();
    let plans = store
        .explain_hot_queries(wallet, event, webhook, before)
        .await
        .unwrap();
    let scans = [
        "Seq Scan on deliveries",
        "Seq Scan on events",
        "Seq Scan on attempts",
    ];
    // Also inside a plan line such as "->  Seq Scan on deliveries".
    for (name, plan) in &plans {
        for pattern in scans {
            assert!(
                !plan.contains(pattern),
                "PostgreSQL: {name} scans a whole table:\n{plan}"
            );
        }
    }
    assert_no_full_scans("PostgreSQL", &plans, &scans);
    assert_reads_exhausted_rows_only("PostgreSQL", &plans);
    assert_reads_attempts_by_delivery("PostgreSQL", &plans);
    drop(store);
}
