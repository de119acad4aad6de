//! The [`Transport`] port over HTTP/1.1 with one pooled hyper-util client: POSTs a delivery's
//! exact bytes and headers and turns whatever happens into an [`AttemptReport`].
//!
//! What it must not do: follow redirects (a 3xx is a response like any other), wait longer than
//! the attempt's `timeout`, read more than `max_response_excerpt` bytes of a response body, put
//! a header value or the URL's query into an error text or a log line (both may hold
//! credentials), or panic on anything a target or a stored webhook can supply.
//!
//! Only `http` targets for now: TLS and the SSRF guard will wrap [`HttpConnector`] in
//! [`build_client`] without changing [`HyperTransport::send`].

use std::error::Error as StdError;
use std::io;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue, RETRY_AFTER, USER_AGENT};
use hyper::{Method, Request, Response, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use time::OffsetDateTime;
use tokio::time::Instant;
use webhook_domain::{AttemptOutcome, OutboundMessage, WebhookUrl, parse_retry_after};
use webhook_ports::{AttemptReport, Transport};

/// The largest response head (status line and headers) read before giving up with
/// [`AttemptOutcome::ResponseTooLarge`]. hyper refuses values below 8 KiB.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// How long the operating system keeps probing an idle pooled connection.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// Settings of the HTTP transport.
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
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            max_response_excerpt: 4096,
            max_idle_per_host: 16,
            user_agent: concat!("webhookd/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Sends deliveries with a pooled hyper-util client. Cloning is cheap and shares the pool.
#[derive(Debug, Clone)]
pub struct HyperTransport {
    client: HttpClient,
    /// `None` when the configured user agent is not a valid header value: every attempt then
    /// fails with a message saying so, rather than sending something else.
    user_agent: Option<HeaderValue>,
    max_response_excerpt: usize,
}

impl HyperTransport {
    pub fn new(config: TransportConfig) -> Self {
        Self {
            client: build_client(&config),
            user_agent: HeaderValue::from_str(&config.user_agent).ok(),
            max_response_excerpt: config.max_response_excerpt,
        }
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
            outcome: AttemptOutcome::Response {
                status,
                retry_after,
            },
            excerpt,
            error: None,
        }
    }

    fn request(
        &self,
        url: &WebhookUrl,
        message: &OutboundMessage,
    ) -> Result<Request<Full<Bytes>>, String> {
        if url.is_https() {
            return Err("https targets are not supported yet".to_owned());
        }
        let user_agent = self.user_agent.clone().ok_or_else(|| {
            "transport: the configured user agent is not a valid HTTP header value".to_owned()
        })?;
        let uri = Uri::try_from(url.as_str())
            .map_err(|_| "url: not a valid HTTP request target".to_owned())?;
        let mut request = Request::new(Full::new(Bytes::copy_from_slice(&message.body)));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = uri;
        let headers = request.headers_mut();
        for (name, value) in &message.headers {
            let header_name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                format!("header {name:?}: not a valid HTTP header name; request not sent")
            })?;
            // `from_bytes` (not `from_str`) so that non-ASCII text the domain accepts is sent
            // as its UTF-8 bytes; control characters are still refused.
            let header_value = HeaderValue::from_bytes(value.as_bytes()).map_err(|_| {
                format!("header {name:?}: the value is not valid in HTTP; request not sent")
            })?;
            headers.append(header_name, header_value);
        }
        headers.insert(USER_AGENT, user_agent);
        Ok(request)
    }
}

#[async_trait]
impl Transport for HyperTransport {
    async fn send(
        &self,
        url: &WebhookUrl,
        message: &OutboundMessage,
        timeout: Duration,
    ) -> AttemptReport {
        let start = Instant::now();
        let deadline = start.checked_add(timeout).unwrap_or_else(far_future);
        let attempt = match self.request(url, message) {
            Err(error) => Attempt::failed(AttemptOutcome::ConnectionFailed, error),
            Ok(request) => tokio::time::timeout_at(deadline, self.exchange(request, deadline))
                .await
                .unwrap_or_else(|_| {
                    Attempt::failed(
                        AttemptOutcome::Timeout,
                        format!("no response within {} ms", timeout.as_millis()),
                    )
                }),
        };
        let duration = start.elapsed();
        tracing::debug!(
            host = url.host(),
            port = url.port(),
            outcome = ?attempt.outcome,
            duration_ms = duration.as_millis(),
            "webhook attempt"
        );
        AttemptReport {
            outcome: attempt.outcome,
            duration,
            response_excerpt: attempt.excerpt,
            error: attempt.error,
        }
    }
}

/// The one place the connector and the pool are configured; TLS and the SSRF guard go here.
fn build_client(config: &TransportConfig) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.enforce_http(true);
    connector.set_connect_timeout(Some(config.connect_timeout));
    connector.set_keepalive(Some(TCP_KEEPALIVE));
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        // Without a timer the pool never expires idle connections.
        .pool_timer(TokioTimer::new())
        .pool_max_idle_per_host(config.max_idle_per_host)
        .http1_max_buf_size(MAX_RESPONSE_HEAD)
        .build(connector)
}

/// An attempt's result before its duration is known.
struct Attempt {
    outcome: AttemptOutcome,
    excerpt: Option<String>,
    error: Option<String>,
}

impl Attempt {
    fn failed(outcome: AttemptOutcome, error: String) -> Self {
        Self {
            outcome,
            excerpt: None,
            error: Some(error),
        }
    }

    /// Maps a client error to an outcome and a short text built only from fixed strings and
    /// error kinds: hyper's and the OS's messages never carry the URL or header values, but
    /// fixed strings make that a property of this function rather than of theirs.
    fn from_client_error(err: &hyper_util::client::legacy::Error) -> Self {
        let mut io_kind = None;
        let mut dns = false;
        let mut source: Option<&(dyn StdError + 'static)> = err.source();
        while let Some(cause) = source {
            if let Some(hyper_err) = cause.downcast_ref::<hyper::Error>() {
                if hyper_err.is_parse_too_large() {
                    return Self::failed(
                        AttemptOutcome::ResponseTooLarge,
                        format!(
                            "response head larger than {} KiB or with too many headers",
                            MAX_RESPONSE_HEAD / 1024
                        ),
                    );
                }
                if hyper_err.is_parse() {
                    return Self::failed(
                        AttemptOutcome::ConnectionFailed,
                        "the response is not valid HTTP/1.1".to_owned(),
                    );
                }
                if hyper_err.is_incomplete_message() {
                    return Self::failed(
                        AttemptOutcome::ConnectionFailed,
                        "connection closed before a complete response".to_owned(),
                    );
                }
            }
            if let Some(io_err) = cause.downcast_ref::<io::Error>() {
                io_kind.get_or_insert(io_err.kind());
            }
            // hyper-util's connect error type is private; its text is a fixed string.
            dns |= cause.to_string() == "dns error";
            source = cause.source();
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
        Self::failed(AttemptOutcome::ConnectionFailed, error)
    }
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
    }
}
