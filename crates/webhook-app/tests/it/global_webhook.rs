//! The global webhook (`GLOBAL_WEBHOOK_URL`, `GLOBAL_WEBHOOK_API_KEY`) with the real binary on
//! every backend: a 410 answer does not switch it off, a `--dispatcher-only` instance never
//! changes it whatever its environment says, and changed settings apply to the deliveries
//! already waiting instead of cancelling them.

use hyper::StatusCode;
use serde_json::{Value, json};

use crate::child::Webhookd;
use crate::utils::{Backend, Receiver, connection_data};

crate::on_every_backend!(
    a_410_leaves_the_global_webhook_enabled,
    a_dispatcher_only_instance_leaves_the_global_webhook_alone,
    changed_global_settings_apply_to_waiting_deliveries,
);

/// A database for `webhookd` child processes: a SQLite file in a directory of its own, or a
/// database (PostgreSQL: a schema) of its own on the backend's server.
struct Database {
    dir: tempfile::TempDir,
    server: Option<webhook_adapters::testing::FreshDatabase>,
}

impl Database {
    /// `None` when the backend's server is absent outside CI (skip).
    async fn new(backend: Backend) -> Option<Database> {
        let dir = tempfile::tempdir().unwrap();
        let server = match backend {
            Backend::Sqlite => None,
            Backend::Postgres | Backend::Mysql => {
                Some((backend.storage().testing.fresh)(dir.path()).await?)
            }
        };
        Some(Database { dir, server })
    }

    /// Starts `webhookd serve <args>` on this database with `env` on top.
    fn serve(&self, args: &[&str], env: &[(&str, &str)]) -> Webhookd {
        let url = self.server.as_ref().map(|database| database.url.clone());
        let mut all: Vec<(&str, &str)> = url
            .as_deref()
            .map(|url| ("WEBHOOKD_DATABASE_URL", url))
            .into_iter()
            .collect();
        // Fast retries, so that a failed attempt is retried within the test.
        all.push(("WEBHOOKD_DISPATCHER__POLL_INTERVAL_MS", "100"));
        all.extend_from_slice(env);
        Webhookd::serve_with(self.dir.path(), args, &all)
    }
}

/// Publishes one event into the default wallet; returns its id and its number of deliveries.
async fn publish(webhookd: &Webhookd) -> (String, u64) {
    let answer = webhookd
        .post(
            "/events",
            &json!({ "type": "ConnectionUpdated", "data": connection_data() }),
        )
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.json);
    (
        answer.json["id"].as_str().unwrap().to_owned(),
        answer.json["deliveries"].as_u64().unwrap(),
    )
}

