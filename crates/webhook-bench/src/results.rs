//! What one benchmark run found: the figures of every scenario, the ceilings, the machine and
//! how webhookd was run. Written as `results.json` and rendered by `report` and `chart`.

use serde::Serialize;

use crate::procfs::Machine;
use crate::stats::Latency;
use crate::webhookd::Backend;

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Results {
    /// `full`, `quick`, or `custom` (a full run with sizes or scenarios changed).
    pub(crate) mode: String,
    pub(crate) started_at: String,
    pub(crate) machine: Machine,
    /// The webhookd binary and the source revision it was built from.
    pub(crate) webhookd_binary: String,
    pub(crate) source_revision: Option<String>,
    /// Settings given to every webhookd, beyond its defaults (secrets shown: they are the
    /// harness's throwaway keys).
    pub(crate) webhookd_env: Vec<(String, String)>,
    pub(crate) commands: Vec<String>,
    pub(crate) sizes: Vec<(String, String)>,
    pub(crate) ceilings: Ceilings,
    /// Resident memory of a fresh webhookd, idle for a second after it answered `/health`.
    pub(crate) idle_rss: Vec<(Backend, u64)>,
    pub(crate) scenarios: Vec<Scenario>,
    /// S4's comparison of the fast webhooks' p99 with and without the slow one.
    pub(crate) isolation: Vec<Isolation>,
    /// Lines saying what was not measured and why.
    pub(crate) skipped: Vec<String>,
    /// S8, sustained load: its runs on one webhookd and one database, per backend.
    pub(crate) sustained: Vec<crate::sustained::Sustained>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Ceilings {
    pub(crate) sink_in_flight: usize,
    /// Requests per second of a bare client to the sink.
    pub(crate) sink_per_s: Option<f64>,
    /// Deliveries per second of each storage adapter through whole cycles (publish, claim,
    /// record), no HTTP.
    pub(crate) store_per_s: Vec<(Backend, f64)>,
    /// Clients of the storage ceilings and of the raw SQL one.
    pub(crate) store_clients: usize,
    /// PostgreSQL's raw SQL ceiling: pgbench running the same cycles.
    pub(crate) raw_sql: Option<RawSqlCeiling>,
}

/// The raw SQL ceiling of the PostgreSQL adapter (issue 16): pgbench running the repository's
/// script of the adapter's row work per delivery, and what reaches how much of it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RawSqlCeiling {
    /// The script, relative to the repository.
    pub(crate) script: String,
    /// pgbench's clients (connections) and threads.
    pub(crate) clients: usize,
    pub(crate) threads: usize,
    /// pgbench transactions, each one delivery cycle of up to a claim batch.
    pub(crate) cycles: u64,
    /// Deliveries the cycles recorded as delivered.
    pub(crate) deliveries: u64,
    pub(crate) per_s: f64,
    /// The PostgreSQL adapter's storage ceiling (the same cycles, clients and sizes) over this.
    pub(crate) adapter_fraction: Option<f64>,
    /// S1's delivery rate on PostgreSQL, end to end through webhookd, over this.
    pub(crate) s1_fraction: Option<f64>,
}

impl RawSqlCeiling {
    /// Fills in `s1_fraction` from the run's S1 on PostgreSQL, if it ran.
    pub(crate) fn compare_s1(&mut self, scenarios: &[Scenario]) {
        self.s1_fraction = scenarios
            .iter()
            .find(|s| s.id == "S1" && s.backend == Backend::Postgres)
            .and_then(|s| s.delivery_per_s)
            .map(|rate| rate / self.per_s);
    }
}

