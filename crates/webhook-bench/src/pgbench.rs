//! The raw SQL ceiling of the PostgreSQL adapter (issue 16): `pgbench` runs
//! `pgbench/delivery_cycle.sql`, the adapter's row work per delivery in raw SQL (publish,
//! claim, record), on a fresh schema that the adapter itself migrated and seeded, so that the
//! script meets the schema of the code it is compared with, and its test fails when a
//! migration leaves it behind. The adapter's rate of the same cycles, at the same clients, is
//! [`ceiling::store_rate`]; `webhookd-bench ceiling` measures both alone.
//!
//! It runs the `pgbench` and `psql` found on the PATH, on its own schema only.

use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{Context, bail};
use webhook_adapters::PgStore;
use webhook_adapters::testing::PgTestSchema;
use webhook_domain::{WalletId, WebhookId};

use crate::api;
use crate::ceiling::{self, CLAIM_BATCH};
use crate::results::RawSqlCeiling;
use crate::stats::per_second;
use crate::webhookd::Backend;

/// Where the script is kept, as the report names it.
pub(crate) const SCRIPT_PATH: &str = "crates/webhook-bench/pgbench/delivery_cycle.sql";
const SCRIPT: &str = include_str!("../pgbench/delivery_cycle.sql");

/// `webhookd-bench ceiling`: the PostgreSQL ceilings alone, with no webhookd.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// pgbench's clients (connections), and the adapter's: tasks sharing a pool of as many
    /// connections.
    #[arg(long, default_value_t = ceiling::DEFAULT_CLIENTS)]
    clients: usize,
    /// Deliveries of each of the two measures, rounded up to whole cycles of every client.
    #[arg(long, default_value_t = 20_000)]
    deliveries: u64,
}

/// The raw SQL ceiling and the adapter's rate of the same cycles, each on a fresh schema,
/// printed.
pub(crate) async fn alone(args: Args) -> anyhow::Result<()> {
    if PgTestSchema::create().await.is_none() {
        bail!(
            "PostgreSQL at {} does not answer; start it (cargo xtask db)",
            webhook_adapters::testing::pg_server_url()
        );
    }
    let raw = raw_sql_ceiling(args.clients, args.deliveries).await?;
    eprintln!(
        "ceiling: the PostgreSQL adapter, the same cycles, {} clients",
        args.clients
    );
    let adapter = ceiling::store_rate(Backend::Postgres, args.deliveries, args.clients).await?;
    eprintln!(
        "  {adapter:.0} deliveries/s, {:.0} % of the raw SQL ceiling",
        adapter / raw.per_s * 100.0
    );
    Ok(())
}

/// pgbench's rate of the script's cycles, `clients` connections running about `deliveries`
/// deliveries in all on a fresh schema; printed as it goes.
pub(crate) async fn raw_sql_ceiling(
    clients: usize,
    deliveries: u64,
) -> anyhow::Result<RawSqlCeiling> {
    let clients = clients.max(1);
    let per_client = ceiling::cycles_per_client(deliveries, clients);
    eprintln!(
        "ceiling: raw SQL (pgbench, {SCRIPT_PATH}), {} cycles of {CLAIM_BATCH} deliveries, \
         {clients} clients",
        per_client * clients as u64
    );
    let schema = PgTestSchema::create()
        .await
        .context("PostgreSQL stopped answering")?;
    let seeded = Seeded::on(schema).await?;
    let report = run_script(&seeded, clients, per_client).await?;
    let rows = count_rows(&seeded).await?;
    // Every cycle published a batch, and every outcome recorded has its attempt: otherwise the
    // script did not do the row work it is measured for.
    if rows.attempts != rows.delivered
        || rows.events != report.transactions * u64::from(CLAIM_BATCH)
    {
        bail!(
            "pgbench's {} cycles left {rows:?}: the script no longer does the adapter's row \
             work (cargo test -p webhook-bench pgbench says more)",
            report.transactions
        );
    }
    let elapsed = report.elapsed().context("pgbench measured no time")?;
    let per_s = per_second(rows.delivered, elapsed.as_nanos() as u64)
        .context("pgbench measured no time")?;
    eprintln!("  {per_s:.0} deliveries/s");
    Ok(RawSqlCeiling {
        script: SCRIPT_PATH.to_owned(),
        clients,
        threads: threads(clients),
        cycles: report.transactions,
        deliveries: rows.delivered,
        per_s,
        adapter_fraction: None,
        s1_fraction: None,
    })
}

/// A fresh schema that the adapter migrated (`PgStore::migrate`), holding the wallet and the
/// webhook the script publishes to, made through the adapter too.
#[derive(Debug)]
struct Seeded {
    schema: PgTestSchema,
    wallet: WalletId,
    webhook: WebhookId,
}

