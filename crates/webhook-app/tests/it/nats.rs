//! NATS JetStream end to end, against the machine's real server on 127.0.0.1:4222 (each test
//! with a stream of its own): events from a stream through the service to an HTTP receiver, bad
//! messages terminated and listed; and events from the REST API to a JetStream subject, read
//! back by a real consumer with their envelope and signature.

use std::collections::BTreeSet;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, stream};
use futures_util::StreamExt;
use hyper::StatusCode;
use serde_json::json;
use webhook_domain::{SigningSecret, WalletId};

use crate::utils::{
    ADMIN_KEY, Backend, Receiver, Service, call, connection_data, get_text, post_json, register,
};

const SERVER: &str = "127.0.0.1:4222";

/// The machine's NATS server, or `None` to skip when it is down outside CI (under `CI=true` a
/// missing server fails the test).
pub async fn nats() -> Option<jetstream::Context> {
    match async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(3))
        .connect(SERVER)
        .await
    {
        Ok(client) => Some(jetstream::new(client)),
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("NATS is not reachable at {SERVER} under CI=true: {e}")
        }
        Err(e) => {
            eprintln!("skipped: NATS is not reachable at {SERVER}: {e}");
            None
        }
    }
}

/// A stream of its own for one test: its name and the subject prefix it captures.
async fn fresh_stream(js: &jetstream::Context) -> (String, String) {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let name = format!("T{tag}");
    let prefix = format!("t{tag}");
    js.create_stream(stream::Config {
        name: name.clone(),
        subjects: vec![format!("{prefix}.>")],
        max_age: Duration::from_secs(600),
        ..stream::Config::default()
    })
    .await
    .unwrap();
    (name, prefix)
}

async fn publish_raw(js: &jetstream::Context, subject: String, body: String) {
    js.publish(subject, body.into())
        .await
        .unwrap()
        .await
        .unwrap();
}

crate::on_every_backend!(
    events_from_a_stream_reach_the_receiver_and_bad_messages_are_terminated_and_listed,
    events_from_the_api_reach_a_jetstream_subject_signed_and_once_each,
);

async fn events_from_a_stream_reach_the_receiver_and_bad_messages_are_terminated_and_listed(
    backend: Backend,
) {
    let Some(js) = nats().await else { return };
    let (stream_name, prefix) = fresh_stream(&js).await;
    let source =
        format!("nats://{SERVER}/{stream_name}?consumer=webhookd&batch=50&wallet_from=subject:2");
    let Some(mut service) = Service::start_with(backend, |s| s.sources = vec![source]).await else {
        return;
    };
    let receiver = Receiver::start(&[]).await;
    register(&service, &receiver.url()).await;

    let wallet = WalletId::DEFAULT;
    let good = 300;
    for n in 0..good {
        let body = json!({"type": "Custom.Counted", "data": {"n": n}});
        publish_raw(&js, format!("{prefix}.{wallet}.x"), body.to_string()).await;
    }
    // Each of these can never be published.
    let unknown_wallet = "0e0e0e0e-0000-4000-8000-000000000001";
    let bad = [
        (format!("{prefix}.{wallet}.x"), "not json".to_owned()),
        (
            format!("{prefix}.{unknown_wallet}.x"),
            json!({"type": "Custom.Counted", "data": {"n": -1}}).to_string(),
        ),
        (
            format!("{prefix}.{wallet}.x"),
            json!({"type": "ConnectionUpdated", "data": {"state": "Nonsense"}}).to_string(),
        ),
        (
            format!("{prefix}.no-wallet-here"),
            json!({"type": "Custom.Counted", "data": {"n": -2}}).to_string(),
        ),
    ];
    for (subject, body) in &bad {
        publish_raw(&js, subject.clone(), body.clone()).await;
    }
    // A message sent again under the same id is one event.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", "repeated-1");
    for _ in 0..2 {
        js.publish_with_headers(
            format!("{prefix}.{wallet}.x"),
            headers.clone(),
            json!({"type": "Custom.Counted", "data": {"n": good}})
                .to_string()
                .into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }

    let got = receiver.wait_for(good + 1).await;
    let numbers: BTreeSet<i64> = got
        .iter()
        .map(|r| {
            let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(body["type"], "Custom.Counted");
            assert_eq!(body["walletId"], wallet.to_string());
            body["data"]["n"].as_i64().unwrap()
        })
        .collect();
    assert_eq!(numbers, (0..=i64::try_from(good).unwrap()).collect());
    // Every message is acknowledged or terminated: nothing pending, nothing redelivered.
    let mut consumer: jetstream::consumer::PullConsumer = js
        .get_stream(&stream_name)
        .await
        .unwrap()
        .get_consumer("webhookd")
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let info = consumer.info().await.unwrap();
        if info.num_ack_pending == 0 && info.num_pending == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still pending: {} unacknowledged, {} not delivered",
            info.num_ack_pending,
            info.num_pending
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.count(), good + 1, "an event arrived twice");

    assert_refusals(
        &service,
        bad.len(),
        &[
            "is not an event",
            "wallet that does not exist",
            "data.connectionId",
            "is not a wallet id",
        ],
        &format!("stream {stream_name} sequence "),
    )
    .await;
    service.stop().await;
    js.delete_stream(&stream_name).await.unwrap();
}

