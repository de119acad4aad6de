//! The HTTP [`Destination`]: `http` and `https` targets, with one pooled hyper-util client. It
//! POSTs a delivery's exact bytes and headers and turns whatever happens into an
//! [`AttemptReport`]: the outcome as the compatibility contract reads HTTP statuses
//! ([`webhook_domain::AttemptOutcome::of_http_status`]), the status and a body excerpt as the detail. `http` targets speak
//! HTTP/1.1; `https` targets go through rustls (Mozilla's roots plus any configured extra roots)
//! and speak HTTP/2 or HTTP/1.1, as ALPN decides.
//!
//! The SSRF guard (on by default) judges every address before a connection is made: an IP
//! literal host before the request is sent (the connector never resolves those), a name in
//! the [`Egress`] resolver, which hands the connector only the addresses the guard accepted.
//!
//! What it must not do: follow redirects (a 3xx is a response like any other), wait longer than
//! the attempt's `timeout`, read more than `max_response_excerpt` bytes of a response body,
//! connect to an address the guard refused, put a header value or the URL's path or query into
//! an error text or a log line (they may hold credentials), or panic on anything a target or a
//! stored webhook can supply.

use std::error::Error as StdError;
use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue, RETRY_AFTER, USER_AGENT};
use hyper::{Method, Request, Response, Uri};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use thiserror::Error;
use time::OffsetDateTime;
use tokio::time::Instant;
use webhook_domain::{
    AddressPolicy, AttemptDetail, OutboundMessage, RefusedAddress, WebhookUrl, parse_retry_after,
};
use webhook_ports::{AttemptReport, Destination};

use crate::egress::{Egress, EgressError, GuardedResolver};
use crate::registry::DestinationKind;

/// The HTTP destination in the registry.
pub(crate) const DESTINATION: DestinationKind = DestinationKind {
    name: "HTTP",
    schemes: WebhookUrl::HTTP_SCHEMES,
    open: |config| {
        let transport = HyperTransport::new(config.clone())?;
        Ok(Arc::new(transport) as Arc<dyn Destination>)
    },
};

/// The largest response head (status line and headers) read before giving up with
/// [`AttemptDetail::ResponseTooLarge`]. hyper refuses values below 8 KiB.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// How long the operating system keeps probing an idle pooled connection.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// Settings of the network destinations: the SSRF guard every one of them connects through,
/// and the HTTP destination's own.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// Longest wait for the TCP connection, within the attempt's own timeout.
    pub connect_timeout: Duration,
    /// Most bytes of a response body kept for the attempt log; the rest is never read.
    pub max_response_excerpt: usize,
    /// Most idle connections kept open to one host.
    pub max_idle_per_host: usize,
    /// The `User-Agent` sent with every request.
    pub user_agent: String,
    /// Certificates (PEM text, one or more `CERTIFICATE` blocks each) trusted as roots besides
    /// Mozilla's: for targets behind a private certificate authority.
    pub extra_root_certs: Vec<Vec<u8>>,
    /// Refuse to connect to special-purpose addresses (loopback, private, link-local, ...)
    /// unless `address_policy` allows them. On by default.
    pub ssrf_guard: bool,
    /// What the SSRF guard allows besides public addresses.
    pub address_policy: AddressPolicy,
    /// The message brokers tenants may name as targets (`nats://`, `amqp://`, `amqps://`
    /// URLs with the credentials to sign in): a broker target whose scheme, host and port
    /// match no entry is refused.
    pub brokers: Vec<String>,
}

impl TransportConfig {
    /// The resolver and SSRF guard that a network destination connects through.
    pub fn egress(&self) -> Egress {
        Egress::new(self.ssrf_guard.then(|| self.address_policy.clone()))
    }
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            max_response_excerpt: 4096,
            max_idle_per_host: 16,
            user_agent: concat!("webhookd/", env!("CARGO_PKG_VERSION")).to_owned(),
            extra_root_certs: Vec::new(),
            ssrf_guard: true,
            address_policy: AddressPolicy::default(),
            brokers: Vec::new(),
        }
    }
}

