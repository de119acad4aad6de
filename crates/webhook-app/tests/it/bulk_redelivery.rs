//! Bulk redelivery jobs whose webhook goes away: a job of a deleted or disabled webhook requeues
//! nothing more and ends `stopped`, saying why, and its receiver gets nothing.

use std::time::Duration;

use hyper::StatusCode;
use serde_json::{Value, json};
use webhook_domain::{DeliveryStateKind, RedeliveryJob, RedeliveryJobId, WalletId, WebhookId};
use webhook_ports::{DeliveryFilter, Page};

use crate::api::{Auth, id_of, poll, register_for, request};
use crate::utils::{API_KEY, Backend, Receiver, Service, connection_data, refusing_url};

crate::on_every_backend!(a_bulk_redelivery_stops_when_its_webhook_is_deleted_or_disabled);

/// Events published; more than one step of a job (500).
const EVENTS: usize = 600;

/// How many of `webhook`'s deliveries are in `state`.
async fn count_in(service: &Service, webhook: WebhookId, state: DeliveryStateKind) -> usize {
    let filter = DeliveryFilter {
        webhook_id: Some(webhook),
        state: Some(state),
        ..DeliveryFilter::default()
    };
    service
        .store()
        .await
        .outbox()
        .list_deliveries(WalletId::DEFAULT, filter, Page::first(10_000))
        .await
        .unwrap()
        .len()
}

async fn a_bulk_redelivery_stops_when_its_webhook_is_deleted_or_disabled(backend: Backend) {
    // Hundreds of failures in a row would rest the targets.
    let Some(mut service) = Service::start_with(backend, |s| {
        s.dispatcher.breaker_failure_threshold = 100_000
    })
    .await
    else {
        return;
    };
    let since = time::OffsetDateTime::now_utc() - time::Duration::minutes(1);
    // Two targets where nothing listens, one attempt each: every delivery ends exhausted.
    let once = json!({ "kind": "fixed", "intervalMs": 100, "maxAttempts": 1 });
    let mut hooks = Vec::new();
    for _ in 0..2 {
        let created = register_for(
            &service,
            API_KEY,
            json!({ "url": refusing_url(), "retryPolicy": once }),
        )
        .await;
        hooks.push(id_of(&created).parse::<WebhookId>().unwrap());
    }
    let (deleted, disabled) = (hooks[0], hooks[1]);
    // In batches small enough for the body limit.
    for _ in 0..EVENTS / 100 {
        let events: Vec<Value> = (0..100)
            .map(|_| json!({ "type": "ConnectionUpdated", "data": connection_data() }))
            .collect();
        let batch = request(
            &service,
            "POST",
            "/events/batch",
            Auth::Wallet(API_KEY),
            Some(json!({ "events": events })),
        )
        .await;
        assert_eq!(batch.status, StatusCode::ACCEPTED, "{}", batch.json);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    for hook in [deleted, disabled] {
        while count_in(&service, hook, DeliveryStateKind::Exhausted).await < EVENTS {
            assert!(tokio::time::Instant::now() < deadline, "not all exhausted");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // A receiver that would take them, were they sent.
    let receiver = Receiver::start(&[]).await;
    for hook in [deleted, disabled] {
        let moved = request(
            &service,
            "PATCH",
            &format!("/events/webhooks/{hook}"),
            Auth::Wallet(API_KEY),
            Some(json!({ "url": receiver.url() })),
        )
        .await;
        assert_eq!(moved.status, StatusCode::OK, "{}", moved.json);
    }

    // A job each, stored as the API stores it but not yet run: it runs when the service starts
    // again, after its webhook was deleted or disabled.
    let jobs = service.store().await.jobs();
    let now = time::OffsetDateTime::now_utc();
    let mut started = Vec::new();
    for hook in [deleted, disabled] {
        let job = RedeliveryJob::new(
            RedeliveryJobId::from_uuid(uuid::Uuid::new_v4()),
            WalletId::DEFAULT,
            hook,
            since,
            now,
            now,
        )
        .unwrap();
        let job = jobs.create_redelivery_job(&job).await.unwrap();
        assert_eq!(job.total, EVENTS as u64);
        started.push(job.id);
    }
    let gone = request(
        &service,
        "DELETE",
        &format!("/events/webhooks/{deleted}"),
        Auth::Wallet(API_KEY),
        None,
    )
    .await;
    assert_eq!(gone.status, StatusCode::OK, "{}", gone.json);
    let off = request(
        &service,
        "PATCH",
        &format!("/events/webhooks/{disabled}"),
        Auth::Wallet(API_KEY),
        Some(json!({ "enabled": false })),
    )
    .await;
    assert_eq!(off.status, StatusCode::OK, "{}", off.json);
    service.restart(|_| {}).await;

    for (hook, job, reason) in [
        (deleted, started[0], "webhook_deleted"),
        (disabled, started[1], "webhook_disabled"),
    ] {
        let path = format!("/events/webhooks/{hook}/redeliveries/{job}");
        let ended = poll(&service, &path, Auth::Wallet(API_KEY), |j| {
            j["state"] != "running"
        })
        .await;
        assert_eq!(ended["state"], "stopped", "{ended}");
        assert_eq!(ended["stopReason"], reason, "{ended}");
        assert_eq!(ended["requeued"], 0, "{ended}");
        assert_eq!(ended["total"], EVENTS, "{ended}");
    }
    // Time for the dispatcher to send anything that was made due.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.count(), 0);
    for hook in [deleted, disabled] {
        assert_eq!(
            count_in(&service, hook, DeliveryStateKind::Exhausted).await,
            EVENTS
        );
    }
    service.stop().await;
}
