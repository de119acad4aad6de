//! Receivers that misbehave, against the real `webhookd` binary: one that never answers, one
//! that hangs up in the middle of its status line, one that answers 200 with a 1 GiB body, one
//! that answers bytes that are not HTTP, one that sends a valid answer one byte per second, and
//! two that redirect (302, 307) to a receiver that must never be contacted. Each is a raw TCP
//! server with hand-written bytes, so that it can misbehave as no HTTP library would.
//!
//! What must hold: every attempt ends within the attempt timeout (plus slack) with the outcome
//! the misbehaviour calls for; a healthy target registered beside them gets every event
//! promptly; the redirect target is never contacted; and the child's peak RSS stays bounded.
//! Figures go to stderr, one line per receiver, for docs/reliability.md.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::child::Webhookd;
use crate::utils::Receiver;

/// The attempt timeout the child runs with (`dispatcher.attempt_timeout_ms`).
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1000);
/// What an attempt may take beyond its timeout: the timer firing and the outcome being built,
/// on a machine shared with other builds.
const SLACK: Duration = Duration::from_millis(1000);
const EVENTS: usize = 200;
/// Peak RSS the child must stay under while a receiver streams 1 GiB at it.
const RSS_BOUND_KIB: u64 = 128 * 1024;
/// The huge body's announced length: 1 GiB, generated as it is written, never allocated.
const HUGE_BODY: u64 = 1 << 30;
/// The transport's default cap on the stored excerpt of a response body.
const EXCERPT_CAP: usize = 4096;

/// How a raw receiver misbehaves once it has read a request.
#[derive(Debug, Clone, Copy)]
enum Misbehaviour {
    /// Reads the request and never answers; holds the connection until the client drops it.
    Hang,
    /// Sends the start of a status line and headers, then closes.
    CutOff,
    /// Answers 200 with `Content-Length: 1073741824` and streams that many bytes.
    HugeBody,
    /// Answers bytes that are not HTTP at all, then closes.
    Garbage,
    /// Sends a valid 200 answer one byte per second.
    SlowLoris,
    /// Answers this redirect status with a `Location` on the redirect target.
    Redirect(u16, SocketAddr),
}

impl Misbehaviour {
    fn name(self) -> String {
        match self {
            Misbehaviour::Hang => "hang".to_owned(),
            Misbehaviour::CutOff => "cut-off".to_owned(),
            Misbehaviour::HugeBody => "1 GiB body".to_owned(),
            Misbehaviour::Garbage => "not HTTP".to_owned(),
            Misbehaviour::SlowLoris => "slow loris".to_owned(),
            Misbehaviour::Redirect(status, _) => format!("redirect {status}"),
        }
    }

    /// The outcome, status and error every attempt must record.
    fn expected(self) -> (&'static str, Option<u16>, Option<&'static str>) {
        match self {
            Misbehaviour::Hang | Misbehaviour::SlowLoris => ("timeout", None, None),
            Misbehaviour::CutOff => (
                "connection_failed",
                None,
                Some("connection closed before a complete response"),
            ),
            Misbehaviour::Garbage => (
                "connection_failed",
                None,
                Some("the response is not valid HTTP/1.1"),
            ),
            Misbehaviour::HugeBody => ("response", Some(200), None),
            Misbehaviour::Redirect(status, _) => ("response", Some(status), None),
        }
    }
}

/// A raw TCP receiver on 127.0.0.1 and how long each of its connections lived, from accept
/// until the client went away or the receiver was done with it.
struct RawReceiver {
    addr: SocketAddr,
    lifetimes: Arc<Mutex<Vec<Duration>>>,
    accepted: Arc<Mutex<usize>>,
}

impl RawReceiver {
    async fn start(how: Misbehaviour) -> RawReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let lifetimes = Arc::<Mutex<Vec<Duration>>>::default();
        let accepted = Arc::<Mutex<usize>>::default();
        let (log, count) = (Arc::clone(&lifetimes), Arc::clone(&accepted));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                *count.lock().unwrap() += 1;
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    let opened = Instant::now();
                    misbehave(stream, how).await;
                    log.lock().unwrap().push(opened.elapsed());
                });
            }
        });
        RawReceiver {
            addr,
            lifetimes,
            accepted,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }
}

/// Reads one request (head and `Content-Length` body); false when the client went away first.
async fn read_request(stream: &mut TcpStream) -> bool {
    let mut seen = Vec::new();
    let mut buf = [0_u8; 4096];
    let head_end = loop {
        if let Some(at) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&seen[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0);
    let mut body = seen.len() - head_end;
    while body < length {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => body += n,
        }
    }
    true
}

