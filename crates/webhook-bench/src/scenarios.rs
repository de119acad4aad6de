//! The scenarios. Each (S8 aside) starts a fresh webhookd on a fresh database, sets up wallets and
//! webhooks through the API, publishes as its plan says, waits (up to a deadline) for the
//! deliveries it expects at the sink, and turns what the driver, the sink and `/proc` saw into
//! a [`Scenario`].
//!
//! - S1: closed loop, one webhook, `POST /events`.
//! - S2: closed loop, ten webhooks of one wallet (ten deliveries per event).
//! - S3: open loop at a steady rate, for the latency percentiles.
//! - S4: open loop into two wallets; a control run, then one where the first wallet also has a
//!   webhook answering after 2 s. Only the fast webhooks count.
//! - S5 (PostgreSQL): a backlog published to an API-only instance, then drained by a full one.
//! - S6: S1 through `POST /events/batch`.
//! - S7 (in `backlog`): another wallet's latency beside a backlog behind a down target.
//! - S8 (in `sustained`): sustained load, S1 five times in a row (or for `--sustained-minutes`)
//!   on one webhookd and one database, each run's webhook deleted through the API before the
//!   next; PostgreSQL on a cluster of the harness's own with the production setting
//!   (autovacuum on), and SQLite; table, index and file sizes, dead tuples and autovacuum
//!   activity after each run. It is the one scenario that does not start on a fresh database.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;

use crate::api::{DEFAULT_WALLET_KEY, Http};
use crate::clock;
use crate::driver::{self, Pace, Plan, Published};
use crate::procfs;
use crate::results::{Isolation, Scenario};
use crate::sink::{Receipt, Route, Sink};
use crate::stats::{Latency, per_second};
use crate::webhookd::{Backend, Database, Launcher, Role, Webhookd};

/// How big each scenario is; every figure has a command-line flag.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Sizes {
    pub(crate) in_flight: usize,
    pub(crate) batch: usize,
    pub(crate) batch_in_flight: usize,
    pub(crate) s1_events: u64,
    pub(crate) s2_events: u64,
    pub(crate) s3_rate: f64,
    pub(crate) s3_seconds: f64,
    pub(crate) s4_rate: f64,
    pub(crate) s4_seconds: f64,
    pub(crate) s4_slow_ms: u64,
    pub(crate) s5_events: u64,
    pub(crate) s6_events: u64,
    pub(crate) s7_backlog: u64,
    pub(crate) s7_rate: f64,
    pub(crate) s7_seconds: f64,
    pub(crate) deadline_secs: u64,
    pub(crate) s5_deadline_secs: u64,
    /// S8: S1 runs on one webhookd and one database, or as many as fit in the minutes.
    pub(crate) s8_runs: u32,
    pub(crate) s8_minutes: Option<f64>,
}

/// What every scenario of a run shares.
#[derive(Debug)]
pub(crate) struct Bench {
    pub(crate) launcher: Launcher,
    pub(crate) sizes: Sizes,
    pub(crate) ticks_per_s: u64,
}

/// A scenario as data: the sink's routes, each wallet's webhooks (by route path; wallet 0 is
/// the default wallet), the routes that count, and how to publish.
pub(crate) struct Setup {
    pub(crate) id: &'static str,
    pub(crate) description: String,
    pub(crate) routes: Vec<Route>,
    pub(crate) wallets: Vec<Vec<&'static str>>,
    pub(crate) measured: Vec<&'static str>,
    pub(crate) events: u64,
    pub(crate) batch: usize,
    pub(crate) pace: Pace,
    /// Measure the idle RSS of the fresh webhookd before publishing.
    pub(crate) idle_rss: bool,
    /// Routes not measured whose backlog is waited for afterwards (up to the deadline), to
    /// report how fast they drained.
    pub(crate) drained: Vec<&'static str>,
}

/// CPU counters read before and after the measured part.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cpu {
    webhookd: Option<u64>,
    postgres: Option<u64>,
    harness: Option<u64>,
}

