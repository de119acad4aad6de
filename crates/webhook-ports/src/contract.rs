//! The shared contract suite of the storage ports (feature `contract`): one generic function
//! per `MUST` rule (or small group of them) of these ports. Nothing here knows which adapter
//! runs it. An adapter's tests (in this repository or not) define a `fresh()` that answers
//! `Option<(guard, store)>` (a fresh, migrated store kept alive by the guard, or `None` to skip
//! when its server is absent outside CI) and write one line, `webhook_ports::contract_suite!(fresh);`,
//! which makes one `#[tokio::test]` per rule (the adapter's tests need `tokio` with the
//! `macros` and `rt-multi-thread` features).
#![allow(clippy::unwrap_used, missing_docs, unreachable_pub)]

use std::collections::HashSet;
use std::time::Duration;

use time::OffsetDateTime;
use time::macros::datetime;
use uuid::Uuid;
use webhook_domain::{
    ApiKey, ApiKeyHash, ApiKeyTag, AttemptDetail, Backoff, CancelReason, CustomHeaders, Delivery,
    DeliveryId, DeliveryState, Entity, EntityId, Event, EventId, EventType, EventTypeFilter,
    Jitter, JobState, JobStopReason, RedeliveryJob, RedeliveryJobId, RetryPolicy, SigningKeys,
    SigningSecret, Timestamp, Wallet, WalletId, WalletName, Webhook, WebhookId, WebhookScope,
    WebhookUrl,
};
mod console;
pub mod destination;
mod ordering;
pub mod source;
pub use console::*;
pub use ordering::*;

use crate::{
    AttemptLog, AttemptRecord, Backlog, ClaimRequest, DeliveryFilter, DeliveryQueue, EventOutbox,
    Idempotency, LeaseOwner, OutboxError, Page, PublishItem, Published, RedeliveryJobs, Retention,
    WalletRepository, WalletStoreError, WebhookRepository, WebhookStoreError,
};

/// A time with microsecond precision, the precision every adapter must keep.
pub const T0: OffsetDateTime = datetime!(2026-01-01 00:00:00.123456 UTC);
const LEASE: Duration = Duration::from_secs(30);

pub fn at(secs: i64) -> OffsetDateTime {
    T0 + time::Duration::seconds(secs)
}

pub fn all() -> Page {
    Page::first(1000)
}

pub fn new_wallet_value(name: &str) -> Wallet {
    Wallet {
        id: WalletId::from_uuid(Uuid::new_v4()),
        name: WalletName::new(name).unwrap(),
        created_at: T0,
        updated_at: datetime!(2026-01-02 03:04:05.654321 UTC),
    }
}

pub async fn new_wallet<S: WalletRepository>(store: &S) -> WalletId {
    let wallet = new_wallet_value("tenant");
    store.create_wallet(&wallet).await.unwrap();
    wallet.id
}

pub fn webhook_value(scope: WebhookScope, url: &str) -> Webhook {
    Webhook::new(
        WebhookId::from_uuid(Uuid::new_v4()),
        scope,
        WebhookUrl::parse(url).unwrap(),
        CustomHeaders::bearer("secret-token").unwrap(),
        T0,
    )
}

pub async fn new_webhook<S: WebhookRepository>(store: &S, wallet: WalletId, url: &str) -> Webhook {
    let webhook = webhook_value(WebhookScope::Wallet(wallet), url);
    store.create_webhook(&webhook, None).await.unwrap();
    webhook
}

pub fn custom_type() -> EventType {
    EventType::parse("test.created").unwrap()
}

pub fn event(wallet: WalletId) -> Event {
    event_with_id(wallet, EventId::from_uuid(Uuid::new_v4()))
}

pub fn event_with_id(wallet: WalletId, id: EventId) -> Event {
    Event::new(
        id,
        Timestamp::from_datetime(datetime!(2026-01-01 00:00:00.000042 UTC)),
        custom_type(),
        serde_json::json!({ "n": 1, "s": "x" }),
        wallet,
    )
    .unwrap()
}

pub async fn deliveries_of<S: EventOutbox>(store: &S, wallet: WalletId) -> Vec<Delivery> {
    store
        .list_deliveries(wallet, DeliveryFilter::default(), all())
        .await
        .unwrap()
}

/// A wallet with one webhook and one published event: one pending delivery due at `T0`.
pub async fn one_delivery<S>(store: &S) -> (WalletId, Webhook, Event, Delivery)
where
    S: WalletRepository + WebhookRepository + EventOutbox,
{
    let wallet = new_wallet(store).await;
    let webhook = new_webhook(store, wallet, "https://a.example/hook").await;
    let event = event(wallet);
    store.publish(&event, None, T0).await.unwrap();
    let mut deliveries = deliveries_of(store, wallet).await;
    assert_eq!(deliveries.len(), 1);
    (wallet, webhook, event, deliveries.remove(0))
}

pub fn owner(name: &str) -> LeaseOwner {
    LeaseOwner(name.to_owned())
}

pub fn log(number: u32, started_at: OffsetDateTime, outcome: AttemptDetail) -> AttemptLog {
    AttemptLog {
        number,
        started_at,
        duration: Duration::from_micros(150_250),
        detail: outcome,
        response_excerpt: Some("oops".to_owned()),
        error: None,
    }
}

/// Claims up to `limit` deliveries due at `now` for `me`, skipping the targets in `skip`.
pub async fn claim<S: DeliveryQueue>(
    store: &S,
    me: &LeaseOwner,
    now: OffsetDateTime,
    limit: u32,
    skip: &[WebhookId],
) -> Vec<crate::ClaimedDelivery> {
    store
        .claim_due(me, &request(now, LEASE, limit, skip))
        .await
        .unwrap()
}

/// A claim request at `now` for `lease`, of at most `limit` deliveries (and as many of one
/// target), skipping `skip`.
pub fn request(
    now: OffsetDateTime,
    lease: Duration,
    limit: u32,
    skip: &[WebhookId],
) -> ClaimRequest {
    ClaimRequest {
        now,
        lease,
        limit,
        per_target: limit,
        skip: skip.to_vec(),
    }
}

/// The next time a claim at `now` skipping `skip` could find something.
pub async fn next_due<S: DeliveryQueue>(
    store: &S,
    now: OffsetDateTime,
    skip: &[WebhookId],
) -> Option<OffsetDateTime> {
    store.next_due_at(now, skip).await.unwrap()
}

pub fn status(code: u16) -> AttemptDetail {
    AttemptDetail::Response {
        status: code,
        retry_after: None,
    }
}

// ---------------------------------------------------------------------------------------------
// WalletRepository

/// create then get round-trips; a second create with the same id is `Conflict` and leaves the
/// first unchanged; an unknown id is `NotFound`.
pub async fn wallet_create_get<S: WalletRepository>(store: &S) {
    let wallet = new_wallet_value("Alice");
    store.create_wallet(&wallet).await.unwrap();
    assert_eq!(store.get_wallet(wallet.id).await.unwrap(), wallet);

    let mut again = new_wallet_value("Mallory");
    again.id = wallet.id;
    let err = store.create_wallet(&again).await.unwrap_err();
    assert!(matches!(err, WalletStoreError::Conflict(_)), "{err:?}");
    assert_eq!(store.get_wallet(wallet.id).await.unwrap(), wallet);
    assert_eq!(store.list_wallets(all()).await.unwrap(), vec![wallet]);

    let err = store
        .get_wallet(WalletId::from_uuid(Uuid::new_v4()))
        .await
        .unwrap_err();
    assert!(matches!(err, WalletStoreError::NotFound), "{err:?}");
}

/// add_api_key to an unknown wallet is `NotFound`; find_api_keys by tag returns the stored key
/// (whose hash matches the key); an unknown tag gives an empty list.
pub async fn api_keys<S: WalletRepository>(store: &S) {
    let wallet = new_wallet(store).await;
    let key = ApiKey::parse("key-of-alice").unwrap();
    let stored = crate::StoredApiKey {
        wallet_id: wallet,
        hash: ApiKeyHash::new(&key, [3; 16]),
        created_at: T0,
    };
    store.add_api_key(&stored).await.unwrap();

    let found = store.find_api_keys(ApiKeyTag::of(&key)).await.unwrap();
    assert_eq!(found, vec![stored.clone()]);
    assert!(found[0].hash.matches(&key));
    assert!(!found[0].hash.matches(&ApiKey::parse("key-of-bob").unwrap()));

    let unknown = ApiKeyTag::of(&ApiKey::parse("never-stored").unwrap());
    assert!(store.find_api_keys(unknown).await.unwrap().is_empty());

    let orphan_key = ApiKey::parse("orphan").unwrap();
    let orphan = crate::StoredApiKey {
        wallet_id: WalletId::from_uuid(Uuid::new_v4()),
        hash: ApiKeyHash::new(&orphan_key, [4; 16]),
        created_at: T0,
    };
    let err = store.add_api_key(&orphan).await.unwrap_err();
    assert!(matches!(err, WalletStoreError::NotFound), "{err:?}");
    assert!(
        store
            .find_api_keys(ApiKeyTag::of(&orphan_key))
            .await
            .unwrap()
            .is_empty()
    );
}

/// create_entity then get_entity round-trips, times to the microsecond; an unknown id is
/// `NotFound`; an unknown wallet is `NotFound` and a taken id `Conflict`, storing nothing.
pub async fn entity_create_get<S: WalletRepository>(store: &S) {
    let wallet = new_wallet(store).await;
    let entity = Entity {
        id: EntityId::from_uuid(Uuid::new_v4()),
        name: WalletName::new("Alice's issuer").unwrap(),
        wallet_id: wallet,
        created_at: T0,
        updated_at: datetime!(2026-01-02 03:04:05.654321 UTC),
    };
    store.create_entity(&entity).await.unwrap();
    assert_eq!(store.get_entity(entity.id).await.unwrap(), entity);

    let err = store
        .get_entity(EntityId::from_uuid(Uuid::new_v4()))
        .await
        .unwrap_err();
    assert!(matches!(err, WalletStoreError::NotFound), "{err:?}");

    let orphan = Entity {
        id: EntityId::from_uuid(Uuid::new_v4()),
        wallet_id: WalletId::from_uuid(Uuid::new_v4()),
        ..entity.clone()
    };
    let err = store.create_entity(&orphan).await.unwrap_err();
    assert!(matches!(err, WalletStoreError::NotFound), "{err:?}");
    let err = store.get_entity(orphan.id).await.unwrap_err();
    assert!(matches!(err, WalletStoreError::NotFound), "{err:?}");

    let other_wallet = new_wallet(store).await;
    let taken = Entity {
        name: WalletName::new("Mallory").unwrap(),
        wallet_id: other_wallet,
        ..entity.clone()
    };
    let err = store.create_entity(&taken).await.unwrap_err();
    assert!(matches!(err, WalletStoreError::Conflict(_)), "{err:?}");
    assert_eq!(store.get_entity(entity.id).await.unwrap(), entity);
}

pub fn token_hash(key: &str, salt: u8) -> ApiKeyHash {
    ApiKeyHash::new(&ApiKey::parse(key).unwrap(), [salt; 16])
}

/// No admin token at first; init_admin_token stores the first one and returns true, and every
/// later call returns false and leaves it.
pub async fn admin_token_init_once<S: WalletRepository>(store: &S) {
    assert_eq!(store.admin_token().await.unwrap(), None);
    let first = token_hash("admin-one", 1);
    assert!(store.init_admin_token(&first, T0).await.unwrap());
    assert_eq!(store.admin_token().await.unwrap(), Some(first.clone()));

    let second = token_hash("admin-two", 2);
    assert!(!store.init_admin_token(&second, at(1)).await.unwrap());
    assert!(!store.init_admin_token(&first, at(2)).await.unwrap());
    let stored = store.admin_token().await.unwrap().unwrap();
    assert_eq!(stored, first);
    assert!(stored.matches(&ApiKey::parse("admin-one").unwrap()));
}

