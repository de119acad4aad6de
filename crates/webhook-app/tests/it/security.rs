//! Security properties over real HTTP: repeated failed authentications from one address get
//! 429 (and only that address, and only for the window), and a webhook URL whose host is an
//! address the SSRF guard refuses is refused at registration.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;

use crate::api::{Auth, assert_problem, request};
use crate::utils::{API_KEY, Answer, Backend, Service};

/// An answer with its `Retry-After` header.
struct Limited {
    answer: Answer,
    retry_after: Option<String>,
}

/// Sends one request from the local address `source` (e.g. 127.0.0.2), so that the service
/// sees another client address.
async fn call_from(
    source: IpAddr,
    service: &Service,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Limited {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source, 0)).unwrap();
    let stream = socket.connect(service.addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut builder = Request::builder()
        .method(method)
        .uri(service.url(path))
        .header("host", service.addr.to_string());
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let response = sender
        .send_request(builder.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let content_type = header("content-type").unwrap_or_default();
    let retry_after = header("retry-after");
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let json = if bytes.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    Limited {
        answer: Answer {
            status,
            content_type,
            json,
        },
        retry_after,
    }
}

const LIMIT: u32 = 3;
const WINDOW_MS: u64 = 1500;

fn local(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_auth_failures_from_one_address_get_429_until_the_window_ends() {
    let mut service = Service::start_with(Backend::Sqlite, |s| {
        s.api.auth_failure_limit = LIMIT;
        s.api.auth_failure_window_ms = WINDOW_MS;
    })
    .await
    .unwrap();
    let (me, other) = (local(1), local(2));
    let good = [("apikey", API_KEY)];
    let hooks = "/events/webhooks";

    // Successes are never counted.
    for _ in 0..2 * LIMIT {
        let ok = call_from(me, &service, "GET", hooks, &good).await;
        assert_eq!(ok.answer.status, StatusCode::OK);
    }
    // LIMIT failures of any kind (wrong wallet key, missing key, wrong admin key) are 401s...
    let failures: [(&str, &[(&str, &str)]); 3] = [
        (hooks, &[("apikey", "wrong-key")]),
        (hooks, &[]),
        ("/wallets", &[("x-admin-api-key", "wrong-admin-key")]),
    ];
    for (path, headers) in failures {
        let refused = call_from(me, &service, "GET", path, headers).await;
        assert_eq!(refused.answer.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(refused.retry_after, None);
    }
    // ...and the next call from that address is 429, whatever key it brings.
    for headers in [&[("apikey", "wrong-key")][..], &good[..]] {
        let limited = call_from(me, &service, "GET", hooks, headers).await;
        assert_problem(
            &limited.answer,
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed authentications",
        );
        assert!(
            limited.answer.json["type"]
                .as_str()
                .unwrap()
                .ends_with("/too-many-requests")
        );
        let wait: u64 = limited.retry_after.unwrap().parse().unwrap();
        assert!((1..=2).contains(&wait), "Retry-After {wait}");
    }
    // Admin calls and publishing are limited alike; calls without a key are not.
    let admin = call_from(me, &service, "GET", "/wallets", &[("x-admin-api-key", "x")]).await;
    assert_eq!(admin.answer.status, StatusCode::TOO_MANY_REQUESTS);
    let publish = call_from(me, &service, "POST", "/events", &good).await;
    assert_eq!(publish.answer.status, StatusCode::TOO_MANY_REQUESTS);
    let (health, _, _) = crate::utils::get_text(&format!("http://{}/health", service.addr)).await;
    assert_eq!(health, StatusCode::OK);

    // Another address is not affected: its key works and its failure is a plain 401.
    let theirs = call_from(other, &service, "GET", hooks, &good).await;
    assert_eq!(theirs.answer.status, StatusCode::OK);
    let theirs = call_from(other, &service, "GET", hooks, &[("apikey", "nope")]).await;
    assert_eq!(theirs.answer.status, StatusCode::UNAUTHORIZED);

    // Once the window has passed, the address is served again.
    tokio::time::sleep(Duration::from_millis(WINDOW_MS + 100)).await;
    let again = call_from(me, &service, "GET", hooks, &good).await;
    assert_eq!(again.answer.status, StatusCode::OK, "{}", again.answer.json);
    let again = call_from(me, &service, "GET", hooks, &[("apikey", "wrong")]).await;
    assert_eq!(again.answer.status, StatusCode::UNAUTHORIZED);
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_of_zero_never_refuses() {
    let mut service = Service::start_with(Backend::Sqlite, |s| {
        s.api.auth_failure_limit = 0;
    })
    .await
    .unwrap();
    for _ in 0..30 {
        let refused = call_from(local(1), &service, "GET", "/events/webhooks", &[]).await;
        assert_eq!(refused.answer.status, StatusCode::UNAUTHORIZED);
    }
    service.stop().await;
}

/// Each refused class, in the spellings the URL standard reads as an address, is refused at
/// registration (and in a change) with 422, and nothing is stored; a name and an allowed
/// address are accepted.
async fn refused_addresses_are_refused_at_registration(backend: Backend) {
    let Some(mut service) = Service::start_on(backend).await else {
        return;
    };
    let before = service.snapshot().await;
    let rows = [
        (
            "http://169.254.169.254/latest/meta-data/",
            "169.254.169.254 is link-local",
        ),
        (
            "http://[::ffff:169.254.169.254]/",
            "::ffff:169.254.169.254 is link-local",
        ),
        ("http://10.0.0.1:8080/hook", "10.0.0.1 is private"),
        ("http://[fd00::1]/hook", "fd00::1 is private"),
        ("http://0/", "0.0.0.0 is unspecified"),
        ("http://[::]/", ":: is unspecified"),
        ("http://100.64.0.1/", "100.64.0.1 is CGNAT"),
        ("http://224.0.0.1/", "224.0.0.1 is multicast"),
        ("http://255.255.255.255/", "255.255.255.255 is broadcast"),
        ("http://192.0.2.1/", "192.0.2.1 is documentation"),
        ("http://240.0.0.1/", "240.0.0.1 is reserved"),
        ("http://[::1]:9/", "::1 is loopback"),
        ("http://[64:ff9b::a00:1]/", "64:ff9b::a00:1 is private"),
        (
            "http://[2002:a9fe:a9fe::]/",
            "2002:a9fe:a9fe:: is link-local",
        ),
    ];
    for (url, says) in rows {
        let refused = request(
            &service,
            "POST",
            "/events/webhooks",
            Auth::Wallet(API_KEY),
            Some(json!({ "url": url })),
        )
        .await;
        assert_problem(&refused, StatusCode::UNPROCESSABLE_ENTITY, says);
        assert!(
            refused.json["detail"]
                .as_str()
                .unwrap()
                .starts_with("url: "),
            "{}",
            refused.json
        );
    }
    assert_eq!(
        service.snapshot().await,
        before,
        "a refused URL stores nothing"
    );

    // 127.0.0.0/8 is allowed in the tests' settings; a name is judged at delivery.
    let created = crate::api::register_for(
        &service,
        API_KEY,
        json!({ "url": "http://127.0.0.1:9/hook" }),
    )
    .await;
    let id = created.json["id"].as_str().unwrap().to_owned();
    let changed = request(
        &service,
        "PATCH",
        &format!("/events/webhooks/{id}"),
        Auth::Wallet(API_KEY),
        Some(json!({ "url": "http://2130706433/" })),
    )
    .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.json);
    let moved = request(
        &service,
        "PATCH",
        &format!("/events/webhooks/{id}"),
        Auth::Wallet(API_KEY),
        Some(json!({ "url": "http://0xa9fea9fe/" })),
    )
    .await;
    assert_problem(
        &moved,
        StatusCode::UNPROCESSABLE_ENTITY,
        "169.254.169.254 is link-local",
    );
    let read = request(
        &service,
        "GET",
        &format!("/events/webhooks/{id}"),
        Auth::Wallet(API_KEY),
        None,
    )
    .await;
    assert_eq!(
        read.json["url"], "http://2130706433/",
        "the refused change stored nothing"
    );
    crate::api::register_for(
        &service,
        API_KEY,
        json!({ "url": "http://localhost:9/hook" }),
    )
    .await;
    service.stop().await;
}

crate::on_every_backend!(refused_addresses_are_refused_at_registration);
