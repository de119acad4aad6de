//! S7: one tenant's latency beside another tenant's large backlog behind a target that is
//! down (issue 14, item 2).
//!
//! One webhookd, two wallets. The default wallet's webhook points at a port where nothing
//! listens (every attempt is refused, its breaker opens, its deliveries wait); the other
//! wallet's webhook points at the sink. First the control: the other wallet publishes at a
//! steady rate with nothing waiting. Then the default wallet publishes the backlog, and the
//! other wallet publishes at the same rate again. Only the other wallet's deliveries count;
//! the figure is its p99 with the backlog over its p99 without. Run once with the down
//! webhook ordered and once unordered: an ordered target's waiting rows sit behind a head
//! that waits, an unordered one's are all due at once.

use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::json;

use crate::api::{DEFAULT_WALLET_KEY, Http};
use crate::driver::{self, Pace, Plan};
use crate::results::{Isolation, Scenario};
use crate::scenarios::{Bench, Cpu, Setup, print_line};
use crate::sink::{Route, Sink};
use crate::webhookd::{Backend, Database, Role, Webhookd, free_port};

/// The measured tenant's route.
const PATH: &str = "/s7";

/// How long the backlog is left to the dispatcher before the second measured run: long enough
/// for the first attempts to fail and the down target's breaker to open.
const SETTLE: Duration = Duration::from_secs(2);

impl Bench {
    /// S7 with the down webhook `ordered` or not: the control run, the run beside the backlog,
    /// and their comparison.
    pub(crate) async fn s7(
        &self,
        backend: Backend,
        ordered: bool,
    ) -> anyhow::Result<(Scenario, Scenario, Option<Isolation>)> {
        let s = &self.sizes;
        let kind = if ordered { "ordered" } else { "unordered" };
        let measured_events = (s.s7_rate * s.s7_seconds).round() as u64;
        let sink = Sink::start_on(0, vec![Route::fast(PATH)], 2 * measured_events as usize).await?;
        let route = sink.route(PATH).context("the route just made")?;
        let down = format!("http://127.0.0.1:{}/down", free_port()?);
        let database = Database::fresh(backend).await?;
        let http = Http::new(s.batch_in_flight.max(8));
        let name = format!("s7-{kind}-{}", backend.name().to_lowercase());
        let webhookd = self
            .launcher
            .start(&database, Role::All, &name, &http)
            .await?;
        webhookd
            .api
            .create_webhook(
                DEFAULT_WALLET_KEY,
                json!({ "url": down, "ordered": ordered }),
            )
            .await?;
        let other = webhookd.api.create_wallet("bench-other").await?;
        webhookd
            .api
            .register_webhook(&other, &sink.url(PATH))
            .await?;

        let base = format!(
            "{:.0} events/s for {:.0} s ({measured_events} events, open loop) to another \
             wallet's webhook",
            s.s7_rate, s.s7_seconds
        );
        let control = self
            .s7_run(
                &webhookd,
                &sink,
                route,
                &other,
                backend,
                format!("S7 {kind} control"),
                format!("{base}; the default wallet's {kind} webhook is down, nothing waits"),
            )
            .await?;

        eprintln!(
            "S7 {kind} on {}: {} events into the default wallet, POST /events/batch of {}",
            backend.name(),
            s.s7_backlog,
            s.batch
        );
        let backlog = driver::publish(
            &webhookd.api,
            &Plan {
                events: s.s7_backlog,
                batch: s.batch,
                pace: Pace::Closed {
                    in_flight: s.batch_in_flight,
                },
                keys: vec![DEFAULT_WALLET_KEY.to_owned()],
            },
        )
        .await;
        if backlog.accepted != s.s7_backlog {
            bail!(
                "S7: the backlog was not all accepted ({} of {}); first error: {}",
                backlog.accepted,
                s.s7_backlog,
                backlog.first_error.as_deref().unwrap_or("none")
            );
        }
        tokio::time::sleep(SETTLE).await;

        let with_backlog = self
            .s7_run(
                &webhookd,
                &sink,
                route,
                &other,
                backend,
                format!("S7 {kind} backlog"),
                format!(
                    "{base}; the default wallet's {kind} webhook is down with {} events waiting",
                    s.s7_backlog
                ),
            )
            .await?;
        drop(webhookd);
        drop(database);

        let scenario = if ordered {
            "S7 ordered"
        } else {
            "S7 unordered"
        };
        let isolation = Isolation::of(
            scenario,
            backend,
            control.latency,
            with_backlog.latency,
            2.0,
        );
        Ok((control, with_backlog, isolation))
    }

    /// One measured run of S7: the other wallet publishes at S7's rate; its deliveries count.
    #[allow(clippy::too_many_arguments)]
    async fn s7_run(
        &self,
        webhookd: &Webhookd,
        sink: &Sink,
        route: usize,
        key: &str,
        backend: Backend,
        id: String,
        description: String,
    ) -> anyhow::Result<Scenario> {
        let s = &self.sizes;
        eprintln!("{id} on {}: {description}", backend.name());
        let events = (s.s7_rate * s.s7_seconds).round() as u64;
        let pace = Pace::Open {
            events_per_second: s.s7_rate,
            max_in_flight: 64,
        };
        let already = sink.received(&[route]);
        let before = Cpu::read(webhookd, backend);
        let published = driver::publish(
            &webhookd.api,
            &Plan {
                events,
                batch: 1,
                pace,
                keys: vec![key.to_owned()],
            },
        )
        .await;
        let complete = sink
            .wait_for(
                &[route],
                already + published.accepted,
                tokio::time::Instant::now() + Duration::from_secs(s.deadline_secs),
            )
            .await;
        let after = Cpu::read(webhookd, backend);
        // This run's receipts: the events it published.
        let receipts: Vec<_> = sink
            .receipts()
            .into_iter()
            .filter(|r| published.starts.contains_key(&r.event))
            .collect();
        let setup = Setup {
            id: "S7",
            description,
            routes: vec![Route::fast(PATH)],
            wallets: vec![vec![PATH]],
            measured: vec![PATH],
            events,
            batch: 1,
            pace,
            idle_rss: false,
            drained: Vec::new(),
        };
        let mut scenario = self.figures(
            &setup,
            backend,
            &published,
            &receipts,
            published.accepted,
            complete,
            before,
            after,
        );
        scenario.id = id;
        print_line(&scenario);
        Ok(scenario)
    }
}