/// The event's deliveries, polled (up to 10 s) until `done` holds for them.
async fn deliveries_of(webhookd: &Webhookd, event: &str, done: impl Fn(&[Value]) -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let page = webhookd.get(&format!("/events/{event}/deliveries")).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.json);
        let deliveries = page.json["contents"].as_array().unwrap();
        if done(deliveries) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the deliveries of {event} did not reach the expected state: {deliveries:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

fn authorization(request: &crate::utils::Received) -> &str {
    request.headers["authorization"].to_str().unwrap()
}

async fn a_410_leaves_the_global_webhook_enabled(backend: Backend) {
    let Some(database) = Database::new(backend).await else {
        return;
    };
    let receiver = Receiver::start(&[410]).await;
    let url = receiver.url();
    let env = [
        ("GLOBAL_WEBHOOK_URL", url.as_str()),
        ("GLOBAL_WEBHOOK_API_KEY", "global-key"),
    ];
    let webhookd = database.serve(&[], &env);
    let (gone, count) = publish(&webhookd).await;
    assert_eq!(count, 1, "the global webhook gets every event");
    receiver.wait_for(1).await;
    // The 410 ends that delivery only.
    deliveries_of(&webhookd, &gone, |d| {
        d.len() == 1 && d[0]["state"] == "cancelled" && d[0]["cancelReason"] == "target_gone"
    })
    .await;
    // The dispatcher acts on a 410 just after recording it.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (_, count) = publish(&webhookd).await;
    assert_eq!(count, 1, "a 410 does not switch the global webhook off");
    receiver.wait_for(2).await;

    // Nor does a restart with the same settings change anything.
    assert!(webhookd.terminate());
    let webhookd = database.serve(&[], &env);
    let (_, count) = publish(&webhookd).await;
    assert_eq!(count, 1);
    let got = receiver.wait_for(3).await;
    assert!(got.iter().all(|r| authorization(r) == "Bearer global-key"));
    assert!(webhookd.terminate());
}

async fn a_dispatcher_only_instance_leaves_the_global_webhook_alone(backend: Backend) {
    let Some(database) = Database::new(backend).await else {
        return;
    };
    let receiver = Receiver::start(&[]).await;
    let other = Receiver::start(&[]).await;
    let url = receiver.url();
    let api = database.serve(
        &["--api-only"],
        &[
            ("GLOBAL_WEBHOOK_URL", url.as_str()),
            ("GLOBAL_WEBHOOK_API_KEY", "configured-key"),
        ],
    );
    for _ in 0..3 {
        assert_eq!(publish(&api).await.1, 1);
    }

    // A dispatcher started without the variables delivers what waits, as configured.
    let dispatcher = database.serve(&["--dispatcher-only"], &[]);
    let got = receiver.wait_for(3).await;
    assert!(
        got.iter()
            .all(|r| authorization(r) == "Bearer configured-key")
    );
    assert!(dispatcher.terminate());

    // One started with other values changes nothing either.
    for _ in 0..2 {
        assert_eq!(publish(&api).await.1, 1);
    }
    let other_url = other.url();
    let dispatcher = database.serve(
        &["--dispatcher-only"],
        &[
            ("GLOBAL_WEBHOOK_URL", other_url.as_str()),
            ("GLOBAL_WEBHOOK_API_KEY", "ignored-key"),
        ],
    );
    let got = receiver.wait_for(5).await;
    assert!(
        got.iter()
            .all(|r| authorization(r) == "Bearer configured-key")
    );
    assert_eq!(other.count(), 0);
    assert!(dispatcher.terminate());
    assert!(api.terminate());
}

async fn changed_global_settings_apply_to_waiting_deliveries(backend: Backend) {
    let Some(database) = Database::new(backend).await else {
        return;
    };
    let first = Receiver::start(&[]).await;
    let second = Receiver::start(&[]).await;
    let first_url = first.url();
    let second_url = second.url();

    // Deliveries wait while only the API runs.
    let api = database.serve(
        &["--api-only"],
        &[
            ("GLOBAL_WEBHOOK_URL", first_url.as_str()),
            ("GLOBAL_WEBHOOK_API_KEY", "old-key"),
        ],
    );
    let (waiting, _) = publish(&api).await;
    for _ in 0..2 {
        publish(&api).await;
    }
    assert!(api.terminate());

    // A new key: what waited is sent with it.
    let all = database.serve(
        &[],
        &[
            ("GLOBAL_WEBHOOK_URL", first_url.as_str()),
            ("GLOBAL_WEBHOOK_API_KEY", "new-key"),
        ],
    );
    let got = first.wait_for(3).await;
    assert!(
        got.iter().all(|r| authorization(r) == "Bearer new-key"),
        "{:?}",
        got.iter().map(authorization).collect::<Vec<_>>()
    );
    deliveries_of(&all, &waiting, |d| {
        d.len() == 1 && d[0]["state"] == "delivered"
    })
    .await;
    assert!(all.terminate());

    // A new URL: what waited goes there.
    let api = database.serve(
        &["--api-only"],
        &[
            ("GLOBAL_WEBHOOK_URL", first_url.as_str()),
            ("GLOBAL_WEBHOOK_API_KEY", "new-key"),
        ],
    );
    for _ in 0..2 {
        publish(&api).await;
    }
    assert!(api.terminate());
    let all = database.serve(
        &[],
        &[
            ("GLOBAL_WEBHOOK_URL", second_url.as_str()),
            ("GLOBAL_WEBHOOK_API_KEY", "new-key"),
        ],
    );
    let got = second.wait_for(2).await;
    assert!(got.iter().all(|r| authorization(r) == "Bearer new-key"));
    assert_eq!(first.count(), 3);
    assert!(all.terminate());
}
