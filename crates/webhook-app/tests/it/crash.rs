//! Crash safety and graceful shutdown of the real binary: `webhookd serve` is killed with SIGKILL while deliveries are
//! in flight, then started again on the same database; every (event, target) pair is received
//! at least once, and every delivery ends delivered. Duplicates (an attempt cut off by the kill
//! and made again) are allowed and reported on stderr.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hyper::StatusCode;
use serde_json::json;
use webhook_adapters::MysqlTestDatabase;
use webhook_adapters::testing::PgTestSchema;

use webhook_app::store::{Database, Store};
use webhook_domain::{DeliveryStateKind, WalletId};
use webhook_ports::{DeliveryFilter, Page};

use crate::utils::{Gate, Receiver, call};

fn database(url: &str) -> Database {
    Database::parse(url).unwrap()
}

const KEY: &str = "crash-test-key";
const EVENTS: usize = 40;

/// A running `webhookd serve` and its API's base URL.
struct Instance {
    child: Child,
    base: String,
}

impl Instance {
    fn start(database_url: &str, config: &std::path::Path) -> Instance {
        let mut child = Command::new(env!("CARGO_BIN_EXE_webhookd"))
            .args(["--config", &config.to_string_lossy(), "serve"])
            .env("WEBHOOKD_DATABASE_URL", database_url)
            .env("WEBHOOKD_LISTEN", "127.0.0.1:0")
            .env("DEFAULT_WALLET_AUTH_API_KEY", KEY)
            // The receivers listen on 127.0.0.1, which the SSRF guard refuses unless allowed.
            .env("WEBHOOKD_TRANSPORT__ALLOWED_CIDRS", "127.0.0.0/8")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let base = loop {
            let line = lines
                .next()
                .expect("webhookd exited before it listened")
                .unwrap();
            if let Some(url) = line.strip_prefix("webhookd is listening on ") {
                break url.trim().to_owned();
            }
        };
        // Keep draining stdout so the process never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Instance { child, base }
    }

    /// SIGTERM, then waits for the process to exit on its own; returns whether it succeeded.
    fn terminate(mut self) -> bool {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        self.child.wait().unwrap().success()
    }

