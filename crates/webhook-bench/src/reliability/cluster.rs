//! A throwaway PostgreSQL cluster that the outage scenario owns: made with `initdb` in a
//! temporary directory, listening on a free port of 127.0.0.1 only, with `fsync` on, and
//! stopped and started at will. It never touches the shared server on port 5432. Dropping it
//! stops the server (immediate mode) and removes the directory.
//!
//! PostgreSQL refuses to run as root, so when the harness is root the server's programs run
//! as the `postgres` user (`runuser`), which then owns the directory.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::webhookd::free_port;

/// A running (or stopped) cluster of our own.
#[derive(Debug)]
pub(crate) struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    as_postgres: bool,
}

impl Cluster {
    /// Creates and starts a cluster. Blocking: call it from `spawn_blocking`.
    pub(crate) fn create() -> anyhow::Result<Self> {
        let bin = server_bin_dir()?;
        let dir = tempfile::Builder::new()
            .prefix("webhookd-outage-")
            .tempdir()?;
        // `/proc/self` belongs to the effective user of this process.
        let as_postgres = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
        if as_postgres {
            run(Command::new("chown").arg("postgres:").arg(dir.path()))
                .context("cannot give the cluster directory to the postgres user")?;
        }
        let cluster = Self {
            bin,
            dir,
            port: free_port()?,
            as_postgres,
        };
        let data = cluster.data();
        cluster
            .run_tool(
                "initdb",
                &[
                    "-D",
                    &data,
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-instructions",
                ],
            )
            .context("initdb failed")?;
        cluster.start()?;
        Ok(cluster)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// `postgres://` URL of its `postgres` database.
    pub(crate) fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// The postmaster's pid, from the first line of `postmaster.pid`, while it runs.
    pub(crate) fn postmaster_pid(&self) -> Option<u32> {
        let text =
            std::fs::read_to_string(self.dir.path().join("data").join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// Starts the server and waits until it accepts connections. Blocking.
    pub(crate) fn start(&self) -> anyhow::Result<()> {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -c unix_socket_directories={} -c fsync=on \
             -c synchronous_commit=on -c max_connections=50",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log").display().to_string();
        self.run_tool(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log,
                "-o",
                &options,
                "-w",
                "-t",
                "30",
                "start",
            ],
        )
        .with_context(|| {
            format!(
                "pg_ctl start failed; the server log ends:\n{}",
                self.log_tail()
            )
        })
    }

    /// Stops the server in fast mode (it disconnects every client, rolls back their
    /// transactions and shuts down cleanly) and waits until it is gone. Blocking.
    pub(crate) fn stop(&self) -> anyhow::Result<()> {
        self.run_tool(
            "pg_ctl",
            &["-D", &self.data(), "-m", "fast", "-w", "-t", "30", "stop"],
        )
        .context("pg_ctl stop failed")
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    fn run_tool(&self, tool: &str, args: &[&str]) -> anyhow::Result<()> {
        let program = self.bin.join(tool);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        // The server's working directory must be one the postgres user may enter.
        command.args(args).current_dir(self.dir.path());
        run(&mut command)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.run_tool(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
    }
}

/// Runs a command, failing with its output when it fails.
fn run(command: &mut Command) -> anyhow::Result<()> {
    let output = command
        .output()
        .with_context(|| format!("cannot run {:?}", command.get_program()))?;
    if !output.status.success() {
        bail!(
            "{:?} failed ({}): {}{}",
            command.get_program(),
            output.status,
            String::from_utf8_lossy(&output.stdout).trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// The newest server's programs under `/usr/lib/postgresql/<major>/bin` (Debian's layout),
/// where `initdb` and `pg_ctl` live.
fn server_bin_dir() -> anyhow::Result<PathBuf> {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .with_context(|| {
            format!(
                "no {}: install the PostgreSQL server (Debian: postgresql) to run pg-outage",
                root.display()
            )
        })?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((major, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).with_context(|| {
        format!(
            "no initdb under {}/<version>/bin: install the PostgreSQL server",
            root.display()
        )
    })
}
