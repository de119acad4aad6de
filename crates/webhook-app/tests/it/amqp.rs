//! RabbitMQ end to end, against the machine's real broker on 127.0.0.1:5672 (each test in a
//! virtual host of its own): events from a queue through the service to an HTTP receiver, bad
//! messages rejected to the queue's dead-letter exchange and listed; and events from the REST
//! API to an exchange, read back by a real consumer with their envelope and signature.

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::StreamExt;
use hyper::StatusCode;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use serde_json::json;
use webhook_domain::{SigningSecret, WalletId};

use crate::utils::{Backend, Receiver, Service, connection_data, post_json, register};

const SERVER: &str = "127.0.0.1:5672";

/// A virtual host of its own for one test, deleted when dropped.
struct Vhost {
    name: String,
}

impl Vhost {
    /// A new virtual host the `guest` user may use, or `None` to skip when the broker is down
    /// outside CI (under `CI=true` a missing broker fails the test).
    fn new() -> Option<Self> {
        let probe =
            std::net::TcpStream::connect_timeout(&SERVER.parse().unwrap(), Duration::from_secs(3));
        match probe {
            Ok(_) => {}
            Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
                panic!("RabbitMQ is not reachable at {SERVER} under CI=true: {e}")
            }
            Err(e) => {
                eprintln!("skipped: RabbitMQ is not reachable at {SERVER}: {e}");
                return None;
            }
        }
        let name = format!("webhookd-test-{}", uuid::Uuid::new_v4().simple());
        rabbitmqctl(&["add_vhost", &name]);
        rabbitmqctl(&["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"]);
        Some(Self { name })
    }

    /// A channel on this virtual host, as the test's own producer or consumer.
    async fn channel(&self) -> (Connection, Channel) {
        let connection = Connection::connect(
            &format!("amqp://guest:guest@{SERVER}/{}", self.name),
            ConnectionProperties::default(),
        )
        .await
        .unwrap();
        let channel = connection.create_channel().await.unwrap();
        (connection, channel)
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        rabbitmqctl(&["delete_vhost", &self.name]);
    }
}

fn rabbitmqctl(args: &[&str]) {
    let out = std::process::Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl runs (it comes with RabbitMQ)");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn s(text: &str) -> ShortString {
    ShortString::try_new(text).unwrap()
}