impl Cpu {
    pub(crate) fn read(webhookd: &Webhookd, backend: Backend) -> Self {
        Self {
            webhookd: webhookd.cpu_ticks(),
            postgres: (backend == Backend::Postgres)
                .then(procfs::postgres_cpu_ticks)
                .flatten(),
            harness: procfs::process_cpu_ticks(std::process::id()),
        }
    }

    /// As [`Self::read`], with the database's ticks from elsewhere (S8's own cluster).
    pub(crate) fn read_with_database(webhookd: &Webhookd, database: Option<u64>) -> Self {
        Self {
            webhookd: webhookd.cpu_ticks(),
            postgres: database,
            harness: procfs::process_cpu_ticks(std::process::id()),
        }
    }
}

impl Bench {
    fn deadline(&self) -> Duration {
        Duration::from_secs(self.sizes.deadline_secs)
    }

    pub(crate) async fn s1(&self, backend: Backend) -> anyhow::Result<(Scenario, Option<u64>)> {
        let s = &self.sizes;
        self.run(
            backend,
            Setup {
                id: "S1",
                description: format!(
                    "{} events to 1 webhook, POST /events with {} in flight",
                    s.s1_events, s.in_flight
                ),
                routes: vec![Route::fast("/s1")],
                wallets: vec![vec!["/s1"]],
                measured: vec!["/s1"],
                events: s.s1_events,
                batch: 1,
                pace: Pace::Closed {
                    in_flight: s.in_flight,
                },
                idle_rss: true,
                drained: Vec::new(),
            },
        )
        .await
    }

    pub(crate) async fn s2(&self, backend: Backend) -> anyhow::Result<Scenario> {
        const PATHS: [&str; 10] = [
            "/s2/0", "/s2/1", "/s2/2", "/s2/3", "/s2/4", "/s2/5", "/s2/6", "/s2/7", "/s2/8",
            "/s2/9",
        ];
        let s = &self.sizes;
        self.run(
            backend,
            Setup {
                id: "S2",
                description: format!(
                    "{} events to a wallet with 10 webhooks ({} deliveries), {} in flight",
                    s.s2_events,
                    s.s2_events * 10,
                    s.in_flight
                ),
                routes: PATHS.iter().map(|p| Route::fast(p)).collect(),
                wallets: vec![PATHS.to_vec()],
                measured: PATHS.to_vec(),
                events: s.s2_events,
                batch: 1,
                pace: Pace::Closed {
                    in_flight: s.in_flight,
                },
                idle_rss: false,
                drained: Vec::new(),
            },
        )
        .await
        .map(|(scenario, _)| scenario)
    }

    pub(crate) async fn s3(&self, backend: Backend) -> anyhow::Result<Scenario> {
        let s = &self.sizes;
        let events = (s.s3_rate * s.s3_seconds).round() as u64;
        self.run(
            backend,
            Setup {
                id: "S3",
                description: format!(
                    "{:.0} events/s for {:.0} s ({events} events, open loop) to 1 webhook",
                    s.s3_rate, s.s3_seconds
                ),
                routes: vec![Route::fast("/s3")],
                wallets: vec![vec!["/s3"]],
                measured: vec!["/s3"],
                events,
                batch: 1,
                pace: Pace::Open {
                    events_per_second: s.s3_rate,
                    max_in_flight: 512,
                },
                idle_rss: false,
                drained: Vec::new(),
            },
        )
        .await
        .map(|(scenario, _)| scenario)
    }

