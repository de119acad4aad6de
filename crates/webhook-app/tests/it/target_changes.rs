//! A deleted or disabled target receives nothing once the DELETE or the disabling PATCH has
//! answered: no attempt to it starts afterwards from any instance. Attempts in flight when the
//! change comes end before the answer (the API waits for them); deliveries claimed and waiting
//! for a slot are dropped; claims never serve the target again.
//!
//! Each test publishes without pause into a webhook whose receiver takes 150 ms per request,
//! so that attempts are in flight and waiting when the change comes, and counts the requests
//! that reach the receiver after the answer was received: there must be none.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hyper::StatusCode;
use serde_json::json;
use webhook_app::config::Role;

use crate::utils::{Backend, Receiver, Service, call};

/// How the target is taken away.
#[derive(Debug, Clone, Copy)]
enum Change {
    Delete,
    Disable,
}

/// Publishes batches of 10 events into the default wallet, one after the other, until `stop`:
/// faster than the receiver takes them, so that the dispatcher holds deliveries waiting for
/// a slot as well as attempts in flight.
fn publish_until(base: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let mut published = 0;
        while !stop.load(Ordering::SeqCst) {
            let events: Vec<_> = (0..10)
                .map(|n| json!({ "type": "target.test", "data": { "n": published + n } }))
                .collect();
            let answer = call(
                "POST",
                &format!("{base}/events/batch"),
                &[
                    ("content-type", "application/json"),
                    ("apikey", crate::utils::API_KEY),
                ],
                &json!({ "events": events }).to_string(),
            )
            .await;
            assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.json);
            published += 10;
        }
        published
    })
}

/// Registers a webhook on `receiver` through the API at `base`, publishes without pause until
/// the receiver has had 40 requests, applies `change`, and returns how many requests reached
/// the receiver after the answer, with how many came before it.
async fn requests_after_the_answer(
    base: &str,
    receiver: &Receiver,
    change: Change,
) -> (usize, usize) {
    let created = call(
        "POST",
        &format!("{base}/events/webhooks"),
        &[
            ("content-type", "application/json"),
            ("apikey", crate::utils::API_KEY),
        ],
        &json!({ "url": receiver.url() }).to_string(),
    )
    .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.json);
    let id = created.json["id"].as_str().unwrap().to_owned();
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = publish_until(base.to_owned(), Arc::clone(&stop));
    let deadline = Instant::now() + Duration::from_secs(30);
    while receiver.count() < 40 {
        assert!(
            Instant::now() < deadline,
            "the receiver got {} requests",
            receiver.count()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let path = format!("{base}/events/webhooks/{id}");
    let headers = [
        ("content-type", "application/json"),
        ("apikey", crate::utils::API_KEY),
    ];
    let asked = Instant::now();
    let answer = match change {
        Change::Delete => call("DELETE", &path, &headers, "").await,
        Change::Disable => call("PATCH", &path, &headers, r#"{"enabled": false}"#).await,
    };
    let answered = Instant::now();
    eprintln!(
        "{change:?} answered in {} ms, {} requests received by then",
        (answered - asked).as_millis(),
        receiver.count()
    );
    assert_eq!(answer.status, StatusCode::OK, "{change:?}: {}", answer.json);
    // Keep publishing for a while, then give any straggler time to arrive.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    publisher.await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received = receiver.received();
    let late = received.iter().filter(|r| r.at > answered).count();
    (late, received.len() - late)
}

async fn check(backend: Backend, change: Change) {
    let Some(service) = Service::start_on(backend).await else {
        return;
    };
    let receiver = Receiver::start_slow(Duration::from_millis(150)).await;
    let base = service.url("");
    let (late, before) = requests_after_the_answer(&base, &receiver, change).await;
    assert_eq!(
        late, 0,
        "{backend:?}, {change:?}: {late} requests reached the target after the answer \
         ({before} before it)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_no_request_after_a_delete_answered() {
    check(Backend::Sqlite, Change::Delete).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_no_request_after_a_disable_answered() {
    check(Backend::Sqlite, Change::Disable).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_no_request_after_a_delete_answered() {
    check(Backend::Postgres, Change::Delete).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_no_request_after_a_delete_answered() {
    check(Backend::Mysql, Change::Delete).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_no_request_after_a_disable_answered() {
    check(Backend::Postgres, Change::Disable).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_no_request_after_a_disable_answered() {
    check(Backend::Mysql, Change::Disable).await;
}

/// Across instances: the API in one instance, the dispatcher in another, on a server both
/// share.
async fn across_instances(backend: Backend) {
    for change in [Change::Delete, Change::Disable] {
        let Some(api) = Service::start_with(backend, |s| s.role = Role::Api).await else {
            return;
        };
        let mut settings = api.settings.clone();
        settings.role = Role::Dispatcher;
        let dispatcher = webhook_app::start(&settings).await.unwrap();
        let receiver = Receiver::start_slow(Duration::from_millis(150)).await;
        let (late, before) = requests_after_the_answer(&api.url(""), &receiver, change).await;
        dispatcher.stop().await;
        assert_eq!(
            late, 0,
            "two instances, {change:?}: {late} requests reached the target after the answer \
             ({before} before it)"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_no_request_after_the_answer_of_another_instance() {
    across_instances(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_no_request_after_the_answer_of_another_instance() {
    across_instances(Backend::Mysql).await;
}
