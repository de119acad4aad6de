//! The `webhookd` binary's long-running commands as an operator runs them: `serve` with JSON
//! logs, `serve` never writing a secret even at debug level, `serve` stopping at once on a
//! second signal, the `--dispatcher-only` role, and the `listen` receiver.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use hyper::StatusCode;
use tokio::time::Instant;
use webhook_adapters::MysqlTestDatabase;
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
/// Wrong keys a guesser sends: they are secrets too (a typo of a real one, say).
const WRONG_WALLET_KEY: &str = "wallet-key-3b7d52e9";
const WRONG_ADMIN_KEY: &str = "admin-token-6c1f0e9b";
/// The password in the database URL, in the `webhookd config` run.
const DB_PASSWORD: &str = "db-pass-0c4e7a12";

/// An answer's status and its whole body as text.
async fn answer_text(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, String) {
    let answer = call(method, url, headers, body).await;
    (answer.status, answer.json.to_string())
}

/// Starts `webhookd serve` with every kind of secret configured, at debug level, and runs it
/// through everything that handles one: registering with a secret and custom headers,
/// publishing, delivering, rotating the secret, publishing and delivering again, redelivering,
/// a generated API key, failed authentications with wrong keys, and bad bodies that carry a
/// secret. No secret (nor a wrong key) may appear in its output, its `/metrics`, any error
/// body, or `webhookd config` with the same environment; API keys and the admin token are not
/// in the database in clear.
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
    if let Some(url) = &database_url {
        command.env("WEBHOOKD_DATABASE_URL", url);
    }
    let mut process = Process::spawn(&mut command);
    let base = process.line_after(LISTENING).await;
    // Every answer that is not a success, to search for secrets at the end.
    let mut error_bodies = Vec::new();

    let wallets = call(
        "GET",
        &format!("{base}/wallets"),
        &[("x-admin-api-key", ADMIN_TOKEN)],
        "",
    )
    .await;
    assert_eq!(wallets.status, StatusCode::OK, "{}", wallets.json);
    let json = [("content-type", "application/json"), ("apikey", WALLET_KEY)];
    // Our own webhook fails its first (and, by its policy, only) attempt, to be redelivered.
    let own = Receiver::start(&[500]).await;
    let registered = call(
        "POST",
        &format!("{base}/events/webhooks"),
        &json,
        &serde_json::json!({
            "url": own.url(),
            "customHeaders": { "Authorization": format!("Bearer {BEARER}") },
            "retryPolicy": { "kind": "fixed", "intervalMs": 100, "maxAttempts": 1 },
        })
        .to_string(),
    )
    .await;
    assert_eq!(registered.status, StatusCode::OK, "{}", registered.json);
    let signing_secret = registered.json["secret"].as_str().unwrap().to_owned();
    let webhook = registered.json["id"].as_str().unwrap().to_owned();
    let publish = || async {
        let published = call(
            "POST",
            &format!("{base}/events"),
            &json,
            &serde_json::json!({ "type": "ConnectionUpdated", "data": connection_data() })
                .to_string(),
        )
        .await;
        assert_eq!(published.status, StatusCode::ACCEPTED, "{}", published.json);
        assert_eq!(
            published.json["deliveries"], 2,
            "the global webhook and our own"
        );
        published.json["id"].as_str().unwrap().to_owned()
    };
    let first_event = publish().await;

    let to_global = receiver.wait_for(1).await;
    assert_eq!(
        to_global[0].headers["authorization"],
        format!("Bearer {GLOBAL_KEY}").as_str()
    );
    let to_own = own.wait_for(1).await;
    assert_eq!(
        to_own[0].headers["authorization"],
        format!("Bearer {BEARER}").as_str()
    );
    assert_signed(&to_own[0], &signing_secret);
    // The first delivery to our own webhook is exhausted (one attempt, answered 500).
    let deliveries_url = format!("{base}/events/{first_event}/deliveries");
    let deadline = Instant::now() + Duration::from_secs(10);
    let delivery = loop {
        let deliveries = call("GET", &deliveries_url, &[("apikey", WALLET_KEY)], "").await;
        let exhausted = deliveries.json["contents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["webhookId"] == webhook.as_str() && d["state"] == "exhausted")
            .map(|d| d["id"].as_str().unwrap().to_owned());
        if let Some(id) = exhausted {
            break id;
        }
        assert!(Instant::now() < deadline, "{}", deliveries.json);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // Rotation: a new secret, shown once; the next delivery is signed with both.
    let rotated = call(
        "POST",
        &format!("{base}/events/webhooks/{webhook}/secret/rotate"),
        &[("apikey", WALLET_KEY)],
        "",
    )
    .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.json);
    let rotated_secret = rotated.json["secret"].as_str().unwrap().to_owned();
    publish().await;
    let to_own = own.wait_for(2).await;
    assert_signed(&to_own[1], &rotated_secret);
    assert_signed(&to_own[1], &signing_secret);
    receiver.wait_for(2).await;

    // Redelivery of the exhausted delivery.
    let redelivered = call(
        "POST",
        &format!("{base}/events/deliveries/{delivery}/redeliver"),
        &[("apikey", WALLET_KEY)],
        "",
    )
    .await;
    assert_eq!(
        redelivered.status,
        StatusCode::ACCEPTED,
        "{}",
        redelivered.json
    );
    own.wait_for(3).await;

    // A generated key, shown once, then used.
    let generated = call(
        "POST",
        &format!("{base}/wallets/00000000-0000-0000-0000-000000000000/apikeys"),
        &[("x-admin-api-key", ADMIN_TOKEN)],
        "",
    )
    .await;
    assert_eq!(generated.status, StatusCode::CREATED, "{}", generated.json);
    let generated_key = generated.json["apiKey"].as_str().unwrap().to_owned();
    let listed = call(
        "GET",
        &format!("{base}/events/webhooks"),
        &[("apikey", &generated_key)],
        "",
    )
    .await;
    assert_eq!(listed.status, StatusCode::OK);

    // Failed authentications with wrong keys, and bad bodies that carry a secret.
    let hooks = format!("{base}/events/webhooks");
    let bad_secret = format!("{}!", rotated_secret);
    // Method, URL, headers, body.
    type Refusal<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, String);
    let refusals: [Refusal; 6] = [
        (
            "GET",
            hooks.clone(),
            vec![("apikey", WRONG_WALLET_KEY)],
            String::new(),
        ),
        (
            "GET",
            format!("{base}/wallets"),
            vec![("x-admin-api-key", WRONG_ADMIN_KEY)],
            String::new(),
        ),
        (
            "GET",
            format!("{base}/wallets"),
            vec![("apikey", WALLET_KEY)],
            String::new(),
        ),
        (
            "POST",
            hooks.clone(),
            json.to_vec(),
            serde_json::json!({ "url": "http://example.com/", "secret": bad_secret }).to_string(),
        ),
        (
            "POST",
            hooks.clone(),
            json.to_vec(),
            serde_json::json!({
                "url": "http://example.com/",
                "customHeaders": { "Authorization": format!("Bearer {BEARER}\r\nX: y") },
            })
            .to_string(),
        ),
        (
            "POST",
            format!("{base}/events/webhooks/{webhook}/secret/rotate"),
            json.to_vec(),
            serde_json::json!({ "secret": bad_secret }).to_string(),
        ),
    ];
    for (method, url, headers, body) in &refusals {
        let (status, text) = answer_text(method, url, headers, body).await;
        assert!(status.is_client_error(), "{method} {url}: {status} {text}");
        error_bodies.push(text);
    }
    let (status, metrics) = {
        let (status, _, body) = crate::utils::get_text(&format!(
            "{}/metrics",
            base.trim_end_matches("/cloud-agent")
        ))
        .await;
        (status, body)
    };
    assert_eq!(status, StatusCode::OK);
    assert!(metrics.contains("webhookd_attempts_total"), "{metrics}");

    // Every outcome is recorded before the stop (debug logs each attempt).
    let deadline = Instant::now() + Duration::from_secs(10);
    while process
        .stderr
        .lock()
        .unwrap()
        .iter()
        .filter(|line| line.contains("attempt finished"))
        .count()
        < 5
    {
        assert!(Instant::now() < deadline, "the attempts were not logged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    process.signal("TERM");
    let (status, stdout, stderr) = process.exit(Duration::from_secs(20)).await;
    assert!(status.success(), "{status}");

    // `webhookd config` with the same secrets in its environment, and a database password.
    let mut config = webhookd();
    config
        .arg("config")
        .env("ADMIN_TOKEN", ADMIN_TOKEN)
        .env("DEFAULT_WALLET_AUTH_API_KEY", WALLET_KEY)
        .env("GLOBAL_WEBHOOK_URL", receiver.url())
        .env("GLOBAL_WEBHOOK_API_KEY", GLOBAL_KEY)
        .env("DEFAULT_WALLET_WEBHOOK_API_KEY", BEARER)
        .env(
            "WEBHOOKD_DATABASE_URL",
            format!("postgres://webhookd:{DB_PASSWORD}@127.0.0.1:5432/webhookd"),
        );
    let printed = finish(&mut config, b"");
    assert!(printed.status.success(), "{}", text(&printed.stderr));
    let config_output = [text(&printed.stdout), text(&printed.stderr)].join("\n");
    assert!(config_output.contains("****"), "{config_output}");

    let everything = [
        stdout.join("\n"),
        stderr.join("\n"),
        metrics,
        error_bodies.join("\n"),
        config_output,
    ]
    .join("\n");
    let secrets = [
        ADMIN_TOKEN,
        WALLET_KEY,
        GLOBAL_KEY,
        BEARER,
        WRONG_WALLET_KEY,
        WRONG_ADMIN_KEY,
        DB_PASSWORD,
        generated_key.as_str(),
        signing_secret.as_str(),
        signing_secret.trim_start_matches("whsec_"),
        rotated_secret.as_str(),
        rotated_secret.trim_start_matches("whsec_"),
    ];
    for secret in secrets {
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

    // Keys are stored hashed: neither the configured nor the generated wallet key, nor the
    // admin token, is in the database in clear. (Signing secrets and custom header values are
    // stored as given: deliveries need them in clear.)
    let url = database_url
        .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("webhookd.db").display()));
    let stored = webhook_adapters::testing::snapshot(&url).await;
    let stored = format!("{stored:?}");
    assert!(stored.contains("webhooks"), "the snapshot holds the tables");
    for key in [ADMIN_TOKEN, WALLET_KEY, generated_key.as_str()] {
        assert!(!stored.contains(key), "{key} is stored in clear");
    }
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
async fn on_mysql_serve_never_writes_a_secret_even_at_debug_level() {
    let Some(database) = MysqlTestDatabase::create().await else {
        return;
    };
    secrets_stay_out_of_the_output(Some(database.url())).await;
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
