//! The markdown report: the machine, the commands, the settings, the ceilings, the targets
//! with met or missed, and one table per scenario with every figure. Pure: it renders a
//! [`Results`] and reads nothing else.

use std::fmt::Write as _;

use crate::results::{Results, Scenario};
use crate::webhookd::Backend;

const MIB: f64 = 1024.0 * 1024.0;

/// One target of issue 7 and what the run measured for it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Check {
    pub(crate) scenario: &'static str,
    pub(crate) backend: Backend,
    pub(crate) figure: &'static str,
    pub(crate) target: String,
    /// `None` when the run did not measure it.
    pub(crate) measured: Option<String>,
    pub(crate) met: Option<bool>,
}

fn find<'a>(results: &'a Results, id: &str, backend: Backend) -> Option<&'a Scenario> {
    results
        .scenarios
        .iter()
        .find(|s| s.id == id && s.backend == backend)
}

/// A rate target; an incomplete scenario misses it whatever its rate.
fn at_least(
    scenario: Option<&Scenario>,
    name: &'static str,
    backend: Backend,
    figure: &'static str,
    min: f64,
    unit: &str,
) -> Check {
    let rate = scenario.and_then(|s| s.delivery_per_s.map(|r| (r, s.complete)));
    Check {
        scenario: name,
        backend,
        figure,
        target: format!("≥ {} {unit}", thousands(min)),
        measured: rate.map(|(r, complete)| {
            format!(
                "{}{}",
                thousands(r),
                if complete { "" } else { " (incomplete)" }
            )
        }),
        met: rate.map(|(r, complete)| complete && r >= min),
    }
}

fn latency_at_most(
    scenario: Option<&Scenario>,
    name: &'static str,
    backend: Backend,
    figure: &'static str,
    max_ms: f64,
    pick: fn(&crate::stats::Latency) -> f64,
) -> Check {
    let value = scenario.and_then(|s| s.latency.as_ref().map(|l| (pick(l), s.complete)));
    Check {
        scenario: name,
        backend,
        figure,
        target: format!("≤ {max_ms} ms"),
        measured: value.map(|(v, _)| format!("{v:.2} ms")),
        met: value.map(|(v, complete)| complete && v <= max_ms),
    }
}

