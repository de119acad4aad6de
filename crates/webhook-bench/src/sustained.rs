//! S8, sustained load (issue 16): S1 again and again against one webhookd process and one
//! database, neither restarted. Each run has a webhook of its own; the previous run's webhook
//! is deleted through the API first, as a user would. After each run it reads what the history
//! did to the database: for PostgreSQL the sizes, tuple counts and autovacuum activity of
//! `deliveries`, `events` and `attempts` (`pg_stat_user_tables`); for SQLite the file, its WAL
//! and its free pages. The summary is the last run's delivery rate over the first's.
//!
//! PostgreSQL runs on a throwaway cluster of the harness's own (`reliability::cluster`) with
//! PostgreSQL's defaults, so autovacuum is on as on a production server; never on the shared
//! development server, whose autovacuum is off. The report says which setting it read from the
//! server it measured. webhookd runs with a retention of 36 s, so that it acts within the runs.
//!
//! It must not change what it measures: no VACUUM, no ANALYZE, no write to webhookd's tables;
//! it only reads statistics, sizes and webhookd's log.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use hyper::{Method, StatusCode};
use serde::Serialize;

use crate::api::{DEFAULT_WALLET_KEY, Http};
use crate::driver::{self, Pace, Plan};
use crate::procfs;
use crate::reliability::cluster::Cluster;
use crate::results::Scenario;
use crate::scenarios::{Bench, Cpu, Setup, print_line};
use crate::sink::{Receipt, Route, Sink};
use crate::webhookd::{Backend, Database, Role, Webhookd};

/// The tables whose growth is reported.
const TABLES: [&str; 3] = ["deliveries", "events", "attempts"];

/// A retention short enough to act within the runs: history is kept for 36 s (0.01 hours),
/// about two runs, and pruning runs every 5 s, so that with retention working the tables stop
/// growing after the first runs.
const RETENTION: [(&str, &str); 2] = [
    ("WEBHOOKD_RETENTION__MAX_AGE_HOURS", "0.01"),
    ("WEBHOOKD_RETENTION__INTERVAL_SECS", "5"),
];

/// Retention's totals are only in its log lines, at info.
const LOG_FILTER: &str = "warn,webhook_app::retention=info";

/// The target: the last run's rate within this fraction of the first's.
pub(crate) const RATE_TOLERANCE: f64 = 0.10;

/// Longest wait for PostgreSQL's statistics to count a run: an idle backend reports its
/// counts within 10 s (`PGSTAT_IDLE_INTERVAL`).
const STATS_WAIT: Duration = Duration::from_secs(15);

const PATH: &str = "/s8";

/// S8 on one backend.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Sustained {
    pub(crate) backend: Backend,
    pub(crate) setup: String,
    /// Where the database was.
    pub(crate) database: String,
    /// Settings read from the server measured (`SHOW ...`); autovacuum first.
    pub(crate) server_settings: Vec<(String, String)>,
    /// webhookd's retention settings, as given to it.
    pub(crate) retention: Vec<(String, String)>,
    pub(crate) runs: Vec<Run>,
    pub(crate) notes: Vec<String>,
}

/// One S1 run of S8, and the database after it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Run {
    pub(crate) number: u32,
    /// Seconds from the first run's start to this run's.
    pub(crate) started_at_s: f64,
    pub(crate) figures: Scenario,
    /// PostgreSQL: `deliveries`, `events`, `attempts`, after the run's webhook was deleted.
    pub(crate) tables: Vec<TableStats>,
    /// Whether the statistics had counted every row of the run when read.
    pub(crate) stats_settled: bool,
    pub(crate) sqlite: Option<SqliteFiles>,
    /// What retention removed so far, from webhookd's log (`/metrics` does not count it).
    pub(crate) pruned: Pruned,
}

