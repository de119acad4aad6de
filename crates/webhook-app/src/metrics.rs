//! The Prometheus metrics: one registry, made once at start and shared as `Arc<Metrics>`, and
//! its text for `/metrics`.
//!
//! Events happen where they are counted: the API counts publishes, the dispatcher counts
//! attempts, finished deliveries and outcome writes retried or given up, and reports its
//! circuit breakers when one changes state.
//! What lives elsewhere (the backlog in storage, the pool's connections) is read when
//! `/metrics` is scraped and passed to [`Metrics::render`].
//!
//! Labels hold only fixed words and webhook ids, never a URL, header, secret or key; the only
//! label with unbounded values, the webhook id, appears only for targets whose circuit is not
//! closed.

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use time::OffsetDateTime;
use webhook_domain::{
    AttemptDetail, CircuitState, DeliveryId, DeliveryState, DetailKind, WebhookId,
};
use webhook_ports::{AttemptRecord, Backlog};

/// The content type of [`Metrics::render`]'s text.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The `outcome` labels of a response, by [`AttemptDetail::is_success`]: the metrics split
/// the one kind in two.
const RESPONSE_LABELS: [&str; 2] = ["success", "http_error"];

/// Every value of the `outcome` label of `webhookd_attempts_total`: [`RESPONSE_LABELS`], then
/// the domain's name of every other kind.
fn outcome_labels() -> impl Iterator<Item = &'static str> {
    RESPONSE_LABELS.into_iter().chain(
        DetailKind::ALL
            .into_iter()
            .filter(|kind| *kind != DetailKind::Response)
            .map(DetailKind::as_str),
    )
}

/// Every value of the `state` label of `webhookd_deliveries_finished_total`.
const FINAL_STATES: [&str; 3] = ["delivered", "exhausted", "cancelled"];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    webhook: String,
}

/// A connection pool's numbers, as the store reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PoolUsage {
    /// Connections open, idle or in use.
    pub(crate) connections: u32,
    /// Open connections not in use.
    pub(crate) idle: u32,
    /// The most connections the pool opens.
    pub(crate) max: u32,
}

