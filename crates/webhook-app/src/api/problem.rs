//! Errors as RFC 9457 problem details: `{status, type, title, detail, instance}`. The body is
//! the same for every client; its `Content-Type` is `application/json`, as Identus documents
//! and sends its errors, unless the request's `Accept` asks for `application/problem+json`
//! ([`ProblemMediaType::negotiate`]). Bodies never carry secrets or internals.

use axum::Json;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error answer.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct Problem {
    pub(crate) status: u16,
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) instance: Option<String>,
    /// Seconds for the `Retry-After` header; not part of the body.
    #[serde(skip)]
    #[schema(ignore)]
    pub(crate) retry_after_secs: Option<u64>,
}

impl Problem {
    pub(crate) fn new(status: StatusCode, slug: &str, title: &str) -> Self {
        Self {
            status: status.as_u16(),
            kind: format!("https://webhookd.dev/problems/{slug}"),
            title: title.to_owned(),
            detail: None,
            instance: None,
            retry_after_secs: None,
        }
    }

    /// Adds a `Retry-After` header of `secs` seconds to the answer.
    pub(crate) fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    pub(crate) fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub(crate) fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "The request is malformed",
        )
        .detail(detail)
    }

    pub(crate) fn unprocessable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            "The request is well-formed but invalid",
        )
        .detail(detail)
    }

    pub(crate) fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Authentication failed",
        )
        .detail(detail)
    }

    pub(crate) fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Not allowed with these credentials",
        )
        .detail(detail)
    }

    pub(crate) fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found")
            .detail(format!("{what} not found"))
    }

    pub(crate) fn conflict(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "conflict",
            "The request conflicts with the current state",
        )
        .detail(detail)
    }

    pub(crate) fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "The database is unavailable; try again shortly",
        )
    }

    /// [`Self::unavailable`], saying what is wrong when storage refused to write because of its
    /// disk or files (full, read-only): the operator has something to fix. Other causes may
    /// hold driver texts and stay unsaid.
    fn unavailable_for(cause: &(dyn std::error::Error + 'static)) -> Self {
        match cause.downcast_ref::<webhook_ports::StorageRefusal>() {
            Some(refusal) => Self::unavailable().detail(refusal.to_string()),
            None => Self::unavailable(),
        }
    }

    /// A failure of ours. The cause is logged, never sent.
    pub(crate) fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
        )
    }
}

impl Problem {
    /// The answer, with `media_type` as its `Content-Type`.
    fn response_as(self, media_type: ProblemMediaType) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (
            status,
            [
                (header::CONTENT_TYPE, media_type.as_str()),
                (header::VARY, "accept"),
            ],
            Json(&self),
        )
            .into_response();
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response.extensions_mut().insert(self);
        response
    }
}

/// As `application/json`: [`finish_problems`] gives each answer of the API the media type its
/// request asks for.
impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        self.response_as(ProblemMediaType::Json)
    }
}

/// Middleware: completes every problem answer with what only the request knows, so that
/// handlers and extractors build problems without it: `instance` (the request's path) and the
/// media type its `Accept` header asks for. The one place where that media type is decided.
pub(crate) async fn finish_problems(request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let media_type = ProblemMediaType::negotiate(request.headers());
    let response = next.run(request).await;
    let Some(problem) = response.extensions().get::<Problem>() else {
        return response;
    };
    let mut problem = problem.clone();
    problem.instance.get_or_insert(path);
    let mut answer = problem.response_as(media_type);
    for (name, value) in response.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            answer.headers_mut().insert(name.clone(), value.clone());
        }
    }
    answer
}

/// The `Content-Type` of a problem answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProblemMediaType {
    /// `application/json`: what Identus documents and sends, and so the default.
    Json,
    /// `application/problem+json` (RFC 9457), for clients that ask for it.
    ProblemJson,
}

impl ProblemMediaType {
    fn as_str(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::ProblemJson => "application/problem+json",
        }
    }

    /// `ProblemJson` when the request's `Accept` headers (RFC 9110, section 12.5.1) name
    /// `application/problem+json` itself with a non-zero weight at least that of
    /// `application/json`; otherwise `Json`. A wildcard (`*/*`, `application/*`) does not ask
    /// for it, and a tie goes to the type the client named. Each type's weight is that of the
    /// most specific range that matches it (the highest, when one range is given twice).
    /// Parameters other than `q` are ignored; an element whose `q` is not a valid weight is
    /// ignored, as are header values that are not visible ASCII.
    pub(crate) fn negotiate(headers: &HeaderMap) -> Self {
        let ranges: Vec<MediaRange<'_>> = headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| split_unquoted(value, b','))
            .filter_map(MediaRange::parse)
            .collect();
        let problem = weight_of(&ranges, "problem+json");
        let json = weight_of(&ranges, "json");
        match problem {
            Some((Specificity::Exact, weight))
                if weight > 0 && weight >= json.map_or(0, |(_, w)| w) =>
            {
                Self::ProblemJson
            }
            _ => Self::Json,
        }
    }
}