/// Serves one connection the way `how` misbehaves.
async fn misbehave(mut stream: TcpStream, how: Misbehaviour) {
    if !read_request(&mut stream).await {
        return;
    }
    match how {
        Misbehaviour::Hang => {
            // Never answer; notice when the client gives up, which ends the connection's life.
            let mut buf = [0_u8; 1024];
            while stream.read(&mut buf).await.is_ok_and(|n| n > 0) {}
        }
        Misbehaviour::CutOff => {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/pl")
                .await;
        }
        Misbehaviour::HugeBody => {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {HUGE_BODY}\r\n\r\n");
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            // One 64 KiB chunk written again and again: the body exists only as it is sent.
            let chunk = [b'x'; 64 * 1024];
            let mut left = HUGE_BODY;
            while left > 0 {
                let n = usize::try_from(left.min(chunk.len() as u64)).unwrap();
                if stream.write_all(&chunk[..n]).await.is_err() {
                    return;
                }
                left -= n as u64;
            }
        }
        Misbehaviour::Garbage => {
            let _ = stream
                .write_all(b"\x00\x16\x03\x01SSH-2.0-certainly not http\r\n\r\n")
                .await;
        }
        Misbehaviour::SlowLoris => {
            for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" {
                if stream.write_all(&[*byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        Misbehaviour::Redirect(status, to) => {
            let answer = format!(
                "HTTP/1.1 {status} Moved\r\nLocation: http://{to}/hook\r\n\
                 Content-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let _ = stream.write_all(answer.as_bytes()).await;
        }
    }
}

/// One attempt as the delivery log shows it.
#[derive(Debug)]
struct Attempt {
    outcome: String,
    status: Option<u16>,
    error: Option<String>,
    duration: Duration,
    excerpt_len: usize,
}

/// Every recorded attempt to `webhook`, and how many of its deliveries are delivered, through
/// `GET /events/webhooks/{id}/deliveries`.
async fn attempts_of(webhookd: &Webhookd, webhook: &str) -> (Vec<Attempt>, usize) {
    let (deliveries, delivered) = webhookd.deliveries(webhook).await;
    let attempts = deliveries
        .iter()
        .flat_map(|d| d["attempts"].as_array().unwrap())
        .map(|a| Attempt {
            outcome: a["outcome"].as_str().unwrap().to_owned(),
            status: a["statusCode"].as_u64().map(|s| u16::try_from(s).unwrap()),
            error: a["error"].as_str().map(str::to_owned),
            duration: Duration::from_millis(a["durationMs"].as_u64().unwrap()),
            excerpt_len: a["responseBody"].as_str().map_or(0, str::len),
        })
        .collect();
    (attempts, delivered)
}

async fn register(webhookd: &Webhookd, url: &str) -> String {
    let created = webhookd
        .post(
            "/events/webhooks",
            &json!({
                "url": url,
                // Quick retries, so that the bad targets keep being tried while the test runs.
                "retryPolicy": { "kind": "fixed", "intervalMs": 200, "maxAttempts": 3 },
            }),
        )
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.json);
    created.json["id"].as_str().unwrap().to_owned()
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() - 1) * p / 100]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_receivers_stay_within_bounds_and_others_keep_flowing() {
    let redirect_target = Receiver::start(&[]).await;
    let behaviours = [
        Misbehaviour::Hang,
        Misbehaviour::CutOff,
        Misbehaviour::HugeBody,
        Misbehaviour::Garbage,
        Misbehaviour::SlowLoris,
        Misbehaviour::Redirect(302, redirect_target.addr),
        Misbehaviour::Redirect(307, redirect_target.addr),
    ];
    let mut bad = Vec::new();
    for how in behaviours {
        bad.push((how, RawReceiver::start(how).await));
    }
    let healthy = Receiver::start(&[]).await;

    let dir = tempfile::tempdir().unwrap();
    let timeout_ms = ATTEMPT_TIMEOUT.as_millis().to_string();
    let webhookd = tokio::task::block_in_place(|| {
        Webhookd::serve(
            dir.path(),
            &[
                ("WEBHOOKD_DISPATCHER__ATTEMPT_TIMEOUT_MS", &timeout_ms),
                ("WEBHOOKD_DISPATCHER__POLL_INTERVAL_MS", "100"),
                // A rested target is probed again soon, so the bad ones keep being attempted.
                ("WEBHOOKD_DISPATCHER__BREAKER_OPEN_MS", "1000"),
            ],
        )
    });
    let mut ids = HashMap::new();
    for (how, receiver) in &bad {
        ids.insert(how.name(), register(&webhookd, &receiver.url()).await);
    }
    let healthy_id = register(&webhookd, &healthy.url()).await;

    // Publish one by one while the bad receivers misbehave; note when each was acknowledged.
    let mut acknowledged = HashMap::new();
    for n in 0..EVENTS {
        let answer = webhookd
            .post(
                "/events",
                &json!({ "type": "receiver.test", "data": { "n": n } }),
            )
            .await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.json);
        assert_eq!(answer.json["deliveries"], bad.len() + 1);
        acknowledged.insert(
            answer.json["id"].as_str().unwrap().to_owned(),
            Instant::now(),
        );
    }
    let published_at = Instant::now();

    // The healthy target gets everything promptly, though seven targets misbehave beside it.
    let deadline = published_at + Duration::from_secs(15);
    while healthy.count() < EVENTS {
        assert!(
            Instant::now() < deadline,
            "the healthy receiver got {} of {EVENTS} events within 15 s of the last publish",
            healthy.count()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let healthy_done = published_at.elapsed();
    // Let every bad target collect a fair number of attempts (the slow ones need a few
    // seconds: 16 in flight at once, 1 s each, and the breaker resting them in between).
    tokio::time::sleep(Duration::from_secs(4)).await;

    let peak_kib = webhookd.peak_rss_kib();
    let received = healthy.received();
    let mut latencies: Vec<Duration> = received
        .iter()
        .map(|r| r.at - acknowledged[r.headers["webhook-id"].to_str().unwrap()])
        .collect();
    latencies.sort();
    let distinct: std::collections::HashSet<_> = received
        .iter()
        .map(|r| r.headers["webhook-id"].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        distinct.len(),
        EVENTS,
        "every event reached the healthy target"
    );
    let (healthy_attempts, healthy_delivered) = attempts_of(&webhookd, &healthy_id).await;
    assert_eq!(healthy_delivered, EVENTS);
    eprintln!(
        "receivers: healthy: {} requests, {} distinct of {EVENTS} published, {} duplicates, \
         {} attempts recorded, all within {} ms of the last publish; latency p50 {} ms, \
         p99 {} ms, max {} ms; webhookd peak RSS {} MiB",
        received.len(),
        distinct.len(),
        received.len() - distinct.len(),
        healthy_attempts.len(),
        healthy_done.as_millis(),
        percentile(&latencies, 50).as_millis(),
        percentile(&latencies, 99).as_millis(),
        latencies.last().unwrap().as_millis(),
        peak_kib / 1024,
    );

    let bound = ATTEMPT_TIMEOUT + SLACK;
    for (how, receiver) in &bad {
        let (attempts, delivered) = attempts_of(&webhookd, &ids[&how.name()]).await;
        assert!(
            attempts.len() >= 3,
            "{}: only {} attempts recorded",
            how.name(),
            attempts.len()
        );
        let (outcome, status, error) = how.expected();
        for attempt in &attempts {
            assert_eq!(attempt.outcome, outcome, "{}: {attempt:?}", how.name());
            assert_eq!(attempt.status, status, "{}: {attempt:?}", how.name());
            if let Some(error) = error {
                assert_eq!(attempt.error.as_deref(), Some(error), "{}", how.name());
            }
            assert!(
                attempt.duration <= bound,
                "{}: an attempt took {:?}, more than {bound:?}",
                how.name(),
                attempt.duration
            );
            assert!(attempt.excerpt_len <= EXCERPT_CAP, "{}", how.name());
        }
        // Only a 2xx answer delivers; every other misbehaviour leaves its deliveries undone.
        if matches!(how, Misbehaviour::HugeBody) {
            assert!(delivered > 0, "the 1 GiB answers are 200s: delivered");
            assert!(
                attempts.iter().all(|a| a.excerpt_len == EXCERPT_CAP),
                "the excerpt of a 1 GiB body is the cap"
            );
        } else {
            assert_eq!(delivered, 0, "{}", how.name());
        }
        let mut durations: Vec<Duration> = attempts.iter().map(|a| a.duration).collect();
        durations.sort();
        // The receiver's own view: how long the client kept each connection. Those still open
        // now belong to attempts under way, which the delivery log checks when they end.
        let lifetimes = receiver.lifetimes.lock().unwrap().clone();
        let longest = lifetimes.iter().max().copied().unwrap_or_default();
        // The slow loris notices a closed connection only through its writes, one a second:
        // the first byte after the close still goes out (the peer answers it with a reset),
        // and only the one after fails, up to two seconds after the client let go.
        let connection_bound = match how {
            Misbehaviour::SlowLoris => bound + Duration::from_secs(2),
            _ => bound,
        };
        assert!(
            longest <= connection_bound,
            "{}: a connection stayed open {longest:?}, more than {connection_bound:?}",
            how.name()
        );
        eprintln!(
            "receivers: {}: {} attempts recorded ({} connections accepted), all {outcome}{}; \
             duration p50 {} ms, max {} ms (bound {} ms); longest connection {} ms; \
             {delivered} delivered",
            how.name(),
            attempts.len(),
            *receiver.accepted.lock().unwrap(),
            status.map(|s| format!(" {s}")).unwrap_or_default(),
            percentile(&durations, 50).as_millis(),
            durations.last().unwrap().as_millis(),
            bound.as_millis(),
            longest.as_millis(),
        );
    }
    assert_eq!(
        redirect_target.count(),
        0,
        "the transport followed a redirect"
    );
    eprintln!("receivers: redirect target contacted 0 times");
    assert!(
        peak_kib < RSS_BOUND_KIB,
        "webhookd's peak RSS was {peak_kib} KiB, above {RSS_BOUND_KIB} KiB"
    );
}
