//! `HyperTransport` against real HTTP servers on 127.0.0.1: a hyper receiver (plain, or TLS with
//! a certificate authority made in the test) that records what it gets and answers as scripted,
//! and raw TCP listeners for targets that misbehave. The SSRF guard refuses loopback by default,
//! so every test that means to connect allows 127.0.0.0/8 and ::1.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{HeaderMap, Method, Request, Response, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;
use time::macros::format_description;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use webhook_adapters::{HyperTransport, TransportConfig};
use webhook_domain::{AddressPolicy, AttemptDetail, IpRange, OutboundMessage, WebhookUrl};
use webhook_ports::{AttemptReport, Destination};

const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
struct Recorded {
    version: Version,
    method: Method,
    path_and_query: String,
    headers: HeaderMap,
    body: Bytes,
    /// Which accepted TCP connection (from 1) carried it.
    connection: usize,
}

/// What the receiver answers to every request.
#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: &'static str,
}

impl Reply {
    fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: "",
        }
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn body(mut self, body: &'static str) -> Self {
        self.body = body;
        self
    }
}

/// A hyper server on 127.0.0.1 (HTTP/1.1, or HTTP/2 when TLS negotiates it) that records every
/// request and answers `reply`. Its tasks end with the test's runtime.
#[derive(Debug)]
struct Receiver {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    /// TCP connections accepted, whether or not a request followed.
    connections: Arc<AtomicUsize>,
    tls: bool,
}

impl Receiver {
    async fn start(reply: Reply) -> Self {
        Self::serve(reply, None).await
    }

    /// An https receiver whose certificate `authority` signed.
    async fn start_tls(reply: Reply, authority: &Authority) -> Self {
        Self::serve(reply, Some(authority.acceptor())).await
    }

    async fn serve(reply: Reply, tls: Option<TlsAcceptor>) -> Self {
        let is_tls = tls.is_some();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (log, count) = (requests.clone(), connections.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let connection = count.fetch_add(1, Ordering::SeqCst) + 1;
                let (log, reply, tls) = (log.clone(), reply.clone(), tls.clone());
                let service = service_fn(move |request: Request<Incoming>| {
                    let (log, reply) = (log.clone(), reply.clone());
                    async move {
                        let (parts, body) = request.into_parts();
                        let body = body.collect().await?.to_bytes();
                        log.lock().unwrap().push(Recorded {
                            version: parts.version,
                            method: parts.method,
                            path_and_query: parts
                                .uri
                                .path_and_query()
                                .map(ToString::to_string)
                                .unwrap_or_default(),
                            headers: parts.headers,
                            body,
                            connection,
                        });
                        let mut response = Response::builder().status(reply.status);
                        for (name, value) in &reply.headers {
                            response = response.header(*name, value);
                        }
                        Ok::<_, hyper::Error>(
                            response
                                .body(Full::new(Bytes::from_static(reply.body.as_bytes())))
                                .unwrap(),
                        )
                    }
                });
                tokio::spawn(async move {
                    let server = auto::Builder::new(TokioExecutor::new());
                    let _ = match tls {
                        None => server.serve_connection(TokioIo::new(stream), service).await,
                        Some(acceptor) => match acceptor.accept(stream).await {
                            Ok(stream) => {
                                server.serve_connection(TokioIo::new(stream), service).await
                            }
                            Err(_) => return,
                        },
                    };
                });
            }
        });
        Self {
            addr,
            requests,
            connections,
            tls: is_tls,
        }
    }

    fn url(&self, path: &str) -> WebhookUrl {
        let scheme = if self.tls { "https" } else { "http" };
        WebhookUrl::parse(&format!("{scheme}://{}{path}", self.addr)).unwrap()
    }

    /// The receiver's port under another host name or address form.
    fn url_via(&self, host: &str) -> WebhookUrl {
        WebhookUrl::parse(&format!("http://{host}:{}/hook", self.addr.port())).unwrap()
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

/// A raw TCP target on 127.0.0.1: `behave` gets each accepted connection after the request
/// head has been read from it.
async fn misbehaving_target<F, Fut>(behave: F) -> WebhookUrl
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            read_request_head(&mut stream).await;
            tokio::spawn(behave(stream));
        }
    });
    WebhookUrl::parse(&format!("http://{addr}/hook")).unwrap()
}

async fn read_request_head(stream: &mut TcpStream) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

