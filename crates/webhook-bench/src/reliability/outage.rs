//! `pg-outage`: webhookd on a PostgreSQL cluster of the scenario's own, which is stopped (fast
//! mode: every connection is cut) for a while in the middle of a run and started again. While
//! it is down, publishing must answer 503 with a problem body, quickly: never hang, never 500.
//! Afterwards the dispatcher must find the database again by itself, and every event
//! acknowledged before, during or after the outage must be delivered.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::cluster::Cluster;
use super::producer::{self, Endpoint, Plan};
use super::report::Row;
use super::{Harness, Receivers, SHORT_LEASE, blocking, tally};
use crate::api::Http;
use crate::clock;
use crate::webhookd::{Database, Role};

/// The slowest acceptable 503: a publisher should learn quickly that the database is away.
const MAX_REFUSAL: Duration = Duration::from_secs(5);

pub(crate) async fn run(h: &Harness) -> anyhow::Result<Row> {
    let s = &h.sizes;
    let cluster = Arc::new(blocking(Cluster::create).await?);
    let database = Database::External(cluster.url());
    let receivers = Receivers::start(s.outage_events, None).await?;
    let http = Http::new(16);
    let started = Instant::now();
    let mut webhookd = h
        .launcher(SHORT_LEASE)
        .start(&database, Role::All, "pg-outage", &http)
        .await?;
    let key = receivers.register(&webhookd.api, "pg-outage").await?;
    let endpoint = Arc::new(Endpoint::default());
    endpoint.set(Some(webhookd.api.clone()));
    let plan = Plan {
        events: s.outage_events,
        batch: s.batch,
        rate: s.outage_rate,
        in_flight: 4,
        key,
        targets: receivers.count(),
        give_up_after: s.give_up_after,
    };
    let producer = tokio::spawn(producer::publish(Arc::clone(&endpoint), plan));

    tokio::time::sleep(s.outage_after).await;
    let down_ns = clock::now_ns();
    let down_at = started.elapsed();
    let stopping = Arc::clone(&cluster);
    blocking(move || stopping.stop()).await?;
    tokio::time::sleep(s.outage).await;
    let starting = Arc::clone(&cluster);
    blocking(move || starting.start()).await?;
    let up_ns = clock::now_ns();
    let outage = Duration::from_nanos(up_ns - down_ns);

    let answers = producer.await?;
    let acked = answers.acked_ids();
    let arrived =
        tally::wait_delivered(&receivers.sink, &acked, &receivers.routes, s.delivery_limit).await;
    let duration = started.elapsed();
    tokio::time::sleep(super::SETTLE).await;
    let survived = webhookd.is_running();
    let peak_rss = webhookd.peak_rss();
    webhookd.stop(Duration::from_secs(10)).await?;
    let tally = tally::count(&receivers.sink, &acked, &receivers.routes);

    let before = answers
        .acked
        .iter()
        .filter(|&&(_, at)| at < down_ns)
        .count();
    let during = answers
        .acked
        .iter()
        .filter(|&&(_, at)| (down_ns..up_ns).contains(&at))
        .count();
    let after = answers.acked.len() - before - during;
    let receipts = receivers.sink.receipts();
    let resumed = receipts
        .iter()
        .filter(|r| r.at_ns >= up_ns)
        .map(|r| r.at_ns)
        .min()
        .map(|at| Duration::from_nanos(at - up_ns));
    let max_refusal = answers.max_unavailable_latency();
    // Refusals of requests sent while the server was up (the pool finding its connections
    // dead, or not yet reconnected).
    let refused_while_up = answers
        .unavailable
        .iter()
        .filter(|r| !(down_ns..up_ns).contains(&r.sent_ns))
        .count();

    let mut failures = super::publish_failures(&answers);
    if !arrived {
        failures.push(format!(
            "{} of {} deliveries had not arrived {} s after publishing ended",
            tally.lost,
            tally.expected,
            s.delivery_limit.as_secs()
        ));
    }
    if !survived {
        failures.push("webhookd exited during the run".to_owned());
    }
    if answers.unavailable.is_empty() {
        failures.push("no publish was answered 503 while the database was down".to_owned());
    }
    if let Some(slowest) = max_refusal.filter(|&l| l > MAX_REFUSAL) {
        failures.push(format!(
            "a 503 took {:.1} s; at most {} s is expected",
            slowest.as_secs_f64(),
            MAX_REFUSAL.as_secs()
        ));
    }
    if answers.no_answer > 0 {
        failures.push(format!(
            "{} publishes got no HTTP answer (webhookd stopped listening?)",
            answers.no_answer
        ));
    }
    let secs = |d: Option<Duration>| {
        d.map_or_else(|| "n/a".to_owned(), |d| format!("{:.2} s", d.as_secs_f64()))
    };
    let notes = vec![
        format!("{:.1} s outage", outage.as_secs_f64()),
        format!(
            "{} × 503 (slowest {}), {} × 500",
            answers.unavailable.len(),
            secs(max_refusal),
            answers
                .server_errors
                .iter()
                .filter(|(status, _)| status.as_u16() == 500)
                .count()
        ),
        format!("slowest publish answer {}", secs(Some(answers.slowest))),
        format!("deliveries resumed {} after restart", secs(resumed)),
    ];
    let details = vec![
        format!(
            "{} events in batches of {} at {} events/s to 3 webhooks, on a PostgreSQL cluster of \
             its own (initdb, 127.0.0.1:{}, fsync on), stopped with `pg_ctl stop -m fast` {:.1} s \
             into the run and started again {:.1} s later.",
            s.outage_events,
            s.batch,
            s.outage_rate,
            cluster.port(),
            down_at.as_secs_f64(),
            outage.as_secs_f64()
        ),
        format!(
            "{} publish requests were answered 503 with a problem body ({refused_while_up} of \
             them sent while the server was up: just before the stop or just after the start; \
             slowest {}), {} with another server error, {} hung; retried every 0.1 s, each \
             batch was acknowledged once the database was back.",
            answers.unavailable.len(),
            secs(max_refusal),
            answers.server_errors.len(),
            answers.hung
        ),
        format!(
            "Events acknowledged before the outage: {before}, during: {during}, after: {after}; \
             lost: {}. The dispatcher reconnected by itself: the first delivery after the \
             restart came {}. webhookd {} the outage.",
            tally.lost,
            secs(resumed),
            if survived {
                "ran throughout"
            } else {
                "DID NOT survive"
            }
        ),
    ];
    Ok(Row {
        scenario: "pg-outage".to_owned(),
        backend: "PostgreSQL",
        tally,
        peak_rss,
        duration,
        notes,
        details,
        failures,
    })
}
