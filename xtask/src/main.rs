//! Project automation, run as `cargo xtask <task>`.
//!
//! - `ci`: what CI runs: `cargo fmt --check`, clippy with `-D warnings`, every test, the
//!   OpenAPI and deploy-file checks, the supply-chain check (`deny`), then the fuzz smoke run;
//!   it ends with the tests passed, failed and ignored, the time, and the tests that skipped
//!   PostgreSQL (see `ci.rs`).
//! - `tidy`: the architecture checks alone (they also run as tests in `ci`).
//! - `bench`: the end-to-end benchmark (`crates/webhook-bench`, on release builds of `webhookd`
//!   and `webhookd-bench`; extra arguments go to the harness, `--quick` for the short one); a
//!   full run then adds the order and delete checks, the NATS throughput measurements and the
//!   criterion benches of webhook-adapters and webhook-domain. `bench order`, `bench delete`
//!   and `bench nats` run one of them alone.
//! - `reliability`: the fault scenarios (`webhookd-bench reliability` on a release build of
//!   `webhookd`: SIGKILLs, a PostgreSQL outage, failover; extra arguments go to the harness,
//!   `--quick`, `--scenarios`, `--seed`, `--no-docs`); writes its section of
//!   `docs/reliability.md`. Not part of `ci`: it takes minutes.
//! - `openapi`: writes `docs/openapi.json` from the code; `openapi --check` fails when the
//!   committed document differs, and validates it against the OpenAPI 3.1 schema (with the
//!   `openapi-spec-validator` package from PyPI, installed into `target/` on first use).
//! - `deploy --check`: checks the deployment files under `deploy/` (see `deploy.rs`).
//! - `db`: starts the local PostgreSQL that the tests use if it does not answer (and the other
//!   servers), and checks that Chromium and chromedriver start.
//! - `schemathesis [--max-examples N] [--seed N]`: fuzzes the served OpenAPI document's
//!   operations on a real `webhookd` (see `schemathesis.rs`); minutes long, so not in `ci`.
//! - `fuzz [--smoke] [--target T] [--seconds N] [--sanitizer none|address]`: the libFuzzer
//!   targets of webhook-domain's parsers (see `fuzz.rs`).
//! - `deny [--require-advisories]`: cargo-deny's licence, ban, source and advisory checks
//!   (see `deny.rs`).

mod cargo_tools;
mod ci;
mod db;
mod deny;
mod deploy;
mod fuzz;
mod python;
mod schemathesis;
mod tidy;

use std::process::Command;

use anyhow::{Context, bail};

fn main() -> anyhow::Result<()> {
    // The tasks name files relative to the repository root, wherever cargo was run from.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask/ has no parent directory")?;
    std::env::set_current_dir(root).with_context(|| format!("cannot enter {}", root.display()))?;
    let task = std::env::args().nth(1).unwrap_or_default();
    let flag = std::env::args().nth(2);
    match task.as_str() {
        "ci" => ci::run(),
        "tidy" => tidy::check_domain_is_pure()
            .and_then(|()| tidy::check_domain_does_no_io())
            .and_then(|()| tidy::check_secrets_compare_in_constant_time())
            .and_then(|()| tidy::check_app_boundaries())
            .map_err(anyhow::Error::msg),
        "bench" => bench(&std::env::args().skip(2).collect::<Vec<_>>()),
        "reliability" => reliability(&std::env::args().skip(2).collect::<Vec<_>>()),
        "openapi" => openapi(flag.as_deref() == Some("--check")),
        "deploy" if flag.as_deref() == Some("--check") => deploy::check(),
        "deploy" => bail!("deploy: only `cargo xtask deploy --check` exists"),
        "db" => db::ensure_running(),
        "schemathesis" => schemathesis::run(&std::env::args().skip(2).collect::<Vec<_>>()),
        "fuzz" => fuzz::fuzz(&fuzz::FuzzRun::from_args(
            &std::env::args().skip(2).collect::<Vec<_>>(),
        )?),
        "deny" => match flag.as_deref() {
            None => deny::deny(false),
            Some("--require-advisories") => deny::deny(true),
            Some(other) => bail!("deny: unknown argument {other:?}; use --require-advisories"),
        },
        _ => {
            eprintln!(
                "usage: cargo xtask <ci|tidy|bench|reliability|openapi [--check]|deploy --check|db|schemathesis|fuzz|deny>"
            );
            eprintln!("  ci     format check, clippy -D warnings, and every test (what CI runs)");
            eprintln!("  tidy   check the layering rules, such as a pure webhook-domain");
            eprintln!(
                "  bench [--quick] [harness flags]  the end-to-end benchmark, then the order and \
                 delete checks, NATS throughput and criterion; bench order|delete|nats [flags]  one alone"
            );
            eprintln!(
                "  reliability [--quick] [--scenarios a,b] [--seed N] [--no-docs]  crashes, a \
                 database outage and failover on the release binary, then schemathesis; docs/reliability.md"
            );
            eprintln!("  openapi [--check]  write docs/openapi.json, or check and validate it");
            eprintln!("  deploy --check  parse and cross-check the files under deploy/");
            eprintln!("  db     start the local PostgreSQL (127.0.0.1:5432) if it does not answer");
            eprintln!(
                "  schemathesis [--max-examples N] [--seed N]  fuzz the API through its OpenAPI document"
            );
            eprintln!(
                "  fuzz [--smoke] [--target T] [--seconds N] [--sanitizer none|address]  \
                 the libFuzzer targets under fuzz/ (60 s each by default, 4 s with --smoke)"
            );
            eprintln!(
                "  deny [--require-advisories]  licences, bans, sources and advisories \
                 (cargo-deny, deny.toml)"
            );
            bail!("unknown task {task:?}")
        }
    }
}

