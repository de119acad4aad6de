//! The producer of the fault scenarios: publishes a fixed set of events through
//! `POST /events/batch` at a steady pace and retries each batch, with the same body, until
//! webhookd acknowledges it, whichever incarnation answers and whatever happens meanwhile
//! (kills, restarts, a database outage).
//!
//! An event counts as published only once its batch got a `202`. Retrying is safe because the
//! event ids are chosen here: a batch that was stored but whose answer was lost (the process
//! died before it wrote it) is answered `202` with `replayed: true` the next time, and nothing
//! is stored twice. It also keeps what webhookd answered while it could not store: every `503`
//! (its latency, whether it was a problem body), any other server error, and any request that
//! got no answer within [`REQUEST_LIMIT`] (a hang).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hyper::StatusCode;
use uuid::Uuid;

use crate::api::{self, Answer, Api};
use crate::clock;

/// The longest a publish may take before it counts as a hang.
pub(crate) const REQUEST_LIMIT: Duration = Duration::from_secs(30);
/// The pause before retrying a batch that was not acknowledged.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// The API of the webhookd that runs now; `None` while none does (between a kill and the
/// restart's readiness).
#[derive(Debug, Default)]
pub(crate) struct Endpoint {
    current: Mutex<Option<Api>>,
}

impl Endpoint {
    pub(crate) fn set(&self, api: Option<Api>) {
        *self.lock() = api;
    }

    fn get(&self) -> Option<Api> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Api>> {
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// What to publish and how fast.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) events: usize,
    pub(crate) batch: usize,
    /// Events per second: batch `i` is not sent before `i × batch / rate` seconds.
    pub(crate) rate: f64,
    /// Batches in flight at once (each retried until acknowledged).
    pub(crate) in_flight: usize,
    /// The wallet's API key.
    pub(crate) key: String,
    /// Deliveries each event gets (the wallet's webhooks), checked in every `202`.
    pub(crate) targets: u32,
    /// After this, a batch not yet acknowledged is given up (and not counted as published).
    pub(crate) give_up_after: Duration,
}

/// A `503` answer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Refusal {
    /// When the request was sent ([`clock::now_ns`]).
    pub(crate) sent_ns: u64,
    pub(crate) latency: Duration,
}

/// Everything the producer saw.
#[derive(Debug, Default)]
pub(crate) struct Answers {
    /// Acknowledged events and when their `202` came ([`clock::now_ns`]).
    pub(crate) acked: Vec<(Uuid, u64)>,
    /// Events whose batch was given up.
    pub(crate) unacked: Vec<Uuid>,
    /// Acknowledged events that an earlier, unanswered try had already stored.
    pub(crate) replayed: u64,
    /// Requests sent, first tries and retries.
    pub(crate) requests: u64,
    /// Requests that found no webhookd listening, or lost their connection.
    pub(crate) no_answer: u64,
    pub(crate) unavailable: Vec<Refusal>,
    /// `503` answers without an `application/problem+json` body whose `status` is 503.
    pub(crate) unavailable_without_problem: u64,
    /// Other server errors (a `500` is a bug): the status and the start of the body.
    pub(crate) server_errors: Vec<(StatusCode, String)>,
    /// Answers that made a batch fail for good (a 4xx, or a 202 that does not match it).
    pub(crate) rejected: Vec<String>,
    /// Requests without an answer within [`REQUEST_LIMIT`].
    pub(crate) hung: u64,
    /// The slowest answer of any kind.
    pub(crate) slowest: Duration,
}

impl Answers {
    pub(crate) fn acked_ids(&self) -> Vec<Uuid> {
        self.acked.iter().map(|&(id, _)| id).collect()
    }

    pub(crate) fn max_unavailable_latency(&self) -> Option<Duration> {
        self.unavailable.iter().map(|r| r.latency).max()
    }
}

struct Shared {
    endpoint: Arc<Endpoint>,
    plan: Plan,
    batches: Vec<Vec<Uuid>>,
    next: AtomicUsize,
    t0_ns: u64,
    answers: Mutex<Answers>,
}