fn message() -> OutboundMessage {
    OutboundMessage {
        body: br#"{"type":"DIDStatusUpdated","data":{"n":1}}"#.to_vec(),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            (
                "webhook-id".into(),
                "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W".into(),
            ),
            ("webhook-timestamp".into(), "1700000000".into()),
            ("webhook-signature".into(), "v1,c2lnbmF0dXJl".into()),
            ("Authorization".into(), "Bearer s3cret-token".into()),
            ("X-Tenant".into(), "acme".into()),
        ],
    }
}

/// The default settings, with loopback allowed: every receiver here is on 127.0.0.1.
fn local_config() -> TransportConfig {
    TransportConfig {
        address_policy: AddressPolicy::new(vec![
            IpRange::parse("127.0.0.0/8").unwrap(),
            IpRange::parse("::1/128").unwrap(),
        ]),
        ..TransportConfig::default()
    }
}

fn transport() -> HyperTransport {
    HyperTransport::new(local_config()).unwrap()
}

async fn send(url: &WebhookUrl) -> AttemptReport {
    let report = transport().send(url, &message(), ATTEMPT_TIMEOUT).await;
    // The HTTP destination has no rule of its own: its outcomes are the contract's reading of
    // its details.
    assert_eq!(report.outcome, report.detail.outcome(), "{report:?}");
    report
}

fn response(status: u16, retry_after: Option<Duration>) -> AttemptDetail {
    AttemptDetail::Response {
        status,
        retry_after,
    }
}

#[tokio::test]
async fn posts_the_exact_body_and_headers() {
    let receiver = Receiver::start(Reply::status(200)).await;
    let report = send(&receiver.url("/hooks/in?tenant=acme")).await;

    assert_eq!(report.detail, response(200, None));
    assert_eq!(report.error, None);
    let requests = receiver.requests();
    assert_eq!(requests.len(), 1);
    let got = &requests[0];
    assert_eq!(got.method, Method::POST);
    assert_eq!(got.version, Version::HTTP_11, "plain http stays HTTP/1.1");
    assert_eq!(got.path_and_query, "/hooks/in?tenant=acme");
    assert_eq!(got.body.as_ref(), message().body.as_slice());
    assert_eq!(got.headers["content-type"], "application/json");
    let user_agent = got.headers["user-agent"].to_str().unwrap();
    assert!(user_agent.starts_with("webhookd/"), "{user_agent}");
    for (name, value) in &message().headers {
        assert_eq!(
            got.headers
                .get_all(name.as_str())
                .iter()
                .collect::<Vec<_>>(),
            [value.as_str()],
            "{name}"
        );
    }
    // Exactly the message's headers plus the three the transport adds.
    let mut names: Vec<&str> = got.headers.keys().map(|n| n.as_str()).collect();
    names.sort_unstable();
    let mut expected: Vec<String> = message()
        .headers
        .iter()
        .map(|(n, _)| n.to_ascii_lowercase())
        .chain(["host", "content-length", "user-agent"].map(String::from))
        .collect();
    expected.sort_unstable();
    assert_eq!(names, expected);
    assert_eq!(
        got.headers["content-length"],
        message().body.len().to_string()
    );
    assert_eq!(got.headers["host"], receiver.addr.to_string());
}

#[tokio::test]
async fn reports_error_statuses_as_responses() {
    for status in [500, 410, 400, 404] {
        let receiver = Receiver::start(Reply::status(status)).await;
        let report = send(&receiver.url("/")).await;
        assert_eq!(report.detail, response(status, None), "{status}");
        assert_eq!(report.error, None);
        assert_eq!(receiver.requests().len(), 1);
    }
}

#[tokio::test]
async fn parses_retry_after_in_seconds() {
    let receiver = Receiver::start(Reply::status(429).header("retry-after", "7")).await;
    let report = send(&receiver.url("/")).await;
    assert_eq!(report.detail, response(429, Some(Duration::from_secs(7))));
}

#[tokio::test]
async fn parses_retry_after_as_an_http_date() {
    let format = format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let at = OffsetDateTime::now_utc() + Duration::from_secs(120);
    let receiver =
        Receiver::start(Reply::status(503).header("retry-after", at.format(format).unwrap())).await;
    let report = send(&receiver.url("/")).await;
    let AttemptDetail::Response {
        status: 503,
        retry_after: Some(wait),
    } = report.detail
    else {
        panic!("expected a 503 with a Retry-After, got {:?}", report.detail);
    };
    // The date has whole seconds and the clock moves on during the attempt.
    assert!(
        (Duration::from_secs(110)..=Duration::from_secs(120)).contains(&wait),
        "{wait:?}"
    );
}

