//! Handing one message to a target: an HTTP endpoint, a broker's subject, anything a URL names.
//! A destination never fails as such: whatever happens is an [`AttemptOutcome`] the delivery's
//! rules understand, with the protocol's [`AttemptDetail`] for the attempt log.

use std::time::Duration;

use async_trait::async_trait;
use webhook_domain::{AttemptDetail, AttemptOutcome, OutboundMessage, WebhookUrl};

/// What happened in one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptReport {
    /// What the attempt means for the delivery: what the retry policy and the circuit breaker
    /// act on.
    pub outcome: AttemptOutcome,
    /// What the destination saw (an HTTP status, a timeout, a refused address), for the log.
    pub detail: AttemptDetail,
    /// From the start of the attempt to its outcome.
    pub duration: Duration,
    /// The start of the answer's body, truncated, for the attempt log.
    pub response_excerpt: Option<String>,
    /// A short, secret-free description of a failure without an answer.
    pub error: Option<String>,
}

impl AttemptReport {
    /// A report whose outcome is the one [`AttemptDetail::outcome`] reads from `detail`.
    pub fn of(detail: AttemptDetail, duration: Duration) -> Self {
        Self {
            outcome: detail.outcome(),
            detail,
            duration,
            response_excerpt: None,
            error: None,
        }
    }
}

/// Where deliveries go: one adapter for each kind of target, chosen by the target URL's scheme.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait Destination: Send + Sync {
    /// Hands `message` to the target `url` names.
    ///
    /// MUST deliver exactly the message's body and headers (a protocol may add its own framing
    /// headers, such as HTTP's `Host`, `Content-Length` and `User-Agent`); MUST report
    /// `Delivered` only when the target took the message, `Rejected` when it answered that it
    /// will not, `RetryLater` when it could not take it now (no answer, a failure on the way,
    /// an answer asking to come back), and `Gone` only when it said the target is gone for
    /// good; MUST end within `timeout` (reporting `RetryLater` with a timeout detail); and, for
    /// a destination that connects over the network, MUST NOT connect to an address the SSRF
    /// guard refuses, reporting `RefusedByPolicy` instead.
    async fn send(
        &self,
        url: &WebhookUrl,
        message: &OutboundMessage,
        timeout: Duration,
    ) -> AttemptReport;

    /// Whether `url` (of a scheme this destination serves) names a target it could send to,
    /// asked when a webhook is registered or changed, before anything is stored: a message
    /// saying what is wrong and what would be right otherwise (a broker the operator did not
    /// list, a subject with wildcards). Connects to nothing. By default every URL is accepted.
    ///
    /// # Errors
    /// The message, shown to the tenant as the reason for a 422.
    fn check_target(&self, url: &WebhookUrl) -> Result<(), String> {
        let _ = url;
        Ok(())
    }
}