/// How closely a media range matches a type: `*/*`, `application/*`, or the type itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Specificity {
    Any,
    Application,
    Exact,
}

/// One element of an `Accept` header: a media range and its weight in thousandths.
#[derive(Debug)]
struct MediaRange<'a> {
    kind: &'a str,
    subtype: &'a str,
    weight: u16,
}

impl<'a> MediaRange<'a> {
    /// `type/subtype *(OWS ";" OWS name=value)`; `None` when malformed or `q` is invalid.
    fn parse(element: &'a str) -> Option<Self> {
        let mut parts = split_unquoted(element, b';').into_iter();
        let (kind, subtype) = parts.next()?.split_once('/')?;
        let (kind, subtype) = (kind.trim(), subtype.trim());
        if kind.is_empty() || subtype.is_empty() {
            return None;
        }
        let mut weight = 1000;
        for parameter in parts {
            if let Some((name, value)) = parameter.split_once('=')
                && name.trim().eq_ignore_ascii_case("q")
            {
                weight = parse_weight(value.trim())?;
                // What follows `q` are accept-extensions, not media type parameters.
                break;
            }
        }
        Some(Self {
            kind,
            subtype,
            weight,
        })
    }

    /// How this range matches `application/{subtype}`, if it does.
    fn matches(&self, subtype: &str) -> Option<Specificity> {
        match (self.kind, self.subtype) {
            ("*", "*") => Some(Specificity::Any),
            (kind, "*") if kind.eq_ignore_ascii_case("application") => {
                Some(Specificity::Application)
            }
            (kind, sub)
                if kind.eq_ignore_ascii_case("application")
                    && sub.eq_ignore_ascii_case(subtype) =>
            {
                Some(Specificity::Exact)
            }
            _ => None,
        }
    }
}