/// Every target, for the backends the run measured.
pub(crate) fn checks(results: &Results) -> Vec<Check> {
    let backends: Vec<Backend> = [Backend::Sqlite, Backend::Postgres]
        .into_iter()
        .filter(|b| results.scenarios.iter().any(|s| s.backend == *b))
        .collect();
    let mut checks = Vec::new();
    for &b in &backends {
        let s1 = find(results, "S1", b);
        if b == Backend::Postgres {
            checks.push(at_least(s1, "S1", b, "delivered", 6000.0, "events/s"));
            checks.push(latency_at_most(s1, "S1", b, "p99", 25.0, |l| l.p99_ms));
        } else {
            checks.push(at_least(s1, "S1", b, "delivered", 4000.0, "events/s"));
        }
    }
    for &b in &backends {
        let s2 = find(results, "S2", b);
        checks.push(at_least(s2, "S2", b, "delivered", 20_000.0, "deliveries/s"));
    }
    for &b in &backends {
        let s3 = find(results, "S3", b);
        checks.push(latency_at_most(s3, "S3", b, "p50", 3.0, |l| l.p50_ms));
        checks.push(latency_at_most(s3, "S3", b, "p99", 15.0, |l| l.p99_ms));
    }
    for scenario in ["S4", "S7 unordered", "S7 ordered"] {
        if scenario != "S4" && !results.isolation.iter().any(|i| i.scenario == scenario) {
            continue;
        }
        for &b in &backends {
            let isolation = results
                .isolation
                .iter()
                .find(|i| i.scenario == scenario && i.backend == b);
            let (figure, bound) = if scenario == "S4" {
                ("fast p99 with slow / control", 1.2)
            } else {
                ("other wallet's p99 with backlog / control", 2.0)
            };
            checks.push(Check {
                scenario,
                backend: b,
                figure,
                target: format!("≤ {bound}"),
                measured: isolation.map(|i| {
                    format!(
                        "{:.2} ({:.2} / {:.2} ms)",
                        i.ratio, i.with_slow_p99_ms, i.control_p99_ms
                    )
                }),
                met: isolation.map(|i| i.ratio <= i.bound),
            });
        }
    }
    if backends.contains(&Backend::Postgres) {
        let s5 = find(results, "S5", Backend::Postgres);
        let s1_rate = find(results, "S1", Backend::Postgres).and_then(|s| s.delivery_per_s);
        let drain = s5.and_then(|s| s.delivery_per_s.map(|r| (r, s.complete)));
        checks.push(Check {
            scenario: "S5",
            backend: Backend::Postgres,
            figure: "drain rate",
            target: s1_rate.map_or_else(
                || "≥ S1's rate (S1 not run)".to_owned(),
                |r| format!("≥ S1's {} deliveries/s", thousands(r)),
            ),
            measured: drain
                .map(|(r, c)| format!("{}{}", thousands(r), if c { "" } else { " (incomplete)" })),
            met: drain
                .zip(s1_rate)
                .map(|((r, complete), s1)| complete && r >= s1),
        });
        let rss = s5.and_then(|s| {
            s.peak_rss_bytes
                .into_iter()
                .chain(s.sampled_max_rss_bytes)
                .max()
        });
        checks.push(Check {
            scenario: "S5",
            backend: Backend::Postgres,
            figure: "webhookd RSS during the drain",
            target: "< 128 MiB".to_owned(),
            measured: rss.map(|r| format!("{:.1} MiB", r as f64 / MIB)),
            met: rss.map(|r| (r as f64) < 128.0 * MIB),
        });
    }
    for &b in &backends {
        let s6 = find(results, "S6", b);
        checks.push(at_least(s6, "S6", b, "delivered", 20_000.0, "events/s"));
    }
    if let Some(raw) = &results.ceilings.raw_sql {
        let adapter = results
            .ceilings
            .store_per_s
            .iter()
            .find(|(b, _)| *b == Backend::Postgres)
            .map(|&(_, rate)| rate);
        checks.push(Check {
            scenario: "storage",
            backend: Backend::Postgres,
            figure: "adapter / raw SQL ceiling",
            target: "≥ 50 %".to_owned(),
            measured: raw.adapter_fraction.zip(adapter).map(|(f, rate)| {
                format!(
                    "{:.0} % ({} / {} deliveries/s)",
                    f * 100.0,
                    thousands(rate),
                    thousands(raw.per_s)
                )
            }),
            met: raw.adapter_fraction.map(|f| f >= 0.5),
        });
    }
    for &b in &backends {
        let idle = results
            .idle_rss
            .iter()
            .find(|(x, _)| *x == b)
            .map(|&(_, r)| r);
        checks.push(Check {
            scenario: "idle",
            backend: b,
            figure: "RSS of a fresh webhookd",
            target: "< 32 MiB".to_owned(),
            measured: idle.map(|r| format!("{:.1} MiB", r as f64 / MIB)),
            met: idle.map(|r| (r as f64) < 32.0 * MIB),
        });
    }
    checks
}

/// `12,345` for 12345.4.
pub(crate) fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.abs());
    let mut out = String::new();
    for (n, c) in digits.chars().enumerate() {
        if n > 0 && (digits.len() - n) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if value < -0.5 { format!("-{out}") } else { out }
}

fn opt(value: Option<String>) -> String {
    value.unwrap_or_else(|| "n/a".to_owned())
}

