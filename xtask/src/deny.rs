//! `cargo xtask deny [--require-advisories]`: the supply-chain check with cargo-deny and the
//! root `deny.toml`, for the workspace and for `fuzz/` (its own `Cargo.lock`).
//!
//! Licences, bans and sources need nothing but the lock files, so they always run. Advisories
//! need the RustSec database, a git repository on GitHub: when it cannot be fetched within
//! [`FETCH_TIMEOUT`], the task says in capitals that advisories were NOT checked and why, and
//! fails only under `--require-advisories`. It never passes over them in silence.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::cargo_tools::{PinnedTool, run_command};

const CARGO_DENY: PinnedTool = PinnedTool {
    package: "cargo-deny",
    subcommand: "deny",
    version: "0.20.2",
};

const ADVISORY_DB: &str = "https://github.com/rustsec/advisory-db";
/// Long enough for a shallow clone of the database on a slow link; short enough not to stall CI
/// where the host does not answer.
const FETCH_TIMEOUT: Duration = Duration::from_secs(60);

/// The dependency trees checked: the workspace, and the fuzz targets'. `allow` silences lints
/// that only say a tree lacks something `deny.toml` allows for the other one.
const TREES: &[(&str, &[&str])] = &[
    ("Cargo.toml", &["license-exception-not-encountered"]),
    (
        "fuzz/Cargo.toml",
        &[
            "license-not-encountered",
            "license-exception-not-encountered",
        ],
    ),
];

pub(crate) fn deny(require_advisories: bool) -> anyhow::Result<()> {
    CARGO_DENY.ensure_installed()?;
    for (manifest, allow) in TREES {
        run_command(check(manifest, allow, &["licenses", "bans", "sources"]))?;
    }
    match fetch_advisory_db() {
        Ok(()) => {
            for (manifest, allow) in TREES {
                run_command(check(manifest, allow, &["advisories"]))?;
            }
            eprintln!("deny: licences, bans, sources and advisories checked");
            Ok(())
        }
        Err(why) => {
            eprintln!(
                "deny: ADVISORIES NOT CHECKED: the RustSec advisory database ({ADVISORY_DB}) \
                 could not be fetched: {why:#}"
            );
            eprintln!(
                "deny: licences, bans and sources were checked; known vulnerabilities were \
                 not. Run `cargo xtask deny` where GitHub is reachable."
            );
            if require_advisories {
                bail!("deny: --require-advisories was given and advisories could not be checked");
            }
            Ok(())
        }
    }
}

fn check(manifest: &str, allow: &[&str], checks: &[&str]) -> Command {
    let mut command = CARGO_DENY.command(&[
        "--locked",
        "--manifest-path",
        manifest,
        "--config",
        "deny.toml",
    ]);
    command.args(["check", "--hide-inclusion-graph"]);
    for lint in allow {
        command.args(["--allow", lint]);
    }
    command.args(checks);
    command
}

/// `cargo deny fetch db`, given up after [`FETCH_TIMEOUT`]; the error says why it failed.
fn fetch_advisory_db() -> anyhow::Result<()> {
    eprintln!("deny: fetching the advisory database (at most {FETCH_TIMEOUT:?})");
    let mut child = CARGO_DENY
        .command(&["fetch", "db"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run cargo deny fetch db")?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().context("cannot wait for cargo deny")? {
            break status;
        }
        if started.elapsed() > FETCH_TIMEOUT {
            // Only this child, which this task started, is stopped.
            child.kill().context("cannot stop cargo deny fetch")?;
            child.wait().context("cannot wait for cargo deny")?;
            bail!("no answer within {FETCH_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if status.success() {
        return Ok(());
    }
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        pipe.read_to_string(&mut stderr).ok();
    }
    // git's last line names the cause, such as "Could not resolve host: github.com".
    let cause = stderr
        .lines()
        .rev()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .unwrap_or("no message");
    bail!("cargo deny fetch db failed ({status}): {cause}")
}
