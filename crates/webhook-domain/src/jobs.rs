//! Bulk redelivery: a background job that makes a target's exhausted deliveries in a time
//! window due again, in batches, with its progress stored beside it.

use std::fmt;

use thiserror::Error;
use time::OffsetDateTime;

use crate::{RedeliveryJobId, WalletId, WebhookId};

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobState {
    /// Batches remain; some instance works on it.
    Running,
    /// A batch found nothing left to requeue.
    Completed,
    /// Ended before it requeued everything, because its webhook can no longer be sent to.
    Stopped(JobStopReason),
}

/// Why a job stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobStopReason {
    /// The webhook was deleted.
    WebhookDeleted,
    /// The webhook was disabled (by its owner, or because its target answered 410 Gone).
    WebhookDisabled,
}

impl JobStopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStopReason::WebhookDeleted => "webhook_deleted",
            JobStopReason::WebhookDisabled => "webhook_disabled",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "webhook_deleted" => Some(JobStopReason::WebhookDeleted),
            "webhook_disabled" => Some(JobStopReason::WebhookDisabled),
            _ => None,
        }
    }
}

impl JobState {
    /// The state's name: `running`, `completed` or `stopped` (its reason apart).
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Completed => "completed",
            JobState::Stopped(_) => "stopped",
        }
    }

    /// Why the job stopped, when it did.
    pub fn stop_reason(self) -> Option<JobStopReason> {
        match self {
            JobState::Stopped(reason) => Some(reason),
            JobState::Running | JobState::Completed => None,
        }
    }

    /// The state named `name`, with `stop_reason` for `stopped` (and only then).
    pub fn parse(name: &str, stop_reason: Option<&str>) -> Option<Self> {
        match (name, stop_reason) {
            ("running", None) => Some(JobState::Running),
            ("completed", None) => Some(JobState::Completed),
            ("stopped", Some(reason)) => JobStopReason::parse(reason).map(JobState::Stopped),
            _ => None,
        }
    }

    /// Completed or stopped: no step changes the job again.
    pub fn is_finished(self) -> bool {
        self != JobState::Running
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A window that is empty or reversed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("since: must be before until")]
pub struct RedeliveryWindowError;

