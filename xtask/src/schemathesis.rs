//! `cargo xtask schemathesis [--max-examples N] [--seed N]`: fuzzes the real `webhookd` through
//! the OpenAPI document it serves, with Schemathesis (pinned in the xtask venv), and fails on
//! any 5xx, any answer that the document does not describe (status, media type, body), and any
//! request the document forbids that the service accepts.
//!
//! The service runs as `serve --api-only` on a fresh SQLite file and on 127.0.0.1:0: no
//! dispatcher, so nothing that Schemathesis registers is ever delivered. The one call that
//! sends by itself, `POST /events/webhooks/{id}/test`, is left out, since a generated webhook
//! may name any host and even resolving it would leave the machine. The SSRF guard stays at its
//! defaults besides.
//!
//! It must not be part of `ci`: it takes minutes.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

const ADMIN_KEY: &str = "schemathesis-admin-key";
const WALLET_KEY: &str = "schemathesis-wallet-key";

/// Test cases per operation and phase unless `--max-examples` says otherwise: enough to find
/// the classes of mistakes seen so far, few enough for a run of a few minutes on two cores.
const DEFAULT_MAX_EXAMPLES: u32 = 50;

/// Longest a Schemathesis run may take before it is stopped and the task fails.
const RUN_DEADLINE: Duration = Duration::from_secs(15 * 60);

/// The checks, by Schemathesis 4's names: all of them but `positive_data_acceptance`, which
/// demands that every request the document allows be accepted. The document states the rules
/// JSON Schema can (lengths, ranges, patterns, required fields); some rules it cannot (a URL's
/// syntax, custom header names, the `data` of the Identus event types, a secret's base64, the
/// idempotency key given twice, a webhook setting misspelt as an extra field such as
/// `retry_policy`), so schema-valid requests are still refused with a 422 that names the field,
/// which is the documented answer. The Identus-shaped bodies allow extra fields (Identus
/// ignores them) and webhookd's own say `additionalProperties: false`, so
/// `negative_data_rejection` sends unknown fields only where they are refused.
const EXCLUDED_CHECKS: &str = "positive_data_acceptance";

struct Options {
    max_examples: u32,
    seed: Option<u64>,
}

fn options(args: &[String]) -> anyhow::Result<Options> {
    let mut options = Options {
        max_examples: DEFAULT_MAX_EXAMPLES,
        seed: None,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let value = |name: &str, value: Option<&String>| {
            value
                .with_context(|| format!("{name}: give a number after it"))?
                .parse::<u64>()
                .with_context(|| format!("{name}: must be a whole number"))
        };
        match arg.as_str() {
            "--max-examples" => {
                let n = value(arg, args.next())?;
                options.max_examples = u32::try_from(n)
                    .ok()
                    .filter(|n| *n >= 1)
                    .context("--max-examples: must be between 1 and 4294967295")?;
            }
            "--seed" => options.seed = Some(value(arg, args.next())?),
            other => {
                bail!("schemathesis: unknown argument {other:?}; use --max-examples N or --seed N")
            }
        }
    }
    Ok(options)
}

/// The task.
pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let options = options(args)?;
    let python = crate::python::interpreter(crate::python::SCHEMATHESIS)?;
    // Absolute, since Schemathesis runs in the work directory (where Hypothesis keeps files).
    let schemathesis = std::path::absolute(python.with_file_name("schemathesis"))
        .context("cannot locate the venv's schemathesis")?;
    crate::build_webhookd(&[])?;
    let target = crate::target_directory(&crate::cargo_metadata()?)?;
    let work = target.join("schemathesis");
    // A fresh database each run: what an earlier run created would only hide the empty cases.
    if work.exists() {
        std::fs::remove_dir_all(&work)
            .with_context(|| format!("cannot clear {}", work.display()))?;
    }
    std::fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let service = Webhookd::start(&target.join("debug/webhookd"), &work)?;
    let schema = format!("http://{}/openapi.json", service.addr);
    eprintln!(
        "webhookd (API only) at {}; its log: {}",
        service.addr,
        service.log.display()
    );

    // One run per credential: with both headers on every request, a publish would go in as the
    // admin (into a wallet Schemathesis named) and its event then be looked for with the wallet
    // key, which rightly answers 404.
    let admin = fuzz(
        &schemathesis,
        &work,
        &schema,
        &options,
        &[
            "--include-tag",
            "admin",
            "-H",
            &format!("x-admin-api-key: {ADMIN_KEY}"),
        ],
    );
    let wallet = fuzz(
        &schemathesis,
        &work,
        &schema,
        &options,
        &[
            "--exclude-tag",
            "admin",
            "--exclude-operation-id",
            "testWebhookNotification",
            "-H",
            &format!("apikey: {WALLET_KEY}"),
        ],
    );
    drop(service);
    match (admin, wallet) {
        (Ok(()), Ok(())) => {
            eprintln!("schemathesis: no failures");
            Ok(())
        }
        (admin, wallet) => bail!(
            "schemathesis found failures (admin calls: {}; wallet calls: {}); see the report above",
            verdict(&admin),
            verdict(&wallet)
        ),
    }
}

