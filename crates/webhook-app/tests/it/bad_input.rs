//! Every kind of bad input, on every endpoint that takes input: each gets its documented status
//! with a problem body that names what was wrong, and the database is exactly as it was.

use hyper::StatusCode;
use serde_json::json;

use crate::api::assert_problem;
use crate::utils::{ADMIN_KEY, API_KEY, Backend, Service, call_bytes};

/// One refused request: what is sent, and what must come back.
struct Case {
    name: &'static str,
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    status: StatusCode,
    detail: &'static str,
}

fn wallet(path: impl Into<String>, body: impl Into<Vec<u8>>) -> Case {
    Case {
        name: "",
        method: "POST",
        path: path.into(),
        headers: vec![
            ("content-type", "application/json".to_owned()),
            ("apikey", API_KEY.to_owned()),
        ],
        body: body.into(),
        status: StatusCode::UNPROCESSABLE_ENTITY,
        detail: "",
    }
}

impl Case {
    fn named(mut self, name: &'static str) -> Self {
        self.name = name;
        self
    }
    fn method(mut self, method: &'static str) -> Self {
        self.method = method;
        self
    }
    fn expect(mut self, status: StatusCode, detail: &'static str) -> Self {
        self.status = status;
        self.detail = detail;
        self
    }
    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.retain(|(n, _)| *n != name);
        self.headers.push((name, value.into()));
        self
    }
    fn without(mut self, name: &'static str) -> Self {
        self.headers.retain(|(n, _)| *n != name);
        self
    }
    fn admin(self) -> Self {
        self.without("apikey").header("x-admin-api-key", ADMIN_KEY)
    }
}

