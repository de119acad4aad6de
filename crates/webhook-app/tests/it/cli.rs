//! The `webhookd` binary's database commands: `migrate` applies and reports the migrations,
//! `serve --no-migrate` refuses a database that is behind, and an unsupported URL is one clear
//! line.

use std::process::{Command, Output};

use webhook_adapters::testing::PgTestSchema;

fn webhookd(database_url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_webhookd"))
        .args(args)
        .env("WEBHOOKD_DATABASE_URL", database_url)
        .env("WEBHOOKD_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn migrate_twice(url: &str, described: &str) {
    let first = webhookd(url, &["migrate"]);
    let out = text(&first.stdout);
    assert!(first.status.success(), "{out}{}", text(&first.stderr));
    assert!(
        out.contains("applying") && out.contains("applied "),
        "{out}"
    );
    assert!(out.contains(described), "{out}");
    let again = webhookd(url, &["migrate"]);
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
    let path = dir.path().join("cli.db");
    migrate_twice(&format!("sqlite://{}", path.display()), "SQLite file");
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

#[test]
fn serve_without_migrating_refuses_a_database_that_is_behind() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("new.db").display());
    let refused = webhookd(&url, &["serve", "--no-migrate"]);
    let err = text(&refused.stderr);
    assert!(!refused.status.success());
    assert!(err.contains("webhookd migrate"), "{err}");
    assert!(err.contains("migration"), "{err}");
}

#[test]
fn an_unsupported_database_url_is_one_clear_line_without_the_password() {
    let refused = webhookd("mysql://app:hunter2@db/hooks", &["migrate"]);
    let err = text(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        err.contains("database_url") && err.contains("mysql"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
