//! webhookd as a library: configuration, the REST API, the dispatcher, and [`start`], which
//! wires them to the adapters. The `webhookd` binary is a thin CLI over this.

pub mod api;
mod bootstrap;
pub mod config;
pub mod dispatcher;
mod secrets;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use webhook_adapters::{HyperTransport, SqliteStore, SystemClock, TransportConfig};
use webhook_domain::ApiKey;
use webhook_ports::{Clock, LeaseOwner};

use config::Settings;
use dispatcher::{Dispatcher, DispatcherConfig};

/// A running service.
#[derive(Debug)]
pub struct Running {
    /// Where the API listens (the real port when configured with port 0).
    pub addr: SocketAddr,
    /// The SQLite file in use.
    pub database: std::path::PathBuf,
    /// A default-wallet key generated at this start, to show once.
    pub generated_default_key: Option<ApiKey>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stops accepting requests and claiming work, and waits for the tasks to end.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Opens the database (migrating it), applies the start-up configuration, and starts the API
/// and the dispatcher.
///
/// # Errors
/// When the database cannot be opened or migrated, the configuration is invalid, or the
/// address cannot be bound; each error names what failed.
pub async fn start(settings: &Settings) -> anyhow::Result<Running> {
    let path = settings.sqlite_path()?;
    let store = Arc::new(
        SqliteStore::open(&path, 8)
            .await
            .context("cannot open the database")?,
    );
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let bootstrapped = bootstrap::bootstrap(
        store.as_ref(),
        store.as_ref(),
        &settings.identus,
        clock.now(),
    )
    .await?;

    let wake = Arc::new(Notify::new());
    let (shutdown, shutdown_rx) = watch::channel(false);

    let api_state = api::ApiState {
        wallets: store.clone(),
        webhooks: store.clone(),
        outbox: store.clone(),
        clock: clock.clone(),
        wake: wake.clone(),
        max_webhooks_per_wallet: settings.max_webhooks_per_wallet,
    };
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("listen: cannot bind {}", settings.listen))?;
    let addr = listener.local_addr()?;
    let app = api::router(api_state, &settings.base_path);
    let mut api_shutdown = shutdown_rx.clone();
    let api_task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = api_shutdown.wait_for(|stop| *stop).await;
            })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "the API server stopped");
        }
    });

    let dispatcher = Arc::new(Dispatcher {
        queue: store.clone(),
        webhooks: store.clone(),
        transport: Arc::new(HyperTransport::new(TransportConfig::default())),
        clock,
        jitter: secrets::jitter,
        owner: LeaseOwner(uuid::Uuid::new_v4().to_string()),
        config: DispatcherConfig {
            batch_size: settings.dispatcher.batch_size,
            lease: settings.dispatcher.lease(),
            attempt_timeout: settings.dispatcher.attempt_timeout(),
            poll_interval: settings.dispatcher.poll_interval(),
            default_retry_policy: settings.default_retry_policy.clone(),
        },
    });
    let dispatcher_task = tokio::spawn(dispatcher.run(wake, shutdown_rx));

    Ok(Running {
        addr,
        database: path,
        generated_default_key: bootstrapped.generated_default_key,
        shutdown,
        tasks: vec![api_task, dispatcher_task],
    })
}
