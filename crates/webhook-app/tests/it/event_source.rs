//! An event source as an adapter of the publishing service, proved with the test-only JSON-lines
//! source (`event_source/json_lines.rs`, registered with one line): end to end through the real
//! service to a real receiver, and alone against a scripted sink for what must happen between a
//! publish and its acknowledgement.

mod json_lines;

use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use webhook_app::Extensions;
use webhook_ports::{PublishError, PublishEvents, PublishItem, Published, Shutdown, SourceError};

use crate::cli::{finish, text, webhookd};
use crate::utils::{Backend, Receiver, Service, connection_data, publish, register};
use json_lines::JsonLines;

/// A service with the JSON-lines source reading `file`.
async fn service_reading(backend: Backend, file: &Path) -> Option<Service> {
    let url = format!("jsonl://{}", file.display());
    let extensions = Extensions::default().with_source(json_lines::KIND);
    Service::start_extended(backend, extensions, |s| s.sources = vec![url]).await
}

fn append(file: &Path, lines: &[String]) {
    use std::io::Write;
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .unwrap();
    for line in lines {
        writeln!(out, "{line}").unwrap();
    }
}

fn line(event: serde_json::Value) -> String {
    let mut event = event;
    event["walletId"] = json!(webhook_domain::WalletId::DEFAULT);
    event.to_string()
}

fn file_len(file: &Path) -> u64 {
    std::fs::metadata(file).unwrap().len()
}

/// Waits (up to 10 s) until the source has acknowledged everything in `file`.
async fn wait_acknowledged(file: &Path) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while JsonLines::acknowledged(file) < file_len(file) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {} bytes acknowledged after 10 s",
            JsonLines::acknowledged(file),
            file_len(file)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `webhook-id` of each request, in arrival order.
fn ids(receiver: &Receiver) -> Vec<String> {
    receiver
        .received()
        .iter()
        .map(|r| r.headers["webhook-id"].to_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn events_in_a_file_reach_the_receiver_and_bad_lines_are_reported_and_skipped() {
    delivered_and_skipped(Backend::Sqlite).await;
}

#[tokio::test]
async fn on_postgres_events_in_a_file_reach_the_receiver_and_bad_lines_are_reported_and_skipped() {
    delivered_and_skipped(Backend::Postgres).await;
}

#[tokio::test]
async fn on_mysql_events_in_a_file_reach_the_receiver_and_bad_lines_are_reported_and_skipped() {
    delivered_and_skipped(Backend::Mysql).await;
}

async fn delivered_and_skipped(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    let Some(mut service) = service_reading(backend, &file).await else {
        return;
    };
    let receiver = Receiver::start(&[]).await;
    register(&service, &receiver.url()).await;
    let own_id = "6f2c1a52-0d7b-4a55-9f39-0b3f3c1e9a01";
    let unknown_wallet = json!({
        "walletId": "0e0e0e0e-0000-4000-8000-000000000001",
        "type": "Custom.Thing",
        "data": {"n": 4},
    });
    let lines = [
        line(json!({"type": "ConnectionUpdated", "data": connection_data(), "id": own_id})),
        "this is not JSON".to_owned(),
        line(json!({"type": "Custom.Thing", "data": {"n": 3}})),
        unknown_wallet.to_string(),
        line(json!({"type": "ConnectionUpdated", "data": {"state": "Nonsense"}})),
        String::new(),
        line(json!({"type": "Custom.Thing", "data": {"n": 7}})),
    ];
    append(&file, &lines);
    wait_acknowledged(&file).await;

    let got = receiver.wait_for(3).await;
    let mut bodies: Vec<serde_json::Value> = got
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    bodies.sort_by_key(|b| b["data"]["n"].as_i64());
    assert_eq!(bodies[0]["id"], own_id);
    assert_eq!(bodies[0]["data"], connection_data());
    assert_eq!(
        (bodies[1]["type"].clone(), bodies[1]["data"].clone()),
        (json!("Custom.Thing"), json!({"n": 3}))
    );
    assert_eq!(bodies[2]["data"], json!({"n": 7}));

    // Each bad line is reported with where it starts, and nothing of it is stored.
    let starts: Vec<u64> = lines
        .iter()
        .scan(0, |at, l| {
            let start = *at;
            *at += l.len() as u64 + 1;
            Some(start)
        })
        .collect();
    let report = std::fs::read_to_string(json_lines::rejected_file(&file)).unwrap();
    let reported: Vec<&str> = report.lines().collect();
    assert_eq!(reported.len(), 3, "{report}");
    assert!(
        reported[0].starts_with(&format!("{}: not an event: ", starts[1])),
        "{report}"
    );
    assert_eq!(
        reported[1],
        format!(
            "{}: an event names a wallet that does not exist; nothing was stored",
            starts[3]
        )
    );
    assert_eq!(
        reported[2],
        format!(
            "{}: data.connectionId: is required for ConnectionUpdated events and must be a \
             non-empty string",
            starts[4]
        )
    );

    // The service ran on: the API still publishes, and nothing more came from the file.
    publish(&service).await;
    receiver.wait_for(4).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.count(), 4);
    service.stop().await;
}

#[tokio::test]
async fn a_restart_resumes_after_the_last_acknowledged_line_without_losing_or_duplicating() {
    resumed(Backend::Sqlite).await;
}

#[tokio::test]
async fn on_postgres_a_restart_resumes_after_the_last_acknowledged_line_without_losing_or_duplicating()
 {
    resumed(Backend::Postgres).await;
}

#[tokio::test]
async fn on_mysql_a_restart_resumes_after_the_last_acknowledged_line_without_losing_or_duplicating()
{
    resumed(Backend::Mysql).await;
}

async fn resumed(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    let Some(mut service) = service_reading(backend, &file).await else {
        return;
    };
    let receiver = Receiver::start(&[]).await;
    register(&service, &receiver.url()).await;
    let event = |n: u32| line(json!({"type": "Custom.Thing", "data": {"n": n}}));
    append(&file, &[event(1), event(2)]);
    wait_acknowledged(&file).await;
    receiver.wait_for(2).await;
    service.stop().await;

    // A crash after the second line was committed but before its acknowledgement: the
    // committed offset still points at it. Two more lines arrive while the service is down.
    let second = event(1).len() as u64 + 1;
    std::fs::write(json_lines::offset_file(&file), second.to_string()).unwrap();
    append(&file, &[event(3), event(4)]);
    service.restart(|_| {}).await;
    wait_acknowledged(&file).await;
    receiver.wait_for(4).await;
    // Time for a duplicate to show up: the poll interval is 100 ms.
    tokio::time::sleep(Duration::from_millis(400)).await;

    let ids = ids(&receiver);
    assert_eq!(ids.len(), 4, "{ids:?}");
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 4, "{ids:?}");
    let mut numbers: Vec<i64> = receiver
        .received()
        .iter()
        .map(|r| {
            serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["data"]["n"]
                .as_i64()
                .unwrap()
        })
        .collect();
    numbers.sort_unstable();
    assert_eq!(numbers, [1, 2, 3, 4]);
    service.stop().await;
}