    /// S4's two runs and their comparison.
    pub(crate) async fn s4(
        &self,
        backend: Backend,
    ) -> anyhow::Result<(Scenario, Scenario, Option<Isolation>)> {
        let s = &self.sizes;
        let events = (s.s4_rate * s.s4_seconds).round() as u64;
        let slow = Duration::from_millis(s.s4_slow_ms);
        let routes = vec![
            Route::fast("/fast-a"),
            Route::fast("/fast-b"),
            Route::slow("/slow", slow),
        ];
        let setup = |id, description: String, wallets| Setup {
            id,
            description,
            routes: routes.clone(),
            wallets,
            measured: vec!["/fast-a", "/fast-b"],
            events,
            batch: 1,
            pace: Pace::Open {
                events_per_second: s.s4_rate,
                max_in_flight: 512,
            },
            idle_rss: false,
            drained: Vec::new(),
        };
        let base = format!(
            "{:.0} events/s for {:.0} s, open loop, alternating between wallet A (webhook \
             /fast-a) and wallet B (/fast-b)",
            s.s4_rate, s.s4_seconds
        );
        let (control, _) = self
            .run(
                backend,
                setup(
                    "S4 control",
                    base.clone(),
                    vec![vec!["/fast-a"], vec!["/fast-b"]],
                ),
            )
            .await?;
        let (with_slow, _) = self
            .run(
                backend,
                Setup {
                    drained: vec!["/slow"],
                    ..setup(
                        "S4 slow",
                        format!(
                            "{base}; wallet A also has /slow, answering after {} ms",
                            s.s4_slow_ms
                        ),
                        vec![vec!["/fast-a", "/slow"], vec!["/fast-b"]],
                    )
                },
            )
            .await?;
        let isolation = Isolation::of("S4", backend, control.latency, with_slow.latency, 1.2);
        Ok((control, with_slow, isolation))
    }

    pub(crate) async fn s6(&self, backend: Backend) -> anyhow::Result<Scenario> {
        let s = &self.sizes;
        self.run(
            backend,
            Setup {
                id: "S6",
                description: format!(
                    "{} events to 1 webhook, POST /events/batch of {} with {} in flight",
                    s.s6_events, s.batch, s.batch_in_flight
                ),
                routes: vec![Route::fast("/s6")],
                wallets: vec![vec!["/s6"]],
                measured: vec!["/s6"],
                events: s.s6_events,
                batch: s.batch,
                pace: Pace::Closed {
                    in_flight: s.batch_in_flight,
                },
                idle_rss: false,
                drained: Vec::new(),
            },
        )
        .await
        .map(|(scenario, _)| scenario)
    }

    /// Runs one setup; answers the scenario and, when asked, the idle RSS.
    /// Waits (up to the deadline) for every delivery to each of `setup.drained`, and says how
    /// fast each drained: from the first publish to its last delivery.
    async fn drain(
        &self,
        setup: &Setup,
        sink: &Sink,
        published: &Published,
    ) -> anyhow::Result<Vec<String>> {
        let mut notes = Vec::new();
        for path in &setup.drained {
            let route = sink.route(path).context("a drained path without a route")?;
            let expected: u64 = setup
                .wallets
                .iter()
                .zip(&published.accepted_per_wallet)
                .filter(|(paths, _)| paths.contains(path))
                .map(|(_, &accepted)| accepted)
                .sum();
            let complete = sink
                .wait_for(
                    &[route],
                    expected,
                    tokio::time::Instant::now() + self.deadline(),
                )
                .await;
            let receipts: Vec<u64> = sink
                .receipts()
                .into_iter()
                .filter(|r| r.route == route)
                .map(|r| r.at_ns)
                .collect();
            let last = receipts
                .iter()
                .copied()
                .max()
                .unwrap_or(published.first_start_ns);
            let seconds = last.saturating_sub(published.first_start_ns) as f64 / 1e9;
            notes.push(format!(
                "{path} drained: {} of {expected} deliveries{} in {seconds:.1} s from the first \
                 publish ({:.0}/s)",
                receipts.len(),
                if complete { "" } else { " (deadline passed)" },
                receipts.len() as f64 / seconds.max(1e-9),
            ));
        }
        Ok(notes)
    }