#[tokio::test]
async fn ignores_a_retry_after_it_cannot_read() {
    let receiver = Receiver::start(Reply::status(503).header("retry-after", "soon")).await;
    assert_eq!(send(&receiver.url("/")).await.detail, response(503, None));
}

#[tokio::test]
async fn never_follows_a_redirect() {
    let elsewhere = Receiver::start(Reply::status(200)).await;
    let receiver = Receiver::start(
        Reply::status(302).header("location", elsewhere.url("/stolen").to_string()),
    )
    .await;
    let report = send(&receiver.url("/")).await;

    assert_eq!(report.detail, response(302, None));
    assert_eq!(receiver.requests().len(), 1);
    assert!(elsewhere.requests().is_empty());
    assert_eq!(elsewhere.connections.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn times_out_when_the_target_never_answers() {
    let url = misbehaving_target(|stream| async move {
        tokio::time::sleep(Duration::from_secs(60)).await;
        drop(stream);
    })
    .await;
    let timeout = Duration::from_millis(300);
    let started = std::time::Instant::now();
    let report = transport().send(&url, &message(), timeout).await;

    assert_eq!(report.detail, AttemptDetail::Timeout);
    assert!(report.duration >= timeout, "{:?}", report.duration);
    assert!(
        report.duration < Duration::from_secs(5),
        "{:?}",
        report.duration
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(report.error.is_some());
    assert_eq!(report.response_excerpt, None);
}

#[tokio::test]
async fn reports_a_refused_connection_without_secrets() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let url = WebhookUrl::parse(&format!("http://127.0.0.1:{port}/hook?token=q-s3cret")).unwrap();
    let report = transport().send(&url, &message(), ATTEMPT_TIMEOUT).await;

    assert_eq!(report.detail, AttemptDetail::ConnectionFailed);
    let error = report.error.unwrap();
    assert_eq!(error, "connection refused");
    assert!(!error.contains("s3cret"));
    assert_eq!(report.response_excerpt, None);
}

#[tokio::test]
async fn refuses_a_header_value_http_cannot_carry() {
    let receiver = Receiver::start(Reply::status(200)).await;
    let mut message = message();
    message
        .headers
        .push(("X-Injected".into(), "s3cret\r\nHost: evil".into()));
    let report = transport()
        .send(&receiver.url("/"), &message, ATTEMPT_TIMEOUT)
        .await;

    assert_eq!(report.detail, AttemptDetail::ConnectionFailed);
    let error = report.error.unwrap();
    assert!(error.contains("X-Injected"), "{error}");
    assert!(!error.contains("s3cret"), "{error}");
    assert!(receiver.requests().is_empty());
}

#[tokio::test]
async fn stops_reading_a_body_that_never_ends() {
    let closed = Arc::new(tokio::sync::Notify::new());
    let closed_by_client = closed.clone();
    let url = misbehaving_target(move |mut stream| {
        let closed = closed_by_client.clone();
        async move {
            let head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
            if stream.write_all(head).await.is_ok() {
                let chunk = format!("1000\r\n{}\r\n", "x".repeat(0x1000));
                while stream.write_all(chunk.as_bytes()).await.is_ok() {}
            }
            closed.notify_one();
        }
    })
    .await;
    let config = local_config();
    let cap = config.max_response_excerpt;
    let report = tokio::time::timeout(
        Duration::from_secs(5),
        HyperTransport::new(config)
            .unwrap()
            .send(&url, &message(), Duration::from_secs(30)),
    )
    .await
    .expect("the attempt must stop reading, not wait for the end of the body");

    assert_eq!(report.detail, response(200, None));
    let excerpt = report.response_excerpt.unwrap();
    assert!(!excerpt.is_empty());
    assert!(excerpt.len() <= cap, "{}", excerpt.len());
    assert!(excerpt.bytes().all(|b| b == b'x'));
    // The unfinished connection is closed, not kept in the pool.
    tokio::time::timeout(Duration::from_secs(5), closed.notified())
        .await
        .expect("the transport must close a connection whose body it stopped reading");
}

#[tokio::test]
async fn keeps_the_status_when_the_body_trickles_past_the_deadline() {
    let url = misbehaving_target(|mut stream| async move {
        let head = b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\nstarted";
        if stream.write_all(head).await.is_err() {
            return;
        }
        while stream.write_all(b".").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let timeout = Duration::from_millis(400);
    let report = transport().send(&url, &message(), timeout).await;

    assert_eq!(report.detail, response(200, None));
    assert!(
        report.duration < Duration::from_secs(5),
        "{:?}",
        report.duration
    );
    let excerpt = report.response_excerpt.unwrap();
    assert!(excerpt.starts_with("started"), "{excerpt}");
}

#[tokio::test]
async fn reports_an_oversized_response_head() {
    let url = misbehaving_target(|mut stream| async move {
        let head = format!(
            "HTTP/1.1 200 OK\r\nx-padding: {}\r\ncontent-length: 0\r\n\r\n",
            "a".repeat(256 * 1024)
        );
        let _ = stream.write_all(head.as_bytes()).await;
    })
    .await;
    let report = send(&url).await;

    assert_eq!(report.detail, AttemptDetail::ResponseTooLarge);
    assert!(report.error.is_some());
}

#[tokio::test]
async fn keeps_a_short_body_as_the_excerpt() {
    let receiver = Receiver::start(Reply::status(200).body("ok")).await;
    let report = send(&receiver.url("/")).await;
    assert_eq!(report.detail, response(200, None));
    assert_eq!(report.response_excerpt.as_deref(), Some("ok"));

    let empty = Receiver::start(Reply::status(204)).await;
    assert_eq!(send(&empty.url("/")).await.response_excerpt, None);
}

#[tokio::test]
async fn reuses_one_connection_for_sequential_sends() {
    let receiver = Receiver::start(Reply::status(200).body("ok")).await;
    let transport = transport();
    let url = receiver.url("/");
    for _ in 0..2 {
        let report = transport.send(&url, &message(), ATTEMPT_TIMEOUT).await;
        assert_eq!(report.detail, response(200, None));
    }

    let requests = receiver.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].connection, 1);
    assert_eq!(
        requests[1].connection, 1,
        "the second send opened a new connection"
    );
}

/// A certificate authority made for one test, and a server certificate it signed.
struct Authority {
    ca_pem: String,
    server_cert: rustls::pki_types::CertificateDer<'static>,
    server_key: Vec<u8>,
}

impl Authority {
    /// A server certificate for `localhost` and 127.0.0.1.
    fn new() -> Self {
        Self::for_names(&["localhost", "127.0.0.1"])
    }

    fn for_names(names: &[&str]) -> Self {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
            KeyUsagePurpose,
        };
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "webhookd test authority");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let server =
            CertificateParams::new(names.iter().map(ToString::to_string).collect::<Vec<_>>())
                .unwrap()
                .signed_by(&key, &ca)
                .unwrap();
        Self {
            ca_pem: ca.pem(),
            server_cert: server.der().clone(),
            server_key: key.serialize_der(),
        }
    }

    /// A TLS server offering HTTP/2 and HTTP/1.1 by ALPN.
    fn acceptor(&self) -> TlsAcceptor {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![self.server_cert.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key.clone())),
            )
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        TlsAcceptor::from(Arc::new(config))
    }
}

