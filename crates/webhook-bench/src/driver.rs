//! The producer side: publishes events to webhookd and notes when each publish started.
//!
//! Event ids are made here and sent as `id`, so a receipt can be matched to its publish even
//! when it arrives before the `202`. Two paces: closed loop (a fixed number of requests in
//! flight, back to back) and open loop (request `i` is due at `t0 + i / rate`, whatever the
//! answers; its latency counts from that due time, so a stalled service cannot hide its stall
//! by slowing the producer down).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use hyper::StatusCode;
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::api::{self, Api};
use crate::clock;

#[derive(Debug, Clone, Copy)]
pub(crate) enum Pace {
    /// Back to back, with this many requests in flight.
    Closed { in_flight: usize },
    /// Requests due at fixed intervals; at most `max_in_flight` at once (a request due while
    /// all are busy starts late, and its latency still counts from its due time).
    Open {
        events_per_second: f64,
        max_in_flight: usize,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) events: u64,
    /// Events per request: 1 uses `POST /events`, more `POST /events/batch`.
    pub(crate) batch: usize,
    pub(crate) pace: Pace,
    /// The wallets' API keys: request `j` publishes into wallet `j % keys.len()`.
    pub(crate) keys: Vec<String>,
}

impl Plan {
    fn requests(&self) -> u64 {
        self.events.div_ceil(self.batch as u64)
    }

    fn events_of(&self, request: u64) -> usize {
        let first = request * self.batch as u64;
        (self.events - first).min(self.batch as u64) as usize
    }
}

/// What a publishing run did.
#[derive(Debug, Default)]
pub(crate) struct Published {
    /// Each event's publish start ([`clock::now_ns`], or its due time in open loop).
    pub(crate) starts: HashMap<u128, u64>,
    pub(crate) accepted: u64,
    pub(crate) accepted_per_wallet: Vec<u64>,
    /// Requests that did not end in `202`.
    pub(crate) failed_requests: u64,
    pub(crate) first_error: Option<String>,
    pub(crate) first_start_ns: u64,
    pub(crate) last_ack_ns: u64,
    /// Open loop: the longest a request started after its due time.
    pub(crate) max_lateness_ns: u64,
}

#[derive(Debug)]
struct Shared {
    api: Api,
    plan: Plan,
    starts: Mutex<Vec<(u128, u64)>>,
    accepted_per_wallet: Vec<AtomicU64>,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
    last_ack_ns: AtomicU64,
    max_lateness_ns: AtomicU64,
}

impl Shared {
    /// Sends request `j`, whose events count from `start_ns`.
    async fn send(&self, request: u64, start_ns: u64) {
        let ids: Vec<Uuid> = (0..self.plan.events_of(request))
            .map(|_| Uuid::new_v4())
            .collect();
        let wallet = (request % self.plan.keys.len() as u64) as usize;
        let (path, body) = if self.plan.batch == 1 {
            ("/events", api::event_body(ids[0]))
        } else {
            ("/events/batch", api::batch_body(&ids))
        };
        self.starts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend(ids.iter().map(|id| (id.as_u128(), start_ns)));
        let headers = [("apikey", self.plan.keys[wallet].as_str())];
        let answer = self
            .api
            .http
            .post(&self.api.url(path), &headers, Bytes::from(body))
            .await;
        match answer {
            Ok((StatusCode::ACCEPTED, _)) => {
                self.accepted_per_wallet[wallet].fetch_add(ids.len() as u64, Ordering::Relaxed);
                self.last_ack_ns
                    .fetch_max(clock::now_ns(), Ordering::Relaxed);
            }
            Ok((status, body)) => self.fail(format!(
                "POST {path} answered {status}: {}",
                String::from_utf8_lossy(&body)
            )),
            Err(e) => self.fail(format!("POST {path}: {e:#}")),
        }
    }

    fn fail(&self, error: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        self.first_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_or_insert(error);
    }
}

/// Publishes as `plan` says and waits for every answer.
pub(crate) async fn publish(api: &Api, plan: &Plan) -> Published {
    let shared = Arc::new(Shared {
        api: api.clone(),
        plan: plan.clone(),
        starts: Mutex::new(Vec::with_capacity(plan.events as usize)),
        accepted_per_wallet: plan.keys.iter().map(|_| AtomicU64::new(0)).collect(),
        failed: AtomicU64::new(0),
        first_error: Mutex::new(None),
        last_ack_ns: AtomicU64::new(0),
        max_lateness_ns: AtomicU64::new(0),
    });
    let first_start_ns = clock::now_ns();
    match plan.pace {
        Pace::Closed { in_flight } => closed_loop(&shared, in_flight).await,
        Pace::Open {
            events_per_second,
            max_in_flight,
        } => open_loop(&shared, events_per_second, max_in_flight).await,
    }
    let shared = Arc::into_inner(shared).expect("every request task has ended");
    let accepted_per_wallet: Vec<u64> = shared
        .accepted_per_wallet
        .iter()
        .map(|a| a.load(Ordering::Relaxed))
        .collect();
    let starts = shared
        .starts
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    Published {
        first_start_ns: starts
            .iter()
            .map(|&(_, s)| s)
            .min()
            .unwrap_or(first_start_ns),
        starts: starts.into_iter().collect(),
        accepted: accepted_per_wallet.iter().sum(),
        accepted_per_wallet,
        failed_requests: shared.failed.into_inner(),
        first_error: shared
            .first_error
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
        last_ack_ns: shared.last_ack_ns.into_inner(),
        max_lateness_ns: shared.max_lateness_ns.into_inner(),
    }
}

async fn closed_loop(shared: &Arc<Shared>, in_flight: usize) {
    let next = Arc::new(AtomicU64::new(0));
    let requests = shared.plan.requests();
    let workers: Vec<_> = (0..in_flight)
        .map(|_| {
            let shared = Arc::clone(shared);
            let next = Arc::clone(&next);
            tokio::spawn(async move {
                loop {
                    let request = next.fetch_add(1, Ordering::Relaxed);
                    if request >= requests {
                        break;
                    }
                    shared.send(request, clock::now_ns()).await;
                }
            })
        })
        .collect();
    for worker in workers {
        // A worker only ends by running out of requests; a panic is a bug to surface.
        worker.await.expect("a publishing worker panicked");
    }
}

async fn open_loop(shared: &Arc<Shared>, events_per_second: f64, max_in_flight: usize) {
    let requests = shared.plan.requests();
    let interval_ns = 1e9 * shared.plan.batch as f64 / events_per_second;
    let slots = Arc::new(Semaphore::new(max_in_flight));
    // A little ahead, so that the first due time is not already past.
    let t0 = clock::now_ns() + 5_000_000;
    let mut tasks = tokio::task::JoinSet::new();
    for request in 0..requests {
        let due = t0 + (request as f64 * interval_ns) as u64;
        tokio::time::sleep_until(clock::at(due).into()).await;
        let slot = Arc::clone(&slots)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let lateness = clock::now_ns().saturating_sub(due);
        shared
            .max_lateness_ns
            .fetch_max(lateness, Ordering::Relaxed);
        let shared = Arc::clone(shared);
        tasks.spawn(async move {
            shared.send(request, due).await;
            drop(slot);
        });
        // Reap finished requests as we go, so that the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_split_events_into_batches() {
        let plan = Plan {
            events: 250,
            batch: 100,
            pace: Pace::Closed { in_flight: 1 },
            keys: vec!["k".to_owned()],
        };
        assert_eq!(plan.requests(), 3);
        assert_eq!(plan.events_of(0), 100);
        assert_eq!(plan.events_of(2), 50);
    }
}