/// Instances racing at first start (tasks on a multi-threaded runtime, each through the shared
/// pool): exactly one stores its token, and it is the one kept.
pub async fn admin_token_init_race<S>(store: &S)
where
    S: WalletRepository + Clone + 'static,
{
    const RACERS: u8 = 8;
    let racers: Vec<_> = (0..RACERS)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                let hash = token_hash(&format!("admin-{n}"), n);
                let stored = store.init_admin_token(&hash, T0).await.unwrap();
                (hash, stored)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for racer in racers {
        let (hash, stored) = racer.await.unwrap();
        if stored {
            winners.push(hash);
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "{} instances stored a token",
        winners.len()
    );
    assert_eq!(store.admin_token().await.unwrap(), Some(winners.remove(0)));
}

// ---------------------------------------------------------------------------------------------
// WebhookRepository

/// create, get and list round-trip every field, times to the microsecond.
pub async fn webhook_round_trip<S: WalletRepository + WebhookRepository>(store: &S) {
    let wallet = new_wallet(store).await;
    let headers = CustomHeaders::new([
        ("Authorization".to_owned(), "Bearer abc".to_owned()),
        ("X-Tenant".to_owned(), "alice\tand bob".to_owned()),
    ])
    .unwrap();
    let keys = SigningKeys::new(SigningSecret::from_bytes(&[7; 32]).unwrap()).rotate(
        SigningSecret::from_bytes(&[8; 40]).unwrap(),
        T0,
        Duration::from_secs(3600),
    );
    let policy = RetryPolicy::new(
        Backoff::Exponential {
            initial: Duration::from_millis(1500),
            cap: Duration::from_secs(600),
        },
        7,
        Some(Duration::from_secs(86_400)),
    )
    .unwrap();
    let full = Webhook {
        id: WebhookId::from_uuid(Uuid::new_v4()),
        scope: WebhookScope::Wallet(wallet),
        url: WebhookUrl::parse("https://hooks.example.com:8443/in/a?x=1&y=%20").unwrap(),
        custom_headers: headers,
        event_types: Some(EventTypeFilter::new([
            EventType::ConnectionUpdated,
            EventType::parse("custom.thing").unwrap(),
        ])),
        signing_keys: Some(keys),
        retry_policy: Some(policy),
        enabled: false,
        ordered: true,
        rate_limit: Some(webhook_domain::RateLimit::per_second(50).unwrap()),
        created_at: datetime!(2026-01-01 00:00:00.123456 UTC),
        revision: 1,
    };
    let bare = Webhook {
        created_at: datetime!(2026-01-01 00:00:00.999999 UTC),
        ..webhook_value(WebhookScope::Wallet(wallet), "http://localhost:9/b")
    };
    store.create_webhook(&full, None).await.unwrap();
    store.create_webhook(&bare, Some(10)).await.unwrap();

    assert_eq!(store.get_webhook(wallet, full.id).await.unwrap(), full);
    assert_eq!(store.get_webhook(wallet, bare.id).await.unwrap(), bare);
    assert_eq!(
        store.list_webhooks(wallet, all()).await.unwrap(),
        vec![full.clone(), bare.clone()],
        "oldest first"
    );
    assert_eq!(
        store
            .list_webhooks(
                wallet,
                Page {
                    offset: 1,
                    limit: 1
                }
            )
            .await
            .unwrap(),
        vec![bare]
    );

    let err = store.create_webhook(&full, None).await.unwrap_err();
    assert!(matches!(err, WebhookStoreError::Conflict(_)), "{err:?}");
}

/// Another wallet cannot get, list or delete a wallet's webhook.
pub async fn webhook_tenant_isolation<S: WalletRepository + WebhookRepository>(store: &S) {
    let a = new_wallet(store).await;
    let b = new_wallet(store).await;
    let hook = new_webhook(store, a, "https://a.example/hook").await;

    let err = store.get_webhook(b, hook.id).await.unwrap_err();
    assert!(matches!(err, WebhookStoreError::NotFound), "{err:?}");
    assert!(store.list_webhooks(b, all()).await.unwrap().is_empty());
    let err = store.delete_webhook(b, hook.id, at(1)).await.unwrap_err();
    assert!(matches!(err, WebhookStoreError::NotFound), "{err:?}");

    assert_eq!(store.get_webhook(a, hook.id).await.unwrap(), hook);
    assert_eq!(store.list_webhooks(a, all()).await.unwrap(), vec![hook]);
    let err = store
        .get_webhook(a, WebhookId::from_uuid(Uuid::new_v4()))
        .await
        .unwrap_err();
    assert!(matches!(err, WebhookStoreError::NotFound), "{err:?}");
}

/// The per-wallet limit gives `LimitReached`, counting only that wallet's webhooks.
pub async fn webhook_limit<S: WalletRepository + WebhookRepository>(store: &S) {
    let a = new_wallet(store).await;
    let b = new_wallet(store).await;
    for _ in 0..2 {
        let hook = webhook_value(WebhookScope::Wallet(a), "https://a.example/hook");
        store.create_webhook(&hook, Some(2)).await.unwrap();
    }
    let third = webhook_value(WebhookScope::Wallet(a), "https://a.example/hook");
    let err = store.create_webhook(&third, Some(2)).await.unwrap_err();
    assert!(
        matches!(err, WebhookStoreError::LimitReached { limit: 2 }),
        "{err:?}"
    );
    assert_eq!(store.list_webhooks(a, all()).await.unwrap().len(), 2);
    let err = store.get_webhook(a, third.id).await.unwrap_err();
    assert!(matches!(err, WebhookStoreError::NotFound), "{err:?}");

    let other = webhook_value(WebhookScope::Wallet(b), "https://b.example/hook");
    store.create_webhook(&other, Some(2)).await.unwrap();
}

/// delete then get is `NotFound`; the delete cancels the webhook's pending deliveries
/// (`TargetDeleted`) and only them.
pub async fn webhook_delete<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox,
{
    let wallet = new_wallet(store).await;
    let doomed = new_webhook(store, wallet, "https://a.example/doomed").await;
    let kept = new_webhook(store, wallet, "https://a.example/kept").await;
    let published = store.publish(&event(wallet), None, T0).await.unwrap();
    assert_eq!(published.deliveries, 2);

    store
        .delete_webhook(wallet, doomed.id, at(5))
        .await
        .unwrap();
    let err = store.get_webhook(wallet, doomed.id).await.unwrap_err();
    assert!(matches!(err, WebhookStoreError::NotFound), "{err:?}");
    assert_eq!(
        store.list_webhooks(wallet, all()).await.unwrap(),
        vec![kept.clone()]
    );
    let err = store
        .delete_webhook(wallet, doomed.id, at(6))
        .await
        .unwrap_err();
    assert!(matches!(err, WebhookStoreError::NotFound), "{err:?}");

    for delivery in deliveries_of(store, wallet).await {
        if delivery.webhook_id() == doomed.id {
            assert_eq!(
                delivery.state(),
                DeliveryState::Cancelled {
                    at: at(5),
                    reason: CancelReason::TargetDeleted
                }
            );
        } else {
            assert_eq!(delivery.webhook_id(), kept.id);
            assert_eq!(delivery.state(), DeliveryState::Pending { due: T0 });
        }
    }
    let later = store.publish(&event(wallet), None, at(10)).await.unwrap();
    assert_eq!(
        later.deliveries, 1,
        "a deleted webhook gets no new deliveries"
    );
}

/// disable_webhook makes publish skip the webhook and cancels its deliveries (`TargetGone`);
/// it adds one to the revision, and disabling again changes nothing.
pub async fn webhook_disable<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox,
{
    let (wallet, hook, _, delivery) = one_delivery(store).await;
    store.disable_webhook(hook.id, at(1)).await.unwrap();
    let disabled = store.get_webhook(wallet, hook.id).await.unwrap();
    assert_eq!(
        disabled,
        Webhook {
            enabled: false,
            revision: 2,
            ..hook.clone()
        }
    );
    store.disable_webhook(hook.id, at(2)).await.unwrap();
    assert_eq!(store.get_webhook(wallet, hook.id).await.unwrap(), disabled);

    let published = store.publish(&event(wallet), None, at(3)).await.unwrap();
    assert_eq!(published.deliveries, 0);
    let deliveries = deliveries_of(store, wallet).await;
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].id(), delivery.id());
    assert_eq!(
        deliveries[0].state(),
        DeliveryState::Cancelled {
            at: at(1),
            reason: CancelReason::TargetGone
        }
    );

    let err = store
        .disable_webhook(WebhookId::from_uuid(Uuid::new_v4()), at(4))
        .await
        .unwrap_err();
    assert!(matches!(err, WebhookStoreError::NotFound), "{err:?}");
}

/// The global webhook is never disabled by disable_webhook (a 410): it stays enabled, and its
/// other deliveries stay due.
pub async fn global_webhook_not_disabled<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox + DeliveryQueue,
{
    let wallet = new_wallet(store).await;
    let global = webhook_value(WebhookScope::Global, "https://global.example/");
    store
        .set_global_webhook(Some(global.clone()), T0)
        .await
        .unwrap();
    store.publish(&event(wallet), None, T0).await.unwrap();
    store.disable_webhook(global.id, at(1)).await.unwrap();
    let deliveries = deliveries_of(store, wallet).await;
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].state(), DeliveryState::Pending { due: T0 });
    assert_eq!(
        store
            .publish(&event(wallet), None, at(2))
            .await
            .unwrap()
            .deliveries,
        1,
        "the global webhook still gets every event"
    );
    let claimed = claim(store, &owner("d"), at(3), 10, &[]).await;
    assert_eq!(claimed.len(), 2);
    assert!(claimed.iter().all(|c| c.webhook == global), "{claimed:?}");
}

/// set_global_webhook with the settings already stored changes nothing (its id and revision
/// stay); other settings (URL, headers, enabled) are taken in place, keeping the id, adding one
/// to the revision and leaving its unfinished deliveries due, to be sent with them; turning it
/// off cancels them (`TargetDisabled`; those in flight are left to their holder) and the same
/// settings turn it on again; `None` removes it and cancels them (`TargetDeleted`).
pub async fn global_webhook<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox + DeliveryQueue,
{
    let wallet = new_wallet(store).await;
    let first = webhook_value(WebhookScope::Global, "https://global.example/one");
    store
        .set_global_webhook(Some(first.clone()), T0)
        .await
        .unwrap();
    let e1 = event(wallet);
    assert_eq!(store.publish(&e1, None, T0).await.unwrap().deliveries, 1);
    let targets = |deliveries: &[Delivery]| -> HashSet<WebhookId> {
        deliveries.iter().map(Delivery::webhook_id).collect()
    };
    let claim = async |now| claim(store, &owner("d"), now, 10, &[]).await;

    // The same settings under another id and time: nothing changes.
    let same = Webhook {
        created_at: at(1),
        ..webhook_value(WebhookScope::Global, "https://global.example/one")
    };
    store.set_global_webhook(Some(same), at(1)).await.unwrap();
    store.publish(&event(wallet), None, at(2)).await.unwrap();
    let deliveries = deliveries_of(store, wallet).await;
    assert_eq!(targets(&deliveries), HashSet::from([first.id]));

    // A new URL and key: the same target, changed in place; what waits is sent with them.
    let moved = Webhook {
        url: WebhookUrl::parse("https://global.example/two").unwrap(),
        custom_headers: CustomHeaders::bearer("rotated-token").unwrap(),
        ..webhook_value(WebhookScope::Global, "https://unused.example/")
    };
    store
        .set_global_webhook(Some(moved.clone()), at(3))
        .await
        .unwrap();
    let deliveries = deliveries_of(store, wallet).await;
    assert_eq!(deliveries.len(), 2);
    assert!(
        deliveries
            .iter()
            .all(|d| matches!(d.state(), DeliveryState::Pending { .. })),
        "{deliveries:?}"
    );
    let expected = Webhook {
        id: first.id,
        created_at: first.created_at,
        revision: 2,
        ..moved.clone()
    };
    let claimed = claim(at(4)).await;
    assert_eq!(claimed.len(), 2);
    assert!(claimed.iter().all(|c| c.webhook == expected), "{claimed:?}");

    // Stored off, its deliveries are cancelled; the same settings enabled turn it on again.
    store.publish(&event(wallet), None, at(5)).await.unwrap();
    let off = Webhook {
        enabled: false,
        ..moved.clone()
    };
    store.set_global_webhook(Some(off), at(6)).await.unwrap();
    assert_eq!(
        store
            .publish(&event(wallet), None, at(7))
            .await
            .unwrap()
            .deliveries,
        0
    );
    let cancelled: Vec<Delivery> = deliveries_of(store, wallet)
        .await
        .into_iter()
        .filter(|d| d.state().kind() == webhook_domain::DeliveryStateKind::Cancelled)
        .collect();
    // The one due; the two in flight are left to their holder, whose lease settling reports.
    assert_eq!(cancelled.len(), 1);
    assert!(cancelled.iter().all(|d| d.state()
        == DeliveryState::Cancelled {
            at: at(6),
            reason: CancelReason::TargetDisabled
        }));
    assert_eq!(
        store.settle_target(first.id, at(6)).await.unwrap(),
        Some(at(4) + LEASE)
    );
    store
        .set_global_webhook(Some(moved.clone()), at(8))
        .await
        .unwrap();
    assert_eq!(
        store
            .publish(&event(wallet), None, at(9))
            .await
            .unwrap()
            .deliveries,
        1
    );
    let claimed = claim(at(10)).await;
    assert_eq!(claimed.len(), 1);
    assert_eq!(
        claimed[0].webhook,
        Webhook {
            revision: 4,
            ..expected.clone()
        }
    );

    // None removes it and cancels what waits.
    store.publish(&event(wallet), None, at(11)).await.unwrap();
    store.set_global_webhook(None, at(12)).await.unwrap();
    assert_eq!(
        store
            .publish(&event(wallet), None, at(13))
            .await
            .unwrap()
            .deliveries,
        0
    );
    let waiting: Vec<Delivery> = deliveries_of(store, wallet)
        .await
        .into_iter()
        .filter(|d| d.state() == DeliveryState::Pending { due: at(11) })
        .collect();
    assert!(waiting.is_empty(), "{waiting:?}");
    assert!(deliveries_of(store, wallet).await.iter().any(|d| d.state()
        == DeliveryState::Cancelled {
            at: at(12),
            reason: CancelReason::TargetDeleted
        }));
    assert!(claim(at(14)).await.is_empty());
}

/// update_webhook writes only over the revision it was given: with any other (the webhook was
/// updated, disabled or deleted since it was read) it is `Stale` (or `NotFound` once deleted)
/// and changes nothing; each write returns the revision it stored, one more than before.
pub async fn webhook_update_stale_revision<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox,
{
    let (wallet, hook, _, delivery) = one_delivery(store).await;
    assert_eq!(hook.revision, 1);
    assert_eq!(store.get_webhook(wallet, hook.id).await.unwrap(), hook);
    let first = Webhook {
        url: WebhookUrl::parse("https://a.example/first").unwrap(),
        ..hook.clone()
    };
    assert_eq!(store.update_webhook(&first, at(1)).await.unwrap(), 2);
    let stored = store.get_webhook(wallet, hook.id).await.unwrap();
    assert_eq!(
        stored,
        Webhook {
            revision: 2,
            ..first.clone()
        }
    );

    // Read at revision 1: it would undo the first change.
    let stale = Webhook {
        enabled: false,
        rate_limit: Some(webhook_domain::RateLimit::per_second(1).unwrap()),
        ..hook.clone()
    };
    let err = store.update_webhook(&stale, at(2)).await.unwrap_err();
    assert!(matches!(err, WebhookStoreError::Stale), "{err:?}");
    assert_eq!(store.get_webhook(wallet, hook.id).await.unwrap(), stored);
    assert_eq!(deliveries_of(store, wallet).await, vec![delivery]);

    // A disable in between makes the revision read before it stale too.
    store.disable_webhook(hook.id, at(3)).await.unwrap();
    let err = store
        .update_webhook(
            &Webhook {
                url: WebhookUrl::parse("https://a.example/second").unwrap(),
                ..stored.clone()
            },
            at(4),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, WebhookStoreError::Stale), "{err:?}");
    let disabled = store.get_webhook(wallet, hook.id).await.unwrap();
    assert_eq!(
        disabled,
        Webhook {
            enabled: false,
            revision: 3,
            ..stored.clone()
        }
    );

    // Read again, the change goes through.
    let again = Webhook {
        url: WebhookUrl::parse("https://a.example/second").unwrap(),
        ..disabled.clone()
    };
    assert_eq!(store.update_webhook(&again, at(5)).await.unwrap(), 4);

    // Once deleted, a change read before is `NotFound`.
    store.delete_webhook(wallet, hook.id, at(6)).await.unwrap();
    let err = store
        .update_webhook(
            &Webhook {
                revision: 4,
                ..again
            },
            at(7),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, WebhookStoreError::NotFound), "{err:?}");
}