#[tokio::test]
async fn reaches_an_https_target_over_http2_with_an_extra_root() {
    let authority = Authority::new();
    let receiver = Receiver::start_tls(Reply::status(200).body("ok"), &authority).await;
    let transport = HyperTransport::new(TransportConfig {
        extra_root_certs: vec![authority.ca_pem.clone().into_bytes()],
        ..local_config()
    })
    .unwrap();
    let url = receiver.url("/hooks/in?tenant=acme");
    for _ in 0..2 {
        let report = transport.send(&url, &message(), ATTEMPT_TIMEOUT).await;
        assert_eq!(report.detail, response(200, None), "{:?}", report.error);
        assert_eq!(report.response_excerpt.as_deref(), Some("ok"));
    }

    let requests = receiver.requests();
    assert_eq!(requests.len(), 2);
    let got = &requests[0];
    assert_eq!(got.version, Version::HTTP_2, "ALPN must choose HTTP/2");
    assert_eq!(got.path_and_query, "/hooks/in?tenant=acme");
    assert_eq!(got.body.as_ref(), message().body.as_slice());
    assert_eq!(got.headers["authorization"], "Bearer s3cret-token");
    // One HTTP/2 connection carries both requests.
    assert_eq!(requests[1].connection, 1);

    // The certificate names localhost too, and the name resolves to an allowed address.
    let by_name =
        WebhookUrl::parse(&format!("https://localhost:{}/", receiver.addr.port())).unwrap();
    let report = transport.send(&by_name, &message(), ATTEMPT_TIMEOUT).await;
    assert_eq!(report.detail, response(200, None), "{:?}", report.error);
}

