//! Bulk redelivery jobs run in the background, one batch per transaction, so a job of a
//! million deliveries never holds a long transaction. Progress lives in the database: any
//! instance can report it, and jobs left running by a stopped instance are resumed at start. A
//! job ends when a step finds nothing left, or stops when its webhook was deleted or disabled.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use webhook_domain::{JobState, RedeliveryJobId};
use webhook_ports::{Clock, OutboxError, RedeliveryJobs};

/// Deliveries requeued per step.
const STEP: u32 = 500;
/// Wait before retrying a step that failed (the database may be briefly away).
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(2);
/// Steps tried before a job is left for the next start.
const MAX_FAILURES: u32 = 30;

/// Runs the job until it completes or stops, in a background task.
pub(crate) fn spawn(
    jobs: Arc<dyn RedeliveryJobs>,
    clock: Arc<dyn Clock>,
    wake: Arc<Notify>,
    id: RedeliveryJobId,
) {
    tokio::spawn(run(jobs, clock, wake, id));
}

async fn run(
    jobs: Arc<dyn RedeliveryJobs>,
    clock: Arc<dyn Clock>,
    wake: Arc<Notify>,
    id: RedeliveryJobId,
) {
    let mut failures = 0;
    let mut last_requeued = None;
    loop {
        match jobs.step_redelivery_job(id, STEP, clock.now()).await {
            Ok(job) => {
                failures = 0;
                if last_requeued != Some(job.requeued) {
                    wake.notify_one();
                    tracing::info!(job = %id, requeued = job.requeued, total = job.total, "bulk redelivery progress");
                    last_requeued = Some(job.requeued);
                }
                match job.state {
                    JobState::Running => {}
                    JobState::Completed => {
                        tracing::info!(job = %id, requeued = job.requeued, "bulk redelivery completed");
                        return;
                    }
                    JobState::Stopped(reason) => {
                        tracing::info!(job = %id, requeued = job.requeued, reason = reason.as_str(), "bulk redelivery stopped: its webhook was deleted or disabled");
                        return;
                    }
                }
                tokio::task::yield_now().await;
            }
            Err(OutboxError::NotFound) => return,
            Err(e) => {
                failures += 1;
                if failures >= MAX_FAILURES {
                    tracing::error!(job = %id, error = %e, "bulk redelivery paused until the next start");
                    return;
                }
                tracing::warn!(job = %id, error = %e, "bulk redelivery step failed; retrying");
                tokio::time::sleep(RETRY_AFTER_FAILURE).await;
            }
        }
    }
}

/// Resumes every job still running (left by an instance that stopped). Steps are safe to run
/// from several instances at once: a delivery is never requeued twice by one job.
pub(crate) async fn resume(
    jobs: Arc<dyn RedeliveryJobs>,
    clock: Arc<dyn Clock>,
    wake: Arc<Notify>,
) -> Result<usize, OutboxError> {
    let running = jobs.running_redelivery_jobs().await?;
    for job in &running {
        tracing::info!(job = %job.id, requeued = job.requeued, total = job.total, "resuming bulk redelivery");
        spawn(jobs.clone(), clock.clone(), wake.clone(), job.id);
    }
    Ok(running.len())
}
