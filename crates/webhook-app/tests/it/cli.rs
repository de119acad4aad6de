//! The `webhookd` binary's one-off commands: `migrate`, `config`, `wallet`, `apikey` and
//! `publish` on a real database, configuration errors as one line naming the setting, and
//! `--help` everywhere. The long-running commands (`serve`, `listen`) are in `running.rs`.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use hyper::StatusCode;
use webhook_adapters::MysqlTestDatabase;
use webhook_adapters::testing::PgTestSchema;
use webhook_app::store::Database;
use webhook_domain::{ApiKey, ApiKeyTag, WalletId};

use crate::utils::{Receiver, Service, assert_signed, call, connection_data, register};

/// `webhookd` with a clean environment: nothing from the developer's shell (a `WEBHOOKD_*` or
/// Identus variable, `RUST_LOG`) changes what a test sees.
pub(crate) fn webhookd() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_webhookd"));
    command.env_clear().env("RUST_LOG", "warn");
    command
}

/// Runs a command to its end (30 s at most) with `input` on its standard input.
pub(crate) fn finish(command: &mut Command, input: &[u8]) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    // Written from a thread, so that a command that does not read cannot block the test.
    std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match finished.recv_timeout(Duration::from_secs(30)) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            signal(pid, "KILL");
            panic!("webhookd did not finish within 30 s");
        }
    }
}

/// As [`finish`], from async code: the command runs on a blocking thread, so that a service
/// running on the test's runtime goes on answering meanwhile.
pub(crate) fn finish_async(
    mut command: Command,
    input: &[u8],
) -> impl Future<Output = Output> + use<> {
    let input = input.to_vec();
    async move {
        tokio::task::spawn_blocking(move || finish(&mut command, &input))
            .await
            .unwrap()
    }
}

/// Sends a signal (`TERM`, `KILL`) to a process.
pub(crate) fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name} {pid} failed");
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts a failure with exit status 1 and exactly one line on stderr, which is returned.
fn one_error_line(output: &Output) -> String {
    let err = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "not one line: {err}");
    assert!(err.starts_with("error: "), "{err}");
    err.trim_end().to_owned()
}

fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

fn on_database(database_url: &str, args: &[&str]) -> Output {
    finish(
        webhookd()
            .args(args)
            .env("WEBHOOKD_DATABASE_URL", database_url)
            .env("WEBHOOKD_LISTEN", "127.0.0.1:0"),
        b"",
    )
}

fn migrate_twice(url: &str, described: &str) {
    let first = on_database(url, &["migrate"]);
    let out = text(&first.stdout);
    assert!(first.status.success(), "{out}{}", text(&first.stderr));
    assert!(
        out.contains("applying") && out.contains("applied "),
        "{out}"
    );
    assert!(out.contains(described), "{out}");
    let again = on_database(url, &["migrate"]);
    let out = text(&again.stdout);
    assert!(again.status.success());
    assert!(
        !out.contains("applying") && out.contains("is up to date"),
        "{out}"
    );
}

#[test]
fn migrate_applies_then_reports_up_to_date_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    migrate_twice(&sqlite_url(&dir.path().join("cli.db")), "SQLite file");
}

#[tokio::test]
async fn migrate_applies_then_reports_up_to_date_on_postgres() {
    let Some(schema) = PgTestSchema::create().await else {
        return;
    };
    let url = schema.url();
    tokio::task::spawn_blocking(move || migrate_twice(&url, "PostgreSQL at 127.0.0.1"))
        .await
        .unwrap();
}

#[tokio::test]
async fn migrate_applies_then_reports_up_to_date_on_mysql() {
    let Some(database) = MysqlTestDatabase::create().await else {
        return;
    };
    let url = database.url();
    tokio::task::spawn_blocking(move || migrate_twice(&url, "MySQL at 127.0.0.1"))
        .await
        .unwrap();
}

