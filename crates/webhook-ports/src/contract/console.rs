//! Contract rules of the console's reads: the delivery search (wallet isolation, order,
//! filters, keyset pages that cover every match exactly once), a webhook's attempt statistics
//! (buckets, their edges, what counts as a success, the backlog) and the overview's counts.

use std::collections::HashMap;

use super::*;
use crate::{DeliverySearch, FoundDelivery, SearchPosition, StatsWindow};

/// A search of everything, one page of `limit`.
pub fn search_all(limit: u32) -> DeliverySearch {
    DeliverySearch {
        state: None,
        event_type: None,
        webhook_id: None,
        since: None,
        until: None,
        after: None,
        limit,
    }
}

/// An event of `wallet` of type `kind`.
pub fn typed_event(wallet: WalletId, kind: &str) -> Event {
    Event::new(
        EventId::from_uuid(Uuid::new_v4()),
        Timestamp::from_datetime(T0),
        EventType::parse(kind).unwrap(),
        serde_json::json!({ "n": 1 }),
        wallet,
    )
    .unwrap()
}

/// Every page of `search`, each starting after the last row of the one before, until a short
/// page; at most 10,000 pages.
pub async fn walk_pages<S: EventOutbox>(
    store: &S,
    wallet: WalletId,
    search: &DeliverySearch,
) -> Vec<FoundDelivery> {
    let mut found: Vec<FoundDelivery> = Vec::new();
    let mut after: Option<SearchPosition> = None;
    for _ in 0..10_000 {
        let page = store
            .search_deliveries(
                wallet,
                DeliverySearch {
                    after,
                    ..search.clone()
                },
            )
            .await
            .unwrap();
        assert!(page.len() <= search.limit as usize, "{page:?}");
        let full = page.len() == search.limit as usize;
        after = page.last().map(FoundDelivery::position);
        found.extend(page);
        if !full {
            return found;
        }
    }
    panic!("more than 10,000 pages");
}

/// The search order: creation time, then id, both descending.
fn newest_first(a: &FoundDelivery, b: &FoundDelivery) -> std::cmp::Ordering {
    (b.created_at, b.delivery.id()).cmp(&(a.created_at, a.delivery.id()))
}

/// search_deliveries answers only the wallet's deliveries, newest first (creation time, then
/// id), each with its event's type and creation time; another wallet's deliveries never appear,
/// whatever the filter names (its webhook, its event type).
pub async fn search_isolation_and_order<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox,
{
    let a = new_wallet(store).await;
    let b = new_wallet(store).await;
    let hook_a = new_webhook(store, a, "https://a.example/hook").await;
    let hook_b = new_webhook(store, b, "https://b.example/hook").await;
    let mut published = HashMap::new();
    for (n, wallet) in [a, b, a, a, b].into_iter().enumerate() {
        let event = typed_event(wallet, "search.kind");
        let when = at(i64::try_from(n).unwrap());
        store.publish(&event, None, when).await.unwrap();
        published.insert(event.id(), when);
    }
    let found = store.search_deliveries(a, search_all(100)).await.unwrap();
    assert_eq!(found.len(), 3, "{found:?}");
    let mut sorted = found.clone();
    sorted.sort_by(newest_first);
    assert_eq!(found, sorted);
    for f in &found {
        assert_eq!(f.delivery.webhook_id(), hook_a.id);
        assert_eq!(f.event_type.as_str(), "search.kind");
        assert_eq!(Some(&f.created_at), published.get(&f.delivery.event_id()));
    }
    assert_eq!(found[0].created_at, at(3));
    assert_eq!(found[2].created_at, at(0));
    let foreign_hook = DeliverySearch {
        webhook_id: Some(hook_b.id),
        ..search_all(100)
    };
    assert!(
        store
            .search_deliveries(a, foreign_hook)
            .await
            .unwrap()
            .is_empty()
    );
    let by_type = DeliverySearch {
        event_type: Some(EventType::parse("search.kind").unwrap()),
        ..search_all(100)
    };
    let of_b = store.search_deliveries(b, by_type).await.unwrap();
    assert_eq!(of_b.len(), 2);
    assert!(of_b.iter().all(|f| f.delivery.webhook_id() == hook_b.id));
    let stranger = new_wallet(store).await;
    assert!(
        store
            .search_deliveries(stranger, search_all(100))
            .await
            .unwrap()
            .is_empty()
    );
}