#[tokio::test]
async fn an_untrusted_certificate_fails_the_handshake_without_a_request() {
    let authority = Authority::new();
    let receiver = Receiver::start_tls(Reply::status(200), &authority).await;
    let url = receiver.url("/hook?token=q-s3cret");
    let report = transport().send(&url, &message(), ATTEMPT_TIMEOUT).await;

    assert_eq!(report.detail, AttemptDetail::TlsFailed);
    assert_eq!(
        report.error.as_deref(),
        Some("tls handshake failed: the certificate is not signed by a trusted root")
    );
    assert_eq!(report.response_excerpt, None);
    assert!(receiver.requests().is_empty());
}

#[tokio::test]
async fn a_certificate_for_another_name_fails_the_handshake() {
    let authority = Authority::for_names(&["hooks.example.test"]);
    let receiver = Receiver::start_tls(Reply::status(200), &authority).await;
    let transport = HyperTransport::new(TransportConfig {
        extra_root_certs: vec![authority.ca_pem.clone().into_bytes()],
        ..local_config()
    })
    .unwrap();
    let report = transport
        .send(&receiver.url("/"), &message(), ATTEMPT_TIMEOUT)
        .await;

    assert_eq!(report.detail, AttemptDetail::TlsFailed);
    assert_eq!(
        report.error.as_deref(),
        Some("tls handshake failed: the certificate is not valid for the target's host")
    );
    assert!(receiver.requests().is_empty());
}

#[tokio::test]
async fn plain_http_on_an_https_port_is_a_tls_failure() {
    let receiver = Receiver::start(Reply::status(200)).await;
    let url = WebhookUrl::parse(&format!("https://127.0.0.1:{}/", receiver.addr.port())).unwrap();
    let report = transport().send(&url, &message(), ATTEMPT_TIMEOUT).await;
    assert_eq!(
        report.detail,
        AttemptDetail::TlsFailed,
        "{:?}",
        report.error
    );
    let error = report.error.unwrap();
    assert!(error.starts_with("tls handshake failed: "), "{error}");
}

