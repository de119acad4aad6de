//! `cargo xtask fuzz [--smoke] [--target T] [--seconds N] [--sanitizer S]`: the libFuzzer
//! targets under `fuzz/` (webhook-domain's parsers and validators), through cargo-fuzz.
//!
//! The toolchain is stable. Without a sanitizer (the default, and the smoke run) cargo-fuzz
//! passes only flags stable accepts; a sanitizer needs `-Zsanitizer`, which stable takes only
//! with `RUSTC_BOOTSTRAP=1`, set then for the fuzz build alone. The build goes to
//! `<target dir>/fuzz/build/<sanitizer>` so that its flags never invalidate the workspace's own
//! build, and the corpus that runs grow and any crashing input stay under `<target dir>/fuzz`
//! too; the small committed seeds in `fuzz/seeds/<target>` are read but never written.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::cargo_tools::{PinnedTool, run_command};

const CARGO_FUZZ: PinnedTool = PinnedTool {
    package: "cargo-fuzz",
    subcommand: "fuzz",
    version: "0.13.2",
};

/// Seconds per target of the smoke run in `cargo xtask ci`.
const SMOKE_SECONDS: u64 = 4;
/// Seconds per target when neither `--smoke` nor `--seconds` is given.
const DEFAULT_SECONDS: u64 = 60;
/// An input that takes longer than this is reported as a hang.
const INPUT_TIMEOUT_SECONDS: u64 = 10;

/// What to fuzz, and for how long.
#[derive(Debug)]
pub(crate) struct FuzzRun {
    target: Option<String>,
    seconds: u64,
    sanitizer: String,
}

impl FuzzRun {
    /// The smoke run: every target for a few seconds, without a sanitizer.
    pub(crate) fn smoke() -> Self {
        Self {
            target: None,
            seconds: SMOKE_SECONDS,
            sanitizer: "none".to_owned(),
        }
    }

    /// Reads `[--smoke] [--target T] [--seconds N] [--sanitizer none|address]`.
    pub(crate) fn from_args(args: &[String]) -> anyhow::Result<Self> {
        let mut run = Self {
            seconds: DEFAULT_SECONDS,
            ..Self::smoke()
        };
        let mut seconds = None;
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = |name: &str| {
                args.next()
                    .cloned()
                    .with_context(|| format!("fuzz: {name} needs a value"))
            };
            match arg.as_str() {
                "--smoke" => run.seconds = SMOKE_SECONDS,
                "--target" => run.target = Some(value("--target")?),
                "--seconds" => {
                    let text = value("--seconds")?;
                    seconds = Some(text.parse::<u64>().ok().filter(|&n| n > 0).with_context(
                        || format!("fuzz: --seconds {text:?} must be a whole number above 0"),
                    )?);
                }
                "--sanitizer" => {
                    let name = value("--sanitizer")?;
                    if !matches!(name.as_str(), "none" | "address") {
                        bail!("fuzz: --sanitizer {name:?} is not supported; use none or address");
                    }
                    run.sanitizer = name;
                }
                other => bail!(
                    "fuzz: unknown argument {other:?}; use --smoke, --target T, --seconds N or \
                     --sanitizer none|address"
                ),
            }
        }
        if let Some(seconds) = seconds {
            run.seconds = seconds;
        }
        Ok(run)
    }
}

/// Installs the pinned cargo-fuzz if needed, builds the chosen targets, then runs them in turn;
/// fails on the first crash, panic, hang or out-of-memory, naming the saved input.
pub(crate) fn fuzz(run: &FuzzRun) -> anyhow::Result<()> {
    CARGO_FUZZ.ensure_installed()?;
    let targets = list_targets()?;
    let chosen: Vec<&String> = match &run.target {
        Some(name) if targets.contains(name) => vec![name],
        Some(name) => bail!(
            "fuzz: no target {name:?}; the targets are {}",
            targets.join(", ")
        ),
        None => targets.iter().collect(),
    };
    check_fuzz_lockfile()?;
    let work = fuzz_dir()?;
    let build_args = build_args(run, &work);
    let mut build = fuzz_command(run, &["build"]);
    build.args(&build_args);
    // One target asked for: build that one alone.
    build.args(&run.target);
    run_command(build)?;
    for target in chosen {
        run_target(run, target, &work, &build_args)?;
    }
    Ok(())
}