/// One table's row of `pg_stat_user_tables`, with its sizes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct TableStats {
    pub(crate) table: String,
    /// `pg_relation_size`: the main fork.
    pub(crate) table_bytes: u64,
    /// `pg_indexes_size`: every index of the table.
    pub(crate) index_bytes: u64,
    pub(crate) live: u64,
    pub(crate) dead: u64,
    pub(crate) inserted: u64,
    pub(crate) updated: u64,
    pub(crate) hot_updated: u64,
    pub(crate) deleted: u64,
    pub(crate) autovacuums: u64,
    pub(crate) autoanalyzes: u64,
}

/// The SQLite database's files and what `PRAGMA` says of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct SqliteFiles {
    pub(crate) db_bytes: u64,
    pub(crate) wal_bytes: u64,
    pub(crate) page_size: Option<u64>,
    pub(crate) freelist_pages: Option<u64>,
    /// Rows of `deliveries`, `events`, `attempts`.
    pub(crate) rows: Vec<(String, u64)>,
}

/// Rows that retention removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Pruned {
    pub(crate) events: u64,
    pub(crate) deliveries: u64,
    pub(crate) attempts: u64,
}

/// S8's outcome on one backend: measured, or skipped with the reason.
pub(crate) enum Measured {
    Done(Sustained),
    Skipped(String),
}

impl Sustained {
    /// The last run's delivery rate over the first's, with two runs or more.
    pub(crate) fn last_over_first(&self) -> Option<f64> {
        let (first, last) = (self.runs.first()?, self.runs.last()?);
        if self.runs.len() < 2 {
            return None;
        }
        Some(last.figures.delivery_per_s? / first.figures.delivery_per_s?)
    }

    /// Whether the last run's rate is within [`RATE_TOLERANCE`] of the first's, every run
    /// complete.
    pub(crate) fn met(&self) -> Option<bool> {
        let ratio = self.last_over_first()?;
        let complete = self.runs.iter().all(|r| r.figures.complete);
        Some(complete && (ratio - 1.0).abs() <= RATE_TOLERANCE)
    }

    pub(crate) fn summary(&self) -> String {
        match (self.last_over_first(), self.met()) {
            (Some(ratio), Some(met)) => format!(
                "run {} over run 1: {ratio:.2} of the rate; target within {:.0}%: {}",
                self.runs.len(),
                RATE_TOLERANCE * 100.0,
                if met { "met" } else { "missed" }
            ),
            _ => "fewer than two complete runs: no comparison".to_owned(),
        }
    }
}

