//! `webhookd-bench reliability`: the fault scenarios of issue 8. Like the benchmark, it runs
//! the real release `webhookd` as child processes and only talks HTTP to them (the failover
//! scenario also reads the leases of its own schema with `psql`), but instead of measuring
//! speed it breaks things and counts what was lost:
//!
//! - `crash-sqlite`, `crash-postgres` ([`crash`]): SIGKILLs at random moments, restarts.
//! - `pg-outage` ([`outage`]): the PostgreSQL server stopped for a while mid-run, on a cluster
//!   of the scenario's own ([`cluster`]), never the shared one.
//! - `failover` ([`failover`]): two instances on one schema, one killed; the other takes over
//!   its leases once they end.
//!
//! Every scenario is bounded in time and fails rather than hangs. The table goes to the
//! terminal and, unless `--quick` or `--no-docs`, into `docs/reliability.md` ([`report`]).

pub(crate) mod cluster;
mod crash;
mod failover;
mod outage;
mod producer;
mod report;
mod tally;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};

use self::producer::Answers;
use self::report::Row;
use crate::api::Api;
use crate::sink::{Route, Sink};
use crate::webhookd::{Backend, Launcher};

pub(crate) const ALL_SCENARIOS: [&str; 4] =
    ["crash-sqlite", "crash-postgres", "pg-outage", "failover"];

/// The dispatcher settings of the crash and failover scenarios: a 5 s lease instead of the
/// default minute, so that deliveries cut off by a kill are due again within seconds.
const SHORT_LEASE: &[(&str, &str)] = &[
    ("WEBHOOKD_DISPATCHER__LEASE_MS", "5000"),
    ("WEBHOOKD_DISPATCHER__ATTEMPT_TIMEOUT_MS", "2000"),
];

/// How long a scenario waits, once everything arrived, for the repeats of deliveries whose
/// outcome was lost (the lease, and a poll).
const SETTLE: Duration = Duration::from_secs(7);

/// The fault scenarios: see docs/reliability.md.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The webhookd binary to run (a release build).
    #[arg(long)]
    webhookd: PathBuf,
    /// Smaller runs (1,000 events, a 5 s outage), in about two minutes; writes no docs.
    #[arg(long)]
    quick: bool,
    /// Only these scenarios (crash-sqlite, crash-postgres, pg-outage, failover).
    #[arg(long, value_delimiter = ',')]
    scenarios: Option<Vec<String>>,
    /// The seed of the kill schedules (printed; by default taken from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// Where webhookd's logs go.
    #[arg(long, default_value = "target/reliability")]
    out_dir: PathBuf,
    /// The file whose faults section a full run rewrites.
    #[arg(long, default_value = "docs/reliability.md")]
    docs: PathBuf,
    /// Do not write --docs.
    #[arg(long)]
    no_docs: bool,
}

/// How big each scenario is.
#[derive(Debug, Clone)]
pub(crate) struct Sizes {
    pub(crate) crash_events: usize,
    pub(crate) kills: usize,
    /// Each incarnation of a crash scenario lives between these before its SIGKILL.
    pub(crate) min_uptime: Duration,
    pub(crate) max_uptime: Duration,
    pub(crate) outage_events: usize,
    /// Events per second published in the outage scenario (slower, so that publishing goes
    /// on after the outage).
    pub(crate) outage_rate: f64,
    /// When the outage starts, after publishing started.
    pub(crate) outage_after: Duration,
    pub(crate) outage: Duration,
    pub(crate) failover_events: usize,
    /// How long the failover receivers hold each request.
    pub(crate) failover_hold: Duration,
    /// Events per publish request.
    pub(crate) batch: usize,
    /// Events per second published.
    pub(crate) rate: f64,
    /// A batch not acknowledged by then is given up.
    pub(crate) give_up_after: Duration,
    /// The longest wait for deliveries once publishing ended.
    pub(crate) delivery_limit: Duration,
    /// The longest a whole scenario may take.
    pub(crate) scenario_limit: Duration,
}