async fn events_from_the_api_reach_a_jetstream_subject_signed_and_once_each(backend: Backend) {
    let Some(js) = nats().await else { return };
    let (stream_name, prefix) = fresh_stream(&js).await;
    let Some(mut service) = Service::start_with(backend, |s| {
        s.transport.brokers = vec![format!("nats://{SERVER}")];
    })
    .await
    else {
        return;
    };
    // A broker the operator did not list, and a subject with a wildcard, are refused at once.
    for (url, expected) in [
        (
            "nats://127.0.0.1:4999/a.b",
            "is not one this instance may publish to",
        ),
        (&*format!("nats://{SERVER}/{prefix}.*"), "no wildcards"),
    ] {
        let refused = post_json(&service.url("/events/webhooks"), json!({ "url": url })).await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{url}");
        let detail = refused.json["detail"].as_str().unwrap();
        assert!(detail.contains(expected), "{url}: {detail}");
    }
    let target = format!("nats://{SERVER}/{prefix}.out");
    let registered = register(&service, &target).await;
    let count = 100;
    let mut published = BTreeSet::new();
    for _ in 0..count {
        let answer = post_json(
            &service.url("/events"),
            json!({"type": "ConnectionUpdated", "data": connection_data()}),
        )
        .await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.json);
        published.insert(answer.json["id"].as_str().unwrap().to_owned());
    }

    let consumer: jetstream::consumer::PullConsumer = js
        .get_stream(&stream_name)
        .await
        .unwrap()
        .create_consumer(pull::Config {
            durable_name: Some("reader".into()),
            ..pull::Config::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let secret = SigningSecret::parse(&registered.secret).unwrap();
    let mut seen = BTreeSet::new();
    while seen.len() < count {
        let message = tokio::time::timeout(Duration::from_secs(20), messages.next())
            .await
            .unwrap_or_else(|_| panic!("{} of {count} messages after 20 s", seen.len()))
            .unwrap()
            .unwrap();
        let headers = message.headers.clone().unwrap();
        let header = |name: &str| headers.get(name).unwrap().as_str().to_owned();
        let envelope: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
        let id = envelope["id"].as_str().unwrap().to_owned();
        assert_eq!(header("webhook-id"), id);
        assert_eq!(header("Nats-Msg-Id"), id);
        assert_eq!(header("X-Team"), "blue");
        assert_eq!(envelope["type"], "ConnectionUpdated");
        assert_eq!(envelope["data"], connection_data());
        assert_eq!(envelope["walletId"], WalletId::DEFAULT.to_string());
        let timestamp: i64 = header("webhook-timestamp").parse().unwrap();
        webhook_domain::verify(
            std::slice::from_ref(&secret),
            &id,
            timestamp,
            &message.payload,
            &header("webhook-signature"),
            time::OffsetDateTime::from_unix_timestamp(timestamp).unwrap(),
            300,
        )
        .unwrap();
        assert!(seen.insert(id), "a message arrived twice");
        message.ack().await.unwrap();
    }
    assert_eq!(seen, published);
    let info = js
        .get_stream(&stream_name)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .messages;
    assert_eq!(info, count as u64, "the stream holds a message twice");
    service.stop().await;
    js.delete_stream(&stream_name).await.unwrap();
}

#[tokio::test]
async fn a_subject_no_stream_captures_is_rejected_with_its_reason() {
    let Some(_js) = nats().await else { return };
    let mut service = Service::start_with(Backend::Sqlite, |s| {
        s.transport.brokers = vec![format!("nats://{SERVER}")];
    })
    .await
    .unwrap();
    let subject = format!("nowhere{}.out", uuid::Uuid::new_v4().simple());
    let registered = register(&service, &format!("nats://{SERVER}/{subject}")).await;
    crate::utils::publish(&service).await;
    let delivery = service
        .wait_for_delivery(registered.id, webhook_domain::DeliveryStateKind::Exhausted)
        .await;
    let attempts = service.attempts(&delivery).await;
    assert_eq!(attempts.len(), 3);
    for attempt in &attempts {
        assert_eq!(
            attempt.error.as_deref(),
            Some(&*format!(
                "no JetStream stream captures subject {subject:?}"
            ))
        );
    }
    service.stop().await;
}

/// The refusals a source reported, as `GET /sources/refusals` lists them and
/// `webhookd_source_refusals_total` counts them: exactly `count`, one reason containing each
/// of `reasons`, every input starting with `input_prefix`, no password in a source's name.
pub async fn assert_refusals(
    service: &Service,
    count: usize,
    reasons: &[&str],
    input_prefix: &str,
) {
    let listed = call(
        "GET",
        &service.url("/sources/refusals"),
        &[("x-admin-api-key", ADMIN_KEY)],
        "",
    )
    .await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.json);
    let refusals = listed.json["contents"].as_array().unwrap();
    assert_eq!(refusals.len(), count, "{refusals:#?}");
    let said: Vec<&str> = refusals
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    for expected in reasons {
        assert!(
            said.iter().any(|r| r.contains(expected)),
            "no refusal says {expected:?}: {said:#?}"
        );
    }
    for refusal in refusals {
        let input = refusal["input"].as_str().unwrap();
        assert!(input.starts_with(input_prefix), "{input}");
        let source = refusal["source"].as_str().unwrap();
        assert!(
            !source.contains(":guest@") && !source.contains("****"),
            "{source}"
        );
    }
    let (_, _, metrics) = get_text(&format!("http://{}/metrics", service.addr)).await;
    let counted = metrics
        .lines()
        .find(|line| line.starts_with("webhookd_source_refusals_total{"))
        .unwrap_or_else(|| panic!("no refusal counter in {metrics}"));
    assert!(counted.ends_with(&format!(" {count}")), "{counted}");
}
