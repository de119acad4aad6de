//! Project automation, run as `cargo xtask <task>`.
//!
//! - `ci`: what CI runs: `cargo fmt --check`, clippy with `-D warnings`, and every test.
//! - `tidy`: the architecture checks alone (they also run as tests in `ci`).
//! - `bench`: the benchmarks (criterion); extra arguments go to them, e.g. a name filter.

mod tidy;

use std::process::Command;

use anyhow::{Context, bail};

fn main() -> anyhow::Result<()> {
    let task = std::env::args().nth(1).unwrap_or_default();
    match task.as_str() {
        "ci" => ci(),
        "tidy" => tidy::check_domain_is_pure().map_err(anyhow::Error::msg),
        "bench" => bench(&std::env::args().skip(2).collect::<Vec<_>>()),
        _ => {
            eprintln!("usage: cargo xtask <ci|tidy|bench>");
            eprintln!("  ci     format check, clippy -D warnings, and every test (what CI runs)");
            eprintln!("  tidy   check the layering rules, such as a pure webhook-domain");
            eprintln!("  bench  run the benchmarks (PostgreSQL on 127.0.0.1:5432 if it answers)");
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
    cargo(&["test", "--workspace", "--locked"])
}

/// The storage adapters' claim-and-complete rate (more benchmarks join as they are written).
fn bench(extra: &[String]) -> anyhow::Result<()> {
    let mut args = vec![
        "bench",
        "--locked",
        "-p",
        "webhook-adapters",
        "--bench",
        "claim_complete",
    ];
    if !extra.is_empty() {
        args.push("--");
        args.extend(extra.iter().map(String::as_str));
    }
    cargo(&args)
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
