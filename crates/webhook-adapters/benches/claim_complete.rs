//! Claim-and-complete rate of the storage adapters, with no HTTP: each iteration claims a batch
//! of due deliveries, applies a 200 to each with the domain's transition, and records the
//! outcomes. Throughput is deliveries per second, for batches of 1, 50 and 500.
//!
//!
//! `claim_targets` times what a claim and a next-due read cost when nothing is due but many
//! targets hold unfinished deliveries (each one, leased for an hour): their cost grows with the
//! number of such targets (one index descent each), which this measures at 10, 1,000 and 5,000.
//!
//! Run with `cargo xtask bench` (or `cargo bench -p webhook-adapters --bench claim_complete`).
//! PostgreSQL is `WEBHOOKD_TEST_PG_URL` (default 127.0.0.1:5432), in a schema of its own that
//! is dropped afterwards; without a server only SQLite is measured.
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use time::OffsetDateTime;
use uuid::Uuid;
use webhook_adapters::testing::PgTestSchema;
use webhook_adapters::{PgStore, SqliteStore};
use webhook_domain::{
    AttemptDetail, CustomHeaders, Event, EventId, EventType, Jitter, RetryPolicy, Timestamp,
    Wallet, WalletId, WalletName, Webhook, WebhookId, WebhookScope, WebhookUrl,
};
use webhook_ports::{
    AttemptLog, AttemptRecord, DeliveryQueue, EventOutbox, LeaseOwner, WalletRepository,
    WebhookRepository,
};

const BATCHES: [u32; 3] = [1, 50, 500];
/// Deliveries created by one publish: the wallet's webhooks.
const FAN_OUT: u64 = 100;

trait Store: WalletRepository + WebhookRepository + EventOutbox + DeliveryQueue {}
impl<T: WalletRepository + WebhookRepository + EventOutbox + DeliveryQueue> Store for T {}

async fn wallet_with_webhooks(store: &dyn Store) -> WalletId {
    let now = OffsetDateTime::now_utc();
    let wallet = Wallet {
        id: WalletId::from_uuid(Uuid::new_v4()),
        name: WalletName::new("bench").unwrap(),
        created_at: now,
        updated_at: now,
    };
    store.create_wallet(&wallet).await.unwrap();
    for n in 0..FAN_OUT {
        let webhook = Webhook::new(
            WebhookId::from_uuid(Uuid::new_v4()),
            WebhookScope::Wallet(wallet.id),
            WebhookUrl::parse(&format!("http://127.0.0.1:9/{n}")).unwrap(),
            CustomHeaders::default(),
            now,
        );
        store.create_webhook(&webhook, None).await.unwrap();
    }
    wallet.id
}

/// Publishes enough events for `deliveries` more due deliveries.
async fn fill(store: &dyn Store, wallet: WalletId, deliveries: u64) {
    let now = OffsetDateTime::now_utc();
    for _ in 0..deliveries.div_ceil(FAN_OUT) {
        let event = Event::new(
            EventId::from_uuid(Uuid::new_v4()),
            Timestamp::from_datetime(now),
            EventType::parse("bench.event").unwrap(),
            serde_json::json!({ "n": 1 }),
            wallet,
        )
        .unwrap();
        store.publish(&event, None, now).await.unwrap();
    }
}

/// `iters` rounds of claim, transition and record, timed; the deliveries are made first.
async fn claim_and_complete(
    store: &dyn Store,
    wallet: WalletId,
    batch: u32,
    iters: u64,
) -> Duration {
    fill(store, wallet, iters * u64::from(batch)).await;
    let owner = LeaseOwner("bench".to_owned());
    let ok = AttemptDetail::Response {
        status: 200,
        retry_after: None,
    };
    let started = Instant::now();
    for _ in 0..iters {
        let now = OffsetDateTime::now_utc();
        let claimed = store
            .claim_due(
                &owner,
                &webhook_ports::ClaimRequest {
                    now,
                    lease: Duration::from_secs(60),
                    limit: batch,
                    per_target: batch,
                    skip: Vec::new(),
                },
            )
            .await
            .unwrap();
        assert_eq!(claimed.len(), batch as usize, "not enough due deliveries");
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
                    duration: Duration::from_millis(3),
                    detail: ok,
                    response_excerpt: None,
                    error: None,
                },
            })
            .collect();
        let lost = store.record_attempts(&owner, &records).await.unwrap();
        assert!(lost.is_empty());
    }
    started.elapsed()
}