#[tokio::test]
async fn an_unknown_source_scheme_stops_the_start_naming_the_known_ones() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = webhook_app::config::Settings::defaults().unwrap();
    settings.data_dir = dir.path().to_owned();
    settings.listen = "127.0.0.1:0".parse().unwrap();
    settings.sources = vec!["kafka://app:hunter2@broker:9092/events".to_owned()];
    let extensions = Extensions::default().with_source(json_lines::KIND);
    let refused = webhook_app::start_with(&settings, extensions)
        .await
        .map(drop)
        .unwrap_err();
    assert_eq!(
        format!("{refused:#}"),
        "sources: \"kafka://****@broker:9092/events\" names no known event source; use one of \
         these schemes: nats (nats://127.0.0.1:4222/EVENTS?consumer=webhookd&wallet_from=subject:2); \
         amqp, amqps (amqp://guest:guest@127.0.0.1:5672/%2f?queue=webhookd-events); jsonl \
         (jsonl:///var/lib/webhookd/events.jsonl)"
    );
    // Nothing was opened: the start stopped before the database.
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());

    settings.sources = vec!["jsonl://relative/events.jsonl".to_owned()];
    let refused = webhook_app::start_with(
        &settings,
        Extensions::default().with_source(json_lines::KIND),
    )
    .await
    .map(drop)
    .unwrap_err();
    assert_eq!(
        format!("{refused:#}"),
        "sources: JSON lines source \"jsonl://relative/events.jsonl\": \"jsonl://relative/events.jsonl\" \
         names no absolute file path; write it as jsonl:///var/lib/webhookd/events.jsonl"
    );
}