impl Sizes {
    fn new(quick: bool) -> Self {
        Self {
            crash_events: if quick { 1_000 } else { 5_000 },
            kills: if quick { 5 } else { 6 },
            min_uptime: Duration::from_millis(500),
            max_uptime: Duration::from_millis(if quick { 2_000 } else { 3_500 }),
            outage_events: if quick { 1_000 } else { 3_000 },
            outage_rate: if quick { 100.0 } else { 150.0 },
            outage_after: Duration::from_secs(if quick { 3 } else { 5 }),
            outage: Duration::from_secs(if quick { 5 } else { 10 }),
            failover_events: if quick { 60 } else { 150 },
            failover_hold: Duration::from_secs(1),
            batch: 10,
            rate: if quick { 100.0 } else { 250.0 },
            give_up_after: Duration::from_secs(120),
            delivery_limit: Duration::from_secs(120),
            scenario_limit: Duration::from_secs(300),
        }
    }
}

/// What every scenario of a run shares.
#[derive(Debug)]
pub(crate) struct Harness {
    binary: PathBuf,
    log_dir: PathBuf,
    sizes: Sizes,
    seed: u64,
}

impl Harness {
    fn launcher(&self, settings: &[(&str, &str)]) -> Launcher {
        Launcher {
            binary: self.binary.clone(),
            extra_env: settings
                .iter()
                .map(|&(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            log_dir: self.log_dir.clone(),
        }
    }

    /// The run's seed, made distinct per scenario so that two backends do not share a
    /// schedule.
    fn seed_for(&self, scenario: &str) -> u64 {
        let position = ALL_SCENARIOS
            .iter()
            .position(|s| *s == scenario)
            .unwrap_or(0);
        self.seed.wrapping_add(position as u64)
    }
}

/// Three fast receivers (one route, and port, each) and the wallet whose webhooks point at
/// them, or receivers that hold each request for a while.
#[derive(Debug)]
pub(crate) struct Receivers {
    pub(crate) sink: Sink,
    pub(crate) routes: Vec<usize>,
    paths: Vec<String>,
}

impl Receivers {
    const PATHS: [&str; 3] = ["/receiver/0", "/receiver/1", "/receiver/2"];

    async fn start(events: usize, hold: Option<Duration>) -> anyhow::Result<Self> {
        let routes = Self::PATHS
            .iter()
            .map(|p| match hold {
                Some(delay) => Route::slow(p, delay),
                None => Route::fast(p),
            })
            .collect();
        let sink = Sink::start_on(0, routes, events * Self::PATHS.len()).await?;
        let indices = Self::PATHS
            .iter()
            .map(|p| sink.route(p).context("the sink has every route"))
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            sink,
            routes: indices,
            paths: Self::PATHS.iter().map(|p| (*p).to_owned()).collect(),
        })
    }

    fn count(&self) -> u32 {
        self.paths.len() as u32
    }

    /// Creates a wallet with one webhook per receiver; answers its API key.
    async fn register(&self, api: &Api, name: &str) -> anyhow::Result<String> {
        let key = api.create_wallet(name).await?;
        for path in &self.paths {
            api.register_webhook(&key, &self.sink.url(path)).await?;
        }
        Ok(key)
    }
}

