//! `nats`: throughput through NATS JetStream, beside the HTTP path measured in the same run
//! (issue 17), on the release binary and the NATS server at `--nats`:
//!
//! - `NATS → HTTP`: N messages published to a stream that webhookd's NATS source consumes
//!   (`WEBHOOKD_SOURCES`), stored, and delivered to the sink; from the first publish until the
//!   sink has all N.
//! - `HTTP → NATS`: N `POST /events` (closed loop, `--in-flight` at once) for a webhook that
//!   targets a JetStream subject (`WEBHOOKD_TRANSPORT__BROKERS`); from the first POST until the
//!   stream holds N messages.
//! - `HTTP → HTTP`: the same POSTs for a webhook on the sink, the path S1 measures: the
//!   baseline of both ratios.
//!
//! Each round runs the three, each on a fresh database and a fresh stream, deleted after it;
//! the summary is the median of the rounds, printed and written to `<out-dir>/nats.txt`. When
//! the NATS server (or PostgreSQL) does not answer it says so and measures nothing there (exit
//! status 0), as the end-to-end run skips its PostgreSQL scenarios without PostgreSQL.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use async_nats::jetstream::{self, stream};
use serde_json::json;
use uuid::Uuid;

use crate::api::{self, DEFAULT_WALLET_KEY, Http};
use crate::clock;
use crate::driver::{self, Pace, Plan};
use crate::sink::{Route, Sink};
use crate::webhookd::{Backend, Database, Launcher, Role};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The webhookd binary to measure (a release build).
    #[arg(long)]
    webhookd: PathBuf,
    /// Where webhookd's logs go.
    #[arg(long, default_value = "target/bench")]
    out_dir: PathBuf,
    /// The NATS server with JetStream (host:port on 127.0.0.1).
    #[arg(long, default_value = "127.0.0.1:4222")]
    nats: String,
    /// Events per measurement.
    #[arg(long, default_value_t = 10_000)]
    events: u64,
    /// Rounds of the three measurements; the summary is their median.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// `POST /events` requests in flight (HTTP → NATS and HTTP → HTTP), as S1's default.
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    /// Messages published to the stream before waiting for their acknowledgements.
    #[arg(long, default_value_t = 512)]
    publish_window: usize,
    /// The source's `batch=` (messages fetched and published together).
    #[arg(long, default_value_t = 100)]
    source_batch: usize,
    /// Only these backends (sqlite,postgres); PostgreSQL by default.
    #[arg(long, value_delimiter = ',', default_value = "postgres")]
    backends: Vec<String>,
    /// Longest wait for one measurement's events.
    #[arg(long, default_value_t = 300)]
    deadline_secs: u64,
}

/// The three paths, in the order each round runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    HttpToHttp,
    NatsToHttp,
    HttpToNats,
}

impl Path {
    const ALL: [Path; 3] = [Path::HttpToHttp, Path::NatsToHttp, Path::HttpToNats];

    fn name(self) -> &'static str {
        match self {
            Path::HttpToHttp => "HTTP → HTTP",
            Path::NatsToHttp => "NATS → HTTP",
            Path::HttpToNats => "HTTP → NATS",
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Path::HttpToHttp => "http-http",
            Path::NatsToHttp => "nats-http",
            Path::HttpToNats => "http-nats",
        }
    }
}