fn verdict(result: &anyhow::Result<()>) -> String {
    match result {
        Ok(()) => "none".to_owned(),
        Err(e) => format!("{e:#}"),
    }
}

fn fuzz(
    schemathesis: &Path,
    work: &Path,
    schema: &str,
    options: &Options,
    scope: &[&str],
) -> anyhow::Result<()> {
    let max_examples = options.max_examples.to_string();
    let seed = options.seed.map(|s| s.to_string());
    let mut args = vec![
        "run",
        schema,
        "--checks",
        "all",
        "--exclude-checks",
        EXCLUDED_CHECKS,
        "--max-examples",
        &max_examples,
        // More workers trip a thread-safety bug of Hypothesis under CPython 3.11 ("AST
        // constructor recursion depth mismatch"), reported as an error of the run.
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--generation-database",
        "none",
        "--no-color",
    ];
    if let Some(seed) = &seed {
        args.extend(["--seed", seed]);
    }
    args.extend(scope);
    eprintln!("$ {} {}", schemathesis.display(), args.join(" "));
    let mut child = Command::new(schemathesis)
        .args(&args)
        .current_dir(work)
        .spawn()
        .with_context(|| format!("cannot run {}", schemathesis.display()))?;
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            if !status.success() {
                bail!("schemathesis exited with {status}");
            }
            return Ok(());
        }
        if started.elapsed() > RUN_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "schemathesis ran longer than {} s: stopped; lower --max-examples",
                RUN_DEADLINE.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The `webhookd` under test, killed when dropped.
struct Webhookd {
    child: Child,
    addr: String,
    log: PathBuf,
}

impl Webhookd {
    fn start(binary: &Path, work: &Path) -> anyhow::Result<Self> {
        let log = work.join("webhookd.log");
        let stderr = std::fs::File::create(&log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let mut command = Command::new(binary);
        // Only what is set here: a developer's own WEBHOOKD_ or Identus variables (a global
        // webhook, a PostgreSQL URL, allowed CIDRs) must not change what is tested.
        command.env_clear();
        for kept in ["PATH", "HOME", "TMPDIR"] {
            if let Some(value) = std::env::var_os(kept) {
                command.env(kept, value);
            }
        }
        command
            .args(["serve", "--api-only"])
            .env("WEBHOOKD_LISTEN", "127.0.0.1:0")
            .env("WEBHOOKD_DATA_DIR", work.join("data"))
            .env("ADMIN_TOKEN", ADMIN_KEY)
            .env("DEFAULT_WALLET_AUTH_API_KEY", WALLET_KEY)
            // Schemathesis sends requests without or with broken credentials on purpose; with
            // the per-address limit on, its later requests would all get 429 and test nothing
            // but the limiter (which tests/it/security.rs covers).
            .env("WEBHOOKD_API__AUTH_FAILURE_LIMIT", "0")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let stdout = child.stdout.take().context("webhookd has no stdout")?;
        let mut service = Self {
            child,
            addr: String::new(),
            log,
        };
        // `serve` prints `API description: http://ADDR/openapi.json` once it listens.
        for line in BufReader::new(stdout).lines() {
            let line = line.context("cannot read webhookd's output")?;
            if let Some(url) = line.strip_prefix("API description: http://") {
                service.addr = url.trim_end_matches("/openapi.json").to_owned();
                return Ok(service);
            }
        }
        bail!(
            "webhookd stopped before listening; its log, {}, says why",
            service.log.display()
        )
    }
}

impl Drop for Webhookd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::options;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn options_take_a_count_and_a_seed() {
        let parsed = options(&args("--max-examples 7 --seed 42")).unwrap();
        assert_eq!(parsed.max_examples, 7);
        assert_eq!(parsed.seed, Some(42));
        assert_eq!(
            options(&[]).unwrap().max_examples,
            super::DEFAULT_MAX_EXAMPLES
        );
    }

    #[test]
    fn bad_options_say_what_would_be_right() {
        let zero = options(&args("--max-examples 0"))
            .err()
            .unwrap()
            .to_string();
        assert!(zero.contains("between 1 and"), "{zero}");
        let unknown = options(&args("--workers 4")).err().unwrap().to_string();
        assert!(unknown.contains("--max-examples N"), "{unknown}");
        let missing = options(&args("--seed")).err().unwrap().to_string();
        assert!(missing.contains("give a number"), "{missing}");
    }
}