/// The weight that `ranges` give `application/{subtype}`: that of its most specific matching
/// range, with how specific that range is; `None` when no range matches.
fn weight_of(ranges: &[MediaRange<'_>], subtype: &str) -> Option<(Specificity, u16)> {
    ranges
        .iter()
        .filter_map(|range| Some((range.matches(subtype)?, range.weight)))
        .max()
}

/// A `q` value, `0` to `1` with at most three decimals, in thousandths.
fn parse_weight(text: &str) -> Option<u16> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = format!("{fraction:0<3}").parse::<u16>().ok()?;
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// `text` split at each `separator` that is outside a quoted string, pieces trimmed, empty
/// ones left out.
fn split_unquoted(text: &str, separator: u8) -> Vec<&str> {
    let mut pieces = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, byte) in text.bytes().enumerate() {
        match (quoted, escaped, byte) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (_, _, b'"') => quoted = !quoted,
            (false, _, b) if b == separator => {
                pieces.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    pieces.push(&text[start..]);
    pieces
        .into_iter()
        .map(str::trim)
        .filter(|piece| !piece.is_empty())
        .collect()
}

impl From<webhook_ports::WebhookStoreError> for Problem {
    fn from(e: webhook_ports::WebhookStoreError) -> Self {
        use webhook_ports::WebhookStoreError as E;
        match e {
            E::NotFound => Problem::not_found("webhook"),
            E::LimitReached { limit } => Problem::unprocessable(format!(
                "the wallet already has {limit} webhooks, the most allowed; delete one first"
            )),
            E::Conflict(what) => Problem::conflict(what),
            E::Stale => Problem::conflict(
                "the webhook kept changing under other requests; send the change again",
            ),
            E::Unavailable(ref cause) => Problem::unavailable_for(cause.as_ref()),
            E::Backend(ref source) => Problem::internal(source),
        }
    }
}

impl From<webhook_ports::OutboxError> for Problem {
    fn from(e: webhook_ports::OutboxError) -> Self {
        use webhook_ports::OutboxError as E;
        match e {
            E::NotFound => Problem::not_found("resource"),
            E::Conflict(what) => Problem::conflict(what),
            E::Unavailable(ref cause) => Problem::unavailable_for(cause.as_ref()),
            E::Backend(ref source) => Problem::internal(source),
        }
    }
}

impl From<webhook_ports::WalletStoreError> for Problem {
    fn from(e: webhook_ports::WalletStoreError) -> Self {
        use webhook_ports::WalletStoreError as E;
        match e {
            E::NotFound => Problem::not_found("wallet"),
            E::Conflict(what) => Problem::conflict(what),
            E::Unavailable(ref cause) => Problem::unavailable_for(cause.as_ref()),
            E::Backend(ref source) => Problem::internal(source),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(accept: &[&str], expected: ProblemMediaType) {
        let mut headers = HeaderMap::new();
        for value in accept {
            headers.append(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        }
        assert_eq!(
            ProblemMediaType::negotiate(&headers),
            expected,
            "Accept: {accept:?}"
        );
    }

    #[test]
    fn problem_json_only_when_accept_asks_for_it() {
        use ProblemMediaType::{Json, ProblemJson};
        check(&[], Json);
        check(&["application/json"], Json);
        check(&["*/*"], Json);
        check(&["application/*;q=1"], Json);
        check(&[",,"], Json);
        check(&["application/problem+json"], ProblemJson);
        check(&["application/problem+json;q=0"], Json);
        check(&["application/problem+json;Q=0.001"], ProblemJson);
        check(&["application/problem+json;q=1.000"], ProblemJson);
        check(&["application/problem+json;q=1.001"], Json);
        check(&["application/problem+json;q=0.0001"], Json);
        check(&["application/problem+json;q=.5"], Json);
        check(&["application/problem+json;q="], Json);
        check(&["application/problem+json ; q = 0.5"], ProblemJson);
        check(&["application/problem+json;q=0.5;q=0"], ProblemJson);
        check(
            &["application/problem+json;q=0.4, application/json;q=0.5"],
            Json,
        );
        check(
            &["application/problem+json;q=0.5, application/json;q=0.5"],
            ProblemJson,
        );
        check(
            &["application/problem+json, application/problem+json;q=0"],
            ProblemJson,
        );
        check(
            &["application/json;q=0, application/problem+json;q=0.1"],
            ProblemJson,
        );
        check(
            &["application/problem+json;q=0.1, application/*;q=0.2"],
            Json,
        );
        check(&["application/problem+json;q=0.1, text/*"], ProblemJson);
        check(&["application/problem+json/x"], Json);
        check(&["problem+json"], Json);
        check(&["/problem+json"], Json);
        check(&[r#"text/plain;x="a,\"b, application/problem+json""#], Json);
        check(
            &[r#"text/plain;x="a;q=0", application/problem+json"#],
            ProblemJson,
        );
    }

    #[test]
    fn weights_are_thousandths_from_zero_to_one() {
        assert_eq!(parse_weight("0"), Some(0));
        assert_eq!(parse_weight("0."), Some(0));
        assert_eq!(parse_weight("0.5"), Some(500));
        assert_eq!(parse_weight("0.25"), Some(250));
        assert_eq!(parse_weight("0.125"), Some(125));
        assert_eq!(parse_weight("1"), Some(1000));
        assert_eq!(parse_weight("1.00"), Some(1000));
        for invalid in ["", "1.5", "2", "-0", "0.1234", "0.a", "a", "+1", " 1"] {
            assert_eq!(parse_weight(invalid), None, "{invalid:?}");
        }
    }

    #[test]
    fn separators_inside_quoted_strings_do_not_split() {
        assert_eq!(
            split_unquoted(r#"a, b;c="x,y", d"#, b','),
            ["a", r#"b;c="x,y""#, "d"]
        );
        assert_eq!(
            split_unquoted(r#"a;b="x\";y";c"#, b';'),
            ["a", r#"b="x\";y""#, "c"]
        );
        assert_eq!(split_unquoted(" , ,", b','), Vec::<&str>::new());
    }

    #[test]
    fn the_media_type_changes_only_the_content_type() {
        let problem = Problem::bad_request("x").retry_after(3);
        let json = problem.clone().into_response();
        let problem_json = problem.response_as(ProblemMediaType::ProblemJson);
        assert_eq!(json.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(
            problem_json.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        for response in [&json, &problem_json] {
            assert_eq!(response.status(), StatusCode::BAD_REQUEST);
            assert_eq!(response.headers()[header::RETRY_AFTER], "3");
            assert_eq!(response.headers()[header::VARY], "accept");
        }
    }
}
