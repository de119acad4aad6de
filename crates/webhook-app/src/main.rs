//! The `webhookd` command.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use webhook_app::config::Settings;

/// webhookd: durable, signed webhook delivery, compatible with the Identus Cloud Agent.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// A TOML configuration file (environment variables override it).
    #[arg(long, global = true, env = "WEBHOOKD_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the REST API and the dispatcher.
    Serve {
        /// Do not migrate the database at start; refuse to start if it is not up to date.
        #[arg(long)]
        no_migrate: bool,
    },
    /// Create or upgrade the database, then exit.
    Migrate,
    /// Print the OpenAPI 3.1 document of the REST API (as committed in docs/openapi.json).
    Openapi,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Openapi = cli.command {
        print!("{}", webhook_app::api::openapi::committed_text());
        return Ok(());
    }
    let mut settings = Settings::load(cli.config.as_deref())?;
    match cli.command {
        Command::Migrate => {
            let database = settings.database()?;
            let store = webhook_app::store::Store::open(&database, 1).await?;
            let pending = store.pending_migrations().await?;
            if pending.is_empty() {
                println!("the {} is up to date", database.describe());
                return Ok(());
            }
            println!(
                "applying {} migration(s) to the {}",
                pending.len(),
                database.describe()
            );
            for version in store.migrate().await? {
                println!("  applied {version}");
            }
            println!("the {} is up to date", database.describe());
            Ok(())
        }
        Command::Openapi => Ok(()),
        Command::Serve { no_migrate } => {
            if no_migrate {
                settings.migrate_on_start = false;
            }
            serve(&settings).await
        }
    }
}

async fn serve(settings: &Settings) -> anyhow::Result<()> {
    let running = webhook_app::start(settings).await?;
    let base = format!("http://{}{}", running.addr, settings.base_path);
    println!("webhookd is listening on {base}");
    println!("data: {}", running.database);
    println!("API description: http://{}/openapi.json", running.addr);
    if let Some(token) = &running.generated_admin_token {
        println!();
        println!("The admin key, for x-admin-api-key (shown only now; it is stored hashed):");
        println!("  {}", token.expose());
    }
    if let Some(key) = &running.generated_default_key {
        println!();
        println!("The default wallet's API key (shown only now; it is stored hashed):");
        println!("  {}", key.expose());
        println!();
        println!("Register a webhook with:");
        println!(
            "  curl -X POST '{base}/events/webhooks' -H 'Content-Type: application/json' \\\n    -H 'apikey: {}' -d '{{\"url\": \"http://localhost:9095\"}}'",
            key.expose()
        );
        let loopback: std::net::IpAddr = std::net::Ipv4Addr::LOCALHOST.into();
        if settings.transport.ssrf_guard
            && settings
                .transport
                .address_policy()
                .is_ok_and(|policy| policy.check(loopback).is_err())
        {
            println!(
                "(A receiver on this machine is refused by the SSRF guard: start webhookd with\n WEBHOOKD_TRANSPORT__ALLOWED_CIDRS=127.0.0.0/8,::1 to allow it.)"
            );
        }
    }
    shutdown_signal().await?;
    println!("shutting down: finishing attempts in flight and giving back the rest");
    running.stop().await;
    Ok(())
}

/// Ctrl-C, or SIGTERM (what service managers and container runtimes send).
async fn shutdown_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("cannot listen for SIGTERM")?;
        tokio::select! {
            interrupted = tokio::signal::ctrl_c() => interrupted.context("cannot listen for Ctrl-C"),
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c()
            .await
            .context("cannot listen for Ctrl-C")
    }
}
