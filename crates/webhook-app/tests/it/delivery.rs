//! The walking skeleton's promise: a published event reaches a registered receiver exactly as
//! Identus would send it, failures are retried as the policy says, and the SSRF guard keeps
//! deliveries away from addresses it refuses.

use std::time::Duration;

use hyper::StatusCode;
use serde_json::json;
use webhook_domain::{AttemptOutcome, DeliveryStateKind, SigningSecret, WalletId};
use webhook_ports::{DeliveryFilter, Page};

use crate::utils::{Backend, Receiver, Service, post_json};

fn connection_data() -> serde_json::Value {
    json!({
        "connectionId": "c10787cf-99bb-47f4-99bb-1fdcca32b673",
        "label": "Connect with Alice",
        "role": "Inviter",
        "state": "InvitationGenerated",
        "invitation": {
            "id": "c10787cf-99bb-47f4-99bb-1fdcca32b673",
            "type": "https://didcomm.org/out-of-band/2.0/invitation",
            "from": "did:peer:2.Ez6LS...jIiXX0",
            "invitationUrl": "https://my.domain.com/path?_oob=eyJpZCI6...bXX19"
        },
        "createdAt": "2023-07-06T12:01:19.760126Z",
        "self": "c10787cf-99bb-47f4-99bb-1fdcca32b673",
        "kind": "Connection"
    })
}

/// Registers `receiver` for the default wallet and returns the webhook's signing secret.
async fn register(service: &Service, receiver: &Receiver) -> String {
    let created = post_json(
        &service.url("/events/webhooks"),
        json!({ "url": receiver.url(), "customHeaders": { "X-Team": "blue" } }),
    )
    .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.json);
    assert_eq!(created.json["url"], receiver.url());
    assert_eq!(created.json["customHeaders"], json!({ "X-Team": "blue" }));
    created.json["secret"].as_str().unwrap().to_owned()
}

async fn publish(service: &Service) -> String {
    let published = post_json(
        &service.url("/events"),
        json!({ "type": "ConnectionUpdated", "data": connection_data() }),
    )
    .await;
    assert_eq!(published.status, StatusCode::ACCEPTED, "{}", published.json);
    assert_eq!(published.json["deliveries"], 1);
    published.json["id"].as_str().unwrap().to_owned()
}

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

async fn exact_envelope(mut service: Service) {
    let receiver = Receiver::start(&[]).await;
    let secret = register(&service, &receiver).await;
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
    let timestamp: i64 = header("webhook-timestamp").parse().unwrap();
    webhook_domain::verify(
        &[SigningSecret::parse(&secret).unwrap()],
        &event_id,
        timestamp,
        &request.body,
        &header("webhook-signature"),
        time::OffsetDateTime::from_unix_timestamp(timestamp).unwrap(),
        300,
    )
    .unwrap();
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

async fn three_attempts(mut service: Service) {
    let receiver = Receiver::start(&[500, 500, 200]).await;
    register(&service, &receiver).await;
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
        .map(|a| (a.number, a.outcome.status()))
        .collect();
    assert_eq!(statuses, [(1, Some(500)), (2, Some(500)), (3, Some(200))]);
    assert!(matches!(
        attempts[2].outcome,
        AttemptOutcome::Response { status: 200, .. }
    ));
}

#[tokio::test]
async fn a_loopback_target_is_refused_when_nothing_is_allowed() {
    let service = Service::start_with(Backend::Sqlite, |settings| {
        settings.transport.allowed_cidrs.clear();
    })
    .await
    .unwrap();
    refused_target(service).await;
}

#[tokio::test]
async fn on_postgres_a_loopback_target_is_refused_when_nothing_is_allowed() {
    let service = Service::start_with(Backend::Postgres, |settings| {
        settings.transport.allowed_cidrs.clear();
    })
    .await;
    if let Some(service) = service {
        refused_target(service).await;
    }
}

async fn refused_target(mut service: Service) {
    let receiver = Receiver::start(&[]).await;
    register(&service, &receiver).await;
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
    assert_eq!(attempts[0].outcome, AttemptOutcome::AddressRefused);
    assert_eq!(
        attempts[0].error.as_deref(),
        Some("address refused: 127.0.0.1 is loopback")
    );
    assert!(
        receiver.received().is_empty(),
        "nothing may reach the receiver"
    );
}
