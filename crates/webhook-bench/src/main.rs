//! `webhookd-bench`: the end-to-end benchmark of webhookd (issue 7).
//!
//! It runs the real `webhookd` binary (a release build, whose path it is given) as a child
//! process on a fresh database per scenario, publishes through the REST API, receives the
//! deliveries on its own sink, and measures rates, latencies, CPU and memory, beside two
//! ceilings taken in the same run. It writes `results.json`, a markdown report and an SVG
//! chart to the output directory, and, for a full run, the report to `docs/`.
//!
//! It must not change webhookd: it only starts the binary and talks HTTP to it (the storage
//! ceiling uses the adapters' public API on a database of its own). `cargo xtask bench` builds
//! both binaries and runs it; `--quick` is the two-minute check.

mod api;
mod backlog;
mod ceiling;
mod chart;
mod checks;
mod clock;
mod driver;
mod nats;
mod pgbench;
mod procfs;
mod reliability;
mod report;
mod results;
mod scenarios;
mod sink;
mod stats;
mod sustained;
mod webhookd;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Parser;

use crate::results::{Ceilings, Results};
use crate::scenarios::{Bench, Sizes};
use crate::webhookd::{Backend, Launcher};

/// The end-to-end benchmark of webhookd: see docs/benchmarks.md. With the `reliability`
/// subcommand, the fault scenarios instead: see docs/reliability.md.
#[derive(Debug, Parser)]
#[command(
    name = "webhookd-bench",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<Subcommand>,
    /// The webhookd binary to measure (a release build).
    #[arg(long, required = true)]
    webhookd: Option<PathBuf>,
    /// A small S1 and S4 on each backend, in under two minutes; writes to --out-dir only.
    #[arg(long)]
    quick: bool,
    /// Where results.json, the report, the chart and webhookd's logs go.
    #[arg(long, default_value = "target/bench")]
    out_dir: PathBuf,
    /// Where a full run writes benchmarks.md and benchmarks.svg.
    #[arg(long, default_value = "docs")]
    docs_dir: PathBuf,
    /// Do not write to --docs-dir, even in a full run.
    #[arg(long)]
    no_docs: bool,
    /// Only these scenarios (S1,S2,S3,S4,S5,S6,S7,S8); with --quick, any of them at quick sizes.
    #[arg(long, value_delimiter = ',')]
    scenarios: Option<Vec<String>>,
    /// Only these backends (sqlite,postgres).
    #[arg(long, value_delimiter = ',')]
    backends: Option<Vec<String>>,
    /// An extra webhookd setting, KEY=VALUE (e.g. WEBHOOKD_DISPATCHER__BATCH_SIZE=256);
    /// repeatable; printed in the report.
    #[arg(long = "webhookd-env", value_parser = key_value)]
    webhookd_env: Vec<(String, String)>,
    /// Publish requests in flight (S1, S2, and the sink ceiling).
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    /// Events per POST /events/batch (S5, S6).
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Batch requests in flight (S5, S6).
    #[arg(long, default_value_t = 4)]
    batch_in_flight: usize,
    #[arg(long)]
    s1_events: Option<u64>,
    #[arg(long)]
    s2_events: Option<u64>,
    /// S3's steady rate, events per second.
    #[arg(long)]
    s3_rate: Option<f64>,
    #[arg(long)]
    s3_seconds: Option<f64>,
    /// S4's rate, events per second over both wallets.
    #[arg(long)]
    s4_rate: Option<f64>,
    #[arg(long)]
    s4_seconds: Option<f64>,
    /// How long S4's slow webhook takes to answer.
    #[arg(long, default_value_t = 2000)]
    s4_slow_ms: u64,
    #[arg(long)]
    s5_events: Option<u64>,
    #[arg(long)]
    s6_events: Option<u64>,
    /// Events waiting behind S7's down webhook.
    #[arg(long)]
    s7_backlog: Option<u64>,
    /// S7's rate into the other wallet, events per second.
    #[arg(long)]
    s7_rate: Option<f64>,
    /// Seconds of each of S7's measured runs.
    #[arg(long)]
    s7_seconds: Option<f64>,
    /// Deliveries of the storage ceiling (per backend) and of the raw SQL one.
    #[arg(long)]
    ceiling_deliveries: Option<u64>,
    /// Clients of the storage and raw SQL ceilings.
    #[arg(long, default_value_t = ceiling::DEFAULT_CLIENTS)]
    ceiling_clients: usize,
    /// Requests of the sink ceiling.
    #[arg(long)]
    sink_requests: Option<u64>,
    /// Longest wait for a scenario's deliveries after its publishing ends.
    #[arg(long, default_value_t = 300)]
    deadline_secs: u64,
    /// Longest wait for S5's drain.
    #[arg(long, default_value_t = 3600)]
    s5_deadline_secs: u64,
    /// S8's S1 runs on one webhookd and one database.
    #[arg(long, default_value_t = 5)]
    sustained_runs: u32,
    /// S8 on demand: S1 runs again and again until this many minutes have passed (e.g. 60),
    /// instead of --sustained-runs.
    #[arg(long)]
    sustained_minutes: Option<f64>,
}