impl Shared {
    fn note(&self, f: impl FnOnce(&mut Answers)) {
        f(&mut self
            .answers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner));
    }

    async fn work(&self) {
        loop {
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(ids) = self.batches.get(n) else {
                return;
            };
            let due =
                self.t0_ns + (n as f64 * self.plan.batch as f64 / self.plan.rate * 1e9) as u64;
            tokio::time::sleep_until(clock::at(due).into()).await;
            self.publish(ids).await;
        }
    }

    /// Sends one batch until it is acknowledged, refused for good, or given up.
    async fn publish(&self, ids: &[Uuid]) {
        let body = Bytes::from(api::batch_body(ids));
        let give_up = tokio::time::Instant::now() + self.plan.give_up_after;
        loop {
            if tokio::time::Instant::now() >= give_up {
                self.note(|a| a.unacked.extend_from_slice(ids));
                return;
            }
            let Some(api) = self.endpoint.get() else {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            let sent_ns = clock::now_ns();
            let answer = tokio::time::timeout(
                REQUEST_LIMIT,
                api.http.post_answer(
                    &api.url("/events/batch"),
                    // Errors come as application/json unless asked for as problems.
                    &[
                        ("apikey", self.plan.key.as_str()),
                        ("accept", "application/problem+json"),
                    ],
                    body.clone(),
                ),
            )
            .await;
            let latency = Duration::from_nanos(clock::now_ns().saturating_sub(sent_ns));
            self.note(|a| {
                a.requests += 1;
                a.slowest = a.slowest.max(latency);
            });
            match answer {
                Err(_) => self.note(|a| a.hung += 1),
                Ok(Err(_)) => self.note(|a| a.no_answer += 1),
                Ok(Ok(answer)) if answer.status == StatusCode::ACCEPTED => {
                    let acked_ns = clock::now_ns();
                    match self.check_accepted(ids, &answer) {
                        Ok(replayed) => self.note(|a| {
                            a.acked.extend(ids.iter().map(|&id| (id, acked_ns)));
                            a.replayed += replayed;
                        }),
                        Err(why) => self.note(|a| {
                            a.rejected.push(why);
                            a.unacked.extend_from_slice(ids);
                        }),
                    }
                    return;
                }
                Ok(Ok(answer)) if answer.status == StatusCode::SERVICE_UNAVAILABLE => {
                    let problem = is_problem(&answer, 503);
                    self.note(|a| {
                        a.unavailable.push(Refusal { sent_ns, latency });
                        if !problem {
                            a.unavailable_without_problem += 1;
                        }
                    });
                }
                Ok(Ok(answer)) if answer.status.is_server_error() => self.note(|a| {
                    a.server_errors.push((answer.status, excerpt(&answer.body)));
                }),
                Ok(Ok(answer)) => {
                    // A client error does not go away by retrying: the harness or webhookd is
                    // wrong, and the scenario fails on it.
                    self.note(|a| {
                        a.rejected.push(format!(
                            "POST /events/batch answered {}: {}",
                            answer.status,
                            excerpt(&answer.body)
                        ));
                        a.unacked.extend_from_slice(ids);
                    });
                    return;
                }
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    /// Checks that a `202` names the batch's events, in order, each with one delivery per
    /// webhook; answers how many were replays.
    fn check_accepted(&self, ids: &[Uuid], answer: &Answer) -> Result<u64, String> {
        let json: serde_json::Value = serde_json::from_slice(&answer.body)
            .map_err(|e| format!("a 202 whose body is not JSON: {e}"))?;
        let events = json["events"]
            .as_array()
            .ok_or("a 202 without an events list")?;
        if events.len() != ids.len() {
            return Err(format!(
                "a 202 for {} events answered {} results",
                ids.len(),
                events.len()
            ));
        }
        let mut replayed = 0;
        for (id, result) in ids.iter().zip(events) {
            if result["id"].as_str() != Some(id.to_string().as_str()) {
                return Err(format!("a 202 named {} where {id} was sent", result["id"]));
            }
            if result["deliveries"].as_u64() != Some(u64::from(self.plan.targets)) {
                return Err(format!(
                    "event {id} got {} deliveries, expected {}",
                    result["deliveries"], self.plan.targets
                ));
            }
            if result["replayed"].as_bool() == Some(true) {
                replayed += 1;
            }
        }
        Ok(replayed)
    }
}

/// Whether an answer is an RFC 9457 problem with this status.
fn is_problem(answer: &Answer, status: u16) -> bool {
    answer
        .content_type
        .as_deref()
        .is_some_and(|t| t.starts_with("application/problem+json"))
        && serde_json::from_slice::<serde_json::Value>(&answer.body)
            .is_ok_and(|body| body["status"].as_u64() == Some(u64::from(status)))
}

fn excerpt(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()
}

/// Publishes `plan.events` fresh events through whichever webhookd `endpoint` names, and
/// answers once every batch was acknowledged or given up.
pub(crate) async fn publish(endpoint: Arc<Endpoint>, plan: Plan) -> Answers {
    let ids: Vec<Uuid> = (0..plan.events).map(|_| Uuid::new_v4()).collect();
    let batches = ids
        .chunks(plan.batch.max(1))
        .map(<[Uuid]>::to_vec)
        .collect();
    let shared = Arc::new(Shared {
        endpoint,
        plan: plan.clone(),
        batches,
        next: AtomicUsize::new(0),
        t0_ns: clock::now_ns(),
        answers: Mutex::new(Answers::default()),
    });
    let workers: Vec<_> = (0..plan.in_flight.max(1))
        .map(|_| {
            let shared = Arc::clone(&shared);
            tokio::spawn(async move { shared.work().await })
        })
        .collect();
    for worker in workers {
        // A worker only ends by running out of batches; a panic is a bug to surface.
        worker.await.expect("a publishing worker panicked");
    }
    let shared = Arc::into_inner(shared).expect("every worker has ended");
    shared
        .answers
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
