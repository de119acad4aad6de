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
    Serve,
    /// Create or upgrade the database, then exit.
    Migrate,
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
    let settings = Settings::load(cli.config.as_deref())?;
    match cli.command {
        Command::Migrate => {
            let path = settings.sqlite_path()?;
            webhook_adapters::SqliteStore::open(&path, 1)
                .await
                .context("cannot migrate the database")?;
            println!("database {} is up to date", path.display());
            Ok(())
        }
        Command::Serve => serve(&settings).await,
    }
}

async fn serve(settings: &Settings) -> anyhow::Result<()> {
    let running = webhook_app::start(settings).await?;
    let base = format!("http://{}{}", running.addr, settings.base_path);
    println!("webhookd is listening on {base}");
    println!("data: {}", running.database.display());
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
    }
    tokio::signal::ctrl_c()
        .await
        .context("cannot listen for Ctrl-C")?;
    println!("shutting down");
    running.stop().await;
    Ok(())
}