impl Seeded {
    async fn on(schema: PgTestSchema) -> anyhow::Result<Self> {
        let store = PgStore::connect(&schema.url(), 1).await?;
        store.migrate().await?;
        let (wallet, webhook) = ceiling::one_wallet_with_one_webhook(&store).await?;
        Ok(Self {
            schema,
            wallet,
            webhook,
        })
    }
}

/// pgbench's threads for `clients`: one per core at most.
fn threads(clients: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    clients.clamp(1, cores)
}

/// Runs `program` with `args` off the async threads; its output, once it succeeded.
async fn output(program: &'static str, args: Vec<String>) -> anyhow::Result<Output> {
    let output = tokio::task::spawn_blocking(move || Command::new(program).args(&args).output())
        .await?
        .with_context(|| {
            format!(
                "cannot run {program}: it comes with PostgreSQL (Debian: psql in \
                 postgresql-client, pgbench in postgresql)"
            )
        })?;
    if !output.status.success() {
        bail!(
            "{program} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout)
        );
    }
    Ok(output)
}

/// Runs the script on `seeded` with `clients` connections, each running `cycles_per_client`
/// cycles, with prepared statements (which its pipelines need).
async fn run_script(
    seeded: &Seeded,
    clients: usize,
    cycles_per_client: u64,
) -> anyhow::Result<Report> {
    let mut script = tempfile::Builder::new()
        .prefix("delivery_cycle-")
        .suffix(".sql")
        .tempfile()?;
    std::io::Write::write_all(&mut script, SCRIPT.as_bytes())?;
    let args = vec![
        "--no-vacuum".to_owned(),
        "--protocol=prepared".to_owned(),
        format!("--client={clients}"),
        format!("--jobs={}", threads(clients)),
        format!("--transactions={cycles_per_client}"),
        format!("--file={}", script.path().display()),
        format!("--define=wallet={}", seeded.wallet),
        format!("--define=webhook={}", seeded.webhook),
        format!("--define=batch={CLAIM_BATCH}"),
        format!("--define=data={}", api::CONNECTION_DATA),
        seeded.schema.url(),
    ];
    let out = output("pgbench", args).await?;
    let report = Report::parse(&String::from_utf8_lossy(&out.stdout))?;
    if report.failed > 0 {
        bail!(
            "{} of pgbench's transactions failed: {}",
            report.failed,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(report)
}

/// What pgbench's summary says of a run.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Report {
    /// Transactions (script runs) completed, failed ones aside.
    transactions: u64,
    failed: u64,
    /// Transactions per second, the time to connect left out.
    tps: f64,
}

impl Report {
    /// The figures of pgbench's summary (PostgreSQL 15's wording).
    fn parse(summary: &str) -> anyhow::Result<Self> {
        let after = |label: &str| {
            summary
                .lines()
                .find_map(|line| line.trim().strip_prefix(label))
                .map(str::trim)
                .with_context(|| format!("pgbench's summary has no {label:?} line:\n{summary}"))
        };
        let first_word = |text: &str| text.split([' ', '/']).next().unwrap_or_default().to_owned();
        let transactions = first_word(after("number of transactions actually processed:")?);
        let failed = first_word(after("number of failed transactions:")?);
        let tps = first_word(after("tps =")?);
        Ok(Self {
            transactions: transactions.parse().context("pgbench's transactions")?,
            failed: failed.parse().context("pgbench's failed transactions")?,
            tps: tps.parse().context("pgbench's tps")?,
        })
    }

    /// The time the transactions took, connections aside.
    fn elapsed(&self) -> Option<Duration> {
        (self.tps > 0.0).then(|| Duration::from_secs_f64(self.transactions as f64 / self.tps))
    }
}

/// Rows in a seeded schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rows {
    events: u64,
    deliveries: u64,
    delivered: u64,
    attempts: u64,
}

async fn count_rows(seeded: &Seeded) -> anyhow::Result<Rows> {
    let query = "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM deliveries), \
                 (SELECT count(*) FROM deliveries WHERE state = 'delivered'), \
                 (SELECT count(*) FROM attempts)";
    let args = [
        "--no-psqlrc",
        "--no-align",
        "--tuples-only",
        "--set=ON_ERROR_STOP=1",
        "--command",
        query,
        "--dbname",
    ]
    .into_iter()
    .map(str::to_owned)
    .chain([seeded.schema.url()])
    .collect();
    let out = output("psql", args).await?;
    let text = String::from_utf8_lossy(&out.stdout);
    let counts: Vec<u64> = text
        .trim()
        .split('|')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("psql answered {text:?} to the counts"))?;
    match counts[..] {
        [events, deliveries, delivered, attempts] => Ok(Rows {
            events,
            deliveries,
            delivered,
            attempts,
        }),
        _ => bail!("psql answered {text:?} to the counts"),
    }
}