/// A [`TransportConfig`] the transport cannot be built from.
#[derive(Debug, Error)]
pub enum TransportConfigError {
    #[error(
        "extra root certificate #{number}: {reason}; give PEM text with -----BEGIN CERTIFICATE----- blocks"
    )]
    RootCertificate { number: usize, reason: &'static str },
    #[error("TLS: the ring provider offers no safe protocol version")]
    Tls,
}

type HttpClient = Client<HttpsConnector<HttpConnector<GuardedResolver>>, Full<Bytes>>;

/// Sends deliveries with a pooled hyper-util client. Cloning is cheap and shares the pool.
#[derive(Debug, Clone)]
pub struct HyperTransport {
    client: HttpClient,
    /// `None` when the configured user agent is not a valid header value: every attempt then
    /// fails with a message saying so, rather than sending something else.
    user_agent: Option<HeaderValue>,
    max_response_excerpt: usize,
    /// Name resolution behind the SSRF guard.
    egress: Egress,
}

impl HyperTransport {
    /// Builds the client and its TLS configuration.
    ///
    /// # Errors
    /// When an extra root certificate is not PEM or not a certificate rustls accepts.
    pub fn new(config: TransportConfig) -> Result<Self, TransportConfigError> {
        let egress = config.egress();
        Self::build(config, egress)
    }

    /// A transport whose resolver answers the names in `hosts` with their addresses instead of
    /// asking DNS, and fails the lookup of any other name. Everything after the lookup (the
    /// SSRF guard, the connector) is the same as [`Self::new`]'s: this lets tests show what the
    /// guard does with a name that resolves to a private address, without a DNS server. Only
    /// with the `testing` feature, which the binary never enables.
    ///
    /// # Errors
    /// As [`Self::new`].
    #[cfg(feature = "testing")]
    pub fn with_fixed_hosts(
        config: TransportConfig,
        hosts: &[(&str, &[IpAddr])],
    ) -> Result<Self, TransportConfigError> {
        let egress = config.egress().with_fixed_hosts(hosts);
        Self::build(config, egress)
    }

    fn build(config: TransportConfig, egress: Egress) -> Result<Self, TransportConfigError> {
        Ok(Self {
            client: build_client(&config, &egress)?,
            user_agent: HeaderValue::from_str(&config.user_agent).ok(),
            max_response_excerpt: config.max_response_excerpt,
            egress,
        })
    }

    /// Everything after the request is built; the caller bounds it by the attempt's deadline.
    async fn exchange(&self, request: Request<Full<Bytes>>, deadline: Instant) -> Attempt {
        let response = match self.client.request(request).await {
            Ok(response) => response,
            Err(err) => return Attempt::from_client_error(&err),
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| parse_retry_after(value, OffsetDateTime::now_utc()));
        let excerpt = read_excerpt(response, self.max_response_excerpt, deadline).await;
        Attempt {
            detail: AttemptDetail::Response {
                status,
                retry_after,
            },
            excerpt,
            error: None,
        }
    }

    /// The request of one attempt, or the failed attempt when it must not or cannot be sent.
    fn request(
        &self,
        url: &WebhookUrl,
        message: &OutboundMessage,
    ) -> Result<Request<Full<Bytes>>, Attempt> {
        let failed = |error: String| Attempt::failed(AttemptDetail::ConnectionFailed, error);
        let user_agent = self.user_agent.clone().ok_or_else(|| {
            failed("transport: the configured user agent is not a valid HTTP header value".into())
        })?;
        let uri = Uri::try_from(url.as_str())
            .map_err(|_| failed("url: not a valid HTTP request target".into()))?;
        // The connector skips the resolver for IP literals, so they are judged here, on the very
        // host the connector will parse.
        if let Some(ip) = ip_literal(&uri) {
            self.egress.check(ip).map_err(Attempt::refused)?;
        }
        let mut request = Request::new(Full::new(Bytes::copy_from_slice(&message.body)));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = uri;
        let headers = request.headers_mut();
        for (name, value) in &message.headers {
            let header_name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                failed(format!(
                    "header {name:?}: not a valid HTTP header name; request not sent"
                ))
            })?;
            // `from_bytes` (not `from_str`) so that non-ASCII text the domain accepts is sent
            // as its UTF-8 bytes; control characters are still refused.
            let header_value = HeaderValue::from_bytes(value.as_bytes()).map_err(|_| {
                failed(format!(
                    "header {name:?}: the value is not valid in HTTP; request not sent"
                ))
            })?;
            headers.append(header_name, header_value);
        }
        headers.insert(USER_AGENT, user_agent);
        Ok(request)
    }
}

