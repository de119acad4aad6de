//! The walking skeleton's promise: a published event reaches a registered receiver exactly as
//! Identus would send it, failures are retried as the policy says, and the SSRF guard keeps
//! deliveries away from addresses it refuses.

use std::time::Duration;

use hyper::StatusCode;
use serde_json::json;
use webhook_domain::{AttemptDetail, DeliveryStateKind, WalletId};
use webhook_ports::{DeliveryFilter, Page};

use crate::utils::{
    Backend, Gate, Receiver, Service, assert_signed, connection_data, post_json, publish, register,
};

#[tokio::test]
async fn a_published_event_reaches_the_receiver_as_the_exact_envelope() {
    exact_envelope(Service::start().await).await;
}

#[tokio::test]
async fn on_postgres_a_published_event_reaches_the_receiver_as_the_exact_envelope() {
    if let Some(service) = Service::start_on(Backend::Postgres).await {
        exact_envelope(service).await;
    }
}

#[tokio::test]
async fn on_mysql_a_published_event_reaches_the_receiver_as_the_exact_envelope() {
    if let Some(service) = Service::start_on(Backend::Mysql).await {
        exact_envelope(service).await;
    }
}

async fn exact_envelope(mut service: Service) {
    let receiver = Receiver::start(&[]).await;
    let secret = register(&service, &receiver.url()).await.secret;
    let event_id = publish(&service).await;

    let got = receiver.wait_for(1).await;
    let request = &got[0];
    let body = std::str::from_utf8(&request.body).unwrap();
    let envelope: serde_json::Value = serde_json::from_str(body).unwrap();
    let ts = envelope["ts"].as_str().unwrap();
    // RFC 3339, UTC, microseconds, Z.
    assert_eq!(ts.len(), "2023-07-06T12:01:19.769427Z".len(), "{ts}");
    assert!(ts.ends_with('Z') && ts.as_bytes()[19] == b'.', "{ts}");
    let expected = format!(
        r#"{{"id":"{event_id}","ts":"{ts}","type":"ConnectionUpdated","data":{},"walletId":"00000000-0000-0000-0000-000000000000"}}"#,
        serde_json::to_string(&connection_data()).unwrap()
    );
    assert_eq!(body, expected);

    let header = |name: &str| request.headers[name].to_str().unwrap().to_owned();
    assert_eq!(header("content-type"), "application/json");
    assert!(header("user-agent").starts_with("webhookd/"));
    assert_eq!(header("x-team"), "blue");
    assert_eq!(header("webhook-id"), event_id);
    assert_signed(request, &secret);
    service.stop().await;
}

#[tokio::test]
async fn two_failures_then_success_take_exactly_three_attempts() {
    three_attempts(Service::start().await).await;
}

#[tokio::test]
async fn on_postgres_two_failures_then_success_take_exactly_three_attempts() {
    if let Some(service) = Service::start_on(Backend::Postgres).await {
        three_attempts(service).await;
    }
}

#[tokio::test]
async fn on_mysql_two_failures_then_success_take_exactly_three_attempts() {
    if let Some(service) = Service::start_on(Backend::Mysql).await {
        three_attempts(service).await;
    }
}

async fn three_attempts(mut service: Service) {
    let receiver = Receiver::start(&[500, 500, 200]).await;
    register(&service, &receiver.url()).await;
    let event_id = publish(&service).await;

    let got = receiver.wait_for(3).await;
    // Give a wrongly scheduled fourth attempt time to show up (the interval is 100 ms).
    tokio::time::sleep(Duration::from_millis(600)).await;
    let got_after = receiver.received();
    assert_eq!(got_after.len(), 3, "exactly three attempts");
    for request in &got {
        assert_eq!(
            request.headers["webhook-id"],
            event_id.as_str(),
            "same id on every retry"
        );
        assert_eq!(request.body, got[0].body, "same body on every retry");
    }
    service.stop().await;

    // The attempts are on record, and the delivery is delivered after its third.
    let outbox = service.store().await.outbox();
    let deliveries = outbox
        .list_deliveries(
            WalletId::DEFAULT,
            DeliveryFilter::default(),
            Page::first(10),
        )
        .await
        .unwrap();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].state().kind(), DeliveryStateKind::Delivered);
    assert_eq!(deliveries[0].attempts(), 3);
    assert_eq!(deliveries[0].event_id().to_string(), event_id);
    let attempts = outbox
        .list_attempts(WalletId::DEFAULT, deliveries[0].id())
        .await
        .unwrap();
    let statuses: Vec<_> = attempts
        .iter()
        .map(|a| (a.number, a.detail.status()))
        .collect();
    assert_eq!(statuses, [(1, Some(500)), (2, Some(500)), (3, Some(200))]);
    assert!(matches!(
        attempts[2].detail,
        AttemptDetail::Response { status: 200, .. }
    ));
}

