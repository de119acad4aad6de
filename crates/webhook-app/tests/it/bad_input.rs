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

fn cases(webhook: &str, disabled: &str, event: &str) -> Vec<Case> {
    use StatusCode as S;
    let hooks = "/events/webhooks";
    let one = format!("/events/webhooks/{webhook}");
    let unknown = "6a0e3b5f-7d2c-4a57-9f0e-1b3c5d7e9f10";
    let header = |name: &str, value: &str| {
        json!({ "url": "http://x", "customHeaders": { name: value } }).to_string()
    };
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
        wallet(hooks, r#"{"url": "http://x", "retry_policy": {"kind": "fixed"}}"#).named("misspelt webhook setting").expect(S::UNPROCESSABLE_ENTITY, "retry_policy"),
        wallet(hooks, r#"{"url": "ftp://x", "colour": "red"}"#).named("bad URL beside an unknown field").expect(S::UNPROCESSABLE_ENTITY, "scheme"),
        wallet(hooks, r#"{}"#).named("missing url").expect(S::UNPROCESSABLE_ENTITY, "url"),
        wallet(hooks, r#"{"url": "ftp://example.com"}"#).named("other scheme").expect(S::UNPROCESSABLE_ENTITY, "scheme"),
        wallet(hooks, r#"{"url": "http://example.com/hook?q=<b>"}"#).named("not an HTTP request target").expect(S::UNPROCESSABLE_ENTITY, "percent-encode"),
        wallet(hooks, r#"{"url": "javascript:alert(1)"}"#).named("script scheme").expect(S::UNPROCESSABLE_ENTITY, "url"),
        wallet(hooks, r#"{"url": "http://user:pw@example.com"}"#).named("userinfo").expect(S::UNPROCESSABLE_ENTITY, "user"),
        wallet(hooks, r#"{"url": "http://exa mple.com"}"#).named("space in host").expect(S::UNPROCESSABLE_ENTITY, "url"),
        wallet(hooks, r#"{"url": "http://example.com/a b"}"#).named("space in path").expect(S::UNPROCESSABLE_ENTITY, "url"),
        wallet(hooks, r#"{"url": " http://example.com"}"#).named("leading space").expect(S::UNPROCESSABLE_ENTITY, "url"),
        wallet(hooks, r#"{"url": "http://user@example.com"}"#).named("user without password").expect(S::UNPROCESSABLE_ENTITY, "user"),
        wallet(hooks, r#"{"url": "file:///etc/passwd"}"#).named("file scheme").expect(S::UNPROCESSABLE_ENTITY, "scheme"),
        wallet(hooks, r#"{"url": "ws://example.com"}"#).named("websocket scheme").expect(S::UNPROCESSABLE_ENTITY, "scheme"),
        wallet(hooks, r#"{"url": "/relative/path"}"#).named("relative URL").expect(S::UNPROCESSABLE_ENTITY, "url"),
        wallet(hooks, r#"{"url": ""}"#).named("empty URL").expect(S::UNPROCESSABLE_ENTITY, "url"),
        wallet(hooks, r#"{"url": "http://example.com/#frag"}"#).named("fragment").expect(S::UNPROCESSABLE_ENTITY, "fragment"),
        wallet(one.clone(), json!({ "url": long_url }).to_string()).method("PATCH").named("patch with an over-long URL").expect(S::UNPROCESSABLE_ENTITY, "url"),
        wallet(one.clone(), r#"{"url": "http://u:p@example.com"}"#).method("PATCH").named("patch with userinfo").expect(S::UNPROCESSABLE_ENTITY, "user"),
        wallet(hooks, json!({ "url": long_url }).to_string()).named("over-long URL").expect(S::UNPROCESSABLE_ENTITY, "url"),
        wallet(hooks, r#"{"url": "http://x", "customHeaders": {"X-A": "a\r\nB: c"}}"#).named("CR/LF in a header value").expect(S::UNPROCESSABLE_ENTITY, "X-A"),
        wallet(hooks, r#"{"url": "http://x", "customHeaders": {"X-A": "a\u0000b"}}"#).named("NUL in a header value").expect(S::UNPROCESSABLE_ENTITY, "X-A"),
        wallet(hooks, r#"{"url": "http://x", "customHeaders": {"X A": "a"}}"#).named("space in a header name").expect(S::UNPROCESSABLE_ENTITY, "X A"),
        wallet(hooks, header("X-A", "a\rb")).named("CR alone in a header value").expect(S::UNPROCESSABLE_ENTITY, "X-A"),
        wallet(hooks, header("X-A", "a\nb")).named("LF alone in a header value").expect(S::UNPROCESSABLE_ENTITY, "X-A"),
        wallet(hooks, header("X-A\r\nX-B", "a")).named("CR/LF in a header name").expect(S::UNPROCESSABLE_ENTITY, "customHeaders"),
        wallet(hooks, header("X-A\u{0}", "a")).named("NUL in a header name").expect(S::UNPROCESSABLE_ENTITY, "customHeaders"),
        wallet(hooks, header("", "a")).named("empty header name").expect(S::UNPROCESSABLE_ENTITY, "customHeaders"),
        wallet(one.clone(), header("X-A", "a\r\nB: c")).method("PATCH").named("patch with CR/LF in a header value").expect(S::UNPROCESSABLE_ENTITY, "X-A"),
        wallet(hooks, r#"{"url": "http://x", "customHeaders": {"Content-Length": "1"}}"#).named("reserved header").expect(S::UNPROCESSABLE_ENTITY, "Content-Length"),
        wallet(hooks, json!({ "url": "http://x", "customHeaders": many_headers }).to_string()).named("too many headers").expect(S::UNPROCESSABLE_ENTITY, "customHeaders"),
        wallet(hooks, r#"{"url": "http://x", "eventTypes": ["Not A Type"]}"#).named("invalid event type filter").expect(S::UNPROCESSABLE_ENTITY, "eventTypes"),
        wallet(hooks, r#"{"url": "http://x", "eventTypes": []}"#).named("empty event type filter").expect(S::UNPROCESSABLE_ENTITY, "eventTypes"),
        wallet(hooks, r#"{"url": "http://x", "eventTypes": [7]}"#).named("event type filter of numbers").expect(S::UNPROCESSABLE_ENTITY, "eventTypes"),
        wallet(one.clone(), r#"{"eventTypes": ["1st"]}"#).method("PATCH").named("patch with an invalid event type").expect(S::UNPROCESSABLE_ENTITY, "eventTypes"),
        wallet(hooks, r#"{"url": "http://x", "secret": "whsec_short"}"#).named("short secret").expect(S::UNPROCESSABLE_ENTITY, "secret"),
        wallet(hooks, r#"{"url": "http://x", "retryPolicy": {"kind": "fixed", "intervalMs": 1, "maxAttempts": 0}}"#).named("bad retry policy").expect(S::UNPROCESSABLE_ENTITY, "maxAttempts"),
        wallet(hooks, r#"{"url": "http://x", "rateLimit": 0}"#).named("rate limit 0").expect(S::UNPROCESSABLE_ENTITY, "rateLimit"),
        wallet(hooks, r#"{"url": "http://x", "rateLimit": "fast"}"#).named("rate limit text").expect(S::UNPROCESSABLE_ENTITY, "rateLimit"),
        wallet(one.clone(), r#"{"url": "gopher://x"}"#).method("PATCH").named("patch with a bad URL").expect(S::UNPROCESSABLE_ENTITY, "scheme"),
        wallet(one.clone(), r#"{"enabled": "yes"}"#).method("PATCH").named("patch with a wrong type").expect(S::UNPROCESSABLE_ENTITY, "enabled"),
        wallet(one.clone(), r#"{"enabled": null}"#).method("PATCH").named("patch with a null flag").expect(S::UNPROCESSABLE_ENTITY, "enabled"),
        wallet(one.clone(), r#"{"url": null}"#).method("PATCH").named("patch with a null URL").expect(S::UNPROCESSABLE_ENTITY, "url"),
        wallet(one.clone(), r#"{"rateLimit": 10001}"#).method("PATCH").named("patch with a rate limit too high").expect(S::UNPROCESSABLE_ENTITY, "rateLimit"),
        wallet(one.clone(), r#"{"colour": "red"}"#).method("PATCH").named("patch with an unknown field").expect(S::UNPROCESSABLE_ENTITY, "colour"),
        wallet(one.clone(), "{").method("PATCH").named("patch with malformed JSON").expect(S::BAD_REQUEST, "not valid JSON"),
        wallet(format!("{one}/secret/rotate"), r#"{"secret": "nope"}"#).named("rotate to a bad secret").expect(S::UNPROCESSABLE_ENTITY, "secret"),
        wallet(format!("{one}/secret/rotate"), r#"{"graceSeconds": 2592001}"#).named("rotate with too long a grace").expect(S::UNPROCESSABLE_ENTITY, "graceSeconds"),
        wallet(format!("{one}/secret/rotate"), r#"{"graceSeconds": -1}"#).named("rotate with a negative grace").expect(S::UNPROCESSABLE_ENTITY, "graceSeconds"),
        wallet(format!("{one}/secret/rotate"), r#"{"secret": null, "colour": 1}"#).named("rotate with an unknown field").expect(S::UNPROCESSABLE_ENTITY, "colour"),
        // Ids and query strings.
        wallet("/events/webhooks/not-a-uuid", "").method("GET").named("malformed id").expect(S::BAD_REQUEST, "webhook_id"),
        wallet("/events/webhooks/not-a-uuid", "").method("DELETE").named("malformed id on delete").expect(S::BAD_REQUEST, "webhook_id"),
        wallet("/events/deliveries/123/redeliver", "").named("malformed delivery id").expect(S::BAD_REQUEST, "delivery_id"),
        wallet("/events/deliveries/123", "").method("GET").named("malformed delivery id on get").expect(S::BAD_REQUEST, "delivery_id"),
        wallet("/events/not-a-uuid", "").method("GET").named("malformed event id").expect(S::BAD_REQUEST, "event_id"),
        wallet("/events/not-a-uuid/deliveries", "").method("GET").named("malformed event id on deliveries").expect(S::BAD_REQUEST, "event_id"),
        wallet("/events/webhooks/not-a-uuid/test", "").named("malformed id on test").expect(S::BAD_REQUEST, "webhook_id"),
        wallet("/events/webhooks/not-a-uuid/secret/rotate", "").named("malformed id on rotate").expect(S::BAD_REQUEST, "webhook_id"),
        wallet("/events/webhooks/not-a-uuid", r#"{"enabled": false}"#).method("PATCH").named("malformed id on patch").expect(S::BAD_REQUEST, "webhook_id"),
        wallet(format!("{one}/redeliveries/42"), "").method("GET").named("malformed job id").expect(S::BAD_REQUEST, "job_id"),
        wallet("/events/webhooks/6a0e3b5f-7d2c-4a57-9f0e-1b3c5d7e9f1", "").method("GET").named("UUID one digit short").expect(S::BAD_REQUEST, "webhook_id"),
        wallet("/events/webhooks?offset=9223372036854775808", "").method("GET").named("offset past 2^63 - 1").expect(S::BAD_REQUEST, "offset"),
        wallet("/events/webhooks?offset=-1", "").method("GET").named("negative offset").expect(S::BAD_REQUEST, "offset"),
        wallet("/events/webhooks?limit=1001", "").method("GET").named("limit over 1000").expect(S::BAD_REQUEST, "limit"),
        wallet("/events/webhooks?colour=red", "").method("GET").named("unknown query parameter").expect(S::BAD_REQUEST, "colour"),
        wallet("/events/webhooks?limit=0", "").method("GET").named("limit 0").expect(S::BAD_REQUEST, "limit"),
        wallet("/events/webhooks?limit=abc", "").method("GET").named("limit text").expect(S::BAD_REQUEST, "limit"),
        wallet(format!("{one}/deliveries?state=lost"), "").method("GET").named("invalid state filter").expect(S::BAD_REQUEST, "state"),
        wallet(format!("{one}/deliveries?state="), "").method("GET").named("empty state filter").expect(S::BAD_REQUEST, "state"),
        wallet(format!("{one}/deliveries?state=DELIVERED"), "").method("GET").named("state filter in capitals").expect(S::BAD_REQUEST, "state"),
        wallet(format!("/events/{event}/deliveries?state=done"), "").method("GET").named("invalid state filter of an event").expect(S::BAD_REQUEST, "state"),
        wallet("/events/deliveries?state=lost", "").method("GET").named("search: invalid state").expect(S::BAD_REQUEST, "state"),
        wallet("/events/deliveries?eventType=1abc", "").method("GET").named("search: invalid event type").expect(S::BAD_REQUEST, "eventType"),
        wallet("/events/deliveries?webhookId=nope", "").method("GET").named("search: malformed webhook id").expect(S::BAD_REQUEST, "webhookId"),
        wallet("/events/deliveries?since=yesterday", "").method("GET").named("search: malformed since").expect(S::BAD_REQUEST, "since"),
        wallet("/events/deliveries?until=2026-13-01T00:00:00Z", "").method("GET").named("search: malformed until").expect(S::BAD_REQUEST, "until"),
        wallet("/events/deliveries?since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z", "").method("GET").named("search: since after until").expect(S::BAD_REQUEST, "since"),
        wallet("/events/deliveries?limit=0", "").method("GET").named("search: limit 0").expect(S::BAD_REQUEST, "limit"),
        wallet("/events/deliveries?limit=1001", "").method("GET").named("search: limit over 1000").expect(S::BAD_REQUEST, "limit"),
        wallet("/events/deliveries?offset=5", "").method("GET").named("search: offset, which it does not take").expect(S::BAD_REQUEST, "offset"),
        wallet(format!("/events/deliveries?cursor={}", "0".repeat(64)), "").method("GET").named("search: forged cursor").expect(S::BAD_REQUEST, "cursor"),
        wallet(format!("{one}/stats?window=7d"), "").method("GET").named("stats: unknown window").expect(S::BAD_REQUEST, "window"),
        wallet(format!("{one}/stats?from=now"), "").method("GET").named("stats: unknown parameter").expect(S::BAD_REQUEST, "from"),
        wallet("/events/webhooks/nope/stats", "").method("GET").named("stats: malformed webhook id").expect(S::BAD_REQUEST, "webhook_id"),
        wallet(format!("/events/webhooks/{unknown}/stats"), "").method("GET").named("stats: unknown webhook").expect(S::NOT_FOUND, "webhook"),
        wallet("/system/overview", "").method("GET").named("overview with a wallet key").expect(S::FORBIDDEN, "admin"),
        wallet(format!("/events/{event}/deliveries?offset=9223372036854775808"), "").method("GET").named("offset past 2^63 - 1 of an event's deliveries").expect(S::BAD_REQUEST, "offset"),
        wallet(format!("{one}/redeliver"), r#"{"since": "2026-01-01T00:00:00Z", "colour": 1}"#).named("redeliver with an unknown field").expect(S::UNPROCESSABLE_ENTITY, "colour"),
        wallet(format!("{one}/redeliver"), r#"{}"#).named("redeliver without since").expect(S::UNPROCESSABLE_ENTITY, "since"),
        wallet(format!("/events/webhooks/{disabled}/redeliver"), r#"{"since": "2000-01-01T00:00:00Z"}"#).named("redeliver for a disabled webhook").expect(S::CONFLICT, "disabled"),
        wallet(format!("{one}/redeliver"), r#"{"since": "yesterday"}"#).named("invalid time").expect(S::UNPROCESSABLE_ENTITY, "since"),
        wallet(format!("{one}/redeliver"), r#"{"since": "0000-01-01T00:30:00+01:00"}"#).named("since before year 0000 in UTC").expect(S::UNPROCESSABLE_ENTITY, "since"),
        // Events.
        wallet("/events", r#"{"type": "Not A Type", "data": {}}"#).named("invalid event type").expect(S::UNPROCESSABLE_ENTITY, "type"),
        wallet("/events", r#"{"type": "ConnectionUpdated", "data": {"connectionId": "c", "state": "Nope"}}"#).named("invalid state").expect(S::UNPROCESSABLE_ENTITY, "data.state"),
        wallet("/events", r#"{"type": "DIDStatusUpdated", "data": {"status": "PUBLISHED"}}"#).named("missing required field").expect(S::UNPROCESSABLE_ENTITY, "data.did"),
        wallet("/events", r#"{"type": "Custom.Thing"}"#).named("missing data").expect(S::UNPROCESSABLE_ENTITY, "data"),
        wallet("/events", r#"{"type": "Custom.Thing", "data": {}, "id": "nope"}"#).named("invalid event id").expect(S::UNPROCESSABLE_ENTITY, "id"),
        wallet("/events", r#"{"type": "Custom.Thing", "data": {}}"#).header("idempotency-key", "").named("empty idempotency key").expect(S::BAD_REQUEST, "Idempotency-Key"),
        wallet("/events", r#"{"type": "Custom.Thing", "data": {}}"#).header("idempotency-key", "k".repeat(300)).named("long idempotency key").expect(S::BAD_REQUEST, "Idempotency-Key"),
        wallet("/events", r#"{"type": "Custom.Thing", "data": {}}"#).header("idempotency-key", "used-key").named("idempotency key reused with another body").expect(S::CONFLICT, "idempotency key"),
        wallet("/events", r#"{"type": "Custom.Thing", "data": {"n": 2}, "idempotencyKey": "used-key"}"#).named("idempotency key reused in the body with another body").expect(S::CONFLICT, "idempotency key"),
        wallet("/events", r#"{"type": "Custom.Thing", "data": {"n": 1}}"#).header("idempotency-key", "used-key").header("content-type", "text/plain").named("idempotency key reused with a refused body").expect(S::UNSUPPORTED_MEDIA_TYPE, "Content-Type"),
        wallet("/events", r#"{"type": "Custom.Thing", "data": {}, "idempotencyKey": "k"}"#).header("idempotency-key", "k").named("idempotency key in the header and the body").expect(S::UNPROCESSABLE_ENTITY, "idempotencyKey"),
        wallet("/events", r#"{"type": "Custom.Thing", "data": {}, "idempotencyKey": "has space"}"#).named("idempotency key with a space").expect(S::UNPROCESSABLE_ENTITY, "idempotencyKey"),
        wallet("/events", r#"{"type": "Custom.Thing", "data": {}}"#).header("idempotency-key", "k\tk").named("idempotency key with a tab").expect(S::BAD_REQUEST, "Idempotency-Key"),
        wallet("/events", r#"{"type": "", "data": {}}"#).named("empty event type").expect(S::UNPROCESSABLE_ENTITY, "type"),
        wallet("/events", r#"{"type": "A\r\nB", "data": {}}"#).named("CR/LF in an event type").expect(S::UNPROCESSABLE_ENTITY, "type"),
        wallet("/events", json!({ "type": "a".repeat(129), "data": {} }).to_string()).named("over-long event type").expect(S::UNPROCESSABLE_ENTITY, "type"),
        wallet("/events", r#"{"type": 7, "data": {}}"#).named("event type of the wrong type").expect(S::UNPROCESSABLE_ENTITY, "type"),
        wallet("/events", r#"{"type": "PresentationUpdated", "data": {"presentationId": "p", "status": "Lost"}}"#).named("invalid presentation state").expect(S::UNPROCESSABLE_ENTITY, "data.status"),
        wallet("/events", r#"{"type": "Custom.Thing", "data": {}, "colour": 1}"#).named("unknown field of an event").expect(S::UNPROCESSABLE_ENTITY, "colour"),
        wallet("/events", r#"{"type": "Custom.Thing", "data": {}, "walletId": "6a0e3b5f-7d2c-4a57-9f0e-1b3c5d7e9f10"}"#).named("wallet key naming another wallet").expect(S::FORBIDDEN, "walletId"),
        wallet("/events/batch", batch_of(1001)).named("batch too large").expect(S::UNPROCESSABLE_ENTITY, "1000"),
        wallet("/events/batch", r#"{"events": [{"type": "Custom.Thing", "data": {}}, {"type": "x y", "data": {}}]}"#).named("batch with a bad event").expect(S::UNPROCESSABLE_ENTITY, "events[1]"),
        wallet("/events/batch", r#"{"events": []}"#).named("empty batch").expect(S::UNPROCESSABLE_ENTITY, "events"),
        wallet("/events/batch", r#"{"events": {}}"#).named("batch of the wrong type").expect(S::UNPROCESSABLE_ENTITY, "events"),
        wallet("/events/batch", r#"{"events": [{"type": "Custom.Thing", "data": {}}], "colour": 1}"#).named("batch with an unknown field").expect(S::UNPROCESSABLE_ENTITY, "colour"),
        wallet("/events/batch", r#"{"events": [{"type": "Custom.Thing", "data": {}, "idempotencyKey": "used-key"}, {"type": "Custom.Other", "data": {}}]}"#).named("batch reusing an idempotency key with another body").expect(S::CONFLICT, "idempotency key"),
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
        wallet("/iam/apikey-authentication", r#"{"entityId": "nope", "apiKey": "k"}"#).admin().named("key for a malformed entity id").expect(S::UNPROCESSABLE_ENTITY, "entityId"),
        wallet("/iam/apikey-authentication", r#"{"entityId": "6a0e3b5f-7d2c-4a57-9f0e-1b3c5d7e9f10", "apiKey": "has space", "x": 1}"#).admin().named("bad key beside an unknown field").expect(S::UNPROCESSABLE_ENTITY, "apiKey"),
        wallet("/iam/apikey-authentication", json!({ "entityId": unknown, "apiKey": "k".repeat(257) }).to_string()).admin().named("over-long key").expect(S::UNPROCESSABLE_ENTITY, "apiKey"),
        wallet("/iam/entities", r#"{"name": "x", "walletId": "nope"}"#).admin().named("entity with a malformed wallet id").expect(S::UNPROCESSABLE_ENTITY, "walletId"),
        wallet("/iam/entities", r#"{"name": "a\u0000b"}"#).admin().named("entity name with NUL").expect(S::UNPROCESSABLE_ENTITY, "name"),
        wallet("/iam/entities", r#"{"name": "", "colour": 1}"#).admin().named("bad entity name beside an unknown field").expect(S::UNPROCESSABLE_ENTITY, "name"),
        wallet("/iam/entities/nope", "").method("GET").admin().named("malformed entity id").expect(S::BAD_REQUEST, "entity_id"),
        wallet("/wallets", json!({ "name": "n".repeat(129) }).to_string()).admin().named("over-long wallet name").expect(S::UNPROCESSABLE_ENTITY, "name"),
        wallet("/wallets", r#"{"name": "a\u0085b"}"#).admin().named("wallet name with a C1 control").expect(S::UNPROCESSABLE_ENTITY, "name"),
        wallet("/wallets", r#"{"name": 7}"#).admin().named("wallet name of the wrong type").expect(S::UNPROCESSABLE_ENTITY, "name"),
        wallet("/wallets", r#"{"name": "x", "seed": "zz", "colour": 1}"#).admin().named("bad seed beside an unknown field").expect(S::UNPROCESSABLE_ENTITY, "seed"),
        wallet("/wallets", "{").admin().named("wallet with malformed JSON").expect(S::BAD_REQUEST, "not valid JSON"),
        wallet("/wallets?limit=0", "").method("GET").admin().named("wallet listing with limit 0").expect(S::BAD_REQUEST, "limit"),
        wallet("/wallets?offset=9223372036854775808", "").method("GET").admin().named("wallet listing past 2^63 - 1").expect(S::BAD_REQUEST, "offset"),
        wallet("/wallets/nope", "").method("GET").admin().named("malformed wallet id").expect(S::BAD_REQUEST, "wallet_id"),
        wallet("/wallets/nope/apikeys", "").admin().named("key for a malformed wallet id").expect(S::BAD_REQUEST, "wallet_id"),
        wallet(format!("/wallets/{unknown}/apikeys"), "").admin().named("key for an unknown wallet").expect(S::NOT_FOUND, "wallet"),
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
    let disabled = call_bytes(
        "POST",
        &service.url("/events/webhooks"),
        &[("content-type", "application/json"), ("apikey", API_KEY)],
        br#"{"url": "http://localhost:9096/hook", "eventTypes": ["Other.Type"], "enabled": false}"#
            .to_vec(),
    )
    .await;
    assert_eq!(disabled.status, StatusCode::OK);
    let disabled = disabled.json["id"].as_str().unwrap().to_owned();
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
    let event = first.json["id"].as_str().unwrap().to_owned();
    let cases = cases(&webhook, &disabled, &event);
    // A failure names its row, so each name must be unique.
    let mut names: Vec<&str> = cases.iter().map(|c| c.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), cases.len(), "two rows share a name");
    for case in cases {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_changes_nothing_on_mysql() {
    bad_input_is_refused_and_changes_nothing(Backend::Mysql).await;
}