#[derive(Debug, clap::Subcommand)]
enum Subcommand {
    /// The fault scenarios (crashes, a database outage, failover) instead of the benchmark.
    Reliability(reliability::Args),
    /// Checks an ordered webhook's order: sequential batches, then concurrent publishes.
    Order(checks::Args),
    /// Counts requests a webhook's receiver gets after its DELETE, or its PATCH disabling
    /// it, has answered.
    Delete(checks::Args),
    /// The PostgreSQL ceilings alone, with no webhookd: the raw SQL one (pgbench) and the
    /// adapter's rate of the same cycles.
    Ceiling(pgbench::Args),
    /// Throughput through NATS JetStream (a stream into webhookd, webhookd to a subject)
    /// beside HTTP to HTTP, medians of several rounds.
    Nats(nats::Args),
}

fn key_value(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected KEY=VALUE"))?;
    if key.is_empty() {
        return Err(format!("{text:?}: the key is empty"));
    }
    Ok((key.to_owned(), value.to_owned()))
}

const ALL_SCENARIOS: [&str; 8] = ["S1", "S2", "S3", "S4", "S5", "S6", "S7", "S8"];

/// Sizes, and whether they are the defaults of the mode.
fn sizes(args: &Args) -> (Sizes, bool) {
    let q = args.quick;
    let sizes = Sizes {
        in_flight: args.in_flight,
        batch: args.batch,
        batch_in_flight: args.batch_in_flight,
        s1_events: args.s1_events.unwrap_or(if q { 2_000 } else { 20_000 }),
        s2_events: args.s2_events.unwrap_or(if q { 200 } else { 2_000 }),
        s3_rate: args.s3_rate.unwrap_or(1_000.0),
        s3_seconds: args.s3_seconds.unwrap_or(if q { 5.0 } else { 30.0 }),
        s4_rate: args.s4_rate.unwrap_or(if q { 200.0 } else { 500.0 }),
        s4_seconds: args.s4_seconds.unwrap_or(if q { 4.0 } else { 20.0 }),
        s4_slow_ms: args.s4_slow_ms,
        s5_events: args.s5_events.unwrap_or(if q { 20_000 } else { 1_000_000 }),
        s6_events: args.s6_events.unwrap_or(if q { 2_000 } else { 20_000 }),
        s7_backlog: args.s7_backlog.unwrap_or(if q { 10_000 } else { 50_000 }),
        s7_rate: args.s7_rate.unwrap_or(10.0),
        s7_seconds: args.s7_seconds.unwrap_or(if q { 10.0 } else { 30.0 }),
        deadline_secs: args.deadline_secs,
        s5_deadline_secs: args.s5_deadline_secs,
        s8_runs: args.sustained_runs,
        s8_minutes: args.sustained_minutes,
    };
    let default = args.s1_events.is_none()
        && args.s2_events.is_none()
        && args.s3_rate.is_none()
        && args.s3_seconds.is_none()
        && args.s4_rate.is_none()
        && args.s4_seconds.is_none()
        && args.s5_events.is_none()
        && args.s6_events.is_none()
        && args.s7_backlog.is_none()
        && args.s7_rate.is_none()
        && args.s7_seconds.is_none()
        && args.ceiling_deliveries.is_none()
        && args.sink_requests.is_none()
        && args.in_flight == 64
        && args.batch == 100
        && args.batch_in_flight == 4
        && args.s4_slow_ms == 2000
        && args.sustained_runs == 5
        && args.sustained_minutes.is_none()
        && args.ceiling_clients == ceiling::DEFAULT_CLIENTS;
    (sizes, default)
}

