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
mod deliveries;
mod events;
pub(crate) mod json;
mod observability;
pub mod openapi;
mod problem;
mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use tokio::sync::Notify;
use webhook_ports::{
    Clock, DeliveryQueue, Destination, EventOutbox, RedeliveryJobs, WalletRepository,
    WebhookRepository,
};

pub use auth::{AdminCredential, KnownKeys};
pub use auth_failures::AuthFailures;
pub use observability::DatabaseStatus;
pub use problem::Problem;

use crate::config::ApiSettings;
use crate::metrics::Metrics;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub wallets: Arc<dyn WalletRepository>,
    pub webhooks: Arc<dyn WebhookRepository>,
    pub outbox: Arc<dyn EventOutbox>,
    /// Single publishes go through it, to share commits with concurrent ones.
    pub(crate) publishing: crate::publisher::Publishing,
    pub jobs: Arc<dyn RedeliveryJobs>,
    /// Read for the backlog gauges when `/metrics` is scraped.
    pub queue: Arc<dyn DeliveryQueue>,
    /// Asked by `/ready`, and for the pool gauges.
    pub database: Arc<dyn DatabaseStatus>,
    pub metrics: Arc<Metrics>,
    /// Sends test events (`POST /events/webhooks/{id}/test`).
    pub transport: Arc<dyn Destination>,
    /// The target URL schemes that some destination serves.
    pub schemes: Arc<[&'static str]>,
    pub clock: Arc<dyn Clock>,
    /// Notified after each publish or requeue, so an idle dispatcher starts at once.
    pub wake: Arc<Notify>,
    /// Told of each webhook deleted or disabled here, so the dispatcher of this process drops
    /// what it holds of it at once (other instances hear it through the database).
    pub target_changes: tokio::sync::mpsc::UnboundedSender<webhook_domain::WebhookId>,
    pub admin: Arc<AdminCredential>,
    /// Wallet keys checked lately.
    pub known_keys: Arc<KnownKeys>,
    /// Failed authentications per client address, for the 429 after too many.
    pub auth_failures: Arc<AuthFailures>,
    /// The SSRF guard's policy, to refuse a webhook URL whose host is a refused address
    /// already at registration; `None` when the guard is off.
    pub address_policy: Option<Arc<webhook_domain::AddressPolicy>>,
    pub limits: ApiSettings,
    pub max_webhooks_per_wallet: u32,
    pub attempt_timeout: std::time::Duration,
    /// For the `servers` entry of the served OpenAPI document.
    pub base_path: String,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState").finish_non_exhaustive()
    }
}

/// The whole API, with every resource route under `base_path`.
pub fn router(state: ApiState, base_path: &str) -> Router {
    let max_body = state.limits.max_body_bytes;
    let routes = Router::new()
        .route(
            "/wallets",
            post(admin::create_wallet).get(admin::list_wallets),
        )
        .route("/wallets/{wallet_id}", get(admin::get_wallet))
        .route("/wallets/{wallet_id}/apikeys", post(admin::create_api_key))
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

/// Parses an id from a path segment: a malformed one is a 400 that names the parameter.
fn path_id<T: std::str::FromStr>(text: &str, name: &str) -> Result<T, Problem> {
    text.parse()
        .map_err(|_| Problem::bad_request(format!("{name}: must be a UUID, got {text:?}")))
}

/// Offset and limit of a listing, from the query string.
#[derive(Debug, Clone, Copy, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageQuery {
    /// Rows to skip (default 0), at most 2^63 - 1.
    #[serde(default)]
    #[param(maximum = 9_223_372_036_854_775_807_u64)]
    offset: Option<u64>,
    /// Rows to return, 1 to 1000 (default 100).
    #[serde(default)]
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

const DEFAULT_PAGE_SIZE: u32 = 100;
const MAX_PAGE_SIZE: u32 = 1000;
/// The largest offset: both databases count rows with signed 64-bit integers, and the
/// document promises no more.
const MAX_OFFSET: u64 = i64::MAX.unsigned_abs();

impl PageQuery {
    fn page(self) -> Result<webhook_ports::Page, Problem> {
        let limit = self.limit.unwrap_or(DEFAULT_PAGE_SIZE);
        if !(1..=MAX_PAGE_SIZE).contains(&limit) {
            return Err(Problem::bad_request(format!(
                "limit: must be between 1 and {MAX_PAGE_SIZE}, got {limit}"
            )));
        }
        let offset = self.offset.unwrap_or(0);
        if offset > MAX_OFFSET {
            return Err(Problem::bad_request(format!(
                "offset: must be between 0 and {MAX_OFFSET}, got {offset}"
            )));
        }
        Ok(webhook_ports::Page { offset, limit })
    }
}

/// A query string of type `T`; a malformed one is a 400 problem.
fn query<T: serde::de::DeserializeOwned>(uri: &axum::http::Uri) -> Result<T, Problem> {
    axum::extract::Query::<T>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|e| Problem::bad_request(e.body_text()))
}

/// Identus's page shape: `{self, kind, pageOf, next?, previous?, contents}`. One more row than
/// asked tells whether a next page exists.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Paged<T> {
    #[serde(rename = "self")]
    self_: String,
    kind: &'static str,
    page_of: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    previous: Option<String>,
    contents: Vec<T>,
}

impl<T> Paged<T> {
    /// `found` was fetched with `limit + 1`; `extra` is appended to the links' query strings.
    fn new(
        kind: &'static str,
        path: &str,
        extra: &str,
        page: webhook_ports::Page,
        mut found: Vec<T>,
    ) -> Self {
        let has_next = found.len() > page.limit as usize;
        found.truncate(page.limit as usize);
        Self::of_page(kind, path, extra, page, found, has_next)
    }

    /// A page of `contents`, at most `limit`, with a `next` link when `has_next`.
    fn of_page(
        kind: &'static str,
        path: &str,
        extra: &str,
        page: webhook_ports::Page,
        contents: Vec<T>,
        has_next: bool,
    ) -> Self {
        let limit = page.limit;
        let link = |offset: u64| format!("{path}?offset={offset}&limit={limit}{extra}");
        Self {
            self_: link(page.offset),
            kind,
            page_of: path.to_owned(),
            next: has_next.then(|| link(page.offset + u64::from(limit))),
            previous: (page.offset > 0).then(|| link(page.offset.saturating_sub(u64::from(limit)))),
            contents,
        }
    }
}

/// The page with one more row than asked, to learn whether a next one exists.
fn probe(page: webhook_ports::Page) -> webhook_ports::Page {
    webhook_ports::Page {
        offset: page.offset,
        limit: page.limit + 1,
    }
}
