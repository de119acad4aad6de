//! A `webhookd serve` child process for the fault tests: the real binary on a SQLite file in a
//! directory of the test's, configured through its environment only, reached through its REST
//! API with the default wallet's key; its peak memory read from `/proc`. Dropping it kills it.
//!
//! The child starts through `sh` with SIGXFSZ ignored: a signal ignored before `exec` stays
//! ignored, so a write beyond a file-size limit (`RLIMIT_FSIZE`, which the disk-full test lowers
//! on the running process) fails with `EFBIG` as a full disk would, instead of killing it.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::utils::{Answer, call};

pub const KEY: &str = "fault-test-key";

/// A running `webhookd serve` and its API's base URL (with the base path; empty for a
/// dispatcher-only instance, which serves no HTTP).
pub struct Webhookd {
    child: Child,
    pub base: String,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Webhookd {
    /// Starts `webhookd serve` on `<data_dir>/webhookd.db` with receivers on 127.0.0.1 allowed
    /// and `env` on top; waits until it listens. `Err` with its standard error when it exited
    /// before listening.
    pub fn try_serve(data_dir: &Path, env: &[(&str, &str)]) -> Result<Webhookd, String> {
        Self::try_serve_with(data_dir, &[], env)
    }

    /// As [`Self::try_serve`], with `args` after `serve` (such as `--dispatcher-only`, which is
    /// ready once it says that it delivers).
    pub fn try_serve_with(
        data_dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Webhookd, String> {
        let mut command = Command::new("sh");
        command
            .args(["-c", r#"trap "" XFSZ; exec "$0" "$@""#])
            .arg(env!("CARGO_BIN_EXE_webhookd"))
            .arg("serve")
            .args(args)
            .env("WEBHOOKD_DATA_DIR", data_dir)
            .env("WEBHOOKD_LISTEN", "127.0.0.1:0")
            .env("DEFAULT_WALLET_AUTH_API_KEY", KEY)
            // The receivers listen on 127.0.0.1, which the SSRF guard refuses unless allowed.
            .env("WEBHOOKD_TRANSPORT__ALLOWED_CIDRS", "127.0.0.0/8")
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        let stderr = collect(child.stderr.take().unwrap());
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let base = loop {
            let Some(Ok(line)) = lines.next() else {
                child.wait().unwrap();
                // The reader thread ends with the pipe; give it a moment to take the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return Err(stderr.lock().unwrap().join("\n"));
            };
            if let Some(url) = line.strip_prefix("webhookd is listening on ") {
                // An API-only instance adds its role after the URL.
                break url.split(' ').next().unwrap_or_default().to_owned();
            }
            if line.starts_with("webhookd is delivering") {
                break String::new();
            }
        };
        // Keep draining standard output so the process never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Ok(Webhookd {
            child,
            base,
            stderr,
        })
    }

    /// As [`Self::try_serve`]; panics when it does not start.
    pub fn serve(data_dir: &Path, env: &[(&str, &str)]) -> Webhookd {
        Self::serve_with(data_dir, &[], env)
    }

    /// As [`Self::try_serve_with`]; panics when it does not start.
    pub fn serve_with(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Webhookd {
        Self::try_serve_with(data_dir, args, env)
            .unwrap_or_else(|stderr| panic!("webhookd did not start; stderr:\n{stderr}"))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// The lines of standard error so far.
    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// The process's peak resident set (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/<pid>/status")
    }

    /// SIGTERM, then waits (up to 20 s) for the process to exit; whether it exited with 0.
    pub fn terminate(mut self) -> bool {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "webhookd still runs 20 s after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `POST {base}{path}` with a JSON body and the wallet's key.
    pub async fn post(&self, path: &str, body: &Value) -> Answer {
        call(
            "POST",
            &format!("{}{path}", self.base),
            &[("content-type", "application/json"), ("apikey", KEY)],
            &body.to_string(),
        )
        .await
    }

    /// `GET {base}{path}` with the wallet's key.
    pub async fn get(&self, path: &str) -> Answer {
        call(
            "GET",
            &format!("{}{path}", self.base),
            &[("apikey", KEY)],
            "",
        )
        .await
    }

    /// The webhook's deliveries (up to 1,000) and how many of them are delivered, through
    /// `GET /events/webhooks/{id}/deliveries`.
    pub async fn deliveries(&self, webhook: &str) -> (Vec<Value>, usize) {
        let page = self
            .get(&format!("/events/webhooks/{webhook}/deliveries?limit=1000"))
            .await;
        assert_eq!(page.status, hyper::StatusCode::OK, "{}", page.json);
        let deliveries = page.json["contents"].as_array().unwrap().clone();
        let delivered = deliveries
            .iter()
            .filter(|d| d["state"] == "delivered")
            .count();
        (deliveries, delivered)
    }

    /// `GET /health`, outside the base path.
    pub async fn health(&self) -> hyper::StatusCode {
        let origin = self.base.trim_end_matches("/cloud-agent");
        crate::utils::get_text(&format!("{origin}/health")).await.0
    }
}

impl Drop for Webhookd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn collect(pipe: impl Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::<Mutex<Vec<String>>>::default();
    let sink = Arc::clone(&lines);
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { return };
            sink.lock().unwrap().push(line);
        }
    });
    lines
}
