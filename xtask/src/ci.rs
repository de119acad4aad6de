//! `cargo xtask ci`: what CI runs, in order: the format checks, clippy with `-D warnings`,
//! every test, the OpenAPI and deploy-file checks, `deny`, then the fuzz smoke run. It stops at
//! the first step that fails, and ends, whatever happened, with a summary: the steps that ran,
//! the tests passed, failed and ignored over the whole run, the total time, and last, loudly,
//! how many tests skipped PostgreSQL because it was not there (which would otherwise go
//! unseen: the test harness hides what passing tests print, and a skipped test passes).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The variable that tells the PostgreSQL test support where to note each skip (the same name
/// as `webhook_adapters::testing::SKIP_LOG_VAR`; xtask does not depend on the adapters).
const SKIP_LOG_VAR: &str = "WEBHOOKD_TEST_SKIP_LOG";

/// One step of the run.
type Step<'a> = Box<dyn FnOnce() -> anyhow::Result<()> + 'a>;

/// The task. Exits the process with status 1 after the summary when a step failed, so that
/// the summary stays the last thing printed.
pub(crate) fn run() -> anyhow::Result<()> {
    let started = Instant::now();
    let skip_log = crate::target_directory(&crate::cargo_metadata()?)?
        .join("ci")
        .join("skipped-backends.tsv");
    let mut tests = TestCounts::default();
    let steps: Vec<(&str, Step<'_>)> = vec![
        ("format", Box::new(format)),
        (
            "clippy",
            Box::new(|| {
                crate::cargo(&[
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--locked",
                    "--",
                    "-D",
                    "warnings",
                ])
            }),
        ),
        ("tests", Box::new(|| run_tests(&mut tests, &skip_log))),
        ("openapi", Box::new(|| crate::openapi(true))),
        ("deploy", Box::new(crate::deploy::check)),
        ("deny", Box::new(|| crate::deny::deny(false))),
        (
            "fuzz",
            Box::new(|| crate::fuzz::fuzz(&crate::fuzz::FuzzRun::smoke())),
        ),
    ];
    let mut outcome = Outcome {
        passed: Vec::new(),
        failed: None,
        not_run: Vec::new(),
    };
    for (name, step) in steps {
        if outcome.failed.is_some() {
            outcome.not_run.push(name);
            continue;
        }
        match step() {
            Ok(()) => outcome.passed.push(name),
            Err(e) => outcome.failed = Some((name, format!("{e:#}"))),
        }
    }
    let skipped = SkippedBackends::parse(&std::fs::read_to_string(&skip_log).unwrap_or_default());
    let _ = std::io::stdout().flush();
    eprintln!();
    eprintln!("{}", summary(&outcome, &tests, &skipped, started.elapsed()));
    if outcome.failed.is_some() {
        std::process::exit(1);
    }
    Ok(())
}

fn format() -> anyhow::Result<()> {
    crate::cargo(&["fmt", "--all", "--", "--check"])?;
    // fuzz/ is a workspace of its own, which `--all` does not reach.
    crate::cargo(&[
        "fmt",
        "--manifest-path",
        "fuzz/Cargo.toml",
        "--all",
        "--",
        "--check",
    ])
}

/// `cargo test` over the workspace, every test binary even after one fails (so that the counts
/// cover the whole run), its output passed on line by line as it comes and counted on the way.
/// PostgreSQL tests that skip are noted in `skip_log`, emptied first.
fn run_tests(counts: &mut TestCounts, skip_log: &Path) -> anyhow::Result<()> {
    if let Some(dir) = skip_log.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    match std::fs::remove_file(skip_log) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot clear {}", skip_log.display())),
    }
    let args = ["test", "--workspace", "--locked", "--no-fail-fast"];
    eprintln!("$ cargo {}", args.join(" "));
    let mut child = Command::new(crate::cargo_program())
        .args(args)
        .env(SKIP_LOG_VAR, skip_log)
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run cargo test")?;
    let mut output = BufReader::new(child.stdout.take().context("cargo test has no stdout")?);
    let mut stdout = std::io::stdout();
    let mut line = Vec::new();
    loop {
        line.clear();
        if output
            .read_until(b'\n', &mut line)
            .context("cannot read cargo test's output")?
            == 0
        {
            break;
        }
        // Passed on even if the terminal went away: the counts must still be made.
        let _ = stdout.write_all(&line);
        counts.read(&String::from_utf8_lossy(&line));
    }
    let status = child.wait().context("cannot wait for cargo test")?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// What the steps did.
