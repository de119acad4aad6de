//! A RabbitMQ broker killed (SIGKILL) and started again in the middle of 5,000 events, in
//! both directions: from a queue through the service to an HTTP receiver, and from the REST
//! API to an exchange. Nothing is lost; what arrives twice is counted and reported.
//!
//! Each test runs a broker node of its own (its own ports, data directory and node name), so
//! killing it disturbs neither the machine's broker nor the other tests.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use hyper::StatusCode;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use serde_json::json;
use tokio::time::Instant;
use webhook_domain::RetryPolicy;

use crate::amqp::s;
use crate::utils::{Backend, Receiver, Service, post_json, register};

const EVENTS: usize = 5_000;
/// The broker is killed once this many have gone through.
const KILL_AFTER: usize = 1_500;

/// A RabbitMQ node of one test's own.
struct OwnBroker {
    dir: PathBuf,
    port: u16,
    /// Its TLS listener's port, when it has one.
    tls_port: Option<u16>,
    dist_port: u16,
    node: String,
    child: Option<Child>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

impl OwnBroker {
    /// A new node, started; `None` to skip when RabbitMQ is not installed outside CI.
    async fn start() -> Option<Self> {
        Self::start_with(None).await
    }

    /// A new node with, when `tls` is given, a TLS listener presenting that certificate
    /// (`(certificate, key, authority)`, PEM) as well.
    async fn start_with(tls: Option<(&str, &str, &str)>) -> Option<Self> {
        if Command::new("rabbitmq-server")
            .arg("--help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "rabbitmq-server is not installed under CI=true"
            );
            eprintln!("skipped: rabbitmq-server is not installed");
            return None;
        }
        let tag = uuid::Uuid::new_v4().simple().to_string();
        // The node runs as the rabbitmq user: its directory must be that user's.
        let dir = std::env::temp_dir().join(format!("webhookd-rabbit-{tag}"));
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let mut conf = format!("listeners.tcp.default = 127.0.0.1:{port}\n");
        let tls_port = tls.map(|(certificate, key, authority)| {
            let tls_port = free_port();
            for (file, pem) in [
                ("cert.pem", certificate),
                ("key.pem", key),
                ("ca.pem", authority),
            ] {
                std::fs::write(dir.join(file), pem).unwrap();
            }
            conf.push_str(&format!(
                "listeners.ssl.default = 127.0.0.1:{tls_port}\n\
                 ssl_options.cacertfile = {ca}\n\
                 ssl_options.certfile = {cert}\n\
                 ssl_options.keyfile = {key}\n\
                 ssl_options.verify = verify_none\n\
                 ssl_options.fail_if_no_peer_cert = false\n",
                ca = dir.join("ca.pem").display(),
                cert = dir.join("cert.pem").display(),
                key = dir.join("key.pem").display(),
            ));
            tls_port
        });
        std::fs::write(dir.join("rabbitmq.conf"), conf).unwrap();
        let chown = Command::new("chown")
            .args(["-R", "rabbitmq:rabbitmq"])
            .arg(&dir)
            .status()
            .unwrap();
        assert!(chown.success(), "chown {dir:?} to the rabbitmq user");
        let mut broker = Self {
            dir,
            port,
            tls_port,
            dist_port: free_port(),
            node: format!("webhookd{}@localhost", &tag[..12]),
            child: None,
        };
        broker.run().await;
        Some(broker)
    }

