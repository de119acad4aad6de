//! The receivers the deliveries go to: plain hyper HTTP/1.1 servers on 127.0.0.1 (keep-alive,
//! no Nagle delay) that answer 200 at once, or after their route's delay, and note for each
//! request the instant it arrived, the event id (the `webhook-id` header, else the body's
//! `"id"`) and its route. They do as little as they can, so that they are never the
//! bottleneck; their rate is measured as a ceiling (`ceiling::sink_rate`).
//!
//! Each route listens on a port of its own: webhookd pools connections per host and port, so
//! webhooks that shared one would share (and overflow) one connection pool, which distinct
//! receivers in production do not.

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::clock;

/// One path of the sink and how long it waits before answering.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    pub(crate) path: String,
    pub(crate) delay: Duration,
}

impl Route {
    pub(crate) fn fast(path: &str) -> Self {
        Self {
            path: path.to_owned(),
            delay: Duration::ZERO,
        }
    }

    pub(crate) fn slow(path: &str, delay: Duration) -> Self {
        Self {
            path: path.to_owned(),
            delay,
        }
    }
}

/// The first arrival of one event on one route.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Receipt {
    pub(crate) event: u128,
    pub(crate) route: usize,
    /// [`clock::now_ns`] when the request's head had arrived.
    pub(crate) at_ns: u64,
}

#[derive(Debug, Default)]
struct Log {
    seen: HashSet<(u128, usize)>,
    receipts: Vec<Receipt>,
    /// Every arrival after the first of its event on its route (rare outside fault runs, so
    /// free for the benchmark); the reliability harness times takeovers with them.
    repeats: Vec<Receipt>,
}

#[derive(Debug)]
struct State {
    routes: Vec<Route>,
    log: Mutex<Log>,
    /// First arrivals per route, readable without the lock.
    unique: Vec<AtomicU64>,
    /// Repeated arrivals of an event on a route (at-least-once delivery allows them).
    duplicates: AtomicU64,
    /// Requests whose event id could not be read.
    unmatched: AtomicU64,
    /// Requests being answered now, and the most there ever were at once (over all routes).
    in_flight: AtomicU64,
    most_at_once: AtomicU64,
}

