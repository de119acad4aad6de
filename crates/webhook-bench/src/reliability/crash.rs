//! `crash-sqlite` and `crash-postgres`: events are published to a wallet with three webhooks on
//! three receivers while webhookd is killed with SIGKILL at random moments (a seeded generator
//! picks each incarnation's lifetime) and started again on the same database. The producer
//! retries through every restart. At the end, every (acknowledged event, webhook) pair must
//! have arrived; repeats are counted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::producer::{self, Endpoint, Plan};
use super::report::Row;
use super::{Harness, SHORT_LEASE, tally};
use crate::api::Http;
use crate::webhookd::{Backend, Database, Role};

/// SplitMix64: a tiny, well-known generator, enough to make a kill schedule repeatable from
/// its seed.
#[derive(Debug)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A duration drawn evenly from `[low, high)`.
    pub(crate) fn between(&mut self, low: Duration, high: Duration) -> Duration {
        let unit = (self.next() >> 11) as f64 / (1_u64 << 53) as f64;
        low + high.saturating_sub(low).mul_f64(unit)
    }
}

/// One SIGKILL.
#[derive(Debug)]
struct Kill {
    /// Since the scenario started.
    at: Duration,
    /// Whether the producer was still publishing.
    publishing: bool,
}

pub(crate) async fn run(h: &Harness, backend: Backend) -> anyhow::Result<Row> {
    let s = &h.sizes;
    let scenario = match backend {
        Backend::Sqlite => "crash-sqlite",
        Backend::Postgres => "crash-postgres",
    };
    let seed = h.seed_for(scenario);
    let mut rng = SplitMix64::new(seed);
    let database = Database::fresh(backend).await?;
    let receivers = super::Receivers::start(s.crash_events, None).await?;
    let http = Http::new(16);
    let launcher = h.launcher(SHORT_LEASE);
    let started = Instant::now();
    let mut webhookd = launcher
        .start(&database, Role::All, &format!("{scenario}-0"), &http)
        .await?;
    let key = receivers.register(&webhookd.api, scenario).await?;
    let endpoint = Arc::new(Endpoint::default());
    endpoint.set(Some(webhookd.api.clone()));
    let plan = Plan {
        events: s.crash_events,
        batch: s.batch,
        rate: s.rate,
        in_flight: 4,
        key,
        targets: receivers.count(),
        give_up_after: s.give_up_after,
    };
    let producer = tokio::spawn(producer::publish(Arc::clone(&endpoint), plan));

    let mut peak_rss = None;
    let mut kills = Vec::new();
    let mut slowest_restart = Duration::ZERO;
    for n in 1..=s.kills {
        tokio::time::sleep(rng.between(s.min_uptime, s.max_uptime)).await;
        endpoint.set(None);
        kills.push(Kill {
            at: started.elapsed(),
            publishing: !producer.is_finished(),
        });
        peak_rss = peak_rss.max(webhookd.kill()?);
        // A supervisor restarts a crashed service after a moment.
        tokio::time::sleep(rng.between(Duration::ZERO, Duration::from_millis(300))).await;
        let restart = Instant::now();
        webhookd = launcher
            .start(&database, Role::All, &format!("{scenario}-{n}"), &http)
            .await?;
        slowest_restart = slowest_restart.max(restart.elapsed());
        endpoint.set(Some(webhookd.api.clone()));
    }
    let answers = producer.await?;
    let acked = answers.acked_ids();
    let arrived =
        tally::wait_delivered(&receivers.sink, &acked, &receivers.routes, s.delivery_limit).await;
    let duration = started.elapsed();
    // Deliveries whose attempt reached a receiver but whose outcome died with the process come
    // again once their lease ends: wait for those repeats before counting.
    tokio::time::sleep(super::SETTLE).await;
    peak_rss = peak_rss.max(webhookd.peak_rss());
    webhookd.stop(Duration::from_secs(10)).await?;
    let tally = tally::count(&receivers.sink, &acked, &receivers.routes);

    let mut failures = super::publish_failures(&answers);
    if !arrived {
        failures.push(format!(
            "{} of {} deliveries had not arrived {} s after publishing ended",
            tally.lost,
            tally.expected,
            s.delivery_limit.as_secs()
        ));
    }
    if kills.len() < 5 {
        failures.push(format!(
            "only {} kills; at least 5 are asked for",
            kills.len()
        ));
    }
    let while_publishing = kills.iter().filter(|k| k.publishing).count();
    let notes = vec![
        format!(
            "{} SIGKILLs ({while_publishing} while publishing), seed {seed}",
            kills.len()
        ),
        format!("{} publishes replayed", answers.replayed),
    ];
    let kill_times: Vec<String> = kills
        .iter()
        .map(|k| format!("{:.1}", k.at.as_secs_f64()))
        .collect();
    let details = vec![
        format!(
            "{} events in batches of {} at {} events/s to 3 webhooks on 3 receivers; webhookd \
             killed with SIGKILL at {} s (seed {seed}) and restarted on the same {} database \
             each time (slowest restart to /health: {:.2} s).",
            s.crash_events,
            s.batch,
            s.rate,
            kill_times.join(", "),
            backend.name(),
            slowest_restart.as_secs_f64()
        ),
        format!(
            "{} publish requests, {} without an answer (webhookd down), {} answered 503; {} \
             events acknowledged, {} of them on a retry that found them already stored \
             (replayed), {} never acknowledged ({} of whose deliveries arrived anyway).",
            answers.requests,
            answers.no_answer,
            answers.unavailable.len(),
            tally.published,
            answers.replayed,
            answers.unacked.len(),
            tally.unacknowledged_arrivals
        ),
        format!(
            "Every acknowledged (event, webhook) pair arrived: {}; {} repeated arrivals: \
             attempts that reached a receiver but whose outcomes the kill cut off before they \
             were committed, made again once their lease ended. Peak RSS is the largest of the \
             {} incarnations.",
            if tally.lost == 0 { "yes" } else { "NO" },
            tally.duplicates,
            kills.len() + 1
        ),
    ];
    Ok(Row {
        scenario: scenario.to_owned(),
        backend: backend.name(),
        tally,
        peak_rss,
        duration,
        notes,
        details,
        failures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_the_same_schedule_within_its_bounds() {
        let (low, high) = (Duration::from_millis(500), Duration::from_millis(3500));
        let draw = |seed| {
            let mut rng = SplitMix64::new(seed);
            (0..100).map(|_| rng.between(low, high)).collect::<Vec<_>>()
        };
        let a = draw(42);
        assert_eq!(a, draw(42));
        assert_ne!(a, draw(43));
        assert!(a.iter().all(|d| *d >= low && *d < high));
        // Spread over the range, not stuck at one end.
        assert!(a.iter().any(|d| *d < Duration::from_millis(1500)));
        assert!(a.iter().any(|d| *d > Duration::from_millis(2500)));
    }
}