fn cases(webhook: &str) -> Vec<Case> {
    use StatusCode as S;
    let hooks = "/events/webhooks";
    let one = format!("/events/webhooks/{webhook}");
    let long_url = format!("http://example.com/{}", "a".repeat(2100));
    let deep = format!("{}{}", "[".repeat(40), "]".repeat(40));
    let deep_data = format!(
        r#"{{"type": "Custom.Thing", "data": {}1{}}}"#,
        r#"{"a":"#.repeat(40),
        "}".repeat(40)
    );
    let huge = format!(
        r#"{{"type": "Custom.Thing", "data": {{"blob": "{}"}}}}"#,
        "x".repeat(300 * 1024)
    );
    let many_headers: serde_json::Map<String, serde_json::Value> =
        (0..200).map(|i| (format!("X-H{i}"), json!("v"))).collect();
    let batch_of = |n: usize| {
        json!({ "events": vec![json!({ "type": "Custom.Thing", "data": {} }); n] }).to_string()
    };
    vec![
        // Body, content type, encoding, nesting.
        wallet(hooks, r#"{"url": "#).named("malformed JSON").expect(S::BAD_REQUEST, "not valid JSON"),
        wallet(hooks, r#"{"url": "http://x"} trailing"#).named("trailing bytes").expect(S::BAD_REQUEST, "not valid JSON"),
        wallet(hooks, "").named("empty body").expect(S::BAD_REQUEST, "empty"),
        wallet(hooks, b"{\"url\": \"http://x\xff\"}".to_vec()).named("invalid UTF-8").expect(S::BAD_REQUEST, "UTF-8"),
        wallet(hooks, r#"{"url": "http://x"}"#).header("content-type", "text/plain").named("wrong content type").expect(S::UNSUPPORTED_MEDIA_TYPE, "Content-Type"),
        wallet(hooks, r#"{"url": "http://x"}"#).without("content-type").named("no content type").expect(S::UNSUPPORTED_MEDIA_TYPE, "Content-Type"),
        wallet("/events", huge).named("body over 256 KiB").expect(S::PAYLOAD_TOO_LARGE, "bytes"),
        wallet("/events", deep_data).named("deep event data").expect(S::BAD_REQUEST, "deeper"),
        wallet(hooks, deep).named("deep array").expect(S::BAD_REQUEST, "deeper"),
        // Shapes and fields of a webhook.
        wallet(hooks, r#"[1, 2]"#).named("array body").expect(S::UNPROCESSABLE_ENTITY, "object"),
        wallet(hooks, r#"{"url": 42}"#).named("wrong type").expect(S::UNPROCESSABLE_ENTITY, "url"),
        wallet(hooks, r#"{"url": "http://x", "colour": "red"}"#).named("unknown field").expect(S::UNPROCESSABLE_ENTITY, "colour"),
        wallet(hooks, r#"{}"#).named("missing url").expect(S::UNPROCESSABLE_ENTITY, "url"),
        wallet(hooks, r#"{"url": "ftp://example.com"}"#).named("other scheme").expect(S::UNPROCESSABLE_ENTITY, "scheme"),
        wallet(hooks, r#"{"url": "javascript:alert(1)"}"#).named("script scheme").expect(S::UNPROCESSABLE_ENTITY, "url"),
        wallet(hooks, r#"{"url": "http://user:pw@example.com"}"#).named("userinfo").expect(S::UNPROCESSABLE_ENTITY, "user"),
        wallet(hooks, r#"{"url": "http://exa mple.com"}"#).named("space in host").expect(S::UNPROCESSABLE_ENTITY, "url"),
        wallet(hooks, json!({ "url": long_url }).to_string()).named("over-long URL").expect(S::UNPROCESSABLE_ENTITY, "url"),
        wallet(hooks, r#"{"url": "http://x", "customHeaders": {"X-A": "a\r\nB: c"}}"#).named("CR/LF in a header value").expect(S::UNPROCESSABLE_ENTITY, "X-A"),
        wallet(hooks, r#"{"url": "http://x", "customHeaders": {"X-A": "a\u0000b"}}"#).named("NUL in a header value").expect(S::UNPROCESSABLE_ENTITY, "X-A"),
        wallet(hooks, r#"{"url": "http://x", "customHeaders": {"X A": "a"}}"#).named("space in a header name").expect(S::UNPROCESSABLE_ENTITY, "X A"),
        wallet(hooks, r#"{"url": "http://x", "customHeaders": {"Content-Length": "1"}}"#).named("reserved header").expect(S::UNPROCESSABLE_ENTITY, "Content-Length"),
        wallet(hooks, json!({ "url": "http://x", "customHeaders": many_headers }).to_string()).named("too many headers").expect(S::UNPROCESSABLE_ENTITY, "customHeaders"),
        wallet(hooks, r#"{"url": "http://x", "eventTypes": ["Not A Type"]}"#).named("invalid event type filter").expect(S::UNPROCESSABLE_ENTITY, "eventTypes"),
        wallet(hooks, r#"{"url": "http://x", "secret": "whsec_short"}"#).named("short secret").expect(S::UNPROCESSABLE_ENTITY, "secret"),
        wallet(hooks, r#"{"url": "http://x", "retryPolicy": {"kind": "fixed", "intervalMs": 1, "maxAttempts": 0}}"#).named("bad retry policy").expect(S::UNPROCESSABLE_ENTITY, "maxAttempts"),
        wallet(hooks, r#"{"url": "http://x", "rateLimit": 0}"#).named("rate limit 0").expect(S::UNPROCESSABLE_ENTITY, "rateLimit"),
        wallet(hooks, r#"{"url": "http://x", "rateLimit": "fast"}"#).named("rate limit text").expect(S::UNPROCESSABLE_ENTITY, "rateLimit"),
        wallet(one.clone(), r#"{"url": "gopher://x"}"#).method("PATCH").named("patch with a bad URL").expect(S::UNPROCESSABLE_ENTITY, "scheme"),
        wallet(one.clone(), r#"{"enabled": "yes"}"#).method("PATCH").named("patch with a wrong type").expect(S::UNPROCESSABLE_ENTITY, "enabled"),
        wallet(format!("{one}/secret/rotate"), r#"{"secret": "nope"}"#).named("rotate to a bad secret").expect(S::UNPROCESSABLE_ENTITY, "secret"),
        // Ids and query strings.
        wallet("/events/webhooks/not-a-uuid", "").method("GET").named("malformed id").expect(S::BAD_REQUEST, "webhook_id"),
        wallet("/events/webhooks/not-a-uuid", "").method("DELETE").named("malformed id on delete").expect(S::BAD_REQUEST, "webhook_id"),
        wallet("/events/deliveries/123/redeliver", "").named("malformed delivery id").expect(S::BAD_REQUEST, "delivery_id"),
        wallet("/events/webhooks?limit=0", "").method("GET").named("limit 0").expect(S::BAD_REQUEST, "limit"),
        wallet("/events/webhooks?limit=abc", "").method("GET").named("limit text").expect(S::BAD_REQUEST, "limit"),
        wallet(format!("{one}/deliveries?state=lost"), "").method("GET").named("invalid state filter").expect(S::BAD_REQUEST, "state"),
        wallet(format!("{one}/redeliver"), r#"{"since": "yesterday"}"#).named("invalid time").expect(S::UNPROCESSABLE_ENTITY, "since"),
        // Events.
        wallet("/events", r#"{"type": "Not A Type", "data": {}}"#).named("invalid event type").expect(S::UNPROCESSABLE_ENTITY, "type"),
        wallet("/events", r#"{"type": "ConnectionUpdated", "data": {"connectionId": "c", "state": "Nope"}}"#).named("invalid state").expect(S::UNPROCESSABLE_ENTITY, "data.state"),
        wallet("/events", r#"{"type": "DIDStatusUpdated", "data": {"status": "PUBLISHED"}}"#).named("missing required field").expect(S::UNPROCESSABLE_ENTITY, "data.did"),
        wallet("/events", r#"{"type": "Custom.Thing"}"#).named("missing data").expect(S::UNPROCESSABLE_ENTITY, "data"),
        wallet("/events", r#"{"type": "Custom.Thing", "data": {}, "id": "nope"}"#).named("invalid event id").expect(S::UNPROCESSABLE_ENTITY, "id"),
        wallet("/events", r#"{"type": "Custom.Thing", "data": {}}"#).header("idempotency-key", "").named("empty idempotency key").expect(S::BAD_REQUEST, "Idempotency-Key"),
        wallet("/events", r#"{"type": "Custom.Thing", "data": {}}"#).header("idempotency-key", "k".repeat(300)).named("long idempotency key").expect(S::BAD_REQUEST, "Idempotency-Key"),
        wallet("/events", r#"{"type": "Custom.Thing", "data": {}}"#).header("idempotency-key", "used-key").named("idempotency key reused with another body").expect(S::CONFLICT, "idempotency key"),
        wallet("/events/batch", batch_of(1001)).named("batch too large").expect(S::UNPROCESSABLE_ENTITY, "1000"),
        wallet("/events/batch", r#"{"events": [{"type": "Custom.Thing", "data": {}}, {"type": "x y", "data": {}}]}"#).named("batch with a bad event").expect(S::UNPROCESSABLE_ENTITY, "events[1]"),
        // Credentials.
        wallet(hooks, r#"{"url": "http://x"}"#).without("apikey").named("no key").expect(S::UNAUTHORIZED, "apikey"),
        wallet(hooks, r#"{"url": "http://x"}"#).header("apikey", "wrong").named("wrong key").expect(S::UNAUTHORIZED, "apikey"),
        wallet("/wallets", r#"{"name": "x"}"#).named("admin call with a wallet key").expect(S::FORBIDDEN, "admin key"),
        wallet("/wallets", r#"{"name": "x"}"#).admin().header("x-admin-api-key", "wrong").named("wrong admin key").expect(S::UNAUTHORIZED, "x-admin-api-key"),
        // Admin bodies.
        wallet("/wallets", r#"{"name": ""}"#).admin().named("empty wallet name").expect(S::UNPROCESSABLE_ENTITY, "name"),
        wallet("/wallets", r#"{"name": "x", "seed": "not hex"}"#).admin().named("seed not hex").expect(S::UNPROCESSABLE_ENTITY, "seed"),
        wallet("/wallets", r#"{"name": "x", "id": "nope"}"#).admin().named("invalid wallet id").expect(S::UNPROCESSABLE_ENTITY, "id"),
        wallet("/iam/entities", r#"{"name": "x", "walletId": "6a0e3b5f-7d2c-4a57-9f0e-1b3c5d7e9f10"}"#).admin().named("entity of an unknown wallet").expect(S::NOT_FOUND, "wallet"),
        wallet("/iam/apikey-authentication", r#"{"entityId": "6a0e3b5f-7d2c-4a57-9f0e-1b3c5d7e9f10", "apiKey": "k"}"#).admin().named("key for an unknown entity").expect(S::NOT_FOUND, "entity"),
        wallet("/iam/apikey-authentication", r#"{"entityId": "6a0e3b5f-7d2c-4a57-9f0e-1b3c5d7e9f10", "apiKey": "has space"}"#).admin().named("key with a space").expect(S::UNPROCESSABLE_ENTITY, "apiKey"),
        // Routes and methods.
        wallet("/nowhere", "").method("GET").named("unknown route").expect(S::NOT_FOUND, ""),
        wallet(hooks, "").method("PUT").named("wrong method").expect(S::METHOD_NOT_ALLOWED, ""),
    ]
}

async fn bad_input_is_refused_and_changes_nothing(backend: Backend) {
    let Some(mut service) = Service::start_on(backend).await else {
        return;
    };
    // Something to refer to and to protect: a webhook, and an event under a key. The webhook
    // wants no event of the test's type, so no delivery is made and nothing else writes.
    let webhook = call_bytes(
        "POST",
        &service.url("/events/webhooks"),
        &[("content-type", "application/json"), ("apikey", API_KEY)],
        br#"{"url": "http://localhost:9095/hook", "eventTypes": ["Other.Type"]}"#.to_vec(),
    )
    .await;
    assert_eq!(webhook.status, StatusCode::OK);
    let webhook = webhook.json["id"].as_str().unwrap().to_owned();
    let first = call_bytes(
        "POST",
        &service.url("/events"),
        &[
            ("content-type", "application/json"),
            ("apikey", API_KEY),
            ("idempotency-key", "used-key"),
        ],
        br#"{"type": "Custom.Thing", "data": {"n": 1}}"#.to_vec(),
    )
    .await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    assert_eq!(first.json["deliveries"], 0);
    let before = service.snapshot().await;
    for case in cases(&webhook) {
        let headers: Vec<(&str, &str)> =
            case.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let answer = call_bytes(case.method, &service.url(&case.path), &headers, case.body).await;
        assert_eq!(answer.status, case.status, "{}: {}", case.name, answer.json);
        assert_problem(&answer, case.status, case.detail);
        assert_eq!(
            service.snapshot().await,
            before,
            "{}: the database changed",
            case.name
        );
    }
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_changes_nothing_on_sqlite() {
    bad_input_is_refused_and_changes_nothing(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_changes_nothing_on_postgres() {
    bad_input_is_refused_and_changes_nothing(Backend::Postgres).await;
}
