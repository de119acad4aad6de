//! The `webhookd` binary's long-running commands as an operator runs them: `serve` with JSON
//! logs, `serve` never writing a secret even at debug level, `serve` stopping at once on a
//! second signal, the `--dispatcher-only` role, and the `listen` receiver.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use hyper::StatusCode;
use tokio::time::Instant;
use webhook_adapters::testing::PgTestSchema;
use webhook_domain::SigningSecret;

use crate::cli::{finish, signal, text, webhookd};
use crate::utils::{Receiver, assert_signed, call, call_bytes, connection_data};

type Lines = Arc<Mutex<Vec<String>>>;

/// A running `webhookd` whose standard output and error are collected line by line. Dropping
/// it kills the process.
struct Process {
    child: Child,
    stdout: Lines,
    stderr: Lines,
    readers: Vec<JoinHandle<()>>,
}

fn collect(pipe: impl Read + Send + 'static) -> (Lines, JoinHandle<()>) {
    let lines: Lines = Arc::default();
    let sink = Arc::clone(&lines);
    let reader = std::thread::spawn(move || {
        let mut pipe = BufReader::new(pipe);
        let mut line = Vec::new();
        while pipe.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
            let text = String::from_utf8_lossy(&line);
            sink.lock().unwrap().push(text.trim_end().to_owned());
            line.clear();
        }
    });
    (lines, reader)
}

impl Process {
    fn spawn(command: &mut Command) -> Process {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (stdout, out_reader) = collect(child.stdout.take().unwrap());
        let (stderr, err_reader) = collect(child.stderr.take().unwrap());
        Process {
            child,
            stdout,
            stderr,
            readers: vec![out_reader, err_reader],
        }
    }

    /// Waits (up to 20 s) for a line of standard output that starts with `prefix`; returns the
    /// rest of it.
    async fn line_after(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let found = self
                .stdout
                .lock()
                .unwrap()
                .iter()
                .find_map(|line| line.strip_prefix(prefix).map(str::to_owned));
            if let Some(rest) = found {
                return rest;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "webhookd exited ({status}) before printing {prefix:?}; stderr:\n{}",
                    self.stderr.lock().unwrap().join("\n")
                );
            }
            assert!(Instant::now() < deadline, "no {prefix:?} within 20 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn signal(&self, name: &str) {
        signal(self.child.id(), name);
    }

    fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits (up to `limit`) for the process to exit; its status, standard output and error.
    async fn exit(&mut self, limit: Duration) -> (ExitStatus, Vec<String>, Vec<String>) {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "webhookd still runs after {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        // The pipes are closed: the readers have all there is.
        for reader in std::mem::take(&mut self.readers) {
            reader.join().unwrap();
        }
        let stdout = self.stdout.lock().unwrap().clone();
        let stderr = self.stderr.lock().unwrap().clone();
        (status, stdout, stderr)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `webhookd serve` on a SQLite file in `dir`, on 127.0.0.1:0, allowed to deliver to
/// receivers on 127.0.0.1.
fn serve(dir: &Path) -> Command {
    let mut command = webhookd();
    command
        .env("WEBHOOKD_DATA_DIR", dir)
        .env("WEBHOOKD_LISTEN", "127.0.0.1:0")
        .env("WEBHOOKD_TRANSPORT__ALLOWED_CIDRS", "127.0.0.0/8")
        .env("WEBHOOKD_DISPATCHER__POLL_INTERVAL_MS", "100");
    command
}

const LISTENING: &str = "webhookd is listening on ";

#[tokio::test]
async fn serve_writes_json_lines_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let mut process = Process::spawn(
        serve(dir.path())
            .args(["--log-format", "json", "serve"])
            .env("RUST_LOG", "debug"),
    );
    let base = process.line_after(LISTENING).await;
    let answer = call("GET", &format!("{base}/events/webhooks"), &[], "").await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    process.signal("TERM");
    let (status, _, stderr) = process.exit(Duration::from_secs(20)).await;
    assert!(status.success(), "{status}");
    assert!(!stderr.is_empty());
    for line in &stderr {
        let entry: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(entry["level"].is_string(), "{line}");
        assert!(entry["timestamp"].is_string(), "{line}");
    }
    assert!(
        stderr.iter().any(|line| line.contains("database migrated")),
        "{stderr:?}"
    );

    // The variable does the same, down to the line that says why the start failed.
    let failed = finish(
        webhookd()
            .arg("serve")
            .env("WEBHOOKD_LOG_FORMAT", "json")
            .env("WEBHOOKD_DISPATCHER__BATCH_SIZE", "0"),
        b"",
    );
    assert_eq!(failed.status.code(), Some(1));
    let err = text(&failed.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    let entry: serde_json::Value = serde_json::from_str(&err).unwrap();
    assert_eq!(entry["level"], "ERROR");
    assert_eq!(
        entry["message"],
        "dispatcher.batch_size: must be at least 1, got 0 (from WEBHOOKD_DISPATCHER__BATCH_SIZE)"
    );
}

const ADMIN_TOKEN: &str = "admin-token-6c1f0e9a";
const WALLET_KEY: &str = "wallet-key-3b7d52e8";
const GLOBAL_KEY: &str = "global-key-91a4c7d3";
const BEARER: &str = "bearer-token-5e08b2f6";

/// Starts `webhookd serve` with every kind of secret configured, at debug level, and has it
/// deliver to a receiver that needs custom headers; no secret may appear in its output.
async fn secrets_stay_out_of_the_output(database_url: Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(&[]).await;
    let mut command = serve(dir.path());
    command
        .arg("serve")
        .env("RUST_LOG", "debug")
        .env("ADMIN_TOKEN", ADMIN_TOKEN)
        .env("DEFAULT_WALLET_AUTH_API_KEY", WALLET_KEY)
        .env("GLOBAL_WEBHOOK_URL", receiver.url())
        .env("GLOBAL_WEBHOOK_API_KEY", GLOBAL_KEY);
    if let Some(url) = database_url {
        command.env("WEBHOOKD_DATABASE_URL", url);
    }
    let mut process = Process::spawn(&mut command);
    let base = process.line_after(LISTENING).await;

    let wallets = call(
        "GET",
        &format!("{base}/wallets"),
        &[("x-admin-api-key", ADMIN_TOKEN)],
        "",
    )
    .await;
    assert_eq!(wallets.status, StatusCode::OK, "{}", wallets.json);
    let json = [("content-type", "application/json"), ("apikey", WALLET_KEY)];
    let registered = call(
        "POST",
        &format!("{base}/events/webhooks"),
        &json,
        &serde_json::json!({
            "url": format!("http://{}/own", receiver.addr),
            "customHeaders": { "Authorization": format!("Bearer {BEARER}") },
        })
        .to_string(),
    )
    .await;
    assert_eq!(registered.status, StatusCode::OK, "{}", registered.json);
    let signing_secret = registered.json["secret"].as_str().unwrap().to_owned();
    let published = call(
        "POST",
        &format!("{base}/events"),
        &json,
        &serde_json::json!({ "type": "ConnectionUpdated", "data": connection_data() }).to_string(),
    )
    .await;
    assert_eq!(published.status, StatusCode::ACCEPTED, "{}", published.json);
    assert_eq!(
        published.json["deliveries"], 2,
        "the global webhook and our own"
    );

    let got = receiver.wait_for(2).await;
    let authorizations: BTreeSet<String> = got
        .iter()
        .map(|r| r.headers["authorization"].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        authorizations,
        BTreeSet::from([format!("Bearer {BEARER}"), format!("Bearer {GLOBAL_KEY}")])
    );
    let own = got
        .iter()
        .find(|r| r.headers["authorization"] == format!("Bearer {BEARER}").as_str())
        .unwrap();
    assert_signed(own, &signing_secret);
    // Both outcomes are recorded before the stop (debug logs each attempt).
    let deadline = Instant::now() + Duration::from_secs(10);
    while process
        .stderr
        .lock()
        .unwrap()
        .iter()
        .filter(|line| line.contains("attempt finished"))
        .count()
        < 2
    {
        assert!(Instant::now() < deadline, "the attempts were not logged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    process.signal("TERM");
    let (status, stdout, stderr) = process.exit(Duration::from_secs(20)).await;
    assert!(status.success(), "{status}");
    let everything = [stdout.join("\n"), stderr.join("\n")].join("\n");
    for secret in [
        ADMIN_TOKEN,
        WALLET_KEY,
        GLOBAL_KEY,
        BEARER,
        signing_secret.as_str(),
        signing_secret.trim_start_matches("whsec_"),
    ] {
        assert!(
            !everything.contains(secret),
            "{secret} was written:\n{everything}"
        );
        // Debug output of byte buffers, as a database driver logs statement parameters.
        let bytes = secret
            .bytes()
            .map(|b| b.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        assert!(
            !everything.contains(&bytes),
            "{secret} was written as bytes:\n{everything}"
        );
    }
    // The configured keys are not generated, so the one-time banner never shows.
    assert!(!everything.contains("shown only now"), "{everything}");
}

#[tokio::test]
async fn serve_never_writes_a_secret_even_at_debug_level() {
    secrets_stay_out_of_the_output(None).await;
}

#[tokio::test]
async fn on_postgres_serve_never_writes_a_secret_even_at_debug_level() {
    let Some(schema) = PgTestSchema::create().await else {
        return;
    };
    secrets_stay_out_of_the_output(Some(schema.url())).await;
}

#[tokio::test]
async fn a_second_signal_stops_at_once_instead_of_draining() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start_silent().await;
    let mut process = Process::spawn(
        serve(dir.path())
            .arg("serve")
            .env("DEFAULT_WALLET_AUTH_API_KEY", WALLET_KEY)
            // An attempt that never ends on its own, and a drain that would wait a minute.
            .env("WEBHOOKD_DISPATCHER__ATTEMPT_TIMEOUT_MS", "120000")
            .env("WEBHOOKD_DISPATCHER__LEASE_MS", "240000")
            .env("WEBHOOKD_DISPATCHER__SHUTDOWN_GRACE_MS", "60000"),
    );
    let base = process.line_after(LISTENING).await;
    let json = [("content-type", "application/json"), ("apikey", WALLET_KEY)];
    let registered = call(
        "POST",
        &format!("{base}/events/webhooks"),
        &json,
        &serde_json::json!({ "url": receiver.url() }).to_string(),
    )
    .await;
    assert_eq!(registered.status, StatusCode::OK, "{}", registered.json);
    let published = call(
        "POST",
        &format!("{base}/events"),
        &json,
        &serde_json::json!({ "type": "app.thing", "data": {} }).to_string(),
    )
    .await;
    assert_eq!(published.status, StatusCode::ACCEPTED, "{}", published.json);
    receiver.wait_for(1).await;

    process.signal("TERM");
    process.line_after("shutting down").await;
    assert!(
        process.is_running(),
        "the drain should wait for the attempt"
    );
    let second = Instant::now();
    process.signal("TERM");
    let (status, _, stderr) = process.exit(Duration::from_secs(10)).await;
    assert!(
        second.elapsed() < Duration::from_secs(5),
        "took {:?}",
        second.elapsed()
    );
    assert_eq!(status.code(), Some(130), "{status}");
    let said: Vec<&String> = stderr
        .iter()
        .filter(|line| line.contains("second signal"))
        .collect();
    assert_eq!(said.len(), 1, "{stderr:?}");
    assert!(said[0].contains("stopping at once"), "{stderr:?}");
}

#[tokio::test]
async fn dispatcher_only_serves_nothing_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let mut process = Process::spawn(serve(dir.path()).args(["serve", "--dispatcher-only"]));
    process
        .line_after("webhookd is delivering (dispatcher only: no HTTP is served)")
        .await;
    process.signal("TERM");
    let (status, stdout, _) = process.exit(Duration::from_secs(20)).await;
    assert!(status.success(), "{status}");
    assert!(
        !stdout.iter().any(|line| line.contains("listening")),
        "{stdout:?}"
    );

    let both = finish(
        webhookd().args(["serve", "--api-only", "--dispatcher-only"]),
        b"",
    );
    assert_eq!(both.status.code(), Some(2));
    assert!(text(&both.stderr).contains("cannot be used with"));
}

#[tokio::test]
async fn listen_prints_each_request_and_checks_its_signature() {
    let secret = SigningSecret::from_bytes(&[42; 32]).unwrap();
    let mut process = Process::spawn(webhookd().args([
        "listen",
        "0",
        "--secret",
        &secret.expose(),
        "--status",
        "503",
    ]));
    let addr = process.line_after("listening on http://").await;
    let addr = addr.split_whitespace().next().unwrap().to_owned();
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");

    let body =
        serde_json::json!({ "id": "e-1", "type": "ConnectionUpdated", "data": connection_data() })
            .to_string();
    let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
    let signature = webhook_domain::sign(&secret, "e-1", timestamp, body.as_bytes());
    let timestamp = timestamp.to_string();
    let headers = [
        ("content-type", "application/json"),
        ("webhook-id", "e-1"),
        ("webhook-timestamp", timestamp.as_str()),
    ];
    let valid = [&headers[..], &[("webhook-signature", signature.as_str())]].concat();
    let answer = call_bytes(
        "POST",
        &format!("http://{addr}/hooks/identus"),
        &valid,
        body.clone().into_bytes(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    let forged = [&headers[..], &[("webhook-signature", "v1,Zm9yZ2Vk")]].concat();
    let answer = call_bytes(
        "POST",
        &format!("http://{addr}/hooks/identus"),
        &forged,
        body.into_bytes(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);

    process
        .line_after("signature: INVALID (webhook-signature: no v1 signature matches")
        .await;
    process.signal("TERM");
    let (status, stdout, _) = process.exit(Duration::from_secs(20)).await;
    assert!(status.success(), "{status}");
    let printed = stdout.join("\n");
    assert_eq!(
        stdout.iter().filter(|l| *l == "signature: valid").count(),
        1,
        "{printed}"
    );
    assert_eq!(
        stdout
            .iter()
            .filter(|l| l.ends_with(" POST /hooks/identus"))
            .count(),
        2,
        "{printed}"
    );
    assert!(printed.contains("webhook-id: e-1"), "{printed}");
    assert!(
        printed.contains(&format!("webhook-timestamp: {timestamp}")),
        "{printed}"
    );
    assert!(
        printed.contains("\n  \"data\": {\n    \"connectionId\": "),
        "the body is indented:\n{printed}"
    );
    assert!(printed.contains("answered 503"), "{printed}");

    // A secret that is not one is refused before listening.
    let refused = finish(webhookd().args(["listen", "0", "--secret", "nope"]), b"");
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(
        text(&refused.stderr).trim(),
        "error: --secret: must be whsec_ followed by base64 of 24 to 64 bytes"
    );
}