/// What the producer saw that fails a scenario: a server error other than 503, a 503 that is
/// not a problem body, a hang, a refused batch, an event never acknowledged.
fn publish_failures(answers: &Answers) -> Vec<String> {
    let mut failures = Vec::new();
    if let Some((status, body)) = answers.server_errors.first() {
        failures.push(format!(
            "{} publishes answered a server error other than 503 (first: {status} {body})",
            answers.server_errors.len()
        ));
    }
    if answers.unavailable_without_problem > 0 {
        failures.push(format!(
            "{} answers 503 without a problem+json body",
            answers.unavailable_without_problem
        ));
    }
    if answers.hung > 0 {
        failures.push(format!(
            "{} publishes got no answer within {} s",
            answers.hung,
            producer::REQUEST_LIMIT.as_secs()
        ));
    }
    if let Some(first) = answers.rejected.first() {
        failures.push(format!(
            "{} batches refused (first: {first})",
            answers.rejected.len()
        ));
    }
    if !answers.unacked.is_empty() {
        failures.push(format!(
            "{} events never acknowledged",
            answers.unacked.len()
        ));
    }
    failures
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let binary = std::fs::canonicalize(&args.webhookd)
        .with_context(|| format!("no webhookd binary at {}", args.webhookd.display()))?;
    let wanted: Vec<&str> = ALL_SCENARIOS
        .into_iter()
        .filter(|id| {
            args.scenarios
                .as_ref()
                .is_none_or(|list| list.iter().any(|s| s.eq_ignore_ascii_case(id)))
        })
        .collect();
    if let Some(list) = &args.scenarios
        && let Some(unknown) = list
            .iter()
            .find(|s| !ALL_SCENARIOS.iter().any(|id| id.eq_ignore_ascii_case(s)))
    {
        bail!(
            "--scenarios: {unknown:?} is not a scenario; expected some of {}",
            ALL_SCENARIOS.join(", ")
        );
    }
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    eprintln!("seed {seed} (repeat the kill schedules with --seed {seed})");
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("cannot create {}", args.out_dir.display()))?;
    let harness = Harness {
        binary,
        log_dir: args.out_dir.join("logs"),
        sizes: Sizes::new(args.quick),
        seed,
    };
    let mut rows = Vec::new();
    for id in wanted {
        eprintln!("{id}: running");
        let limit = harness.sizes.scenario_limit;
        let scenario = async {
            match id {
                "crash-sqlite" => crash::run(&harness, Backend::Sqlite).await,
                "crash-postgres" => crash::run(&harness, Backend::Postgres).await,
                "pg-outage" => outage::run(&harness).await,
                "failover" => failover::run(&harness).await,
                _ => unreachable!("only known scenarios are listed"),
            }
        };
        // Dropping a scenario that ran out of time kills its webhookd processes and its
        // PostgreSQL cluster (their handles do so on drop).
        let row = match tokio::time::timeout(limit, scenario).await {
            Ok(row) => row.with_context(|| format!("{id} could not run"))?,
            Err(_) => Row {
                scenario: id.to_owned(),
                backend: if id == "crash-sqlite" {
                    "SQLite"
                } else {
                    "PostgreSQL"
                },
                tally: tally::Tally::default(),
                peak_rss: None,
                duration: limit,
                notes: Vec::new(),
                details: vec![format!(
                    "Did not finish within {} s; see the webhookd logs in {}.",
                    limit.as_secs(),
                    harness.log_dir.display()
                )],
                failures: vec![format!("did not finish within {} s", limit.as_secs())],
            },
        };
        eprintln!(
            "{id}: {}",
            if row.passed() {
                "passed".to_owned()
            } else {
                format!("FAILED: {}", row.failures.join("; "))
            }
        );
        rows.push(row);
    }
    println!("{}", report::table(&rows));
    for row in &rows {
        println!("\n{}: {}", row.scenario, row.details.join(" "));
    }
    if !args.quick && !args.no_docs {
        let stamp = format!(
            "{}, `cargo xtask reliability`",
            time::OffsetDateTime::now_utc()
                .format(time::macros::format_description!("[year]-[month]-[day]"))
                .unwrap_or_default()
        );
        report::write_docs(&args.docs, &rows, &stamp)?;
    }
    let failed: Vec<&str> = rows
        .iter()
        .filter(|r| !r.passed())
        .map(|r| r.scenario.as_str())
        .collect();
    if !failed.is_empty() {
        bail!("failed: {}", failed.join(", "));
    }
    Ok(())
}

/// Runs blocking work (the PostgreSQL tools) off the runtime's threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .context("a blocking task panicked")?
}
