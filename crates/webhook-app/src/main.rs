//! The `webhookd` command: the service (`serve`, `migrate`), what an operator needs beside it
//! (`config`, `publish`, `wallet`, `apikey`, `openapi`), and a receiver to try it with
//! (`listen`). Commands that change the database work on it directly, with no API key.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use webhook_app::config::{Role, Settings};
use webhook_app::store::Store;
use webhook_domain::{SigningSecret, WalletId};

/// webhookd: durable, signed webhook delivery, compatible with the Identus Cloud Agent.
#[derive(Debug, Parser)]
#[command(name = "webhookd", version, about)]
struct Cli {
    /// A TOML configuration file (environment variables override it).
    #[arg(long, global = true, env = "WEBHOOKD_CONFIG")]
    config: Option<PathBuf>,
    /// How logs are written to standard error: for people, or one JSON object per line.
    #[arg(long, global = true, env = "WEBHOOKD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the REST API and the dispatcher (or one of them, to scale them apart).
    Serve {
        /// Do not migrate the database at start; refuse to start if it is not up to date.
        #[arg(long)]
        no_migrate: bool,
        /// Serve the REST API only and deliver nothing: instances started with
        /// --dispatcher-only on the same database deliver (role = "api").
        #[arg(long, conflicts_with = "dispatcher_only")]
        api_only: bool,
        /// Deliver (and prune history) only: nothing is served over HTTP, not even a health
        /// check; watch the process instead (role = "dispatcher").
        #[arg(long)]
        dispatcher_only: bool,
    },
    /// Create or upgrade the database, then exit.
    Migrate,
    /// Print the OpenAPI 3.1 document of the REST API (as committed in docs/openapi.json).
    Openapi,
    /// Print the configuration in effect (defaults, then the file, then the environment) as
    /// TOML, with secrets masked as ****.
    Config,
    /// Receive webhooks on 127.0.0.1:PORT and print each request, to try webhookd out.
    Listen {
        /// The port to listen on; 0 picks a free one (the address is printed first).
        port: u16,
        /// Check each Standard Webhooks signature with this secret (a webhook's `secret`).
        #[arg(long, value_name = "whsec_...")]
        secret: Option<String>,
        /// The status to answer every request with; 503, say, to watch the retries.
        #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u16).range(200..=599))]
        status: u16,
    },
    /// Publish one event directly into the database; its data is JSON from FILE or standard
    /// input. Prints the event's id and how many deliveries it made.
    Publish {
        /// The event type: one of Identus's (whose data is checked) or a name of your own.
        #[arg(long = "type", value_name = "TYPE")]
        event_type: String,
        /// The wallet to publish into; the default wallet when left out.
        #[arg(long, value_name = "UUID")]
        wallet: Option<WalletId>,
        /// A file holding the event's data; standard input when left out or `-`.
        file: Option<PathBuf>,
    },
    /// Create and list wallets, directly in the database.
    #[command(subcommand)]
    Wallet(WalletCommand),
    /// Generate a wallet's API keys, directly in the database.
    #[command(subcommand)]
    Apikey(ApikeyCommand),
}

#[derive(Debug, Subcommand)]
enum WalletCommand {
    /// Create a wallet and print its id.
    Create {
        /// 1 to 128 characters without control characters.
        name: String,
    },
    /// List the wallets, oldest first.
    List,
}

