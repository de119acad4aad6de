//! The contract suite of the [`Destination`] port: one function per `MUST` of
//! [`Destination::send`], run against every destination through a [`DestinationRig`], and
//! [`destination_contract_suite!`](crate::destination_contract_suite), which makes one test of
//! each. A destination's tests implement the rig (a receiving end on 127.0.0.1, or whatever the
//! destination delivers into) and write one line.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use webhook_domain::{AttemptOutcome, OutboundMessage, WebhookUrl};

use crate::Destination;

/// How the receiving end of a test target answers every message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// It takes the message (HTTP 200, a broker's acknowledgement).
    Take,
    /// It answers that it will not take it (HTTP 400, a negative acknowledgement).
    Refuse,
    /// It answers that it cannot take it now (HTTP 503).
    Unavailable,
    /// It answers that the target is gone for good (HTTP 410).
    Gone,
    /// It never answers.
    Stall,
}

/// What a destination's tests hand the suite.
#[async_trait]
pub trait DestinationRig: Send + Sync {
    /// The destination under test; with `guarded`, built with the SSRF guard on and its
    /// default policy (which refuses loopback addresses).
    fn destination(&self, guarded: bool) -> Arc<dyn Destination>;
    /// A new target whose receiving end answers every message as `answer` says. A network
    /// destination's targets are on a loopback address.
    async fn target(&self, answer: Answer) -> WebhookUrl;
    /// What the receiving end of `target` took so far, in order.
    async fn received(&self, target: &WebhookUrl) -> Vec<OutboundMessage>;
    /// Whether the destination connects over the network, where the SSRF guard applies.
    fn is_network(&self) -> bool;
    /// Whether a target's receiving end can answer as `answer` says. A rule about an answer
    /// the receiving end has no way to give is not a rule for that destination: a message
    /// broker never says "gone", and refuses only what it never took. Every answer unless
    /// the rig says otherwise.
    fn can_answer(&self, answer: Answer) -> bool {
        let _ = answer;
        true
    }
}

/// A signed-looking message with a body and a few headers.
pub fn sample_message() -> OutboundMessage {
    OutboundMessage {
        body: br#"{"id":"e1","type":"contract.test","data":{"n":1}}"#.to_vec(),
        headers: vec![
            ("content-type".to_owned(), "application/json".to_owned()),
            ("webhook-id".to_owned(), "e1".to_owned()),
            ("x-custom".to_owned(), "caf\u{e9}".to_owned()),
        ],
    }
}

const TIMEOUT: Duration = Duration::from_secs(5);

async fn send_to(rig: &impl DestinationRig, answer: Answer) -> (WebhookUrl, AttemptOutcome) {
    let target = rig.target(answer).await;
    let report = rig
        .destination(false)
        .send(&target, &sample_message(), TIMEOUT)
        .await;
    (target, report.outcome)
}

/// MUST deliver exactly the message's body and headers, and report `Delivered` when the
/// target took it.
pub async fn delivers_exactly_the_message(rig: &impl DestinationRig) {
    let (target, outcome) = send_to(rig, Answer::Take).await;
    assert_eq!(outcome, AttemptOutcome::Delivered);
    let received = rig.received(&target).await;
    assert_eq!(received.len(), 1, "{received:?}");
    let sent = sample_message();
    assert_eq!(received[0].body, sent.body);
    for (name, value) in &sent.headers {
        let got: Vec<&str> = received[0]
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(got, [value.as_str()], "header {name}");
    }
}

/// MUST report `Rejected` when the target answered that it will not take the message.
pub async fn a_refusal_is_rejected(rig: &impl DestinationRig) {
    if !rig.can_answer(Answer::Refuse) {
        return;
    }
    let (target, outcome) = send_to(rig, Answer::Refuse).await;
    assert_eq!(outcome, AttemptOutcome::Rejected);
    assert_eq!(rig.received(&target).await.len(), 1);
}

/// MUST report `RetryLater` when the target cannot take the message now.
pub async fn unavailable_is_retry_later(rig: &impl DestinationRig) {
    if !rig.can_answer(Answer::Unavailable) {
        return;
    }
    let (_, outcome) = send_to(rig, Answer::Unavailable).await;
    assert!(
        matches!(outcome, AttemptOutcome::RetryLater { .. }),
        "{outcome:?}"
    );
}

/// MUST report `Gone` (only) when the target said it is gone for good.
pub async fn gone_is_gone(rig: &impl DestinationRig) {
    if !rig.can_answer(Answer::Gone) {
        return;
    }
    let (_, outcome) = send_to(rig, Answer::Gone).await;
    assert_eq!(outcome, AttemptOutcome::Gone);
}

/// MUST end within the timeout, reporting `RetryLater`, when the target never answers.
pub async fn a_silent_target_ends_within_the_timeout(rig: &impl DestinationRig) {
    if !rig.can_answer(Answer::Stall) {
        return;
    }
    let target = rig.target(Answer::Stall).await;
    let timeout = Duration::from_millis(300);
    let started = Instant::now();
    let report = rig
        .destination(false)
        .send(&target, &sample_message(), timeout)
        .await;
    // Generous slack for a loaded machine: the rule is that the wait is bounded by the
    // timeout, not by the target.
    assert!(started.elapsed() < timeout + Duration::from_secs(10));
    assert_eq!(
        report.outcome,
        AttemptOutcome::RetryLater { not_before: None }
    );
}

/// A network destination MUST NOT connect to an address the SSRF guard refuses, and reports
/// `RefusedByPolicy`. (Not a rule for a destination that does not use the network.)
pub async fn the_guard_refuses_a_loopback_target(rig: &impl DestinationRig) {
    if !rig.is_network() {
        return;
    }
    let target = rig.target(Answer::Take).await;
    let report = rig
        .destination(true)
        .send(&target, &sample_message(), TIMEOUT)
        .await;
    assert_eq!(report.outcome, AttemptOutcome::RefusedByPolicy);
    assert!(rig.received(&target).await.is_empty(), "it was delivered");
}

/// One test per rule of the [`Destination`] contract against the rig that `$rig()` (an async
/// function) builds. The tests need `tokio` with the `macros` and `rt-multi-thread` features.
#[macro_export]
macro_rules! destination_contract_suite {
    ($rig:path) => {
        $crate::destination_contract_suite!(@tests $rig;
            delivers_exactly_the_message a_refusal_is_rejected unavailable_is_retry_later
            gone_is_gone a_silent_target_ends_within_the_timeout
            the_guard_refuses_a_loopback_target
        );
    };
    (@tests $rig:path; $($rule:ident)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $rule() {
                let rig = $rig().await;
                $crate::contract::destination::$rule(&rig).await;
            }
        )*
    };
}
