//! The cargo subcommands the checks use (cargo-fuzz, cargo-deny), pinned: each is installed
//! from crates.io into `~/.cargo/bin` when it is missing or another version, so every machine
//! runs the same one. Installing takes minutes, once per machine.

use std::process::Command;

use anyhow::{Context, bail};

/// A cargo subcommand at a pinned version.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PinnedTool {
    /// The crate to install, such as `cargo-fuzz`.
    pub(crate) package: &'static str,
    /// The subcommand, such as `fuzz` for `cargo fuzz`.
    pub(crate) subcommand: &'static str,
    pub(crate) version: &'static str,
}

impl PinnedTool {
    /// Installs the pinned version unless `cargo <subcommand> --version` already names it.
    pub(crate) fn ensure_installed(&self) -> anyhow::Result<()> {
        let found = self.installed_version();
        if found.as_deref() == Some(self.version) {
            return Ok(());
        }
        eprintln!(
            "{} {} is needed ({}); installing it from crates.io, which takes a few minutes once",
            self.package,
            self.version,
            match &found {
                Some(other) => format!("found {other}"),
                None => "not installed".to_owned(),
            }
        );
        crate::cargo(&[
            "install",
            "--locked",
            "--version",
            self.version,
            self.package,
        ])?;
        match self.installed_version() {
            Some(v) if v == self.version => Ok(()),
            other => bail!(
                "after installing {} {}, `cargo {} --version` reports {other:?}; is another \
                 copy earlier on PATH than ~/.cargo/bin?",
                self.package,
                self.version,
                self.subcommand
            ),
        }
    }

    /// The version `cargo <subcommand> --version` prints (`cargo-fuzz 0.13.2` gives `0.13.2`).
    fn installed_version(&self) -> Option<String> {
        let output = Command::new(crate::cargo_program())
            .args([self.subcommand, "--version"])
            .output()
            .ok()?;
        if !output.status.success() {
            return None;
        }
        let text = String::from_utf8(output.stdout).ok()?;
        text.split_whitespace().nth(1).map(str::to_owned)
    }

    /// `cargo <subcommand> <args…>` as a command to adjust and run.
    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(crate::cargo_program());
        command.arg(self.subcommand).args(args);
        command
    }
}

/// Runs `command`, echoing it first, and fails when it does.
pub(crate) fn run_command(mut command: Command) -> anyhow::Result<()> {
    let shown = format!("{command:?}");
    eprintln!("$ {shown}");
    let status = command
        .status()
        .with_context(|| format!("cannot run {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}