fn bench_backend(
    c: &mut Criterion,
    runtime: &tokio::runtime::Runtime,
    name: &str,
    store: &dyn Store,
) {
    let wallet = runtime.block_on(wallet_with_webhooks(store));
    let mut group = c.benchmark_group(format!("claim_complete/{name}"));
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    for batch in BATCHES {
        group.throughput(Throughput::Elements(u64::from(batch)));
        group.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, &batch| {
            b.to_async(runtime)
                .iter_custom(|iters| claim_and_complete(store, wallet, batch, iters));
        });
    }
    group.finish();
}

/// How many targets hold an unfinished delivery in each step of `claim_targets`.
const HOLDING: [u64; 3] = [10, 1_000, 5_000];

/// Adds `count` webhooks in a wallet of their own, each with one delivery leased for an hour.
async fn hold_targets(store: &dyn Store, count: u64) {
    let now = OffsetDateTime::now_utc();
    let wallet = Wallet {
        id: WalletId::from_uuid(Uuid::new_v4()),
        name: WalletName::new("holding").unwrap(),
        created_at: now,
        updated_at: now,
    };
    store.create_wallet(&wallet).await.unwrap();
    for n in 0..count {
        let webhook = Webhook::new(
            WebhookId::from_uuid(Uuid::new_v4()),
            WebhookScope::Wallet(wallet.id),
            WebhookUrl::parse(&format!("http://127.0.0.1:9/held/{n}")).unwrap(),
            CustomHeaders::default(),
            now,
        );
        store.create_webhook(&webhook, None).await.unwrap();
    }
    let event = Event::new(
        EventId::from_uuid(Uuid::new_v4()),
        Timestamp::from_datetime(now),
        EventType::parse("bench.event").unwrap(),
        serde_json::json!({ "n": 1 }),
        wallet.id,
    )
    .unwrap();
    store.publish(&event, None, now).await.unwrap();
    let claimed = store
        .claim_due(
            &LeaseOwner("holder".to_owned()),
            &webhook_ports::ClaimRequest {
                now: OffsetDateTime::now_utc(),
                lease: Duration::from_secs(3600),
                limit: u32::try_from(count).unwrap(),
                per_target: 1,
                skip: Vec::new(),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        claimed.len() as u64,
        count,
        "every new target's delivery leased"
    );
}

fn bench_targets(
    c: &mut Criterion,
    runtime: &tokio::runtime::Runtime,
    name: &str,
    store: &dyn Store,
) {
    let mut group = c.benchmark_group(format!("claim_targets/{name}"));
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let owner = LeaseOwner("bench".to_owned());
    let mut holding = 0;
    for target in HOLDING {
        runtime.block_on(hold_targets(store, target - holding));
        holding = target;
        group.bench_with_input(BenchmarkId::new("claim", holding), &(), |b, ()| {
            b.to_async(runtime).iter(|| async {
                let claimed = store
                    .claim_due(
                        &owner,
                        &webhook_ports::ClaimRequest {
                            now: OffsetDateTime::now_utc(),
                            lease: Duration::from_secs(60),
                            limit: 64,
                            per_target: 32,
                            skip: Vec::new(),
                        },
                    )
                    .await
                    .unwrap();
                assert!(claimed.is_empty(), "nothing is due");
            });
        });
        group.bench_with_input(BenchmarkId::new("next_due", holding), &(), |b, ()| {
            b.to_async(runtime).iter(|| async {
                store
                    .next_due_at(OffsetDateTime::now_utc(), &[])
                    .await
                    .unwrap()
            });
        });
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let postgres = || {
        let schema = runtime.block_on(PgTestSchema::create())?;
        let store = runtime.block_on(async {
            let store = PgStore::connect(&schema.url(), 4).await.unwrap();
            store.migrate().await.unwrap();
            store
        });
        Some((schema, store))
    };
    let sqlite = |dir: &tempfile::TempDir| {
        runtime.block_on(async {
            let store = SqliteStore::open(&dir.path().join("bench.db"), 4)
                .await
                .unwrap();
            store.migrate().await.unwrap();
            store
        })
    };

    // Each group on a database of its own: what one leaves behind is not the other's load.
    match postgres() {
        Some((_schema, store)) => bench_backend(c, &runtime, "postgres", &store),
        None => eprintln!("PostgreSQL is unreachable: measuring SQLite only"),
    }
    let dir = tempfile::tempdir().unwrap();
    bench_backend(c, &runtime, "sqlite", &sqlite(&dir));
    if let Some((_schema, store)) = postgres() {
        bench_targets(c, &runtime, "postgres", &store);
    }
    let dir = tempfile::tempdir().unwrap();
    bench_targets(c, &runtime, "sqlite", &sqlite(&dir));
}

criterion_group!(claim_complete, benches);
criterion_main!(claim_complete);
