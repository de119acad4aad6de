//! NATS JetStream brokers killed (SIGKILL) and restarted in the middle of 5,000 events, in both
//! directions (issue 17): from a stream through the service to an HTTP receiver, and from the
//! REST API to a JetStream subject. Nothing may be lost; duplicates are counted and printed
//! (run with `--nocapture` to see them).
//!
//! Each test runs a `nats-server` of its own, on a free port of 127.0.0.1 with its store in a
//! temporary directory, so that killing it disturbs no other test; the server is killed when the
//! test ends, however it ends. The kill is placed by progress (events received or stored so
//! far), never by a sleep; deadlines only turn a hang into a failure.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, stream};
use futures_util::StreamExt;
use hyper::StatusCode;
use serde_json::json;
use tokio::time::Instant;
use webhook_domain::{Backoff, DeliveryStateKind, RetryPolicy, WalletId};
use webhook_ports::{DeliveryFilter, Page};

use crate::utils::{Backend, Receiver, Service, connection_data, post_json, register};

const EVENTS: usize = 5_000;
/// The broker is killed once this many events went through it.
const KILL_AFTER: usize = 1_500;
/// How long the broker stays down: longer than the outbound test's attempt timeout, so that
/// attempts under way at the kill fail and are made again.
const OUTAGE: Duration = Duration::from_secs(2);
/// Longest wait for the whole run; only there to fail instead of hanging.
const DEADLINE: Duration = Duration::from_secs(180);

/// A `nats-server -js` of the test's own. Dropping it kills it.
struct OwnNats {
    binary: PathBuf,
    port: u16,
    store: tempfile::TempDir,
    child: Option<Child>,
}

impl OwnNats {
    /// Starts a server on a free port with JetStream and a fresh store, and waits until it
    /// answers. `None` (skip) when no `nats-server` is installed, outside CI.
    async fn start() -> Option<OwnNats> {
        let Some(binary) = [
            "/usr/sbin/nats-server",
            "/usr/bin/nats-server",
            "/usr/local/bin/nats-server",
        ]
        .into_iter()
        .map(PathBuf::from)
        .find(|path| path.is_file()) else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "no nats-server binary under CI=true"
            );
            eprintln!("skipped: no nats-server binary to run a broker of the test's own");
            return None;
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let store = tempfile::Builder::new().prefix("natsr-").tempdir().unwrap();
        let mut nats = OwnNats {
            binary,
            port,
            store,
            child: None,
        };
        nats.spawn().await;
        Some(nats)
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .unwrap();
        let child = Command::new(&self.binary)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.store.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        // Ready once JetStream answers (it recovers its streams before it does).
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(client) = async_nats::ConnectOptions::new()
                .connection_timeout(Duration::from_millis(500))
                .connect(self.address())
                .await
                && client.request("$JS.API.INFO", "".into()).await.is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nats-server on {} did not answer within 30 s; its log:\n{}",
                self.address(),
                std::fs::read_to_string(self.log()).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log(&self) -> PathBuf {
        self.store.path().join("nats-server.log")
    }

    /// SIGKILL, as a crash: no flush, no goodbye to the clients.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Starts it again on the same port and store.
    async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    /// A client that reconnects for as long as it lives, as the tests' producers and readers
    /// need across the restart.
    async fn client(&self) -> jetstream::Context {
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect(self.address())
            .await
            .unwrap();
        jetstream::new(client)
    }

    /// A stream on the file store capturing `<subjects>.>`.
    async fn create_stream(&self, js: &jetstream::Context, name: &str, subjects: &str) {
        js.create_stream(stream::Config {
            name: name.to_owned(),
            subjects: vec![format!("{subjects}.>")],
            storage: stream::StorageType::File,
            ..stream::Config::default()
        })
        .await
        .unwrap();
    }

    fn store_dir(&self) -> &Path {
        self.store.path()
    }
}

