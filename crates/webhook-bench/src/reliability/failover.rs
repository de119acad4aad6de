//! `failover`: two instances on one PostgreSQL schema, receivers that hold each request for a
//! while (so deliveries stay leased and in flight), and one instance killed with SIGKILL. The
//! other must take over the dead one's leased deliveries once their leases end, not before, and
//! deliver everything.
//!
//! Instance A starts alone, so that the only lease owner in the schema before B starts is A;
//! after the kill, A's leases are read from the schema with `psql` (each row's `due_at` is its
//! lease's end), and the receivers' arrival times say when B delivered each of them.

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use uuid::Uuid;

use super::producer::{self, Endpoint, Plan};
use super::report::Row;
use super::{Harness, Receivers, SHORT_LEASE, blocking, tally};
use crate::api::Http;
use crate::clock;
use crate::webhookd::{Backend, Database, Role};

/// Arrivals this soon after the kill may still be A's last requests on the wire.
const WIRE: Duration = Duration::from_millis(100);
/// Lease ends and arrivals are read on two clocks (the database rows', the sink's); a takeover
/// this much before a lease's end still counts as after it.
const CLOCK_SLACK: Duration = Duration::from_millis(50);

/// One of A's leases at the kill.
#[derive(Debug)]
struct Lease {
    event: u128,
    route: usize,
    /// The lease's end, after the kill (negative: already over).
    ends_after_kill: f64,
}