/// The whole report; `chart` is the SVG's file name, beside the report.
pub(crate) fn markdown(results: &Results, chart: &str) -> String {
    let mut md = String::new();
    let m = &results.machine;
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "End-to-end figures of `webhookd-bench` (`crates/webhook-bench`): it runs the real \
         `webhookd` binary, built `--release`, as a child process on a fresh database per \
         scenario (S8 aside: it keeps one database for all its runs), drives it through its public REST API from 127.0.0.1, and receives the \
         deliveries on hyper servers in the same harness (one port per webhook, as distinct \
         receivers would be). Latency is publish start to receipt \
         at the receiver. This file is generated; regenerate it with `cargo xtask bench`. \
         What a profile showed and what limits each missed target: \
         [performance.md](performance.md).\n"
    );
    let _ = writeln!(
        md,
        "Run of {} ({} mode){}.\n",
        results.started_at,
        results.mode,
        results
            .source_revision
            .as_ref()
            .map_or_else(String::new, |r| format!(", source {r}"))
    );
    if results.mode != "full" {
        let _ = writeln!(
            md,
            "**Not the full benchmark**: sizes or scenarios differ from the defaults (see \
             Sizes); figures of short runs are noisier.\n"
        );
    }
    let _ = writeln!(md, "## Machine\n\n| | |\n|---|---|");
    let _ = writeln!(md, "| CPU | {} |", m.cpu);
    let _ = writeln!(md, "| cores | {} |", m.cores);
    let _ = writeln!(
        md,
        "| memory | {} |",
        opt(m
            .memory_mib
            .map(|mib| format!("{:.1} GiB", mib as f64 / 1024.0)))
    );
    let _ = writeln!(md, "| kernel | {} |", m.kernel);
    let _ = writeln!(
        md,
        "| PostgreSQL | {} (fsync {}), on the same machine |",
        opt(m.postgres_version.clone()),
        opt(m.postgres_fsync.clone())
    );
    let _ = writeln!(
        md,
        "\nwebhookd, PostgreSQL and the harness (driver and receiver) share these cores: the \
         CPU rows below say how each used them. Database CPU is that of every `postgres` \
         process on the machine, so other work on the same server would count too; rates \
         measured on a shared machine vary from run to run, which is why the ceilings are \
         measured in the same run.\n"
    );
    let _ = writeln!(md, "## Commands\n\n```sh");
    for command in &results.commands {
        let _ = writeln!(md, "{command}");
    }
    let _ = writeln!(md, "```\n");
    let _ = writeln!(
        md,
        "## webhookd settings\n\nwebhookd's defaults (docs/configuration.md), and through its \
         environment:\n\n| variable | value |\n|---|---|"
    );
    for (key, value) in &results.webhookd_env {
        let _ = writeln!(md, "| `{key}` | `{value}` |");
    }
    let _ = writeln!(md, "\n## Sizes\n\n| | |\n|---|---|");
    for (key, value) in &results.sizes {
        let _ = writeln!(md, "| {key} | {value} |");
    }

    let c = &results.ceilings;
    let _ = writeln!(
        md,
        "\n## Ceilings\n\nMeasured in the same run. End-to-end delivery rates are also given as \
         a fraction of the lower of the receiver's and their backend's storage ceiling, and on \
         PostgreSQL of the raw SQL ceiling.\n\n| ceiling | rate |\n|---|---|"
    );
    let _ = writeln!(
        md,
        "| receiver: a bare hyper client posting envelopes to the harness's sink, {} in flight \
         (no webhookd, no database) | {} requests/s |",
        c.sink_in_flight,
        opt(c.sink_per_s.map(thousands))
    );
    for (backend, rate) in &c.store_per_s {
        let _ = writeln!(
            md,
            "| storage: {}'s adapter in process, {} clients each publishing {} events, claiming \
             {} due deliveries and recording their 200s, cycle after cycle (no HTTP) | {} \
             deliveries/s |",
            backend.name(),
            c.store_clients,
            crate::ceiling::CLAIM_BATCH,
            crate::ceiling::CLAIM_BATCH,
            thousands(*rate)
        );
    }
    if let Some(raw) = &c.raw_sql {
        let _ = writeln!(
            md,
            "| raw SQL ceiling (pgbench): the same cycles in raw SQL, `{}`, {} clients on {} \
             threads, prepared statements, a pipeline per transaction | {} deliveries/s |",
            raw.script,
            raw.clients,
            raw.threads,
            thousands(raw.per_s)
        );
        let percent = |f: Option<f64>| opt(f.map(|f| format!("{:.0} %", f * 100.0)));
        let _ = writeln!(
            md,
            "\nOf the raw SQL ceiling ({} cycles, {} deliveries): the PostgreSQL adapter's \
             storage ceiling (the same row work, clients and sizes) {}, S1 on PostgreSQL end to \
             end {}.",
            thousands(raw.cycles as f64),
            thousands(raw.deliveries as f64),
            percent(raw.adapter_fraction),
            percent(raw.s1_fraction)
        );
    }

    let _ = writeln!(
        md,
        "\n## Targets\n\n| scenario | backend | figure | target | measured | |\n|---|---|---|---|---|---|"
    );
    for check in checks(results) {
        let verdict = match check.met {
            Some(true) => "met",
            Some(false) => "**missed**",
            None => "not measured",
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {verdict} |",
            check.scenario,
            check.backend.name(),
            check.figure,
            check.target,
            opt(check.measured)
        );
    }
    for line in &results.skipped {
        let _ = writeln!(md, "\n{line}");
    }
    let _ = writeln!(md, "\n![throughput and latency per scenario]({chart})\n");

    for id in results.scenario_ids() {
        let runs: Vec<&Scenario> = results.scenarios.iter().filter(|s| s.id == id).collect();
        scenario_table(&mut md, id, &runs, results);
        let compared = match id {
            "S4 slow" => Some(("S4", "S4, fast webhooks' p99 with the slow one")),
            "S7 ordered backlog" => Some((
                "S7 ordered",
                "S7 ordered, the other wallet's p99 with the backlog",
            )),
            "S7 unordered backlog" => Some((
                "S7 unordered",
                "S7 unordered, the other wallet's p99 with the backlog",
            )),
            _ => None,
        };
        if let Some((scenario, what)) = compared {
            let line = results
                .isolation
                .iter()
                .filter(|i| i.scenario == scenario)
                .map(|i| {
                    format!(
                        "{} {:.2} ({:.2} / {:.2} ms)",
                        i.backend.name(),
                        i.ratio,
                        i.with_slow_p99_ms,
                        i.control_p99_ms
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            if !line.is_empty() {
                let _ = writeln!(md, "{what} over the control's: {line}\n");
            }
        }
    }
    crate::sustained::markdown(&mut md, &results.sustained);
    md
}

fn scenario_table(md: &mut String, id: &str, runs: &[&Scenario], results: &Results) {
    let _ = writeln!(md, "## {id}\n");
    for run in runs {
        let _ = writeln!(md, "{}: {}.", run.backend.name(), run.setup);
    }
    let _ = write!(md, "\n| figure |");
    for run in runs {
        let _ = write!(md, " {} |", run.backend.name());
    }
    let _ = write!(md, "\n|---|");
    for _ in runs {
        let _ = write!(md, "---:|");
    }
    md.push('\n');
    let mut row = |name: &str, value: &dyn Fn(&Scenario) -> Option<String>| {
        let _ = write!(md, "| {name} |");
        for run in runs {
            let _ = write!(md, " {} |", opt(value(run)));
        }
        md.push('\n');
    };
    let ms = |v: f64| format!("{v:.2}");
    let mib = |v: u64| format!("{:.1}", v as f64 / MIB);
    row("events published (accepted)", &|s| {
        Some(thousands(s.events_published as f64))
    });
    row("failed publish requests", &|s| {
        Some(s.failed_requests.to_string())
    });
    row("deliveries expected / received", &|s| {
        Some(format!(
            "{} / {}{}",
            thousands(s.deliveries_expected as f64),
            thousands(s.deliveries_received as f64),
            if s.complete { "" } else { " (deadline)" }
        ))
    });
    row("duplicate receipts", &|s| Some(s.duplicates.to_string()));
    row("measured span (s)", &|s| {
        Some(format!("{:.2}", s.elapsed_s))
    });
    row("publish rate (events accepted/s)", &|s| {
        s.publish_per_s.map(thousands)
    });
    row("delivery throughput (deliveries/s)", &|s| {
        s.delivery_per_s.map(thousands)
    });
    row("… of the lower ceiling", &|s| {
        let lower = results.ceilings.lower(s.backend)?;
        Some(format!("{:.0} %", s.delivery_per_s? / lower * 100.0))
    });
    if let Some(raw) = &results.ceilings.raw_sql {
        row("… of the raw SQL ceiling (PostgreSQL)", &|s| {
            let rate = s
                .delivery_per_s
                .filter(|_| s.backend == Backend::Postgres)?;
            Some(format!("{:.0} %", rate / raw.per_s * 100.0))
        });
    }
    row("latency p50 (ms)", &|s| s.latency.map(|l| ms(l.p50_ms)));
    row("latency p95 (ms)", &|s| s.latency.map(|l| ms(l.p95_ms)));
    row("latency p99 (ms)", &|s| s.latency.map(|l| ms(l.p99_ms)));
    row("latency max (ms)", &|s| s.latency.map(|l| ms(l.max_ms)));
    let paths: Vec<String> = runs
        .iter()
        .flat_map(|s| s.latency_by_route.iter().map(|(p, _)| p.clone()))
        .fold(Vec::new(), |mut acc, p| {
            if !acc.contains(&p) {
                acc.push(p);
            }
            acc
        });
    for path in &paths {
        row(&format!("latency p50 / p99 at {path} (ms)"), &|s| {
            let (_, l) = s.latency_by_route.iter().find(|(p, _)| p == path)?;
            Some(format!("{} / {}", ms(l.p50_ms), ms(l.p99_ms)))
        });
    }
    row("pacing: latest publish start (ms)", &|s| {
        s.max_pacing_lateness_ms.map(ms)
    });
    row("webhookd CPU s per 1,000 deliveries", &|s| {
        s.webhookd_cpu_per_1000().map(|v| format!("{v:.3}"))
    });
    row("database CPU s per 1,000 deliveries", &|s| {
        s.db_cpu_per_1000().map(|v| format!("{v:.3}"))
    });
    row("cores busy: webhookd / database / harness", &|s| {
        let c = |v: Option<f64>| {
            s.cores(v)
                .map_or_else(|| "n/a".to_owned(), |c| format!("{c:.2}"))
        };
        Some(format!(
            "{} / {} / {}",
            c(s.webhookd_cpu_s),
            c(s.db_cpu_s),
            c(s.harness_cpu_s)
        ))
    });
    row("webhookd peak RSS, VmHWM (MiB)", &|s| {
        s.peak_rss_bytes.map(mib)
    });
    if runs.iter().any(|s| s.sampled_max_rss_bytes.is_some()) {
        row("webhookd RSS sampled every 100 ms, max (MiB)", &|s| {
            s.sampled_max_rss_bytes.map(mib)
        });
    }
    md.push('\n');
    for run in runs {
        if let Some(error) = &run.first_error {
            let _ = writeln!(
                md,
                "- {}: first failed publish: {error}",
                run.backend.name()
            );
        }
        for note in &run.notes {
            let _ = writeln!(md, "- {}: {note}", run.backend.name());
        }
    }
    if runs
        .iter()
        .any(|r| r.first_error.is_some() || !r.notes.is_empty())
    {
        md.push('\n');
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::procfs::Machine;
    use crate::results::{Ceilings, Isolation, RawSqlCeiling};
    use crate::stats::Latency;

    pub(crate) fn scenario(id: &str, backend: Backend, rate: f64, p99: f64) -> Scenario {
        Scenario {
            id: id.to_owned(),
            backend,
            setup: "a setup".to_owned(),
            events_published: 1000,
            failed_requests: 0,
            first_error: None,
            deliveries_expected: 1000,
            deliveries_received: 1000,
            duplicates: 0,
            complete: true,
            elapsed_s: 0.5,
            publish_per_s: Some(rate * 1.1),
            delivery_per_s: Some(rate),
            of_ceiling: None,
            latency: Some(Latency {
                samples: 1000,
                p50_ms: p99 / 4.0,
                p95_ms: p99 / 2.0,
                p99_ms: p99,
                max_ms: p99 * 2.0,
            }),
            latency_by_route: Vec::new(),
            webhookd_cpu_s: Some(0.4),
            db_cpu_s: None,
            harness_cpu_s: Some(0.2),
            peak_rss_bytes: Some(20 * 1024 * 1024),
            sampled_max_rss_bytes: None,
            max_pacing_lateness_ms: None,
            notes: Vec::new(),
        }
    }

    pub(crate) fn results() -> Results {
        Results {
            mode: "quick".to_owned(),
            started_at: "2026-01-01T00:00:00Z".to_owned(),
            machine: Machine {
                cpu: "Test CPU".to_owned(),
                cores: 2,
                memory_mib: Some(4096),
                kernel: "6.0".to_owned(),
                postgres_version: Some("15.2".to_owned()),
                postgres_fsync: Some("on".to_owned()),
            },
            webhookd_binary: "target/release/webhookd".to_owned(),
            source_revision: Some("abc1234".to_owned()),
            webhookd_env: vec![("RUST_LOG".to_owned(), "warn".to_owned())],
            commands: vec!["cargo xtask bench --quick".to_owned()],
            sizes: vec![("S1 events".to_owned(), "2000".to_owned())],
            ceilings: Ceilings {
                sink_in_flight: 64,
                sink_per_s: Some(30_000.0),
                store_per_s: vec![(Backend::Sqlite, 10_000.0)],
                store_clients: 4,
                raw_sql: None,
            },
            idle_rss: vec![(Backend::Sqlite, 12 * 1024 * 1024)],
            scenarios: vec![
                scenario("S1", Backend::Sqlite, 5000.0, 20.0),
                scenario("S4 control", Backend::Sqlite, 200.0, 2.0),
                scenario("S4 slow", Backend::Sqlite, 200.0, 3.0),
            ],
            isolation: vec![Isolation {
                scenario: "S4",
                backend: Backend::Sqlite,
                control_p99_ms: 2.0,
                with_slow_p99_ms: 3.0,
                ratio: 1.5,
                bound: 1.2,
            }],
            skipped: vec!["PostgreSQL scenarios skipped: no server".to_owned()],
            sustained: Vec::new(),
        }
    }

    #[test]
    fn backlog_isolation_is_judged_against_its_own_bound() {
        let mut results = results();
        // Within S7's 2x, beyond S4's 1.2x.
        results.isolation.push(Isolation {
            scenario: "S7 ordered",
            backend: Backend::Sqlite,
            control_p99_ms: 10.0,
            with_slow_p99_ms: 19.0,
            ratio: 1.9,
            bound: 2.0,
        });
        let checks = checks(&results);
        let s7 = checks.iter().find(|c| c.scenario == "S7 ordered").unwrap();
        assert_eq!((s7.target.as_str(), s7.met), ("≤ 2", Some(true)));
        // Not run: no row, rather than one that says it was not measured.
        assert!(checks.iter().all(|c| c.scenario != "S7 unordered"));
        let s4 = checks.iter().find(|c| c.scenario == "S4").unwrap();
        assert_eq!(s4.met, Some(false));
    }

    #[test]
    fn the_adapter_is_judged_against_the_raw_sql_ceiling() {
        let mut results = results();
        results
            .scenarios
            .push(scenario("S1", Backend::Postgres, 6_000.0, 20.0));
        results
            .ceilings
            .store_per_s
            .push((Backend::Postgres, 9_000.0));
        let mut raw = RawSqlCeiling {
            script: "crates/webhook-bench/pgbench/delivery_cycle.sql".to_owned(),
            clients: 4,
            threads: 2,
            cycles: 80,
            deliveries: 5_120,
            per_s: 20_000.0,
            adapter_fraction: Some(0.45),
            s1_fraction: None,
        };
        raw.compare_s1(&results.scenarios);
        assert_eq!(raw.s1_fraction, Some(0.3));
        results.ceilings.raw_sql = Some(raw);
        let checks = checks(&results);
        let storage = checks.iter().find(|c| c.scenario == "storage").unwrap();
        assert_eq!(
            (storage.measured.as_deref(), storage.met),
            (Some("45 % (9,000 / 20,000 deliveries/s)"), Some(false))
        );
        let md = markdown(&results, "benchmarks.svg");
        for needle in [
            "| raw SQL ceiling (pgbench): the same cycles in raw SQL, \
             `crates/webhook-bench/pgbench/delivery_cycle.sql`, 4 clients on 2 threads",
            "| 20,000 deliveries/s |",
            "storage ceiling (the same row work, clients and sizes) 45 %, S1 on PostgreSQL end \
             to end 30 %.",
            "| storage | PostgreSQL | adapter / raw SQL ceiling | ≥ 50 % |",
            "| … of the raw SQL ceiling (PostgreSQL) | n/a | 30 % |",
        ] {
            assert!(md.contains(needle), "missing {needle:?} in:\n{md}");
        }
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(1_234_567.0), "1,234,567");
    }

    #[test]
    fn targets_are_judged_on_what_was_measured() {
        let checks = checks(&results());
        let s1 = checks.iter().find(|c| c.scenario == "S1").unwrap();
        assert_eq!(s1.target, "≥ 4,000 events/s");
        assert_eq!(s1.met, Some(true));
        let s4 = checks.iter().find(|c| c.scenario == "S4").unwrap();
        assert_eq!(s4.met, Some(false));
        let s2 = checks.iter().find(|c| c.scenario == "S2").unwrap();
        assert_eq!((s2.measured.as_deref(), s2.met), (None, None));
        // No PostgreSQL run: no PostgreSQL targets, S5 included.
        assert!(checks.iter().all(|c| c.backend == Backend::Sqlite));
        let idle = checks.iter().find(|c| c.scenario == "idle").unwrap();
        assert_eq!(idle.met, Some(true));
    }

    #[test]
    fn the_markdown_has_every_section_and_a_table_per_scenario() {
        let md = markdown(&results(), "benchmarks.svg");
        for needle in [
            "## Machine",
            "| CPU | Test CPU |",
            "15.2 (fsync on)",
            "cargo xtask bench --quick",
            "## Ceilings",
            "30,000 requests/s",
            "## Targets",
            "| S1 | SQLite | delivered | ≥ 4,000 events/s | 5,000 | met |",
            "| S4 | SQLite | fast p99 with slow / control | ≤ 1.2 | 1.50 (3.00 / 2.00 ms) | **missed** |",
            "| S2 | SQLite | delivered | ≥ 20,000 deliveries/s | n/a | not measured |",
            "![throughput and latency per scenario](benchmarks.svg)",
            "## S1\n",
            "## S4 control\n",
            "| delivery throughput (deliveries/s) | 5,000 |",
            "| … of the lower ceiling | 50 % |",
            "| latency p99 (ms) | 20.00 |",
            "| webhookd CPU s per 1,000 deliveries | 0.400 |",
            "| cores busy: webhookd / database / harness | 0.80 / n/a / 0.40 |",
            "PostgreSQL scenarios skipped",
            "**Not the full benchmark**",
        ] {
            assert!(md.contains(needle), "missing {needle:?} in:\n{md}");
        }
    }

    #[test]
    fn the_chart_has_both_panels() {
        let svg = crate::chart::benchmark_chart(&results());
        assert!(svg.contains("Delivery throughput"));
        assert!(svg.contains("End-to-end latency"));
        assert!(svg.contains(">S1<"));
        assert!(svg.contains(">S4 slow<"));
        assert!(svg.contains(">lower ceiling<"));
    }
}