impl Drop for OwnNats {
    fn drop(&mut self) {
        self.kill();
        // A failed test keeps the store and the server's log, which its message points to.
        if std::thread::panicking() {
            self.store.disable_cleanup(true);
            eprintln!(
                "kept the nats-server store and log: {}",
                self.log().display()
            );
        }
    }
}

/// Waits until `done` holds, failing at `deadline` with `what` and the progress `now` gives.
async fn wait_until(deadline: Instant, what: &str, mut done: impl AsyncFnMut() -> (bool, String)) {
    loop {
        let (ok, progress) = done().await;
        if ok {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: still {progress}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_mid_stream_loses_no_event_on_the_way_in() {
    into_the_service(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_broker_killed_mid_stream_loses_no_event_on_the_way_in() {
    into_the_service(Backend::Postgres).await;
}

/// 5,000 messages with distinct `Nats-Msg-Id`s into a stream the service consumes; the broker
/// is killed once 1,500 reached the receiver, and started again on the same store. The
/// producer keeps at most 1,000 messages ahead of the receiver, so it publishes across the
/// outage, and publishes each message again (same id) until the broker acknowledges it.
async fn into_the_service(backend: Backend) {
    let Some(mut nats) = OwnNats::start().await else {
        return;
    };
    let js = nats.client().await;
    nats.create_stream(&js, "RESTART_IN", "restart-in").await;
    let source = format!(
        "nats://{}/RESTART_IN?consumer=webhookd&batch=50",
        nats.address()
    );
    let Some(mut service) = Service::start_with(backend, |s| s.sources = vec![source]).await else {
        return;
    };
    let receiver = Receiver::start(&[]).await;
    register(&service, &receiver.url()).await;

    let published = Arc::new(AtomicUsize::new(0));
    let producer_retries = Arc::new(AtomicUsize::new(0));
    let producer = tokio::spawn({
        let (js, receiver) = (js.clone(), receiver.clone());
        let (published, retries) = (Arc::clone(&published), Arc::clone(&producer_retries));
        async move {
            for n in 0..EVENTS {
                while n >= receiver.count() + 1_000 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("Nats-Msg-Id", format!("restart-in-{n}").as_str());
                let body = json!({"type": "Custom.Counted", "data": {"n": n}}).to_string();
                loop {
                    let sent = js
                        .publish_with_headers(
                            "restart-in.events",
                            headers.clone(),
                            body.clone().into(),
                        )
                        .await;
                    let acked = match sent {
                        Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    };
                    if acked.is_ok() {
                        break;
                    }
                    retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                published.store(n + 1, Ordering::Relaxed);
            }
        }
    });

    let deadline = Instant::now() + DEADLINE;
    wait_until(deadline, "the receiver before the kill", async || {
        let got = receiver.count();
        (got >= KILL_AFTER, format!("{got} received"))
    })
    .await;
    nats.kill();
    let at_kill = (receiver.count(), published.load(Ordering::Relaxed));
    tokio::time::sleep(OUTAGE).await;
    nats.restart().await;

    // Every message's event, by the number in its data.
    let numbers = |received: &[crate::utils::Received]| {
        let mut ids_of: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
        for request in received {
            let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
            let n = body["data"]["n"].as_u64().unwrap();
            ids_of
                .entry(n)
                .or_default()
                .insert(body["id"].as_str().unwrap().to_owned());
        }
        ids_of
    };
    wait_until(deadline, "every event at the receiver", async || {
        let ids_of = numbers(&receiver.received());
        (
            ids_of.len() == EVENTS,
            format!(
                "{} of {EVENTS} events received ({} published; {}/{EVENTS} had reached the \
                 receiver and the producer at the kill; nats-server log in {})",
                ids_of.len(),
                published.load(Ordering::Relaxed),
                at_kill.0,
                nats.store_dir().display()
            ),
        )
    })
    .await;
    producer.await.unwrap();

    let received = receiver.received();
    let ids_of = numbers(&received);
    assert_eq!(
        ids_of.keys().copied().collect::<Vec<_>>(),
        (0..EVENTS as u64).collect::<Vec<_>>()
    );
    // One event per message: a message read again is replayed under its derived id.
    let twice: Vec<_> = ids_of.iter().filter(|(_, ids)| ids.len() > 1).collect();
    assert!(twice.is_empty(), "messages stored as two events: {twice:?}");
    let stored = stored_events(&service).await;
    assert_eq!(stored.len(), EVENTS, "events stored");
    // Every message ends acknowledged: none is left pending at the broker.
    let pending_since = Instant::now();
    let mut consumer: jetstream::consumer::PullConsumer = js
        .get_stream("RESTART_IN")
        .await
        .unwrap()
        .get_consumer("webhookd")
        .await
        .unwrap();
    wait_until(deadline, "every message acknowledged", async || {
        let info = consumer.info().await.unwrap();
        (
            info.num_ack_pending == 0 && info.num_pending == 0,
            format!(
                "{} unacknowledged, {} not delivered",
                info.num_ack_pending, info.num_pending
            ),
        )
    })
    .await;
    let settled_after = pending_since.elapsed();
    // Each delivery by the broker takes a consumer sequence number, redeliveries included: the
    // messages the source read more than once, each replayed rather than stored again.
    let delivered = consumer.info().await.unwrap().delivered;
    let read_again = delivered
        .consumer_sequence
        .saturating_sub(delivered.stream_sequence);
    let duplicates = received.len() - EVENTS;
    println!(
        "nats restart, inbound, {backend:?}: {EVENTS} events, 0 lost; killed with {} received \
         and {} published; {} producer retries; {duplicates} duplicate deliveries at the \
         receiver; {} distinct events stored; {read_again} messages read again by the source \
         (replayed); nothing pending at the broker {:.1} s after the last receipt",
        at_kill.0,
        at_kill.1,
        producer_retries.load(Ordering::Relaxed),
        stored.len(),
        settled_after.as_secs_f64()
    );
    service.stop().await;
}

/// The default wallet's deliveries (one webhook: one per event) by event id, each with its
/// state and the attempts it took.
async fn stored_events(service: &Service) -> BTreeMap<String, (DeliveryStateKind, u32)> {
    let outbox = service.store().await.outbox();
    let mut events = BTreeMap::new();
    let mut page = Page::first(1_000);
    loop {
        let found = outbox
            .list_deliveries(WalletId::DEFAULT, DeliveryFilter::default(), page)
            .await
            .unwrap();
        for delivery in &found {
            let earlier = events.insert(
                delivery.event_id().to_string(),
                (delivery.state().kind(), delivery.attempts_made()),
            );
            assert!(
                earlier.is_none(),
                "two deliveries of one event to one webhook"
            );
        }
        if found.len() < page.limit as usize {
            return events;
        }
        page.offset += u64::from(page.limit);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_mid_stream_loses_no_event_on_the_way_out() {
    out_of_the_service(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_broker_killed_mid_stream_loses_no_event_on_the_way_out() {
    out_of_the_service(Backend::Postgres).await;
}

/// 5,000 events published over the REST API (16 at a time) to a webhook targeting a subject of
/// the test's broker; the broker is killed once the stream holds 1,500, and started again on
/// the same store. Read back at the end, the stream must hold every event.
async fn out_of_the_service(backend: Backend) {
    let Some(mut nats) = OwnNats::start().await else {
        return;
    };
    let js = nats.client().await;
    nats.create_stream(&js, "RESTART_OUT", "restart-out").await;
    let Some(mut service) = Service::start_with(backend, |s| {
        s.transport.brokers = vec![format!("nats://{}", nats.address())];
        // Attempts that end within the outage (the client would otherwise hold a publish
        // until it reconnects), enough of them to outlast it, and a breaker that rests only
        // briefly.
        s.dispatcher.attempt_timeout_ms = 1_000;
        s.default_retry_policy = RetryPolicy::new(
            Backoff::Fixed {
                interval: Duration::from_millis(250),
            },
            100,
            None,
        )
        .unwrap();
        s.dispatcher.breaker_open_ms = 250;
    })
    .await
    else {
        return;
    };
    register(
        &service,
        &format!("nats://{}/restart-out.events", nats.address()),
    )
    .await;

    let next = Arc::new(AtomicUsize::new(0));
    let publishers: Vec<_> = (0..16)
        .map(|_| {
            let (next, url) = (Arc::clone(&next), service.url("/events"));
            tokio::spawn(async move {
                let mut ids = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < EVENTS {
                    let answer = post_json(
                        &url,
                        json!({"type": "ConnectionUpdated", "data": connection_data()}),
                    )
                    .await;
                    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.json);
                    ids.push(answer.json["id"].as_str().unwrap().to_owned());
                }
                ids
            })
        })
        .collect();

    let deadline = Instant::now() + DEADLINE;
    let in_stream = async |js: &jetstream::Context| match js.get_stream("RESTART_OUT").await {
        Ok(mut stream) => stream.info().await.map_or(0, |i| i.state.messages),
        Err(_) => 0,
    };
    wait_until(deadline, "the stream before the kill", async || {
        let held = in_stream(&js).await;
        (held >= KILL_AFTER as u64, format!("{held} in the stream"))
    })
    .await;
    let at_kill = in_stream(&js).await;
    nats.kill();
    tokio::time::sleep(OUTAGE).await;
    nats.restart().await;

    let mut published = BTreeSet::new();
    for publisher in publishers {
        published.extend(publisher.await.unwrap());
    }
    assert_eq!(published.len(), EVENTS);

    // Read the whole stream back: every event id, and how many messages carried each.
    let reader: jetstream::consumer::PullConsumer = js
        .get_stream("RESTART_OUT")
        .await
        .unwrap()
        .create_consumer(pull::Config {
            durable_name: Some("reader".into()),
            ..pull::Config::default()
        })
        .await
        .unwrap();
    let mut messages = reader.messages().await.unwrap();
    let mut copies: BTreeMap<String, usize> = BTreeMap::new();
    while copies.len() < EVENTS {
        let message = tokio::time::timeout_at(deadline, messages.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{} of {EVENTS} events in the stream (killed at {at_kill}; nats-server log \
                     in {})",
                    copies.len(),
                    nats.store_dir().display()
                )
            })
            .unwrap()
            .unwrap();
        let envelope: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
        *copies
            .entry(envelope["id"].as_str().unwrap().to_owned())
            .or_default() += 1;
        message.ack().await.unwrap();
    }
    assert_eq!(copies.keys().cloned().collect::<BTreeSet<_>>(), published);
    // Once every delivery is delivered, the stream holds all it ever will.
    wait_until(deadline, "every delivery delivered", async || {
        let stored = stored_events(&service).await;
        let delivered = stored
            .values()
            .filter(|(state, _)| *state == DeliveryStateKind::Delivered)
            .count();
        (
            delivered == EVENTS,
            format!("{delivered} of {EVENTS} delivered"),
        )
    })
    .await;
    let attempts = stored_events(&service).await;
    let held = in_stream(&js).await;
    let duplicates = held - EVENTS as u64;
    let retried = attempts.values().filter(|(_, a)| *a > 1).count();
    let extra_attempts: u32 = attempts.values().map(|(_, a)| a - 1).sum();
    println!(
        "nats restart, outbound, {backend:?}: {EVENTS} events, 0 lost; killed with {at_kill} in \
         the stream; {duplicates} duplicate messages in the stream; {retried} deliveries took \
         more than one attempt ({extra_attempts} attempts beyond the first)"
    );
    service.stop().await;
}