/// A small deterministic generator (xorshift), so that a failure repeats.
struct Draw(u64);

impl Draw {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        usize::try_from(self.0 % n as u64).unwrap()
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())].clone()
    }
}

/// Keyset pages cover every match exactly once, in order, for random filters: 120 deliveries
/// of a wallet (and others of another wallet) published in batches that share a creation time
/// (up to 24 deliveries at one instant), in several states, to three webhooks (one deleted
/// since) for two event types; for 60 random searches (each filter or none, random page sizes
/// from 1 to 7) the pages walked one after another equal the brute-force filter of what was
/// stored, sorted newest first, with no duplicate.
pub async fn search_pages_cover_every_match_once<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox + DeliveryQueue,
{
    let wallet = new_wallet(store).await;
    let other = new_wallet(store).await;
    let hooks = [
        new_webhook(store, wallet, "https://a.example/1").await,
        new_webhook(store, wallet, "https://a.example/2").await,
        new_webhook(store, wallet, "https://a.example/3").await,
    ];
    new_webhook(store, other, "https://b.example/1").await;
    let kinds = ["kind.one", "kind.two"];
    // Events by id: their type and the time of their publish.
    let mut events: HashMap<EventId, (String, OffsetDateTime)> = HashMap::new();
    let mut draw = Draw(0x9e37_79b9_7f4a_7c15);
    for batch in 0..8_i64 {
        let when = at(batch / 2);
        let items: Vec<PublishItem> = (0..5)
            .map(|n| {
                let kind = kinds[(n + batch as usize) % 2];
                let event = typed_event(wallet, kind);
                events.insert(event.id(), (kind.to_owned(), when));
                item(&event, None)
            })
            .collect();
        store.publish_batch(&items, when).await.unwrap();
        store
            .publish_batch(&[item(&typed_event(other, "kind.one"), None)], when)
            .await
            .unwrap();
    }
    // Some delivered, some scheduled for a retry, the rest pending.
    let me = owner("searcher");
    let claimed = store
        .claim_due(&me, &request(at(10), LEASE, 40, &[]))
        .await
        .unwrap();
    let records: Vec<AttemptRecord> = claimed
        .iter()
        .enumerate()
        .map(|(n, c)| {
            let outcome = if n % 2 == 0 { status(200) } else { status(500) };
            let (next, _) = c
                .delivery
                .on_attempt(
                    &outcome.outcome(),
                    &RetryPolicy::identus(),
                    at(11),
                    Jitter::MAX,
                )
                .unwrap();
            AttemptRecord {
                delivery: next,
                attempt: log(1, at(11), outcome),
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
    store
        .delete_webhook(wallet, hooks[2].id, at(12))
        .await
        .unwrap();

    let stored = deliveries_of(store, wallet).await;
    assert_eq!(stored.len(), 120);
    let universe: Vec<FoundDelivery> = stored
        .into_iter()
        .map(|delivery| {
            let (kind, when) = events[&delivery.event_id()].clone();
            FoundDelivery {
                delivery,
                event_type: EventType::parse(&kind).unwrap(),
                created_at: when,
            }
        })
        .collect();
    let states = [
        None,
        Some(webhook_domain::DeliveryStateKind::Pending),
        Some(webhook_domain::DeliveryStateKind::Delivered),
        Some(webhook_domain::DeliveryStateKind::RetryScheduled),
        Some(webhook_domain::DeliveryStateKind::Cancelled),
    ];
    let types = [None, Some(kinds[0]), Some(kinds[1])];
    let webhooks = [None, Some(hooks[0].id), Some(hooks[2].id)];
    let times = [None, Some(at(0)), Some(at(1)), Some(at(3)), Some(at(9))];
    for round in 0..60 {
        let search = DeliverySearch {
            state: draw.pick(&states),
            event_type: draw.pick(&types).map(|k| EventType::parse(k).unwrap()),
            webhook_id: draw.pick(&webhooks),
            since: draw.pick(&times),
            until: draw.pick(&times),
            after: None,
            limit: u32::try_from(draw.below(7) + 1).unwrap(),
        };
        let mut expected: Vec<FoundDelivery> = universe
            .iter()
            .filter(|f| {
                search.state.is_none_or(|s| f.delivery.state().kind() == s)
                    && search
                        .event_type
                        .as_ref()
                        .is_none_or(|t| &f.event_type == t)
                    && search
                        .webhook_id
                        .is_none_or(|w| f.delivery.webhook_id() == w)
                    && search.since.is_none_or(|s| f.created_at >= s)
                    && search.until.is_none_or(|u| f.created_at < u)
            })
            .cloned()
            .collect();
        expected.sort_by(newest_first);
        let walked = walk_pages(store, wallet, &search).await;
        assert_eq!(
            walked.len(),
            expected.len(),
            "round {round}: {search:?} found {} of {} matches",
            walked.len(),
            expected.len()
        );
        assert_eq!(walked, expected, "round {round}: {search:?}");
    }
}

/// webhook_stats counts each attempt in the bucket of its start: one started at a bucket's
/// start is in that bucket, one a microsecond before it in the bucket before, one at the
/// window's end or before its start in none. A response from 200 to 299 and `accepted`
/// succeed; 300, 500, a timeout and `declined` fail. Durations add up per bucket, the longest
/// kept; another webhook's attempts never count. The backlog counts the webhook's unfinished
/// deliveries. An unknown, deleted or another wallet's webhook is `NotFound`.
pub async fn webhook_stats_buckets<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox + DeliveryQueue,
{
    let wallet = new_wallet(store).await;
    let hook = new_webhook(store, wallet, "https://a.example/stats").await;
    let other_hook = new_webhook(store, wallet, "https://a.example/other").await;
    let since = at(1000);
    let minute = Duration::from_secs(60);
    let micro = time::Duration::microseconds(1);
    let window = StatsWindow {
        since,
        bucket: minute,
        buckets: 3,
    };
    // (start, outcome, duration ms): the bucket each lands in is in the comment.
    let attempts = [
        (since - micro, status(200), 1),                          // none
        (since, status(200), 10),                                 // 0
        (since + minute - micro, AttemptDetail::Accepted, 30),    // 0
        (since + minute, status(299), 5),                         // 1
        (since + minute, status(300), 7),                         // 1
        (since + minute * 2, status(500), 2),                     // 2
        (since + minute * 2, AttemptDetail::Timeout, 4),          // 2
        (since + minute * 3 - micro, AttemptDetail::Declined, 8), // 2
        (since + minute * 3, status(200), 100),                   // none
    ];
    for _ in 0..attempts.len() {
        store.publish(&event(wallet), None, T0).await.unwrap();
    }
    let me = owner("stats");
    let claimed = store
        .claim_due(&me, &request(T0, LEASE, 100, &[]))
        .await
        .unwrap();
    assert_eq!(claimed.len(), attempts.len() * 2);
    let mut records = Vec::new();
    let mut of_hook = attempts.iter();
    for c in &claimed {
        let (started, outcome, ms) = if c.delivery.webhook_id() == hook.id {
            *of_hook.next().unwrap()
        } else {
            // The other webhook's attempts, all in bucket 0: never counted for `hook`.
            (since, status(200), 1000)
        };
        let (next, _) = c
            .delivery
            .on_attempt(
                &outcome.outcome(),
                &RetryPolicy::identus(),
                at(1),
                Jitter::MAX,
            )
            .unwrap();
        records.push(AttemptRecord {
            delivery: next,
            attempt: AttemptLog {
                number: 1,
                started_at: started,
                duration: Duration::from_millis(ms),
                detail: outcome,
                response_excerpt: None,
                error: None,
            },
        });
    }
    assert!(
        store
            .record_attempts(&me, &records)
            .await
            .unwrap()
            .is_empty()
    );
    let unfinished = deliveries_of(store, wallet)
        .await
        .iter()
        .filter(|d| d.webhook_id() == hook.id && !d.state().is_final())
        .count();
    assert!(
        unfinished > 0,
        "the failed attempts' deliveries wait for a retry"
    );

    let stats = store.webhook_stats(wallet, hook.id, window).await.unwrap();
    let bucket = |attempts, succeeded, ms: &[u64]| crate::AttemptStats {
        attempts,
        succeeded,
        total_duration: Duration::from_millis(ms.iter().sum()),
        max_duration: ms.iter().max().map(|m| Duration::from_millis(*m)),
    };
    assert_eq!(
        stats.buckets,
        vec![
            bucket(2, 2, &[10, 30]),
            bucket(2, 1, &[5, 7]),
            bucket(3, 0, &[2, 4, 8]),
        ]
    );
    assert_eq!(stats.backlog, unfinished as u64);
    assert_eq!(stats.buckets[2].failed(), 3);

    // Nothing in a window without attempts: every bucket present and empty.
    let empty = store
        .webhook_stats(
            wallet,
            other_hook.id,
            StatsWindow {
                since: at(5000),
                bucket: minute,
                buckets: 12,
            },
        )
        .await
        .unwrap();
    assert_eq!(empty.buckets, vec![crate::AttemptStats::default(); 12]);

    let stranger = new_wallet(store).await;
    for (wallet, id) in [
        (stranger, hook.id),
        (wallet, WebhookId::from_uuid(Uuid::new_v4())),
    ] {
        let err = store.webhook_stats(wallet, id, window).await.unwrap_err();
        assert!(matches!(err, OutboxError::NotFound), "{err:?}");
    }
    store.delete_webhook(wallet, hook.id, at(2)).await.unwrap();
    let err = store
        .webhook_stats(wallet, hook.id, window)
        .await
        .unwrap_err();
    assert!(matches!(err, OutboxError::NotFound), "{err:?}");
}

/// overview counts wallets, webhooks not deleted (the global one included) and attempts
/// started at or after the time asked for, of every wallet; it answers the global webhook.
pub async fn overview_counts<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox + DeliveryQueue,
{
    let before = store.overview(at(100)).await.unwrap();
    let a = new_wallet(store).await;
    let b = new_wallet(store).await;
    new_webhook(store, a, "https://a.example/o").await;
    new_webhook(store, b, "https://b.example/o").await;
    let doomed = new_webhook(store, b, "https://b.example/doomed").await;
    store.delete_webhook(b, doomed.id, at(1)).await.unwrap();
    let global = webhook_value(WebhookScope::Global, "https://global.example/o");
    store
        .set_global_webhook(Some(global.clone()), at(1))
        .await
        .unwrap();
    for wallet in [a, b, a] {
        store.publish(&event(wallet), None, at(2)).await.unwrap();
    }
    let me = owner("overview");
    let claimed = store
        .claim_due(&me, &request(at(2), LEASE, 100, &[]))
        .await
        .unwrap();
    // One attempt each: half before the cut-off, half at or after it.
    let records: Vec<AttemptRecord> = claimed
        .iter()
        .enumerate()
        .map(|(n, c)| {
            let started = if n % 2 == 0 { at(100) } else { at(99) };
            let (next, _) = c
                .delivery
                .on_attempt(
                    &status(200).outcome(),
                    &RetryPolicy::identus(),
                    at(3),
                    Jitter::MAX,
                )
                .unwrap();
            AttemptRecord {
                delivery: next,
                attempt: log(1, started, status(200)),
            }
        })
        .collect();
    assert_eq!(
        records.len(),
        6,
        "a's two events to a and the global; b's one to b and the global"
    );
    assert!(
        store
            .record_attempts(&me, &records)
            .await
            .unwrap()
            .is_empty()
    );
    let after = store.overview(at(100)).await.unwrap();
    assert_eq!(after.wallets, before.wallets + 2);
    assert_eq!(
        after.webhooks,
        before.webhooks + 3,
        "a's, b's live one and the global"
    );
    assert_eq!(after.recent_attempts, before.recent_attempts + 3);
    assert_eq!(after.global_webhook.map(|w| w.id), Some(global.id));
}
