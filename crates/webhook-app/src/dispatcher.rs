//! The dispatcher: claims due deliveries, attempts them concurrently through the transport,
//! applies the domain's decisions and records the outcomes in one batch.
//!
//! It uses only the ports, so its logic is unit-tested with mocks. It never holds a database
//! connection while HTTP is in flight: the claim returns first, the record comes after.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use webhook_domain::{Decision, Jitter, OutboundMessage, RetryPolicy};
use webhook_ports::{
    AttemptLog, AttemptRecord, ClaimedDelivery, Clock, DeliveryQueue, LeaseOwner, OutboxError,
    Transport, WebhookRepository,
};

/// How the dispatcher works.
#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    pub batch_size: u32,
    pub lease: Duration,
    pub attempt_timeout: Duration,
    pub poll_interval: Duration,
    pub default_retry_policy: RetryPolicy,
}

/// The ports the dispatcher drives, and how it draws jitter.
pub struct Dispatcher {
    pub(crate) queue: Arc<dyn DeliveryQueue>,
    pub(crate) webhooks: Arc<dyn WebhookRepository>,
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) jitter: fn() -> Jitter,
    pub(crate) owner: LeaseOwner,
    pub(crate) config: DispatcherConfig,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("owner", &self.owner)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// Claims one batch, attempts each delivery, and records every outcome. Returns how many
    /// deliveries were attempted.
    ///
    /// # Errors
    /// A storage error from the claim or the record; deliveries whose record failed stay
    /// leased and become due again when the lease expires.
    pub async fn run_once(self: &Arc<Self>) -> Result<usize, OutboxError> {
        let now = self.clock.now();
        let claimed = self
            .queue
            .claim_due(&self.owner, now, self.config.lease, self.config.batch_size)
            .await?;
        let count = claimed.len();
        if count == 0 {
            return Ok(0);
        }
        let mut attempts = JoinSet::new();
        for delivery in claimed {
            let this = Arc::clone(self);
            attempts.spawn(async move { this.attempt(delivery).await });
        }
        let mut records = Vec::with_capacity(count);
        let mut gone = Vec::new();
        while let Some(joined) = attempts.join_next().await {
            match joined {
                Ok(Some((record, decision))) => {
                    if decision == Decision::DisableTarget {
                        gone.push(record.delivery.webhook_id());
                    }
                    records.push(record);
                }
                Ok(None) => {}
                // A panicking attempt leaves its lease to expire; the delivery is retried.
                Err(e) => tracing::error!(error = %e, "a delivery attempt task failed"),
            }
        }
        let lost = self.queue.record_attempts(&self.owner, &records).await?;
        if !lost.is_empty() {
            tracing::warn!(
                count = lost.len(),
                "leases expired before outcomes were recorded"
            );
        }
        for webhook in gone {
            let now = self.clock.now();
            if let Err(e) = self.webhooks.disable_webhook(webhook, now).await {
                tracing::warn!(%webhook, error = %e, "cannot disable a webhook that answered 410");
            } else {
                tracing::info!(%webhook, "webhook disabled: the target answered 410 Gone");
            }
        }
        Ok(count)
    }

    /// One attempt: build the message, send it, apply the state machine.
    async fn attempt(&self, claimed: ClaimedDelivery) -> Option<(AttemptRecord, Decision)> {
        let ClaimedDelivery {
            delivery,
            event,
            webhook,
        } = claimed;
        let started_at = self.clock.now();
        let message = OutboundMessage::build(&event, &webhook, started_at);
        let report = self
            .transport
            .send(&webhook.url, &message, self.config.attempt_timeout)
            .await;
        let policy = webhook
            .retry_policy
            .as_ref()
            .unwrap_or(&self.config.default_retry_policy);
        let finished_at = self.clock.now();
        let (next, decision) = match delivery.on_attempt(
            &report.outcome,
            policy,
            finished_at,
            (self.jitter)(),
        ) {
            Ok(next) => next,
            Err(e) => {
                tracing::error!(delivery = %delivery.id(), error = %e, "claimed delivery was not in flight");
                return None;
            }
        };
        tracing::debug!(
            delivery = %delivery.id(),
            event = %event.id(),
            webhook = %webhook.id,
            outcome = ?report.outcome,
            decision = ?decision,
            "attempt finished"
        );
        let record = AttemptRecord {
            attempt: AttemptLog {
                number: next.attempts(),
                started_at,
                duration: report.duration,
                outcome: report.outcome,
                response_excerpt: report.response_excerpt,
                error: report.error,
            },
            delivery: next,
        };
        Some((record, decision))
    }

    /// Runs until `shutdown` turns true: works while there is work, then sleeps until the next
    /// due time, a wake-up, or the poll interval, whichever comes first.
    pub async fn run(self: Arc<Self>, wake: Arc<Notify>, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                break;
            }
            let pause = match self.run_once().await {
                Ok(n) if n > 0 => continue,
                Ok(_) => self.idle_pause().await,
                Err(e) => {
                    tracing::warn!(error = %e, "dispatcher cannot reach the database; retrying");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                () = wake.notified() => {}
                () = tokio::time::sleep(pause) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    async fn idle_pause(&self) -> Duration {
        let poll = self.config.poll_interval;
        match self.queue.next_due_at().await {
            Ok(Some(at)) => {
                let wait = at - self.clock.now();
                Duration::try_from(wait).unwrap_or(Duration::ZERO).min(poll)
            }
            _ => poll,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mockall::predicate::always;
    use time::OffsetDateTime;
    use time::macros::datetime;
    use webhook_domain::{
        AttemptOutcome, CustomHeaders, Delivery, DeliveryId, DeliveryState, Event, EventId,
        EventType, Timestamp, WalletId, Webhook, WebhookId, WebhookScope, WebhookUrl,
    };
    use webhook_ports::{
        AttemptReport, MockClock, MockDeliveryQueue, MockTransport, MockWebhookRepository,
    };

    const NOW: OffsetDateTime = datetime!(2026-01-01 12:00 UTC);

    fn claimed(policy: Option<RetryPolicy>, attempts_before: u32) -> ClaimedDelivery {
        let webhook_id = WebhookId::from_uuid(uuid::Uuid::from_u128(7));
        let mut webhook = Webhook::new(
            webhook_id,
            WebhookScope::Wallet(WalletId::DEFAULT),
            WebhookUrl::parse("http://127.0.0.1:9/hook").unwrap(),
            CustomHeaders::bearer("token").unwrap(),
            NOW,
        );
        webhook.retry_policy = policy;
        let event = Event::new(
            EventId::from_uuid(uuid::Uuid::from_u128(1)),
            Timestamp::from_datetime(NOW),
            EventType::parse("Custom.Test").unwrap(),
            serde_json::json!({"n": 1}),
            WalletId::DEFAULT,
        )
        .unwrap();
        let delivery = Delivery::restore(
            DeliveryId::from_uuid(uuid::Uuid::from_u128(3)),
            event.id(),
            webhook_id,
            NOW,
            attempts_before,
            DeliveryState::InFlight {
                attempt: attempts_before + 1,
                leased_until: NOW + time::Duration::minutes(1),
            },
        );
        ClaimedDelivery {
            delivery,
            event,
            webhook,
        }
    }

    fn report(outcome: AttemptOutcome) -> AttemptReport {
        AttemptReport {
            outcome,
            duration: Duration::from_millis(12),
            response_excerpt: None,
            error: None,
        }
    }

    fn status(code: u16) -> AttemptOutcome {
        AttemptOutcome::Response {
            status: code,
            retry_after: None,
        }
    }

    /// Runs one batch of one delivery whose attempt ends in `outcome`, and returns what was
    /// recorded. `expect_disable` says whether the webhook must be disabled.
    async fn one_attempt(
        claimed_delivery: ClaimedDelivery,
        outcome: AttemptOutcome,
        expect_disable: bool,
    ) -> Vec<AttemptRecord> {
        let recorded = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut queue = MockDeliveryQueue::new();
        let batch = vec![claimed_delivery];
        queue
            .expect_claim_due()
            .times(1)
            .returning(move |_, now, lease, limit| {
                assert_eq!((now, lease, limit), (NOW, Duration::from_secs(60), 16));
                Ok(batch.clone())
            });
        let sink = Arc::clone(&recorded);
        queue
            .expect_record_attempts()
            .times(1)
            .returning(move |owner, records| {
                assert_eq!(owner.0, "test-instance");
                sink.lock().unwrap().extend_from_slice(records);
                Ok(Vec::new())
            });
        let mut transport = MockTransport::new();
        transport
            .expect_send()
            .times(1)
            .returning(move |url, message, timeout| {
                assert_eq!(url.as_str(), "http://127.0.0.1:9/hook");
                assert_eq!(message.header("authorization"), Some("Bearer token"));
                assert_eq!(
                    message.header("webhook-id"),
                    Some("00000000-0000-0000-0000-000000000001")
                );
                assert_eq!(timeout, Duration::from_secs(5));
                report(outcome)
            });
        let mut webhooks = MockWebhookRepository::new();
        webhooks
            .expect_disable_webhook()
            .with(
                mockall::predicate::eq(WebhookId::from_uuid(uuid::Uuid::from_u128(7))),
                always(),
            )
            .times(usize::from(expect_disable))
            .returning(|_, _| Ok(()));
        let dispatcher = dispatcher(queue, webhooks, transport);
        assert_eq!(dispatcher.run_once().await.unwrap(), 1);
        recorded.lock().unwrap().clone()
    }

    /// A dispatcher over the given mocks, a clock stopped at `NOW`, no jitter, batches of 16,
    /// a 60 s lease, a 5 s attempt timeout and the identus default policy.
    fn dispatcher(
        queue: MockDeliveryQueue,
        webhooks: MockWebhookRepository,
        transport: MockTransport,
    ) -> Arc<Dispatcher> {
        let mut clock = MockClock::new();
        clock.expect_now().return_const(NOW);
        Arc::new(Dispatcher {
            queue: Arc::new(queue),
            webhooks: Arc::new(webhooks),
            transport: Arc::new(transport),
            clock: Arc::new(clock),
            jitter: || Jitter::MAX,
            owner: LeaseOwner("test-instance".into()),
            config: DispatcherConfig {
                batch_size: 16,
                lease: Duration::from_secs(60),
                attempt_timeout: Duration::from_secs(5),
                poll_interval: Duration::from_secs(1),
                default_retry_policy: RetryPolicy::identus(),
            },
        })
    }

    #[tokio::test]
    async fn a_2xx_is_recorded_as_delivered() {
        let records = one_attempt(claimed(None, 0), status(204), false).await;
        assert_eq!(records.len(), 1);
        assert_eq!(
            records[0].delivery.state(),
            DeliveryState::Delivered { at: NOW }
        );
        assert_eq!(records[0].attempt.number, 1);
        assert_eq!(records[0].attempt.outcome, status(204));
        assert_eq!(records[0].attempt.duration, Duration::from_millis(12));
    }

    #[tokio::test]
    async fn a_500_is_retried_after_the_default_policy_interval() {
        let records = one_attempt(claimed(None, 0), status(500), false).await;
        assert_eq!(
            records[0].delivery.state(),
            DeliveryState::RetryScheduled {
                at: NOW + time::Duration::seconds(5)
            }
        );
    }

    #[tokio::test]
    async fn the_target_policy_wins_over_the_default() {
        let policy = RetryPolicy::new(
            webhook_domain::Backoff::Fixed {
                interval: Duration::from_millis(100),
            },
            5,
            None,
        )
        .unwrap();
        let records = one_attempt(claimed(Some(policy), 0), AttemptOutcome::Timeout, false).await;
        assert_eq!(
            records[0].delivery.state(),
            DeliveryState::RetryScheduled {
                at: NOW + time::Duration::milliseconds(100)
            }
        );
    }

    #[tokio::test]
    async fn the_last_allowed_failure_exhausts_the_delivery() {
        let records = one_attempt(claimed(None, 2), AttemptOutcome::ConnectionFailed, false).await;
        assert_eq!(
            records[0].delivery.state(),
            DeliveryState::Exhausted { at: NOW }
        );
        assert_eq!(records[0].attempt.number, 3);
    }

    #[tokio::test]
    async fn a_410_cancels_the_delivery_and_disables_the_target() {
        let records = one_attempt(claimed(None, 0), status(410), true).await;
        assert!(matches!(
            records[0].delivery.state(),
            DeliveryState::Cancelled {
                reason: webhook_domain::CancelReason::TargetGone,
                ..
            }
        ));
    }

    #[tokio::test]
    async fn an_empty_claim_sends_and_records_nothing() {
        let mut queue = MockDeliveryQueue::new();
        queue
            .expect_claim_due()
            .times(1)
            .returning(|_, _, _, _| Ok(Vec::new()));
        queue.expect_record_attempts().never();
        let mut transport = MockTransport::new();
        transport.expect_send().never();
        let dispatcher = dispatcher(queue, MockWebhookRepository::new(), transport);
        assert_eq!(dispatcher.run_once().await.unwrap(), 0);
    }
}