#[test]
fn serve_without_migrating_refuses_a_database_that_is_behind() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(&dir.path().join("new.db"));
    let refused = on_database(&url, &["serve", "--no-migrate"]);
    let err = text(&refused.stderr);
    assert!(!refused.status.success());
    assert!(err.contains("webhookd migrate"), "{err}");
    assert!(err.contains("migration"), "{err}");
}

#[test]
fn an_unsupported_database_url_is_one_clear_line_without_the_password() {
    let refused = on_database("oracle://app:hunter2@db/hooks", &["migrate"]);
    let err = one_error_line(&refused);
    assert!(
        err.contains("database_url") && err.contains("oracle"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn config_prints_the_settings_in_effect_with_secrets_masked() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("webhookd.toml");
    std::fs::write(
        &file,
        "base_path = \"/hooks\"\n[dispatcher]\nbatch_size = 7\nlease_ms = 90000\n",
    )
    .unwrap();
    let secrets = [
        ("ADMIN_TOKEN", "admin-token-0f3a9c"),
        ("DEFAULT_WALLET_AUTH_API_KEY", "wallet-key-7d21e4"),
        ("GLOBAL_WEBHOOK_API_KEY", "global-key-5b88aa"),
        ("DEFAULT_WALLET_WEBHOOK_API_KEY", "default-hook-key-91c2d0"),
    ];
    let output = finish(
        webhookd()
            .arg("--config")
            .arg(&file)
            .arg("config")
            .envs(secrets)
            .env("WEBHOOKD_DISPATCHER__BATCH_SIZE", "9")
            .env(
                "WEBHOOKD_DATABASE_URL",
                "postgres://app:db-password-4e7f@db.internal:5432/hooks",
            ),
        b"",
    );
    let printed = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    for secret in secrets
        .iter()
        .map(|(_, secret)| *secret)
        .chain(["db-password-4e7f"])
    {
        assert!(!printed.contains(secret), "{secret} shown:\n{printed}");
        assert!(!text(&output.stderr).contains(secret));
    }

    let settings: toml::Table = toml::from_str(&printed).unwrap();
    let identus = settings["identus"].as_table().unwrap();
    for key in [
        "admin_token",
        "default_wallet_auth_api_key",
        "global_webhook_api_key",
        "default_wallet_webhook_api_key",
    ] {
        assert_eq!(identus[key].as_str(), Some("****"), "{key}");
    }
    assert_eq!(
        settings["database_url"].as_str(),
        Some("postgres://app:****@db.internal:5432/hooks")
    );
    // Defaults, then the file, then the environment.
    let dispatcher = settings["dispatcher"].as_table().unwrap();
    assert_eq!(dispatcher["batch_size"].as_integer(), Some(9));
    assert_eq!(dispatcher["lease_ms"].as_integer(), Some(90000));
    assert_eq!(dispatcher["attempt_timeout_ms"].as_integer(), Some(5000));
    assert_eq!(settings["base_path"].as_str(), Some("/hooks"));
    assert_eq!(settings["role"].as_str(), Some("all"));

    // Its masks are never taken for secrets.
    let masked_file = dir.path().join("masked.toml");
    std::fs::write(&masked_file, &printed).unwrap();
    let refused = finish(
        webhookd().arg("--config").arg(&masked_file).arg("serve"),
        b"",
    );
    let err = one_error_line(&refused);
    assert!(
        err.contains("\"****\" is what `webhookd config` prints in place of a secret"),
        "{err}"
    );

    // Without secrets, what is printed is a configuration file: read back alone, it prints the
    // same.
    let plain = finish(webhookd().arg("--config").arg(&file).arg("config"), b"");
    let printed = text(&plain.stdout);
    let again_file = dir.path().join("printed.toml");
    std::fs::write(&again_file, &printed).unwrap();
    let again = finish(
        webhookd().arg("--config").arg(&again_file).arg("config"),
        b"",
    );
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_eq!(text(&again.stdout), printed);
}

/// Starts `serve` in `dir` with `config` and `env`; asserts that it stops at once with one
/// line on stderr holding each of `expected`.
fn check_refused(dir: &Path, config: Option<&Path>, env: &[(&str, &str)], expected: &[&str]) {
    let mut command = webhookd();
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    command
        .arg("serve")
        .env("WEBHOOKD_DATA_DIR", dir)
        .env("WEBHOOKD_LISTEN", "127.0.0.1:0")
        .envs(env.iter().copied());
    let output = finish(&mut command, b"");
    let err = one_error_line(&output);
    for fragment in expected {
        assert!(err.contains(fragment), "{config:?} {env:?}: {err}");
    }
    assert!(text(&output.stdout).is_empty(), "{env:?}");
}

#[test]
fn invalid_configuration_stops_the_start_with_one_line_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let check = |env: &[(&str, &str)], expected: &[&str]| check_refused(dir, None, env, expected);
    check(
        &[("WEBHOOKD_DISPATCHER__BATCH_SIZE", "abc")],
        &[
            "error: dispatcher.batch_size: \"abc\" is not allowed; expected a whole number (from WEBHOOKD_DISPATCHER__BATCH_SIZE)",
        ],
    );
    check(
        &[("WEBHOOKD_DISPATCHER__BATCH_SIZE", "99999999999")],
        &[
            "error: dispatcher.batch_size: 99999999999 is out of range; expected a whole number from 0 to 4294967295 (from WEBHOOKD_DISPATCHER__BATCH_SIZE)",
        ],
    );
    check(
        &[("WEBHOOKD_LISTEN", "localhost:8080")],
        &[
            "error: listen: \"localhost:8080\" is not an address; write IP:port",
            "such as 127.0.0.1:8080",
            "(from WEBHOOKD_LISTEN)",
        ],
    );
    check(
        &[("WEBHOOKD_API__MAX_JSON_DEPTH", "500")],
        &[
            "error: api.max_json_depth: must be between 2 and 128, got 500 (from WEBHOOKD_API__MAX_JSON_DEPTH)",
        ],
    );
    check(
        &[("WEBHOOKD_ROLE", "both")],
        &["error: role: \"both\" is not a role; use all, api or dispatcher"],
    );
    check(
        &[("WEBHOOKD_TRANSPORT__ALLOWED_CIDRS", "localhost")],
        &[
            "error: transport.allowed_cidrs: ",
            "(from WEBHOOKD_TRANSPORT__ALLOWED_CIDRS)",
        ],
    );

    let file = |name: &str, contents: &str| {
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    };
    let unknown = file("unknown.toml", "[dispatcher]\nbatchsize = 3\n");
    check_refused(
        dir,
        Some(&unknown),
        &[],
        &[
            "error: dispatcher.batchsize: unknown setting; expected one of batch_size, ",
            &format!("(in {})", unknown.display()),
        ],
    );
    let broken = file("broken.toml", "listen = \"127.0.0.1:8080\nrole = \"api\"\n");
    check_refused(
        dir,
        Some(&broken),
        &[],
        &[&format!(
            "error: configuration file {}: not valid TOML at line 1, column ",
            broken.display()
        )],
    );
    let missing = dir.join("missing.toml");
    check_refused(
        dir,
        Some(&missing),
        &[],
        &[&format!(
            "error: configuration file {}: cannot be read",
            missing.display()
        )],
    );
    // Nothing was started: no database was created.
    assert!(!dir.join("webhookd.db").exists());
}

#[test]
fn every_command_has_help_and_the_binary_a_version() {
    let commands: &[&[&str]] = &[
        &[],
        &["serve"],
        &["migrate"],
        &["openapi"],
        &["config"],
        &["listen"],
        &["publish"],
        &["wallet"],
        &["wallet", "create"],
        &["wallet", "list"],
        &["apikey"],
        &["apikey", "create"],
    ];
    for command in commands {
        let output = finish(webhookd().args(*command).arg("--help"), b"");
        let help = text(&output.stdout);
        assert!(
            output.status.success(),
            "{command:?}: {}",
            text(&output.stderr)
        );
        let usage = ["webhookd"]
            .iter()
            .chain(command.iter())
            .copied()
            .collect::<Vec<_>>()
            .join(" ");
        assert!(help.contains(&format!("Usage: {usage}")), "{help}");
        assert!(help.contains("--log-format"), "{command:?}: {help}");
    }
    let serve = text(&finish(webhookd().args(["serve", "--help"]), b"").stdout);
    assert!(serve.contains("--api-only") && serve.contains("--dispatcher-only"));

    let output = finish(webhookd().arg("--version"), b"");
    assert!(output.status.success());
    assert_eq!(
        text(&output.stdout).trim(),
        format!("webhookd {}", env!("CARGO_PKG_VERSION"))
    );
}

/// `key: value` lines of a command's standard output.
fn field(output: &Output, name: &str) -> String {
    let out = text(&output.stdout);
    out.lines()
        .find_map(|line| line.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name} in {out}{}", text(&output.stderr)))
        .to_owned()
}

#[tokio::test]
async fn wallets_and_api_keys_are_made_on_the_database_directly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("operator.db");
    let url = sqlite_url(&path);
    let run = |args: &[&str]| {
        let mut command = webhookd();
        command.args(args).env("WEBHOOKD_DATABASE_URL", &url);
        finish_async(command, b"")
    };

    let created = run(&["wallet", "create", "acme corp"]).await;
    assert!(created.status.success(), "{}", text(&created.stderr));
    let wallet: WalletId = field(&created, "wallet").parse().unwrap();
    assert_eq!(field(&created, "name"), "acme corp");
    let other = run(&["wallet", "create", "other"]).await;
    assert!(other.status.success());

    let listed = run(&["wallet", "list"]).await;
    let lines: Vec<String> = text(&listed.stdout).lines().map(str::to_owned).collect();
    assert!(listed.status.success());
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines[0].starts_with("id "), "{lines:?}");
    assert!(
        lines[1].starts_with(&wallet.to_string()) && lines[1].ends_with("  acme corp"),
        "{lines:?}"
    );
    assert!(lines[2].ends_with("  other"), "{lines:?}");

    let made = run(&["apikey", "create", &wallet.to_string()]).await;
    assert!(made.status.success(), "{}", text(&made.stderr));
    assert_eq!(field(&made, "wallet"), wallet.to_string());
    let key = ApiKey::parse(&field(&made, "apikey")).unwrap();

    // Stored as a salted hash only.
    let database = Database::parse(&sqlite_url(&path)).unwrap();
    let store = webhook_app::store::Store::open(&database, 1).await.unwrap();
    let stored = store
        .wallets()
        .find_api_keys(ApiKeyTag::of(&key))
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].wallet_id, wallet);
    assert!(stored[0].hash.matches(&key));
    let snapshot = tokio::task::spawn_blocking(move || webhook_adapters::snapshot::sqlite(&path))
        .await
        .unwrap();
    assert!(
        snapshot.values().all(|table| !table.contains(key.expose())),
        "the key is stored in clear"
    );

    // The key opens its wallet through the API.
    let service = Service::start_with(crate::utils::Backend::Sqlite, |s| {
        s.database_url = url.clone();
    })
    .await
    .unwrap();
    let answer = call(
        "GET",
        &service.url("/events/webhooks"),
        &[("apikey", key.expose())],
        "",
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);

    // Mistakes are one line.
    let unknown = run(&["apikey", "create", "3f8e5a52-1f6b-4c8e-9d1e-5b0c2a7d9e11"]).await;
    let err = one_error_line(&unknown);
    assert!(
        err.contains("wallet 3f8e5a52-1f6b-4c8e-9d1e-5b0c2a7d9e11: not found"),
        "{err}"
    );
    let unnamed = run(&["wallet", "create", ""]).await;
    assert!(one_error_line(&unnamed).contains("name: must be 1 to 128 characters"));
    let not_an_id = run(&["apikey", "create", "acme"]).await;
    assert_eq!(
        not_an_id.status.code(),
        Some(2),
        "{}",
        text(&not_an_id.stderr)
    );
}

