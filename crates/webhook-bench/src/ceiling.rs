//! The ceilings measured in the same run, so that end-to-end figures can be read as
//! fractions that hold on any machine:
//!
//! - the sink's own rate: a bare client with the same requests in flight posting envelopes
//!   straight to a sink, no webhookd and no database (what the harness itself can carry);
//! - the storage adapter's rate of whole delivery cycles with no HTTP, in process: clients
//!   that each publish a batch of 64 events, claim a batch of due deliveries, and record a 200
//!   for each (given by the domain's transition), over and over. The same row work as the
//!   raw SQL ceiling of PostgreSQL (`pgbench.rs`), which is measured beside it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use time::OffsetDateTime;
use uuid::Uuid;
use webhook_adapters::{PgStore, SqliteStore};
use webhook_domain::{
    AttemptDetail, CustomHeaders, Event, EventId, EventType, Jitter, RetryPolicy, Timestamp,
    Wallet, WalletId, WalletName, Webhook, WebhookId, WebhookScope, WebhookUrl,
};
use webhook_ports::{
    AttemptLog, AttemptRecord, DeliveryQueue, EventOutbox, LeaseOwner, PublishItem,
    WalletRepository, WebhookRepository,
};

use crate::api::{self, Http};
use crate::sink::{Route, Sink};
use crate::stats::per_second;
use crate::webhookd::{Backend, Database};

/// Deliveries claimed (and recorded) per round trip: the dispatcher's default batch size.
pub(crate) const CLAIM_BATCH: u32 = 64;

/// Clients of the storage ceilings (and of PostgreSQL's raw SQL one) by default: several, so
/// that the adapter's round trips overlap; on the 2-core machine of docs/performance.md, 2, 4
/// and 8 gave raw SQL the same rate.
pub(crate) const DEFAULT_CLIENTS: usize = 4;