pub(crate) async fn run(h: &Harness) -> anyhow::Result<Row> {
    let s = &h.sizes;
    let database = Database::fresh(Backend::Postgres).await?;
    let Database::Postgres(schema) = &database else {
        bail!("a fresh PostgreSQL database is a schema");
    };
    let url = schema.url();
    let receivers = Receivers::start(s.failover_events, Some(s.failover_hold)).await?;
    let http = Http::new(16);
    let launcher = h.launcher(SHORT_LEASE);
    let started = Instant::now();
    let a = launcher
        .start(&database, Role::All, "failover-a", &http)
        .await?;
    let key = receivers.register(&a.api, "failover").await?;
    let endpoint = std::sync::Arc::new(Endpoint::default());
    endpoint.set(Some(a.api.clone()));
    let answers = producer::publish(
        endpoint,
        Plan {
            events: s.failover_events,
            batch: 50,
            rate: 1e6,
            in_flight: 2,
            key,
            targets: receivers.count(),
            give_up_after: s.give_up_after,
        },
    )
    .await;
    let acked = answers.acked_ids();
    let routes = receivers.routes.clone();
    // A is delivering once the first request arrives; the only lease owner is then A.
    let first = tokio::time::Instant::now() + Duration::from_secs(10);
    if !receivers.sink.wait_for(&routes, 1, first).await {
        bail!("instance A delivered nothing within 10 s");
    }
    let owners = lease_owners(&url).await?;
    let [a_owner] = owners.as_slice() else {
        bail!("expected A to be the only lease owner before B starts, found {owners:?}");
    };
    let b = launcher
        .start(&database, Role::All, "failover-b", &http)
        .await?;
    // Both deliver for a moment: B claims what A has not leased.
    let both = tokio::time::Instant::now() + Duration::from_secs(5);
    while lease_owners(&url).await?.len() < 2 && tokio::time::Instant::now() < both {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let kill_ns = clock::now_ns();
    let killed_at = started.elapsed();
    let kill_unix_us = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_micros() as i64;
    let peak_a = a.kill()?;
    let leases = leases_of(&url, a_owner, kill_unix_us, &receivers).await?;
    if leases.is_empty() {
        bail!("A held no leases at the kill: nothing to take over (receivers too fast?)");
    }
    let leased_events: Vec<Uuid> = {
        let mut ids: Vec<u128> = leases.iter().map(|l| l.event).collect();
        ids.sort_unstable();
        ids.dedup();
        ids.into_iter().map(Uuid::from_u128).collect()
    };
    let arrived = tally::wait_delivered(&receivers.sink, &acked, &routes, s.delivery_limit).await;
    // Every A lease must also have come again after the kill (an attempt of A's that had
    // reached a receiver counts as delivered above, but B still owes its retry).
    let limit = tokio::time::Instant::now() + s.delivery_limit;
    let mut takeovers = takeover_times(&receivers, &leases, kill_ns);
    while takeovers.iter().any(Option::is_none) && tokio::time::Instant::now() < limit {
        tokio::time::sleep(Duration::from_millis(100)).await;
        takeovers = takeover_times(&receivers, &leases, kill_ns);
    }
    let duration = started.elapsed();
    tokio::time::sleep(super::SETTLE).await;
    let peak_rss = peak_a.max(b.peak_rss());
    b.stop(Duration::from_secs(10)).await?;
    let tally = tally::count(&receivers.sink, &acked, &routes);

    let in_flight_at_kill = leases
        .iter()
        .filter(|l| {
            receivers
                .sink
                .receipts()
                .iter()
                .any(|r| r.event == l.event && r.route == l.route && r.at_ns < kill_ns)
        })
        .count();
    let taken: Vec<(f64, f64)> = leases
        .iter()
        .zip(&takeovers)
        .filter_map(|(l, t)| t.map(|t| (t, l.ends_after_kill)))
        .collect();
    let missing = takeovers.iter().filter(|t| t.is_none()).count();
    let early = taken
        .iter()
        .filter(|(at, ends)| *at < ends - CLOCK_SLACK.as_secs_f64())
        .count();
    let fold = |f: fn(f64, f64) -> f64, start: f64, pick: fn(&(f64, f64)) -> f64| {
        taken.iter().map(pick).fold(start, f)
    };
    let first_takeover = fold(f64::min, f64::INFINITY, |t| t.0);
    let last_takeover = fold(f64::max, 0.0, |t| t.0);
    let first_end = leases
        .iter()
        .map(|l| l.ends_after_kill)
        .fold(f64::INFINITY, f64::min);
    let last_end = leases
        .iter()
        .map(|l| l.ends_after_kill)
        .fold(f64::NEG_INFINITY, f64::max);
    let slowest_after_end = fold(f64::max, 0.0, |t| t.0 - t.1);
    let lease = SHORT_LEASE[0].1.parse::<f64>().unwrap_or(0.0) / 1000.0;

    let mut failures = super::publish_failures(&answers);
    if !arrived {
        failures.push(format!(
            "{} of {} deliveries had not arrived",
            tally.lost, tally.expected
        ));
    }
    if missing > 0 {
        failures.push(format!(
            "{missing} of A's {} leased deliveries were never delivered after the kill",
            leases.len()
        ));
    }
    if early > 0 {
        failures.push(format!(
            "{early} of A's leased deliveries were delivered again before their lease ended"
        ));
    }
    let notes = vec![
        format!(
            "A held {} leases at its kill ({in_flight_at_kill} in flight at a receiver)",
            leases.len()
        ),
        format!(
            "B took them over {first_takeover:.1}–{last_takeover:.1} s after the kill (lease {lease:.0} s; \
             at most {slowest_after_end:.1} s after a lease ended)"
        ),
    ];
    let details = vec![
        format!(
            "{} events to 3 webhooks whose receivers hold each request {:.1} s; instance A \
             started alone on a fresh schema of the shared PostgreSQL, B joined once A was \
             delivering, and A was killed with SIGKILL {:.1} s into the run, holding {} leases on \
             {} events.",
            s.failover_events,
            s.failover_hold.as_secs_f64(),
            killed_at.as_secs_f64(),
            leases.len(),
            leased_events.len()
        ),
        format!(
            "Their leases (lease_ms = {}) ended {first_end:.1}–{last_end:.1} s after the kill; \
             B delivered each of them {first_takeover:.1}–{last_takeover:.1} s after the kill, \
             none before its lease ended ({early} early), at most {slowest_after_end:.1} s after \
             (B serves older due deliveries first). {in_flight_at_kill} of them had reached a \
             receiver from A already: those are the repeats. Lost: {}.",
            SHORT_LEASE[0].1, tally.lost
        ),
    ];
    Ok(Row {
        scenario: "failover".to_owned(),
        backend: "PostgreSQL",
        tally,
        peak_rss,
        duration,
        notes,
        details,
        failures,
    })
}

/// For each lease, seconds from the kill to the first arrival of its event on its route after
/// the kill (past [`WIRE`]), if any yet.
fn takeover_times(receivers: &Receivers, leases: &[Lease], kill_ns: u64) -> Vec<Option<f64>> {
    let from = kill_ns + WIRE.as_nanos() as u64;
    let mut first: HashMap<(u128, usize), u64> = HashMap::new();
    let sink = &receivers.sink;
    for r in sink.receipts().into_iter().chain(sink.repeats()) {
        if r.at_ns >= from {
            first
                .entry((r.event, r.route))
                .and_modify(|at| *at = (*at).min(r.at_ns))
                .or_insert(r.at_ns);
        }
    }
    leases
        .iter()
        .map(|l| {
            first
                .get(&(l.event, l.route))
                .map(|&at| Duration::from_nanos(at - kill_ns).as_secs_f64())
        })
        .collect()
}

/// The distinct lease owners of unfinished deliveries now.
async fn lease_owners(url: &str) -> anyhow::Result<Vec<String>> {
    let rows = psql(
        url,
        "SELECT DISTINCT lease_owner FROM deliveries WHERE lease_owner IS NOT NULL \
         AND state = 'in_flight'",
    )
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| r.into_iter().next())
        .collect())
}