/// Updates racing on one webhook from the same revision (tasks on a multi-threaded runtime):
/// exactly one is stored, every other is `Stale`.
pub async fn webhook_update_race<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox + Clone + 'static,
{
    const WRITERS: u32 = 8;
    let wallet = new_wallet(store).await;
    let hook = new_webhook(store, wallet, "https://a.example/hook").await;
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(WRITERS as usize));
    let writers: Vec<_> = (1..=WRITERS)
        .map(|n| {
            let store = store.clone();
            let barrier = barrier.clone();
            let changed = Webhook {
                rate_limit: Some(webhook_domain::RateLimit::per_second(n).unwrap()),
                ..hook.clone()
            };
            tokio::spawn(async move {
                barrier.wait().await;
                store.update_webhook(&changed, at(1)).await.map(|_| n)
            })
        })
        .collect();
    let mut stored = Vec::new();
    for writer in writers {
        match writer.await.unwrap() {
            Ok(n) => stored.push(n),
            Err(WebhookStoreError::Stale) => {}
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(stored.len(), 1, "{stored:?}");
    let now = store.get_webhook(wallet, hook.id).await.unwrap();
    assert_eq!(now.revision, 2);
    assert_eq!(now.rate_limit.map(|r| r.get()), Some(stored[0]));
}

/// update_webhook replaces every setting and keeps the id, scope and creation time; optional
/// settings can be cleared; an update that keeps the webhook enabled leaves its deliveries.
pub async fn webhook_update<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox,
{
    let (wallet, hook, _, delivery) = one_delivery(store).await;
    let policy = RetryPolicy::new(
        Backoff::Exponential {
            initial: Duration::from_millis(500),
            cap: Duration::from_secs(60),
        },
        3,
        None,
    )
    .unwrap();
    let changed = Webhook {
        url: WebhookUrl::parse("https://b.example/moved?x=1").unwrap(),
        custom_headers: CustomHeaders::new([("X-Tenant".to_owned(), "bob".to_owned())]).unwrap(),
        event_types: Some(EventTypeFilter::new([custom_type()])),
        signing_keys: Some(SigningKeys::new(
            SigningSecret::from_bytes(&[9; 32]).unwrap(),
        )),
        retry_policy: Some(policy),
        enabled: true,
        ordered: true,
        rate_limit: Some(webhook_domain::RateLimit::per_second(5).unwrap()),
        // Not stored: the creation time stays.
        created_at: at(99),
        ..hook.clone()
    };
    assert_eq!(store.update_webhook(&changed, at(1)).await.unwrap(), 2);
    let expected = Webhook {
        created_at: hook.created_at,
        revision: 2,
        ..changed.clone()
    };
    assert_eq!(store.get_webhook(wallet, hook.id).await.unwrap(), expected);
    assert_eq!(
        store.list_webhooks(wallet, all()).await.unwrap(),
        vec![expected.clone()]
    );
    assert_eq!(deliveries_of(store, wallet).await, vec![delivery]);

    let cleared = Webhook {
        event_types: None,
        signing_keys: None,
        retry_policy: None,
        rate_limit: None,
        ordered: false,
        ..expected
    };
    assert_eq!(store.update_webhook(&cleared, at(2)).await.unwrap(), 3);
    assert_eq!(
        store.get_webhook(wallet, hook.id).await.unwrap(),
        Webhook {
            revision: 3,
            ..cleared
        }
    );
}

/// update_webhook is `NotFound`, changing nothing, for an unknown id, another wallet's
/// webhook, a deleted one and the global one.
pub async fn webhook_update_not_found<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox,
{
    let a = new_wallet(store).await;
    let b = new_wallet(store).await;
    let hook = new_webhook(store, a, "https://a.example/hook").await;
    let moved = |webhook: &Webhook| Webhook {
        url: WebhookUrl::parse("https://evil.example/").unwrap(),
        enabled: false,
        ..webhook.clone()
    };
    let not_found = |result: Result<u64, WebhookStoreError>| {
        assert!(
            matches!(result, Err(WebhookStoreError::NotFound)),
            "{result:?}"
        );
    };

    let unknown = webhook_value(WebhookScope::Wallet(a), "https://a.example/unknown");
    not_found(store.update_webhook(&unknown, at(1)).await);
    let err = store.get_webhook(a, unknown.id).await.unwrap_err();
    assert!(matches!(err, WebhookStoreError::NotFound), "{err:?}");

    let in_b = Webhook {
        scope: WebhookScope::Wallet(b),
        ..moved(&hook)
    };
    not_found(store.update_webhook(&in_b, at(1)).await);
    assert_eq!(store.get_webhook(a, hook.id).await.unwrap(), hook);

    let global = webhook_value(WebhookScope::Global, "https://global.example/");
    store
        .set_global_webhook(Some(global.clone()), T0)
        .await
        .unwrap();
    not_found(store.update_webhook(&moved(&global), at(1)).await);
    let global_as_a = Webhook {
        scope: WebhookScope::Wallet(a),
        ..moved(&global)
    };
    not_found(store.update_webhook(&global_as_a, at(1)).await);
    // The global webhook still gets every event.
    let published = store.publish(&event(a), None, at(2)).await.unwrap();
    assert_eq!(published.deliveries, 2);

    store.delete_webhook(a, hook.id, at(3)).await.unwrap();
    not_found(store.update_webhook(&moved(&hook), at(4)).await);
    let err = store.get_webhook(a, hook.id).await.unwrap_err();
    assert!(matches!(err, WebhookStoreError::NotFound), "{err:?}");
}

/// An update that disables a webhook cancels its unfinished deliveries (`TargetDisabled`) and
/// only them; publishes skip it until an update enables it again.
pub async fn webhook_update_disable<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox,
{
    let wallet = new_wallet(store).await;
    let hook = new_webhook(store, wallet, "https://a.example/paused").await;
    let kept = new_webhook(store, wallet, "https://a.example/kept").await;
    store.publish(&event(wallet), None, T0).await.unwrap();

    let disabled = Webhook {
        enabled: false,
        ..hook.clone()
    };
    store.update_webhook(&disabled, at(5)).await.unwrap();
    assert!(!store.get_webhook(wallet, hook.id).await.unwrap().enabled);
    for delivery in deliveries_of(store, wallet).await {
        if delivery.webhook_id() == hook.id {
            assert_eq!(
                delivery.state(),
                DeliveryState::Cancelled {
                    at: at(5),
                    reason: CancelReason::TargetDisabled
                }
            );
        } else {
            assert_eq!(delivery.webhook_id(), kept.id);
            assert_eq!(delivery.state(), DeliveryState::Pending { due: T0 });
        }
    }
    let published = store.publish(&event(wallet), None, at(6)).await.unwrap();
    assert_eq!(published.deliveries, 1, "a disabled webhook gets nothing");

    let enabled = Webhook {
        revision: 2,
        ..hook.clone()
    };
    store.update_webhook(&enabled, at(7)).await.unwrap();
    let published = store.publish(&event(wallet), None, at(8)).await.unwrap();
    assert_eq!(published.deliveries, 2);
    let cancelled = deliveries_of(store, wallet)
        .await
        .into_iter()
        .filter(|d| matches!(d.state(), DeliveryState::Cancelled { .. }))
        .count();
    assert_eq!(cancelled, 1, "enabling again restores nothing");
}

// ---------------------------------------------------------------------------------------------
// EventOutbox::publish

/// One pending delivery per enabled, matching webhook of the wallet plus the global one; none
/// for another wallet's webhook, a disabled one or a filtered-out type.
pub async fn publish_fan_out<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox,
{
    let a = new_wallet(store).await;
    let b = new_wallet(store).await;
    let wants_all = new_webhook(store, a, "https://a.example/all").await;
    let mut filtered = webhook_value(WebhookScope::Wallet(a), "https://a.example/filtered");
    filtered.event_types = Some(EventTypeFilter::new([EventType::ConnectionUpdated]));
    store.create_webhook(&filtered, None).await.unwrap();
    let mut matching = webhook_value(WebhookScope::Wallet(a), "https://a.example/matching");
    matching.event_types = Some(EventTypeFilter::new([
        EventType::ConnectionUpdated,
        custom_type(),
    ]));
    store.create_webhook(&matching, None).await.unwrap();
    let mut disabled = webhook_value(WebhookScope::Wallet(a), "https://a.example/disabled");
    disabled.enabled = false;
    store.create_webhook(&disabled, None).await.unwrap();
    new_webhook(store, b, "https://b.example/all").await;
    let global = webhook_value(WebhookScope::Global, "https://global.example/");
    store
        .set_global_webhook(Some(global.clone()), T0)
        .await
        .unwrap();

    let e = event(a);
    let published = store.publish(&e, None, T0).await.unwrap();
    assert_eq!(published.event_id, e.id());
    assert_eq!(published.deliveries, 3);
    assert!(!published.replayed);
    assert_eq!(store.get_event(a, e.id()).await.unwrap(), e);
    let err = store.get_event(b, e.id()).await.unwrap_err();
    assert!(matches!(err, OutboxError::NotFound), "{err:?}");

    let deliveries = deliveries_of(store, a).await;
    let targets: HashSet<WebhookId> = deliveries.iter().map(Delivery::webhook_id).collect();
    assert_eq!(
        targets,
        HashSet::from([wants_all.id, matching.id, global.id])
    );
    assert_eq!(deliveries.len(), 3);
    for d in &deliveries {
        assert_eq!(d.event_id(), e.id());
        assert_eq!(d.state(), DeliveryState::Pending { due: T0 });
        assert_eq!(d.attempts(), 0);
        assert_eq!(d.first_due(), T0);
    }
    assert!(deliveries_of(store, b).await.is_empty());

    let filter = DeliveryFilter {
        webhook_id: Some(matching.id),
        ..DeliveryFilter::default()
    };
    let one = store.list_deliveries(a, filter, all()).await.unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].webhook_id(), matching.id);
}

/// Publishing the same event id again replays the first result and stores nothing new.
pub async fn publish_replay<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox,
{
    let wallet = new_wallet(store).await;
    new_webhook(store, wallet, "https://a.example/1").await;
    new_webhook(store, wallet, "https://a.example/2").await;
    let e = event(wallet);
    let first = store.publish(&e, None, T0).await.unwrap();
    assert_eq!(first.deliveries, 2);
    let before = deliveries_of(store, wallet).await;

    // A third webhook now would get a delivery from a fresh publish, not from a replay.
    new_webhook(store, wallet, "https://a.example/3").await;
    let again = store.publish(&e, None, at(60)).await.unwrap();
    assert_eq!(again.event_id, e.id());
    assert_eq!(again.deliveries, 2);
    assert!(again.replayed);
    assert_eq!(deliveries_of(store, wallet).await, before);
}

/// The same event id published again, this time with an idempotency key never used before,
/// is still a replay of the first publish: neither `Conflict` (the key was not used before and
/// the id is not in another wallet) nor a second event.
pub async fn publish_replay_with_new_key<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox,
{
    let wallet = new_wallet(store).await;
    new_webhook(store, wallet, "https://a.example/hook").await;
    let e = event(wallet);
    let first = store.publish(&e, None, T0).await.unwrap();
    assert_eq!(first.deliveries, 1);
    let idem = Some(Idempotency {
        key: "retry-1".to_owned(),
        fingerprint: "fp".to_owned(),
    });
    let again = store.publish(&e, idem, at(1)).await.unwrap();
    assert_eq!(again.event_id, e.id());
    assert_eq!(again.deliveries, 1);
    assert!(again.replayed);
    assert_eq!(deliveries_of(store, wallet).await.len(), 1);
}

/// An idempotency key reused with the same fingerprint replays; with another fingerprint it is
/// `Conflict`. Keys are per wallet.
pub async fn publish_idempotency<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox,
{
    let a = new_wallet(store).await;
    let b = new_wallet(store).await;
    new_webhook(store, a, "https://a.example/hook").await;
    new_webhook(store, b, "https://b.example/hook").await;
    let idem = |fp: &str| {
        Some(Idempotency {
            key: "order-42".to_owned(),
            fingerprint: fp.to_owned(),
        })
    };

    let e1 = event(a);
    let first = store.publish(&e1, idem("fp-1"), T0).await.unwrap();
    assert_eq!(first.deliveries, 1);
    assert!(!first.replayed);

    let e2 = event(a);
    let again = store.publish(&e2, idem("fp-1"), at(1)).await.unwrap();
    assert_eq!(again.event_id, e1.id(), "the first event's id");
    assert_eq!(again.deliveries, 1);
    assert!(again.replayed);
    let err = store.get_event(a, e2.id()).await.unwrap_err();
    assert!(matches!(err, OutboxError::NotFound), "{err:?}");

    let e3 = event(a);
    let err = store.publish(&e3, idem("fp-2"), at(2)).await.unwrap_err();
    assert!(matches!(err, OutboxError::Conflict(_)), "{err:?}");
    let err = store.get_event(a, e3.id()).await.unwrap_err();
    assert!(matches!(err, OutboxError::NotFound), "{err:?}");
    assert_eq!(deliveries_of(store, a).await.len(), 1);

    // Another wallet may use the same key.
    let other = store.publish(&event(b), idem("fp-2"), at(3)).await.unwrap();
    assert!(!other.replayed);
    assert_eq!(other.deliveries, 1);
}

