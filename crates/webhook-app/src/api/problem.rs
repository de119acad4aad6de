//! Errors as RFC 9457 problem details: `{status, type, title, detail, instance}` with
//! `Content-Type: application/problem+json`. Bodies never carry secrets or internals.

use axum::Json;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error answer.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    pub status: u16,
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Seconds for the `Retry-After` header; not part of the body.
    #[serde(skip)]
    #[schema(ignore)]
    pub retry_after_secs: Option<u64>,
}

impl Problem {
    pub fn new(status: StatusCode, slug: &str, title: &str) -> Self {
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
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "The request is malformed",
        )
        .detail(detail)
    }

    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            "The request is well-formed but invalid",
        )
        .detail(detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Authentication failed",
        )
        .detail(detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Not allowed with these credentials",
        )
        .detail(detail)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found")
            .detail(format!("{what} not found"))
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "conflict",
            "The request conflicts with the current state",
        )
        .detail(detail)
    }

    pub fn unavailable() -> Self {
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
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            Json(&self),
        )
            .into_response();
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        response.extensions_mut().insert(self);
        response
    }
}

/// Middleware: sets `instance` (the request's path) on every problem answer, which handlers and
/// extractors build without knowing the path.
pub(crate) async fn with_instance(request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    match response.extensions().get::<Problem>() {
        Some(problem) if problem.instance.is_none() => {
            let mut problem = problem.clone();
            problem.instance = Some(path);
            let mut answer = problem.into_response();
            for (name, value) in response.headers() {
                if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
                    answer.headers_mut().insert(name.clone(), value.clone());
                }
            }
            answer
        }
        _ => response,
    }
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