/// Requests per second a bare client with `in_flight` requests outstanding gets from a sink.
pub(crate) async fn sink_rate(in_flight: usize, requests: u64) -> anyhow::Result<f64> {
    let sink = Sink::start_on(0, vec![Route::fast("/ceiling")], requests as usize).await?;
    let route = sink.route("/ceiling").context("the route just made")?;
    let url = sink.url("/ceiling");
    let http = Http::new(in_flight);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..in_flight)
        .map(|_| {
            let (http, url, next) = (http.clone(), url.clone(), Arc::clone(&next));
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < requests {
                    let id = Uuid::new_v4();
                    let id_text = id.to_string();
                    // The headers webhookd sends, with a signature of the right length.
                    let headers = [
                        ("webhook-id", id_text.as_str()),
                        ("webhook-timestamp", "1714564800"),
                        (
                            "webhook-signature",
                            "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=",
                        ),
                        ("user-agent", "webhookd/0.0.0"),
                    ];
                    http.post(&url, &headers, Bytes::from(api::envelope(id)))
                        .await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for worker in workers {
        worker.await??;
    }
    let elapsed = started.elapsed();
    if sink.received(&[route]) != requests {
        bail!(
            "the sink noted {} of {requests} requests",
            sink.received(&[route])
        );
    }
    per_second(requests, elapsed.as_nanos() as u64).context("no time passed")
}

trait Store: WalletRepository + WebhookRepository + EventOutbox + DeliveryQueue {}
impl<T: WalletRepository + WebhookRepository + EventOutbox + DeliveryQueue> Store for T {}

/// Delivery cycles each client runs for about `deliveries` deliveries in all, a batch of
/// [`CLAIM_BATCH`] per cycle: the same for the adapter and for pgbench.
pub(crate) fn cycles_per_client(deliveries: u64, clients: usize) -> u64 {
    deliveries
        .div_ceil(u64::from(CLAIM_BATCH))
        .div_ceil(clients.max(1) as u64)
        .max(1)
}

/// Deliveries per second the storage adapter carries through whole cycles with no HTTP, on a
/// fresh database with one wallet and one webhook: `clients` tasks sharing a pool of as many
/// connections, each repeating [`cycle`] (publish a batch, claim a batch, record a 200 for
/// each) for about `deliveries` deliveries in all. The row work of the raw SQL ceiling's
/// script (`pgbench.rs`), at the same clients.
pub(crate) async fn store_rate(
    backend: Backend,
    deliveries: u64,
    clients: usize,
) -> anyhow::Result<f64> {
    let clients = clients.max(1);
    let pool = u32::try_from(clients).unwrap_or(u32::MAX);
    let database = Database::fresh(backend).await?;
    let store: Arc<dyn Store> = match &database {
        Database::Postgres(schema) => {
            let store = PgStore::connect(&schema.url(), pool).await?;
            store.migrate().await?;
            Arc::new(store)
        }
        Database::External(url) => {
            let store = PgStore::connect(url, pool).await?;
            store.migrate().await?;
            Arc::new(store)
        }
        Database::Sqlite(dir) => {
            let store = SqliteStore::open(&dir.path().join("ceiling.db"), pool).await?;
            store.migrate().await?;
            Arc::new(store)
        }
    };
    let (wallet, _) = one_wallet_with_one_webhook(store.as_ref()).await?;
    // S1's events: its type (`api::event_body`) and its data.
    let event_type = EventType::parse("ConnectionUpdated")?;
    let data: serde_json::Value = serde_json::from_str(api::CONNECTION_DATA)?;
    let cycles = cycles_per_client(deliveries, clients) * clients as u64;
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..clients)
        .map(|n| {
            let (store, next) = (Arc::clone(&store), Arc::clone(&next));
            let (event_type, data) = (event_type.clone(), data.clone());
            let owner = LeaseOwner(format!("bench-ceiling-{n}"));
            tokio::spawn(async move {
                let mut recorded = 0;
                while next.fetch_add(1, Ordering::Relaxed) < cycles {
                    let events = Batch {
                        wallet,
                        event_type: &event_type,
                        data: &data,
                    };
                    recorded += cycle(store.as_ref(), &events, &owner).await?;
                }
                anyhow::Ok(recorded)
            })
        })
        .collect();
    let mut recorded = 0;
    for worker in workers {
        recorded += worker.await??;
    }
    let elapsed = started.elapsed();
    drop(store);
    drop(database);
    per_second(recorded, elapsed.as_nanos() as u64).context("no time passed")
}

/// A wallet with one webhook (unordered, enabled), as the ceilings need: their ids.
pub(crate) async fn one_wallet_with_one_webhook(
    store: &(impl WalletRepository + WebhookRepository + ?Sized),
) -> anyhow::Result<(WalletId, WebhookId)> {
    let now = OffsetDateTime::now_utc();
    let wallet = Wallet {
        id: WalletId::from_uuid(Uuid::new_v4()),
        name: WalletName::new("ceiling")?,
        created_at: now,
        updated_at: now,
    };
    store.create_wallet(&wallet).await?;
    let webhook = Webhook::new(
        WebhookId::from_uuid(Uuid::new_v4()),
        WebhookScope::Wallet(wallet.id),
        WebhookUrl::parse("http://127.0.0.1:9/ceiling")?,
        CustomHeaders::default(),
        now,
    );
    store.create_webhook(&webhook, None).await?;
    Ok((wallet.id, webhook.id))
}

/// The events a cycle publishes: of one wallet, all of one type and data.
struct Batch<'a> {
    wallet: WalletId,
    event_type: &'a EventType,
    data: &'a serde_json::Value,
}

/// One delivery cycle through the adapter's API, as a webhookd instance would run it with a
/// receiver that answers at once: publishes a batch of [`CLAIM_BATCH`] events (one delivery
/// each), claims up to a batch of due deliveries (those of other clients too), and records a
/// 200 for each. The deliveries recorded.
async fn cycle(store: &dyn Store, events: &Batch<'_>, owner: &LeaseOwner) -> anyhow::Result<u64> {
    let now = OffsetDateTime::now_utc();
    let items = (0..CLAIM_BATCH)
        .map(|_| {
            Ok(PublishItem {
                event: Event::new(
                    EventId::from_uuid(Uuid::new_v4()),
                    Timestamp::from_datetime(now),
                    events.event_type.clone(),
                    events.data.clone(),
                    events.wallet,
                )?,
                idempotency: None,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    store.publish_batch(&items, now).await?;

    let now = OffsetDateTime::now_utc();
    let claimed = store
        .claim_due(
            owner,
            &webhook_ports::ClaimRequest {
                now,
                lease: Duration::from_secs(60),
                limit: CLAIM_BATCH,
                per_target: CLAIM_BATCH,
                skip: Vec::new(),
            },
        )
        .await?;
    let ok = AttemptDetail::Response {
        status: 200,
        retry_after: None,
    };
    let policy = RetryPolicy::identus();
    let records = claimed
        .iter()
        .map(|c| {
            Ok(AttemptRecord {
                delivery: c
                    .delivery
                    .on_attempt(&ok.outcome(), &policy, now, Jitter::MAX)?
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
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let lost = store.record_attempts(owner, &records).await?;
    if !lost.is_empty() {
        bail!("{} leases were lost", lost.len());
    }
    Ok(records.len() as u64)
}