/// Every metric of the service.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    events_published: Counter,
    source_refusals: Family<SourceLabels, Counter>,
    attempts: Family<OutcomeLabels, Counter>,
    deliveries_finished: Family<StateLabels, Counter>,
    outcome_write_retries: Counter,
    outcomes_unrecorded: Counter,
    attempt_duration: Histogram,
    backlog_deliveries: Gauge,
    backlog_oldest_due_age: Gauge<f64, AtomicU64>,
    circuit_open_targets: Gauge,
    circuit_state: Family<WebhookLabels, Gauge>,
    /// The breakers that are not closed, as the dispatcher last reported them.
    circuits: Mutex<Vec<(WebhookId, CircuitState)>>,
    target_inflight_limit: Family<WebhookLabels, Gauge>,
    /// The in-flight limits that moved from their start, as the dispatcher last reported them.
    limits: Mutex<Vec<(WebhookId, u32)>>,
    pool_connections: Gauge,
    pool_idle: Gauge,
    pool_max: Gauge,
    /// One render at a time: a render rebuilds `circuit_state` before encoding it.
    rendering: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric, each at zero.
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("webhookd");
        let events_published = Counter::default();
        registry.register(
            "events_published",
            "Events stored by POST /events and /events/batch (replays not counted)",
            events_published.clone(),
        );
        let source_refusals = Family::<SourceLabels, Counter>::default();
        registry.register(
            "source_refusals",
            "Messages an event source refused for good (terminated or rejected at its broker), by source",
            source_refusals.clone(),
        );
        let attempts = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "attempts",
            "Delivery attempts by outcome (http_error: a response other than 2xx)",
            attempts.clone(),
        );
        let deliveries_finished = Family::<StateLabels, Counter>::default();
        registry.register(
            "deliveries_finished",
            "Deliveries that became final, by final state",
            deliveries_finished.clone(),
        );
        let outcome_write_retries = Counter::default();
        registry.register(
            "outcome_write_retries",
            "Writes of attempt outcomes tried again after a failure",
            outcome_write_retries.clone(),
        );
        let outcomes_unrecorded = Counter::default();
        registry.register(
            "outcomes_unrecorded",
            "Attempt outcomes given up when their write kept failing until their leases (or the \
             shutdown grace) ran out; their deliveries are attempted again",
            outcomes_unrecorded.clone(),
        );
        // 1 ms doubling to 32.8 s: the attempts' range, up to the longest attempt timeout.
        let attempt_duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register_with_unit(
            "attempt_duration",
            "How long delivery attempts took, answer or not",
            Unit::Seconds,
            attempt_duration.clone(),
        );
        let backlog_deliveries = Gauge::default();
        registry.register(
            "backlog_deliveries",
            "Unfinished deliveries due now (pending, retries due, expired leases), read at scrape",
            backlog_deliveries.clone(),
        );
        let backlog_oldest_due_age = Gauge::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "backlog_oldest_due_age",
            "How long the earliest due delivery has been due (0 when none is), read at scrape",
            Unit::Seconds,
            backlog_oldest_due_age.clone(),
        );
        let circuit_open_targets = Gauge::default();
        registry.register(
            "circuit_open_targets",
            "Targets whose circuit breaker is not closed (open or half-open)",
            circuit_open_targets.clone(),
        );
        let circuit_state = Family::<WebhookLabels, Gauge>::default();
        registry.register(
            "circuit_state",
            "Circuit breaker state of each target whose breaker is not closed: 1 half-open, 2 open",
            circuit_state.clone(),
        );
        let target_inflight_limit = Family::<WebhookLabels, Gauge>::default();
        registry.register(
            "target_inflight_limit",
            "Adaptive in-flight limit of each target whose limit moved from its initial value",
            target_inflight_limit.clone(),
        );
        let pool_connections = Gauge::default();
        registry.register(
            "db_pool_connections",
            "Database connections open in the pool, idle or in use",
            pool_connections.clone(),
        );
        let pool_idle = Gauge::default();
        registry.register(
            "db_pool_idle_connections",
            "Database connections open in the pool and not in use",
            pool_idle.clone(),
        );
        let pool_max = Gauge::default();
        registry.register(
            "db_pool_max_connections",
            "The most database connections the pool opens",
            pool_max.clone(),
        );
        // Every label value shows from the start, so that rates over them are defined.
        for outcome in outcome_labels() {
            attempts.get_or_create_owned(&OutcomeLabels { outcome });
        }
        for state in FINAL_STATES {
            deliveries_finished.get_or_create_owned(&StateLabels { state });
        }
        Self {
            registry,
            events_published,
            attempts,
            deliveries_finished,
            outcome_write_retries,
            outcomes_unrecorded,
            attempt_duration,
            backlog_deliveries,
            backlog_oldest_due_age,
            circuit_open_targets,
            circuit_state,
            circuits: Mutex::new(Vec::new()),
            target_inflight_limit,
            limits: Mutex::new(Vec::new()),
            pool_connections,
            pool_idle,
            pool_max,
            source_refusals,
            rendering: Mutex::new(()),
        }
    }

    /// Counts `count` newly stored events.
    pub(crate) fn events_published(&self, count: usize) {
        self.events_published.inc_by(count as u64);
    }

    /// Counts one message an event source refused for good.
    pub(crate) fn source_refused(&self, source: &str) {
        self.source_refusals
            .get_or_create(&SourceLabels {
                source: source.to_owned(),
            })
            .inc();
    }

    /// Counts one attempt and observes how long it took.
    pub(crate) fn attempt_finished(&self, outcome: &AttemptDetail, duration: Duration) {
        self.attempts
            .get_or_create(&OutcomeLabels {
                outcome: outcome_label(outcome),
            })
            .inc();
        self.attempt_duration.observe(duration.as_secs_f64());
    }

    /// Counts the deliveries that `records` made final, except the `lost` ones (whose lease
    /// another dispatcher took, so their outcome was not stored).
    pub(crate) fn outcomes_recorded(&self, records: &[AttemptRecord], lost: &[DeliveryId]) {
        for record in records {
            let Some(state) = final_label(record.delivery.state()) else {
                continue;
            };
            if !lost.contains(&record.delivery.id()) {
                self.deliveries_finished
                    .get_or_create(&StateLabels { state })
                    .inc();
            }
        }
    }

    /// Counts one write of outcomes tried again after it failed.
    pub(crate) fn outcome_write_retried(&self) {
        self.outcome_write_retries.inc();
    }

    /// Counts `count` outcomes whose write was given up.
    pub(crate) fn outcomes_unrecorded(&self, count: usize) {
        self.outcomes_unrecorded.inc_by(count as u64);
    }

    /// Replaces the dispatcher's report of its circuit breakers that are not closed.
    pub(crate) fn circuits_changed(&self, not_closed: Vec<(WebhookId, CircuitState)>) {
        *self
            .circuits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = not_closed;
    }

    /// The breakers that are not closed at `now`, as this process's dispatcher last reported
    /// them (none when it runs no dispatcher), by the API's words: `open`, or `half_open` (an
    /// open breaker whose rest is over lets a probe through), as the gauge counts them.
    pub(crate) fn open_circuits(&self, now: OffsetDateTime) -> Vec<(WebhookId, &'static str)> {
        self.circuits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter_map(|(webhook, state)| match circuit_value(*state, now)? {
                2 => Some((*webhook, "open")),
                _ => Some((*webhook, "half_open")),
            })
            .collect()
    }

    /// Replaces the dispatcher's report of the in-flight limits that moved from their start.
    pub(crate) fn limits_changed(&self, moved: Vec<(WebhookId, u32)>) {
        *self
            .limits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = moved;
    }

    /// The OpenMetrics text of every metric, with the backlog gauges set from `backlog` (left
    /// as last set when it is `None`, i.e. could not be read), the pool gauges from `pool`,
    /// and the circuit gauges from the breakers last reported, judged at `now`.
    ///
    /// # Errors
    /// When the encoder fails (it writes to a `String`, so only on a bug of its own).
    pub(crate) fn render(
        &self,
        now: OffsetDateTime,
        backlog: Option<Backlog>,
        pool: PoolUsage,
    ) -> Result<String, std::fmt::Error> {
        let _one_at_a_time = self
            .rendering
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(backlog) = backlog {
            self.backlog_deliveries
                .set(i64::try_from(backlog.due).unwrap_or(i64::MAX));
            let age = backlog
                .oldest_due_at
                .map_or(0.0, |at| (now - at).as_seconds_f64().max(0.0));
            self.backlog_oldest_due_age.set(age);
        }
        self.pool_connections.set(i64::from(pool.connections));
        self.pool_idle.set(i64::from(pool.idle));
        self.pool_max.set(i64::from(pool.max));

        let circuits = self
            .circuits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        self.circuit_state.clear();
        let mut not_closed = 0;
        for (webhook, state) in circuits {
            if let Some(value) = circuit_value(state, now) {
                self.circuit_state
                    .get_or_create(&WebhookLabels {
                        webhook: webhook.to_string(),
                    })
                    .set(value);
                not_closed += 1;
            }
        }
        self.circuit_open_targets.set(not_closed);

        let limits = self
            .limits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        self.target_inflight_limit.clear();
        for (webhook, limit) in limits {
            self.target_inflight_limit
                .get_or_create(&WebhookLabels {
                    webhook: webhook.to_string(),
                })
                .set(i64::from(limit));
        }

        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// The `outcome` label of an attempt: one of [`outcome_labels`].
fn outcome_label(outcome: &AttemptDetail) -> &'static str {
    let [success, http_error] = RESPONSE_LABELS;
    match outcome.kind() {
        DetailKind::Response if outcome.is_success() => success,
        DetailKind::Response => http_error,
        other => other.as_str(),
    }
}

