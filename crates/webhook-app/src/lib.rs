//! webhookd as a library: configuration, the REST API, the dispatcher, and [`start`], which
//! wires them to the adapters. The `webhookd` binary is a thin CLI over this.

pub mod api;
mod bootstrap;
pub mod config;
mod console;
mod database;
mod dispatcher;
pub mod listen;
mod metrics;
pub mod operator;
mod publisher;
mod redelivery;
mod retention;
mod secrets;
mod sources;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use webhook_adapters::{DESTINATIONS, DestinationKind, Destinations, SystemClock, TransportConfig};
use webhook_domain::ApiKey;
use webhook_ports::{Clock, LeaseOwner, SourceKind};

use config::Settings;
use dispatcher::{Dispatcher, DispatcherConfig};
use metrics::Metrics;
use store::Store;

/// A running service.
#[derive(Debug)]
pub struct Running {
    /// Where the API listens (the real port when configured with port 0); `None` in the
    /// dispatcher role, which serves nothing over HTTP.
    pub addr: Option<SocketAddr>,
    /// The database in use, described without credentials.
    pub database: String,
    /// A default-wallet key generated at this start, to show once.
    pub generated_default_key: Option<ApiKey>,
    /// An admin token generated at this start, to show once.
    pub generated_admin_token: Option<ApiKey>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// What runs until dropped: the watch of other instances' changes (PostgreSQL).
    background: Option<webhook_ports::Watch>,
}

impl Running {
    /// Stops accepting requests and claiming work, and waits for the tasks to end.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        drop(self.background);
    }
}

/// What an embedder adds to webhookd at start: event source kinds and destination kinds beside
/// the built-in ones. `Extensions::default()` adds nothing: the built-in kinds are always known.
/// A test registers an adapter of its own with `Extensions::default().with_source(KIND)` or
/// `.with_destination(KIND)`, given to [`crate::start_with`].
#[derive(Debug, Clone, Default)]
pub struct Extensions {
    sources: Vec<SourceKind>,
    destinations: Vec<DestinationKind>,
}

impl Extensions {
    /// Makes `kind` deliver to the target URL schemes it serves.
    #[must_use]
    pub fn with_destination(mut self, kind: DestinationKind) -> Self {
        self.destinations.push(kind);
        self
    }

    /// The source kinds added.
    pub(crate) fn sources(&self) -> &[SourceKind] {
        &self.sources
    }

    /// The destination kinds added.
    pub(crate) fn destinations(&self) -> &[DestinationKind] {
        &self.destinations
    }

    /// Makes `kind` available to the `sources` setting, for the URL schemes it serves.
    #[must_use]
    pub fn with_source(mut self, kind: SourceKind) -> Self {
        self.sources.push(kind);
        self
    }
}

/// Opens the database named by the settings and brings its schema up to date (or, with
/// `migrate_on_start` off, checks that it is).
///
/// # Errors
/// When the database cannot be opened or migrated, or is behind with migration off.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    let database = settings.database()?;
    let store = Store::open(&database, settings.database_pool_size).await?;
    if settings.migrate_on_start {
        let applied = store.migrate().await?;
        if !applied.is_empty() {
            tracing::info!(migrations = ?applied, "database migrated");
        }
    } else {
        let pending = store.pending_migrations().await?;
        if !pending.is_empty() {
            anyhow::bail!(
                "the {} lacks {} migration(s) ({}); run `webhookd migrate` or set migrate_on_start",
                database.describe(),
                pending.len(),
                pending.join(", ")
            );
        }
    }
    Ok(store)
}

/// Opens the database (see [`open_store`]), applies the start-up configuration, and starts what
/// `settings.role` names: the API, the dispatcher and the retention job, or the API alone, or
/// the dispatcher and the retention job. Every role resumes bulk redelivery jobs (their steps are
/// safe to run from several instances).
///
/// # Errors
/// When the database cannot be opened or migrated, the configuration is invalid, or the
/// address cannot be bound; each error names what failed.
pub async fn start(settings: &Settings) -> anyhow::Result<Running> {
    start_with(settings, Extensions::default()).await
}

