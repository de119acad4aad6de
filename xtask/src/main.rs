//! Project automation, run as `cargo xtask <task>`.
//!
//! - `ci`: what CI runs: `cargo fmt --check`, clippy with `-D warnings`, every test, then the
//!   OpenAPI and deploy-file checks.
//! - `tidy`: the architecture checks alone (they also run as tests in `ci`).
//! - `bench`: the benchmarks (criterion); extra arguments go to them, e.g. a name filter.
//! - `openapi`: writes `docs/openapi.json` from the code; `openapi --check` fails when the
//!   committed document differs, and validates it against the OpenAPI 3.1 schema (with the
//!   `openapi-spec-validator` package from PyPI, installed into `target/` on first use).
//! - `deploy --check`: checks the deployment files under `deploy/` (see `deploy.rs`).
//! - `db`: starts the local PostgreSQL that the tests use if it does not answer.

mod db;
mod deploy;
mod python;
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
        "ci" => ci(),
        "tidy" => tidy::check_domain_is_pure().map_err(anyhow::Error::msg),
        "bench" => bench(&std::env::args().skip(2).collect::<Vec<_>>()),
        "openapi" => openapi(flag.as_deref() == Some("--check")),
        "deploy" if flag.as_deref() == Some("--check") => deploy::check(),
        "deploy" => bail!("deploy: only `cargo xtask deploy --check` exists"),
        "db" => db::ensure_running(),
        _ => {
            eprintln!("usage: cargo xtask <ci|tidy|bench|openapi [--check]|deploy --check|db>");
            eprintln!("  ci     format check, clippy -D warnings, and every test (what CI runs)");
            eprintln!("  tidy   check the layering rules, such as a pure webhook-domain");
            eprintln!("  bench  run the benchmarks (PostgreSQL on 127.0.0.1:5432 if it answers)");
            eprintln!("  openapi [--check]  write docs/openapi.json, or check and validate it");
            eprintln!("  deploy --check  parse and cross-check the files under deploy/");
            eprintln!("  db     start the local PostgreSQL (127.0.0.1:5432) if it does not answer");
            bail!("unknown task {task:?}")
        }
    }
}

fn ci() -> anyhow::Result<()> {
    cargo(&["fmt", "--all", "--", "--check"])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ])?;
    cargo(&["test", "--workspace", "--locked"])?;
    openapi(true)?;
    deploy::check()
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
    let python = python::interpreter()?;
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

/// The domain's per-attempt work, then the storage adapters' claim-and-complete rate (more
/// benchmarks join as they are written).
fn bench(extra: &[String]) -> anyhow::Result<()> {
    for (package, bench) in [
        ("webhook-domain", "hot_paths"),
        ("webhook-adapters", "claim_complete"),
    ] {
        let mut args = vec!["bench", "--locked", "-p", package, "--bench", bench];
        if !extra.is_empty() {
            args.push("--");
            args.extend(extra.iter().map(String::as_str));
        }
        cargo(&args)?;
    }
    Ok(())
}

fn cargo(args: &[&str]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    eprintln!("$ cargo {}", args.join(" "));
    let status = Command::new(cargo)
        .args(args)
        .status()
        .with_context(|| format!("cannot run cargo {}", args[0]))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}
