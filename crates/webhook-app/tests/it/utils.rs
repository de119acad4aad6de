//! A running service with its own database, an HTTP client, scripted receivers, and the
//! requests the tests share: registering a webhook, publishing an event, checking a signature.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use webhook_app::config::Settings;
use webhook_app::store::Store;
use webhook_domain::{
    Delivery, DeliveryStateKind, RetryPolicy, SigningSecret, WalletId, Webhook, WebhookId,
};
use webhook_ports::{AttemptLog, DeliveryFilter, Page};

pub const API_KEY: &str = "test-wallet-key";
pub const ADMIN_KEY: &str = "test-admin-key";

/// Which storage backend a service under test runs on: the tests' names for entries of
/// `webhook_adapters::STORAGE_BACKENDS`, whose test support makes its fresh databases and reads
/// them back. A backend the tests should run on is one more name here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    Mysql,
}

impl Backend {
    /// Its entry in the registry.
    pub fn storage(self) -> &'static webhook_adapters::StorageBackend {
        let scheme = match self {
            Backend::Sqlite => "sqlite://",
            Backend::Postgres => "postgres://",
            Backend::Mysql => "mysql://",
        };
        webhook_adapters::storage_backend(scheme).expect("a registered backend")
    }
}

/// The service under test. Dropping it removes its database (the directory, or the schema).
pub struct Service {
    pub running: Option<webhook_app::Running>,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
    pub settings: Settings,
    _database: webhook_adapters::testing::FreshDatabase,
    /// What it starts with beside the built-ins (a test-only event source), at restarts too.
    extensions: webhook_app::Extensions,
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
        Self::start_extended(backend, webhook_app::Extensions::default(), adjust).await
    }

    /// As [`Self::start_with`], with `extensions` registered.
    pub async fn start_extended(
        backend: Backend,
        extensions: webhook_app::Extensions,
        adjust: impl FnOnce(&mut Settings),
    ) -> Option<Service> {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = Settings::defaults().unwrap();
        let database = (backend.storage().testing.fresh)(dir.path()).await?;
        settings.database_url = database.url.clone();
        settings.listen = "127.0.0.1:0".parse().unwrap();
        settings.data_dir = dir.path().to_owned();
        settings.identus.default_wallet_auth_api_key = Some(API_KEY.to_owned());
        settings.identus.admin_token = Some(ADMIN_KEY.to_owned());
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
        let running = webhook_app::start_with(&settings, extensions.clone())
            .await
            .unwrap();
        Some(Service {
            addr: running.addr.expect("a Service serves the API"),
            running: Some(running),
            _dir: dir,
            settings,
            _database: database,
            extensions,
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

    /// The whole database as text, table by table: equal snapshots mean nothing changed.
    pub async fn snapshot(&self) -> std::collections::BTreeMap<String, String> {
        webhook_adapters::testing::snapshot(self.settings.database().unwrap().url()).await
    }

    /// Stops the service and starts it again on the same database, with `adjust` applied to
    /// its settings first (as an operator changing the environment between runs).
    pub async fn restart(&mut self, adjust: impl FnOnce(&mut Settings)) {
        self.stop().await;
        adjust(&mut self.settings);
        let running = webhook_app::start_with(&self.settings, self.extensions.clone())
            .await
            .unwrap();
        self.addr = running.addr.expect("a Service serves the API");
        self.running = Some(running);
    }

    pub async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await;
        }
    }

    /// Waits (up to 10 s) until a delivery of the default wallet to `webhook` is in `state`,
    /// reading the database as another process would, and returns that delivery.
    pub async fn wait_for_delivery(
        &self,
        webhook: WebhookId,
        state: DeliveryStateKind,
    ) -> Delivery {
        let outbox = self.store().await.outbox();
        let filter = DeliveryFilter {
            webhook_id: Some(webhook),
            ..DeliveryFilter::default()
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let found = outbox
                .list_deliveries(WalletId::DEFAULT, filter.clone(), Page::first(100))
                .await
                .unwrap();
            if let Some(delivery) = found.iter().find(|d| d.state().kind() == state) {
                return delivery.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no delivery to {webhook} became {state:?} within 10 s; they are {:?}",
                found.iter().map(Delivery::state).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The recorded attempts of a delivery of the default wallet, in order.
    pub async fn attempts(&self, delivery: &Delivery) -> Vec<AttemptLog> {
        self.store()
            .await
            .outbox()
            .list_attempts(WalletId::DEFAULT, delivery.id())
            .await
            .unwrap()
    }

    /// The default wallet's webhook `id` as stored.
    pub async fn webhook(&self, id: WebhookId) -> Webhook {
        self.store()
            .await
            .webhooks()
            .get_webhook(WalletId::DEFAULT, id)
            .await
            .unwrap()
    }
}

/// Identus's example `ConnectionUpdated` data.
pub fn connection_data() -> serde_json::Value {
    serde_json::json!({
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

/// A webhook as its registration answered.
pub struct Registered {
    pub id: WebhookId,
    /// The signing secret, shown only in the answer to the registration.
    pub secret: String,
}

/// Registers `url` for the default wallet with the custom header `X-Team: blue`.
pub async fn register(service: &Service, url: &str) -> Registered {
    let created = post_json(
        &service.url("/events/webhooks"),
        serde_json::json!({ "url": url, "customHeaders": { "X-Team": "blue" } }),
    )
    .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.json);
    assert_eq!(created.json["url"], url);
    assert_eq!(
        created.json["customHeaders"],
        serde_json::json!({ "X-Team": "blue" })
    );
    Registered {
        id: created.json["id"].as_str().unwrap().parse().unwrap(),
        secret: created.json["secret"].as_str().unwrap().to_owned(),
    }
}

/// Publishes a `ConnectionUpdated` event for the default wallet and returns its id and the
/// number of deliveries the publish created.
pub async fn publish_counted(service: &Service) -> (String, u64) {
    let published = post_json(
        &service.url("/events"),
        serde_json::json!({ "type": "ConnectionUpdated", "data": connection_data() }),
    )
    .await;
    assert_eq!(published.status, StatusCode::ACCEPTED, "{}", published.json);
    (
        published.json["id"].as_str().unwrap().to_owned(),
        published.json["deliveries"].as_u64().unwrap(),
    )
}

/// As [`publish_counted`], for a wallet with exactly one interested webhook.
pub async fn publish(service: &Service) -> String {
    let (id, deliveries) = publish_counted(service).await;
    assert_eq!(deliveries, 1);
    id
}

/// Asserts that `request` carries a Standard Webhooks signature that verifies with `secret`.
pub fn assert_signed(request: &Received, secret: &str) {
    let header = |name: &str| request.headers[name].to_str().unwrap().to_owned();
    let timestamp: i64 = header("webhook-timestamp").parse().unwrap();
    webhook_domain::verify(
        &[SigningSecret::parse(secret).unwrap()],
        &header("webhook-id"),
        timestamp,
        &request.body,
        &header("webhook-signature"),
        time::OffsetDateTime::from_unix_timestamp(timestamp).unwrap(),
        300,
    )
    .unwrap();
}

/// A URL on 127.0.0.1 where nothing listens: its port was bound and let go at once.
pub fn refusing_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}/hook")
}

/// A status, headers and JSON body as received by a test client.
pub struct Answer {
    pub status: StatusCode,
    pub content_type: String,
    pub json: serde_json::Value,
}

/// Sends a request with the given headers and body and reads the whole answer.
pub async fn call(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    call_bytes(method, url, headers, body.as_bytes().to_vec()).await
}

/// As [`call`], with a body of any bytes.
pub async fn call_bytes(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Answer {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut request = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = client
        .request(request.body(Full::new(Bytes::from(body))).unwrap())
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

/// GETs `url` without credentials and reads an answer that need not be JSON: the status, the
/// content type and the body as text.
pub async fn get_text(url: &str) -> (StatusCode, String, String) {
    let (status, headers, body) = get_with_headers(url).await;
    let content_type = headers
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, content_type, body)
}

/// As [`get_text`], with all the answer's headers.
pub async fn get_with_headers(url: &str) -> (StatusCode, hyper::HeaderMap, String) {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let response = client
        .request(Request::get(url).body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8(bytes.to_vec()).unwrap())
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
    /// When the whole request had arrived.
    pub at: std::time::Instant,
}

/// A webhook receiver on 127.0.0.1 that answers with scripted statuses (200 once the script
/// is used up) and records every request.
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    /// Requests being answered now, and the most at once so far.
    in_flight: Arc<(
        std::sync::atomic::AtomicUsize,
        std::sync::atomic::AtomicUsize,
    )>,
}

/// Holds a gated receiver's requests until opened, and counts how many it holds at most.
#[derive(Clone, Default)]
pub struct Gate {
    open: Arc<tokio::sync::Notify>,
    is_open: Arc<std::sync::atomic::AtomicBool>,
    held: Arc<std::sync::atomic::AtomicUsize>,
    most_held: Arc<std::sync::atomic::AtomicUsize>,
}

impl Gate {
    pub fn open(&self) {
        self.is_open
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.open.notify_waiters();
    }

    /// The most requests that were held at the same time.
    pub fn most_held(&self) -> usize {
        self.most_held.load(std::sync::atomic::Ordering::SeqCst)
    }

    async fn pass(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.held.fetch_add(1, SeqCst) + 1;
        self.most_held.fetch_max(now, SeqCst);
        loop {
            let opened = self.open.notified();
            if self.is_open.load(SeqCst) {
                break;
            }
            opened.await;
        }
        self.held.fetch_sub(1, SeqCst);
    }
}

/// One scripted answer of a [`Receiver`]: a status, extra headers, and the body `ok` or, with
/// [`Reply::endless`], a body that never ends.
#[derive(Debug, Clone)]
pub struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    endless: bool,
    body: Option<String>,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            endless: false,
            body: None,
        }
    }

    /// This body instead of `ok`.
    pub fn body(mut self, text: impl Into<String>) -> Reply {
        self.body = Some(text.into());
        self
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    /// After the head, body bytes for as long as the client reads them.
    pub fn endless(mut self) -> Reply {
        self.endless = true;
        self
    }

    fn response(&self) -> Response<BoxBody<Bytes, Infallible>> {
        let body = if self.endless {
            EndlessBody.boxed()
        } else {
            let text = self.body.clone().unwrap_or_else(|| "ok".to_owned());
            Full::new(Bytes::from(text)).boxed()
        };
        let mut response = Response::new(body);
        *response.status_mut() = StatusCode::from_u16(self.status).unwrap();
        for (name, value) in &self.headers {
            response.headers_mut().append(*name, value.parse().unwrap());
        }
        response
    }
}

/// A response body that never ends: another KiB of `x` whenever it is polled. Chunked, since
/// its size is unknown.
struct EndlessBody;

impl hyper::body::Body for EndlessBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        const CHUNK: [u8; 1024] = [b'x'; 1024];
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&CHUNK)))))
    }
}