#[async_trait]
impl Destination for HyperTransport {
    async fn send(
        &self,
        url: &WebhookUrl,
        message: &OutboundMessage,
        timeout: Duration,
    ) -> AttemptReport {
        let start = Instant::now();
        let deadline = start.checked_add(timeout).unwrap_or_else(far_future);
        let attempt = match self.request(url, message) {
            Err(attempt) => attempt,
            Ok(request) => tokio::time::timeout_at(deadline, self.exchange(request, deadline))
                .await
                .unwrap_or_else(|_| {
                    Attempt::failed(
                        AttemptDetail::Timeout,
                        format!("no response within {} ms", timeout.as_millis()),
                    )
                }),
        };
        let duration = start.elapsed();
        tracing::debug!(
            host = url.host(),
            port = url.port(),
            detail = ?attempt.detail,
            duration_ms = duration.as_millis(),
            "webhook attempt"
        );
        AttemptReport {
            response_excerpt: attempt.excerpt,
            error: attempt.error,
            ..AttemptReport::of(attempt.detail, duration)
        }
    }

    /// A URL that cannot be an HTTP request's target (an unencoded `<`, `"` or `{` in its path
    /// or query) would fail every attempt: it is refused at registration instead.
    fn check_target(&self, url: &WebhookUrl) -> Result<(), String> {
        Uri::try_from(url.as_str()).map(|_| ()).map_err(|_| {
            format!(
                "{:?} is not a valid HTTP request target; percent-encode characters such as \
                 < > \" {{ }} | \\ ^ and ` (for example < as %3C)",
                url.as_str()
            )
        })
    }
}

/// The host of `uri` when it is an IP address, parsed as hyper-util's connector parses it
/// (brackets around IPv6 removed).
fn ip_literal(uri: &Uri) -> Option<IpAddr> {
    let host = uri.host()?;
    let host = host
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(host);
    host.parse().ok()
}

/// The one place the connector and the pool are configured.
fn build_client(
    config: &TransportConfig,
    egress: &Egress,
) -> Result<HttpClient, TransportConfigError> {
    let mut http = HttpConnector::new_with_resolver(egress.resolver());
    // The TLS layer above decides which schemes go through; it takes only http and https.
    http.enforce_http(false);
    http.set_connect_timeout(Some(config.connect_timeout));
    http.set_keepalive(Some(TCP_KEEPALIVE));
    http.set_nodelay(true);
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(tls_config(&config.extra_root_certs)?)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        // Without a timer the pool never expires idle connections.
        .pool_timer(TokioTimer::new())
        .pool_max_idle_per_host(config.max_idle_per_host)
        .http1_max_buf_size(MAX_RESPONSE_HEAD)
        .http2_max_header_list_size(MAX_RESPONSE_HEAD_U32)
        .build(connector))
}

/// [`MAX_RESPONSE_HEAD`] as HTTP/2 settings count it.
const MAX_RESPONSE_HEAD_U32: u32 = MAX_RESPONSE_HEAD as u32;

