//! Two checks of promises rather than measures of speed (issue 14, items 1 and 3), run on the
//! release binary as a user would see it:
//!
//! - `order`: an ordered webhook gets sequential batches in item order, and concurrent
//!   publishes in an order that respects every publish answered before another was sent, one
//!   attempt at a time. It prints the inversions it counted (the promise is zero).
//! - `delete`: a webhook with deliveries flowing is deleted (or disabled with a PATCH); it
//!   prints the requests its receiver got after the answer (the promise is zero). On
//!   PostgreSQL it also runs with two instances on one database, the change sent to one.
//!
//! Each prints one line per backend and run, and fails (exit status 1) when a promise broke.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

use crate::api::{self, DEFAULT_WALLET_KEY, Http};
use crate::clock;
use crate::sink::{Receipt, Route, Sink};
use crate::webhookd::{Backend, Database, Launcher, Role};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The webhookd binary to check (a release build).
    #[arg(long)]
    webhookd: PathBuf,
    /// Only these backends (sqlite,postgres).
    #[arg(long, value_delimiter = ',')]
    backends: Option<Vec<String>>,
    /// Where webhookd's logs go.
    #[arg(long, default_value = "target/bench")]
    out_dir: PathBuf,
    /// How many times each run is repeated.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

impl Args {
    fn launcher(&self, what: &str) -> anyhow::Result<Launcher> {
        let binary = std::fs::canonicalize(&self.webhookd)
            .with_context(|| format!("no webhookd binary at {}", self.webhookd.display()))?;
        Ok(Launcher {
            binary,
            extra_env: Vec::new(),
            log_dir: self.out_dir.join("logs").join(what),
        })
    }

    /// The backends asked for; PostgreSQL must answer when it is asked for.
    async fn backends(&self) -> anyhow::Result<Vec<Backend>> {
        let backends = Backend::named(self.backends.as_deref());
        if backends.contains(&Backend::Postgres)
            && webhook_adapters::testing::PgTestSchema::create()
                .await
                .is_none()
        {
            bail!(
                "PostgreSQL at {} does not answer: start it (cargo xtask db), or pass \
                 --backends sqlite",
                webhook_adapters::testing::pg_server_url()
            );
        }
        Ok(backends)
    }
}

/// How long the receiver of the order check takes per request: long enough that two attempts
/// at once would overlap at the sink.
const ORDER_RECEIVER_DELAY: Duration = Duration::from_millis(3);
const BATCHES: usize = 5;
const BATCH_SIZE: usize = 20;
const CONCURRENT: usize = 200;

/// One publish as the client saw it.
struct Sent {
    ids: Vec<u128>,
    sent_ns: u64,
    answered_ns: u64,
}

/// What one round of the order check counted.
#[derive(Debug, Default, PartialEq, Eq)]
struct Order {
    /// Pairs of events of the sequential batches in the wrong order (the promise: 0).
    batch_inversions: usize,
    /// Pairs of concurrent publishes, one answered before the other was sent, whose events
    /// arrived the other way round (the promise: 0).
    precedence_inversions: usize,
    /// Consecutive arrivals of concurrent publishes whose answers came the other way round
    /// (the measure the issue reported; no promise: publishes committed together answer in
    /// any order).
    answer_order_descents: usize,
    /// Events not received, and received more than once.
    missing: usize,
    repeated: u64,
    most_at_once: u64,
}

pub(crate) async fn order(args: Args) -> anyhow::Result<()> {
    let launcher = args.launcher("order")?;
    let mut broken = false;
    for backend in args.backends().await? {
        for round in 1..=args.rounds {
            let counted = order_round(&launcher, backend, round).await?;
            println!(
                "order {} round {round}: {BATCHES} sequential batches of {BATCH_SIZE}: {} \
                 inversions; {CONCURRENT} concurrent publishes: {} inversions against the \
                 precedence of answers and sends ({} descents against the order of answers); \
                 {} missing, {} repeated; at most {} attempts at once",
                backend.name(),
                counted.batch_inversions,
                counted.precedence_inversions,
                counted.answer_order_descents,
                counted.missing,
                counted.repeated,
                counted.most_at_once
            );
            broken |= counted.batch_inversions > 0
                || counted.precedence_inversions > 0
                || counted.missing > 0
                || counted.most_at_once > 1;
        }
    }
    if broken {
        bail!("an ordered webhook broke its order");
    }
    Ok(())
}