impl Receiver {
    /// A receiver that answers with these statuses in turn, then 200.
    pub async fn start(script: &[u16]) -> Receiver {
        Self::start_gated(script, None).await
    }

    /// A receiver that answers with these replies in turn, then 200.
    pub async fn start_replies(script: &[Reply]) -> Receiver {
        Self::serve(script.to_vec(), None).await
    }

    /// A receiver that accepts each connection and records each request, but never answers.
    pub async fn start_silent() -> Receiver {
        Self::start_gated(&[], Some(Gate::default())).await
    }

    /// A receiver that records each request at once but answers only when `gate` opens.
    pub async fn start_gated(script: &[u16], gate: Option<Gate>) -> Receiver {
        let replies = script.iter().map(|&status| Reply::status(status)).collect();
        Self::serve(replies, gate).await
    }

    /// A receiver that records each request at once and answers 200 after `delay`, so that
    /// attempts are in flight for that long.
    pub async fn start_slow(delay: Duration) -> Receiver {
        Self::serve_with(Vec::new(), None, delay).await
    }

    async fn serve(script: Vec<Reply>, gate: Option<Gate>) -> Receiver {
        Self::serve_with(script, gate, Duration::ZERO).await
    }

    async fn serve_with(script: Vec<Reply>, gate: Option<Gate>, delay: Duration) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let log = Arc::clone(&received);
        let in_flight = Arc::new((
            std::sync::atomic::AtomicUsize::new(0),
            std::sync::atomic::AtomicUsize::new(0),
        ));
        let counted = Arc::clone(&in_flight);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let log = Arc::clone(&log);
                let script = Arc::clone(&script);
                let gate = gate.clone();
                let counted = Arc::clone(&counted);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let log = Arc::clone(&log);
                        let script = Arc::clone(&script);
                        let gate = gate.clone();
                        let counted = Arc::clone(&counted);
                        async move {
                            use std::sync::atomic::Ordering::SeqCst;
                            let now = counted.0.fetch_add(1, SeqCst) + 1;
                            counted.1.fetch_max(now, SeqCst);
                            let headers = req.headers().clone();
                            let body = req.into_body().collect().await?.to_bytes();
                            log.lock().unwrap().push(Received {
                                headers,
                                body,
                                at: std::time::Instant::now(),
                            });
                            if let Some(gate) = gate {
                                gate.pass().await;
                            }
                            if !delay.is_zero() {
                                tokio::time::sleep(delay).await;
                            }
                            let reply = script
                                .lock()
                                .unwrap()
                                .pop_front()
                                .unwrap_or_else(|| Reply::status(200));
                            counted.0.fetch_sub(1, SeqCst);
                            Ok::<_, hyper::Error>(reply.response())
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Receiver {
            addr,
            received,
            in_flight,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// The most requests this receiver was answering at once.
    pub fn most_at_once(&self) -> usize {
        self.in_flight.1.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// How many requests have arrived, without copying them.
    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
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
