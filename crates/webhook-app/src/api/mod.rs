//! The REST API (axum): Identus-compatible wallets, IAM, webhooks and event publishing under a
//! configurable base path, plus our delivery logs, redelivery and the OpenAPI document.
//!
//! Wallet-scoped calls authenticate with the `apikey` header and see only that wallet's data;
//! another wallet's resource is answered as if it did not exist. Admin calls authenticate with
//! `x-admin-api-key`. Every error is a problem details body; bad input is refused before
//! anything is stored. `/health`, `/ready` and `/metrics` are outside the base path.

mod admin;
mod auth;
mod auth_failures;
mod credentials;
mod cursor;
mod deliveries;
mod events;
pub(crate) mod json;
mod observability;
pub mod openapi;
mod paging;
mod params;
mod problem;
mod state;
mod webhooks;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};

pub(crate) use auth_failures::AuthFailures;
pub(crate) use credentials::{AdminCredential, KnownKeys};
pub(crate) use problem::Problem;
pub(crate) use state::{ApiState, DatabaseStatus};

/// The whole API, with every resource route under `base_path`.
pub(crate) fn router(state: ApiState, base_path: &str) -> Router {
    let max_body = state.limits.max_body_bytes;
    let routes = Router::new()
        .route(
            "/wallets",
            post(admin::create_wallet).get(admin::list_wallets),
        )
        .route("/wallets/{wallet_id}", get(admin::get_wallet))
        .route("/wallets/{wallet_id}/apikeys", post(admin::create_api_key))
        .route("/sources/refusals", get(admin::list_source_refusals))
        .route("/system/overview", get(admin::overview))
        .route("/iam/entities", post(admin::create_entity))
        .route("/iam/entities/{entity_id}", get(admin::get_entity))
        .route("/iam/apikey-authentication", post(admin::bind_api_key))
        .route(
            "/events/webhooks",
            post(webhooks::create).get(webhooks::list),
        )
        .route(
            "/events/webhooks/{webhook_id}",
            get(webhooks::get)
                .patch(webhooks::update)
                .delete(webhooks::delete),
        )
        .route(
            "/events/webhooks/{webhook_id}/secret/rotate",
            post(webhooks::rotate_secret),
        )
        .route("/events/webhooks/{webhook_id}/test", post(webhooks::test))
        .route("/events/webhooks/{webhook_id}/stats", get(webhooks::stats))
        .route(
            "/events/webhooks/{webhook_id}/deliveries",
            get(deliveries::list_for_webhook),
        )
        .route(
            "/events/webhooks/{webhook_id}/redeliver",
            post(deliveries::start_redelivery),
        )
        .route(
            "/events/webhooks/{webhook_id}/redeliveries/{job_id}",
            get(deliveries::get_redelivery),
        )
        .route("/events", post(events::publish))
        .route("/events/batch", post(events::publish_batch))
        .route("/events/{event_id}", get(events::get))
        .route(
            "/events/{event_id}/deliveries",
            get(deliveries::list_for_event),
        )
        .route("/events/deliveries", get(deliveries::search))
        .route("/events/deliveries/{delivery_id}", get(deliveries::get))
        .route(
            "/events/deliveries/{delivery_id}/redeliver",
            post(deliveries::redeliver),
        );
    let api = if base_path.is_empty() {
        routes
    } else {
        Router::new().nest(base_path, routes)
    };
    api.route("/health", get(observability::health))
        .route("/ready", get(observability::ready))
        .route("/metrics", get(observability::metrics))
        .route("/openapi.json", get(openapi::serve))
        .fallback(|| async { Problem::new(StatusCode::NOT_FOUND, "not-found", "No such route") })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "This route does not take that method",
            )
        })
        .layer(axum::middleware::from_fn(problem::finish_problems))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}