    /// Starts the node on its directory and waits until it takes connections.
    async fn run(&mut self) {
        let dir = &self.dir;
        let child = Command::new("rabbitmq-server")
            .current_dir(dir)
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq.conf"))
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_FEATURE_FLAGS_FILE", dir.join("feature_flags"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
            .env("RABBITMQ_PID_FILE", dir.join("pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rabbitmq-server starts");
        self.child = Some(child);
        // Generous: on a loaded 2-core machine an Erlang node can take a minute to boot.
        let deadline = Instant::now() + Duration::from_secs(180);
        while !port_open(self.port) || self.tls_port.is_some_and(|port| !port_open(port)) {
            assert!(
                Instant::now() < deadline,
                "the test's RabbitMQ node did not listen on {} within 180 s; its log ends:\n{}",
                self.port,
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Kills the node's Erlang VM with SIGKILL, as a crash would, and waits until its port is
    /// closed.
    async fn kill(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("pid")) {
            let _ = Command::new("kill").args(["-9", pid.trim()]).status();
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(self.dir.join("pid"));
        while port_open(self.port) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The last lines of the node's logs, for a failure message (the directory goes with the
    /// node).
    fn log_tail(&self) -> String {
        let mut tail = String::new();
        for entry in std::fs::read_dir(self.dir.join("log"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            tail.push_str(&format!("== {}\n", entry.path().display()));
            for line in &lines[lines.len().saturating_sub(15)..] {
                tail.push_str(line);
                tail.push('\n');
            }
        }
        tail
    }

    fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}", self.port)
    }

    /// A confirm channel to the node, retried while it starts.
    async fn channel(&self) -> (Connection, Channel) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let connected = async {
                let connection = Connection::connect(
                    &format!("{}/%2f", self.url()),
                    ConnectionProperties::default(),
                )
                .await?;
                let channel = connection.create_channel().await?;
                channel
                    .confirm_select(ConfirmSelectOptions::default())
                    .await?;
                Ok::<_, lapin::Error>((connection, channel))
            };
            match connected.await {
                Ok(pair) => return pair,
                Err(e) => {
                    assert!(Instant::now() < deadline, "no channel to the node: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("pid")) {
            let _ = Command::new("kill").args(["-9", pid.trim()]).status();
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn durable_queue(channel: &Channel, name: &str) {
    channel
        .queue_declare(
            s(name),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
}

/// Retries for longer than a broker restart takes: 100 attempts (the most a policy allows)
/// 500 ms apart.
fn patient() -> RetryPolicy {
    RetryPolicy::new(
        webhook_domain::Backoff::Fixed {
            interval: Duration::from_millis(500),
        },
        100,
        None,
    )
    .unwrap()
}

#[tokio::test]
async fn a_broker_killed_mid_consumption_loses_no_event_and_stores_none_twice() {
    let Some(mut broker) = OwnBroker::start().await else {
        return;
    };
    let (connection, channel) = broker.channel().await;
    durable_queue(&channel, "events").await;
    for n in 0..EVENTS {
        let body = json!({"type": "Custom.Counted", "data": {"n": n}}).to_string();
        let confirmation = channel
            .basic_publish(
                s(""),
                s("events"),
                BasicPublishOptions::default(),
                body.as_bytes(),
                BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_message_id(s(&format!("message-{n}"))),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(confirmation.is_ack());
    }
    drop(channel);
    drop(connection);

    // The queue holds all 5,000 before the service consumes any; the receiver is the global
    // webhook, there from the start.
    let receiver = Receiver::start(&[]).await;
    let source = format!("{}/%2f?queue=events&prefetch=100", broker.url());
    let Some(mut service) = Service::start_with(Backend::Postgres, |s| {
        s.sources = vec![source];
        s.identus.global_webhook_url = Some(receiver.url());
        s.default_retry_policy = patient();
    })
    .await
    else {
        return;
    };

    // The deadlines are far beyond the 30 s the test takes alone: the whole suite runs beside it.
    let deadline = Instant::now() + Duration::from_secs(300);
    while receiver.count() < KILL_AFTER {
        assert!(
            Instant::now() < deadline,
            "{} of {EVENTS} events arrived before the kill",
            receiver.count()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    broker.kill().await;
    let at_kill = receiver.count();
    broker.run().await;

    // Every message becomes an event, and none becomes two: one event id per message.
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut ids_of: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    loop {
        ids_of.clear();
        for request in receiver.received() {
            let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
            ids_of
                .entry(body["data"]["n"].as_u64().unwrap())
                .or_default()
                .insert(body["id"].as_str().unwrap().to_owned());
        }
        if ids_of.len() == EVENTS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {EVENTS} events arrived within 300 s of the restart ({} deliveries received, \
             {at_kill} before the kill)",
            ids_of.len(),
            receiver.count()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stored_twice = ids_of.values().filter(|ids| ids.len() > 1).count();
    let received = receiver.count();
    eprintln!(
        "RabbitMQ source, broker killed after {at_kill} of {EVENTS} deliveries: 0 lost, \
         {stored_twice} messages stored as two events, {} deliveries received twice",
        received - EVENTS
    );
    assert_eq!(stored_twice, 0, "a redelivered message was stored twice");
    service.stop().await;
}

#[tokio::test]
async fn a_broker_killed_mid_delivery_loses_no_event_and_duplicates_are_counted() {
    let Some(mut broker) = OwnBroker::start().await else {
        return;
    };
    let (_connection, channel) = broker.channel().await;
    durable_queue(&channel, "delivered").await;
    let Some(mut service) = Service::start_with(Backend::Postgres, |s| {
        s.transport.brokers = vec![broker.url()];
        s.default_retry_policy = patient();
    })
    .await
    else {
        return;
    };
    let target = format!(
        "amqp://127.0.0.1:{}/%2f?exchange=&routing_key=delivered",
        broker.port
    );
    register(&service, &target).await;

    // Publish over the REST API from 8 clients while reading the queue; kill the broker once
    // KILL_AFTER messages were read, start it again, and read on until every event arrived.
    let url = Arc::new(service.url("/events"));
    let publishers = (0..8)
        .map(|client| {
            let url = Arc::clone(&url);
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for n in (client..EVENTS).step_by(8) {
                    let answer =
                        post_json(&url, json!({"type": "Custom.Counted", "data": {"n": n}})).await;
                    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.json);
                    ids.push(answer.json["id"].as_str().unwrap().to_owned());
                }
                ids
            })
        })
        .collect::<Vec<_>>();

    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut killed = false;
    let deadline = Instant::now() + Duration::from_secs(400);
    'reading: loop {
        let (_connection, channel) = broker.channel().await;
        let mut consumer = channel
            .basic_consume(
                s("delivered"),
                s("reader"),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        loop {
            if seen.len() == EVENTS {
                break 'reading;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {EVENTS} events read after the restart",
                seen.len()
            );
            if !killed && seen.len() >= KILL_AFTER {
                killed = true;
                broker.kill().await;
                broker.run().await;
                continue 'reading;
            }
            let next = tokio::time::timeout(Duration::from_secs(1), consumer.next()).await;
            let Ok(next) = next else { continue };
            let Some(Ok(delivery)) = next else {
                // The connection went with the broker; open a new one.
                continue 'reading;
            };
            let envelope: serde_json::Value = serde_json::from_slice(&delivery.data).unwrap();
            *seen
                .entry(envelope["id"].as_str().unwrap().to_owned())
                .or_default() += 1;
            let _ = delivery.ack(BasicAckOptions::default()).await;
        }
    }
    let mut published = BTreeSet::new();
    for publisher in publishers {
        published.extend(publisher.await.unwrap());
    }
    let read: BTreeSet<String> = seen.keys().cloned().collect();
    assert_eq!(read, published, "events lost or unknown");
    let twice = seen.values().filter(|n| **n > 1).count();
    let extra: usize = seen.values().map(|n| n - 1).sum();
    eprintln!(
        "RabbitMQ destination, broker killed after {KILL_AFTER} of {EVENTS} messages: 0 lost, \
         {twice} events arrived more than once ({extra} extra messages; a consumer \
         de-duplicates on message-id)"
    );
    service.stop().await;
}

/// A certificate authority made for the test, and a certificate it signed for `localhost`:
/// `(authority, certificate, key)`, PEM.
fn localhost_certificate() -> (String, String, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let mut authority = CertificateParams::new(Vec::<String>::new()).unwrap();
    authority.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    authority
        .distinguished_name
        .push(DnType::CommonName, "webhookd test authority");
    authority.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let authority = CertifiedIssuer::self_signed(authority, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let certificate = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &authority)
        .unwrap();
    (authority.pem(), certificate.pem(), key.serialize_pem())
}

/// `amqps://` end to end at the adapter: the destination reaches a TLS listener whose
/// certificate a private authority signed once that authority is among the extra roots (the
/// name checked is the broker's, `localhost`, while the address is the one the guard allowed),
/// and fails the handshake, retried, without it.
#[tokio::test]
async fn an_amqps_target_is_reached_over_tls_with_the_broker_name_checked() {
    use webhook_adapters::{DESTINATIONS, TransportConfig};
    use webhook_domain::{
        AddressPolicy, AttemptDetail, AttemptOutcome, IpRange, OutboundMessage, WebhookUrl,
    };

    let (authority, certificate, key) = localhost_certificate();
    let Some(broker) = OwnBroker::start_with(Some((&certificate, &key, &authority))).await else {
        return;
    };
    let (_connection, channel) = broker.channel().await;
    durable_queue(&channel, "secure").await;
    let tls_port = broker.tls_port.unwrap();
    let destination = |roots: Vec<Vec<u8>>| {
        let config = TransportConfig {
            brokers: vec![format!("amqps://guest:guest@localhost:{tls_port}")],
            address_policy: AddressPolicy::new(vec![IpRange::parse("127.0.0.0/8").unwrap()]),
            extra_root_certs: roots,
            ..TransportConfig::default()
        };
        let kind = DESTINATIONS
            .iter()
            .find(|kind| kind.schemes.contains(&"amqps"))
            .unwrap();
        (kind.open)(&config).unwrap()
    };
    let target = WebhookUrl::parse_with_schemes(
        &format!("amqps://localhost:{tls_port}/%2f?exchange=&routing_key=secure"),
        &["amqps"],
    )
    .unwrap();
    let message = OutboundMessage {
        body: br#"{"id":"e1"}"#.to_vec(),
        headers: vec![("webhook-id".to_owned(), "e1".to_owned())],
    };

    let untrusting = destination(Vec::new());
    let report = untrusting
        .send(&target, &message, Duration::from_secs(10))
        .await;
    assert!(
        matches!(report.outcome, AttemptOutcome::RetryLater { .. }),
        "{report:?}"
    );
    assert_eq!(report.detail, AttemptDetail::TlsFailed, "{report:?}");

    let trusting = destination(vec![authority.into_bytes()]);
    for _ in 0..3 {
        let report = trusting
            .send(&target, &message, Duration::from_secs(10))
            .await;
        assert_eq!(report.outcome, AttemptOutcome::Delivered, "{report:?}");
    }
    crate::amqp::wait_until_ready(&channel, "secure", 3).await;
}
