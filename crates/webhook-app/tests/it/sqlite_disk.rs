//! A full disk and a read-only database under the real `webhookd` on SQLite: publishing answers
//! a 503 problem that says what is wrong and stores nothing, the process keeps running, the
//! file stays sound (`PRAGMA integrity_check`), and once the disk has room again (or the file is
//! writable again) publishing and delivery resume with no acknowledged event lost.
//!
//! How the faults are made without mounting anything:
//! - A full disk: the running child's soft `RLIMIT_FSIZE` is lowered (`prlimit`, util-linux) to
//!   the size its database files have, so any write that would grow them fails with `EFBIG`
//!   (the child ignores SIGXFSZ, see `child.rs`), and raised again for the recovery. SQLite
//!   reports `EFBIG` as a failed write (`SQLITE_IOERR`), not as `SQLITE_FULL` (which it keeps for
//!   `ENOSPC`); both are refusals, and the unit tests of `webhook_adapters`' `sqlite::errors`
//!   cover `SQLITE_FULL` with SQLite's `max_page_count`.
//! - A read-only database: `chattr +i` on its files. `chmod 0444` does not do: root ignores
//!   permission bits, and an open file stays writable through its descriptor whatever its mode,
//!   whereas an immutable file refuses writes through descriptors already open (`EPERM`) and
//!   refuses to be opened for writing. It takes `CAP_LINUX_IMMUTABLE`; without it (CI as a
//!   plain user) that test says so and skips.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hyper::StatusCode;
use serde_json::json;

use crate::child::Webhookd;
use crate::utils::{Answer, Receiver};

/// Short leases and timeouts: an outcome that could not be recorded while the disk was full is
/// attempted again soon after.
const SETTINGS: [(&str, &str); 3] = [
    ("WEBHOOKD_DISPATCHER__LEASE_MS", "3000"),
    ("WEBHOOKD_DISPATCHER__ATTEMPT_TIMEOUT_MS", "1000"),
    ("WEBHOOKD_DISPATCHER__POLL_INTERVAL_MS", "100"),
];

/// The database files of a child whose data directory is `dir`, those that exist.
fn database_files(dir: &Path) -> Vec<PathBuf> {
    ["webhookd.db", "webhookd.db-wal", "webhookd.db-shm"]
        .iter()
        .map(|name| dir.join(name))
        .filter(|path| path.exists())
        .collect()
}

/// The files of [`database_files`] that may be made immutable under a running webhookd: all
/// but the `-shm` index, which SQLite maps into memory and writes through that mapping. The
/// kernel answers a write fault on a mapped page of an immutable file with `SIGBUS`, a signal
/// that kills any process and that no program can turn into an error; seen here as a silent
/// exit under load, when the first write to a page came after `chattr`. The database and its
/// WAL, which SQLite writes with system calls, are what a read-only disk refuses.
fn written_database_files(dir: &Path) -> Vec<PathBuf> {
    database_files(dir)
        .into_iter()
        .filter(|path| path.extension().is_none_or(|e| e != "db-shm"))
        .collect()
}

/// Sets the soft file-size limit of process `pid` (`None`: unlimited). Only the soft one, which
/// needs no privilege to lower or to raise again up to the hard one.
fn limit_file_size(pid: u32, limit: Option<u64>) {
    let value = limit.map_or_else(|| "unlimited".to_owned(), |bytes| bytes.to_string());
    let status = Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--fsize={value}:")])
        .status()
        .expect("prlimit (util-linux) runs");
    assert!(status.success(), "prlimit --fsize={value}: failed");
}

/// Files made immutable (`chattr +i`) until dropped, so that a failing test leaves nothing a
/// temporary directory could not remove.
struct Immutable(Vec<PathBuf>);

impl Immutable {
    /// `None` when `chattr` is refused (no `CAP_LINUX_IMMUTABLE`, or a file system without the
    /// attribute).
    fn make(paths: Vec<PathBuf>) -> Option<Immutable> {
        let mut done = Immutable(Vec::new());
        for path in paths {
            let status = Command::new("chattr").arg("+i").arg(&path).status().ok()?;
            if !status.success() {
                return None;
            }
            done.0.push(path);
        }
        Some(done)
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = Command::new("chattr").arg("-i").arg(path).status();
        }
    }
}

/// Publishes one event whose data is padded to about 60 KB, so that a few fill what a file
/// may still take.
async fn publish_padded(webhookd: &Webhookd, n: usize) -> Answer {
    webhookd
        .post(
            "/events",
            &json!({ "type": "disk.test", "data": { "n": n, "pad": "x".repeat(60_000) } }),
        )
        .await
}