/// Concurrent publishes of one event under one idempotency key store it once: every caller
/// gets the first result, exactly one of them not as a replay.
pub async fn concurrent_idempotent_publish<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox + Clone + 'static,
{
    let wallet = new_wallet(store).await;
    for n in 0..3 {
        new_webhook(store, wallet, &format!("https://{n}.example/hook")).await;
    }
    let the_event = event(wallet);
    let publishers: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            let the_event = the_event.clone();
            tokio::spawn(async move {
                store
                    .publish(
                        &the_event,
                        Some(Idempotency {
                            key: "same-key".to_owned(),
                            fingerprint: "same-request".to_owned(),
                        }),
                        T0,
                    )
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut firsts = 0;
    for publisher in publishers {
        let published = publisher.await.unwrap();
        assert_eq!(published.event_id, the_event.id());
        assert_eq!(published.deliveries, 3);
        firsts += usize::from(!published.replayed);
    }
    assert_eq!(firsts, 1, "the event was stored more than once");
    assert_eq!(deliveries_of(store, wallet).await.len(), 3);
}

/// A publish that fails stores nothing: an idempotency key reused with another request is
/// `Conflict`, and neither the event nor a delivery exists afterwards.
pub async fn publish_atomicity<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox,
{
    let a = new_wallet(store).await;
    new_webhook(store, a, "https://a.example/hook").await;
    let first = event(a);
    store
        .publish(&first, Some(idempotency("k", "f")), T0)
        .await
        .unwrap();
    let before = deliveries_of(store, a).await;

    let refused = event(a);
    let err = store
        .publish(&refused, Some(idempotency("k", "another request")), at(1))
        .await
        .unwrap_err();
    assert!(matches!(err, OutboxError::Conflict(_)), "{err:?}");
    let err = store.get_event(a, refused.id()).await.unwrap_err();
    assert!(matches!(err, OutboxError::NotFound), "{err:?}");
    assert_eq!(deliveries_of(store, a).await, before);
    // The refused event id was not kept either: publishing it now stores it.
    let fresh = store.publish(&refused, None, at(2)).await.unwrap();
    assert!(!fresh.replayed);
    assert_eq!(fresh.deliveries, 1);
}

/// Event ids are unique per wallet: another wallet's event with the same id is another event,
/// stored, delivered and read apart, and neither publish tells that the other exists.
pub async fn event_ids_per_wallet<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox + DeliveryQueue,
{
    let a = new_wallet(store).await;
    let b = new_wallet(store).await;
    let hook_a = new_webhook(store, a, "https://a.example/hook").await;
    let hook_b = new_webhook(store, b, "https://b.example/hook").await;
    let id = EventId::from_uuid(Uuid::new_v4());
    let in_a = event_with_id(a, id);
    let in_b = Event::new(
        id,
        Timestamp::from_datetime(T0),
        custom_type(),
        serde_json::json!({ "wallet": "b" }),
        b,
    )
    .unwrap();
    let published_a = store.publish(&in_a, None, T0).await.unwrap();
    let published_b = store.publish(&in_b, None, T0).await.unwrap();
    assert_eq!(published_a, first(&in_a, 1));
    assert_eq!(published_b, first(&in_b, 1), "not a conflict, not a replay");
    assert_eq!(store.get_event(a, id).await.unwrap(), in_a);
    assert_eq!(store.get_event(b, id).await.unwrap(), in_b);
    // A replay stays within its wallet.
    let again = store.publish(&in_b, None, at(1)).await.unwrap();
    assert_eq!(again, replayed(&in_b, 1));
    // In a batch too, mixing both wallets.
    let batch_id = EventId::from_uuid(Uuid::new_v4());
    let batch = [
        item(&event_with_id(a, batch_id), None),
        item(&event_with_id(b, batch_id), None),
    ];
    let published = store.publish_batch(&batch, at(2)).await.unwrap();
    assert!(published.iter().all(|p| !p.replayed && p.deliveries == 1));
    assert_eq!(deliveries_of(store, a).await.len(), 2);
    assert_eq!(deliveries_of(store, b).await.len(), 2);

    // Each claimed delivery carries its own wallet's event.
    let claimed = store
        .claim_due(&owner("d"), &request(at(3), LEASE, 10, &[]))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 4);
    for c in &claimed {
        let wallet = c.event.wallet_id();
        let hook = if wallet == a { &hook_a } else { &hook_b };
        assert_eq!(c.webhook.id, hook.id);
        let expected = if c.event.id() == id && wallet == b {
            &in_b
        } else if c.event.id() == id {
            &in_a
        } else {
            &batch[usize::from(wallet == b)].event
        };
        assert_eq!(&c.event, expected);
    }
}

pub fn item(event: &Event, key: Option<(&str, &str)>) -> PublishItem {
    PublishItem {
        event: event.clone(),
        idempotency: key.map(|(key, fingerprint)| Idempotency {
            key: key.to_owned(),
            fingerprint: fingerprint.to_owned(),
        }),
    }
}

pub fn first(event: &Event, deliveries: u32) -> Published {
    Published {
        event_id: event.id(),
        deliveries,
        replayed: false,
    }
}

pub fn replayed(event: &Event, deliveries: u32) -> Published {
    Published {
        event_id: event.id(),
        deliveries,
        replayed: true,
    }
}

/// publish_batch stores each event with one pending delivery per target that wants it, as
/// publish does, across wallets, and answers in order; an empty batch stores nothing.
pub async fn publish_batch_fan_out<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox,
{
    let a = new_wallet(store).await;
    let b = new_wallet(store).await;
    let c = new_wallet(store).await;
    let all_a = new_webhook(store, a, "https://a.example/all").await;
    let mut filtered = webhook_value(WebhookScope::Wallet(a), "https://a.example/filtered");
    filtered.event_types = Some(EventTypeFilter::new([EventType::ConnectionUpdated]));
    store.create_webhook(&filtered, None).await.unwrap();
    let mut disabled = webhook_value(WebhookScope::Wallet(a), "https://a.example/disabled");
    disabled.enabled = false;
    store.create_webhook(&disabled, None).await.unwrap();
    let all_b = new_webhook(store, b, "https://b.example/all").await;
    let global = webhook_value(WebhookScope::Global, "https://global.example/");
    store
        .set_global_webhook(Some(global.clone()), T0)
        .await
        .unwrap();

    assert!(store.publish_batch(&[], T0).await.unwrap().is_empty());
    let (a1, b1, a2, c1) = (event(a), event(b), event(a), event(c));
    let items = [
        item(&a1, None),
        item(&b1, Some(("k", "f"))),
        item(&a2, None),
        item(&c1, None),
    ];
    let published = store.publish_batch(&items, at(1)).await.unwrap();
    assert_eq!(
        published,
        vec![first(&a1, 2), first(&b1, 2), first(&a2, 2), first(&c1, 1)]
    );
    for (wallet, e) in [(a, &a1), (b, &b1), (a, &a2), (c, &c1)] {
        assert_eq!(store.get_event(wallet, e.id()).await.unwrap(), *e);
    }
    let targets = |deliveries: &[Delivery], e: &Event| -> HashSet<WebhookId> {
        deliveries
            .iter()
            .filter(|d| d.event_id() == e.id())
            .map(Delivery::webhook_id)
            .collect()
    };
    let in_a = deliveries_of(store, a).await;
    assert_eq!(in_a.len(), 4);
    assert_eq!(targets(&in_a, &a1), HashSet::from([all_a.id, global.id]));
    assert_eq!(targets(&in_a, &a2), HashSet::from([all_a.id, global.id]));
    let in_b = deliveries_of(store, b).await;
    assert_eq!(targets(&in_b, &b1), HashSet::from([all_b.id, global.id]));
    assert_eq!(deliveries_of(store, c).await.len(), 1);
    for d in in_a.iter().chain(&in_b) {
        assert_eq!(d.state(), DeliveryState::Pending { due: at(1) });
        assert_eq!(d.attempts(), 0);
    }
}

/// An item repeating an earlier publish, or an earlier item of the same batch (by event id or
/// idempotency key), is replayed with the first result and stores nothing more.
pub async fn publish_batch_replay<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox,
{
    let wallet = new_wallet(store).await;
    new_webhook(store, wallet, "https://a.example/1").await;
    new_webhook(store, wallet, "https://a.example/2").await;
    let earlier = event(wallet);
    store.publish(&earlier, None, T0).await.unwrap();
    let (e1, e2, e3) = (event(wallet), event(wallet), event(wallet));
    let published = store
        .publish_batch(
            &[
                item(&e1, None),
                item(&e1, None),
                item(&e2, Some(("order-1", "fp"))),
                item(&e3, Some(("order-1", "fp"))),
                item(&earlier, None),
            ],
            at(1),
        )
        .await
        .unwrap();
    assert_eq!(
        published,
        vec![
            first(&e1, 2),
            replayed(&e1, 2),
            first(&e2, 2),
            replayed(&e2, 2),
            replayed(&earlier, 2),
        ]
    );
    let err = store.get_event(wallet, e3.id()).await.unwrap_err();
    assert!(matches!(err, OutboxError::NotFound), "{err:?}");
    assert_eq!(deliveries_of(store, wallet).await.len(), 6);

    // A third webhook would get deliveries from a first publish, not from a replay.
    new_webhook(store, wallet, "https://a.example/3").await;
    let e4 = event(wallet);
    let again = store
        .publish_batch(
            &[
                item(&e1, None),
                item(&e4, Some(("order-1", "fp"))),
                item(&e2, Some(("order-2", "other"))),
            ],
            at(2),
        )
        .await
        .unwrap();
    assert_eq!(
        again,
        vec![replayed(&e1, 2), replayed(&e2, 2), replayed(&e2, 2)]
    );
    assert_eq!(deliveries_of(store, wallet).await.len(), 6);
    let single = store
        .publish(&e3, Some(idempotency("order-1", "fp")), at(3))
        .await
        .unwrap();
    assert_eq!(single, replayed(&e2, 2));
}

pub fn idempotency(key: &str, fingerprint: &str) -> Idempotency {
    Idempotency {
        key: key.to_owned(),
        fingerprint: fingerprint.to_owned(),
    }
}

/// A batch with any `Conflict` (a key reused with another request, before or within the
/// batch) returns it and stores no item at all, not even the items of another wallet.
pub async fn publish_batch_conflict<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox,
{
    let a = new_wallet(store).await;
    let b = new_wallet(store).await;
    new_webhook(store, a, "https://a.example/hook").await;
    new_webhook(store, b, "https://b.example/hook").await;
    let keyed = event(a);
    store
        .publish(&keyed, Some(idempotency("order-1", "fp-1")), T0)
        .await
        .unwrap();
    let before_a = deliveries_of(store, a).await;
    let before_b = deliveries_of(store, b).await;

    let fresh = event(a);
    let batches = [
        vec![
            item(&fresh, Some(("order-2", "fp"))),
            item(&event(a), Some(("order-1", "fp-2"))),
        ],
        vec![
            item(&event(b), None),
            item(&fresh, Some(("order-2", "fp"))),
            item(&event(a), Some(("order-1", "fp-2"))),
        ],
        vec![
            item(&fresh, Some(("order-2", "fp"))),
            item(&event(a), Some(("order-3", "fp-1"))),
            item(&event(a), Some(("order-3", "fp-2"))),
        ],
    ];
    for batch in &batches {
        let err = store.publish_batch(batch, at(1)).await.unwrap_err();
        assert!(matches!(err, OutboxError::Conflict(_)), "{err:?}");
        for stored in batch {
            let wallet = stored.event.wallet_id();
            let err = store
                .get_event(wallet, stored.event.id())
                .await
                .unwrap_err();
            assert!(matches!(err, OutboxError::NotFound), "{err:?}");
        }
        assert_eq!(deliveries_of(store, a).await, before_a);
        assert_eq!(deliveries_of(store, b).await, before_b);
    }
    // None of the failed batches kept its keys: reusing them with other requests is fine.
    let published = store
        .publish_batch(
            &[
                item(&fresh, Some(("order-2", "new"))),
                item(&event(a), Some(("order-3", "new"))),
            ],
            at(2),
        )
        .await
        .unwrap();
    assert!(published.iter().all(|p| !p.replayed && p.deliveries == 1));
}

// ---------------------------------------------------------------------------------------------
// DeliveryQueue

/// claim_due returns only due deliveries, with their event and webhook, and leases them: a
/// second claim gets nothing until the lease ends, then another owner gets them again.
pub async fn claim_due<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox + DeliveryQueue,
{
    let wallet = new_wallet(store).await;
    let h1 = new_webhook(store, wallet, "https://a.example/1").await;
    let h2 = new_webhook(store, wallet, "https://a.example/2").await;
    let e = event(wallet);
    store.publish(&e, None, T0).await.unwrap();
    let (a, b) = (owner("a"), owner("b"));

    let early = store
        .claim_due(&a, &request(at(-1), LEASE, 10, &[]))
        .await
        .unwrap();
    assert!(early.is_empty(), "not due yet: {early:?}");

    let claimed = store
        .claim_due(&a, &request(T0, LEASE, 10, &[]))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    let mut seen = HashSet::new();
    for c in &claimed {
        assert_eq!(c.event, e);
        let expected = if c.delivery.webhook_id() == h1.id {
            &h1
        } else {
            &h2
        };
        assert_eq!(&c.webhook, expected);
        assert_eq!(c.delivery.event_id(), e.id());
        assert_eq!(
            c.delivery.state(),
            DeliveryState::InFlight {
                attempt: 1,
                leased_until: at(30)
            }
        );
        seen.insert(c.delivery.webhook_id());
    }
    assert_eq!(seen, HashSet::from([h1.id, h2.id]));

    assert!(
        store
            .claim_due(&b, &request(T0, LEASE, 10, &[]))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .claim_due(&a, &request(T0, LEASE, 10, &[]))
            .await
            .unwrap()
            .is_empty()
    );
    let before_expiry = T0 + time::Duration::seconds(30) - time::Duration::microseconds(1);
    assert!(
        store
            .claim_due(&b, &request(before_expiry, LEASE, 10, &[]))
            .await
            .unwrap()
            .is_empty()
    );

    let stolen = store
        .claim_due(&b, &request(at(30), LEASE, 1, &[]))
        .await
        .unwrap();
    assert_eq!(stolen.len(), 1, "the limit is honoured");
    let rest = store
        .claim_due(&b, &request(at(30), LEASE, 10, &[]))
        .await
        .unwrap();
    assert_eq!(rest.len(), 1);
    let ids: HashSet<DeliveryId> = stolen
        .iter()
        .chain(&rest)
        .map(|c| c.delivery.id())
        .collect();
    let first: HashSet<DeliveryId> = claimed.iter().map(|c| c.delivery.id()).collect();
    assert_eq!(ids, first);
    assert_eq!(
        rest[0].delivery.state(),
        DeliveryState::InFlight {
            attempt: 1,
            leased_until: at(60)
        }
    );
}

/// claim_due leaves the targets in `skip` alone: their deliveries stay due, for a later claim.
pub async fn claim_skip<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox + DeliveryQueue,
{
    let wallet = new_wallet(store).await;
    let busy = new_webhook(store, wallet, "https://busy.example/hook").await;
    let free = new_webhook(store, wallet, "https://free.example/hook").await;
    for _ in 0..3 {
        store.publish(&event(wallet), None, T0).await.unwrap();
    }
    let me = owner("a");
    let claimed = store
        .claim_due(&me, &request(T0, LEASE, 100, &[busy.id]))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 3);
    assert!(claimed.iter().all(|c| c.webhook.id == free.id));
    let rest = store
        .claim_due(&me, &request(T0, LEASE, 100, &[]))
        .await
        .unwrap();
    assert_eq!(rest.len(), 3);
    assert!(rest.iter().all(|c| c.webhook.id == busy.id));
}

