//! A running service with its own database, an HTTP client, and a scripted receiver.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use webhook_adapters::testing::PgTestSchema;
use webhook_app::config::Settings;
use webhook_app::store::Store;
use webhook_domain::RetryPolicy;

pub const API_KEY: &str = "test-wallet-key";

/// Which storage backend a service under test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The service under test. Dropping it removes its database (the directory, or the schema).
pub struct Service {
    pub running: Option<webhook_app::Running>,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
    pub settings: Settings,
    _schema: Option<PgTestSchema>,
}

impl Service {
    /// Starts the service on embedded SQLite, with a 100 ms fixed retry interval and 3
    /// attempts.
    pub async fn start() -> Service {
        Self::start_on(Backend::Sqlite).await.unwrap()
    }

    /// As [`Self::start`], on `backend`; `None` when PostgreSQL is absent outside CI (skip).
    pub async fn start_on(backend: Backend) -> Option<Service> {
        Self::start_with(backend, |_| {}).await
    }

    /// As [`Self::start_on`], with `adjust` applied to the test settings last.
    pub async fn start_with(
        backend: Backend,
        adjust: impl FnOnce(&mut Settings),
    ) -> Option<Service> {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = Settings::defaults().unwrap();
        let schema = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => {
                let schema = PgTestSchema::create().await?;
                settings.database_url = schema.url();
                Some(schema)
            }
        };
        settings.listen = "127.0.0.1:0".parse().unwrap();
        settings.data_dir = dir.path().to_owned();
        settings.identus.default_wallet_auth_api_key = Some(API_KEY.to_owned());
        settings.default_retry_policy = RetryPolicy::new(
            webhook_domain::Backoff::Fixed {
                interval: Duration::from_millis(100),
            },
            3,
            None,
        )
        .unwrap();
        settings.dispatcher.poll_interval_ms = 100;
        // Receivers listen on 127.0.0.1, which the SSRF guard refuses unless allowed.
        settings.transport.allowed_cidrs = vec!["127.0.0.0/8".to_owned()];
        adjust(&mut settings);
        let running = webhook_app::start(&settings).await.unwrap();
        Some(Service {
            addr: running.addr,
            running: Some(running),
            _dir: dir,
            settings,
            _schema: schema,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}/cloud-agent{path}", self.addr)
    }

    /// The service's database, opened anew (as another process would).
    pub async fn store(&self) -> Store {
        Store::open(&self.settings.database().unwrap(), 1)
            .await
            .unwrap()
    }

    pub async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await;
        }
    }
}

/// A status, headers and JSON body as received by a test client.
pub struct Answer {
    pub status: StatusCode,
    pub content_type: String,
    pub json: serde_json::Value,
}

/// Sends a request with the given headers and body and reads the whole answer.
pub async fn call(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut request = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = client
        .request(
            request
                .body(Full::new(Bytes::from(body.to_owned())))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let json = if bytes.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    Answer {
        status,
        content_type,
        json,
    }
}

/// POSTs JSON with the test wallet's key, spelt `apiKey` as in the Identus tutorial.
pub async fn post_json(url: &str, body: serde_json::Value) -> Answer {
    call(
        "POST",
        url,
        &[("content-type", "application/json"), ("apiKey", API_KEY)],
        &body.to_string(),
    )
    .await
}

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

/// A webhook receiver on 127.0.0.1 that answers with scripted statuses (200 once the script
/// is used up) and records every request.
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    pub async fn start(script: &[u16]) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(
            script.iter().copied().collect::<VecDeque<u16>>(),
        ));
        let log = Arc::clone(&received);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let log = Arc::clone(&log);
                let script = Arc::clone(&script);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let log = Arc::clone(&log);
                        let script = Arc::clone(&script);
                        async move {
                            let headers = req.headers().clone();
                            let body = req.into_body().collect().await?.to_bytes();
                            log.lock().unwrap().push(Received { headers, body });
                            let status = script.lock().unwrap().pop_front().unwrap_or(200);
                            let mut response = Response::new(Full::new(Bytes::from_static(b"ok")));
                            *response.status_mut() = StatusCode::from_u16(status).unwrap();
                            Ok::<_, hyper::Error>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Receiver { addr, received }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits (up to 10 s) until at least `count` requests have arrived.
    pub async fn wait_for(&self, count: usize) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.received();
            if got.len() >= count {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "expected {count} requests, got {}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
