//! An ordered webhook receives its events one at a time, in the order their publishes
//! committed, through the real API: batches in item order, and concurrent publishes in an
//! order that respects every publish answered before another was sent.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hyper::StatusCode;
use serde_json::json;

use crate::utils::{API_KEY, Backend, Receiver, Service, call};

/// One publish as the client saw it: the event ids it sent, when it was sent, when its `202`
/// came back.
struct Sent {
    ids: Vec<String>,
    sent: Instant,
    answered: Instant,
}

async fn post(base: &str, path: &str, body: serde_json::Value) -> (Vec<String>, Instant, Instant) {
    let sent = Instant::now();
    let answer = call(
        "POST",
        &format!("{base}{path}"),
        &[("content-type", "application/json"), ("apikey", API_KEY)],
        &body.to_string(),
    )
    .await;
    let answered = Instant::now();
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.json);
    let ids = match answer.json["events"].as_array() {
        Some(items) => items
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_owned())
            .collect(),
        None => vec![answer.json["id"].as_str().unwrap().to_owned()],
    };
    (ids, sent, answered)
}

async fn in_publish_order(backend: Backend) {
    let Some(service) = Service::start_on(backend).await else {
        return;
    };
    // A few milliseconds per request: two attempts at once would show.
    let receiver = Receiver::start_slow(Duration::from_millis(3)).await;
    let base = service.url("");
    let created = call(
        "POST",
        &format!("{base}/events/webhooks"),
        &[("content-type", "application/json"), ("apikey", API_KEY)],
        &json!({ "url": receiver.url(), "ordered": true }).to_string(),
    )
    .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.json);

    let event = |n: usize| json!({ "type": "order.test", "data": { "n": n } });
    let mut publishes = Vec::new();
    // Five batches of twenty, one after the other.
    for b in 0..5 {
        let events: Vec<_> = (0..20).map(|i| event(b * 20 + i)).collect();
        let (ids, sent, answered) = post(&base, "/events/batch", json!({ "events": events })).await;
        publishes.push(Sent {
            ids,
            sent,
            answered,
        });
    }
    // Then a hundred single publishes at once.
    let singles: Vec<_> = (0..100)
        .map(|n| {
            let base = base.clone();
            tokio::spawn(async move { post(&base, "/events", event(100 + n)).await })
        })
        .collect();
    for single in singles {
        let (ids, sent, answered) = single.await.unwrap();
        publishes.push(Sent {
            ids,
            sent,
            answered,
        });
    }

    let expected: usize = publishes.iter().map(|p| p.ids.len()).sum();
    let got = receiver.wait_for(expected).await;
    let order: Vec<String> = got
        .iter()
        .map(|r| r.headers["webhook-id"].to_str().unwrap().to_owned())
        .collect();
    let position: HashMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    assert_eq!(position.len(), expected, "every event once");
    // A batch arrives in item order.
    for p in publishes.iter().filter(|p| p.ids.len() > 1) {
        let at: Vec<usize> = p.ids.iter().map(|id| position[id.as_str()]).collect();
        assert!(
            at.windows(2).all(|w| w[0] < w[1]),
            "a batch out of item order: {at:?}"
        );
    }
    // A publish answered before another was sent arrives before it.
    let mut inversions = 0;
    for a in &publishes {
        for b in &publishes {
            if a.answered < b.sent {
                let last_of_a = a.ids.iter().map(|id| position[id.as_str()]).max();
                let first_of_b = b.ids.iter().map(|id| position[id.as_str()]).min();
                inversions += usize::from(last_of_a > first_of_b);
            }
        }
    }
    assert_eq!(inversions, 0, "{backend:?}: publishes out of commit order");
    assert_eq!(
        receiver.most_at_once(),
        1,
        "{backend:?}: attempts in parallel"
    );
}

crate::on_every_backend!(in_publish_order);