/// For an ordered webhook claim_due hands out only its earliest unfinished delivery: later ones
/// wait while it is in flight or scheduled for a retry, and go in publish order once it is
/// final. Unordered webhooks of the same events are not held back.
pub async fn ordered_claims<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox + DeliveryQueue,
{
    let wallet = new_wallet(store).await;
    let mut ordered = webhook_value(WebhookScope::Wallet(wallet), "https://ordered.example/in");
    ordered.ordered = true;
    store.create_webhook(&ordered, None).await.unwrap();
    let free = new_webhook(store, wallet, "https://free.example/in").await;
    let mut events = Vec::new();
    for n in 0..3 {
        let e = event(wallet);
        store.publish(&e, None, at(n)).await.unwrap();
        events.push(e);
    }
    let me = owner("a");
    let order_of = |claimed: &[crate::ClaimedDelivery]| -> Vec<EventId> {
        claimed
            .iter()
            .filter(|c| c.webhook.id == ordered.id)
            .map(|c| c.event.id())
            .collect()
    };
    let first = store
        .claim_due(&me, &request(at(10), LEASE, 100, &[]))
        .await
        .unwrap();
    assert_eq!(order_of(&first), vec![events[0].id()]);
    assert_eq!(first.iter().filter(|c| c.webhook.id == free.id).count(), 3);

    // In flight: nothing more for the ordered target, even after other claims.
    let none = store
        .claim_due(&me, &request(at(11), LEASE, 100, &[]))
        .await
        .unwrap();
    assert!(none.is_empty());

    // A failure schedules a retry: the later events still wait, until the retry is due.
    let head = first.iter().find(|c| c.webhook.id == ordered.id).unwrap();
    let (retry, _) = head
        .delivery
        .on_attempt(
            &status(500).outcome(),
            &RetryPolicy::identus(),
            at(12),
            Jitter::MAX,
        )
        .unwrap();
    store
        .record_attempts(
            &me,
            &[AttemptRecord {
                delivery: retry,
                attempt: log(1, at(11), status(500)),
            }],
        )
        .await
        .unwrap();
    assert!(
        store
            .claim_due(&me, &request(at(13), LEASE, 100, &[]))
            .await
            .unwrap()
            .is_empty()
    );
    let again = store
        .claim_due(&me, &request(at(17), LEASE, 100, &[]))
        .await
        .unwrap();
    assert_eq!(order_of(&again), vec![events[0].id()]);

    // Delivered: the next in publish order, then the last.
    for expected in [&events[1], &events[2]] {
        let current = store
            .list_deliveries(
                wallet,
                DeliveryFilter {
                    webhook_id: Some(ordered.id),
                    state: Some(webhook_domain::DeliveryStateKind::InFlight),
                    ..DeliveryFilter::default()
                },
                all(),
            )
            .await
            .unwrap();
        assert_eq!(current.len(), 1);
        let (done, _) = current[0]
            .on_attempt(
                &status(200).outcome(),
                &RetryPolicy::identus(),
                at(18),
                Jitter::MAX,
            )
            .unwrap();
        store
            .record_attempts(
                &me,
                &[AttemptRecord {
                    delivery: done,
                    attempt: log(2, at(18), status(200)),
                }],
            )
            .await
            .unwrap();
        let next = store
            .claim_due(&me, &request(at(19), LEASE, 100, &[]))
            .await
            .unwrap();
        assert_eq!(order_of(&next), vec![expected.id()]);
    }
}

/// record_attempts stores the new state and an attempt row; a record from an owner that lost
/// the lease is skipped and returned.
pub async fn record_attempts<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox + DeliveryQueue,
{
    let (wallet, _, _, delivery) = one_delivery(store).await;
    let (a, b) = (owner("a"), owner("b"));
    let claimed = store
        .claim_due(&a, &request(T0, LEASE, 10, &[]))
        .await
        .unwrap()
        .remove(0);
    let outcome = status(500);
    let (next, _) = claimed
        .delivery
        .on_attempt(
            &outcome.outcome(),
            &RetryPolicy::identus(),
            at(1),
            Jitter::MAX,
        )
        .unwrap();
    let first_log = log(1, T0, outcome);
    let lost = store
        .record_attempts(
            &a,
            &[AttemptRecord {
                delivery: next.clone(),
                attempt: first_log.clone(),
            }],
        )
        .await
        .unwrap();
    assert!(lost.is_empty());
    assert_eq!(deliveries_of(store, wallet).await, vec![next.clone()]);
    assert_eq!(next.state(), DeliveryState::RetryScheduled { at: at(6) });
    assert_eq!(next.attempts(), 1);
    assert_eq!(
        store.list_attempts(wallet, delivery.id()).await.unwrap(),
        vec![first_log.clone()]
    );

    // Claimed again by a; the lease expires and b takes it; a's record is then lost.
    let by_a = store
        .claim_due(&a, &request(at(6), LEASE, 10, &[]))
        .await
        .unwrap()
        .remove(0);
    let by_b = store
        .claim_due(&b, &request(at(36), LEASE, 10, &[]))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(by_a.delivery.id(), by_b.delivery.id());
    let (late, _) = by_a
        .delivery
        .on_attempt(
            &status(200).outcome(),
            &RetryPolicy::identus(),
            at(37),
            Jitter::MAX,
        )
        .unwrap();
    let lost = store
        .record_attempts(
            &a,
            &[AttemptRecord {
                delivery: late,
                attempt: log(2, at(6), status(200)),
            }],
        )
        .await
        .unwrap();
    assert_eq!(lost, vec![delivery.id()]);
    assert_eq!(
        deliveries_of(store, wallet).await,
        vec![by_b.delivery.clone()]
    );
    assert_eq!(
        store.list_attempts(wallet, delivery.id()).await.unwrap(),
        vec![first_log.clone()]
    );

    // b's record goes through.
    let (done, _) = by_b
        .delivery
        .on_attempt(
            &status(204).outcome(),
            &RetryPolicy::identus(),
            at(38),
            Jitter::MAX,
        )
        .unwrap();
    let second_log = log(2, at(36), status(204));
    assert!(
        store
            .record_attempts(
                &b,
                &[AttemptRecord {
                    delivery: done.clone(),
                    attempt: second_log.clone(),
                }],
            )
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(done.state(), DeliveryState::Delivered { at: at(38) });
    assert_eq!(deliveries_of(store, wallet).await, vec![done]);
    assert_eq!(
        store.list_attempts(wallet, delivery.id()).await.unwrap(),
        vec![first_log, second_log]
    );

    let other = new_wallet(store).await;
    let err = store.list_attempts(other, delivery.id()).await.unwrap_err();
    assert!(matches!(err, OutboxError::NotFound), "{err:?}");
}

/// release makes a delivery due again at once; a release by a non-owner is ignored.
pub async fn release<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox + DeliveryQueue,
{
    let (wallet, _, _, _) = one_delivery(store).await;
    let (a, b) = (owner("a"), owner("b"));
    let claimed = store
        .claim_due(&a, &request(T0, LEASE, 10, &[]))
        .await
        .unwrap()
        .remove(0);
    let released = claimed.delivery.release(at(1)).unwrap();

    store
        .release(&b, std::slice::from_ref(&released))
        .await
        .unwrap();
    assert_eq!(
        deliveries_of(store, wallet).await,
        vec![claimed.delivery.clone()],
        "a non-owner's release is ignored"
    );

    store
        .release(&a, std::slice::from_ref(&released))
        .await
        .unwrap();
    assert_eq!(deliveries_of(store, wallet).await, vec![released.clone()]);
    assert_eq!(released.state(), DeliveryState::Pending { due: at(1) });

    let again = store
        .claim_due(&b, &request(at(1), LEASE, 10, &[]))
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].delivery.id(), claimed.delivery.id());
}

/// next_due_at reports the earliest claimable time (a due time or a lease end) and `None` when
/// every delivery is final.
pub async fn next_due_at<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox + DeliveryQueue,
{
    assert_eq!(store.next_due_at(T0, &[]).await.unwrap(), None);
    let (wallet, _, _, _) = one_delivery(store).await;
    store.publish(&event(wallet), None, at(10)).await.unwrap();
    assert_eq!(store.next_due_at(T0, &[]).await.unwrap(), Some(T0));

    let a = owner("a");
    let first = store
        .claim_due(&a, &request(T0, LEASE, 10, &[]))
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(store.next_due_at(T0, &[]).await.unwrap(), Some(at(10)));
    let second = store
        .claim_due(&a, &request(at(10), LEASE, 10, &[]))
        .await
        .unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(store.next_due_at(T0, &[]).await.unwrap(), Some(at(30)));

    let mut records = Vec::new();
    for c in first.iter().chain(&second) {
        let (done, _) = c
            .delivery
            .on_attempt(
                &status(200).outcome(),
                &RetryPolicy::identus(),
                at(11),
                Jitter::MAX,
            )
            .unwrap();
        records.push(AttemptRecord {
            delivery: done,
            attempt: log(1, at(10), status(200)),
        });
    }
    assert!(
        store
            .record_attempts(&a, &records)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.next_due_at(T0, &[]).await.unwrap(), None);
}

pub fn backlog_of(due: u64, oldest_due_at: Option<OffsetDateTime>) -> Backlog {
    Backlog { due, oldest_due_at }
}

/// backlog counts what is claimable at `now` (pending and retry-scheduled deliveries due at or
/// before it, and expired leases) with the earliest due time among them, and nothing due
/// later, leased past `now`, or final.
pub async fn backlog_counts_due_deliveries<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox + DeliveryQueue,
{
    let (wallet, _, _, _) = one_delivery(store).await;
    store.publish(&event(wallet), None, at(5)).await.unwrap();
    store.publish(&event(wallet), None, at(100)).await.unwrap();
    assert_eq!(store.backlog(T0).await.unwrap(), backlog_of(1, Some(T0)));
    assert_eq!(store.backlog(at(5)).await.unwrap(), backlog_of(2, Some(T0)));

    // A live lease is not due; an expired one is, from the lease's end.
    let a = owner("a");
    let first = store
        .claim_due(&a, &request(at(10), LEASE, 1, &[]))
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(
        store.backlog(at(10)).await.unwrap(),
        backlog_of(1, Some(at(5)))
    );
    assert_eq!(
        store.backlog(at(40)).await.unwrap(),
        backlog_of(2, Some(at(5)))
    );

    // A scheduled retry is due from its time on.
    let (retry, _) = first[0]
        .delivery
        .on_attempt(
            &status(500).outcome(),
            &RetryPolicy::identus(),
            at(11),
            Jitter::MAX,
        )
        .unwrap();
    assert_eq!(retry.state(), DeliveryState::RetryScheduled { at: at(16) });
    let record = AttemptRecord {
        delivery: retry,
        attempt: log(1, at(10), status(500)),
    };
    assert!(
        store
            .record_attempts(&a, &[record])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.backlog(at(15)).await.unwrap(),
        backlog_of(1, Some(at(5)))
    );
    assert_eq!(
        store.backlog(at(16)).await.unwrap(),
        backlog_of(2, Some(at(5)))
    );

    // Final deliveries (exhausted, delivered) are not counted.
    assert_eq!(exhaust_due(store, at(20)).await, 2);
    assert_eq!(
        store.backlog(at(200)).await.unwrap(),
        backlog_of(1, Some(at(100)))
    );
    deliver_all(store, at(200)).await;
    assert_eq!(store.backlog(at(300)).await.unwrap(), backlog_of(0, None));
}

/// backlog reports no oldest due time exactly when nothing is due: on an empty store, before
/// the first due time, and once everything is final.
pub async fn backlog_empty<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox + DeliveryQueue,
{
    assert_eq!(store.backlog(T0).await.unwrap(), backlog_of(0, None));
    let (wallet, _, _, _) = one_delivery(store).await;
    store.publish(&event(wallet), None, at(1)).await.unwrap();
    let before = T0 - time::Duration::microseconds(1);
    assert_eq!(store.backlog(before).await.unwrap(), backlog_of(0, None));
    assert_eq!(store.backlog(T0).await.unwrap(), backlog_of(1, Some(T0)));
    deliver_all(store, at(1)).await;
    assert_eq!(store.backlog(at(1)).await.unwrap(), backlog_of(0, None));
    assert_eq!(store.backlog(at(1000)).await.unwrap(), backlog_of(0, None));
}

/// backlog leases and changes nothing: the deliveries it counts stay as they were, and a claim
/// right after it still gets them all.
pub async fn backlog_changes_nothing<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox + DeliveryQueue,
{
    let (wallet, _, _, _) = one_delivery(store).await;
    store.publish(&event(wallet), None, T0).await.unwrap();
    let before = deliveries_of(store, wallet).await;
    assert_eq!(store.backlog(at(1)).await.unwrap(), backlog_of(2, Some(T0)));
    assert_eq!(store.backlog(at(1)).await.unwrap(), backlog_of(2, Some(T0)));
    assert_eq!(deliveries_of(store, wallet).await, before);
    let claimed = store
        .claim_due(&owner("a"), &request(at(1), LEASE, 10, &[]))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
}

/// requeue makes an exhausted delivery pending with 0 attempts; a delivered one is `Conflict`;
/// another wallet's (or an unknown one) is `NotFound`.
pub async fn requeue<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox + DeliveryQueue,
{
    let (wallet, _, _, delivery) = one_delivery(store).await;
    let a = owner("a");
    let claimed = store
        .claim_due(&a, &request(T0, LEASE, 10, &[]))
        .await
        .unwrap()
        .remove(0);
    let (exhausted, _) = claimed
        .delivery
        .on_attempt(
            &AttemptDetail::AddressRefused.outcome(),
            &RetryPolicy::identus(),
            at(1),
            Jitter::MAX,
        )
        .unwrap();
    assert_eq!(exhausted.state(), DeliveryState::Exhausted { at: at(1) });
    store
        .record_attempts(
            &a,
            &[AttemptRecord {
                delivery: exhausted,
                attempt: log(1, T0, AttemptDetail::AddressRefused),
            }],
        )
        .await
        .unwrap();
    assert_eq!(store.next_due_at(T0, &[]).await.unwrap(), None);

    let other = new_wallet(store).await;
    let err = store
        .requeue(other, delivery.id(), at(2))
        .await
        .unwrap_err();
    assert!(matches!(err, OutboxError::NotFound), "{err:?}");
    let err = store
        .requeue(wallet, DeliveryId::from_uuid(Uuid::new_v4()), at(2))
        .await
        .unwrap_err();
    assert!(matches!(err, OutboxError::NotFound), "{err:?}");

    let requeued = store.requeue(wallet, delivery.id(), at(2)).await.unwrap();
    assert_eq!(requeued.state(), DeliveryState::Pending { due: at(2) });
    assert_eq!(requeued.attempts(), 0);
    assert_eq!(requeued.first_due(), at(2));
    assert_eq!(deliveries_of(store, wallet).await, vec![requeued]);
    assert_eq!(store.next_due_at(T0, &[]).await.unwrap(), Some(at(2)));

    let again = store
        .claim_due(&a, &request(at(2), LEASE, 10, &[]))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        again.delivery.state(),
        DeliveryState::InFlight {
            attempt: 1,
            leased_until: at(32)
        }
    );
    let (delivered, _) = again
        .delivery
        .on_attempt(
            &status(200).outcome(),
            &RetryPolicy::identus(),
            at(3),
            Jitter::MAX,
        )
        .unwrap();
    store
        .record_attempts(
            &a,
            &[AttemptRecord {
                delivery: delivered.clone(),
                attempt: log(1, at(2), status(200)),
            }],
        )
        .await
        .unwrap();
    let err = store
        .requeue(wallet, delivery.id(), at(4))
        .await
        .unwrap_err();
    assert!(matches!(err, OutboxError::Conflict(_)), "{err:?}");
    assert_eq!(deliveries_of(store, wallet).await, vec![delivered]);
}