/// rustls with the ring provider, TLS 1.2 and 1.3, Mozilla's roots and the extra ones; no
/// client certificate. ALPN is set by the connector builder.
fn tls_config(extra_roots: &[Vec<u8>]) -> Result<rustls::ClientConfig, TransportConfigError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for (index, pem) in extra_roots.iter().enumerate() {
        let refused = |reason| TransportConfigError::RootCertificate {
            number: index + 1,
            reason,
        };
        let mut found = false;
        for certificate in CertificateDer::pem_slice_iter(pem) {
            let certificate = certificate.map_err(|_| refused("not valid PEM"))?;
            roots
                .add(certificate)
                .map_err(|_| refused("not a certificate that can be a trust root"))?;
            found = true;
        }
        if !found {
            return Err(refused("holds no certificate"));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|_| TransportConfigError::Tls)?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// An attempt's result before its duration is known.
struct Attempt {
    detail: AttemptDetail,
    excerpt: Option<String>,
    error: Option<String>,
}

impl Attempt {
    fn failed(detail: AttemptDetail, error: String) -> Self {
        Self {
            detail,
            excerpt: None,
            error: Some(error),
        }
    }

    /// The guard refused the target's address; naming the address (never the URL) is safe.
    fn refused(refused: RefusedAddress) -> Self {
        Self::failed(
            AttemptDetail::AddressRefused,
            format!("address refused: {refused}"),
        )
    }

    /// Maps a client error to an outcome and a short text built only from fixed strings,
    /// error kinds and a refused address: hyper's and the OS's messages never carry the URL or
    /// header values, but fixed strings make that a property of this function rather than of
    /// theirs. The guard's refusal and rustls' errors are found by walking the source chain.
    fn from_client_error(err: &hyper_util::client::legacy::Error) -> Self {
        let mut io_kind = None;
        let mut dns = false;
        let mut source: Option<&(dyn StdError + 'static)> = err.source();
        while let Some(cause) = source {
            if let Some(EgressError::Refused(refused)) = cause.downcast_ref::<EgressError>() {
                return Self::refused(*refused);
            }
            if let Some(tls_err) = cause.downcast_ref::<rustls::Error>() {
                return Self::failed(AttemptDetail::TlsFailed, tls_error_text(tls_err));
            }
            if let Some(hyper_err) = cause.downcast_ref::<hyper::Error>() {
                if hyper_err.is_parse_too_large() {
                    return Self::failed(
                        AttemptDetail::ResponseTooLarge,
                        format!(
                            "response head larger than {} KiB or with too many headers",
                            MAX_RESPONSE_HEAD / 1024
                        ),
                    );
                }
                if hyper_err.is_parse() {
                    return Self::failed(
                        AttemptDetail::ConnectionFailed,
                        "the response is not valid HTTP/1.1".to_owned(),
                    );
                }
                if hyper_err.is_incomplete_message() {
                    return Self::failed(
                        AttemptDetail::ConnectionFailed,
                        "connection closed before a complete response".to_owned(),
                    );
                }
            }
            if let Some(io_err) = cause.downcast_ref::<io::Error>() {
                io_kind.get_or_insert(io_err.kind());
            }
            // hyper-util's connect error type is private; its text is a fixed string.
            dns |= cause.to_string() == "dns error";
            source = next_cause(cause);
        }
        let error = if dns {
            "dns lookup failed".to_owned()
        } else {
            match io_kind {
                Some(io::ErrorKind::ConnectionRefused) => "connection refused".to_owned(),
                Some(io::ErrorKind::ConnectionReset) => "connection reset".to_owned(),
                Some(io::ErrorKind::ConnectionAborted) => "connection aborted".to_owned(),
                Some(io::ErrorKind::TimedOut) if err.is_connect() => "connect timed out".to_owned(),
                Some(kind) if err.is_connect() => format!("connect failed: {kind}"),
                Some(kind) => format!("connection failed: {kind}"),
                None if err.is_connect() => "connect failed".to_owned(),
                None => "connection failed before a response".to_owned(),
            }
        };
        Self::failed(AttemptDetail::ConnectionFailed, error)
    }
}

/// The next error in a chain. An `io::Error` wrapping another error reports that error's
/// source as its own, skipping the wrapped error itself; hyper-rustls wraps rustls' errors so.
fn next_cause<'a>(cause: &'a (dyn StdError + 'static)) -> Option<&'a (dyn StdError + 'static)> {
    match cause
        .downcast_ref::<io::Error>()
        .and_then(io::Error::get_ref)
    {
        Some(inner) => Some(inner),
        None => cause.source(),
    }
}

/// A fixed text for a failed TLS handshake: rustls' own texts can quote the server name.
fn tls_error_text(err: &rustls::Error) -> String {
    use rustls::CertificateError as Cert;
    let reason = match err {
        rustls::Error::InvalidCertificate(Cert::UnknownIssuer) => {
            "the certificate is not signed by a trusted root"
        }
        rustls::Error::InvalidCertificate(
            Cert::NotValidForName | Cert::NotValidForNameContext { .. },
        ) => "the certificate is not valid for the target's host",
        rustls::Error::InvalidCertificate(Cert::Expired | Cert::ExpiredContext { .. }) => {
            "the certificate has expired"
        }
        rustls::Error::InvalidCertificate(Cert::NotValidYet | Cert::NotValidYetContext { .. }) => {
            "the certificate is not valid yet"
        }
        rustls::Error::InvalidCertificate(_) => "the certificate is not valid",
        rustls::Error::AlertReceived(_) => "the target refused the handshake",
        rustls::Error::NoApplicationProtocol => "no HTTP version in common",
        _ => "the target does not speak TLS as expected",
    };
    format!("tls handshake failed: {reason}")
}

/// Reads at most `cap` bytes of the body, until `deadline` at the latest, then drops the
/// response: an unfinished body makes hyper close the connection instead of pooling it, so a
/// body that never ends costs neither time nor memory. A head already received stays the
/// outcome even when the body is slow: the target has answered.
async fn read_excerpt(
    response: Response<Incoming>,
    cap: usize,
    deadline: Instant,
) -> Option<String> {
    let mut body = response.into_body();
    let mut bytes = Vec::new();
    while bytes.len() < cap {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => frame,
            // The end, a broken body, or the deadline: keep what arrived.
            Ok(None | Some(Err(_))) | Err(_) => break,
        };
        if let Ok(data) = frame.into_data() {
            let room = cap - bytes.len();
            bytes.extend_from_slice(&data[..data.len().min(room)]);
        }
    }
    drop(body);
    (!bytes.is_empty()).then(|| excerpt_text(&bytes, cap))
}

/// Lossy UTF-8, cut back to at most `cap` bytes (replacement characters are wider than the
/// bytes they replace).
fn excerpt_text(bytes: &[u8], cap: usize) -> String {
    let mut text = String::from_utf8_lossy(bytes).into_owned();
    if text.len() > cap {
        let mut end = cap;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// A deadline for timeouts too large to add to now: about thirty years.
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365 * 30)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_never_exceeds_the_cap() {
        assert_eq!(excerpt_text(b"ok", 4096), "ok");
        // "é" cut after its first byte: one replacement character (3 bytes) would exceed 4.
        let cut = &"abcé".as_bytes()[..4];
        let text = excerpt_text(cut, 4);
        assert!(text.len() <= 4, "{text:?}");
        assert!(text.starts_with("abc"));
        assert_eq!(excerpt_text(&[0xff; 8], 8).len(), 6);
    }

    #[test]
    fn default_config_names_webhookd() {
        let config = TransportConfig::default();
        assert!(config.user_agent.starts_with("webhookd/"));
        assert_eq!(config.max_response_excerpt, 4096);
        assert_eq!(config.connect_timeout, Duration::from_secs(2));
        assert!(config.ssrf_guard, "the SSRF guard is on by default");
        assert_eq!(config.address_policy, AddressPolicy::default());
        assert!(config.extra_root_certs.is_empty());
    }

    #[test]
    fn ip_literals_are_read_as_the_connector_reads_them() {
        let literal = |uri: &str| ip_literal(&Uri::try_from(uri).unwrap());
        let ip = |text: &str| Some(text.parse::<IpAddr>().unwrap());
        assert_eq!(literal("http://127.0.0.1:8080/a"), ip("127.0.0.1"));
        assert_eq!(literal("https://[::1]/"), ip("::1"));
        assert_eq!(
            literal("http://[::ffff:127.0.0.1]/"),
            ip("::ffff:127.0.0.1")
        );
        assert_eq!(literal("http://localhost/"), None);
        // Not an address to the connector either: it goes through the guarded resolver.
        assert_eq!(literal("http://2130706433/"), None);
    }
}