#[tokio::test]
async fn publish_stores_an_event_that_the_dispatcher_delivers() {
    let service = Service::start().await;
    let receiver = Receiver::start(&[]).await;
    let hook = register(&service, &receiver.url()).await;
    let database = service.settings.database().unwrap();
    assert_eq!(database.backend(), "SQLite", "the service runs on SQLite");
    let url = database.url().to_owned();
    let publish = |args: &[&str], input: &[u8]| {
        let mut command = webhookd();
        command
            .arg("publish")
            .args(args)
            .env("WEBHOOKD_DATABASE_URL", &url);
        finish_async(command, input)
    };

    // From a file.
    let data = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(data.path(), connection_data().to_string()).unwrap();
    let published = publish(
        &[
            "--type",
            "ConnectionUpdated",
            &data.path().to_string_lossy(),
        ],
        b"",
    )
    .await;
    assert!(published.status.success(), "{}", text(&published.stderr));
    let id = field(&published, "event");
    assert_eq!(field(&published, "deliveries"), "1");
    let got = receiver.wait_for(1).await;
    assert_eq!(got[0].headers["webhook-id"], id.as_str());
    assert_signed(&got[0], &hook.secret);
    let envelope: serde_json::Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(envelope["type"], "ConnectionUpdated");
    assert_eq!(envelope["data"], connection_data());
    assert_eq!(envelope["walletId"], WalletId::DEFAULT.to_string());

    // From standard input, of a type of one's own, into a named wallet.
    let published = publish(
        &[
            "--type",
            "app.order-shipped",
            "--wallet",
            &WalletId::DEFAULT.to_string(),
        ],
        br#"{"order": 42}"#,
    )
    .await;
    assert!(published.status.success(), "{}", text(&published.stderr));
    let got = receiver.wait_for(2).await;
    let envelope: serde_json::Value = serde_json::from_slice(&got[1].body).unwrap();
    assert_eq!(envelope["id"], field(&published, "event").as_str());
    assert_eq!(envelope["data"], serde_json::json!({ "order": 42 }));

    // Bad input is one line, and stores nothing. The snapshot is taken once both outcomes are
    // stored: the receiver gets a request before the dispatcher records its answer.
    let outbox = service.store().await.outbox();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let deliveries = outbox
            .list_deliveries(
                WalletId::DEFAULT,
                webhook_ports::DeliveryFilter {
                    webhook_id: Some(hook.id),
                    state: Some(webhook_domain::DeliveryStateKind::Delivered),
                    ..webhook_ports::DeliveryFilter::default()
                },
                webhook_ports::Page::first(10),
            )
            .await
            .unwrap();
        if deliveries.len() == 2 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{deliveries:?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let before = service.snapshot().await;
    for (args, input, expected) in [
        (
            &["--type", "app.thing"][..],
            &b"{\"order\": "[..],
            "error: data: not JSON: ",
        ),
        (
            &["--type", "ConnectionUpdated"][..],
            &b"{}"[..],
            "error: data.",
        ),
        (&["--type", "not a type"][..], &b"{}"[..], "error: type"),
        (
            &[
                "--type",
                "app.thing",
                "--wallet",
                "3f8e5a52-1f6b-4c8e-9d1e-5b0c2a7d9e11",
            ][..],
            &b"{}"[..],
            "error: wallet 3f8e5a52-1f6b-4c8e-9d1e-5b0c2a7d9e11: not found",
        ),
    ] {
        let refused = publish(args, input).await;
        let err = one_error_line(&refused);
        assert!(err.starts_with(expected), "{args:?}: {err}");
    }
    assert_eq!(service.snapshot().await, before);
}
