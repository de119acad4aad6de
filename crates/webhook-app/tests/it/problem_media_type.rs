//! The media type of error answers: Identus documents (and sends) its errors as
//! `application/json`, so webhookd does too, unless the request's `Accept` asks for
//! `application/problem+json`. The body is the same problem object either way.

use hyper::StatusCode;

use crate::utils::{ADMIN_KEY, API_KEY, Answer, Backend, Service, call};

const JSON: &str = "application/json";
const PROBLEM: &str = "application/problem+json";

/// `Accept` header values (several for one request when more than one) and the media type
/// the error answer must have.
fn accept_rows() -> Vec<(Vec<&'static str>, &'static str)> {
    vec![
        (vec![], JSON),
        (vec!["application/json"], JSON),
        (vec!["*/*"], JSON),
        (vec!["application/*"], JSON),
        (vec!["text/html"], JSON),
        (vec![""], JSON),
        (vec!["application/problem+json"], PROBLEM),
        (vec!["APPLICATION/Problem+JSON"], PROBLEM),
        (vec!["application/problem+json; charset=utf-8"], PROBLEM),
        (vec!["application/problem+json;q=0"], JSON),
        (vec!["application/problem+json; q=0.000, */*"], JSON),
        (vec!["application/json, application/problem+json"], PROBLEM),
        (vec!["application/problem+json, application/json"], PROBLEM),
        (
            vec!["application/json;q=0.9, application/problem+json"],
            PROBLEM,
        ),
        (
            vec!["application/problem+json;q=0.5, application/json"],
            JSON,
        ),
        (
            vec!["application/problem+json;q=0.5, application/*;q=0.4"],
            PROBLEM,
        ),
        (vec!["application/problem+json;q=0.5, */*;q=0.6"], JSON),
        (vec!["text/html, application/problem+json;q=0.1"], PROBLEM),
        (vec!["application/problem+json;q=abc"], JSON),
        (vec!["application/problem+json;q=1.5"], JSON),
        (
            vec![r#"application/json; note="a, application/problem+json, b""#],
            JSON,
        ),
        (vec!["text/html", "application/problem+json"], PROBLEM),
        (
            vec!["application/problem+json", "application/problem+json;q=0"],
            PROBLEM,
        ),
        (vec!["application/problem+jsonx"], JSON),
    ]
}

/// One request that fails, and its status.
struct Failing {
    name: &'static str,
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: String,
    status: StatusCode,
}

/// A wallet's JSON request.
fn wallet(name: &'static str, method: &'static str, path: &str, body: &str) -> Failing {
    Failing {
        name,
        method,
        path: path.to_owned(),
        headers: vec![
            ("content-type", "application/json".to_owned()),
            ("apikey", API_KEY.to_owned()),
        ],
        body: body.to_owned(),
        status: StatusCode::OK,
    }
}

impl Failing {
    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.retain(|(n, _)| *n != name);
        self.headers.push((name, value.to_owned()));
        self
    }

    fn expect(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }
}

