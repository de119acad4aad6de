//! The REST API (axum): Identus-compatible webhook registration and event publishing under a
//! configurable base path, authenticated by the `apikey` header. Every error is a problem
//! details body; bad input is refused before anything is stored.

mod events;
mod problem;
mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use webhook_domain::{ApiKey, ApiKeyTag, WalletId};
use webhook_ports::{Clock, EventOutbox, WalletRepository, WebhookRepository};

pub use problem::Problem;

/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub wallets: Arc<dyn WalletRepository>,
    pub webhooks: Arc<dyn WebhookRepository>,
    pub outbox: Arc<dyn EventOutbox>,
    pub clock: Arc<dyn Clock>,
    /// Notified after each publish, so an idle dispatcher starts at once.
    pub wake: Arc<Notify>,
    pub max_webhooks_per_wallet: u32,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState").finish_non_exhaustive()
    }
}

/// The whole API, with wallet routes under `base_path`.
pub fn router(state: ApiState, base_path: &str) -> Router {
    let wallet_routes = Router::new()
        .route(
            "/events/webhooks",
            post(webhooks::create).get(webhooks::list),
        )
        .route("/events", post(events::publish));
    let api = if base_path.is_empty() {
        wallet_routes
    } else {
        Router::new().nest(base_path, wallet_routes)
    };
    api.route("/health", get(health))
        .fallback(|| async { Problem::new(StatusCode::NOT_FOUND, "not-found", "No such route") })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "This route does not take that method",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn health() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "status": "ok" }))
}

/// The wallet that the `apikey` header authenticates.
#[derive(Debug, Clone, Copy)]
pub struct WalletAuth(pub WalletId);

impl FromRequestParts<ApiState> for WalletAuth {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Problem> {
        let presented = parts
            .headers
            .get("apikey")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| ApiKey::parse(v).ok())
            .ok_or_else(Problem::unauthorized)?;
        let candidates = state
            .wallets
            .find_api_keys(ApiKeyTag::of(&presented))
            .await?;
        candidates
            .iter()
            .find(|stored| stored.hash.matches(&presented))
            .map(|stored| WalletAuth(stored.wallet_id))
            .ok_or_else(Problem::unauthorized)
    }
}

/// `Json<T>` whose rejections are problem details.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        let axum::Json(value) = axum::Json::<T>::from_request(req, state).await?;
        Ok(JsonBody(value))
    }
}
