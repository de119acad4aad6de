//! A PostgreSQL outage, as the service sees it: the test reaches the database through a TCP
//! proxy of its own (the shared server is never stopped), which cuts every connection and
//! refuses new ones while "down". Publishing must then answer 503 with a problem body within
//! a second or so (not after the pool's ten-second wait, and never 500), and once the proxy is
//! up again the service must reconnect by itself: publishes are accepted and delivered.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::StatusCode;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;
use webhook_adapters::testing::pg_server_url;

use crate::utils::{API_KEY, Backend, Receiver, Service, call, connection_data, register};

/// A TCP proxy to the PostgreSQL server that can play dead.
struct DbProxy {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
    accepting: AbortHandle,
}

impl DbProxy {
    async fn start(server: String) -> DbProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let connections: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let accepting = tokio::spawn({
            let (up, connections) = (Arc::clone(&up), Arc::clone(&connections));
            async move {
                loop {
                    let Ok((mut client, _)) = listener.accept().await else {
                        continue;
                    };
                    if !up.load(Ordering::SeqCst) {
                        // Closed at once: the client's connection attempt fails.
                        continue;
                    }
                    let server = server.clone();
                    let relay = tokio::spawn(async move {
                        if let Ok(mut upstream) = TcpStream::connect(&server).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                        }
                    });
                    connections.lock().unwrap().push(relay.abort_handle());
                }
            }
        })
        .abort_handle();
        DbProxy {
            addr,
            up,
            connections,
            accepting,
        }
    }

    /// Cuts every connection and refuses new ones, as a stopped server does.
    fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        for relay in self.connections.lock().unwrap().drain(..) {
            relay.abort();
        }
    }

    fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for DbProxy {
    fn drop(&mut self) {
        self.down();
        self.accepting.abort();
    }
}

/// `host:port` of a `postgres://user@host:port[/db]` URL.
fn authority(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest)
}

/// Publishes one event, asking for errors as `application/problem+json`.
async fn publish_once(service: &Service) -> (crate::utils::Answer, Duration) {
    let started = Instant::now();
    let answer = call(
        "POST",
        &service.url("/events"),
        &[
            ("content-type", "application/json"),
            ("apikey", API_KEY),
            ("accept", "application/problem+json"),
        ],
        &json!({ "type": "ConnectionUpdated", "data": connection_data() }).to_string(),
    )
    .await;
    (answer, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_answers_503_at_once_while_postgres_is_down_and_recovers_after() {
    let server = pg_server_url();
    let server_authority = authority(&server).to_owned();
    let proxy = DbProxy::start(server_authority.clone()).await;
    let proxied = proxy.addr.to_string();
    let Some(service) = Service::start_with(Backend::Postgres, |settings| {
        settings.database_url = settings
            .database_url
            .replacen(&server_authority, &proxied, 1);
    })
    .await
    else {
        return;
    };
    assert!(service.settings.database_url.contains(&proxied));
    let receiver = Receiver::start(&[]).await;
    register(&service, &receiver.url()).await;
    let (before, _) = publish_once(&service).await;
    assert_eq!(before.status, StatusCode::ACCEPTED, "{}", before.json);
    receiver.wait_for(1).await;

    proxy.down();
    for attempt in 0..3 {
        let (answer, took) = publish_once(&service).await;
        assert_eq!(
            answer.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "attempt {attempt}: {}",
            answer.json
        );
        assert_eq!(answer.content_type, "application/problem+json");
        assert_eq!(answer.json["status"], 503);
        assert_eq!(
            answer.json["type"],
            "https://webhookd.dev/problems/unavailable"
        );
        // The pool waits ten seconds for a connection; a refused server must end that wait.
        assert!(
            took < Duration::from_secs(3),
            "attempt {attempt}: the 503 took {took:?}"
        );
    }

    proxy.up();
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let (answer, _) = publish_once(&service).await;
        if answer.status == StatusCode::ACCEPTED {
            break answer;
        }
        assert_eq!(
            answer.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            answer.json
        );
        assert!(
            Instant::now() < deadline,
            "still 503 ten seconds after the database came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The dispatcher found the database again by itself and delivered the new event.
    let received = receiver.wait_for(2).await;
    let id = after.json["id"].as_str().unwrap();
    assert!(
        received
            .iter()
            .any(|r| r.headers.get("webhook-id").and_then(|v| v.to_str().ok()) == Some(id)),
        "the event published after the outage was not delivered"
    );
}

#[test]
fn the_authority_of_a_server_url() {
    assert_eq!(
        authority("postgres://postgres@127.0.0.1:5432"),
        "127.0.0.1:5432"
    );
    assert_eq!(authority("postgresql://u:p@db:6432/x?y=z"), "db:6432");
    assert_eq!(authority("postgres://[::1]:5432/db"), "[::1]:5432");
}