#[cfg(test)]
mod tests {
    use webhook_domain::{AttemptDetail, DeliveryState};
    use webhook_ports::{DeliveryFilter, EventOutbox, Page, WebhookRepository};

    use super::*;

    const SUMMARY: &str = "\
pgbench (15.20 (Debian 15.20-0+deb12u1))
transaction type: delivery_cycle.sql
scaling factor: 1
query mode: prepared
number of clients: 2
number of threads: 2
maximum number of tries: 1
number of transactions per client: 5
number of transactions actually processed: 10/10
number of failed transactions: 0 (0.000%)
latency average = 113.915 ms
initial connection time = 25.338 ms
tps = 17.556920 (without initial connection time)
";

    #[test]
    fn pgbench_summaries_give_transactions_failures_and_time() {
        let report = Report::parse(SUMMARY).unwrap();
        assert_eq!(
            report,
            Report {
                transactions: 10,
                failed: 0,
                tps: 17.55692
            }
        );
        let elapsed = report.elapsed().unwrap().as_secs_f64();
        assert!((elapsed - 10.0 / 17.55692).abs() < 1e-9, "{elapsed}");
        let error = Report::parse("pgbench: error: connection failed").unwrap_err();
        assert!(
            error.to_string().contains("number of transactions"),
            "{error}"
        );
    }

    /// Whether `program` runs; under `CI=true` it must.
    fn runs(program: &str) -> bool {
        let found = Command::new(program).arg("--version").output().is_ok();
        assert!(
            found || !std::env::var("CI").is_ok_and(|v| v == "true"),
            "{program} is not on the PATH (CI=true: the pgbench script's test must run)"
        );
        if !found {
            eprintln!("SKIPPED: {program} is not on the PATH; the pgbench script is not tested");
        }
        found
    }

    /// The script does the adapter's row work on the adapter's current schema: each cycle's
    /// events, deliveries and attempts are there, and the adapter reads them back as rows of
    /// its own (delivered at the first attempt, a 200, the event's data intact). A cycle
    /// whose claim takes nothing records nothing.
    #[tokio::test]
    async fn the_script_delivers_each_event_it_publishes_on_the_adapters_schema() {
        if !runs("pgbench") || !runs("psql") {
            return;
        }
        // Skips when PostgreSQL is not there, and fails then under CI=true.
        let Some(schema) = PgTestSchema::create().await else {
            return;
        };
        let seeded = Seeded::on(schema).await.unwrap();
        let report = run_script(&seeded, 1, 3).await.unwrap();
        assert_eq!((report.transactions, report.failed), (3, 0));
        let n = 3 * u64::from(CLAIM_BATCH);
        assert_eq!(
            count_rows(&seeded).await.unwrap(),
            Rows {
                events: n,
                deliveries: n,
                delivered: n,
                attempts: n
            }
        );

        let store = PgStore::connect(&seeded.schema.url(), 1).await.unwrap();
        let deliveries = store
            .list_deliveries(seeded.wallet, DeliveryFilter::default(), Page::first(1000))
            .await
            .unwrap();
        assert_eq!(deliveries.len() as u64, n);
        let data: serde_json::Value = serde_json::from_str(api::CONNECTION_DATA).unwrap();
        for delivery in &deliveries {
            assert!(
                matches!(delivery.state(), DeliveryState::Delivered { .. }),
                "{delivery:?}"
            );
            assert_eq!(delivery.attempts_made(), 1);
            let attempts = store
                .list_attempts(seeded.wallet, delivery.id())
                .await
                .unwrap();
            assert_eq!(attempts.len(), 1);
            assert_eq!(
                (attempts[0].number, attempts[0].detail),
                (
                    1,
                    AttemptDetail::Response {
                        status: 200,
                        retry_after: None
                    }
                )
            );
            let event = store
                .get_event(seeded.wallet, delivery.event_id())
                .await
                .unwrap();
            assert_eq!(event.data(), &data);
        }

        // A disabled target: the next cycle publishes, claims nothing and records nothing, in
        // a session whose previous claim took a batch.
        store
            .disable_webhook(seeded.webhook, time::OffsetDateTime::now_utc())
            .await
            .unwrap();
        let report = run_script(&seeded, 1, 2).await.unwrap();
        assert_eq!((report.transactions, report.failed), (2, 0));
        let published = n + 2 * u64::from(CLAIM_BATCH);
        assert_eq!(
            count_rows(&seeded).await.unwrap(),
            Rows {
                events: published,
                deliveries: published,
                delivered: n,
                attempts: n
            }
        );
    }
}
