//! A quick measurement, not a test (ignored by default, asserts no timing): events published
//! through the API with 32 requests in flight to one webhook, delivered to a fast receiver on
//! 127.0.0.1. Prints publish and delivery rates. The real benchmark is `cargo xtask bench`.
//!
//! cargo test --release -p webhook-app --test it quick_throughput -- --ignored --nocapture

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::utils::{Backend, Receiver, Service, connection_data, post_json, register};

const EVENTS: usize = 5_000;
const IN_FLIGHT: usize = 32;

async fn measure(backend: Backend) {
    let Some(service) = Service::start_with(backend, |s| {
        s.dispatcher.batch_size = 256;
        s.dispatcher.max_in_flight_per_target = 64;
    })
    .await
    else {
        return;
    };
    let receiver = Receiver::start(&[]).await;
    register(&service, &receiver.url()).await;
    let service = Arc::new(service);
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let publishers: Vec<_> = (0..IN_FLIGHT)
        .map(|_| {
            let service = Arc::clone(&service);
            let next = Arc::clone(&next);
            tokio::spawn(async move {
                while next.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < EVENTS {
                    let answer = post_json(
                        &service.url("/events"),
                        json!({ "type": "ConnectionUpdated", "data": connection_data() }),
                    )
                    .await;
                    assert_eq!(answer.status.as_u16(), 202);
                }
            })
        })
        .collect();
    for publisher in publishers {
        publisher.await.unwrap();
    }
    let published_in = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(300);
    while receiver.count() < EVENTS {
        assert!(Instant::now() < deadline, "not all delivered");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let delivered_in = started.elapsed();
    eprintln!(
        "{backend:?}: {EVENTS} events, {IN_FLIGHT} publishes in flight: published in {:.2} s \
         ({:.0}/s); all delivered {:.2} s after the first publish ({:.0} deliveries/s)",
        published_in.as_secs_f64(),
        EVENTS as f64 / published_in.as_secs_f64(),
        delivered_in.as_secs_f64(),
        EVENTS as f64 / delivered_in.as_secs_f64(),
    );
    if let Some(service) = Arc::into_inner(service) {
        let mut service = service;
        service.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run it in release mode by hand"]
async fn quick_throughput() {
    measure(Backend::Sqlite).await;
    measure(Backend::Postgres).await;
    measure(Backend::Mysql).await;
}