/// Attempts are numbered per delivery without starting again: a delivery's attempts made are
/// stored with each outcome, read back by claims and listings, and kept by a requeue and a
/// redelivery step, so the numbers of the attempts recorded after them continue.
pub async fn attempt_numbers_continue_after_requeues<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox + DeliveryQueue + RedeliveryJobs,
{
    let (wallet, webhook, _, delivery) = one_delivery(store).await;
    let a = owner("a");
    // Claims at `now`, applies `outcome` and records it under the number the dispatcher gives.
    let attempt = async |now: OffsetDateTime, outcome: AttemptDetail| {
        let claimed = claim(store, &a, now, 10, &[]).await;
        assert_eq!(claimed.len(), 1);
        let (next, _) = claimed[0]
            .delivery
            .on_attempt(
                &outcome.outcome(),
                &RetryPolicy::identus(),
                now,
                Jitter::MAX,
            )
            .unwrap();
        let record = AttemptRecord {
            attempt: log(next.attempts_made(), now, outcome),
            delivery: next.clone(),
        };
        assert!(
            store
                .record_attempts(&a, &[record])
                .await
                .unwrap()
                .is_empty()
        );
        (claimed[0].delivery.clone(), next)
    };

    let (first, exhausted) = attempt(T0, AttemptDetail::AddressRefused).await;
    assert_eq!(first.attempts_made(), 0);
    assert_eq!(exhausted.attempts_made(), 1);
    assert_eq!(
        store.get_delivery(wallet, delivery.id()).await.unwrap(),
        exhausted
    );

    let requeued = store.requeue(wallet, delivery.id(), at(1)).await.unwrap();
    assert_eq!((requeued.attempts(), requeued.attempts_made()), (0, 1));
    assert_eq!(deliveries_of(store, wallet).await, vec![requeued]);
    let (second, _) = attempt(at(1), AttemptDetail::AddressRefused).await;
    assert_eq!((second.attempts(), second.attempts_made()), (0, 1));

    let job = redelivery_job(wallet, webhook.id, T0, at(10), at(5));
    store.create_redelivery_job(&job).await.unwrap();
    let stepped = store.step_redelivery_job(job.id, 10, at(6)).await.unwrap();
    assert_eq!(stepped.requeued, 1);
    let after_step = store.get_delivery(wallet, delivery.id()).await.unwrap();
    assert_eq!((after_step.attempts(), after_step.attempts_made()), (0, 2));
    let (third, delivered) = attempt(at(6), status(200)).await;
    assert_eq!(third.attempts_made(), 2);
    assert_eq!(delivered.attempts_made(), 3);

    let numbers: Vec<u32> = store
        .list_attempts(wallet, delivery.id())
        .await
        .unwrap()
        .iter()
        .map(|a| a.number)
        .collect();
    assert_eq!(numbers, vec![1, 2, 3]);
    assert_eq!(deliveries_of(store, wallet).await, vec![delivered]);
}

/// Claims every delivery due at `now`, but those to the targets in `skip`, and records
/// `outcome` for each, numbered as the dispatcher numbers attempts. The policy retries at once,
/// up to 100 times. Returns how many.
pub async fn attempt_due<S: DeliveryQueue>(
    store: &S,
    now: OffsetDateTime,
    outcome: AttemptDetail,
    skip: &[WebhookId],
) -> usize {
    let policy = RetryPolicy::new(
        Backoff::Fixed {
            interval: Duration::ZERO,
        },
        100,
        None,
    )
    .unwrap();
    let me = owner("attempter");
    let claimed = claim(store, &me, now, 1000, skip).await;
    let records: Vec<AttemptRecord> = claimed
        .iter()
        .map(|c| {
            let (next, _) = c
                .delivery
                .on_attempt(&outcome.outcome(), &policy, now, Jitter::MAX)
                .unwrap();
            AttemptRecord {
                attempt: log(next.attempts_made(), now, outcome),
                delivery: next,
            }
        })
        .collect();
    let lost = store.record_attempts(&me, &records).await.unwrap();
    assert!(lost.is_empty());
    claimed.len()
}

pub fn numbers(attempts: &[AttemptLog]) -> Vec<u32> {
    attempts.iter().map(|a| a.number).collect()
}

/// list_attempts_of never returns another wallet's attempts: a delivery of another wallet, an
/// unknown one and one without attempts are absent, whatever else is asked with them.
pub async fn attempts_of_many_isolation<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox + DeliveryQueue,
{
    let (a, _, _, delivery_a) = one_delivery(store).await;
    let (b, _, _, delivery_b) = one_delivery(store).await;
    assert_eq!(attempt_due(store, T0, status(500), &[]).await, 2);
    // Due later: no attempt yet.
    store.publish(&event(a), None, at(100)).await.unwrap();
    let unattempted = deliveries_of(store, a).await[1].id();
    let unknown = DeliveryId::from_uuid(Uuid::new_v4());
    let asked = [delivery_a.id(), delivery_b.id(), unattempted, unknown];

    let of_a = store.list_attempts_of(a, &asked, 100).await.unwrap();
    assert_eq!(
        of_a.keys().copied().collect::<Vec<_>>(),
        vec![delivery_a.id()]
    );
    assert_eq!(
        of_a[&delivery_a.id()].attempts,
        store.list_attempts(a, delivery_a.id()).await.unwrap()
    );
    let of_b = store.list_attempts_of(b, &asked, 100).await.unwrap();
    assert_eq!(
        of_b.keys().copied().collect::<Vec<_>>(),
        vec![delivery_b.id()]
    );
    let stranger = new_wallet(store).await;
    assert!(
        store
            .list_attempts_of(stranger, &asked, 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .list_attempts_of(a, &[], 100)
            .await
            .unwrap()
            .is_empty()
    );
}

/// list_attempts_of returns each delivery's attempts in the order they were made, as
/// list_attempts does, however the attempts of several deliveries were interleaved.
pub async fn attempts_of_many_in_order<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox + DeliveryQueue,
{
    let wallet = new_wallet(store).await;
    let mut hooks = Vec::new();
    for n in 0..3 {
        hooks.push(new_webhook(store, wallet, &format!("https://{n}.example/hook")).await);
    }
    store.publish(&event(wallet), None, T0).await.unwrap();
    // Rounds of attempts at every delivery but the skipped ones: 4, 3 and 2 attempts.
    for (round, skip) in [
        vec![],
        vec![],
        vec![hooks[2].id],
        vec![hooks[1].id, hooks[2].id],
    ]
    .iter()
    .enumerate()
    {
        let now = at(i64::try_from(round).unwrap());
        assert_eq!(
            attempt_due(store, now, status(500), skip).await,
            3 - skip.len()
        );
    }
    let deliveries = deliveries_of(store, wallet).await;
    let ids: Vec<DeliveryId> = deliveries.iter().map(Delivery::id).collect();
    let found = store.list_attempts_of(wallet, &ids, 100).await.unwrap();
    assert_eq!(found.len(), 3);
    let mut counts = Vec::new();
    for delivery in &deliveries {
        let listed = store.list_attempts(wallet, delivery.id()).await.unwrap();
        let recent = &found[&delivery.id()];
        assert_eq!(recent.attempts, listed);
        assert_eq!(recent.total, listed.len() as u64);
        let n = delivery.attempts_made();
        assert_eq!(numbers(&recent.attempts), (1..=n).collect::<Vec<_>>());
        counts.push(n);
    }
    counts.sort_unstable();
    assert_eq!(counts, vec![2, 3, 4]);
}

/// list_attempts_of returns at most `per_delivery` attempts of each delivery, its most recent
/// ones in order, and counts all of them in `total`.
pub async fn attempts_of_many_capped<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox + DeliveryQueue,
{
    let (wallet, long, _, _) = one_delivery(store).await;
    let short = new_webhook(store, wallet, "https://b.example/hook").await;
    store.publish(&event(wallet), None, T0).await.unwrap();
    for n in 0..5 {
        let skip = if n < 3 { vec![] } else { vec![short.id] };
        attempt_due(store, at(n), status(503), &skip).await;
    }
    let deliveries = deliveries_of(store, wallet).await;
    let ids: Vec<DeliveryId> = deliveries.iter().map(Delivery::id).collect();
    let of = |found: &std::collections::HashMap<DeliveryId, crate::RecentAttempts>,
              webhook: WebhookId| {
        let delivery = deliveries
            .iter()
            .find(|d| d.webhook_id() == webhook)
            .unwrap();
        let recent = &found[&delivery.id()];
        (recent.total, numbers(&recent.attempts))
    };
    for (cap, to_long, to_short) in [
        (1, vec![5], vec![3]),
        (2, vec![4, 5], vec![2, 3]),
        (3, vec![3, 4, 5], vec![1, 2, 3]),
        (5, vec![1, 2, 3, 4, 5], vec![1, 2, 3]),
        (100, vec![1, 2, 3, 4, 5], vec![1, 2, 3]),
    ] {
        let found = store.list_attempts_of(wallet, &ids, cap).await.unwrap();
        assert_eq!(of(&found, long.id), (5, to_long), "cap {cap}");
        assert_eq!(of(&found, short.id), (3, to_short), "cap {cap}");
    }
    // The attempts left in are whole: the same as listed one by one.
    let found = store.list_attempts_of(wallet, &ids, 2).await.unwrap();
    for delivery in &deliveries {
        let listed = store.list_attempts(wallet, delivery.id()).await.unwrap();
        assert_eq!(found[&delivery.id()].attempts, listed[listed.len() - 2..]);
    }
}

/// list_deliveries never shows another wallet's deliveries, whatever the filter.
pub async fn list_deliveries_isolation<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox,
{
    let (a, hook_a, event_a, delivery_a) = one_delivery(store).await;
    let (b, _, event_b, delivery_b) = one_delivery(store).await;
    assert_eq!(deliveries_of(store, a).await, vec![delivery_a.clone()]);
    assert_eq!(deliveries_of(store, b).await, vec![delivery_b]);

    let by_event = DeliveryFilter {
        event_id: Some(event_a.id()),
        ..DeliveryFilter::default()
    };
    assert!(
        store
            .list_deliveries(b, by_event.clone(), all())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.list_deliveries(a, by_event, all()).await.unwrap(),
        vec![delivery_a]
    );
    let by_webhook = DeliveryFilter {
        webhook_id: Some(hook_a.id),
        ..DeliveryFilter::default()
    };
    assert!(
        store
            .list_deliveries(b, by_webhook, all())
            .await
            .unwrap()
            .is_empty()
    );
    let by_state = DeliveryFilter {
        state: Some(webhook_domain::DeliveryStateKind::Pending),
        ..DeliveryFilter::default()
    };
    let pending_b = store.list_deliveries(b, by_state, all()).await.unwrap();
    assert_eq!(pending_b.len(), 1);
    assert_eq!(pending_b[0].event_id(), event_b.id());
    let err = store.get_event(b, event_a.id()).await.unwrap_err();
    assert!(matches!(err, OutboxError::NotFound), "{err:?}");
}

/// get_delivery returns the wallet's delivery as listed; another wallet's, or an unknown id,
/// is `NotFound`.
pub async fn get_delivery_isolation<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox,
{
    let (a, _, _, delivery_a) = one_delivery(store).await;
    let (b, _, _, delivery_b) = one_delivery(store).await;
    assert_eq!(
        store.get_delivery(a, delivery_a.id()).await.unwrap(),
        delivery_a
    );
    assert_eq!(
        store.get_delivery(b, delivery_b.id()).await.unwrap(),
        delivery_b
    );
    for (wallet, id) in [
        (b, delivery_a.id()),
        (a, delivery_b.id()),
        (a, DeliveryId::from_uuid(Uuid::new_v4())),
    ] {
        let err = store.get_delivery(wallet, id).await.unwrap_err();
        assert!(matches!(err, OutboxError::NotFound), "{err:?}");
    }
}

/// Eight claimers racing (tasks on a multi-threaded runtime, each through the shared pool)
/// claim every due delivery exactly once.
pub async fn concurrent_claims<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox + DeliveryQueue + Clone + 'static,
{
    const CLAIMERS: usize = 8;
    const EVENTS: usize = 40;
    const WEBHOOKS: usize = 5;
    let wallet = new_wallet(store).await;
    for n in 0..WEBHOOKS {
        new_webhook(store, wallet, &format!("https://{n}.example/hook")).await;
    }
    for _ in 0..EVENTS {
        store.publish(&event(wallet), None, T0).await.unwrap();
    }
    let claimers: Vec<_> = (0..CLAIMERS)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                let me = owner(&format!("claimer-{n}"));
                let mut got = Vec::new();
                loop {
                    let batch = store
                        .claim_due(&me, &request(T0, Duration::from_secs(600), 7, &[]))
                        .await
                        .unwrap();
                    if batch.is_empty() {
                        break got;
                    }
                    assert!(batch.len() <= 7);
                    got.extend(batch.into_iter().map(|c| c.delivery.id()));
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    let mut claims: Vec<DeliveryId> = Vec::new();
    let mut busy = 0;
    for claimer in claimers {
        let got = claimer.await.unwrap();
        busy += usize::from(!got.is_empty());
        claims.extend(got);
    }
    let distinct: HashSet<DeliveryId> = claims.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        claims.len(),
        "a delivery was claimed more than once"
    );
    let all_ids: HashSet<DeliveryId> = deliveries_of(store, wallet)
        .await
        .iter()
        .map(Delivery::id)
        .collect();
    assert_eq!(all_ids.len(), EVENTS * WEBHOOKS);
    assert_eq!(distinct, all_ids, "some due delivery was never claimed");
    assert!(busy >= 2, "the claimers did not overlap at all");
}

/// A publish that fails after it wrote the event, before its deliveries, leaves nothing: no
/// event, no delivery, no idempotency key. `arm` makes the store's next publish fail there.
pub async fn publish_fault_atomicity<S>(store: &S, arm: impl Fn())
where
    S: WalletRepository + WebhookRepository + EventOutbox,
{
    let wallet = new_wallet(store).await;
    for n in 0..3 {
        new_webhook(store, wallet, &format!("https://{n}.example/hook")).await;
    }
    let doomed = event(wallet);
    let key = Idempotency {
        key: "k-1".to_owned(),
        fingerprint: "f-1".to_owned(),
    };
    arm();
    let err = store
        .publish(&doomed, Some(key.clone()), T0)
        .await
        .unwrap_err();
    assert!(matches!(err, OutboxError::Backend(_)), "{err:?}");
    assert!(matches!(
        store.get_event(wallet, doomed.id()).await.unwrap_err(),
        OutboxError::NotFound
    ));
    assert!(deliveries_of(store, wallet).await.is_empty());

    // Nothing was kept: the same key with another request is a first publish, not a conflict.
    let other = Idempotency {
        key: "k-1".to_owned(),
        fingerprint: "f-2".to_owned(),
    };
    let published = store.publish(&doomed, Some(other), at(1)).await.unwrap();
    assert_eq!(
        published,
        crate::Published {
            event_id: doomed.id(),
            deliveries: 3,
            replayed: false,
        }
    );
    assert_eq!(deliveries_of(store, wallet).await.len(), 3);
}

/// Claims every due delivery at `now` and records a 200 for each.
pub async fn deliver_all<S: DeliveryQueue>(store: &S, now: OffsetDateTime) {
    let me = owner("deliverer");
    let claimed = store
        .claim_due(&me, &request(now, LEASE, 1000, &[]))
        .await
        .unwrap();
    let records: Vec<AttemptRecord> = claimed
        .iter()
        .map(|c| {
            let (next, _) = c
                .delivery
                .on_attempt(
                    &status(200).outcome(),
                    &RetryPolicy::identus(),
                    now,
                    Jitter::MAX,
                )
                .unwrap();
            AttemptRecord {
                delivery: next,
                attempt: log(1, now, status(200)),
            }
        })
        .collect();
    let lost = store.record_attempts(&me, &records).await.unwrap();
    assert!(lost.is_empty());
}

/// prune removes old events whose deliveries are all final, with their deliveries and
/// attempts, at most `limit` per call and oldest first; it keeps events with an unfinished
/// delivery and events stored at or after the cut-off, and never touches another's rows.
pub async fn prune<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox + DeliveryQueue + Retention,
{
    let wallet = new_wallet(store).await;
    let first = new_webhook(store, wallet, "https://a.example/hook").await;
    new_webhook(store, wallet, "https://b.example/hook").await;

    // Five old events and one more, all stored before the cut-off, and a recent one.
    let mut old_done = Vec::new();
    for n in 0..5 {
        let e = event(wallet);
        store.publish(&e, None, at(n)).await.unwrap();
        old_done.push(e);
    }
    let old_pending = event(wallet);
    store.publish(&old_pending, None, at(11)).await.unwrap();
    let recent = event(wallet);
    store.publish(&recent, None, at(100)).await.unwrap();
    // Every delivery succeeds but old_pending's to the first webhook, which will be retried.
    let me = owner("dispatcher");
    let claimed = store
        .claim_due(&me, &request(at(101), LEASE, 1000, &[]))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 14);
    let records: Vec<AttemptRecord> = claimed
        .iter()
        .map(|c| {
            let retried =
                c.delivery.event_id() == old_pending.id() && c.delivery.webhook_id() == first.id;
            let outcome = if retried { status(500) } else { status(200) };
            AttemptRecord {
                delivery: c
                    .delivery
                    .on_attempt(
                        &outcome.outcome(),
                        &RetryPolicy::identus(),
                        at(101),
                        Jitter::MAX,
                    )
                    .unwrap()
                    .0,
                attempt: log(1, at(101), outcome),
            }
        })
        .collect();
    assert!(
        store
            .record_attempts(&me, &records)
            .await
            .unwrap()
            .is_empty()
    );

    let cut = at(50);
    let first_batch = store.prune(cut, 2).await.unwrap();
    assert_eq!(
        first_batch,
        crate::Pruned {
            events: 2,
            deliveries: 4,
            attempts: 4,
        }
    );
    // Oldest first.
    for e in &old_done[..2] {
        assert!(matches!(
            store.get_event(wallet, e.id()).await.unwrap_err(),
            OutboxError::NotFound
        ));
    }
    assert!(store.get_event(wallet, old_done[2].id()).await.is_ok());
    let mut removed = first_batch.events;
    loop {
        let batch = store.prune(cut, 2).await.unwrap();
        assert!(batch.events <= 2);
        if batch.events == 0 {
            assert_eq!(batch, crate::Pruned::default());
            break;
        }
        removed += batch.events;
    }
    assert_eq!(removed, 5);
    for e in &old_done {
        assert!(store.get_event(wallet, e.id()).await.is_err());
    }
    // Kept: the event with a due delivery (and all its rows), and the recent one.
    assert_eq!(
        store.get_event(wallet, old_pending.id()).await.unwrap(),
        old_pending
    );
    assert_eq!(store.get_event(wallet, recent.id()).await.unwrap(), recent);
    let left = deliveries_of(store, wallet).await;
    assert_eq!(left.len(), 4);
    let delivered_sibling = left
        .iter()
        .find(|d| d.event_id() == old_pending.id() && d.webhook_id() != first.id)
        .unwrap();
    assert_eq!(
        store
            .list_attempts(wallet, delivered_sibling.id())
            .await
            .unwrap()
            .len(),
        1
    );
    // The retried delivery can still be claimed and finished; then its event goes too.
    deliver_all(store, at(200)).await;
    assert_eq!(store.prune(cut, 10).await.unwrap().events, 1);
    assert_eq!(store.prune(at(1000), 10).await.unwrap().events, 1);
    assert!(deliveries_of(store, wallet).await.is_empty());
}