#[derive(Debug)]
struct Outcome<'a> {
    passed: Vec<&'a str>,
    /// The step that failed, and why.
    failed: Option<(&'a str, String)>,
    /// The steps after it.
    not_run: Vec<&'a str>,
}

/// Tests counted from libtest's output: the `test result:` line of each test binary (and each
/// doc-test run), the names of the tests that failed, and why each failed.
#[derive(Debug, Default, PartialEq, Eq)]
struct TestCounts {
    passed: u64,
    failed: u64,
    ignored: u64,
    failed_tests: Vec<String>,
    /// The first lines of each failed test's panic, from its `---- name stdout ----` section:
    /// the summary repeats them, since a long run's log is often read from its end only.
    panics: Vec<(String, Vec<String>)>,
    /// The test whose failure section is being read, and how many more panic lines to keep.
    reading: Option<(String, usize)>,
}

/// Panic lines kept per failed test, and characters per line.
const PANIC_LINES: usize = 4;
const PANIC_LINE_CHARS: usize = 400;

impl TestCounts {
    /// Counts one line of `cargo test`'s standard output, such as
    /// `test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.5s`
    /// or `test api::sqlite::x ... FAILED`; other lines are ignored.
    fn read(&mut self, line: &str) {
        let line = line.trim_end();
        if let Some(name) = line
            .strip_prefix("---- ")
            .and_then(|rest| rest.strip_suffix(" stdout ----"))
        {
            self.reading = Some((name.to_owned(), 0));
            return;
        }
        if let Some((name, left)) = &mut self.reading {
            if line.starts_with("thread '") && line.contains(" panicked at ") {
                *left = PANIC_LINES;
                self.panics.push((name.clone(), Vec::new()));
            }
            // The message ends at a blank line, a note or a backtrace.
            if line.is_empty() || line.starts_with("note: ") || line == "stack backtrace:" {
                *left = 0;
            }
            if *left > 0 {
                *left -= 1;
                if let Some((_, lines)) = self.panics.last_mut() {
                    lines.push(line.chars().take(PANIC_LINE_CHARS).collect());
                }
            }
            if line == "failures:" || line.starts_with("test result: ") {
                self.reading = None;
            }
        }
        if let Some(name) = line
            .strip_prefix("test ")
            .and_then(|rest| rest.strip_suffix(" ... FAILED"))
        {
            self.failed_tests.push(name.to_owned());
            return;
        }
        let Some(rest) = line.strip_prefix("test result: ") else {
            return;
        };
        let Some((_, counts)) = rest.split_once(". ") else {
            return;
        };
        for part in counts.split(';') {
            let mut words = part.split_whitespace();
            let (Some(number), Some(what)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(number) = number.parse::<u64>() else {
                continue;
            };
            match what {
                "passed" => self.passed += number,
                "failed" => self.failed += number,
                "ignored" => self.ignored += number,
                _ => {}
            }
        }
    }
}

/// The tests that skipped PostgreSQL, from the lines `<test>\t<reason>` of the skip log.
#[derive(Debug, Default, PartialEq, Eq)]
struct SkippedBackends {
    tests: std::collections::BTreeSet<String>,
    /// Each reason once, in the order first seen.
    reasons: Vec<String>,
}

impl SkippedBackends {
    fn parse(log: &str) -> Self {
        let mut skipped = Self::default();
        for line in log.lines().filter(|l| !l.trim().is_empty()) {
            let (test, reason) = line.split_once('\t').unwrap_or((line, ""));
            skipped.tests.insert(test.to_owned());
            if !reason.is_empty() && !skipped.reasons.iter().any(|r| r == reason) {
                skipped.reasons.push(reason.to_owned());
            }
        }
        skipped
    }
}

/// The closing lines of the run: the steps, the failed tests, the counts and the time, then
/// the skipped backends, last.
fn summary(
    outcome: &Outcome<'_>,
    tests: &TestCounts,
    skipped: &SkippedBackends,
    took: Duration,
) -> String {
    let mut lines = Vec::new();
    let mut steps = outcome
        .passed
        .iter()
        .map(|name| format!("{name} ok"))
        .collect::<Vec<_>>();
    match &outcome.failed {
        None => lines.push(format!(
            "cargo xtask ci: every step passed ({})",
            steps.join(", ")
        )),
        Some((name, why)) => {
            steps.push(format!("{name} FAILED"));
            let mut text = format!("cargo xtask ci: FAILED at {name} ({})", steps.join(", "));
            if !outcome.not_run.is_empty() {
                text.push_str(&format!("; not run: {}", outcome.not_run.join(", ")));
            }
            lines.push(text);
            lines.push(format!("  {why}"));
        }
    }
    if !tests.failed_tests.is_empty() {
        lines.push("failed tests:".to_owned());
        for name in &tests.failed_tests {
            lines.push(format!("  {name}"));
            let why = tests.panics.iter().filter(|(test, _)| test == name);
            lines.extend(why.flat_map(|(_, why)| why.iter().map(|line| format!("    {line}"))));
        }
    }
    let secs = took.as_secs();
    lines.push(format!(
        "{} passed, {} failed, {} ignored; total time {} min {} s",
        tests.passed,
        tests.failed,
        tests.ignored,
        secs / 60,
        secs % 60
    ));
    if !skipped.tests.is_empty() {
        let count = skipped.tests.len();
        let noun = if count == 1 { "test" } else { "tests" };
        let reasons = if skipped.reasons.is_empty() {
            "PostgreSQL is not reachable".to_owned()
        } else {
            skipped.reasons.join("; ")
        };
        lines.push(format!(
            "SKIPPED: {count} PostgreSQL {noun} did not run: {reasons}. Start PostgreSQL \
             (`cargo xtask db`) or point WEBHOOKD_TEST_PG_URL at one; under CI=true they fail \
             instead of skipping."
        ));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counted(output: &str) -> TestCounts {
        let mut counts = TestCounts::default();
        for line in output.lines() {
            counts.read(line);
        }
        counts
    }

    #[test]
    fn libtest_result_lines_are_summed_over_the_run() {
        let output = "\
running 3 tests
test a ... ok
test b ... ignored
test tidy::c ... FAILED

failures:

failures:
    tidy::c

test result: FAILED. 1 passed; 1 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s

running 120 tests
test result: ok. 118 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; finished in 42.10s

running 0 tests
test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s
test result: what. passed; x failed
test results: ok. 5 passed; 0 failed; 0 ignored
   Doc-tests webhook_domain
test result: ok. 4 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.2s
";
        assert_eq!(
            counted(output),
            TestCounts {
                passed: 123,
                failed: 1,
                ignored: 3,
                failed_tests: vec!["tidy::c".to_owned()],
                ..TestCounts::default()
            }
        );
    }

    #[test]
    fn each_failed_test_is_summed_up_with_the_first_lines_of_its_panic() {
        let output = "\
test amqp::x ... FAILED
test cli::y ... FAILED

failures:

---- amqp::x stdout ----
some output the test printed
thread 'amqp::x' (1234) panicked at crates/a.rs:10:5:
1499 of 5000 events arrived before the kill
note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace

---- cli::y stdout ----
thread 'cli::y' panicked at crates/b.rs:1:1:
assertion `left == right` failed
  left: 1
 right: 2
 more
 and more

failures:
    amqp::x
    cli::y

test result: FAILED. 0 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1s
";
        let counts = counted(output);
        let text = summary(
            &outcome(Some("tests")),
            &counts,
            &SkippedBackends::default(),
            Duration::from_secs(1),
        );
        assert!(
            text.contains(
                "failed tests:\n\
                 \x20 amqp::x\n\
                 \x20   thread 'amqp::x' (1234) panicked at crates/a.rs:10:5:\n\
                 \x20   1499 of 5000 events arrived before the kill\n\
                 \x20 cli::y\n\
                 \x20   thread 'cli::y' panicked at crates/b.rs:1:1:\n\
                 \x20   assertion `left == right` failed\n\
                 \x20     left: 1\n\
                 \x20    right: 2\n\
                 0 passed, 2 failed"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_test_that_prints_result_like_text_mid_line_is_not_counted() {
        let counts = counted("note: test result: ok. 9 passed; 0 failed\ntest x ... FAILED here\n");
        assert_eq!(counts, TestCounts::default());
    }

    #[test]
    fn skipped_backends_count_each_test_once_and_each_reason_once() {
        let skipped = SkippedBackends::parse(
            "api::postgres::a\tPostgreSQL is not reachable at 127.0.0.1:1: refused\n\
             api::postgres::b\tPostgreSQL is not reachable at 127.0.0.1:1: refused\n\
             api::postgres::a\tPostgreSQL is not reachable at 127.0.0.1:1: refused\n\
             \n\
             cli::c\tPostgreSQL is not reachable at 127.0.0.1:1: timed out\n",
        );
        assert_eq!(skipped.tests.len(), 3);
        assert_eq!(
            skipped.reasons,
            [
                "PostgreSQL is not reachable at 127.0.0.1:1: refused",
                "PostgreSQL is not reachable at 127.0.0.1:1: timed out"
            ]
        );
        assert_eq!(SkippedBackends::parse(""), SkippedBackends::default());
    }

    fn outcome(failed_at: Option<&'static str>) -> Outcome<'static> {
        match failed_at {
            None => Outcome {
                passed: vec!["format", "clippy", "tests"],
                failed: None,
                not_run: Vec::new(),
            },
            Some(step) => Outcome {
                passed: vec!["format", "clippy"],
                failed: Some((step, "cargo test failed (exit status: 101)".to_owned())),
                not_run: vec!["openapi", "fuzz"],
            },
        }
    }

    #[test]
    fn a_green_run_ends_with_the_counts_and_the_time() {
        let tests = TestCounts {
            passed: 1234,
            failed: 0,
            ignored: 5,
            ..TestCounts::default()
        };
        let text = summary(
            &outcome(None),
            &tests,
            &SkippedBackends::default(),
            Duration::from_secs(372),
        );
        assert_eq!(
            text,
            "cargo xtask ci: every step passed (format ok, clippy ok, tests ok)\n\
             1234 passed, 0 failed, 5 ignored; total time 6 min 12 s"
        );
    }

    #[test]
    fn a_failed_run_names_the_step_and_the_tests_and_still_ends_with_the_counts() {
        let tests = TestCounts {
            passed: 10,
            failed: 2,
            ignored: 0,
            failed_tests: vec!["api::sqlite::x".to_owned(), "cli::y".to_owned()],
            ..TestCounts::default()
        };
        let text = summary(
            &outcome(Some("tests")),
            &tests,
            &SkippedBackends::default(),
            Duration::from_millis(59_900),
        );
        assert_eq!(
            text,
            "cargo xtask ci: FAILED at tests (format ok, clippy ok, tests FAILED); not run: openapi, fuzz\n\
             \x20 cargo test failed (exit status: 101)\n\
             failed tests:\n\
             \x20 api::sqlite::x\n\
             \x20 cli::y\n\
             10 passed, 2 failed, 0 ignored; total time 0 min 59 s"
        );
    }

    #[test]
    fn skipped_backends_come_last_and_loud() {
        let skipped = SkippedBackends::parse(
            "a\tPostgreSQL is not reachable at 127.0.0.1:5432: error connecting to server\nb\tPostgreSQL is not reachable at 127.0.0.1:5432: error connecting to server\n",
        );
        let text = summary(
            &outcome(None),
            &TestCounts::default(),
            &skipped,
            Duration::from_secs(61),
        );
        let last = text.lines().last().unwrap();
        assert!(
            last.starts_with(
                "SKIPPED: 2 PostgreSQL tests did not run: PostgreSQL is not reachable at 127.0.0.1:5432: error connecting to server."
            ),
            "{text}"
        );
        assert!(text.contains("0 passed, 0 failed, 0 ignored; total time 1 min 1 s\nSKIPPED"));
        let one = SkippedBackends::parse("a\tdown\n");
        let text = summary(&outcome(None), &TestCounts::default(), &one, Duration::ZERO);
        assert!(
            text.contains("SKIPPED: 1 PostgreSQL test did not run: down."),
            "{text}"
        );
    }
}