/// As [`start`], with the adapters that `extensions` registers (event sources, destinations)
/// known beside the built-ins.
///
/// # Errors
/// As [`start`]; also when a configured event source is unknown or refuses its URL, or a
/// destination cannot be built or serves a scheme another serves.
pub async fn start_with(settings: &Settings, extensions: Extensions) -> anyhow::Result<Running> {
    let sources = sources::open(
        &settings.sources,
        webhook_adapters::EVENT_SOURCES,
        &extensions,
    )?;
    let address_policy = settings.transport.address_policy()?;
    let destinations = Destinations::open(
        DESTINATIONS.iter().chain(extensions.destinations()),
        &TransportConfig {
            connect_timeout: settings.transport.connect_timeout(),
            ssrf_guard: settings.transport.ssrf_guard,
            address_policy: address_policy.clone(),
            brokers: settings.transport.brokers.clone(),
            ..TransportConfig::default()
        },
    )?;
    let schemes: Arc<[&'static str]> = destinations.schemes().into();
    if !settings.transport.ssrf_guard {
        tracing::warn!("the SSRF guard is off: targets may reach this host and its networks");
    }
    let store = open_store(settings).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let bootstrapped = bootstrap::bootstrap(
        store.wallets().as_ref(),
        store.webhooks().as_ref(),
        &settings.identus,
        settings.role,
        clock.now(),
    )
    .await?;

    let role = settings.role;
    let wake = Arc::new(Notify::new());
    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    // Deleted or disabled webhooks, for this process's dispatcher: from its own API directly,
    // from other instances through the database.
    let (target_changes, changes) = tokio::sync::mpsc::unbounded_channel();
    // Only a dispatcher needs to hear of other instances' publishes and changes.
    let background = if role.delivers() {
        store.watch_changes(Arc::new(Forward {
            wake: wake.clone(),
            changes: target_changes.clone(),
        }))
    } else {
        None
    };

    let transport: Arc<dyn webhook_ports::Destination> = Arc::new(destinations);
    let metrics = Arc::new(Metrics::new());
    let (publishing, publish_workers) = publisher::Publishing::start(
        store.outbox(),
        store.wallets(),
        clock.clone(),
        Some(metrics.clone()),
        wake.clone(),
    );
    // First in `tasks`: sources hold the publishing service, whose workers end after them.
    let refusals = Arc::new(sources::Refusals::new(metrics.clone()));
    tasks.extend(sources.start(&publishing, &refusals, role.serves_api(), &shutdown_rx));
    let api_state = api::ApiState {
        publishing,
        wallets: store.wallets(),
        webhooks: store.webhooks(),
        outbox: store.outbox(),
        jobs: store.jobs(),
        queue: store.queue(),
        database: Arc::new(StoreStatus::new(store.clone())),
        metrics: metrics.clone(),
        dispatcher_runs: role.delivers(),
        refusals,
        transport: transport.clone(),
        schemes,
        clock: clock.clone(),
        wake: wake.clone(),
        target_changes,
        admin: Arc::new(api::AdminCredential::new(bootstrapped.admin)),
        known_keys: Arc::new(api::KnownKeys::new(secrets::salt()?)),
        auth_failures: Arc::new(api::AuthFailures::new(
            settings.api.auth_failure_limit,
            settings.api.auth_failure_window(),
        )),
        address_policy: settings
            .transport
            .ssrf_guard
            .then(|| Arc::new(address_policy)),
        limits: settings.api.clone(),
        max_webhooks_per_wallet: settings.max_webhooks_per_wallet,
        attempt_timeout: settings.dispatcher.attempt_timeout(),
        base_path: settings.base_path.clone(),
    };
    let resumed = redelivery::resume(store.jobs(), clock.clone(), wake.clone())
        .await
        .context("cannot read the bulk redelivery jobs")?;
    if resumed > 0 {
        tracing::info!(jobs = resumed, "bulk redeliveries resumed");
    }
    let addr = if role.serves_api() {
        let listener = tokio::net::TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("listen: cannot bind {}", settings.listen))?;
        let addr = listener.local_addr()?;
        let mut app = api::router(api_state, &settings.base_path);
        if settings.console.enabled {
            app = app.merge(console::router(&settings.base_path));
        }
        let mut api_shutdown = shutdown_rx.clone();
        tasks.push(tokio::spawn(async move {
            // The peer address is what failed authentications are counted by.
            let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = api_shutdown.wait_for(|stop| *stop).await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "the API server stopped");
            }
        }));
        Some(addr)
    } else {
        None
    };
    // They end once the API (which holds the publisher) has stopped, after storing what it
    // accepted.
    tasks.extend(publish_workers);
    if role.delivers() {
        tasks.extend(start_delivery(
            settings,
            &store,
            transport,
            clock,
            (wake, changes),
            shutdown_rx,
            metrics,
        ));
    }

    Ok(Running {
        addr,
        database: settings.database()?.describe(),
        generated_default_key: bootstrapped.generated_default_key,
        generated_admin_token: bootstrapped.generated_admin_token,
        shutdown,
        tasks,
        background,
    })
}