/// The deliveries leased to `owner`, with their receiver route and lease end.
async fn leases_of(
    url: &str,
    owner: &str,
    kill_unix_us: i64,
    receivers: &Receivers,
) -> anyhow::Result<Vec<Lease>> {
    // The owner is a UUID that webhookd made; checked so that it can be quoted safely.
    let owner = Uuid::parse_str(owner).context("a lease owner that is not a UUID")?;
    let rows = psql(
        url,
        &format!(
            "SELECT d.event_id, w.url, d.due_at FROM deliveries d \
             JOIN webhooks w ON w.id = d.webhook_id \
             WHERE d.lease_owner = '{owner}' AND d.state = 'in_flight'"
        ),
    )
    .await?;
    rows.into_iter()
        .map(|row| {
            let [event, target, due] = row.as_slice() else {
                bail!("psql answered {row:?}; expected event, url, due_at");
            };
            let route = receivers
                .paths
                .iter()
                .find(|p| receivers.sink.url(p) == *target)
                .and_then(|p| receivers.sink.route(p))
                .with_context(|| format!("a webhook at {target}, which is no receiver"))?;
            let due: i64 = due.parse().context("due_at is not a number")?;
            Ok(Lease {
                event: Uuid::parse_str(event)?.as_u128(),
                route,
                ends_after_kill: (due - kill_unix_us) as f64 / 1e6,
            })
        })
        .collect()
}

/// Rows of a query through `psql`, tab-separated.
async fn psql(url: &str, sql: &str) -> anyhow::Result<Vec<Vec<String>>> {
    let (url, sql) = (url.to_owned(), sql.to_owned());
    blocking(move || {
        let out = Command::new("psql")
            .args([
                url.as_str(),
                "-X",
                "-q",
                "-tA",
                "-F",
                "\t",
                "-c",
                sql.as_str(),
            ])
            .output()
            .context("cannot run psql: install the PostgreSQL client")?;
        if !out.status.success() {
            bail!(
                "psql failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8(out.stdout)?
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| l.split('\t').map(str::to_owned).collect())
            .collect())
    })
    .await
}