async fn order_round(launcher: &Launcher, backend: Backend, round: usize) -> anyhow::Result<Order> {
    let total = BATCHES * BATCH_SIZE + CONCURRENT;
    let sink = Sink::start_on(
        0,
        vec![Route::slow("/ordered", ORDER_RECEIVER_DELAY)],
        total,
    )
    .await?;
    let database = Database::fresh(backend).await?;
    let http = Http::new(CONCURRENT);
    let name = format!("order-{}-{round}", backend.name().to_lowercase());
    let webhookd = launcher.start(&database, Role::All, &name, &http).await?;
    webhookd
        .api
        .create_webhook(
            DEFAULT_WALLET_KEY,
            json!({ "url": sink.url("/ordered"), "ordered": true }),
        )
        .await?;

    let mut batches = Vec::new();
    for _ in 0..BATCHES {
        batches.push(publish(&webhookd.api, BATCH_SIZE).await?);
    }
    let singles: Vec<_> = (0..CONCURRENT)
        .map(|_| {
            let api = webhookd.api.clone();
            tokio::spawn(async move { publish(&api, 1).await })
        })
        .collect();
    let mut concurrent = Vec::new();
    for single in singles {
        concurrent.push(single.await.context("a publishing task")??);
    }
    let route = sink.route("/ordered").context("the route just made")?;
    sink.wait_for(
        &[route],
        total as u64,
        tokio::time::Instant::now() + Duration::from_secs(60),
    )
    .await;
    drop(webhookd);
    let counted = count_order(&batches, &concurrent, &sink.receipts(), total);
    Ok(Order {
        repeated: sink.duplicates(),
        most_at_once: sink.most_at_once(),
        ..counted
    })
}

/// Publishes `events` events into the default wallet (one: `POST /events`; more: one batch).
async fn publish(api: &api::Api, events: usize) -> anyhow::Result<Sent> {
    let ids: Vec<Uuid> = (0..events).map(|_| Uuid::new_v4()).collect();
    let (path, body) = if events == 1 {
        ("/events", api::event_body(ids[0]))
    } else {
        ("/events/batch", api::batch_body(&ids))
    };
    let sent_ns = clock::now_ns();
    let (status, answer) = api
        .http
        .post(
            &api.url(path),
            &[("apikey", DEFAULT_WALLET_KEY)],
            Bytes::from(body),
        )
        .await?;
    let answered_ns = clock::now_ns();
    if status != StatusCode::ACCEPTED {
        bail!(
            "POST {path} answered {status}: {}",
            String::from_utf8_lossy(&answer)
        );
    }
    Ok(Sent {
        ids: ids.iter().map(|id| id.as_u128()).collect(),
        sent_ns,
        answered_ns,
    })
}