// ---------------------------------------------------------------------------------------------
// RedeliveryJobs

/// Claims every delivery due at `now` and records a refused address for each, which exhausts
/// it at `now`. Returns how many.
pub async fn exhaust_due<S: DeliveryQueue>(store: &S, now: OffsetDateTime) -> usize {
    let me = owner("exhauster");
    let claimed = store
        .claim_due(&me, &request(now, LEASE, 1000, &[]))
        .await
        .unwrap();
    let records: Vec<AttemptRecord> = claimed
        .iter()
        .map(|c| {
            let (next, _) = c
                .delivery
                .on_attempt(
                    &AttemptDetail::AddressRefused.outcome(),
                    &RetryPolicy::identus(),
                    now,
                    Jitter::MAX,
                )
                .unwrap();
            assert_eq!(next.state(), DeliveryState::Exhausted { at: now });
            AttemptRecord {
                delivery: next,
                attempt: log(1, now, AttemptDetail::AddressRefused),
            }
        })
        .collect();
    assert!(
        store
            .record_attempts(&me, &records)
            .await
            .unwrap()
            .is_empty()
    );
    claimed.len()
}

/// A job of `webhook`'s deliveries in `wallet` created in `[since, until)`, created at `now`.
pub fn redelivery_job(
    wallet: WalletId,
    webhook: WebhookId,
    since: OffsetDateTime,
    until: OffsetDateTime,
    now: OffsetDateTime,
) -> RedeliveryJob {
    RedeliveryJob::new(
        RedeliveryJobId::from_uuid(Uuid::new_v4()),
        wallet,
        webhook,
        since,
        until,
        now,
    )
    .unwrap()
}

/// A wallet with two webhooks and `events` events published at `at(0)`, `at(1)`, ..., every
/// delivery exhausted at `at(100)`.
pub async fn exhausted_deliveries<S>(store: &S, events: i64) -> (WalletId, Webhook, Webhook)
where
    S: WalletRepository + WebhookRepository + EventOutbox + DeliveryQueue,
{
    let wallet = new_wallet(store).await;
    let target = new_webhook(store, wallet, "https://a.example/target").await;
    let other = new_webhook(store, wallet, "https://a.example/other").await;
    for n in 0..events {
        store.publish(&event(wallet), None, at(n)).await.unwrap();
    }
    exhaust_due(store, at(100)).await;
    (wallet, target, other)
}

/// The deliveries of `webhook` in `wallet`, in creation order.
pub async fn deliveries_to<S: EventOutbox>(
    store: &S,
    wallet: WalletId,
    webhook: WebhookId,
) -> Vec<Delivery> {
    let filter = DeliveryFilter {
        webhook_id: Some(webhook),
        ..DeliveryFilter::default()
    };
    store.list_deliveries(wallet, filter, all()).await.unwrap()
}

/// create_redelivery_job stores a running job whose `total` counts the job's wallet's
/// exhausted deliveries to its webhook created in `[since, until)`, and no other; get and the
/// running list return it. A webhook of another wallet, or an unknown one, is `NotFound`,
/// storing nothing.
pub async fn redelivery_job_create<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox + DeliveryQueue + RedeliveryJobs,
{
    let (wallet, target, _) = exhausted_deliveries(store, 6).await;
    // Created in the window but still pending: not matched.
    store.publish(&event(wallet), None, at(2)).await.unwrap();

    let job = redelivery_job(wallet, target.id, at(1), at(4), at(200));
    let stored = store.create_redelivery_job(&job).await.unwrap();
    assert_eq!(stored, RedeliveryJob { total: 3, ..job });
    assert_eq!(
        store.get_redelivery_job(wallet, job.id).await.unwrap(),
        stored
    );
    assert_eq!(
        store.running_redelivery_jobs().await.unwrap(),
        vec![stored.clone()]
    );

    let empty = redelivery_job(wallet, target.id, at(50), at(60), at(201));
    assert_eq!(store.create_redelivery_job(&empty).await.unwrap().total, 0);

    let b = new_wallet(store).await;
    let foreign = redelivery_job(b, target.id, at(0), at(10), at(200));
    let unknown = redelivery_job(
        wallet,
        WebhookId::from_uuid(Uuid::new_v4()),
        at(0),
        at(10),
        at(200),
    );
    for refused in [&foreign, &unknown] {
        let err = store.create_redelivery_job(refused).await.unwrap_err();
        assert!(matches!(err, OutboxError::NotFound), "{err:?}");
        let err = store
            .get_redelivery_job(refused.wallet_id, refused.id)
            .await
            .unwrap_err();
        assert!(matches!(err, OutboxError::NotFound), "{err:?}");
    }
    let running: Vec<RedeliveryJobId> = store
        .running_redelivery_jobs()
        .await
        .unwrap()
        .iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(running, vec![job.id, empty.id], "oldest first");
}

/// Steps requeue up to `limit` of the job's deliveries each (pending at the step's time, no
/// attempts), add them to `requeued`, and the first step that finds none completes the job;
/// deliveries outside the window or to another webhook stay exhausted.
pub async fn redelivery_job_steps<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox + DeliveryQueue + RedeliveryJobs,
{
    let (wallet, target, other) = exhausted_deliveries(store, 8).await;
    let job = redelivery_job(wallet, target.id, at(1), at(6), at(200));
    let job = store.create_redelivery_job(&job).await.unwrap();
    assert_eq!(job.total, 5);

    let mut progress = Vec::new();
    for n in 0..4 {
        let stepped = store
            .step_redelivery_job(job.id, 2, at(300 + n))
            .await
            .unwrap();
        assert_eq!(stepped.updated_at, at(300 + n));
        progress.push((stepped.requeued, stepped.state));
    }
    assert_eq!(
        progress,
        vec![
            (2, JobState::Running),
            (4, JobState::Running),
            (5, JobState::Running),
            (5, JobState::Completed),
        ]
    );
    let done = store.get_redelivery_job(wallet, job.id).await.unwrap();
    assert_eq!(
        done,
        RedeliveryJob {
            state: JobState::Completed,
            requeued: 5,
            updated_at: at(303),
            ..job
        }
    );
    assert!(store.running_redelivery_jobs().await.unwrap().is_empty());

    // Oldest first, two a step: the step at `at(300 + k)` took the window's `2k`th and
    // `2k + 1`th.
    let to_target = deliveries_to(store, wallet, target.id).await;
    assert_eq!(to_target.len(), 8);
    for (n, delivery) in (0_i64..).zip(&to_target) {
        if (1..6).contains(&n) {
            let due = at(300 + (n - 1) / 2);
            assert_eq!(delivery.state(), DeliveryState::Pending { due }, "{n}");
            assert_eq!((delivery.attempts(), delivery.first_due()), (0, due));
        } else {
            assert_eq!(delivery.state(), DeliveryState::Exhausted { at: at(100) });
        }
    }
    for delivery in deliveries_to(store, wallet, other.id).await {
        assert_eq!(delivery.state(), DeliveryState::Exhausted { at: at(100) });
    }
    assert_eq!(store.next_due_at(T0, &[]).await.unwrap(), Some(at(300)));
}

/// A step of a completed job changes nothing, even when deliveries it would match exist; an
/// unknown job is `NotFound`.
pub async fn redelivery_completed_job_unchanged<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox + DeliveryQueue + RedeliveryJobs,
{
    let wallet = new_wallet(store).await;
    let target = new_webhook(store, wallet, "https://a.example/target").await;
    for n in 0..3 {
        store.publish(&event(wallet), None, at(n)).await.unwrap();
    }
    // Created while nothing is exhausted, and dated after the exhaustion below.
    let job = redelivery_job(wallet, target.id, at(0), at(10), at(200));
    let job = store.create_redelivery_job(&job).await.unwrap();
    assert_eq!(job.total, 0);
    let done = store.step_redelivery_job(job.id, 10, at(20)).await.unwrap();
    assert_eq!(
        (done.state, done.requeued, done.updated_at),
        (JobState::Completed, 0, at(20))
    );

    assert_eq!(exhaust_due(store, at(100)).await, 3);
    let before = deliveries_of(store, wallet).await;
    let again = store
        .step_redelivery_job(job.id, 10, at(300))
        .await
        .unwrap();
    assert_eq!(again, done);
    assert_eq!(
        store.get_redelivery_job(wallet, job.id).await.unwrap(),
        done
    );
    assert_eq!(deliveries_of(store, wallet).await, before);
    assert_eq!(store.next_due_at(T0, &[]).await.unwrap(), None);

    let err = store
        .step_redelivery_job(RedeliveryJobId::from_uuid(Uuid::new_v4()), 10, at(300))
        .await
        .unwrap_err();
    assert!(matches!(err, OutboxError::NotFound), "{err:?}");
}