/// A target that holds every request it gets, beside a fast one in the same wallet: the fast
/// one receives every event while the slow one holds at most its per-target slots, and the
/// slow one's backlog is delivered once it answers again.
async fn slow_target_isolation(backend: Backend) {
    const EVENTS: usize = 30;
    let Some(mut service) = Service::start_with(backend, |s| {
        // Small batches: a dispatcher that waited for whole batches would starve the fast
        // target behind the slow one's five-second timeouts.
        s.dispatcher.batch_size = 8;
        s.dispatcher.max_in_flight_per_target = 3;
    })
    .await
    else {
        return;
    };
    let gate = Gate::default();
    let slow = Receiver::start_gated(&[], Some(gate.clone())).await;
    let fast = Receiver::start(&[]).await;
    register(&service, &slow.url()).await;
    register(&service, &fast.url()).await;
    let mut published = Vec::new();
    for _ in 0..EVENTS {
        let answer = post_json(
            &service.url("/events"),
            json!({ "type": "ConnectionUpdated", "data": connection_data() }),
        )
        .await;
        assert_eq!(answer.status, StatusCode::ACCEPTED);
        published.push(answer.json["id"].as_str().unwrap().to_owned());
    }

    let got = fast.wait_for(EVENTS).await;
    assert!(
        gate.most_held() <= 3,
        "the slow target held {}",
        gate.most_held()
    );
    let order: Vec<String> = got
        .iter()
        .map(|r| r.headers["webhook-id"].to_str().unwrap().to_owned())
        .collect();
    let mut distinct = order.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), EVENTS, "each event reached the fast target");

    gate.open();
    let slow_got = slow.wait_for(EVENTS).await;
    let mut slow_ids: Vec<String> = slow_got
        .iter()
        .map(|r| r.headers["webhook-id"].to_str().unwrap().to_owned())
        .collect();
    slow_ids.sort();
    slow_ids.dedup();
    assert_eq!(
        slow_ids.len(),
        EVENTS,
        "the slow target's backlog was delivered"
    );
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_target_does_not_delay_a_fast_one() {
    slow_target_isolation(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_slow_target_does_not_delay_a_fast_one() {
    slow_target_isolation(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_mysql_a_slow_target_does_not_delay_a_fast_one() {
    slow_target_isolation(Backend::Mysql).await;
}

fn event_ids(got: &[crate::utils::Received]) -> Vec<String> {
    got.iter()
        .map(|r| r.headers["webhook-id"].to_str().unwrap().to_owned())
        .collect()
}

async fn publish_many(service: &Service, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..count {
        ids.push(publish(service).await);
    }
    ids
}

/// With `ordered`, a target gets its events in publish order, one at a time, even when some
/// need retries: event 2 is not sent before event 1 succeeded.
async fn ordered_delivery(backend: Backend) {
    let Some(mut service) = Service::start_on(backend).await else {
        return;
    };
    let receiver = Receiver::start(&[500, 200, 503]).await;
    let created = post_json(
        &service.url("/events/webhooks"),
        json!({ "url": receiver.url(), "ordered": true }),
    )
    .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.json);
    assert_eq!(created.json["ordered"], true);
    let published = publish_many(&service, 8).await;

    let got = event_ids(&receiver.wait_for(10).await);
    let mut expected = vec![published[0].clone(), published[0].clone()];
    expected.extend([published[1].clone(), published[1].clone()]);
    expected.extend(published[2..].iter().cloned());
    assert_eq!(got, expected);
    service.stop().await;
}

#[tokio::test]
async fn ordered_targets_get_events_in_publish_order_across_retries() {
    ordered_delivery(Backend::Sqlite).await;
}

#[tokio::test]
async fn on_postgres_ordered_targets_get_events_in_publish_order_across_retries() {
    ordered_delivery(Backend::Postgres).await;
}

#[tokio::test]
async fn on_mysql_ordered_targets_get_events_in_publish_order_across_retries() {
    ordered_delivery(Backend::Mysql).await;
}

/// With `rateLimit: 20`, attempts to the target start at least 50 ms apart; an invalid rate
/// limit is refused with the field named.
async fn rate_limited_delivery(backend: Backend) {
    let Some(mut service) = Service::start_on(backend).await else {
        return;
    };
    let receiver = Receiver::start(&[]).await;
    let refused = post_json(
        &service.url("/events/webhooks"),
        json!({ "url": receiver.url(), "rateLimit": 0 }),
    )
    .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.json["detail"]
            .as_str()
            .unwrap()
            .contains("rateLimit"),
        "{}",
        refused.json
    );
    let created = post_json(
        &service.url("/events/webhooks"),
        json!({ "url": receiver.url(), "rateLimit": 20 }),
    )
    .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.json);
    assert_eq!(created.json["rateLimit"], 20);
    publish_many(&service, 10).await;
    let got = receiver.wait_for(10).await;
    let span = got[9].at - got[0].at;
    // Nine intervals of 50 ms, less a little for the first connection's set-up.
    assert!(span >= Duration::from_millis(430), "{span:?}");
    service.stop().await;
}

#[tokio::test]
async fn a_rate_limited_target_gets_attempts_spaced_out() {
    rate_limited_delivery(Backend::Sqlite).await;
}

#[tokio::test]
async fn on_postgres_a_rate_limited_target_gets_attempts_spaced_out() {
    rate_limited_delivery(Backend::Postgres).await;
}

#[tokio::test]
async fn on_mysql_a_rate_limited_target_gets_attempts_spaced_out() {
    rate_limited_delivery(Backend::Mysql).await;
}

#[tokio::test]
async fn a_loopback_target_is_refused_when_nothing_is_allowed() {
    refused_target(Service::start().await).await;
}

#[tokio::test]
async fn on_postgres_a_loopback_target_is_refused_when_nothing_is_allowed() {
    if let Some(service) = Service::start_on(Backend::Postgres).await {
        refused_target(service).await;
    }
}

#[tokio::test]
async fn on_mysql_a_loopback_target_is_refused_when_nothing_is_allowed() {
    if let Some(service) = Service::start_on(Backend::Mysql).await {
        refused_target(service).await;
    }
}

/// A webhook registered while loopback was allowed, whose address the operator then stops
/// allowing (registration itself refuses a refused IP address, so the webhook must predate
/// the change).
async fn refused_target(mut service: Service) {
    let receiver = Receiver::start(&[]).await;
    register(&service, &receiver.url()).await;
    service
        .restart(|settings| settings.transport.allowed_cidrs.clear())
        .await;
    let event_id = publish(&service).await;

    // The delivery gives up after its first attempt: a refused address is never retried.
    let outbox = service.store().await.outbox();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let delivery = loop {
        let deliveries = outbox
            .list_deliveries(
                WalletId::DEFAULT,
                DeliveryFilter::default(),
                Page::first(10),
            )
            .await
            .unwrap();
        assert_eq!(deliveries.len(), 1);
        if deliveries[0].state().is_final() {
            break deliveries[0].clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {:?}",
            deliveries[0].state()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Time for a wrongly scheduled retry (the interval is 100 ms) to show up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    service.stop().await;

    assert_eq!(delivery.event_id().to_string(), event_id);
    assert_eq!(delivery.state().kind(), DeliveryStateKind::Exhausted);
    assert_eq!(delivery.attempts(), 1);
    let attempts = outbox
        .list_attempts(WalletId::DEFAULT, delivery.id())
        .await
        .unwrap();
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(attempts[0].detail, AttemptDetail::AddressRefused);
    assert_eq!(
        attempts[0].error.as_deref(),
        Some("address refused: 127.0.0.1 is loopback")
    );
    assert!(
        receiver.received().is_empty(),
        "nothing may reach the receiver"
    );
}