/// Counts the inversions of `receipts` (first arrivals, in arrival order).
fn count_order(batches: &[Sent], concurrent: &[Sent], receipts: &[Receipt], total: usize) -> Order {
    let position: HashMap<u128, usize> = receipts
        .iter()
        .enumerate()
        .map(|(n, r)| (r.event, n))
        .collect();
    let at = |id: &u128| position.get(id).copied();
    // The sequential batches, in publish and item order.
    let sequence: Vec<usize> = batches.iter().flat_map(|b| &b.ids).filter_map(at).collect();
    let mut batch_inversions = 0;
    for (i, a) in sequence.iter().enumerate() {
        batch_inversions += sequence[i + 1..].iter().filter(|b| *b < a).count();
    }
    let mut precedence_inversions = 0;
    for a in concurrent {
        for b in concurrent {
            let (Some(pa), Some(pb)) = (a.ids.first().and_then(at), b.ids.first().and_then(at))
            else {
                continue;
            };
            if pa > pb {
                precedence_inversions += usize::from(a.answered_ns < b.sent_ns);
            }
        }
    }
    let mut arrived: Vec<(usize, u64)> = concurrent
        .iter()
        .filter_map(|c| Some((c.ids.first().and_then(at)?, c.answered_ns)))
        .collect();
    arrived.sort_unstable();
    let answer_order_descents = arrived.windows(2).filter(|w| w[0].1 > w[1].1).count();
    // Every batch event before every concurrent one: the batches were answered first.
    let last_batch = sequence.iter().max();
    for c in concurrent {
        if let (Some(last), Some(first)) = (last_batch, c.ids.first().and_then(at)) {
            precedence_inversions += usize::from(first < *last);
        }
    }
    Order {
        batch_inversions,
        precedence_inversions,
        answer_order_descents,
        missing: total.saturating_sub(position.len()),
        ..Order::default()
    }
}

/// How the target is taken away.
#[derive(Debug, Clone, Copy)]
enum Change {
    Delete,
    Disable,
}

/// Events published before the change: more than are delivered before it.
const DELETE_BACKLOG: usize = 2_000;
/// The receiver's answer time: attempts are in flight when the change comes.
const DELETE_RECEIVER_DELAY: Duration = Duration::from_millis(20);
/// Arrivals awaited before the change.
const BEFORE_CHANGE: u64 = 50;
/// How long arrivals are watched for after the answer.
const WATCH: Duration = Duration::from_secs(3);

pub(crate) async fn delete(args: Args) -> anyhow::Result<()> {
    let launcher = args.launcher("delete")?;
    let mut broken = false;
    for backend in args.backends().await? {
        let instances: &[usize] = if backend == Backend::Postgres {
            &[1, 2]
        } else {
            &[1]
        };
        for &instances in instances {
            for change in [Change::Delete, Change::Disable] {
                for round in 1..=args.rounds {
                    let seen = delete_round(&launcher, backend, instances, change, round).await?;
                    println!(
                        "delete {} {instances} instance(s) {change:?} round {round}: {} requests \
                         after the answer ({} before it; the answer took {:.0} ms)",
                        backend.name(),
                        seen.after,
                        seen.before,
                        seen.answer_ms
                    );
                    broken |= seen.after > 0;
                }
            }
        }
    }
    if broken {
        bail!("a deleted or disabled webhook received requests after the answer");
    }
    Ok(())
}

/// What the receiver of one round of the delete check saw.
struct Seen {
    /// Requests that arrived before the change was sent, and after its answer.
    before: usize,
    after: usize,
    answer_ms: f64,
}