/// One measurement.
#[derive(Debug, Clone, Copy)]
struct Measured {
    events_per_s: f64,
    /// Events the far end got more than once (the sink's repeats, or the stream's messages
    /// beyond N).
    duplicates: u64,
    /// The producer's own rate (publishes acknowledged, or POSTs answered, per second), to
    /// show whether it was the limit.
    producer_per_s: f64,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let binary = std::fs::canonicalize(&args.webhookd)
        .with_context(|| format!("no webhookd binary at {}", args.webhookd.display()))?;
    let js = match async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(3))
        .connect(args.nats.as_str())
        .await
    {
        Ok(client) => jetstream::new(client),
        Err(e) => {
            println!(
                "SKIPPED: the NATS benchmarks did not run: NATS does not answer at {}: {e}. \
                 Start it (cargo xtask db starts the local one).",
                args.nats
            );
            return Ok(());
        }
    };
    let mut backends = Backend::named(Some(&args.backends));
    if backends.contains(&Backend::Postgres)
        && webhook_adapters::testing::PgTestSchema::create()
            .await
            .is_none()
    {
        // As the end-to-end run does: a full `cargo xtask bench` goes on without PostgreSQL.
        println!(
            "SKIPPED: the NATS benchmarks on PostgreSQL did not run: PostgreSQL at {} does not \
             answer. Start it (cargo xtask db), or pass --backends sqlite.",
            webhook_adapters::testing::pg_server_url()
        );
        backends.retain(|b| *b != Backend::Postgres);
    }
    let launcher = Launcher {
        binary,
        extra_env: Vec::new(),
        log_dir: args.out_dir.join("logs").join("nats"),
    };
    let mut report = String::new();
    say(
        &mut report,
        format!(
            "NATS throughput: {} events per measurement, {} rounds, {} POSTs in flight, NATS at {}",
            args.events, args.rounds, args.in_flight, args.nats
        ),
    );
    for backend in backends {
        let mut rounds: Vec<[Measured; 3]> = Vec::new();
        for round in 1..=args.rounds {
            let mut measured = Vec::new();
            for path in Path::ALL {
                let m = measure(&args, &launcher, &js, backend, path, round).await?;
                say(
                    &mut report,
                    format!(
                        "  {} round {round}: {:<11} {:>7.0} events/s ({} duplicates; producer {:.0}/s)",
                        backend.name(),
                        path.name(),
                        m.events_per_s,
                        m.duplicates,
                        m.producer_per_s
                    ),
                );
                measured.push(m);
            }
            rounds.push([measured[0], measured[1], measured[2]]);
        }
        let median_of = |n: usize| median(rounds.iter().map(|r| r[n].events_per_s).collect());
        let baseline = median_of(0);
        say(
            &mut report,
            format!(
                "{} medians over {} rounds of {} events:",
                backend.name(),
                args.rounds,
                args.events
            ),
        );
        for (n, path) in Path::ALL.into_iter().enumerate() {
            let rate = median_of(n);
            let duplicates: u64 = rounds.iter().map(|r| r[n].duplicates).sum();
            say(
                &mut report,
                format!(
                    "  {:<11} {:>7.0} events/s  {:>4.2} × HTTP → HTTP  ({duplicates} duplicates in all rounds)",
                    path.name(),
                    rate,
                    rate / baseline
                ),
            );
        }
    }
    let written = args.out_dir.join("nats.txt");
    std::fs::create_dir_all(&args.out_dir)?;
    std::fs::write(&written, report)
        .with_context(|| format!("cannot write {}", written.display()))?;
    eprintln!("wrote {}", written.display());
    Ok(())
}

/// Prints a line of the report and keeps it for the file.
fn say(report: &mut String, line: String) {
    println!("{line}");
    report.push_str(&line);
    report.push('\n');
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        f64::midpoint(values[mid - 1], values[mid])
    }
}

/// One measurement of `path` on a fresh database, webhookd and stream.
async fn measure(
    args: &Args,
    launcher: &Launcher,
    js: &jetstream::Context,
    backend: Backend,
    path: Path,
    round: usize,
) -> anyhow::Result<Measured> {
    let tag = Uuid::new_v4().simple().to_string();
    let stream = Stream {
        name: format!("BENCH_{tag}"),
        prefix: format!("bench-{tag}"),
    };
    js.create_stream(stream::Config {
        name: stream.name.clone(),
        subjects: vec![format!("{}.>", stream.prefix)],
        max_age: Duration::from_secs(3600),
        ..stream::Config::default()
    })
    .await
    .with_context(|| format!("cannot create stream {} on {}", stream.name, args.nats))?;
    let name = format!("{}-{}-{round}", path.tag(), backend.name().to_lowercase());
    let result = measure_on(args, launcher, js, backend, path, &name, &stream).await;
    // The stream goes whatever happened, so failed runs leave nothing behind on the server.
    let deleted = js.delete_stream(&stream.name).await;
    let measured = result?;
    deleted.with_context(|| format!("cannot delete stream {}", stream.name))?;
    Ok(measured)
}

/// The stream of one measurement: its name and the subject prefix it captures.
struct Stream {
    name: String,
    prefix: String,
}