impl Ceilings {
    /// The lower of the sink's and the backend's storage ceiling.
    pub(crate) fn lower(&self, backend: Backend) -> Option<f64> {
        let store = self
            .store_per_s
            .iter()
            .find(|(b, _)| *b == backend)
            .map(|&(_, r)| r);
        match (self.sink_per_s, store) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

impl Results {
    /// The scenario ids of the run, in order (`S1`, `S2`, ..., `S4 control`, `S4 slow`, ...).
    pub(crate) fn scenario_ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.scenarios.iter().map(|s| s.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

/// One scenario on one backend.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Scenario {
    /// `S1` ... `S7`; S4 is two runs, `S4 control` and `S4 slow`, and S7 four (`S7 ordered
    /// control`, `S7 ordered backlog`, and the same unordered).
    pub(crate) id: String,
    pub(crate) backend: Backend,
    pub(crate) setup: String,
    pub(crate) events_published: u64,
    pub(crate) failed_requests: u64,
    pub(crate) first_error: Option<String>,
    pub(crate) deliveries_expected: u64,
    pub(crate) deliveries_received: u64,
    pub(crate) duplicates: u64,
    /// Every expected delivery arrived before the deadline.
    pub(crate) complete: bool,
    /// Seconds from the first publish start to the last receipt (or the deadline).
    pub(crate) elapsed_s: f64,
    /// Events accepted per second, from the first publish start to the last `202`.
    pub(crate) publish_per_s: Option<f64>,
    /// Deliveries received per second, from the first publish start to the last receipt (S5:
    /// from the start of the draining webhookd).
    pub(crate) delivery_per_s: Option<f64>,
    /// `delivery_per_s` over the lower ceiling of this backend.
    pub(crate) of_ceiling: Option<f64>,
    pub(crate) latency: Option<Latency>,
    /// Per sink path when there are several.
    pub(crate) latency_by_route: Vec<(String, Latency)>,
    pub(crate) webhookd_cpu_s: Option<f64>,
    pub(crate) db_cpu_s: Option<f64>,
    pub(crate) harness_cpu_s: Option<f64>,
    /// `VmHWM` of webhookd at the end.
    pub(crate) peak_rss_bytes: Option<u64>,
    /// S5: the largest `VmRSS` sampled every 100 ms during the drain.
    pub(crate) sampled_max_rss_bytes: Option<u64>,
    /// Open loop: the longest a publish started after its due time.
    pub(crate) max_pacing_lateness_ms: Option<f64>,
    pub(crate) notes: Vec<String>,
}

impl Scenario {
    fn per_1000(&self, seconds: Option<f64>) -> Option<f64> {
        let received = self.deliveries_received;
        seconds
            .filter(|_| received > 0)
            .map(|s| s * 1000.0 / received as f64)
    }

    pub(crate) fn webhookd_cpu_per_1000(&self) -> Option<f64> {
        self.per_1000(self.webhookd_cpu_s)
    }

    pub(crate) fn db_cpu_per_1000(&self) -> Option<f64> {
        self.per_1000(self.db_cpu_s)
    }

    /// Cores kept busy on average over the scenario.
    pub(crate) fn cores(&self, seconds: Option<f64>) -> Option<f64> {
        seconds
            .filter(|_| self.elapsed_s > 0.0)
            .map(|s| s / self.elapsed_s)
    }
}

/// One tenant's p99 beside another's trouble, over its p99 without: S4 (a slow webhook of the
/// same wallet), S7 (another wallet's backlog behind a down target, ordered or not).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Isolation {
    /// `S4`, `S7 ordered` or `S7 unordered`.
    pub(crate) scenario: &'static str,
    pub(crate) backend: Backend,
    pub(crate) control_p99_ms: f64,
    /// The p99 beside the trouble (S4's slow webhook, S7's backlog).
    pub(crate) with_slow_p99_ms: f64,
    pub(crate) ratio: f64,
    /// The target: the ratio at most this.
    pub(crate) bound: f64,
}

impl Isolation {
    /// The comparison of two runs' latencies, when both have some and the control's p99 is
    /// above zero.
    pub(crate) fn of(
        scenario: &'static str,
        backend: Backend,
        control: Option<Latency>,
        with: Option<Latency>,
        bound: f64,
    ) -> Option<Self> {
        match (control, with) {
            (Some(c), Some(w)) if c.p99_ms > 0.0 => Some(Self {
                scenario,
                backend,
                control_p99_ms: c.p99_ms,
                with_slow_p99_ms: w.p99_ms,
                ratio: w.p99_ms / c.p99_ms,
                bound,
            }),
            _ => None,
        }
    }
}