async fn delete_round(
    launcher: &Launcher,
    backend: Backend,
    instances: usize,
    change: Change,
    round: usize,
) -> anyhow::Result<Seen> {
    let sink = Sink::start_on(
        0,
        vec![Route::slow("/doomed", DELETE_RECEIVER_DELAY)],
        DELETE_BACKLOG,
    )
    .await?;
    let route = sink.route("/doomed").context("the route just made")?;
    let database = Database::fresh(backend).await?;
    let http = Http::new(16);
    let mut running = Vec::new();
    for n in 0..instances {
        let name = format!(
            "delete-{}-{instances}-{change:?}-{round}-{n}",
            backend.name().to_lowercase()
        );
        running.push(launcher.start(&database, Role::All, &name, &http).await?);
    }
    let api = &running[0].api;
    let id = api
        .create_webhook(DEFAULT_WALLET_KEY, json!({ "url": sink.url("/doomed") }))
        .await?;
    for _ in 0..DELETE_BACKLOG / 100 {
        let ids: Vec<Uuid> = (0..100).map(|_| Uuid::new_v4()).collect();
        let (status, answer) = api
            .http
            .post(
                &api.url("/events/batch"),
                &[("apikey", DEFAULT_WALLET_KEY)],
                Bytes::from(api::batch_body(&ids)),
            )
            .await?;
        if status != StatusCode::ACCEPTED {
            bail!("POST /events/batch answered {status}: {answer:?}");
        }
    }
    if !sink
        .wait_for(
            &[route],
            BEFORE_CHANGE,
            tokio::time::Instant::now() + Duration::from_secs(30),
        )
        .await
    {
        bail!("no deliveries began within 30 s");
    }
    // The change goes to the last instance: with two, the other one learns of it through the
    // database.
    let changer = &running[instances - 1].api;
    let path = format!("/events/webhooks/{id}");
    let sent_ns = clock::now_ns();
    match change {
        Change::Delete => {
            changer
                .expect(
                    Method::DELETE,
                    &path,
                    DEFAULT_WALLET_KEY,
                    None,
                    StatusCode::OK,
                )
                .await?;
        }
        Change::Disable => {
            changer
                .expect(
                    Method::PATCH,
                    &path,
                    DEFAULT_WALLET_KEY,
                    Some(json!({ "enabled": false })),
                    StatusCode::OK,
                )
                .await?;
        }
    }
    let answered_ns = clock::now_ns();
    tokio::time::sleep(WATCH).await;
    drop(running);
    let (receipts, repeats) = (sink.receipts(), sink.repeats());
    let count = |keep: &dyn Fn(u64) -> bool| {
        receipts
            .iter()
            .chain(&repeats)
            .filter(|r| keep(r.at_ns))
            .count()
    };
    Ok(Seen {
        before: count(&|at| at < sent_ns),
        after: count(&|at| at > answered_ns),
        answer_ms: answered_ns.saturating_sub(sent_ns) as f64 / 1e6,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(ids: &[u128], sent_ns: u64, answered_ns: u64) -> Sent {
        Sent {
            ids: ids.to_vec(),
            sent_ns,
            answered_ns,
        }
    }

    fn arrivals(order: &[u128]) -> Vec<Receipt> {
        order
            .iter()
            .map(|&event| Receipt {
                event,
                route: 0,
                at_ns: 0,
            })
            .collect()
    }

    #[test]
    fn inversions_are_counted_against_what_was_promised() {
        let batches = [sent(&[1, 2, 3], 0, 10), sent(&[4, 5], 11, 20)];
        // 10 was answered before 11 was sent; 12 overlapped both.
        let concurrent = [
            sent(&[10], 30, 40),
            sent(&[11], 41, 50),
            sent(&[12], 35, 45),
        ];
        let in_order = count_order(
            &batches,
            &concurrent,
            &arrivals(&[1, 2, 3, 4, 5, 10, 12, 11]),
            8,
        );
        assert_eq!(in_order.batch_inversions, 0);
        assert_eq!(in_order.precedence_inversions, 0);
        // 12 arrived before 11, as their answers came.
        assert_eq!(in_order.answer_order_descents, 0);
        assert_eq!(in_order.missing, 0);

        let shuffled = count_order(
            &batches,
            &concurrent,
            &arrivals(&[2, 1, 3, 5, 11, 4, 12, 10]),
            8,
        );
        // (2,1), (5,4) in the batches; 11 before 4 puts a concurrent publish before a batch.
        assert_eq!(shuffled.batch_inversions, 2);
        // 11 before 10 (10 answered before 11 was sent), and 11 before the last batch event.
        assert_eq!(shuffled.precedence_inversions, 2);
        // Arrived 11, 12, 10, answered 10, 12, 11: 11 then 12 and 12 then 10 descend.
        assert_eq!(shuffled.answer_order_descents, 2);

        let lost = count_order(&batches, &concurrent, &arrivals(&[1, 2, 3, 4, 5, 10]), 8);
        assert_eq!(lost.missing, 2);
    }
}