    async fn run(&self, backend: Backend, setup: Setup) -> anyhow::Result<(Scenario, Option<u64>)> {
        eprintln!("{} on {}: {}", setup.id, backend.name(), setup.description);
        let capacity = setup.events as usize * setup.routes.len();
        let sink = Sink::start_on(0, setup.routes.clone(), capacity).await?;
        let database = Database::fresh(backend).await?;
        let connections = match setup.pace {
            Pace::Closed { in_flight } => in_flight,
            Pace::Open { max_in_flight, .. } => max_in_flight,
        };
        let http = Http::new(connections);
        let name = format!(
            "{}-{}",
            setup.id.replace(' ', "-").to_lowercase(),
            backend.name().to_lowercase()
        );
        let webhookd = self
            .launcher
            .start(&database, Role::All, &name, &http)
            .await?;
        let idle_rss = if setup.idle_rss {
            tokio::time::sleep(Duration::from_secs(1)).await;
            webhookd.rss()
        } else {
            None
        };

        let mut keys = vec![DEFAULT_WALLET_KEY.to_owned()];
        for n in 1..setup.wallets.len() {
            keys.push(webhookd.api.create_wallet(&format!("bench-{n}")).await?);
        }
        for (key, paths) in keys.iter().zip(&setup.wallets) {
            for path in paths {
                webhookd.api.register_webhook(key, &sink.url(path)).await?;
            }
        }
        let measured: Vec<usize> = setup
            .measured
            .iter()
            .map(|p| sink.route(p).context("a measured path without a route"))
            .collect::<anyhow::Result<_>>()?;

        let before = Cpu::read(&webhookd, backend);
        let plan = Plan {
            events: setup.events,
            batch: setup.batch,
            pace: setup.pace,
            keys,
        };
        let published = driver::publish(&webhookd.api, &plan).await;
        // Each wallet's accepted events times its measured webhooks.
        let expected: u64 = setup
            .wallets
            .iter()
            .zip(&published.accepted_per_wallet)
            .map(|(paths, &accepted)| {
                accepted * paths.iter().filter(|p| setup.measured.contains(p)).count() as u64
            })
            .sum();
        let complete = sink
            .wait_for(
                &measured,
                expected,
                tokio::time::Instant::now() + self.deadline(),
            )
            .await;
        let after = Cpu::read(&webhookd, backend);
        let peak_rss = webhookd.peak_rss();
        let drained = self.drain(&setup, &sink, &published).await?;
        drop(webhookd);

        let receipts: Vec<Receipt> = sink
            .receipts()
            .into_iter()
            .filter(|r| measured.contains(&r.route))
            .collect();
        let mut scenario = self.figures(
            &setup, backend, &published, &receipts, expected, complete, before, after,
        );
        scenario.peak_rss_bytes = peak_rss;
        scenario.notes.extend(drained);
        scenario.duplicates = sink.duplicates();
        if sink.unmatched() > 0 {
            scenario
                .notes
                .push(format!("{} requests without an event id", sink.unmatched()));
        }
        if setup.routes.len() > 1 {
            scenario.latency_by_route = setup
                .measured
                .iter()
                .filter_map(|path| {
                    let route = sink.route(path)?;
                    let latency = latencies(&published.starts, receipts.iter(), Some(route));
                    Some(((*path).to_owned(), Latency::of(latency)?))
                })
                .collect();
        }
        print_line(&scenario);
        drop(database);
        Ok((scenario, idle_rss))
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn figures(
        &self,
        setup: &Setup,
        backend: Backend,
        published: &Published,
        receipts: &[Receipt],
        expected: u64,
        complete: bool,
        before: Cpu,
        after: Cpu,
    ) -> Scenario {
        let end_ns = if complete {
            receipts.iter().map(|r| r.at_ns).max().unwrap_or(0)
        } else {
            clock::now_ns()
        };
        let span = end_ns.saturating_sub(published.first_start_ns);
        let publish_span = published
            .last_ack_ns
            .saturating_sub(published.first_start_ns);
        let mut notes = Vec::new();
        if !complete {
            notes.push(format!(
                "deadline of {} s passed with {} of {expected} deliveries received",
                self.sizes.deadline_secs,
                receipts.len()
            ));
        }
        Scenario {
            id: setup.id.to_owned(),
            backend,
            setup: setup.description.clone(),
            events_published: published.accepted,
            failed_requests: published.failed_requests,
            first_error: published.first_error.clone(),
            deliveries_expected: expected,
            deliveries_received: receipts.len() as u64,
            duplicates: 0,
            complete,
            elapsed_s: span as f64 / 1e9,
            publish_per_s: per_second(published.accepted, publish_span),
            delivery_per_s: per_second(receipts.len() as u64, span),
            of_ceiling: None,
            latency: Latency::of(latencies(&published.starts, receipts.iter(), None)),
            latency_by_route: Vec::new(),
            webhookd_cpu_s: self.seconds(before.webhookd, after.webhookd),
            db_cpu_s: self.seconds(before.postgres, after.postgres),
            harness_cpu_s: self.seconds(before.harness, after.harness),
            peak_rss_bytes: None,
            sampled_max_rss_bytes: None,
            max_pacing_lateness_ms: matches!(setup.pace, Pace::Open { .. })
                .then(|| published.max_lateness_ns as f64 / 1e6),
            notes,
        }
    }

    fn seconds(&self, before: Option<u64>, after: Option<u64>) -> Option<f64> {
        Some(after?.saturating_sub(before?) as f64 / self.ticks_per_s as f64)
    }

    /// S5 (PostgreSQL): a backlog of `s5_events` published to an API-only webhookd while the
    /// receiver is down, then drained by a full webhookd with the receiver up.
    pub(crate) async fn s5(&self) -> anyhow::Result<Scenario> {
        let s = &self.sizes;
        let backend = Backend::Postgres;
        let description = format!(
            "{} events published (POST /events/batch of {}, {} in flight) to an API-only \
             webhookd while the receiver is down; then a full webhookd drains them",
            s.s5_events, s.batch, s.batch_in_flight
        );
        eprintln!("S5 on {}: {description}", backend.name());
        let port = crate::webhookd::free_port()?;
        let path = "/s5";
        let url = format!("http://127.0.0.1:{port}{path}");
        let database = Database::fresh(backend).await?;
        let http = Http::new(s.batch_in_flight);
        let api_only = self
            .launcher
            .start(&database, Role::ApiOnly, "s5-publish-postgresql", &http)
            .await?;
        api_only
            .api
            .register_webhook(DEFAULT_WALLET_KEY, &url)
            .await?;
        let plan = Plan {
            events: s.s5_events,
            batch: s.batch,
            pace: Pace::Closed {
                in_flight: s.batch_in_flight,
            },
            keys: vec![DEFAULT_WALLET_KEY.to_owned()],
        };
        let published = driver::publish(&api_only.api, &plan).await;
        let publish_span = published
            .last_ack_ns
            .saturating_sub(published.first_start_ns);
        eprintln!(
            "  published {} events in {:.1} s",
            published.accepted,
            publish_span as f64 / 1e9
        );
        api_only.stop(Duration::from_secs(10)).await?;

        let sink = Sink::start_on(port, vec![Route::fast(path)], published.accepted as usize)
            .await
            .with_context(|| format!("cannot start the receiver on port {port}"))?;
        let route = sink.route(path).context("the route just made")?;
        let postgres_before = procfs::postgres_cpu_ticks();
        let harness_before = procfs::process_cpu_ticks(std::process::id());
        let started_ns = clock::now_ns();
        let drainer = self
            .launcher
            .start(&database, Role::All, "s5-drain-postgresql", &http)
            .await?;
        let pid = drainer.pid();
        let max_rss = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let sampler = tokio::spawn({
            let max_rss = std::sync::Arc::clone(&max_rss);
            async move {
                while let Some(rss) = procfs::rss_bytes(pid) {
                    max_rss.fetch_max(rss, std::sync::atomic::Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
        let complete = sink
            .wait_for(
                &[route],
                published.accepted,
                tokio::time::Instant::now() + Duration::from_secs(s.s5_deadline_secs),
            )
            .await;
        let webhookd_ticks = drainer.cpu_ticks();
        let postgres_after = procfs::postgres_cpu_ticks();
        let harness_after = procfs::process_cpu_ticks(std::process::id());
        let peak_rss = drainer.peak_rss();
        sampler.abort();
        // One more sample at the end, then the process goes.
        let sampled = max_rss
            .load(std::sync::atomic::Ordering::Relaxed)
            .max(drainer.rss().unwrap_or(0));
        drop(drainer);

        let receipts = sink.receipts();
        let end_ns = if complete {
            receipts.iter().map(|r| r.at_ns).max().unwrap_or(started_ns)
        } else {
            clock::now_ns()
        };
        let span = end_ns.saturating_sub(started_ns);
        let mut notes = vec![
            "latency is not measured: the events waited for the receiver by design".to_owned(),
            format!(
                "drain rate counts from the start of the draining webhookd; the first delivery \
                 came {:.2} s after it",
                receipts
                    .iter()
                    .map(|r| r.at_ns)
                    .min()
                    .unwrap_or(started_ns)
                    .saturating_sub(started_ns) as f64
                    / 1e9
            ),
        ];
        if !complete {
            notes.push(format!(
                "deadline of {} s passed with {} of {} deliveries received",
                s.s5_deadline_secs,
                receipts.len(),
                published.accepted
            ));
        }
        let scenario = Scenario {
            id: "S5".to_owned(),
            backend,
            setup: description,
            events_published: published.accepted,
            failed_requests: published.failed_requests,
            first_error: published.first_error.clone(),
            deliveries_expected: published.accepted,
            deliveries_received: receipts.len() as u64,
            duplicates: sink.duplicates(),
            complete,
            elapsed_s: span as f64 / 1e9,
            publish_per_s: per_second(published.accepted, publish_span),
            delivery_per_s: per_second(receipts.len() as u64, span),
            of_ceiling: None,
            latency: None,
            latency_by_route: Vec::new(),
            webhookd_cpu_s: webhookd_ticks.map(|t| t as f64 / self.ticks_per_s as f64),
            db_cpu_s: self.seconds(postgres_before, postgres_after),
            harness_cpu_s: self.seconds(harness_before, harness_after),
            peak_rss_bytes: peak_rss,
            sampled_max_rss_bytes: Some(sampled),
            max_pacing_lateness_ms: None,
            notes,
        };
        print_line(&scenario);
        drop(database);
        Ok(scenario)
    }
}

/// Publish-start-to-receipt times of `receipts` (of one route, or all), in nanoseconds.
fn latencies<'a>(
    starts: &HashMap<u128, u64>,
    receipts: impl Iterator<Item = &'a Receipt>,
    route: Option<usize>,
) -> Vec<u64> {
    receipts
        .filter(|r| route.is_none_or(|route| r.route == route))
        .filter_map(|r| Some(r.at_ns.saturating_sub(*starts.get(&r.event)?)))
        .collect()
}

pub(crate) fn print_line(s: &Scenario) {
    let rate = |r: Option<f64>| r.map_or_else(|| "n/a".to_owned(), |r| format!("{r:.0}"));
    let latency = s.latency.map_or_else(String::new, |l| {
        format!(
            ", latency p50 {:.1} / p99 {:.1} / max {:.1} ms",
            l.p50_ms, l.p99_ms, l.max_ms
        )
    });
    eprintln!(
        "  {} of {} delivered{}; published {}/s, delivered {}/s{latency}",
        s.deliveries_received,
        s.deliveries_expected,
        if s.complete { "" } else { " (DEADLINE)" },
        rate(s.publish_per_s),
        rate(s.delivery_per_s),
    );
    if let Some(error) = &s.first_error {
        eprintln!(
            "  {} publish requests failed; first: {error}",
            s.failed_requests
        );
    }
}