impl Bench {
    /// S8 on `backend`; on PostgreSQL, skipped when no cluster can be made, unless `CI=true`.
    pub(crate) async fn s8(&self, backend: Backend) -> anyhow::Result<Measured> {
        let s = &self.sizes;
        let cluster = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => match own_cluster().await? {
                Ok(cluster) => Some(cluster),
                Err(skipped) => {
                    eprintln!("{skipped}");
                    return Ok(Measured::Skipped(skipped));
                }
            },
        };
        let length = s.s8_minutes.map_or_else(
            || format!("{} runs", s.s8_runs),
            |m| format!("runs for {m} minutes"),
        );
        let description = format!(
            "S1 ({} events to 1 webhook, POST /events with {} in flight), {length} on one \
             webhookd and one database; each run's webhook deleted through the API after it",
            s.s1_events, s.in_flight
        );
        eprintln!("S8 on {}: {description}", backend.name());
        let (database, place, server_settings) = match &cluster {
            Some(cluster) => (
                Database::External(cluster.url()),
                format!(
                    "a PostgreSQL cluster of the harness's own (initdb, PostgreSQL's defaults \
                     but fsync and synchronous_commit on and max_connections 50), port {}",
                    cluster.port()
                ),
                server_settings(cluster.port()),
            ),
            None => (
                Database::fresh(backend).await?,
                "a SQLite file in a fresh temporary directory".to_owned(),
                Vec::new(),
            ),
        };
        let mut launcher = self.launcher.clone();
        let mut env: Vec<(String, String)> = RETENTION
            .iter()
            .chain(&[("RUST_LOG", LOG_FILTER)])
            .map(|&(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        // The command line's settings come last, so they win.
        env.extend(launcher.extra_env);
        let retention = RETENTION
            .iter()
            .map(|(key, _)| {
                let value = env.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v);
                ((*key).to_owned(), value.cloned().unwrap_or_default())
            })
            .collect();
        launcher.extra_env = env;
        let http = Http::new(s.in_flight);
        let name = format!("s8-{}", backend.name().to_lowercase());
        let webhookd = launcher.start(&database, Role::All, &name, &http).await?;
        for (key, value) in &server_settings {
            eprintln!("  {key} = {value}");
        }

        let started = tokio::time::Instant::now();
        let until = s
            .s8_minutes
            .map(|m| started + Duration::from_secs_f64(m * 60.0));
        let mut runs: Vec<Run> = Vec::new();
        let mut published_so_far = 0;
        for number in 1.. {
            let more = match until {
                Some(until) => number == 1 || tokio::time::Instant::now() < until,
                None => number <= s.s8_runs,
            };
            if !more {
                break;
            }
            let started_at_s = started.elapsed().as_secs_f64();
            let figures = self
                .s8_run(backend, &webhookd, cluster.as_ref(), &description)
                .await?;
            published_so_far += figures.events_published;
            let (tables, stats_settled) = match &cluster {
                Some(cluster) => table_stats(cluster.port(), published_so_far).await,
                None => (Vec::new(), true),
            };
            let sqlite = match &database {
                Database::Sqlite(dir) => Some(sqlite_files(&dir.path().join("webhookd.db"))),
                _ => None,
            };
            let run = Run {
                number,
                started_at_s,
                figures,
                tables,
                stats_settled,
                sqlite,
                pruned: pruned_in_log(
                    &std::fs::read_to_string(webhookd.log_path()).unwrap_or_default(),
                ),
            };
            print_run(&run);
            runs.push(run);
        }
        drop(webhookd);
        let mut notes = vec![
            "retention keeps 0.01 hours (36 s) of finished history and runs every 5 s, so \
             sizes should stop growing once runs are older than that. Removed rows are read \
             from webhookd's log; /metrics does not count them."
                .to_owned(),
        ];
        if runs.iter().any(|r| !r.stats_settled) {
            notes.push(format!(
                "after some runs the statistics had not counted every row within {} s: those \
                 rows may lag by a run",
                STATS_WAIT.as_secs()
            ));
        }
        let sustained = Sustained {
            backend,
            setup: description,
            database: place,
            server_settings,
            retention,
            runs,
            notes,
        };
        eprintln!("  {}", sustained.summary());
        drop(database);
        drop(cluster);
        Ok(Measured::Done(sustained))
    }

    /// One S1 run on a new webhook, which it deletes at the end.
    async fn s8_run(
        &self,
        backend: Backend,
        webhookd: &Webhookd,
        cluster: Option<&Cluster>,
        description: &str,
    ) -> anyhow::Result<Scenario> {
        let s = &self.sizes;
        let sink = Sink::start_on(0, vec![Route::fast(PATH)], s.s1_events as usize).await?;
        let route = sink.route(PATH).context("the route just made")?;
        let webhook = webhookd
            .api
            .create_webhook(
                DEFAULT_WALLET_KEY,
                serde_json::json!({ "url": sink.url(PATH) }),
            )
            .await?;
        let database_ticks = || cluster.and_then(|c| procfs::server_cpu_ticks(c.postmaster_pid()?));
        let setup = Setup {
            id: "S8",
            description: description.to_owned(),
            routes: vec![Route::fast(PATH)],
            wallets: vec![vec![PATH]],
            measured: vec![PATH],
            events: s.s1_events,
            batch: 1,
            pace: Pace::Closed {
                in_flight: s.in_flight,
            },
            idle_rss: false,
            drained: Vec::new(),
        };
        let before = Cpu::read_with_database(webhookd, database_ticks());
        let plan = Plan {
            events: setup.events,
            batch: 1,
            pace: setup.pace,
            keys: vec![DEFAULT_WALLET_KEY.to_owned()],
        };
        let published = driver::publish(&webhookd.api, &plan).await;
        let expected = published.accepted;
        let complete = sink
            .wait_for(
                &[route],
                expected,
                tokio::time::Instant::now() + Duration::from_secs(s.deadline_secs),
            )
            .await;
        let after = Cpu::read_with_database(webhookd, database_ticks());
        webhookd
            .api
            .expect(
                Method::DELETE,
                &format!("/events/webhooks/{webhook}"),
                DEFAULT_WALLET_KEY,
                None,
                StatusCode::OK,
            )
            .await?;
        let receipts: Vec<Receipt> = sink
            .receipts()
            .into_iter()
            .filter(|r| r.route == route)
            .collect();
        let mut figures = self.figures(
            &setup, backend, &published, &receipts, expected, complete, before, after,
        );
        figures.duplicates = sink.duplicates();
        figures.peak_rss_bytes = webhookd.peak_rss();
        Ok(figures)
    }
}

