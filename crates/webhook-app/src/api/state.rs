//! What the handlers share: the ports, the services and the settings the API is handed by
//! `lib.rs::start`, and the one trait of them the API defines (`DatabaseStatus`). No handler
//! and no route lives here, so every submodule of `api` may use it.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Notify;
use webhook_ports::{
    Clock, DeliveryQueue, Destination, EventOutbox, RedeliveryJobs, WalletRepository,
    WebhookRepository,
};

use super::auth_failures::AuthFailures;
use super::credentials::{AdminCredential, KnownKeys};
use crate::config::ApiSettings;
use crate::metrics::{Metrics, PoolUsage};

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct ApiState {
    pub(crate) wallets: Arc<dyn WalletRepository>,
    pub(crate) webhooks: Arc<dyn WebhookRepository>,
    pub(crate) outbox: Arc<dyn EventOutbox>,
    /// Single publishes go through it, to share commits with concurrent ones.
    pub(crate) publishing: crate::publisher::Publishing,
    pub(crate) jobs: Arc<dyn RedeliveryJobs>,
    /// Read for the backlog gauges when `/metrics` is scraped.
    pub(crate) queue: Arc<dyn DeliveryQueue>,
    /// Asked by `/ready`, and for the pool gauges.
    pub(crate) database: Arc<dyn DatabaseStatus>,
    pub(crate) metrics: Arc<Metrics>,
    /// Whether this process runs a dispatcher, whose circuit breakers `metrics` reports: the
    /// console's breaker states are `unknown` otherwise.
    pub(crate) dispatcher_runs: bool,
    /// What the event sources refused, for `GET /sources/refusals`.
    pub(crate) refusals: Arc<crate::sources::Refusals>,
    /// Sends test events (`POST /events/webhooks/{id}/test`).
    pub(crate) transport: Arc<dyn Destination>,
    /// The target URL schemes that some destination serves.
    pub(crate) schemes: Arc<[&'static str]>,
    pub(crate) clock: Arc<dyn Clock>,
    /// Notified after each publish or requeue, so an idle dispatcher starts at once.
    pub(crate) wake: Arc<Notify>,
    /// Told of each webhook deleted or disabled here, so the dispatcher of this process drops
    /// what it holds of it at once (other instances hear it through the database).
    pub(crate) target_changes: tokio::sync::mpsc::UnboundedSender<webhook_domain::WebhookId>,
    pub(crate) admin: Arc<AdminCredential>,
    /// Wallet keys checked lately.
    pub(crate) known_keys: Arc<KnownKeys>,
    /// Failed authentications per client address, for the 429 after too many.
    pub(crate) auth_failures: Arc<AuthFailures>,
    /// The SSRF guard's policy, to refuse a webhook URL whose host is a refused address
    /// already at registration; `None` when the guard is off.
    pub(crate) address_policy: Option<Arc<webhook_domain::AddressPolicy>>,
    pub(crate) limits: ApiSettings,
    pub(crate) max_webhooks_per_wallet: u32,
    pub(crate) attempt_timeout: std::time::Duration,
    /// For the `servers` entry of the served OpenAPI document.
    pub(crate) base_path: String,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState").finish_non_exhaustive()
    }
}

/// What `/ready` and `/metrics` need of the database beyond the ports.
#[async_trait]
pub(crate) trait DatabaseStatus: Send + Sync {
    /// The embedded migrations the database lacks.
    ///
    /// # Errors
    /// When the database does not answer. The error may name the server, never a password;
    /// it is logged, not sent.
    async fn pending_migrations(&self) -> anyhow::Result<Vec<String>>;

    /// The connection pool's numbers now, read without I/O.
    fn pool(&self) -> PoolUsage;
}
