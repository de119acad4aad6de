//! The service under test: the real `webhookd` binary as a child process, configured through
//! its environment alone, on a fresh database; killed when its handle is dropped (an error, a
//! panic or Ctrl-C in the harness included), so no run leaves one behind.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use hyper::StatusCode;
use webhook_adapters::testing::PgTestSchema;

use crate::api::{ADMIN_TOKEN, Api, DEFAULT_WALLET_KEY, Http};
use crate::procfs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "SQLite",
            Self::Postgres => "PostgreSQL",
        }
    }

    /// The backends a `--backends sqlite,postgres` list names (case aside); all without one.
    pub(crate) fn named(list: Option<&[String]>) -> Vec<Self> {
        [(Self::Sqlite, "sqlite"), (Self::Postgres, "postgres")]
            .into_iter()
            .filter(|(_, name)| {
                list.is_none_or(|list| list.iter().any(|b| b.eq_ignore_ascii_case(name)))
            })
            .map(|(backend, _)| backend)
            .collect()
    }
}

/// A fresh, empty database: a temporary directory for SQLite, or a schema of its own in the
/// `webhookd_test` database for PostgreSQL. Dropping it removes it. `External` is a database
/// that someone else owns and removes (the reliability harness's own PostgreSQL cluster),
/// named by its URL.
#[derive(Debug)]
pub(crate) enum Database {
    Sqlite(tempfile::TempDir),
    Postgres(PgTestSchema),
    External(String),
}

impl Database {
    pub(crate) async fn fresh(backend: Backend) -> anyhow::Result<Self> {
        Ok(match backend {
            Backend::Sqlite => Self::Sqlite(
                tempfile::Builder::new()
                    .prefix("webhookd-bench-")
                    .tempdir()?,
            ),
            Backend::Postgres => Self::Postgres(
                PgTestSchema::create()
                    .await
                    .context("PostgreSQL stopped answering")?,
            ),
        })
    }

    fn setting(&self) -> (&'static str, String) {
        match self {
            Self::Sqlite(dir) => ("WEBHOOKD_DATA_DIR", dir.path().display().to_string()),
            Self::Postgres(schema) => ("WEBHOOKD_DATABASE_URL", schema.url()),
            Self::External(url) => ("WEBHOOKD_DATABASE_URL", url.clone()),
        }
    }
}

/// What `webhookd serve` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    All,
    ApiOnly,
}

/// How every webhookd of a run is started.
#[derive(Debug, Clone)]
pub(crate) struct Launcher {
    pub(crate) binary: PathBuf,
    /// Extra settings (`WEBHOOKD_DISPATCHER__...=...`) from the command line, printed in the
    /// report.
    pub(crate) extra_env: Vec<(String, String)>,
    pub(crate) log_dir: PathBuf,
}

/// A running webhookd.
#[derive(Debug)]
pub(crate) struct Webhookd {
    child: Child,
    pub(crate) api: Api,
    log: PathBuf,
}

impl Launcher {
    /// Starts `webhookd serve` on `database` and waits until `/health` answers.
    pub(crate) async fn start(
        &self,
        database: &Database,
        role: Role,
        name: &str,
        http: &Http,
    ) -> anyhow::Result<Webhookd> {
        let port = free_port()?;
        std::fs::create_dir_all(&self.log_dir)?;
        let log = self.log_dir.join(format!("{name}.log"));
        let out = File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let mut command = Command::new(&self.binary);
        command.arg("serve");
        if role == Role::ApiOnly {
            command.arg("--api-only");
        }
        // Only what is set here configures it: nothing from the harness's own environment.
        for (key, _) in std::env::vars_os() {
            if let Some(key) = key.to_str()
                && (key.starts_with("WEBHOOKD_")
                    || key.starts_with("DEFAULT_WALLET_")
                    || key.starts_with("GLOBAL_WEBHOOK_")
                    || key == "ADMIN_TOKEN"
                    || key == "RUST_LOG")
            {
                command.env_remove(key);
            }
        }
        let (db_key, db_value) = database.setting();
        command
            .env("ADMIN_TOKEN", ADMIN_TOKEN)
            .env("DEFAULT_WALLET_AUTH_API_KEY", DEFAULT_WALLET_KEY)
            .env("WEBHOOKD_LISTEN", format!("127.0.0.1:{port}"))
            .env(db_key, db_value)
            .env("WEBHOOKD_TRANSPORT__ALLOWED_CIDRS", "127.0.0.0/8")
            .env("RUST_LOG", "warn")
            .envs(self.extra_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", self.binary.display()))?;
        let mut webhookd = Webhookd {
            child,
            api: Api {
                http: http.clone(),
                base: format!("http://127.0.0.1:{port}/cloud-agent"),
            },
            log,
        };
        webhookd.wait_healthy(port).await?;
        Ok(webhookd)
    }
}

impl Webhookd {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where its standard output and error go.
    pub(crate) fn log_path(&self) -> &Path {
        &self.log
    }

    async fn wait_healthy(&mut self, port: u16) -> anyhow::Result<()> {
        let health = format!("http://127.0.0.1:{port}/health");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "webhookd exited at start ({status}); its log ({}) ends:\n{}",
                    self.log.display(),
                    tail(&self.log)
                );
            }
            if let Ok(StatusCode::OK) = self.api.http.get(&health).await {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "webhookd did not answer {health} within 60 s; its log ends:\n{}",
                    tail(&self.log)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether the process still runs (it may have exited by itself).
    pub(crate) fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// CPU ticks used so far (user and system).
    pub(crate) fn cpu_ticks(&self) -> Option<u64> {
        procfs::process_cpu_ticks(self.pid())
    }

    pub(crate) fn peak_rss(&self) -> Option<u64> {
        procfs::peak_rss_bytes(self.pid())
    }

    pub(crate) fn rss(&self) -> Option<u64> {
        procfs::rss_bytes(self.pid())
    }

    /// Kills it with SIGKILL, as a crash would (no drain, no lease given back), and waits for
    /// it to be gone. Answers its peak resident set, read just before the kill.
    pub(crate) fn kill(mut self) -> anyhow::Result<Option<u64>> {
        let peak = self.peak_rss();
        // `Child::kill` sends SIGKILL on Unix.
        self.child.kill().context("cannot SIGKILL webhookd")?;
        self.child
            .wait()
            .context("cannot reap the killed webhookd")?;
        Ok(peak)
    }

    /// Stops it as an operator would (SIGTERM: it drains and gives back its leases), and kills
    /// it when it has not exited within `grace`.
    pub(crate) async fn stop(mut self, grace: Duration) -> anyhow::Result<()> {
        let pid = self.pid().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = tokio::time::Instant::now() + grace;
        while tokio::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    eprintln!("  note: webhookd exited with {status} after SIGTERM");
                }
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        eprintln!(
            "  note: webhookd did not stop within {} s of SIGTERM: killed",
            grace.as_secs()
        );
        Ok(())
    }
}

impl Drop for Webhookd {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A port of 127.0.0.1 that nothing listens on now (the kernel's pick, released at once).
pub(crate) fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// The last lines of a log file, for an error message.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