/// A cluster of S8's own; off CI, the reason it could not be made instead.
async fn own_cluster() -> anyhow::Result<Result<Cluster, String>> {
    let made = tokio::task::spawn_blocking(Cluster::create)
        .await
        .context("the task making the cluster panicked")?;
    match made {
        Ok(cluster) => Ok(Ok(cluster)),
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            Err(e
                .context("S8 needs a PostgreSQL cluster of its own, and under CI=true it must run"))
        }
        Err(e) => Ok(Err(format!(
            "S8 on PostgreSQL was skipped: cannot make a cluster of its own: {e:#}"
        ))),
    }
}

/// One answer of the server on `port` through `psql`, `None` when it cannot be asked.
fn psql(port: u16, query: &str) -> Option<String> {
    let out = Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
        .args(["-d", "postgres", "-X", "-tA", "-F", "|", "-c", query])
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}

/// The settings that decide how the tables age, read from the server measured.
fn server_settings(port: u16) -> Vec<(String, String)> {
    [
        "autovacuum",
        "autovacuum_naptime",
        "autovacuum_vacuum_scale_factor",
        "autovacuum_vacuum_insert_scale_factor",
        "fsync",
        "synchronous_commit",
        "shared_buffers",
        "server_version",
    ]
    .into_iter()
    .map(|name| {
        let value = psql(port, &format!("SHOW {name}")).unwrap_or_else(|| "unknown".to_owned());
        (name.to_owned(), value)
    })
    .collect()
}

const TABLE_QUERY: &str = "SELECT relname, pg_relation_size(relid), pg_indexes_size(relid), \
     n_live_tup, n_dead_tup, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del, autovacuum_count, \
     autoanalyze_count FROM pg_stat_user_tables \
     WHERE relname IN ('deliveries', 'events', 'attempts') ORDER BY relname";

/// The rows of [`TABLE_QUERY`] as `psql -tA -F '|'` prints them.
pub(crate) fn parse_table_stats(text: &str) -> Vec<TableStats> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split('|');
            let table = fields.next()?.trim().to_owned();
            let numbers: Vec<u64> = fields
                .map(|f| f.trim().parse().ok())
                .collect::<Option<_>>()?;
            let &[
                table_bytes,
                index_bytes,
                live,
                dead,
                inserted,
                updated,
                hot_updated,
                deleted,
                autovacuums,
                autoanalyzes,
            ] = numbers.as_slice()
            else {
                return None;
            };
            Some(TableStats {
                table,
                table_bytes,
                index_bytes,
                live,
                dead,
                inserted,
                updated,
                hot_updated,
                deleted,
                autovacuums,
                autoanalyzes,
            })
        })
        .collect()
}

