//! `cargo xtask db`: makes sure the PostgreSQL server that the tests and benchmarks use
//! answers at 127.0.0.1:5432, starting this machine's cluster the way `.ci/run` does when it
//! does not, and prints its version.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

const HOST: &str = "127.0.0.1";
const PORT: &str = "5432";
/// How long a starting server may take to answer.
const START_WAIT: Duration = Duration::from_secs(30);

pub(crate) fn ensure_running() -> anyhow::Result<()> {
    if answers()? {
        println!("PostgreSQL answers at {HOST}:{PORT}");
    } else {
        let cluster = cluster_version()?;
        println!("PostgreSQL does not answer at {HOST}:{PORT}: starting cluster {cluster}/main");
        // As in .ci/run, a failed start is not the end: the server may already be starting.
        if let Err(e) = crate::run(
            "pg_ctlcluster",
            &["--skip-systemctl-redirect", &cluster, "main", "start"],
        ) {
            eprintln!("warning: {e:#}; waiting for the server all the same");
        }
        wait_until_it_answers()?;
        println!("PostgreSQL answers at {HOST}:{PORT}");
    }
    let output = Command::new("psql")
        .args([
            "-h",
            HOST,
            "-p",
            PORT,
            "-U",
            "postgres",
            "-tAc",
            "select version()",
        ])
        .output()
        .context("cannot run psql: install the PostgreSQL client (Debian: postgresql-client)")?;
    if !output.status.success() {
        bail!(
            "psql -U postgres cannot query the server: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    println!("{}", String::from_utf8_lossy(&output.stdout).trim());
    Ok(())
}

/// Whether the server accepts connections, by `pg_isready`.
fn answers() -> anyhow::Result<bool> {
    let status = Command::new("pg_isready")
        .args(["-h", HOST, "-p", PORT, "-q"])
        .status()
        .context(
            "cannot run pg_isready: install the PostgreSQL client (Debian: postgresql-client)",
        )?;
    Ok(status.success())
}

fn wait_until_it_answers() -> anyhow::Result<()> {
    let step = Duration::from_secs(1);
    let mut waited = Duration::ZERO;
    while waited < START_WAIT {
        std::thread::sleep(step);
        waited += step;
        if answers()? {
            return Ok(());
        }
    }
    bail!(
        "PostgreSQL still does not answer at {HOST}:{PORT} after {}s; see /var/log/postgresql/",
        START_WAIT.as_secs()
    )
}

/// The installed server's major version: the one directory under `/etc/postgresql` (Debian's
/// layout), or the highest when there are several.
fn cluster_version() -> anyhow::Result<String> {
    let entries = std::fs::read_dir("/etc/postgresql").context(
        "no /etc/postgresql: install the server (Debian: postgresql), or start yours by hand",
    )?;
    let mut versions: Vec<(u32, String)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter_map(|name| Some((name.split('.').next()?.parse().ok()?, name)))
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, name)) => Ok(name),
        None => bail!("/etc/postgresql holds no cluster version: install the server"),
    }
}