/// An error of each kind the API answers: the body extractor's, authentication's, the
/// router's, and the handlers'.
fn failing() -> Vec<Failing> {
    use StatusCode as S;
    let hooks = "/events/webhooks";
    let unknown = format!("{hooks}/6a0e3b5f-7d2c-4a57-9f0e-1b3c5d7e9f10");
    let huge = format!(r#"{{"type": "A", "data": "{}"}}"#, "x".repeat(300 * 1024));
    let existing = r#"{"name": "x", "id": "00000000-0000-0000-0000-000000000000"}"#;
    vec![
        wallet("malformed JSON", "POST", hooks, "{").expect(S::BAD_REQUEST),
        wallet("malformed id", "GET", "/events/webhooks/nope", "").expect(S::BAD_REQUEST),
        wallet("wrong key", "GET", hooks, "")
            .header("apikey", "wrong")
            .expect(S::UNAUTHORIZED),
        wallet(
            "wallet key on an admin call",
            "POST",
            "/wallets",
            r#"{"name": "x"}"#,
        )
        .expect(S::FORBIDDEN),
        wallet("unknown webhook", "GET", &unknown, "").expect(S::NOT_FOUND),
        wallet("unknown route", "GET", "/nowhere", "").expect(S::NOT_FOUND),
        wallet("wrong method", "PUT", hooks, "").expect(S::METHOD_NOT_ALLOWED),
        wallet("existing wallet", "POST", "/wallets", existing)
            .header("x-admin-api-key", ADMIN_KEY)
            .expect(S::CONFLICT),
        wallet("body too large", "POST", "/events", &huge).expect(S::PAYLOAD_TOO_LARGE),
        wallet("text body", "POST", hooks, r#"{"url": "http://x"}"#)
            .header("content-type", "text/plain")
            .expect(S::UNSUPPORTED_MEDIA_TYPE),
        wallet("invalid URL", "POST", hooks, r#"{"url": "ftp://x"}"#)
            .expect(S::UNPROCESSABLE_ENTITY),
    ]
}

async fn send(service: &Service, row: &Failing, accept: &[&str]) -> Answer {
    let mut headers: Vec<(&str, &str)> =
        row.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    headers.extend(accept.iter().map(|value| ("accept", *value)));
    call(row.method, &service.url(&row.path), &headers, &row.body).await
}

fn assert_answer(answer: &Answer, row: &Failing, accept: &[&str], expected: &str) {
    let context = format!("{} with Accept {accept:?}", row.name);
    assert_eq!(answer.status, row.status, "{context}: {}", answer.json);
    assert_eq!(answer.content_type, expected, "{context}");
    let body = answer.json.as_object().expect("a JSON object");
    assert_eq!(answer.json["status"], row.status.as_u16(), "{context}");
    assert!(answer.json["type"].is_string(), "{context}");
    assert!(answer.json["title"].is_string(), "{context}");
    assert!(
        answer.json["instance"]
            .as_str()
            .is_some_and(|i| i.ends_with(row.path.split('?').next().unwrap())),
        "{context}: {}",
        answer.json
    );
    assert!(
        body.keys()
            .all(|k| ["status", "type", "title", "detail", "instance"].contains(&k.as_str())),
        "{context}: {}",
        answer.json
    );
}

async fn errors_are_json_unless_accept_asks_for_problem_json(backend: Backend) {
    // A wrong key is sent once per row: no 429 instead of the 401 here (the next test has it).
    let Some(mut service) = Service::start_with(backend, |settings| {
        settings.api.auth_failure_limit = 0;
    })
    .await
    else {
        return;
    };
    for row in &failing() {
        let plain = send(&service, row, &[]).await;
        for (accept, expected) in accept_rows() {
            let answer = send(&service, row, &accept).await;
            assert_answer(&answer, row, &accept, expected);
            assert_eq!(
                answer.json, plain.json,
                "{} with Accept {accept:?}: only the media type changes",
                row.name
            );
        }
    }
    service.stop().await;
}

/// The 429 after too many failed authentications is negotiated like every other error.
async fn the_auth_failure_limit_answers_in_the_negotiated_type(backend: Backend) {
    let Some(mut service) = Service::start_with(backend, |settings| {
        settings.api.auth_failure_limit = 1;
    })
    .await
    else {
        return;
    };
    let mut row = failing()
        .into_iter()
        .find(|row| row.status == StatusCode::UNAUTHORIZED)
        .unwrap();
    let first = send(&service, &row, &[]).await;
    assert_eq!(first.status, StatusCode::UNAUTHORIZED);
    row.status = StatusCode::TOO_MANY_REQUESTS;
    for (accept, expected) in accept_rows() {
        let answer = send(&service, &row, &accept).await;
        assert_answer(&answer, &row, &accept, expected);
    }
    service.stop().await;
}

crate::on_every_backend!(
    errors_are_json_unless_accept_asks_for_problem_json,
    the_auth_failure_limit_answers_in_the_negotiated_type,
);