const OPENAPI_PATH: &str = "docs/openapi.json";

/// The document as the code generates it, through `webhookd openapi`.
fn generated_openapi() -> anyhow::Result<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args([
            "run",
            "--quiet",
            "--locked",
            "-p",
            "webhook-app",
            "--",
            "openapi",
        ])
        .output()
        .context("cannot run webhookd openapi")?;
    if !output.status.success() {
        bail!(
            "webhookd openapi failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    String::from_utf8(output.stdout).context("the document is not UTF-8")
}

fn openapi(check: bool) -> anyhow::Result<()> {
    let generated = generated_openapi()?;
    if !check {
        std::fs::write(OPENAPI_PATH, generated)
            .with_context(|| format!("cannot write {OPENAPI_PATH}"))?;
        eprintln!("wrote {OPENAPI_PATH}");
        return Ok(());
    }
    let committed = std::fs::read_to_string(OPENAPI_PATH)
        .with_context(|| format!("cannot read {OPENAPI_PATH}"))?;
    if committed != generated {
        bail!("{OPENAPI_PATH} differs from the code: run `cargo xtask openapi` and commit it");
    }
    validate_openapi()?;
    eprintln!("{OPENAPI_PATH} matches the code and is valid OpenAPI 3.1");
    Ok(())
}

/// Validates the committed document with openapi-spec-validator, in the xtask venv.
fn validate_openapi() -> anyhow::Result<()> {
    let python = python::interpreter(&[])?;
    run(
        &python.to_string_lossy(),
        &[
            "-m",
            "openapi_spec_validator",
            "--schema",
            "3.1",
            OPENAPI_PATH,
        ],
    )
}

fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    eprintln!("$ {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .status()
        .with_context(|| format!("cannot run {program}"))?;
    if !status.success() {
        bail!("{program} {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// The benchmarks. First the end-to-end one (`crates/webhook-bench`): `webhookd` and
/// `webhookd-bench` built in release mode, each in a cargo invocation of its own (the bench
/// crate enables webhook-adapters' `testing` feature, which cargo would otherwise unify into
/// the measured binary), then the harness run on the binary; every extra argument goes to the
/// harness (`--quick`, sizes, `--scenarios`, `--webhookd-env`; see `webhookd-bench --help`).
/// A full run (no extra arguments) then adds the order and delete checks, the NATS throughput
/// measurements (skipped, said so, when no NATS server answers) and the criterion benches:
/// webhook-adapters' `claim_complete`, and webhook-domain's when that crate has bench targets.
/// Other runs are the harness's alone. `cargo xtask bench order` (or `delete`, or `nats`) runs
/// that one only, with the arguments that follow.
fn bench(extra: &[String]) -> anyhow::Result<()> {
    // `cargo xtask bench -- --quick` works as `cargo xtask bench --quick` does.
    let extra = match extra.first() {
        Some(first) if first == "--" => &extra[1..],
        _ => extra,
    };
    let check = extra
        .first()
        .filter(|first| matches!(first.as_str(), "order" | "delete" | "nats"));
    let quick = extra.iter().any(|a| a == "--quick");
    build_webhookd(&["--release"])?;
    cargo(&[
        "build",
        "--release",
        "--locked",
        "-p",
        "webhook-bench",
        "--bin",
        "webhookd-bench",
    ])?;
    let metadata = cargo_metadata()?;
    let target = target_directory(&metadata)?;
    let release = target.join("release");
    let webhookd = release.join("webhookd").display().to_string();
    let out_dir = target.join("bench").display().to_string();
    let harness = release.join("webhookd-bench").display().to_string();
    let run_check = |name: &str, rest: &[String]| {
        let mut args = vec![name, "--webhookd", &webhookd, "--out-dir", &out_dir];
        args.extend(rest.iter().map(String::as_str));
        run(&harness, &args)
    };
    if let Some(check) = check {
        return run_check(check, &extra[1..]);
    }
    let mut args = vec!["--webhookd", &webhookd, "--out-dir", &out_dir];
    args.extend(extra.iter().map(String::as_str));
    run(&harness, &args)?;
    // A quick run, or one narrowed to some scenarios or sizes, is the harness's alone.
    if quick || !extra.is_empty() {
        return Ok(());
    }
    run_check("order", &[])?;
    run_check("delete", &[])?;
    run_check("nats", &[])?;
    cargo(&[
        "bench",
        "--locked",
        "-p",
        "webhook-adapters",
        "--bench",
        "claim_complete",
    ])?;
    if has_bench_targets(&metadata, "webhook-domain") {
        cargo(&["bench", "--locked", "-p", "webhook-domain"])?;
    } else {
        eprintln!("webhook-domain has no bench targets yet: nothing more to run");
    }
    Ok(())
}

/// The fault scenarios (`webhookd-bench reliability`, see docs/reliability.md): `webhookd` in
/// release mode, in a cargo invocation of its own for the reason `bench` gives, then the
/// harness on it. The harness measures no speed, so its debug build serves and spares a
/// second release build of the adapters. Every extra argument goes to the harness. A whole
/// run (no `--quick`, no `--scenarios`) then runs `schemathesis` with its defaults.
fn reliability(extra: &[String]) -> anyhow::Result<()> {
    build_webhookd(&["--release"])?;
    cargo(&[
        "build",
        "--locked",
        "-p",
        "webhook-bench",
        "--bin",
        "webhookd-bench",
    ])?;
    let target = target_directory(&cargo_metadata()?)?;
    let webhookd = target.join("release").join("webhookd");
    let out_dir = target.join("reliability");
    let mut args = vec![
        "reliability".to_owned(),
        "--webhookd".to_owned(),
        webhookd.display().to_string(),
        "--out-dir".to_owned(),
        out_dir.display().to_string(),
    ];
    args.extend(extra.iter().cloned());
    let harness = target.join("debug").join("webhookd-bench");
    run(
        &harness.display().to_string(),
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    )?;
    // A whole run ends with the API fuzzed through its OpenAPI document; a run of chosen
    // scenarios, or a quick one, is about the faults only.
    let partial = extra
        .iter()
        .any(|a| a == "--quick" || a.starts_with("--scenarios"));
    if partial {
        return Ok(());
    }
    schemathesis::run(&[])
}

/// Where cargo builds: the workspace's target directory, as `cargo metadata` tells it.
fn target_directory(metadata: &serde_json::Value) -> anyhow::Result<std::path::PathBuf> {
    metadata["target_directory"]
        .as_str()
        .map(std::path::PathBuf::from)
        .context("cargo metadata has no target_directory")
}

/// `cargo metadata` of the workspace, dependencies left out.
fn cargo_metadata() -> anyhow::Result<serde_json::Value> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--locked"])
        .output()
        .context("cannot run cargo metadata")?;
    if !output.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    serde_json::from_slice(&output.stdout).context("cargo metadata printed no JSON")
}

/// Whether the workspace package `name` has a target of kind `bench`.
fn has_bench_targets(metadata: &serde_json::Value, name: &str) -> bool {
    metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["name"] == name)
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .any(|t| {
            t["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|k| k == "bench"))
        })
}

/// The cargo that runs this task (`$CARGO`), else the one on PATH.
fn cargo_program() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// Builds the `webhookd` binary, with `extra` flags such as `--release`, in a cargo invocation
/// of its own, so that no feature of another package (webhook-bench's `testing`) is unified
/// into it.
fn build_webhookd(extra: &[&str]) -> anyhow::Result<()> {
    let mut args = vec!["build"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--locked", "-p", "webhook-app", "--bin", "webhookd"]);
    cargo(&args)
}

fn cargo(args: &[&str]) -> anyhow::Result<()> {
    eprintln!("$ cargo {}", args.join(" "));
    let status = Command::new(cargo_program())
        .args(args)
        .status()
        .with_context(|| format!("cannot run cargo {}", args[0]))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}