impl State {
    fn record(&self, event: u128, route: usize, at_ns: u64) {
        let mut log = self
            .log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if log.seen.insert((event, route)) {
            log.receipts.push(Receipt {
                event,
                route,
                at_ns,
            });
            drop(log);
            self.unique[route].fetch_add(1, Ordering::Relaxed);
        } else {
            log.repeats.push(Receipt {
                event,
                route,
                at_ns,
            });
            drop(log);
            self.duplicates.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Running receivers; dropping them stops the servers and their connections.
#[derive(Debug)]
pub(crate) struct Sink {
    /// Each route's address, in the order of the routes.
    addrs: Vec<SocketAddr>,
    state: Arc<State>,
    servers: Vec<tokio::task::JoinHandle<()>>,
}

impl Sink {
    /// Starts a receiver per route, the first on `port` (0: any free one) and the others on
    /// free ports, with room for `expected` receipts.
    pub(crate) async fn start_on(
        port: u16,
        routes: Vec<Route>,
        expected: usize,
    ) -> anyhow::Result<Self> {
        let mut listeners = Vec::new();
        for n in 0..routes.len() {
            let port = if n == 0 { port } else { 0 };
            listeners.push(TcpListener::bind(("127.0.0.1", port)).await?);
        }
        let addrs = listeners
            .iter()
            .map(TcpListener::local_addr)
            .collect::<Result<Vec<_>, _>>()?;
        let state = Arc::new(State {
            unique: routes.iter().map(|_| AtomicU64::new(0)).collect(),
            routes,
            log: Mutex::new(Log {
                seen: HashSet::with_capacity(expected),
                receipts: Vec::with_capacity(expected),
                repeats: Vec::new(),
            }),
            duplicates: AtomicU64::new(0),
            unmatched: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            most_at_once: AtomicU64::new(0),
        });
        let servers = listeners
            .into_iter()
            .enumerate()
            .map(|(route, listener)| tokio::spawn(serve(listener, route, Arc::clone(&state))))
            .collect();
        Ok(Self {
            addrs,
            state,
            servers,
        })
    }

    /// The URL of the route with this path (on its own port), or of an unknown path on the
    /// first route's port (which answers it 404).
    pub(crate) fn url(&self, path: &str) -> String {
        let addr = self.route(path).map_or(self.addrs[0], |r| self.addrs[r]);
        format!("http://{addr}{path}")
    }

    /// The index of the route with this path.
    pub(crate) fn route(&self, path: &str) -> Option<usize> {
        self.state.routes.iter().position(|r| r.path == path)
    }

    /// First arrivals so far on these routes.
    pub(crate) fn received(&self, routes: &[usize]) -> u64 {
        routes
            .iter()
            .map(|&r| self.state.unique[r].load(Ordering::Relaxed))
            .sum()
    }

    /// Waits until `expected` first arrivals on `routes` or until `deadline`; true when all
    /// came. It polls every 2 ms: the arrival instants are noted by the sink itself, so the
    /// poll only decides when to stop.
    pub(crate) async fn wait_for(
        &self,
        routes: &[usize],
        expected: u64,
        deadline: tokio::time::Instant,
    ) -> bool {
        loop {
            if self.received(routes) >= expected {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Every first arrival so far, in the order they came.
    pub(crate) fn receipts(&self) -> Vec<Receipt> {
        let log = self
            .state
            .log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        log.receipts.clone()
    }

    /// Every repeated arrival so far (an event again on a route), in the order they came.
    pub(crate) fn repeats(&self) -> Vec<Receipt> {
        let log = self
            .state
            .log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        log.repeats.clone()
    }

    pub(crate) fn duplicates(&self) -> u64 {
        self.state.duplicates.load(Ordering::Relaxed)
    }

    pub(crate) fn unmatched(&self) -> u64 {
        self.state.unmatched.load(Ordering::Relaxed)
    }

    /// The most requests the sink was answering at one time.
    pub(crate) fn most_at_once(&self) -> u64 {
        self.state.most_at_once.load(Ordering::Relaxed)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        for server in &self.servers {
            server.abort();
        }
    }
}

async fn serve(listener: TcpListener, route: usize, state: Arc<State>) {
    // Connections live in this set, so aborting the server ends them too.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                // Small requests and answers: never wait to coalesce them.
                let _ = stream.set_nodelay(true);
                let state = Arc::clone(&state);
                connections.spawn(async move {
                    let service = service_fn(move |req| answer(Arc::clone(&state), route, req));
                    let _ = http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn answer(
    state: Arc<State>,
    route: usize,
    req: Request<Incoming>,
) -> Result<Response<Empty<Bytes>>, Infallible> {
    let at_ns = clock::now_ns();
    let now = state.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
    state.most_at_once.fetch_max(now, Ordering::Relaxed);
    let answer = answer_counted(&state, route, req, at_ns).await;
    state.in_flight.fetch_sub(1, Ordering::Relaxed);
    Ok(answer)
}

async fn answer_counted(
    state: &State,
    route: usize,
    req: Request<Incoming>,
    at_ns: u64,
) -> Response<Empty<Bytes>> {
    let route = (state.routes[route].path == req.uri().path()).then_some(route);
    let from_header = req
        .headers()
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Uuid::parse_str(v).ok());
    // Read the body whole: the connection is reused only once its body is consumed.
    let body = req
        .into_body()
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .unwrap_or_default();
    let Some(route) = route else {
        return status(StatusCode::NOT_FOUND);
    };
    match from_header.or_else(|| event_id_in(&body)) {
        Some(event) => state.record(event.as_u128(), route, at_ns),
        None => {
            state.unmatched.fetch_add(1, Ordering::Relaxed);
        }
    }
    let delay = state.routes[route].delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    status(StatusCode::OK)
}

fn status(code: StatusCode) -> Response<Empty<Bytes>> {
    let mut response = Response::new(Empty::new());
    *response.status_mut() = code;
    response
}

/// The event id of a compact envelope, which starts `{"id":"<uuid>"`, without parsing the JSON:
/// the first `"id":"` followed by a UUID.
pub(crate) fn event_id_in(body: &[u8]) -> Option<Uuid> {
    const KEY: &[u8] = br#""id":""#;
    let start = body.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let text = std::str::from_utf8(body.get(start..start + 36)?).ok()?;
    Uuid::parse_str(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_id_is_read_from_the_envelope() {
        let body = br#"{"id":"6f1c1a52-6f0e-4a51-9d31-4f6fbc7d2c55","ts":"2024-01-01T00:00:00.000000Z","type":"X","data":{"id":"nested"}}"#;
        assert_eq!(
            event_id_in(body),
            Some(Uuid::parse_str("6f1c1a52-6f0e-4a51-9d31-4f6fbc7d2c55").unwrap())
        );
        assert_eq!(event_id_in(br#"{"id":"short"}"#), None);
        assert_eq!(event_id_in(b"{}"), None);
    }
}