#[test]
fn the_sources_setting_is_a_comma_separated_variable_shown_without_passwords() {
    let output = finish(
        webhookd().arg("config").env(
            "WEBHOOKD_SOURCES",
            "jsonl:///srv/events.jsonl,nats://app:n4ts-secret@nats:4222/events",
        ),
        b"",
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let printed: toml::Table = toml::from_str(&text(&output.stdout)).unwrap();
    assert_eq!(
        printed["sources"],
        toml::Value::Array(vec![
            "jsonl:///srv/events.jsonl".into(),
            "nats://app:****@nats:4222/events".into(),
        ])
    );

    // `serve` refuses an unknown scheme in one line, without the password, naming the
    // built-in ones.
    let dir = tempfile::tempdir().unwrap();
    let output = finish(
        webhookd()
            .arg("serve")
            .env("WEBHOOKD_DATA_DIR", dir.path())
            .env("WEBHOOKD_LISTEN", "127.0.0.1:0")
            .env(
                "WEBHOOKD_SOURCES",
                "kafka://app:k4fka-secret@kafka:9092/events",
            ),
        b"",
    );
    assert!(!output.status.success());
    let err = text(&output.stderr);
    assert!(
        err.contains("names no known event source; use one of these schemes: nats ("),
        "{err}"
    );
    assert!(!err.contains("k4fka-secret"), "{err}");
}

/// A sink that records each call, gives scripted refusals first, and (when gated) answers each
/// call only once a permit is added.
#[derive(Default)]
struct ScriptedSink {
    calls: Mutex<Vec<Vec<PublishItem>>>,
    refusals: Mutex<VecDeque<PublishError>>,
    gate: Option<tokio::sync::Semaphore>,
}

impl ScriptedSink {
    fn calls(&self) -> Vec<Vec<PublishItem>> {
        self.calls.lock().unwrap().clone()
    }

    async fn wait_for_calls(&self, count: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.calls.lock().unwrap().len() < count {
            assert!(
                tokio::time::Instant::now() < deadline,
                "fewer than {count} calls"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[async_trait]
impl PublishEvents for ScriptedSink {
    async fn publish(&self, items: Vec<PublishItem>) -> Result<Vec<Published>, PublishError> {
        self.calls.lock().unwrap().push(items.clone());
        if let Some(gate) = &self.gate {
            gate.acquire().await.unwrap().forget();
        }
        if let Some(refusal) = self.refusals.lock().unwrap().pop_front() {
            return Err(refusal);
        }
        Ok(items
            .iter()
            .map(|item| Published {
                event_id: item.event.id(),
                deliveries: 1,
                replayed: false,
            })
            .collect())
    }
}

/// The JSON-lines source on `file`, running alone against `sink`; the sender stops it.
fn run_alone(
    file: &Path,
    sink: Arc<ScriptedSink>,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), SourceError>>,
) {
    let source = (json_lines::KIND.open)(&format!("jsonl://{}", file.display())).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let shutdown = Shutdown::new(async {
        let _ = stopped.await;
    });
    (stop, tokio::spawn(source.run(sink, shutdown)))
}

fn events_file() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    (dir, file)
}

#[tokio::test]
async fn a_line_is_acknowledged_only_after_its_publish_returns() {
    let (_dir, file) = events_file();
    let sink = Arc::new(ScriptedSink {
        gate: Some(tokio::sync::Semaphore::new(0)),
        ..ScriptedSink::default()
    });
    let (stop, task) = run_alone(&file, sink.clone());
    append(&file, &[line(json!({"type": "Custom.Thing", "data": {}}))]);
    sink.wait_for_calls(1).await;
    // The publish has not answered: nothing is acknowledged, however long it takes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(JsonLines::acknowledged(&file), 0);
    sink.gate.as_ref().unwrap().add_permits(1);
    wait_acknowledged(&file).await;
    assert_eq!(sink.calls().len(), 1);
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_transient_refusal_keeps_the_line_and_publishes_the_same_event_again() {
    let (_dir, file) = events_file();
    let sink = Arc::new(ScriptedSink::default());
    sink.refusals.lock().unwrap().extend([
        PublishError::Unavailable("the database is down".into()),
        PublishError::Unavailable("the database is down".into()),
    ]);
    let (stop, task) = run_alone(&file, sink.clone());
    append(
        &file,
        &[line(json!({"type": "Custom.Thing", "data": {"n": 1}}))],
    );
    sink.wait_for_calls(2).await;
    assert_eq!(
        JsonLines::acknowledged(&file),
        0,
        "acknowledged while refused"
    );
    wait_acknowledged(&file).await;
    let calls = sink.calls();
    assert_eq!(calls.len(), 3);
    let ids: BTreeSet<_> = calls.iter().map(|c| c[0].event.id()).collect();
    assert_eq!(ids.len(), 1, "each try must publish the same event id");
    assert!(!json_lines::rejected_file(&file).exists());
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_source_stops_at_shutdown_while_storage_is_down_leaving_its_line_unacknowledged() {
    let (_dir, file) = events_file();
    let sink = Arc::new(ScriptedSink::default());
    sink.refusals
        .lock()
        .unwrap()
        .extend((0..1000).map(|_| PublishError::Unavailable("down".into())));
    let (stop, task) = run_alone(&file, sink.clone());
    append(&file, &[line(json!({"type": "Custom.Thing", "data": {}}))]);
    sink.wait_for_calls(2).await;
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(1), task)
        .await
        .expect("the source returns soon after the shutdown")
        .unwrap()
        .unwrap();
    assert_eq!(JsonLines::acknowledged(&file), 0);
}