/// A durable queue bound to a topic exchange for every routing key; `dead_letters` names an
/// exchange for what the queue's consumer rejects.
async fn queue_on(channel: &Channel, exchange: &str, queue: &str, dead_letters: Option<&str>) {
    channel
        .exchange_declare(
            s(exchange),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut arguments = FieldTable::default();
    if let Some(dead) = dead_letters {
        arguments.insert(
            s("x-dead-letter-exchange"),
            AMQPValue::LongString(dead.into()),
        );
    }
    channel
        .queue_declare(
            s(queue),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            arguments,
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            s(queue),
            s(exchange),
            s("#"),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
}

/// The number of ready messages in `queue`.
async fn ready(channel: &Channel, queue: &str) -> u32 {
    channel
        .queue_declare(
            s(queue),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap()
        .message_count()
}

/// Waits until `queue` holds `count` ready messages.
pub async fn wait_until_ready(channel: &Channel, queue: &str, count: u32) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let now = ready(channel, queue).await;
        if now == count {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "queue {queue} holds {now} messages, not {count}, after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn publish_raw(channel: &Channel, routing_key: &str, body: &str, message_id: Option<&str>) {
    let mut properties = BasicProperties::default().with_delivery_mode(2);
    if let Some(id) = message_id {
        properties = properties.with_message_id(s(id));
    }
    let confirmation = channel
        .basic_publish(
            s("in"),
            s(routing_key),
            BasicPublishOptions::default(),
            body.as_bytes(),
            properties,
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(confirmation.is_ack());
}

crate::on_every_backend!(
    events_from_a_queue_reach_the_receiver_and_bad_messages_are_dead_lettered_and_listed,
    events_from_the_api_reach_an_exchange_signed_persistent_and_once_each,
);

async fn events_from_a_queue_reach_the_receiver_and_bad_messages_are_dead_lettered_and_listed(
    backend: Backend,
) {
    let Some(vhost) = Vhost::new() else { return };
    let (_connection, channel) = vhost.channel().await;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    queue_on(&channel, "dead", "dead", None).await;
    queue_on(&channel, "in", "events", Some("dead")).await;
    let source = format!(
        "amqp://guest:guest@{SERVER}/{}?queue=events&prefetch=50&wallet_from=subject:2",
        vhost.name
    );
    let Some(mut service) = Service::start_with(backend, |s| s.sources = vec![source]).await else {
        return;
    };
    let receiver = Receiver::start(&[]).await;
    register(&service, &receiver.url()).await;

    let wallet = WalletId::DEFAULT;
    let good = 300;
    for n in 0..good {
        let body = json!({"type": "Custom.Counted", "data": {"n": n}});
        let id = format!("good-{n}");
        publish_raw(
            &channel,
            &format!("t.{wallet}"),
            &body.to_string(),
            Some(&id),
        )
        .await;
    }
    // Each of these can never be published.
    let unknown_wallet = "0e0e0e0e-0000-4000-8000-000000000001";
    let bad = [
        (format!("t.{wallet}"), "not json".to_owned()),
        (
            format!("t.{unknown_wallet}"),
            json!({"type": "Custom.Counted", "data": {"n": -1}}).to_string(),
        ),
        (
            format!("t.{wallet}"),
            json!({"type": "ConnectionUpdated", "data": {"state": "Nonsense"}}).to_string(),
        ),
        (
            "no-wallet-here".to_owned(),
            json!({"type": "Custom.Counted", "data": {"n": -2}}).to_string(),
        ),
    ];
    for (key, body) in &bad {
        publish_raw(&channel, key, body, None).await;
    }
    // A message sent again with the same message-id is one event.
    for _ in 0..2 {
        let body = json!({"type": "Custom.Counted", "data": {"n": good}});
        publish_raw(
            &channel,
            &format!("t.{wallet}"),
            &body.to_string(),
            Some("repeated-1"),
        )
        .await;
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
    // Every bad message was rejected without requeue, into the dead-letter queue; the queue is
    // drained.
    wait_until_ready(&channel, "dead", u32::try_from(bad.len()).unwrap()).await;
    wait_until_ready(&channel, "events", 0).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.count(), good + 1, "an event arrived twice");

    crate::nats::assert_refusals(
        &service,
        bad.len(),
        &[
            "is not an event",
            "wallet that does not exist",
            "data.connectionId",
            "token 2",
        ],
        "exchange \"in\" routing key ",
    )
    .await;
    service.stop().await;
}

async fn events_from_the_api_reach_an_exchange_signed_persistent_and_once_each(backend: Backend) {
    let Some(vhost) = Vhost::new() else { return };
    let (_connection, channel) = vhost.channel().await;
    queue_on(&channel, "out", "delivered", None).await;
    let Some(mut service) = Service::start_with(backend, |s| {
        s.transport.brokers = vec![format!("amqp://guest:guest@{SERVER}")];
    })
    .await
    else {
        return;
    };
    // A broker the operator did not list, and a target without an exchange, are refused at once.
    for (url, expected) in [
        (
            &*format!("amqp://127.0.0.1:5999/{}?exchange=out", vhost.name),
            "is not one this instance may publish to",
        ),
        (
            &*format!("amqp://{SERVER}/{}?routing_key=a", vhost.name),
            "names its exchange",
        ),
    ] {
        let refused = post_json(&service.url("/events/webhooks"), json!({ "url": url })).await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{url}");
        let detail = refused.json["detail"].as_str().unwrap();
        assert!(detail.contains(expected), "{url}: {detail}");
    }
    let target = format!(
        "amqp://{SERVER}/{}?exchange=out&routing_key=tenant.blue",
        vhost.name
    );
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
    wait_until_ready(&channel, "delivered", u32::try_from(count).unwrap()).await;

    let mut consumer = channel
        .basic_consume(
            s("delivered"),
            s("reader"),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let secret = SigningSecret::parse(&registered.secret).unwrap();
    let mut seen = BTreeSet::new();
    while seen.len() < count {
        let delivery = tokio::time::timeout(Duration::from_secs(20), consumer.next())
            .await
            .unwrap_or_else(|_| panic!("{} of {count} messages after 20 s", seen.len()))
            .unwrap()
            .unwrap();
        let properties = &delivery.properties;
        let headers = properties.headers().clone().unwrap();
        let header = |name: &str| match headers.inner().get(name) {
            Some(AMQPValue::LongString(text)) => {
                String::from_utf8(text.as_bytes().to_vec()).unwrap()
            }
            other => panic!("header {name}: {other:?}"),
        };
        let envelope: serde_json::Value = serde_json::from_slice(&delivery.data).unwrap();
        let id = envelope["id"].as_str().unwrap().to_owned();
        assert_eq!(header("webhook-id"), id);
        assert_eq!(properties.message_id().as_ref().unwrap().as_str(), id);
        assert_eq!(*properties.delivery_mode(), Some(2), "not persistent");
        assert_eq!(
            properties.content_type().as_ref().unwrap().as_str(),
            "application/json"
        );
        assert_eq!(header("X-Team"), "blue");
        assert_eq!(delivery.routing_key.as_str(), "tenant.blue");
        assert_eq!(envelope["type"], "ConnectionUpdated");
        assert_eq!(envelope["data"], connection_data());
        assert_eq!(envelope["walletId"], WalletId::DEFAULT.to_string());
        let timestamp: i64 = header("webhook-timestamp").parse().unwrap();
        webhook_domain::verify(
            std::slice::from_ref(&secret),
            &id,
            timestamp,
            &delivery.data,
            &header("webhook-signature"),
            time::OffsetDateTime::from_unix_timestamp(timestamp).unwrap(),
            300,
        )
        .unwrap();
        assert!(seen.insert(id), "a message arrived twice");
        delivery.ack(BasicAckOptions::default()).await.unwrap();
    }
    assert_eq!(seen, published);
    assert_eq!(
        ready(&channel, "delivered").await,
        0,
        "a message came twice"
    );
    service.stop().await;
}

#[tokio::test]
async fn a_missing_exchange_and_an_unrouted_key_are_rejected_with_their_reasons() {
    let Some(vhost) = Vhost::new() else { return };
    let (_connection, channel) = vhost.channel().await;
    // An exchange with no queue bound: what is published to it goes nowhere.
    channel
        .exchange_declare(
            s("unbound"),
            ExchangeKind::Topic,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut service = Service::start_with(Backend::Sqlite, |s| {
        s.transport.brokers = vec![format!("amqp://guest:guest@{SERVER}")];
    })
    .await
    .unwrap();
    let cases = [
        (
            "nope",
            format!(
                "exchange \"nope\" does not exist in virtual host {:?}",
                vhost.name
            ),
        ),
        (
            "unbound",
            "no queue is bound to exchange \"unbound\" for routing key \"k\"".to_owned(),
        ),
    ];
    let mut registered = Vec::new();
    for (exchange, _) in &cases {
        let target = format!(
            "amqp://{SERVER}/{}?exchange={exchange}&routing_key=k",
            vhost.name
        );
        registered.push(register(&service, &target).await);
    }
    let (_, deliveries) = crate::utils::publish_counted(&service).await;
    assert_eq!(deliveries, 2);
    for (webhook, (_, reason)) in registered.iter().zip(&cases) {
        let delivery = service
            .wait_for_delivery(webhook.id, webhook_domain::DeliveryStateKind::Exhausted)
            .await;
        let attempts = service.attempts(&delivery).await;
        assert_eq!(attempts.len(), 3);
        for attempt in &attempts {
            let error = attempt.error.as_deref().unwrap_or_default();
            assert!(error.starts_with(reason), "{error}");
        }
    }
    service.stop().await;
}