/// The tables' statistics once they count `published` inserts into `deliveries` and
/// `attempts` (one each per event: S8 has one webhook), or after [`STATS_WAIT`]; and whether
/// they did. Each backend of webhookd reports its counts on its own schedule, so a read at
/// once would miss some; `pg_stat_force_next_flush()` only flushes the caller's own.
async fn table_stats(port: u16, published: u64) -> (Vec<TableStats>, bool) {
    let deadline = tokio::time::Instant::now() + STATS_WAIT;
    loop {
        let tables = psql(port, TABLE_QUERY)
            .map(|t| parse_table_stats(&t))
            .unwrap_or_default();
        let counted = |name: &str| {
            tables
                .iter()
                .any(|t| t.table == name && t.inserted >= published)
        };
        let settled = counted("deliveries") && counted("attempts");
        if settled || tokio::time::Instant::now() >= deadline {
            return (tables, settled);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The database file, its WAL, and its free pages and rows as `sqlite3` reads them (without
/// writing: `-readonly`, so no checkpoint either).
fn sqlite_files(db: &Path) -> SqliteFiles {
    let size = |path: PathBuf| std::fs::metadata(path).map_or(0, |m| m.len());
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    let mut query = "PRAGMA page_size; PRAGMA freelist_count;".to_owned();
    for table in TABLES {
        let _ = write!(query, " SELECT count(*) FROM {table};");
    }
    let answers: Vec<Option<u64>> = Command::new("sqlite3")
        .arg("-readonly")
        .arg(db)
        .arg(&query)
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|text| text.lines().map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default();
    let answer = |n: usize| answers.get(n).copied().flatten();
    SqliteFiles {
        db_bytes: size(db.to_path_buf()),
        wal_bytes: size(PathBuf::from(wal)),
        page_size: answer(0),
        freelist_pages: answer(1),
        rows: TABLES
            .iter()
            .enumerate()
            .filter_map(|(n, table)| Some(((*table).to_owned(), answer(n + 2)?)))
            .collect(),
    }
}

/// Retention's totals in webhookd's text log: the sum of its `pruned finished history` lines'
/// `events=`, `deliveries=` and `attempts=` fields.
pub(crate) fn pruned_in_log(log: &str) -> Pruned {
    let mut total = Pruned::default();
    for line in log
        .lines()
        .filter(|l| l.contains("pruned finished history"))
    {
        for word in line.split_ascii_whitespace() {
            let Some((key, value)) = word.split_once('=') else {
                continue;
            };
            let Ok(value) = value.parse::<u64>() else {
                continue;
            };
            match key {
                "events" => total.events += value,
                "deliveries" => total.deliveries += value,
                "attempts" => total.attempts += value,
                _ => {}
            }
        }
    }
    total
}

const MIB: f64 = 1024.0 * 1024.0;

fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / MIB)
}

fn print_run(run: &Run) {
    eprint!("  run {} at {:.0} s:", run.number, run.started_at_s);
    print_line(&run.figures);
    if let Some(cpu) = run.figures.db_cpu_per_1000() {
        eprintln!("    database CPU {cpu:.3} ms per delivery");
    }
    for t in &run.tables {
        eprintln!(
            "    {}: {} MiB + {} MiB of indexes; live {}, dead {}; updated {} ({} HOT), \
             deleted {}; autovacuum {}, autoanalyze {}",
            t.table,
            mib(t.table_bytes),
            mib(t.index_bytes),
            t.live,
            t.dead,
            t.updated,
            t.hot_updated,
            t.deleted,
            t.autovacuums,
            t.autoanalyzes
        );
    }
    if let Some(f) = &run.sqlite {
        eprintln!(
            "    SQLite file {} MiB, WAL {} MiB, {} free pages; rows {}",
            mib(f.db_bytes),
            mib(f.wal_bytes),
            f.freelist_pages
                .map_or_else(|| "n/a".to_owned(), |p| p.to_string()),
            f.rows
                .iter()
                .map(|(t, n)| format!("{t} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let p = run.pruned;
    eprintln!(
        "    retention removed so far: {} events, {} deliveries, {} attempts",
        p.events, p.deliveries, p.attempts
    );
}

/// The report's S8 section: per backend, the setting measured and a table of the runs.
pub(crate) fn markdown(md: &mut String, measured: &[Sustained]) {
    if measured.is_empty() {
        return;
    }
    let _ = writeln!(md, "## S8 sustained\n");
    let _ = writeln!(
        md,
        "S1 run again and again against one webhookd and one database, neither restarted; each \
         run's webhook is deleted through the API after it. Sizes and counts are read after \
         the run's webhook was deleted. Target (issue 16): the last run's rate within {:.0}% \
         of the first's.\n",
        RATE_TOLERANCE * 100.0
    );
    for s in measured {
        let _ = writeln!(md, "### {}\n\n{}.\n", s.backend.name(), s.setup);
        let _ = writeln!(md, "Database: {}.", s.database);
        if !s.server_settings.is_empty() {
            let settings: Vec<String> = s
                .server_settings
                .iter()
                .map(|(k, v)| format!("`{k}` = {v}"))
                .collect();
            let _ = writeln!(md, "Read from it: {}.", settings.join(", "));
        }
        let retention: Vec<String> = s
            .retention
            .iter()
            .map(|(k, v)| format!("`{k}={v}`"))
            .collect();
        let _ = writeln!(md, "Retention: {}.\n", retention.join(", "));
        let _ = writeln!(md, "**{}**\n", s.summary());
        let rate = |r: Option<f64>| r.map_or_else(|| "n/a".to_owned(), crate::report::thousands);
        let latency = |s: &Scenario, pick: fn(&crate::stats::Latency) -> f64| {
            s.latency
                .as_ref()
                .map_or_else(|| "n/a".to_owned(), |l| format!("{:.1}", pick(l)))
        };
        if s.backend == Backend::Postgres {
            let _ = writeln!(
                md,
                "Per table, `deliveries` / `events` / `attempts`: size + indexes in MiB \
                 (`pg_relation_size` + `pg_indexes_size`), dead tuples, autovacuums and \
                 autoanalyzes so far (`pg_stat_user_tables`). Updates: `deliveries`' updates \
                 so far, HOT among them.\n"
            );
            let _ = writeln!(
                md,
                "| run | delivered/s | p50 ms | p99 ms | DB CPU ms/delivery | size + indexes MiB | dead tuples | updates (HOT) | autovacuum | autoanalyze | pruned events |\n|---|---|---|---|---|---|---|---|---|---|---|"
            );
            for run in &s.runs {
                let f = &run.figures;
                let per = |pick: fn(&TableStats) -> String| {
                    TABLES
                        .iter()
                        .map(|name| {
                            run.tables
                                .iter()
                                .find(|t| t.table == *name)
                                .map_or_else(|| "n/a".to_owned(), pick)
                        })
                        .collect::<Vec<_>>()
                        .join(" / ")
                };
                let updates = run
                    .tables
                    .iter()
                    .find(|t| t.table == "deliveries")
                    .map_or_else(
                        || "n/a".to_owned(),
                        |t| format!("{} ({})", t.updated, t.hot_updated),
                    );
                let _ = writeln!(
                    md,
                    "| {}{} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    run.number,
                    if f.complete { "" } else { " (incomplete)" },
                    rate(f.delivery_per_s),
                    latency(f, |l| l.p50_ms),
                    latency(f, |l| l.p99_ms),
                    f.db_cpu_per_1000()
                        .map_or_else(|| "n/a".to_owned(), |c| format!("{c:.3}")),
                    per(|t| format!("{} + {}", mib(t.table_bytes), mib(t.index_bytes))),
                    per(|t| t.dead.to_string()),
                    updates,
                    per(|t| t.autovacuums.to_string()),
                    per(|t| t.autoanalyzes.to_string()),
                    run.pruned.events,
                );
            }
        } else {
            let _ = writeln!(
                md,
                "| run | delivered/s | p50 ms | p99 ms | webhookd CPU ms/delivery | file MiB | WAL MiB | free pages | rows deliveries / events / attempts | pruned events |\n|---|---|---|---|---|---|---|---|---|---|"
            );
            for run in &s.runs {
                let f = &run.figures;
                let files = run.sqlite.as_ref();
                let _ = writeln!(
                    md,
                    "| {}{} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    run.number,
                    if f.complete { "" } else { " (incomplete)" },
                    rate(f.delivery_per_s),
                    latency(f, |l| l.p50_ms),
                    latency(f, |l| l.p99_ms),
                    f.webhookd_cpu_per_1000()
                        .map_or_else(|| "n/a".to_owned(), |c| format!("{c:.3}")),
                    files.map_or_else(|| "n/a".to_owned(), |f| mib(f.db_bytes)),
                    files.map_or_else(|| "n/a".to_owned(), |f| mib(f.wal_bytes)),
                    files
                        .and_then(|f| f.freelist_pages)
                        .map_or_else(|| "n/a".to_owned(), |p| p.to_string()),
                    files.map_or_else(
                        || "n/a".to_owned(),
                        |f| f
                            .rows
                            .iter()
                            .map(|(_, n)| n.to_string())
                            .collect::<Vec<_>>()
                            .join(" / ")
                    ),
                    run.pruned.events,
                );
            }
        }
        let _ = writeln!(md);
        for note in &s.notes {
            let _ = writeln!(md, "- {note}");
        }
        let _ = writeln!(md);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_stats_are_read_from_psql_rows() {
        let text = "attempts|8192|16384|10|0|10|0|0|0|0|1\n\
                    deliveries|90000000|40000000|100000|195000|100000|200000|0|0|2|3\n\
                    broken|1|2\n";
        let tables = parse_table_stats(text);
        assert_eq!(tables.len(), 2);
        assert_eq!(tables[1].table, "deliveries");
        assert_eq!(tables[1].dead, 195_000);
        assert_eq!(tables[1].updated, 200_000);
        assert_eq!(tables[1].autovacuums, 2);
        assert_eq!(tables[1].autoanalyzes, 3);
    }

    #[test]
    fn retention_totals_sum_its_log_lines() {
        let log = "2026-01-01T00:00:00Z  INFO webhook_app::retention: pruned finished history \
                   older than 1 hours events=3 deliveries=3 attempts=4\n\
                   2026-01-01T00:00:10Z  WARN webhook_app::x: something else events=100\n\
                   2026-01-01T00:00:20Z  INFO webhook_app::retention: pruned finished history \
                   older than 1 hours events=2 deliveries=2 attempts=2\n";
        assert_eq!(
            pruned_in_log(log),
            Pruned {
                events: 5,
                deliveries: 5,
                attempts: 6
            }
        );
    }

    #[test]
    fn the_target_is_the_last_rate_within_ten_percent_of_the_first() {
        let run = |number, rate| Run {
            number,
            started_at_s: 0.0,
            figures: crate::report::tests::scenario("S8", Backend::Sqlite, rate, 10.0),
            tables: Vec::new(),
            stats_settled: true,
            sqlite: None,
            pruned: Pruned::default(),
        };
        let mut s = Sustained {
            backend: Backend::Sqlite,
            setup: String::new(),
            database: String::new(),
            server_settings: Vec::new(),
            retention: Vec::new(),
            runs: vec![run(1, 1000.0)],
            notes: Vec::new(),
        };
        assert_eq!(s.met(), None);
        s.runs.push(run(2, 950.0));
        s.runs.push(run(3, 910.0));
        assert_eq!(s.met(), Some(true));
        s.runs.push(run(4, 850.0));
        assert_eq!(s.met(), Some(false));
        let mut md = String::new();
        markdown(&mut md, &[s]);
        assert!(md.contains("## S8 sustained"));
        assert!(md.contains("run 4 over run 1: 0.85"));
        assert!(md.contains("missed"));
    }
}