#[test]
fn an_extra_root_that_is_not_a_certificate_is_refused_at_build() {
    for junk in [
        &b"not pem at all"[..],
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    ] {
        let err = HyperTransport::new(TransportConfig {
            extra_root_certs: vec![junk.to_vec()],
            ..TransportConfig::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("extra root certificate #1: "), "{err}");
        assert!(err.contains("BEGIN CERTIFICATE"), "{err}");
    }
}

/// Sends to each of `hosts` on a receiver's port with `config` and expects a refusal naming
/// `class`, made before any connection (the receiver accepts none).
async fn check_refused(config: TransportConfig, hosts: &[&str], class: &str) {
    check_refused_by(&HyperTransport::new(config).unwrap(), hosts, class).await;
}

/// As [`check_refused`], with a transport built by the caller.
async fn check_refused_by(transport: &HyperTransport, hosts: &[&str], class: &str) {
    let receiver = Receiver::start(Reply::status(200)).await;
    for host in hosts {
        let url = WebhookUrl::parse(&format!("{}?token=q-s3cret", receiver.url_via(host))).unwrap();
        let report = transport.send(&url, &message(), ATTEMPT_TIMEOUT).await;
        assert_eq!(report.detail, AttemptDetail::AddressRefused, "{host}");
        let error = report.error.unwrap();
        assert!(error.starts_with("address refused: "), "{host}: {error}");
        assert!(error.ends_with(&format!(" is {class}")), "{host}: {error}");
        assert!(
            !error.contains("s3cret") && !error.contains("/hook"),
            "{error}"
        );
        assert_eq!(report.response_excerpt, None);
    }
    // Give a connection that should not exist time to be accepted.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(receiver.connections.load(Ordering::SeqCst), 0, "{hosts:?}");
    assert!(receiver.requests().is_empty());
}

#[tokio::test]
async fn loopback_is_refused_by_default_before_connecting() {
    check_refused(
        TransportConfig::default(),
        &["127.0.0.1", "localhost", "[::1]", "[::ffff:127.0.0.1]"],
        "loopback",
    )
    .await;
    // Spellings that only the system resolver reads as 127.0.0.1 (and 0.0.0.0, which
    // reaches this host too).
    check_refused(
        TransportConfig::default(),
        &["2130706433", "0x7f.1", "127.1", "0x7f000001", "0177.0.0.1"],
        "loopback",
    )
    .await;
    check_refused(
        TransportConfig::default(),
        &["0", "0.0.0.0", "[::]"],
        "unspecified",
    )
    .await;
    let error = HyperTransport::new(TransportConfig::default())
        .unwrap()
        .send(
            &WebhookUrl::parse("http://127.0.0.1:9/hook").unwrap(),
            &message(),
            ATTEMPT_TIMEOUT,
        )
        .await
        .error;
    assert_eq!(
        error.as_deref(),
        Some("address refused: 127.0.0.1 is loopback")
    );
}

#[tokio::test]
async fn an_allow_list_opens_only_its_ranges() {
    // 127.0.0.2/32 allowed: 127.0.0.1 stays refused.
    let config = TransportConfig {
        address_policy: AddressPolicy::new(vec![IpRange::parse("127.0.0.2").unwrap()]),
        ..TransportConfig::default()
    };
    check_refused(config, &["127.0.0.1", "[::1]", "localhost"], "loopback").await;
}

#[tokio::test]
async fn refused_addresses_of_a_name_are_dropped_and_the_rest_connected() {
    // `localhost` may resolve to ::1 as well; only 127.0.0.0/8 is allowed, so the transport
    // connects to 127.0.0.1 alone.
    let receiver = Receiver::start(Reply::status(200)).await;
    let transport = HyperTransport::new(TransportConfig {
        address_policy: AddressPolicy::new(vec![IpRange::parse("127.0.0.0/8").unwrap()]),
        ..TransportConfig::default()
    })
    .unwrap();
    let report = transport
        .send(&receiver.url_via("localhost"), &message(), ATTEMPT_TIMEOUT)
        .await;
    assert_eq!(report.detail, response(200, None), "{:?}", report.error);
    assert_eq!(receiver.requests().len(), 1);
}

#[tokio::test]
async fn the_guard_can_be_turned_off() {
    let receiver = Receiver::start(Reply::status(200)).await;
    let transport = HyperTransport::new(TransportConfig {
        ssrf_guard: false,
        ..TransportConfig::default()
    })
    .unwrap();
    for host in ["127.0.0.1", "localhost"] {
        let report = transport
            .send(&receiver.url_via(host), &message(), ATTEMPT_TIMEOUT)
            .await;
        assert_eq!(
            report.detail,
            response(200, None),
            "{host}: {:?}",
            report.error
        );
    }
}

/// Names that resolve to refused addresses, through the fixed-table resolver (no DNS needed):
/// refused before connecting, whichever class and family, also when every one of a name's
/// several addresses is refused.
#[tokio::test]
async fn names_resolving_to_refused_addresses_are_refused() {
    let ip = |text: &str| text.parse::<std::net::IpAddr>().unwrap();
    let hosts: Vec<(&str, Vec<std::net::IpAddr>)> = vec![
        ("inside.test", vec![ip("127.0.0.1")]),
        ("inside6.test", vec![ip("::1")]),
        ("mapped.test", vec![ip("::ffff:127.0.0.1")]),
        ("intranet.test", vec![ip("10.1.2.3")]),
        ("intranet6.test", vec![ip("fd00::7")]),
        ("metadata.test", vec![ip("169.254.169.254")]),
        ("nat64.test", vec![ip("64:ff9b::a9fe:a9fe")]),
        ("both.test", vec![ip("192.168.1.1"), ip("10.0.0.1")]),
    ];
    let table: Vec<(&str, &[std::net::IpAddr])> =
        hosts.iter().map(|(n, a)| (*n, a.as_slice())).collect();
    let transport = HyperTransport::with_fixed_hosts(TransportConfig::default(), &table).unwrap();
    check_refused_by(
        &transport,
        &["inside.test", "inside6.test", "mapped.test"],
        "loopback",
    )
    .await;
    check_refused_by(
        &transport,
        &["intranet.test", "intranet6.test", "both.test"],
        "private",
    )
    .await;
    check_refused_by(&transport, &["metadata.test", "nat64.test"], "link-local").await;

    // The same names, with loopback allowed, reach the receiver: the table is what was
    // consulted, and the guard let through what the allow list opens.
    let receiver = Receiver::start(Reply::status(200)).await;
    let allowed = HyperTransport::with_fixed_hosts(local_config(), &table).unwrap();
    let report = allowed
        .send(
            &receiver.url_via("inside.test"),
            &message(),
            ATTEMPT_TIMEOUT,
        )
        .await;
    assert_eq!(report.detail, response(200, None), "{:?}", report.error);
    assert_eq!(receiver.requests().len(), 1);
    let unknown = allowed
        .send(
            &receiver.url_via("unknown.test"),
            &message(),
            ATTEMPT_TIMEOUT,
        )
        .await;
    assert_eq!(unknown.detail, AttemptDetail::ConnectionFailed);
    assert_eq!(unknown.error.as_deref(), Some("dns lookup failed"));
}

/// A receiver on an allowed address that redirects (302 and 307) to the metadata address or to
/// another local receiver: the answer is the redirect itself, which is not a success, and the
/// Location is never contacted.
#[tokio::test]
async fn a_redirect_to_a_refused_or_other_address_is_not_followed() {
    let elsewhere = Receiver::start(Reply::status(200)).await;
    for status in [302, 307] {
        for location in [
            "http://169.254.169.254/latest/meta-data/".to_owned(),
            elsewhere.url("/stolen").to_string(),
        ] {
            let receiver =
                Receiver::start(Reply::status(status).header("location", location.clone())).await;
            let report = send(&receiver.url("/")).await;
            assert_eq!(report.detail, response(status, None), "{status} {location}");
            assert!(
                !report.detail.is_success(),
                "a redirect is a failed attempt"
            );
            assert_eq!(receiver.requests().len(), 1);
        }
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(elsewhere.connections.load(Ordering::SeqCst), 0);
}

/// The HTTP destination against the shared destination contract: each target is a receiver of
/// its own on 127.0.0.1.
mod contract {
    use super::*;
    use webhook_ports::contract::destination::{Answer, DestinationRig};

    #[derive(Default)]
    struct HttpRig {
        receivers: tokio::sync::Mutex<Vec<(WebhookUrl, Receiver)>>,
    }

    async fn rig() -> HttpRig {
        HttpRig::default()
    }

    #[async_trait::async_trait]
    impl DestinationRig for HttpRig {
        fn destination(&self, guarded: bool) -> Arc<dyn Destination> {
            // Unguarded here means the guard allows loopback, where the receivers are;
            // guarded means the default policy, which refuses it.
            let config = if guarded {
                TransportConfig::default()
            } else {
                local_config()
            };
            Arc::new(HyperTransport::new(config).unwrap())
        }

        async fn target(&self, answer: Answer) -> WebhookUrl {
            let status = match answer {
                Answer::Take => 200,
                Answer::Refuse => 400,
                Answer::Unavailable => 503,
                Answer::Gone => 410,
                Answer::Stall => {
                    return misbehaving_target(|stream| async move {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        drop(stream);
                    })
                    .await;
                }
            };
            let receiver = Receiver::start(Reply::status(status)).await;
            let url = receiver.url("/hook");
            self.receivers.lock().await.push((url.clone(), receiver));
            url
        }

        async fn received(&self, target: &WebhookUrl) -> Vec<OutboundMessage> {
            let receivers = self.receivers.lock().await;
            let Some((_, receiver)) = receivers.iter().find(|(url, _)| url == target) else {
                return Vec::new();
            };
            receiver
                .requests()
                .into_iter()
                .map(|r| OutboundMessage {
                    body: r.body.to_vec(),
                    headers: r
                        .headers
                        .iter()
                        .map(|(n, v)| {
                            (
                                n.as_str().to_owned(),
                                String::from_utf8_lossy(v.as_bytes()).into_owned(),
                            )
                        })
                        .collect(),
                })
                .collect()
        }

        fn is_network(&self) -> bool {
            true
        }
    }

    webhook_ports::destination_contract_suite!(rig);
}