    fn kill(mut self) {
        // SIGKILL on Unix: no shutdown code runs.
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Instance {
    /// A test that fails half-way must not leave its instance running: it would keep the
    /// test's standard error open, and a port and a database busy.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn post(base: &str, path: &str, body: serde_json::Value) -> crate::utils::Answer {
    call(
        "POST",
        &format!("{base}{path}"),
        &[("content-type", "application/json"), ("apikey", KEY)],
        &body.to_string(),
    )
    .await
}

/// The (event id) set a receiver has seen, and how many requests it got in all.
fn seen(receiver: &Receiver) -> (HashSet<String>, usize) {
    let got = receiver.received();
    let ids = got
        .iter()
        .map(|r| r.headers["webhook-id"].to_str().unwrap().to_owned())
        .collect();
    (ids, got.len())
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn kill_while_in_flight(database_url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("webhookd.toml");
    // Short leases so that a restarted instance takes over the killed one's deliveries soon,
    // and fast retries so that the test does not wait on the Identus five seconds.
    std::fs::write(
        &config,
        r#"
default_retry_policy = { kind = "fixed", intervalMs = 100, maxAttempts = 20 }

[dispatcher]
lease_ms = 1500
attempt_timeout_ms = 1000
poll_interval_ms = 100
"#,
    )
    .unwrap();

    let gate = Gate::default();
    let held = Receiver::start_gated(&[], Some(gate.clone())).await;
    let fast = Receiver::start(&[]).await;

    let first = tokio::task::block_in_place(|| Instance::start(database_url, &config));
    for receiver in [&held, &fast] {
        let created = post(
            &first.base,
            "/events/webhooks",
            json!({ "url": receiver.url() }),
        )
        .await;
        assert_eq!(created.status, StatusCode::OK, "{}", created.json);
    }
    let mut published = HashSet::new();
    for _ in 0..EVENTS {
        let answer = post(
            &first.base,
            "/events",
            json!({ "type": "crash.test", "data": { "n": 1 } }),
        )
        .await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.json);
        published.insert(answer.json["id"].as_str().unwrap().to_owned());
    }

    // Kill it while the held receiver has requests in flight, and the fast one some done.
    wait_until("requests in flight to the held receiver", || {
        !held.received().is_empty() && !fast.received().is_empty()
    })
    .await;
    first.kill();
    let (held_before, _) = seen(&held);
    let (fast_before, _) = seen(&fast);

    // A second instance on the same database finishes the work; the gate stays closed for a
    // moment so that some of its own attempts are in flight when it is killed in turn.
    let second = tokio::task::block_in_place(|| Instance::start(database_url, &config));
    wait_until("the second instance reached the held receiver", || {
        seen(&held).1 > held_before.len()
    })
    .await;
    second.kill();

    gate.open();
    let third = tokio::task::block_in_place(|| Instance::start(database_url, &config));
    wait_until("every event at both receivers", || {
        seen(&held).0 == published && seen(&fast).0 == published
    })
    .await;
    // The receivers have everything; the service must also know it: the deliveries whose
    // leases died with the killed instances are taken over and completed.
    let outbox = Store::open(&database(database_url), 1)
        .await
        .unwrap()
        .outbox();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let delivered = outbox
            .list_deliveries(
                WalletId::DEFAULT,
                DeliveryFilter {
                    state: Some(DeliveryStateKind::Delivered),
                    ..DeliveryFilter::default()
                },
                Page::first(1000),
            )
            .await
            .unwrap();
        if delivered.len() == 2 * EVENTS {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {} deliveries completed",
            delivered.len(),
            2 * EVENTS
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    third.kill();

    let (held_ids, held_total) = seen(&held);
    let (fast_ids, fast_total) = seen(&fast);
    assert_eq!(held_ids, published);
    assert_eq!(fast_ids, published);
    eprintln!(
        "crash test: {EVENTS} events x 2 targets, killed twice; duplicates: held receiver {}, fast \
         receiver {} (before the first kill: {} and {} distinct received)",
        held_total - held_ids.len(),
        fast_total - fast_ids.len(),
        held_before.len(),
        fast_before.len(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_in_flight_then_restarted_every_event_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("crash.db").display());
    kill_while_in_flight(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_killed_while_in_flight_then_restarted_every_event_arrives() {
    let Some(schema) = PgTestSchema::create().await else {
        return;
    };
    kill_while_in_flight(&schema.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_mysql_killed_while_in_flight_then_restarted_every_event_arrives() {
    let Some(database) = MysqlTestDatabase::create().await else {
        return;
    };
    kill_while_in_flight(&database.url()).await;
}

/// SIGTERM stops the service gracefully: attempts still held by the receiver after the grace
/// period are cut off and their leases given back, so the next start delivers them at once
/// instead of after the one-minute lease.
async fn terminate_gives_leases_back(database_url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("webhookd.toml");
    std::fs::write(
        &config,
        r#"
default_retry_policy = { kind = "fixed", intervalMs = 100, maxAttempts = 20 }

[dispatcher]
lease_ms = 60000
attempt_timeout_ms = 5000
poll_interval_ms = 100
shutdown_grace_ms = 300
"#,
    )
    .unwrap();
    let gate = Gate::default();
    let held = Receiver::start_gated(&[], Some(gate.clone())).await;
    let first = tokio::task::block_in_place(|| Instance::start(database_url, &config));
    let created = post(
        &first.base,
        "/events/webhooks",
        json!({ "url": held.url() }),
    )
    .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.json);
    let mut published = HashSet::new();
    for _ in 0..5 {
        let answer = post(
            &first.base,
            "/events",
            json!({ "type": "term.test", "data": {} }),
        )
        .await;
        published.insert(answer.json["id"].as_str().unwrap().to_owned());
    }
    wait_until("all five held", || seen(&held).0 == published).await;
    assert!(
        tokio::task::block_in_place(|| first.terminate()),
        "webhookd did not exit cleanly on SIGTERM"
    );

    gate.open();
    let second = tokio::task::block_in_place(|| Instance::start(database_url, &config));
    // Without the leases given back this would take the whole minute of the lease.
    wait_until("the held deliveries redelivered", || seen(&held).1 >= 10).await;
    second.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_gives_leases_back_for_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("term.db").display());
    terminate_gives_leases_back(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_sigterm_gives_leases_back_for_the_next_start() {
    let Some(schema) = PgTestSchema::create().await else {
        return;
    };
    terminate_gives_leases_back(&schema.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_mysql_sigterm_gives_leases_back_for_the_next_start() {
    let Some(database) = MysqlTestDatabase::create().await else {
        return;
    };
    terminate_gives_leases_back(&database.url()).await;
}
