//! `webhookd listen`: a receiver to try webhookd with, like the Identus tutorial's Python
//! server. It prints each request (method, path, the Standard Webhooks id and timestamp, the
//! JSON body indented), answers every request with one chosen status so that retries can be
//! watched, and with a secret checks each signature. It listens on 127.0.0.1 only and is no
//! production receiver: it keeps nothing and de-duplicates nothing.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use time::OffsetDateTime;
use webhook_domain::{SigningSecret, Timestamp};

/// How far a `webhook-timestamp` may be from now, as the Standard Webhooks libraries allow.
const TOLERANCE_SECS: i64 = 300;

/// What the receiver does with each request.
#[derive(Debug, Clone)]
pub struct Receiver {
    /// Checks signatures when set.
    pub secret: Option<SigningSecret>,
    /// The answer to every request.
    pub status: StatusCode,
}

/// Binds 127.0.0.1:`port` (0 picks a free port).
///
/// # Errors
/// When the port cannot be bound.
pub async fn bind(port: u16) -> anyhow::Result<tokio::net::TcpListener> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}

/// Serves every path and method on `listener`, printing each request on standard output,
/// until `shutdown` completes.
///
/// # Errors
/// When the server fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    receiver: Receiver,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let app = Router::new()
        .fallback(receive)
        .with_state(Arc::new(receiver));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .context("the receiver stopped")
}

async fn receive(
    State(receiver): State<Arc<Receiver>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let text = describe(
        &method,
        &uri,
        &headers,
        &body,
        receiver.secret.as_ref(),
        receiver.status,
        OffsetDateTime::now_utc(),
    );
    // One write per request, so that concurrent requests do not interleave.
    print!("{text}");
    receiver.status
}

/// The printed form of one request.
fn describe(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    secret: Option<&SigningSecret>,
    status: StatusCode,
    now: OffsetDateTime,
) -> String {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut out = format!(
        "--------------------------------- request ---------------------------------\n{} {method} {path}\n",
        Timestamp::from_datetime(now)
    );
    for name in ["webhook-id", "webhook-timestamp"] {
        if let Some(value) = header(name) {
            out.push_str(&format!("{name}: {value}\n"));
        }
    }
    if let Some(secret) = secret {
        let verdict = match signature_problem(headers, body, secret, now) {
            None => "valid".to_owned(),
            Some(reason) => format!("INVALID ({reason})"),
        };
        out.push_str(&format!("signature: {verdict}\n"));
    }
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(json) => {
            let pretty = serde_json::to_string_pretty(&json).unwrap_or_default();
            out.push_str(&pretty);
            out.push('\n');
        }
        Err(_) if body.is_empty() => out.push_str("(no body)\n"),
        Err(_) => {
            out.push_str("(not JSON)\n");
            out.push_str(&String::from_utf8_lossy(body));
            out.push('\n');
        }
    }
    out.push_str(&format!(
        "------------------------------- answered {} -------------------------------\n",
        status.as_u16()
    ));
    out
}

/// Why the request's signature does not verify with `secret`; `None` when it does.
fn signature_problem(
    headers: &HeaderMap,
    body: &[u8],
    secret: &SigningSecret,
    now: OffsetDateTime,
) -> Option<String> {
    let header = |name: &'static str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| format!("no {name} header"))
    };
    let checked = (|| {
        let id = header("webhook-id")?;
        let timestamp: i64 = header("webhook-timestamp")?
            .trim()
            .parse()
            .map_err(|_| "webhook-timestamp: not a number of seconds".to_owned())?;
        let signature = header("webhook-signature")?;
        webhook_domain::verify(
            std::slice::from_ref(secret),
            id,
            timestamp,
            body,
            signature,
            now,
            TOLERANCE_SECS,
        )
        .map_err(|e| e.to_string())
    })();
    checked.err()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> SigningSecret {
        SigningSecret::from_bytes(&[7; 32]).unwrap()
    }

    fn signed(body: &str, now: OffsetDateTime, secret: &SigningSecret) -> HeaderMap {
        let id = "3c1e6a2e-6f3e-4b7e-9d6a-2a8f7f0c1d2e";
        let timestamp = now.unix_timestamp();
        let mut headers = HeaderMap::new();
        headers.insert("webhook-id", id.parse().unwrap());
        headers.insert("webhook-timestamp", timestamp.to_string().parse().unwrap());
        headers.insert(
            "webhook-signature",
            webhook_domain::sign(secret, id, timestamp, body.as_bytes())
                .parse()
                .unwrap(),
        );
        headers
    }

    fn print(headers: &HeaderMap, body: &str, now: OffsetDateTime) -> String {
        describe(
            &Method::POST,
            &"/hook?x=1".parse().unwrap(),
            headers,
            body.as_bytes(),
            Some(&secret()),
            StatusCode::SERVICE_UNAVAILABLE,
            now,
        )
    }

    #[test]
    fn a_signed_request_is_printed_with_its_body_indented() {
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let body = r#"{"id":"e1","data":{"state":"x"}}"#;
        let out = print(&signed(body, now, &secret()), body, now);
        assert!(out.contains("POST /hook?x=1\n"), "{out}");
        assert!(
            out.contains("webhook-id: 3c1e6a2e-6f3e-4b7e-9d6a-2a8f7f0c1d2e\n"),
            "{out}"
        );
        assert!(out.contains("webhook-timestamp: 1700000000\n"), "{out}");
        assert!(out.contains("signature: valid\n"), "{out}");
        assert!(
            out.contains("  \"data\": {\n    \"state\": \"x\"\n  }"),
            "{out}"
        );
        assert!(out.contains("answered 503"), "{out}");
    }

    #[test]
    fn a_bad_signature_says_why() {
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let other = SigningSecret::from_bytes(&[8; 32]).unwrap();
        let out = print(&signed("{}", now, &other), "{}", now);
        assert!(
            out.contains("signature: INVALID (webhook-signature: no v1 signature matches"),
            "{out}"
        );
        let late = now + time::Duration::minutes(10);
        let out = print(&signed("{}", now, &secret()), "{}", late);
        assert!(
            out.contains("signature: INVALID (webhook-timestamp: is 600 s away"),
            "{out}"
        );
        let out = print(&HeaderMap::new(), "not json", now);
        assert!(
            out.contains("signature: INVALID (no webhook-id header)"),
            "{out}"
        );
        assert!(out.contains("(not JSON)\nnot json\n"), "{out}");
    }
}