/// cargo-fuzz has no `--locked`: fail before building when the committed `fuzz/Cargo.lock`
/// does not match `fuzz/Cargo.toml`.
fn check_fuzz_lockfile() -> anyhow::Result<()> {
    let output = Command::new(crate::cargo_program())
        .args(["metadata", "--format-version", "1", "--no-deps", "--locked"])
        .args(["--manifest-path", "fuzz/Cargo.toml"])
        .output()
        .context("cannot run cargo metadata for fuzz/")?;
    if !output.status.success() {
        bail!(
            "fuzz/Cargo.lock does not match fuzz/Cargo.toml; run `cargo update --manifest-path \
             fuzz/Cargo.toml --workspace` and commit it: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// The targets `cargo fuzz list` finds in `fuzz/`.
fn list_targets() -> anyhow::Result<Vec<String>> {
    let output = CARGO_FUZZ
        .command(&["list", "--fuzz-dir", "fuzz"])
        .output()
        .context("cannot run cargo fuzz list")?;
    if !output.status.success() {
        bail!(
            "cargo fuzz list failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let text = String::from_utf8(output.stdout).context("cargo fuzz list printed non-UTF-8")?;
    Ok(text.lines().map(str::to_owned).collect())
}

/// `<workspace target dir>/fuzz`: the fuzz build, the growing corpus and the crash inputs.
fn fuzz_dir() -> anyhow::Result<PathBuf> {
    Ok(crate::target_directory(&crate::cargo_metadata()?)?.join("fuzz"))
}

/// Flags shared by `build` and `run`, so that `run` finds the build up to date.
fn build_args(run: &FuzzRun, work: &Path) -> Vec<String> {
    vec![
        "--fuzz-dir".to_owned(),
        "fuzz".to_owned(),
        "--sanitizer".to_owned(),
        run.sanitizer.clone(),
        // Overflow checks and debug assertions turn silent wrap-arounds into findings.
        "--debug-assertions".to_owned(),
        // One build per sanitizer: their flags differ, and sharing one directory would make
        // each run rebuild everything the other built.
        "--target-dir".to_owned(),
        work.join("build")
            .join(&run.sanitizer)
            .display()
            .to_string(),
    ]
}

fn fuzz_command(run: &FuzzRun, args: &[&str]) -> Command {
    let mut command = CARGO_FUZZ.command(args);
    if run.sanitizer != "none" {
        // `-Zsanitizer=…` is a nightly flag; this lets the stable compiler accept it.
        command.env("RUSTC_BOOTSTRAP", "1");
    }
    command
}

fn run_target(
    run: &FuzzRun,
    target: &str,
    work: &Path,
    build_args: &[String],
) -> anyhow::Result<()> {
    let corpus = work.join("corpus").join(target);
    let artifacts = work.join("artifacts").join(target);
    for dir in [&corpus, &artifacts] {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let seeds = Path::new("fuzz/seeds").join(target);
    let mut command = fuzz_command(run, &["run"]);
    command.args(build_args).arg(target).arg(&corpus);
    if seeds.is_dir() {
        command.arg(&seeds);
    }
    command.arg("--").args([
        format!("-max_total_time={}", run.seconds),
        format!("-timeout={INPUT_TIMEOUT_SECONDS}"),
        format!("-artifact_prefix={}/", artifacts.display()),
        "-print_final_stats=1".to_owned(),
    ]);
    eprintln!("fuzz {target}: {} s", run.seconds);
    let started = std::time::Instant::now();
    let output = command
        .output()
        .with_context(|| format!("cannot run cargo fuzz run {target}"))?;
    let log = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        for line in tail.into_iter().rev() {
            eprintln!("  {line}");
        }
        bail!(
            "fuzz target {target} failed ({}); the input is saved under {} — reproduce with \
             `cargo fuzz run --fuzz-dir fuzz -s {} {target} <that file>`, and fix \
             the domain with a unit test first (a sanitizer build also needs \
             RUSTC_BOOTSTRAP=1)",
            output.status,
            artifacts.display(),
            run.sanitizer
        );
    }
    eprintln!(
        "fuzz {target}: ok in {:.0} s, {}",
        started.elapsed().as_secs_f64(),
        summary(&log)
    );
    Ok(())
}

/// The figures of libFuzzer's last status line and final statistics, for the log.
fn summary(log: &str) -> String {
    let executions = log
        .lines()
        .find_map(|line| line.strip_prefix("stat::number_of_executed_units:"))
        .map_or("?", str::trim);
    let last_status = log
        .lines()
        .rev()
        .find(|line| line.starts_with('#') && line.contains(" cov: "))
        .unwrap_or_default();
    let field = |name: &str| {
        last_status
            .split_whitespace()
            .skip_while(|word| *word != name)
            .nth(1)
            .unwrap_or("?")
            .to_owned()
    };
    format!(
        "{executions} executions, coverage {} edges ({} features), corpus {} inputs",
        field("cov:"),
        field("ft:"),
        field("corp:").split('/').next().unwrap_or("?"),
    )
}