/// Requeue the exhausted deliveries of one target that were created in `[since, until)` and
/// became final before the job was created. The last condition makes the job finite and safe to
/// run twice: a delivery it requeued that is exhausted again is not requeued again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedeliveryJob {
    pub id: RedeliveryJobId,
    pub wallet_id: WalletId,
    pub webhook_id: WebhookId,
    pub since: OffsetDateTime,
    pub until: OffsetDateTime,
    pub state: JobState,
    /// How many deliveries matched when the job was created.
    pub total: u64,
    /// How many have been requeued so far.
    pub requeued: u64,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl RedeliveryJob {
    /// A new running job with no progress; storage fills in `total`.
    ///
    /// # Errors
    /// [`RedeliveryWindowError`] unless `since < until`.
    pub fn new(
        id: RedeliveryJobId,
        wallet_id: WalletId,
        webhook_id: WebhookId,
        since: OffsetDateTime,
        until: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<Self, RedeliveryWindowError> {
        if since >= until {
            return Err(RedeliveryWindowError);
        }
        Ok(Self {
            id,
            wallet_id,
            webhook_id,
            since,
            until,
            state: JobState::Running,
            total: 0,
            requeued: 0,
            created_at: now,
            updated_at: now,
        })
    }

    /// The job after a step at `now` that requeued `requeued` deliveries: their number is
    /// added, and a step that found none left completes the job. A finished job stays as it
    /// is.
    #[must_use]
    pub fn after_step(&self, requeued: u64, now: OffsetDateTime) -> Self {
        if self.state.is_finished() {
            return self.clone();
        }
        Self {
            state: if requeued == 0 {
                JobState::Completed
            } else {
                JobState::Running
            },
            requeued: self.requeued.saturating_add(requeued),
            updated_at: now,
            ..self.clone()
        }
    }

    /// The job stopped at `now` for `reason`, keeping its progress. A finished job stays as it
    /// is.
    #[must_use]
    pub fn stop(&self, reason: JobStopReason, now: OffsetDateTime) -> Self {
        if self.state.is_finished() {
            return self.clone();
        }
        Self {
            state: JobState::Stopped(reason),
            updated_at: now,
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;
    use uuid::Uuid;

    #[test]
    fn a_window_must_not_be_empty_or_reversed() {
        let at = datetime!(2026-11-28 12:00 UTC);
        let make = |since, until| {
            RedeliveryJob::new(
                RedeliveryJobId::from_uuid(Uuid::nil()),
                WalletId::DEFAULT,
                WebhookId::from_uuid(Uuid::nil()),
                since,
                until,
                at,
            )
        };
        assert_eq!(make(at, at), Err(RedeliveryWindowError));
        assert_eq!(
            make(at, at - time::Duration::SECOND),
            Err(RedeliveryWindowError)
        );
        let job = make(at - time::Duration::HOUR, at).unwrap();
        assert_eq!(
            (job.state, job.total, job.requeued),
            (JobState::Running, 0, 0)
        );
    }

    #[test]
    fn a_step_adds_its_count_and_an_empty_step_completes() {
        let at = datetime!(2026-11-28 12:00 UTC);
        let later = at + time::Duration::MINUTE;
        let job = RedeliveryJob::new(
            RedeliveryJobId::from_uuid(Uuid::nil()),
            WalletId::DEFAULT,
            WebhookId::from_uuid(Uuid::nil()),
            at - time::Duration::HOUR,
            at,
            at,
        )
        .unwrap();
        let once = job.after_step(3, later);
        assert_eq!(
            (once.state, once.requeued, once.updated_at),
            (JobState::Running, 3, later)
        );
        let done = once.after_step(0, later + time::Duration::SECOND);
        assert_eq!((done.state, done.requeued), (JobState::Completed, 3));
        assert_eq!(done.after_step(5, later + time::Duration::HOUR), done);
    }

    #[test]
    fn a_stop_keeps_the_progress_and_ends_the_job() {
        let at = datetime!(2026-11-28 12:00 UTC);
        let later = at + time::Duration::MINUTE;
        let job = RedeliveryJob::new(
            RedeliveryJobId::from_uuid(Uuid::nil()),
            WalletId::DEFAULT,
            WebhookId::from_uuid(Uuid::nil()),
            at - time::Duration::HOUR,
            at,
            at,
        )
        .unwrap()
        .after_step(4, at);
        let stopped = job.stop(JobStopReason::WebhookDeleted, later);
        assert_eq!(
            (stopped.state, stopped.requeued, stopped.updated_at),
            (JobState::Stopped(JobStopReason::WebhookDeleted), 4, later)
        );
        let after = later + time::Duration::SECOND;
        assert_eq!(stopped.after_step(5, after), stopped);
        assert_eq!(stopped.stop(JobStopReason::WebhookDisabled, after), stopped);
        let done = job.after_step(0, later);
        assert_eq!(done.stop(JobStopReason::WebhookDisabled, after), done);
    }

    #[test]
    fn states_round_trip_through_text() {
        for state in [
            JobState::Running,
            JobState::Completed,
            JobState::Stopped(JobStopReason::WebhookDeleted),
            JobState::Stopped(JobStopReason::WebhookDisabled),
        ] {
            let reason = state.stop_reason().map(JobStopReason::as_str);
            assert_eq!(JobState::parse(state.as_str(), reason), Some(state));
        }
        assert_eq!(JobState::parse("done", None), None);
        assert_eq!(JobState::parse("stopped", None), None);
        assert_eq!(JobState::parse("stopped", Some("bored")), None);
        assert_eq!(JobState::parse("running", Some("webhook_deleted")), None);
    }
}