fn size_rows(s: &Sizes, ceiling: u64, sink: u64) -> Vec<(String, String)> {
    [
        (
            "publish requests in flight (S1, S2, sink ceiling)",
            s.in_flight.to_string(),
        ),
        ("events per batch request (S5, S6)", s.batch.to_string()),
        (
            "batch requests in flight (S5, S6)",
            s.batch_in_flight.to_string(),
        ),
        ("S1 events", s.s1_events.to_string()),
        ("S2 events (10 webhooks each)", s.s2_events.to_string()),
        (
            "S3 rate (events/s) × seconds",
            format!("{} × {}", s.s3_rate, s.s3_seconds),
        ),
        (
            "S4 rate (events/s) × seconds",
            format!("{} × {}", s.s4_rate, s.s4_seconds),
        ),
        ("S4 slow answer (ms)", s.s4_slow_ms.to_string()),
        ("S5 events", s.s5_events.to_string()),
        ("S6 events", s.s6_events.to_string()),
        (
            "S7 backlog behind the down webhook",
            s.s7_backlog.to_string(),
        ),
        (
            "S7 rate (events/s) × seconds, each run",
            format!("{} × {}", s.s7_rate, s.s7_seconds),
        ),
        (
            "S8 S1 runs on one webhookd and database",
            s.s8_minutes.map_or_else(
                || s.s8_runs.to_string(),
                |m| format!("as many as start within {m} minutes"),
            ),
        ),
        ("storage ceiling deliveries", ceiling.to_string()),
        ("sink ceiling requests", sink.to_string()),
        (
            "deadline per scenario (s; S5)",
            format!("{}; {}", s.deadline_secs, s.s5_deadline_secs),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Ctrl-C drops the run's future, and with it every webhookd it started (they are killed
    // on drop) and every temporary database.
    let work = async {
        match args.command {
            Some(Subcommand::Reliability(reliability)) => reliability::run(reliability).await,
            Some(Subcommand::Order(args)) => checks::order(args).await,
            Some(Subcommand::Delete(args)) => checks::delete(args).await,
            Some(Subcommand::Ceiling(args)) => pgbench::alone(args).await,
            Some(Subcommand::Nats(args)) => nats::run(args).await,
            None => run(args).await,
        }
    };
    tokio::select! {
        result = work => result,
        _ = tokio::signal::ctrl_c() => bail!("interrupted: the webhookd processes were stopped"),
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    // clap requires --webhookd when no subcommand is given.
    let webhookd = args.webhookd.as_ref().context("--webhookd is required")?;
    let binary = std::fs::canonicalize(webhookd)
        .with_context(|| format!("no webhookd binary at {}", webhookd.display()))?;
    let started_at = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
        ))
        .unwrap_or_default();
    let (sizes, default_sizes) = sizes(&args);
    let wanted = |id: &str| {
        args.scenarios
            .as_ref()
            .is_none_or(|list| list.iter().any(|s| s.eq_ignore_ascii_case(id)))
    };
    let scenarios: Vec<&str> = ALL_SCENARIOS
        .into_iter()
        // A quick run is S1 and S4 unless scenarios are named.
        .filter(|id| args.scenarios.is_some() || !args.quick || matches!(*id, "S1" | "S4"))
        .filter(|id| wanted(id))
        .collect();
    let mut backends = Backend::named(args.backends.as_deref());
    let mut skipped = Vec::new();
    if backends.contains(&Backend::Postgres)
        && webhook_adapters::testing::PgTestSchema::create()
            .await
            .is_none()
    {
        let line = format!(
            "PostgreSQL at {} does not answer: the PostgreSQL scenarios (S5 included) were \
             skipped. Start it (cargo xtask db) to measure them.",
            webhook_adapters::testing::pg_server_url()
        );
        eprintln!("{line}");
        skipped.push(line);
        backends.retain(|b| *b != Backend::Postgres);
    }
    let mode = if args.quick {
        "quick"
    } else if default_sizes && args.scenarios.is_none() && args.backends.is_none() {
        "full"
    } else {
        "custom"
    };
    let out_dir = args.out_dir.clone();
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;

    let launcher = Launcher {
        binary: binary.clone(),
        extra_env: args.webhookd_env.clone(),
        log_dir: out_dir.join("logs"),
    };
    let mut webhookd_env: Vec<(String, String)> = [
        ("ADMIN_TOKEN", api::ADMIN_TOKEN),
        ("DEFAULT_WALLET_AUTH_API_KEY", api::DEFAULT_WALLET_KEY),
        ("WEBHOOKD_LISTEN", "127.0.0.1:<a free port>"),
        (
            "WEBHOOKD_DATA_DIR or WEBHOOKD_DATABASE_URL",
            "a fresh temporary directory, or a fresh schema of the webhookd_test database",
        ),
        ("WEBHOOKD_TRANSPORT__ALLOWED_CIDRS", "127.0.0.0/8"),
        ("RUST_LOG", "warn"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    webhookd_env.extend(args.webhookd_env.iter().cloned());

    let ceiling_deliveries =
        args.ceiling_deliveries
            .unwrap_or(if args.quick { 5_000 } else { 20_000 });
    let sink_requests = args
        .sink_requests
        .unwrap_or(if args.quick { 10_000 } else { 50_000 });
    let bench = Bench {
        launcher,
        sizes: sizes.clone(),
        ticks_per_s: procfs::clock_ticks(),
    };
    let mut results = Results {
        mode: mode.to_owned(),
        started_at,
        machine: procfs::Machine::describe(),
        webhookd_binary: binary.display().to_string(),
        source_revision: source_revision(),
        webhookd_env,
        commands: commands(&args),
        sizes: size_rows(&sizes, ceiling_deliveries, sink_requests),
        ceilings: Ceilings {
            sink_in_flight: sizes.in_flight,
            store_clients: args.ceiling_clients,
            ..Ceilings::default()
        },
        idle_rss: Vec::new(),
        scenarios: Vec::new(),
        isolation: Vec::new(),
        skipped,
        sustained: Vec::new(),
    };

    eprintln!(
        "ceiling: bare client to the sink, {} requests, {} in flight",
        sink_requests, sizes.in_flight
    );
    let sink_rate = ceiling::sink_rate(sizes.in_flight, sink_requests).await?;
    eprintln!("  {sink_rate:.0} requests/s");
    results.ceilings.sink_per_s = Some(sink_rate);

    for &backend in &backends {
        if backend == Backend::Postgres {
            let raw = pgbench::raw_sql_ceiling(args.ceiling_clients, ceiling_deliveries).await?;
            results.ceilings.raw_sql = Some(raw);
        }
        eprintln!(
            "ceiling: {} adapter, {ceiling_deliveries} deliveries in cycles of {} (publish, \
             claim, record), {} clients",
            backend.name(),
            ceiling::CLAIM_BATCH,
            args.ceiling_clients
        );
        let rate = ceiling::store_rate(backend, ceiling_deliveries, args.ceiling_clients).await?;
        eprintln!("  {rate:.0} deliveries/s");
        results.ceilings.store_per_s.push((backend, rate));
        if let Some(raw) = results.ceilings.raw_sql.as_mut()
            && backend == Backend::Postgres
        {
            raw.adapter_fraction = Some(rate / raw.per_s);
            eprintln!("  {:.0} % of the raw SQL ceiling", rate / raw.per_s * 100.0);
        }

        for &id in &scenarios {
            match id {
                "S1" => {
                    let (s1, idle) = bench.s1(backend).await?;
                    results.scenarios.push(s1);
                    if let Some(idle) = idle {
                        results.idle_rss.push((backend, idle));
                    }
                }
                "S2" => results.scenarios.push(bench.s2(backend).await?),
                "S3" => results.scenarios.push(bench.s3(backend).await?),
                "S4" => {
                    let (control, slow, isolation) = bench.s4(backend).await?;
                    results.scenarios.push(control);
                    results.scenarios.push(slow);
                    results.isolation.extend(isolation);
                }
                "S5" if backend == Backend::Postgres => {
                    results.scenarios.push(bench.s5().await?);
                }
                "S5" => {}
                "S6" => results.scenarios.push(bench.s6(backend).await?),
                "S7" => {
                    for ordered in [false, true] {
                        let (control, backlog, isolation) = bench.s7(backend, ordered).await?;
                        results.scenarios.push(control);
                        results.scenarios.push(backlog);
                        results.isolation.extend(isolation);
                    }
                }
                "S8" => match bench.s8(backend).await? {
                    sustained::Measured::Done(s8) => results.sustained.push(s8),
                    sustained::Measured::Skipped(line) => results.skipped.push(line),
                },
                _ => unreachable!("only known scenarios are listed"),
            }
        }
    }
    for scenario in &mut results.scenarios {
        scenario.of_ceiling = results
            .ceilings
            .lower(scenario.backend)
            .zip(scenario.delivery_per_s)
            .map(|(lower, rate)| rate / lower);
    }
    if let Some(raw) = results.ceilings.raw_sql.as_mut() {
        raw.compare_s1(&results.scenarios);
        if let Some(fraction) = raw.s1_fraction {
            eprintln!(
                "S1 on PostgreSQL: {:.0} % of the raw SQL ceiling",
                fraction * 100.0
            );
        }
    }

    write_outputs(
        &results,
        &out_dir,
        (!args.quick && !args.no_docs).then_some(&args.docs_dir),
    )
}

fn write_outputs(results: &Results, out_dir: &Path, docs: Option<&PathBuf>) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(results)?;
    let markdown = report::markdown(results, "benchmarks.svg");
    let svg = chart::benchmark_chart(results);
    let write = |path: PathBuf, text: &str| {
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
        anyhow::Ok(())
    };
    write(out_dir.join("results.json"), &json)?;
    write(out_dir.join("benchmarks.md"), &markdown)?;
    write(out_dir.join("benchmarks.svg"), &svg)?;
    if let Some(docs) = docs {
        write(docs.join("benchmarks.md"), &markdown)?;
        write(docs.join("benchmarks.svg"), &svg)?;
    }
    println!("{markdown}");
    Ok(())
}

/// The commands that made this run: xtask's, and the harness's own command line.
fn commands(args: &Args) -> Vec<String> {
    let xtask = if args.quick {
        "cargo xtask bench --quick"
    } else {
        "cargo xtask bench"
    };
    // Paths under the working directory (the workspace, when xtask runs it) are shown
    // relative to it: the report is committed, and a machine's own paths do not belong there.
    let cwd = std::env::current_dir()
        .map(|dir| format!("{}/", dir.display()))
        .unwrap_or_default();
    let argv: Vec<String> = std::env::args()
        .map(|a| {
            if cwd.len() > 1 {
                a.replace(&cwd, "")
            } else {
                a
            }
        })
        .map(|a| if a.contains(' ') { format!("'{a}'") } else { a })
        .collect();
    vec![
        format!("{xtask}   # builds the two binaries below in release mode, then runs:"),
        argv.join(" "),
    ]
}

/// `git describe`-like text of the source tree the binaries were built from, when in a
/// git checkout.
fn source_revision() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["describe", "--always", "--dirty", "--abbrev=12"])
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}