/// The dispatcher and the retention job.
fn start_delivery(
    settings: &Settings,
    store: &Store,
    transport: Arc<dyn webhook_ports::Destination>,
    clock: Arc<dyn Clock>,
    (wake, changes): (
        Arc<Notify>,
        tokio::sync::mpsc::UnboundedReceiver<webhook_domain::WebhookId>,
    ),
    shutdown: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
) -> [JoinHandle<()>; 2] {
    let retention = tokio::spawn(retention::run(
        store.retention(),
        clock.clone(),
        settings.retention.clone(),
        shutdown.clone(),
    ));
    let dispatcher = Arc::new(Dispatcher {
        queue: store.queue(),
        webhooks: store.webhooks(),
        transport,
        clock,
        jitter: secrets::jitter,
        owner: LeaseOwner(uuid::Uuid::new_v4().to_string()),
        config: DispatcherConfig {
            batch_size: settings.dispatcher.batch_size,
            lease: settings.dispatcher.lease(),
            attempt_timeout: settings.dispatcher.attempt_timeout(),
            poll_interval: settings.dispatcher.poll_interval(),
            default_retry_policy: settings.default_retry_policy.clone(),
            max_in_flight: settings.dispatcher.max_in_flight,
            per_target: settings.dispatcher.per_target(),
            circuit_breaker: settings.dispatcher.circuit_breaker(),
            record_batch: settings.dispatcher.record_batch,
            record_delay: Duration::from_millis(settings.dispatcher.record_delay_ms),
            shutdown_grace: Duration::from_millis(settings.dispatcher.shutdown_grace_ms),
        },
        metrics,
    });
    let dispatcher = tokio::spawn(dispatcher.run_with(wake, changes, shutdown));
    [retention, dispatcher]
}

/// The store as `/ready` sees it. Migrations only move forward, so once this binary's
/// migrations are all applied, later probes only check that the database answers, through the
/// pool, instead of opening a connection and taking the migration lock each time.
#[derive(Debug)]
struct StoreStatus {
    store: Store,
    migrated: std::sync::atomic::AtomicBool,
}

impl StoreStatus {
    fn new(store: Store) -> Self {
        Self {
            store,
            migrated: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

#[async_trait::async_trait]
impl api::DatabaseStatus for StoreStatus {
    async fn pending_migrations(&self) -> anyhow::Result<Vec<String>> {
        use std::sync::atomic::Ordering::Relaxed;
        if self.migrated.load(Relaxed) {
            // One primary-key read: the database answers. Whether the default wallet exists
            // does not matter.
            match self
                .store
                .wallets()
                .get_wallet(webhook_domain::WalletId::DEFAULT)
                .await
            {
                Ok(_) | Err(webhook_ports::WalletStoreError::NotFound) => {}
                Err(e) => return Err(e.into()),
            }
            return Ok(Vec::new());
        }
        let pending = self.store.pending_migrations().await?;
        self.migrated.store(pending.is_empty(), Relaxed);
        Ok(pending)
    }

    fn pool(&self) -> metrics::PoolUsage {
        self.store.pool_usage()
    }
}

/// What the store's watch of other instances hears, handed to this process's dispatcher: a
/// publish wakes it, a deleted or disabled webhook is dropped from what it holds.
struct Forward {
    wake: Arc<Notify>,
    changes: tokio::sync::mpsc::UnboundedSender<webhook_domain::WebhookId>,
}

impl webhook_ports::ChangeListener for Forward {
    fn published(&self) {
        self.wake.notify_one();
    }

    fn target_changed(&self, webhook: webhook_domain::WebhookId) {
        let _ = self.changes.send(webhook);
    }
}
