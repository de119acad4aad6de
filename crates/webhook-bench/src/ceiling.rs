//! The two ceilings measured in the same run, so that end-to-end figures can be read as
//! fractions that hold on any machine:
//!
//! - the sink's own rate: a bare client with the same requests in flight posting envelopes
//!   straight to a sink, no webhookd and no database (what the harness itself can carry);
//! - the storage adapter's claim-and-complete rate with no HTTP, in process: deliveries made
//!   first, then claimed in batches of 64, each given a 200 by the domain's transition and
//!   recorded, one batch after the other (as `benches/claim_complete.rs` does, for one target).

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

/// Deliveries per second the storage adapter claims and completes with no HTTP, measured over
/// `deliveries` deliveries to one webhook on a fresh database.
pub(crate) async fn store_rate(backend: Backend, deliveries: u64) -> anyhow::Result<f64> {
    let database = Database::fresh(backend).await?;
    let store: Box<dyn Store> = match &database {
        Database::Postgres(schema) => {
            let store = PgStore::connect(&schema.url(), 4).await?;
            store.migrate().await?;
            Box::new(store)
        }
        Database::External(url) => {
            let store = PgStore::connect(url, 4).await?;
            store.migrate().await?;
            Box::new(store)
        }
        Database::Sqlite(dir) => {
            let store = SqliteStore::open(&dir.path().join("ceiling.db"), 4).await?;
            store.migrate().await?;
            Box::new(store)
        }
    };
    let wallet = one_wallet_with_one_webhook(store.as_ref()).await?;
    fill(store.as_ref(), wallet, deliveries).await?;
    let elapsed = claim_and_complete(store.as_ref(), deliveries).await?;
    drop(store);
    drop(database);
    per_second(deliveries, elapsed.as_nanos() as u64).context("no time passed")
}

async fn one_wallet_with_one_webhook(store: &dyn Store) -> anyhow::Result<WalletId> {
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
    Ok(wallet.id)
}

/// Publishes `deliveries` events (one delivery each), 500 per transaction.
async fn fill(store: &dyn Store, wallet: WalletId, deliveries: u64) -> anyhow::Result<()> {
    let event_type = EventType::parse("bench.ceiling")?;
    let mut left = deliveries;
    while left > 0 {
        let now = OffsetDateTime::now_utc();
        let items = (0..left.min(500))
            .map(|_| {
                Ok(PublishItem {
                    event: Event::new(
                        EventId::from_uuid(Uuid::new_v4()),
                        Timestamp::from_datetime(now),
                        event_type.clone(),
                        serde_json::json!({ "n": 1 }),
                        wallet,
                    )?,
                    idempotency: None,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        left -= items.len() as u64;
        store.publish_batch(&items, now).await?;
    }
    Ok(())
}

/// Claims, completes and records every delivery, a batch at a time; the time it took.
async fn claim_and_complete(store: &dyn Store, deliveries: u64) -> anyhow::Result<Duration> {
    let owner = LeaseOwner("bench-ceiling".to_owned());
    let ok = AttemptDetail::Response {
        status: 200,
        retry_after: None,
    };
    let policy = RetryPolicy::identus();
    let mut done = 0;
    let started = Instant::now();
    while done < deliveries {
        let now = OffsetDateTime::now_utc();
        let claimed = store
            .claim_due(
                &owner,
                &webhook_ports::ClaimRequest {
                    now,
                    lease: Duration::from_secs(60),
                    limit: CLAIM_BATCH,
                    per_target: CLAIM_BATCH,
                    skip: Vec::new(),
                },
            )
            .await?;
        if claimed.is_empty() {
            bail!("only {done} of {deliveries} deliveries could be claimed");
        }
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
        let lost = store.record_attempts(&owner, &records).await?;
        if !lost.is_empty() {
            bail!("{} leases were lost", lost.len());
        }
        done += claimed.len() as u64;
    }
    Ok(started.elapsed())
}