/// The `state` label of a final state; `None` for a state that is not final.
fn final_label(state: DeliveryState) -> Option<&'static str> {
    match state {
        DeliveryState::Delivered { .. } => Some("delivered"),
        DeliveryState::Exhausted { .. } => Some("exhausted"),
        DeliveryState::Cancelled { .. } => Some("cancelled"),
        DeliveryState::Pending { .. }
        | DeliveryState::InFlight { .. }
        | DeliveryState::RetryScheduled { .. } => None,
    }
}

/// The value of `webhookd_circuit_state` at `now`: `None` when closed, 1 when half-open, 2
/// when open. An open circuit whose rest is over counts as half-open: its next attempt is a
/// probe.
fn circuit_value(state: CircuitState, now: OffsetDateTime) -> Option<i64> {
    match state {
        CircuitState::Closed { .. } => None,
        CircuitState::Open { until } if now < until => Some(2),
        CircuitState::Open { .. } | CircuitState::HalfOpen { .. } => Some(1),
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;
    use webhook_domain::{CancelReason, Delivery, EventId};
    use webhook_ports::AttemptLog;

    use super::*;

    const NOW: OffsetDateTime = datetime!(2026-01-01 12:00 UTC);

    fn render(metrics: &Metrics) -> String {
        metrics
            .render(NOW, None, PoolUsage::default())
            .expect("the metrics encode")
    }

    /// The sample lines of `text` whose name and labels start with `prefix`.
    fn samples<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
        text.lines().filter(|l| l.starts_with(prefix)).collect()
    }

    fn webhook(n: u128) -> WebhookId {
        WebhookId::from_uuid(uuid::Uuid::from_u128(n))
    }

    fn record(n: u128, state: DeliveryState) -> AttemptRecord {
        let delivery = Delivery::restore(
            DeliveryId::from_uuid(uuid::Uuid::from_u128(n)),
            EventId::from_uuid(uuid::Uuid::from_u128(1)),
            webhook(7),
            NOW,
            1,
            1,
            state,
        );
        AttemptRecord {
            delivery,
            attempt: AttemptLog {
                number: 1,
                started_at: NOW,
                duration: Duration::from_millis(5),
                detail: AttemptDetail::Timeout,
                response_excerpt: None,
                error: None,
            },
        }
    }

    #[test]
    fn every_metric_is_there_from_the_start_at_zero() {
        let text = render(&Metrics::new());
        for line in [
            "webhookd_events_published_total 0",
            "webhookd_attempts_total{outcome=\"success\"} 0",
            "webhookd_attempts_total{outcome=\"address_refused\"} 0",
            "webhookd_deliveries_finished_total{state=\"delivered\"} 0",
            "webhookd_deliveries_finished_total{state=\"exhausted\"} 0",
            "webhookd_deliveries_finished_total{state=\"cancelled\"} 0",
            "webhookd_outcome_write_retries_total 0",
            "webhookd_outcomes_unrecorded_total 0",
            "webhookd_attempt_duration_seconds_count 0",
            "webhookd_backlog_deliveries 0",
            "webhookd_backlog_oldest_due_age_seconds 0.0",
            "webhookd_circuit_open_targets 0",
            "webhookd_db_pool_connections 0",
            "webhookd_db_pool_idle_connections 0",
            "webhookd_db_pool_max_connections 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        assert_eq!(
            samples(&text, "webhookd_attempts_total{").len(),
            outcome_labels().count()
        );
        assert!(samples(&text, "webhookd_circuit_state{").is_empty());
        assert!(text.contains("# UNIT webhookd_attempt_duration_seconds seconds"));
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn attempts_are_counted_by_outcome() {
        fn check(outcome: AttemptDetail, label: &str) {
            assert!(
                outcome_labels().any(|l| l == label),
                "{label} is shown from the start"
            );
            let metrics = Metrics::new();
            metrics.attempt_finished(&outcome, Duration::from_millis(3));
            let text = render(&metrics);
            assert_eq!(
                samples(
                    &text,
                    &format!("webhookd_attempts_total{{outcome=\"{label}\"}}")
                ),
                vec![format!("webhookd_attempts_total{{outcome=\"{label}\"}} 1")],
                "{outcome:?}"
            );
            let others = samples(&text, "webhookd_attempts_total{")
                .into_iter()
                .filter(|l| l.ends_with(" 1"))
                .count();
            assert_eq!(others, 1, "{outcome:?} counted once:\n{text}");
        }
        let response = |status| AttemptDetail::Response {
            status,
            retry_after: None,
        };
        check(response(200), "success");
        check(response(204), "success");
        check(response(302), "http_error");
        check(response(410), "http_error");
        check(response(503), "http_error");
        check(AttemptDetail::Timeout, "timeout");
        check(AttemptDetail::ConnectionFailed, "connection_failed");
        check(AttemptDetail::TlsFailed, "tls_failed");
        check(AttemptDetail::ResponseTooLarge, "response_too_large");
        check(AttemptDetail::AddressRefused, "address_refused");
    }

    #[test]
    fn every_outcome_kind_has_a_label_and_every_label_an_outcome() {
        let labels: Vec<&str> = outcome_labels().collect();
        assert_eq!(
            labels,
            [
                "success",
                "http_error",
                "accepted",
                "declined",
                "timeout",
                "connection_failed",
                "tls_failed",
                "response_too_large",
                "address_refused",
            ]
        );
        let mut seen = Vec::new();
        for kind in DetailKind::ALL {
            // A response has two labels by its status; any other kind one, whatever it is given.
            for status in [200, 500] {
                let outcome = AttemptDetail::parse(kind.as_str(), Some(status)).unwrap();
                let label = outcome_label(&outcome);
                assert!(labels.contains(&label), "{outcome:?} has label {label:?}");
                if !seen.contains(&label) {
                    seen.push(label);
                }
            }
        }
        assert_eq!(seen, labels, "every label is some kind's, in order");
    }

    #[test]
    fn attempt_durations_fill_the_histogram() {
        let metrics = Metrics::new();
        metrics.attempt_finished(&AttemptDetail::Timeout, Duration::from_millis(12));
        metrics.attempt_finished(&AttemptDetail::Timeout, Duration::from_secs(30));
        let text = render(&metrics);
        let has = |line: &str| text.lines().any(|l| l == line);
        assert!(has("webhookd_attempt_duration_seconds_count 2"), "{text}");
        assert!(
            has("webhookd_attempt_duration_seconds_sum 30.012"),
            "{text}"
        );
        // 1 ms doubling: 12 ms falls in the 16 ms bucket, 30 s in the last before +Inf.
        assert!(
            has("webhookd_attempt_duration_seconds_bucket{le=\"0.008\"} 0"),
            "{text}"
        );
        assert!(
            has("webhookd_attempt_duration_seconds_bucket{le=\"0.016\"} 1"),
            "{text}"
        );
        assert!(
            has("webhookd_attempt_duration_seconds_bucket{le=\"16.384\"} 1"),
            "{text}"
        );
        assert!(
            has("webhookd_attempt_duration_seconds_bucket{le=\"32.768\"} 2"),
            "{text}"
        );
    }

    #[test]
    fn only_recorded_final_states_count_as_finished() {
        let metrics = Metrics::new();
        metrics.events_published(3);
        let records = [
            record(1, DeliveryState::Delivered { at: NOW }),
            record(2, DeliveryState::Delivered { at: NOW }),
            record(3, DeliveryState::Exhausted { at: NOW }),
            record(
                4,
                DeliveryState::Cancelled {
                    at: NOW,
                    reason: CancelReason::TargetGone,
                },
            ),
            record(5, DeliveryState::RetryScheduled { at: NOW }),
            record(6, DeliveryState::Exhausted { at: NOW }),
        ];
        // The sixth's lease was lost: its outcome was not stored.
        let lost = [DeliveryId::from_uuid(uuid::Uuid::from_u128(6))];
        metrics.outcomes_recorded(&records, &lost);
        let text = render(&metrics);
        for line in [
            "webhookd_events_published_total 3",
            "webhookd_deliveries_finished_total{state=\"delivered\"} 2",
            "webhookd_deliveries_finished_total{state=\"exhausted\"} 1",
            "webhookd_deliveries_finished_total{state=\"cancelled\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
    }

    #[test]
    fn the_backlog_and_the_pool_are_as_last_read() {
        let metrics = Metrics::new();
        let backlog = Backlog {
            due: 3,
            oldest_due_at: Some(NOW - time::Duration::milliseconds(90_500)),
        };
        let pool = PoolUsage {
            connections: 4,
            idle: 1,
            max: 10,
        };
        let text = metrics.render(NOW, Some(backlog), pool).unwrap();
        for line in [
            "webhookd_backlog_deliveries 3",
            "webhookd_backlog_oldest_due_age_seconds 90.5",
            "webhookd_db_pool_connections 4",
            "webhookd_db_pool_idle_connections 1",
            "webhookd_db_pool_max_connections 10",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        // A backlog that could not be read leaves the last values.
        let text = metrics.render(NOW, None, pool).unwrap();
        assert!(text.lines().any(|l| l == "webhookd_backlog_deliveries 3"));
        // Nothing due: no age.
        let text = metrics.render(NOW, Some(Backlog::default()), pool).unwrap();
        assert!(text.lines().any(|l| l == "webhookd_backlog_deliveries 0"));
        assert!(
            text.lines()
                .any(|l| l == "webhookd_backlog_oldest_due_age_seconds 0.0")
        );
    }

    #[test]
    fn circuits_show_only_while_not_closed() {
        let metrics = Metrics::new();
        let label = |n| format!("webhookd_circuit_state{{webhook=\"{}\"}}", webhook(n));
        metrics.circuits_changed(vec![
            (
                webhook(1),
                CircuitState::Open {
                    until: NOW + time::Duration::seconds(5),
                },
            ),
            // Its rest is over: the next attempt is a probe.
            (
                webhook(2),
                CircuitState::Open {
                    until: NOW - time::Duration::seconds(5),
                },
            ),
            (webhook(3), CircuitState::HalfOpen { probing: true }),
            (
                webhook(4),
                CircuitState::Closed {
                    consecutive_failures: 2,
                },
            ),
        ]);
        let text = render(&metrics);
        let has = |text: &str, line: &str| text.lines().any(|l| l == line);
        assert!(has(&text, &format!("{} 2", label(1))), "{text}");
        assert!(has(&text, &format!("{} 1", label(2))), "{text}");
        assert!(has(&text, &format!("{} 1", label(3))), "{text}");
        assert!(samples(&text, &label(4)).is_empty(), "{text}");
        assert!(has(&text, "webhookd_circuit_open_targets 3"), "{text}");

        // Closed again: the target's series goes away.
        metrics.circuits_changed(vec![(webhook(3), CircuitState::HalfOpen { probing: true })]);
        let text = render(&metrics);
        assert!(samples(&text, &label(1)).is_empty(), "{text}");
        assert!(has(&text, &format!("{} 1", label(3))), "{text}");
        assert!(has(&text, "webhookd_circuit_open_targets 1"), "{text}");
        metrics.circuits_changed(Vec::new());
        let text = render(&metrics);
        assert!(samples(&text, "webhookd_circuit_state{").is_empty());
        assert!(has(&text, "webhookd_circuit_open_targets 0"), "{text}");
    }

    #[test]
    fn in_flight_limits_show_only_while_moved_from_their_start() {
        let metrics = Metrics::new();
        let label = |n| {
            format!(
                "webhookd_target_inflight_limit{{webhook=\"{}\"}}",
                webhook(n)
            )
        };
        let has = |text: &str, line: &str| text.lines().any(|l| l == line);
        metrics.limits_changed(vec![(webhook(1), 40), (webhook(2), 3)]);
        let text = render(&metrics);
        assert!(has(&text, &format!("{} 40", label(1))), "{text}");
        assert!(has(&text, &format!("{} 3", label(2))), "{text}");
        metrics.limits_changed(vec![(webhook(2), 6)]);
        let text = render(&metrics);
        assert!(samples(&text, &label(1)).is_empty(), "{text}");
        assert!(has(&text, &format!("{} 6", label(2))), "{text}");
    }
}