async fn measure_on(
    args: &Args,
    launcher: &Launcher,
    js: &jetstream::Context,
    backend: Backend,
    path: Path,
    name: &str,
    stream: &Stream,
) -> anyhow::Result<Measured> {
    let (stream_name, prefix) = (&stream.name, &stream.prefix);
    let n = args.events;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.deadline_secs);
    let sink = Sink::start_on(0, vec![Route::fast("/hook")], n as usize).await?;
    let route = sink.route("/hook").context("the route just made")?;
    let mut launcher = launcher.clone();
    match path {
        Path::HttpToHttp => {}
        Path::NatsToHttp => launcher.extra_env.push((
            "WEBHOOKD_SOURCES".to_owned(),
            format!(
                "nats://{}/{stream_name}?consumer=webhookd&batch={}",
                args.nats, args.source_batch
            ),
        )),
        Path::HttpToNats => launcher.extra_env.push((
            "WEBHOOKD_TRANSPORT__BROKERS".to_owned(),
            format!("nats://{}", args.nats),
        )),
    }
    let database = Database::fresh(backend).await?;
    let http = Http::new(args.in_flight);
    let webhookd = launcher.start(&database, Role::All, name, &http).await?;
    let target = match path {
        Path::HttpToNats => format!("nats://{}/{prefix}.out", args.nats),
        Path::HttpToHttp | Path::NatsToHttp => sink.url("/hook"),
    };
    webhookd
        .api
        .create_webhook(DEFAULT_WALLET_KEY, json!({ "url": target }))
        .await?;

    let (started_ns, producer_done_ns) = match path {
        Path::NatsToHttp => publish_to_stream(js, prefix, n, args.publish_window).await?,
        Path::HttpToHttp | Path::HttpToNats => {
            let plan = Plan {
                events: n,
                batch: 1,
                pace: Pace::Closed {
                    in_flight: args.in_flight,
                },
                keys: vec![DEFAULT_WALLET_KEY.to_owned()],
            };
            let published = driver::publish(&webhookd.api, &plan).await;
            if published.accepted != n {
                bail!(
                    "{}: {} of {n} publishes accepted; the first error: {}",
                    path.name(),
                    published.accepted,
                    published.first_error.unwrap_or_default()
                );
            }
            (published.first_start_ns, published.last_ack_ns)
        }
    };
    let (finished_ns, duplicates) = match path {
        Path::HttpToHttp | Path::NatsToHttp => {
            if !sink.wait_for(&[route], n, deadline).await {
                bail!(
                    "{}: {} of {n} events at the sink after {} s (webhookd's log: {})",
                    path.name(),
                    sink.received(&[route]),
                    args.deadline_secs,
                    webhookd.log_path().display()
                );
            }
            let last = sink.receipts().iter().map(|r| r.at_ns).max().unwrap_or(0);
            (last, sink.duplicates())
        }
        Path::HttpToNats => {
            let held = loop {
                let held = stream_messages(js, stream_name).await?;
                if held >= n {
                    break held;
                }
                if tokio::time::Instant::now() >= deadline {
                    bail!(
                        "{}: {held} of {n} messages in the stream after {} s (webhookd's log: {})",
                        path.name(),
                        args.deadline_secs,
                        webhookd.log_path().display()
                    );
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            };
            let finished = clock::now_ns();
            (finished, held - n)
        }
    };
    let _ = webhookd.stop(Duration::from_secs(10)).await;
    let per_s = |end_ns: u64| n as f64 * 1e9 / end_ns.saturating_sub(started_ns).max(1) as f64;
    Ok(Measured {
        events_per_s: per_s(finished_ns),
        duplicates,
        producer_per_s: per_s(producer_done_ns),
    })
}

/// Publishes `n` events to `<prefix>.in` with at most `window` acknowledgements outstanding;
/// answers when the first publish started and when the last was acknowledged.
async fn publish_to_stream(
    js: &jetstream::Context,
    prefix: &str,
    n: u64,
    window: usize,
) -> anyhow::Result<(u64, u64)> {
    let subject = format!("{prefix}.in");
    let started = clock::now_ns();
    let mut pending: VecDeque<jetstream::context::PublishAckFuture> =
        VecDeque::with_capacity(window);
    for _ in 0..n {
        if pending.len() >= window
            && let Some(ack) = pending.pop_front()
        {
            ack.await.context("a publish to the stream")?;
        }
        let body = api::event_body(Uuid::new_v4());
        pending.push_back(
            js.publish(subject.clone(), body.into())
                .await
                .context("a publish to the stream")?,
        );
    }
    for ack in pending {
        ack.await.context("a publish to the stream")?;
    }
    Ok((started, clock::now_ns()))
}

async fn stream_messages(js: &jetstream::Context, name: &str) -> anyhow::Result<u64> {
    let mut stream = js.get_stream(name).await?;
    Ok(stream.info().await?.state.messages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
    }
}