#[derive(Debug, Subcommand)]
enum ApikeyCommand {
    /// Generate an API key for a wallet and print it once (only its salted hash is stored).
    Create {
        /// The wallet the key opens.
        #[arg(value_name = "WALLET_ID")]
        wallet: WalletId,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = cli.log_format;
    // The service logs its progress; a one-off command only what went wrong.
    let quiet = !matches!(cli.command, Command::Serve { .. } | Command::Listen { .. });
    init_logs(format, if quiet { "warn" } else { "info" });
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            report(
                format,
                Level::Error,
                &format!("cannot start the async runtime: {e}"),
            );
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report(format, Level::Error, &format!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}

/// Libraries whose debug logs hold secrets: tokio-postgres prints each statement's parameters,
/// among them signing secrets and custom header values. They log at info at most unless
/// `RUST_LOG` names them.
const SECRET_LEAKING_TARGETS: &[&str] = &["tokio_postgres"];

/// Logs to standard error, filtered by `RUST_LOG` or else at `default_level`; colours only on a
/// terminal.
fn init_logs(format: LogFormat, default_level: &str) {
    let directives = std::env::var("RUST_LOG").unwrap_or_default();
    let filter = match tracing_subscriber::EnvFilter::try_new(&directives) {
        Ok(mut filter) if !directives.trim().is_empty() => {
            for target in SECRET_LEAKING_TARGETS {
                if !directives.contains(target)
                    && let Ok(directive) = format!("{target}=info").parse()
                {
                    filter = filter.add_directive(directive);
                }
            }
            filter
        }
        _ => default_level.into(),
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
}

/// How much a [`report`] matters, as the JSON logs spell it.
#[derive(Debug, Clone, Copy)]
enum Level {
    Error,
    Warn,
    Info,
}

/// One line on standard error outside the logs (which a filter may silence): the reason the
/// command failed, that it is stopping at once, or what to do with its output. JSON when the
/// logs are.
fn report(format: LogFormat, level: Level, message: &str) {
    match format {
        LogFormat::Text if matches!(level, Level::Error) => eprintln!("error: {message}"),
        LogFormat::Text => eprintln!("{message}"),
        LogFormat::Json => {
            let level = match level {
                Level::Error => "ERROR",
                Level::Warn => "WARN",
                Level::Info => "INFO",
            };
            let timestamp =
                webhook_domain::Timestamp::from_datetime(time::OffsetDateTime::now_utc());
            eprintln!(
                "{}",
                serde_json::json!({
                    "timestamp": timestamp.to_string(),
                    "level": level,
                    "message": message,
                    "target": "webhookd",
                })
            );
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = cli.config.as_deref();
    match cli.command {
        Command::Openapi => {
            print!("{}", webhook_app::api::openapi::committed_text());
            Ok(())
        }
        Command::Listen {
            port,
            secret,
            status,
        } => listen(port, secret.as_deref(), status).await,
        Command::Config => {
            print!("{}", Settings::load(config)?.to_toml()?);
            Ok(())
        }
        Command::Migrate => migrate(&Settings::load(config)?).await,
        Command::Serve {
            no_migrate,
            api_only,
            dispatcher_only,
        } => {
            let mut settings = Settings::load(config)?;
            if no_migrate {
                settings.migrate_on_start = false;
            }
            if api_only {
                settings.role = Role::Api;
            }
            if dispatcher_only {
                settings.role = Role::Dispatcher;
            }
            serve(&settings, cli.log_format).await
        }
        Command::Publish {
            event_type,
            wallet,
            file,
        } => {
            let settings = Settings::load(config)?;
            let data = read_data(file.as_deref())?;
            let event = webhook_app::operator::event(
                &event_type,
                wallet.unwrap_or(WalletId::DEFAULT),
                &data,
                &settings.api,
                time::OffsetDateTime::now_utc(),
            )?;
            let store = open(&settings).await?;
            let published =
                webhook_app::operator::publish(&store, &event, time::OffsetDateTime::now_utc())
                    .await?;
            println!("event: {}", published.event_id);
            println!("deliveries: {}", published.deliveries);
            Ok(())
        }
        Command::Wallet(WalletCommand::Create { name }) => {
            let store = open(&Settings::load(config)?).await?;
            let wallet = webhook_app::operator::create_wallet(
                &store,
                &name,
                time::OffsetDateTime::now_utc(),
            )
            .await?;
            println!("wallet: {}", wallet.id);
            println!("name: {}", wallet.name.as_str());
            Ok(())
        }
        Command::Wallet(WalletCommand::List) => {
            let store = open(&Settings::load(config)?).await?;
            println!("{:<36}  {:<27}  name", "id", "created");
            for wallet in webhook_app::operator::list_wallets(&store).await? {
                println!(
                    "{}  {:<27}  {}",
                    wallet.id,
                    webhook_domain::Timestamp::from_datetime(wallet.created_at).to_string(),
                    wallet.name.as_str()
                );
            }
            Ok(())
        }
        Command::Apikey(ApikeyCommand::Create { wallet }) => {
            let store = open(&Settings::load(config)?).await?;
            let key = webhook_app::operator::create_api_key(
                &store,
                wallet,
                time::OffsetDateTime::now_utc(),
            )
            .await?;
            println!("wallet: {wallet}");
            println!("apikey: {}", key.expose());
            report(
                cli.log_format,
                Level::Info,
                "send the key in the apikey header; it is shown only now (only its hash is stored)",
            );
            Ok(())
        }
    }
}

/// The database for a one-off command: one connection, migrated as `serve` would.
async fn open(settings: &Settings) -> anyhow::Result<Store> {
    let mut settings = settings.clone();
    settings.database_pool_size = 1;
    webhook_app::open_store(&settings).await
}

/// An event's data: the file, or standard input for none or `-`.
fn read_data(file: Option<&Path>) -> anyhow::Result<Vec<u8>> {
    match file {
        Some(path) if path != Path::new("-") => {
            std::fs::read(path).with_context(|| format!("{}: cannot be read", path.display()))
        }
        _ => {
            let mut data = Vec::new();
            std::io::stdin()
                .read_to_end(&mut data)
                .context("standard input: cannot be read")?;
            Ok(data)
        }
    }
}

async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let database = settings.database()?;
    let store = Store::open(&database, 1).await?;
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

async fn listen(port: u16, secret: Option<&str>, status: u16) -> anyhow::Result<()> {
    let secret = secret
        .map(SigningSecret::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--{e}"))?;
    let status = axum::http::StatusCode::from_u16(status).context("--status")?;
    let listener = webhook_app::listen::bind(port).await?;
    println!(
        "listening on http://{} (answering {}; Ctrl-C stops)",
        listener.local_addr()?,
        status.as_u16()
    );
    let mut signals = Signals::new()?;
    let receiver = webhook_app::listen::Receiver { secret, status };
    webhook_app::listen::serve(listener, receiver, async move { signals.next().await }).await
}

async fn serve(settings: &Settings, format: LogFormat) -> anyhow::Result<()> {
    // Listening before the start means a signal during it is not missed.
    let mut signals = Signals::new()?;
    let running = webhook_app::start(settings).await?;
    let base = running
        .addr
        .map(|addr| format!("http://{addr}{}", settings.base_path));
    match (&base, running.addr) {
        (Some(base), Some(addr)) => {
            let role = match settings.role {
                Role::Api => " (API only: instances with --dispatcher-only deliver)",
                Role::All | Role::Dispatcher => "",
            };
            println!("webhookd is listening on {base}{role}");
            println!("data: {}", running.database);
            println!("API description: http://{addr}/openapi.json");
        }
        _ => {
            println!("webhookd is delivering (dispatcher only: no HTTP is served)");
            println!("data: {}", running.database);
        }
    }
    if let Some(token) = &running.generated_admin_token {
        println!();
        println!("The admin key, for x-admin-api-key (shown only now; it is stored hashed):");
        println!("  {}", token.expose());
    }
    if let Some(key) = &running.generated_default_key {
        println!();
        println!("The default wallet's API key (shown only now; it is stored hashed):");
        println!("  {}", key.expose());
        if let Some(base) = &base {
            println!();
            println!("Register a webhook with:");
            println!(
                "  curl -X POST '{base}/events/webhooks' -H 'Content-Type: application/json' \\\n    -H 'apikey: {}' -d '{{\"url\": \"http://localhost:9095\"}}'",
                key.expose()
            );
        }
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
    signals.next().await;
    println!(
        "shutting down: finishing attempts in flight and giving back the rest (a second signal stops at once)"
    );
    tokio::select! {
        () = running.stop() => Ok(()),
        () = signals.next() => {
            report(
                format,
                Level::Warn,
                "second signal: stopping at once; attempts still in flight are retried once their leases run out",
            );
            std::process::exit(130);
        }
    }
}

/// Ctrl-C and SIGTERM (what service managers and container runtimes send), heard by one
/// listener for the life of the command, so that a second signal is never missed.
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                interrupt: signal(SignalKind::interrupt()).context("cannot listen for Ctrl-C")?,
                terminate: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// The next Ctrl-C or SIGTERM.
    async fn next(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        #[cfg(not(unix))]
        {
            // Without a handler, a failure to listen would leave no way to stop: stop now.
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