/// A 503 problem that says the database refused to store anything.
fn assert_refused(answer: &Answer) {
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        answer.json
    );
    assert_eq!(answer.content_type, "application/json");
    let detail = answer.json["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("nothing was stored") && detail.contains("writes resume"),
        "the detail says what is wrong: {}",
        answer.json
    );
}

/// Publishes until one is acknowledged (up to 10 s), then `more`; every acknowledged id.
async fn publish_after_recovery(webhookd: &Webhookd, more: usize) -> (Vec<String>, Duration) {
    let lifted = Instant::now();
    let mut acknowledged = Vec::new();
    loop {
        let answer = publish_padded(webhookd, 0).await;
        if answer.status == StatusCode::ACCEPTED {
            acknowledged.push(answer.json["id"].as_str().unwrap().to_owned());
            break;
        }
        assert_refused(&answer);
        assert!(
            lifted.elapsed() < Duration::from_secs(10),
            "publishing still refused 10 s after the fault was lifted: {}",
            answer.json
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let recovered_in = lifted.elapsed();
    for n in 0..more {
        let answer = publish_padded(webhookd, n).await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.json);
        acknowledged.push(answer.json["id"].as_str().unwrap().to_owned());
    }
    (acknowledged, recovered_in)
}

/// Waits (up to 30 s) until `receiver` has every acknowledged event and the delivery log says
/// each delivery is delivered; returns the duplicates the receiver saw. The webhook's
/// deliveries number exactly the acknowledged events: a refused publish stored none.
async fn assert_all_delivered(
    webhookd: &Webhookd,
    receiver: &Receiver,
    webhook: &str,
    acknowledged: &HashSet<String>,
) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = receiver.received();
        let ids: HashSet<String> = got
            .iter()
            .map(|r| r.headers["webhook-id"].to_str().unwrap().to_owned())
            .collect();
        let (deliveries, delivered) = webhookd.deliveries(webhook).await;
        if ids.is_superset(acknowledged) && delivered == deliveries.len() {
            assert_eq!(
                deliveries.len(),
                acknowledged.len(),
                "one delivery per acknowledged event, none for a refused one"
            );
            assert_eq!(&ids, acknowledged, "only acknowledged events were sent");
            return got.len() - ids.len();
        }
        assert!(
            Instant::now() < deadline,
            "after 30 s: {} of {} acknowledged events received, {delivered} of {} deliveries \
             delivered",
            ids.intersection(acknowledged).count(),
            acknowledged.len(),
            deliveries.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn register(webhookd: &Webhookd, receiver: &Receiver) -> String {
    let created = webhookd
        .post(
            "/events/webhooks",
            &json!({
                "url": receiver.url(),
                "retryPolicy": { "kind": "fixed", "intervalMs": 200, "maxAttempts": 50 },
            }),
        )
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.json);
    created.json["id"].as_str().unwrap().to_owned()
}

/// `webhookd serve` on `dir` with a webhook to `receiver` and ten events acknowledged: the
/// webhook's id and the events' ids.
async fn serve_with_ten_events(
    dir: &Path,
    receiver: &Receiver,
) -> (Webhookd, String, HashSet<String>) {
    let webhookd = tokio::task::block_in_place(|| Webhookd::serve(dir, &SETTINGS));
    let webhook = register(&webhookd, receiver).await;
    let mut acknowledged = HashSet::new();
    for n in 0..10 {
        let answer = publish_padded(&webhookd, n).await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.json);
        acknowledged.insert(answer.json["id"].as_str().unwrap().to_owned());
    }
    (webhookd, webhook, acknowledged)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_publishes_clearly_and_recovers_without_loss() {
    let receiver = Receiver::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let (mut webhookd, webhook, mut acknowledged) =
        serve_with_ten_events(dir.path(), &receiver).await;

    // No file may grow any more: the disk is full. Writes into space a file already has (a WAL
    // being reused) still succeed, so publish until the files must grow.
    let room = database_files(dir.path())
        .iter()
        .map(|path| std::fs::metadata(path).unwrap().len())
        .max()
        .unwrap();
    limit_file_size(webhookd.pid(), Some(room));
    let mut refused = 0;
    let mut published = acknowledged.len();
    let mut first_refusal = None;
    for n in 0..400 {
        let answer = publish_padded(&webhookd, n).await;
        published += 1;
        if answer.status == StatusCode::ACCEPTED {
            assert_eq!(refused, 0, "a publish was acknowledged after a refusal");
            acknowledged.insert(answer.json["id"].as_str().unwrap().to_owned());
            continue;
        }
        assert_refused(&answer);
        refused += 1;
        first_refusal.get_or_insert(answer.json["detail"].as_str().unwrap().to_owned());
        if refused == 5 {
            break;
        }
    }
    assert_eq!(
        refused, 5,
        "400 publishes of 60 KB fitted under a full disk"
    );
    assert!(webhookd.is_running(), "webhookd exited on a full disk");
    assert_eq!(webhookd.health().await, StatusCode::OK);

    limit_file_size(webhookd.pid(), None);
    let (more, recovered_in) = publish_after_recovery(&webhookd, 10).await;
    published += more.len();
    acknowledged.extend(more);
    let duplicates = assert_all_delivered(&webhookd, &receiver, &webhook, &acknowledged).await;
    let peak_kib = webhookd.peak_rss_kib();
    let logged = webhookd.stderr().join("\n");
    assert!(
        logged.contains("could not be written"),
        "the log names the refusal:\n{logged}"
    );
    assert!(
        tokio::task::block_in_place(|| webhookd.terminate()),
        "webhookd did not exit cleanly after the disk filled up"
    );
    let integrity = tokio::task::spawn_blocking({
        let path = dir.path().join("webhookd.db");
        move || webhook_adapters::snapshot::sqlite_integrity(&path)
    })
    .await
    .unwrap();
    assert_eq!(integrity, ["ok"]);
    eprintln!(
        "disk full: {published} publishes, {} acknowledged, {refused} refused with 503 \
         ({:?}), publishing again {} ms after space returned; {} delivered, 0 lost, \
         {duplicates} duplicates; integrity_check ok; peak RSS {} MiB",
        acknowledged.len(),
        first_refusal.unwrap_or_default(),
        recovered_in.as_millis(),
        acknowledged.len(),
        peak_kib / 1024,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_database_refuses_publishes_clearly_and_recovers_without_loss() {
    let receiver = Receiver::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let (mut webhookd, webhook, mut acknowledged) =
        serve_with_ten_events(dir.path(), &receiver).await;
    receiver.wait_for(10).await;

    // While it runs: its open files turn read-only under it.
    let Some(read_only) = Immutable::make(written_database_files(dir.path())) else {
        eprintln!("read-only database: skipped, chattr +i is not permitted here");
        return;
    };
    let answer = publish_padded(&webhookd, 0).await;
    assert_refused(&answer);
    let running_refusal = answer.json["detail"].as_str().unwrap().to_owned();
    assert!(webhookd.is_running(), "webhookd exited on a read-only file");
    assert_eq!(webhookd.health().await, StatusCode::OK);
    drop(read_only);
    let (more, recovered_in) = publish_after_recovery(&webhookd, 5).await;
    acknowledged.extend(more);
    assert_all_delivered(&webhookd, &receiver, &webhook, &acknowledged).await;
    assert!(tokio::task::block_in_place(|| webhookd.terminate()));

    // At start: a read-only file is refused at once, with a message that says so.
    let read_only = Immutable::make(database_files(dir.path())).unwrap();
    let refused = tokio::task::block_in_place(|| Webhookd::try_serve(dir.path(), &SETTINGS));
    let Err(start_error) = refused else {
        panic!("webhookd started on a read-only database");
    };
    assert!(
        start_error.contains("read-only") || start_error.contains("readonly"),
        "the start-up error says the database is read-only:\n{start_error}"
    );
    drop(read_only);
    let integrity = tokio::task::spawn_blocking({
        let path = dir.path().join("webhookd.db");
        move || webhook_adapters::snapshot::sqlite_integrity(&path)
    })
    .await
    .unwrap();
    assert_eq!(integrity, ["ok"]);
    let webhookd = tokio::task::block_in_place(|| Webhookd::serve(dir.path(), &SETTINGS));
    let (more, _) = publish_after_recovery(&webhookd, 0).await;
    acknowledged.extend(more);
    // The receiver's count covers both runs.
    let duplicates = assert_all_delivered(&webhookd, &receiver, &webhook, &acknowledged).await;
    eprintln!(
        "read-only database: running: 503 ({running_refusal:?}), publishing again {} ms after \
         chattr -i; at start: refused ({:?}); {} acknowledged, {} delivered, 0 lost, \
         {duplicates} duplicates; integrity_check ok",
        recovered_in.as_millis(),
        start_error.lines().last().unwrap_or_default(),
        acknowledged.len(),
        acknowledged.len(),
    );
}