/// A job takes only deliveries that became final before it was created: one exhausted after
/// it is left alone, and so is one it requeued that is exhausted again.
pub async fn redelivery_job_takes_only_earlier_finals<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox + DeliveryQueue + RedeliveryJobs,
{
    let wallet = new_wallet(store).await;
    let target = new_webhook(store, wallet, "https://a.example/target").await;
    for n in 0..2 {
        store.publish(&event(wallet), None, at(n)).await.unwrap();
    }
    assert_eq!(exhaust_due(store, at(10)).await, 2);
    let job = redelivery_job(wallet, target.id, at(0), at(5), at(20));
    let job = store.create_redelivery_job(&job).await.unwrap();
    assert_eq!(job.total, 2);

    // In the window, but exhausted after the job was created.
    let late = event(wallet);
    store.publish(&late, None, at(3)).await.unwrap();
    assert_eq!(exhaust_due(store, at(25)).await, 1);

    let stepped = store.step_redelivery_job(job.id, 10, at(30)).await.unwrap();
    assert_eq!((stepped.requeued, stepped.state), (2, JobState::Running));
    // What it requeued fails again.
    assert_eq!(exhaust_due(store, at(40)).await, 2);
    let stepped = store.step_redelivery_job(job.id, 10, at(50)).await.unwrap();
    assert_eq!((stepped.requeued, stepped.state), (2, JobState::Completed));

    for delivery in deliveries_to(store, wallet, target.id).await {
        let expected = if delivery.event_id() == late.id() {
            at(25)
        } else {
            at(40)
        };
        assert_eq!(delivery.state(), DeliveryState::Exhausted { at: expected });
    }
}

/// Jobs are wallet-scoped: another wallet cannot get a job, and a job's steps never touch
/// another wallet's deliveries.
pub async fn redelivery_job_isolation<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox + DeliveryQueue + RedeliveryJobs,
{
    let (a, target_a, _) = exhausted_deliveries(store, 3).await;
    let (b, target_b, _) = exhausted_deliveries(store, 3).await;
    let job = redelivery_job(a, target_a.id, at(0), at(10), at(200));
    let job = store.create_redelivery_job(&job).await.unwrap();
    assert_eq!(job.total, 3);

    let err = store.get_redelivery_job(b, job.id).await.unwrap_err();
    assert!(matches!(err, OutboxError::NotFound), "{err:?}");
    let err = store
        .get_redelivery_job(a, RedeliveryJobId::from_uuid(Uuid::new_v4()))
        .await
        .unwrap_err();
    assert!(matches!(err, OutboxError::NotFound), "{err:?}");

    let stepped = store
        .step_redelivery_job(job.id, 10, at(300))
        .await
        .unwrap();
    assert_eq!(stepped.requeued, 3);
    for delivery in deliveries_to(store, b, target_b.id).await {
        assert_eq!(delivery.state(), DeliveryState::Exhausted { at: at(100) });
    }
}

/// Steppers racing on one job (tasks on a multi-threaded runtime, each through the shared
/// pool) requeue every matched delivery exactly once: the job's count ends at its total.
pub async fn redelivery_concurrent_steps<S>(store: &S)
where
    S: WalletRepository
        + WebhookRepository
        + EventOutbox
        + DeliveryQueue
        + RedeliveryJobs
        + Clone
        + 'static,
{
    const EVENTS: i64 = 40;
    const STEPPERS: usize = 4;
    let (wallet, target, _) = exhausted_deliveries(store, EVENTS).await;
    let job = redelivery_job(wallet, target.id, at(0), at(EVENTS), at(200));
    let job = store.create_redelivery_job(&job).await.unwrap();
    assert_eq!(job.total, EVENTS as u64);

    let steppers: Vec<_> = (0..STEPPERS)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                loop {
                    let stepped = store.step_redelivery_job(job.id, 3, at(300)).await.unwrap();
                    assert!(stepped.requeued <= stepped.total, "{stepped:?}");
                    if stepped.state == JobState::Completed {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for stepper in steppers {
        stepper.await.unwrap();
    }
    let done = store.get_redelivery_job(wallet, job.id).await.unwrap();
    assert_eq!(
        (done.state, done.requeued),
        (JobState::Completed, EVENTS as u64)
    );
    let to_target = deliveries_to(store, wallet, target.id).await;
    assert_eq!(to_target.len(), EVENTS as usize);
    assert!(
        to_target
            .iter()
            .all(|d| d.state() == DeliveryState::Pending { due: at(300) })
    );
}

/// A step of a job whose webhook was deleted, or disabled (here after a first step), requeues
/// nothing and stops the job with the reason, keeping its count; the job leaves the running
/// list and later steps change nothing.
pub async fn redelivery_job_stops_with_its_webhook<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox + DeliveryQueue + RedeliveryJobs,
{
    let (wallet, deleted, disabled) = exhausted_deliveries(store, 4).await;
    let of_deleted = redelivery_job(wallet, deleted.id, at(0), at(10), at(200));
    let of_deleted = store.create_redelivery_job(&of_deleted).await.unwrap();
    let of_disabled = redelivery_job(wallet, disabled.id, at(0), at(10), at(200));
    let of_disabled = store.create_redelivery_job(&of_disabled).await.unwrap();

    store
        .delete_webhook(wallet, deleted.id, at(250))
        .await
        .unwrap();
    let stopped = store
        .step_redelivery_job(of_deleted.id, 10, at(300))
        .await
        .unwrap();
    assert_eq!(
        stopped,
        RedeliveryJob {
            state: JobState::Stopped(JobStopReason::WebhookDeleted),
            updated_at: at(300),
            ..of_deleted.clone()
        }
    );
    for delivery in deliveries_to(store, wallet, deleted.id).await {
        assert_eq!(delivery.state(), DeliveryState::Exhausted { at: at(100) });
    }

    let first = store
        .step_redelivery_job(of_disabled.id, 1, at(300))
        .await
        .unwrap();
    assert_eq!((first.requeued, first.state), (1, JobState::Running));
    store.disable_webhook(disabled.id, at(301)).await.unwrap();
    let stopped_too = store
        .step_redelivery_job(of_disabled.id, 10, at(302))
        .await
        .unwrap();
    assert_eq!(
        stopped_too,
        RedeliveryJob {
            state: JobState::Stopped(JobStopReason::WebhookDisabled),
            requeued: 1,
            updated_at: at(302),
            ..of_disabled.clone()
        }
    );
    let exhausted = deliveries_to(store, wallet, disabled.id)
        .await
        .iter()
        .filter(|d| d.state() == DeliveryState::Exhausted { at: at(100) })
        .count();
    assert_eq!(exhausted, 3, "the rest stays exhausted");

    assert!(store.running_redelivery_jobs().await.unwrap().is_empty());
    for (job, stopped) in [(of_deleted.id, stopped), (of_disabled.id, stopped_too)] {
        assert_eq!(
            store.get_redelivery_job(wallet, job).await.unwrap(),
            stopped
        );
        let again = store.step_redelivery_job(job, 10, at(400)).await.unwrap();
        assert_eq!(again, stopped);
    }
    assert_eq!(store.next_due_at(at(100), &[]).await.unwrap(), None);
}

/// Steppers racing a delete of the job's webhook (tasks on a multi-threaded runtime): whichever
/// order the transactions take, no delivery of the deleted webhook is left due, and the job ends
/// stopped (or completed, when it was done before the delete).
pub async fn redelivery_steps_racing_a_delete<S>(store: &S)
where
    S: WalletRepository
        + WebhookRepository
        + EventOutbox
        + DeliveryQueue
        + RedeliveryJobs
        + Clone
        + 'static,
{
    const EVENTS: i64 = 60;
    const STEPPERS: usize = 3;
    let (wallet, target, _) = exhausted_deliveries(store, EVENTS).await;
    let job = redelivery_job(wallet, target.id, at(0), at(EVENTS), at(200));
    let job = store.create_redelivery_job(&job).await.unwrap();
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(STEPPERS + 1));
    let steppers: Vec<_> = (0..STEPPERS)
        .map(|_| {
            let store = store.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                loop {
                    let stepped = store.step_redelivery_job(job.id, 2, at(300)).await.unwrap();
                    if stepped.state.is_finished() {
                        return stepped.state;
                    }
                }
            })
        })
        .collect();
    barrier.wait().await;
    tokio::task::yield_now().await;
    store
        .delete_webhook(wallet, target.id, at(300))
        .await
        .unwrap();
    for stepper in steppers {
        let state = stepper.await.unwrap();
        assert!(
            matches!(
                state,
                JobState::Stopped(JobStopReason::WebhookDeleted) | JobState::Completed
            ),
            "{state:?}"
        );
    }
    let due: Vec<Delivery> = deliveries_to(store, wallet, target.id)
        .await
        .into_iter()
        .filter(|d| !d.state().is_final())
        .collect();
    assert!(due.is_empty(), "{due:?}");
    assert_eq!(store.next_due_at(at(100), &[]).await.unwrap(), None);
}

/// Listings page without gaps or repeats: walking wallets, webhooks and deliveries a page at a
/// time gives the full listing in its order.
pub async fn pagination<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox,
{
    let wallet = new_wallet(store).await;
    for n in 0..7 {
        new_wallet(store).await;
        new_webhook(store, wallet, &format!("https://{n}.example/hook")).await;
    }
    for _ in 0..3 {
        store.publish(&event(wallet), None, T0).await.unwrap();
    }
    let pages = |size: u32, total: usize| {
        (0..=total.div_ceil(size as usize)).map(move |n| Page {
            offset: n as u64 * u64::from(size),
            limit: size,
        })
    };

    let wallets = store.list_wallets(all()).await.unwrap();
    assert_eq!(wallets.len(), 8);
    let mut walked = Vec::new();
    for page in pages(3, wallets.len()) {
        walked.extend(store.list_wallets(page).await.unwrap());
    }
    assert_eq!(walked, wallets);

    let hooks = store.list_webhooks(wallet, all()).await.unwrap();
    assert_eq!(hooks.len(), 7);
    let mut walked = Vec::new();
    for page in pages(2, hooks.len()) {
        walked.extend(store.list_webhooks(wallet, page).await.unwrap());
    }
    assert_eq!(walked, hooks);

    let deliveries = deliveries_of(store, wallet).await;
    assert_eq!(deliveries.len(), 21);
    let mut walked = Vec::new();
    for page in pages(4, deliveries.len()) {
        let got = store
            .list_deliveries(wallet, DeliveryFilter::default(), page)
            .await
            .unwrap();
        assert!(got.len() <= 4);
        walked.extend(got);
    }
    assert_eq!(walked, deliveries);
    assert!(
        store
            .list_deliveries(
                wallet,
                DeliveryFilter::default(),
                Page {
                    offset: 21,
                    limit: 4
                }
            )
            .await
            .unwrap()
            .is_empty()
    );
}

/// `StorageLifecycle`: on a migrated store, migrating again applies nothing and nothing is
/// pending; the pool's numbers are consistent (read without I/O).
pub async fn storage_lifecycle<S: crate::StorageLifecycle>(store: &S) {
    assert_eq!(
        store.pending_migrations().await.unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(store.migrate().await.unwrap(), Vec::<String>::new());
    assert_eq!(
        store.pending_migrations().await.unwrap(),
        Vec::<String>::new()
    );
    let pool = store.pool_state();
    assert!(pool.max >= 1, "{pool:?}");
    assert!(
        pool.idle <= pool.connections && pool.connections <= pool.max,
        "{pool:?}"
    );
}

/// Expands to one test per contract rule for an adapter: `contract_suite!(fresh);`. `fresh` is
/// an async fn giving `Option<(guard, store)>`: a fresh, migrated store (a `Storage` that is
/// `Clone`, as racing rules hand a clone to each task), or `None` to skip (for a database server that
/// may be absent outside CI). Rules that need the adapter's own fault injection
/// (`publish_fault_atomicity`) are called by the adapter's tests directly.
#[macro_export]
macro_rules! contract_suite {
    ($fresh:path) => {
        $crate::contract_suite!(@tests $fresh;
            wallet_create_get api_keys entity_create_get admin_token_init_once
            webhook_round_trip webhook_tenant_isolation webhook_limit webhook_delete
            webhook_disable global_webhook global_webhook_not_disabled webhook_update
            webhook_update_not_found webhook_update_disable webhook_update_stale_revision
            publish_fan_out publish_replay publish_replay_with_new_key
            publish_idempotency publish_atomicity event_ids_per_wallet publish_batch_fan_out publish_batch_replay
            publish_batch_conflict claim_due claim_skip ordered_claims ordered_follows_commit_order
            ordered_requeue_waits_for_the_one_in_flight a_change_leaves_the_delivery_in_flight_to_its_holder
            claims_cancel_what_a_dead_holder_left_of_a_gone_target settling_a_live_target_changes_nothing
            requeue_refuses_a_gone_target ordering_a_target_keeps_its_waiting_deliveries
            next_due_at_leaves_out_what_cannot_be_claimed record_attempts release
            next_due_at backlog_counts_due_deliveries backlog_empty backlog_changes_nothing
            requeue attempt_numbers_continue_after_requeues attempts_of_many_isolation
            attempts_of_many_in_order attempts_of_many_capped list_deliveries_isolation
            get_delivery_isolation
            redelivery_job_create redelivery_job_steps redelivery_completed_job_unchanged
            redelivery_job_takes_only_earlier_finals redelivery_job_isolation
            redelivery_job_stops_with_its_webhook pagination prune storage_lifecycle
            search_isolation_and_order search_pages_cover_every_match_once
            webhook_stats_buckets overview_counts
        );

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn concurrent_idempotent_publish() {
            let Some((_guard, store)) = $fresh().await else { return };
            $crate::contract::concurrent_idempotent_publish(&store).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn ordered_racing_claimers() {
            let Some((_guard, store)) = $fresh().await else { return };
            $crate::contract::ordered_racing_claimers(&store).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn ordered_racing_publishers() {
            let Some((_guard, store)) = $fresh().await else { return };
            $crate::contract::ordered_racing_publishers(&store).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn concurrent_claims() {
            let Some((_guard, store)) = $fresh().await else { return };
            $crate::contract::concurrent_claims(&store).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn admin_token_init_race() {
            let Some((_guard, store)) = $fresh().await else { return };
            $crate::contract::admin_token_init_race(&store).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn webhook_update_race() {
            let Some((_guard, store)) = $fresh().await else { return };
            $crate::contract::webhook_update_race(&store).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn redelivery_steps_racing_a_delete() {
            let Some((_guard, store)) = $fresh().await else { return };
            $crate::contract::redelivery_steps_racing_a_delete(&store).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn redelivery_concurrent_steps() {
            let Some((_guard, store)) = $fresh().await else { return };
            $crate::contract::redelivery_concurrent_steps(&store).await;
        }
    };
    (@tests $fresh:path; $($name:ident)+) => {
        $(
            #[tokio::test]
            async fn $name() {
                let Some((_guard, store)) = $fresh().await else { return };
                $crate::contract::$name(&store).await;
            }
        )+
    };
}
