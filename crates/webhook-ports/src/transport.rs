//! Sending one request to a target. The transport never fails as such: whatever happens is an
//! [`AttemptOutcome`] in the report.

use std::time::Duration;

use async_trait::async_trait;
use webhook_domain::{AttemptOutcome, OutboundMessage, WebhookUrl};

/// What happened in one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptReport {
    pub outcome: AttemptOutcome,
    /// From the start of the attempt to its outcome.
    pub duration: Duration,
    /// The start of the response body, truncated, for the attempt log.
    pub response_excerpt: Option<String>,
    /// A short, secret-free description of a failure without a response.
    pub error: Option<String>,
}

/// An HTTP client for deliveries.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait Transport: Send + Sync {
    /// POSTs `message` to `url`.
    ///
    /// MUST send exactly the message's body and headers (plus `Host`, `Content-Length` and a
    /// `User-Agent`), MUST NOT follow redirects (a 3xx is reported as a response), MUST end
    /// within `timeout` (reporting `Timeout`), and MUST read at most a bounded prefix of the
    /// response body.
    async fn send(
        &self,
        url: &WebhookUrl,
        message: &OutboundMessage,
        timeout: Duration,
    ) -> AttemptReport;
}
