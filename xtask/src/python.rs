//! The Python virtual environment under `target/` for the tasks that use PyPI packages
//! (`openapi --check`, `deploy --check`, `schemathesis`), so that nothing is installed
//! system-wide.

use std::path::{Path, PathBuf};

use anyhow::Context;

const VENV: &str = "target/xtask-venv";

/// The packages the checks use, pinned. A venv made with another list is updated on the next
/// run, so adding a package here is enough.
const REQUIREMENTS: &[&str] = &["openapi-spec-validator==0.7.2", "PyYAML==6.0.3"];

/// The API fuzzer of `cargo xtask schemathesis`, pinned: its checks and CLI flags change
/// between releases. Installed only by that task, which is too slow for every CI run.
pub(crate) const SCHEMATHESIS: &[&str] = &["schemathesis==4.32.5"];

/// Records what was installed, to tell an up-to-date venv from an older one.
const INSTALLED_STAMP: &str = "xtask-requirements.txt";

/// The venv's interpreter, after creating the venv and installing [`REQUIREMENTS`] and `extra`
/// when they are not there yet.
pub(crate) fn interpreter(extra: &[&str]) -> anyhow::Result<PathBuf> {
    let venv = Path::new(VENV);
    let python = venv.join("bin/python");
    if !python.exists() {
        crate::run("python3", &["-m", "venv", VENV])?;
    }
    let stamp = venv.join(INSTALLED_STAMP);
    let installed = std::fs::read_to_string(&stamp).unwrap_or_default();
    let wanted: Vec<&str> = REQUIREMENTS.iter().chain(extra).copied().collect();
    if let Some(stamp_text) = missing_from(&installed, &wanted) {
        let mut args = vec!["-m", "pip", "install", "--quiet"];
        args.extend(&wanted);
        crate::run(&python.to_string_lossy(), &args)?;
        std::fs::write(&stamp, stamp_text)
            .with_context(|| format!("cannot write {}", stamp.display()))?;
    }
    Ok(python)
}

/// `None` when every wanted pin is among the installed ones; otherwise the stamp to write once
/// they are installed: the wanted pins, plus the installed ones of other packages (a task that
/// needs fewer packages must not make the next one reinstall).
fn missing_from(installed: &str, wanted: &[&str]) -> Option<String> {
    let installed: Vec<&str> = installed.lines().filter(|l| !l.is_empty()).collect();
    if wanted.iter().all(|w| installed.contains(w)) {
        return None;
    }
    let package = |pin: &str| pin.split("==").next().unwrap_or(pin).to_owned();
    let wanted_packages: Vec<String> = wanted.iter().map(|w| package(w)).collect();
    let mut lines: Vec<&str> = installed
        .into_iter()
        .filter(|pin| !wanted_packages.contains(&package(pin)))
        .chain(wanted.iter().copied())
        .collect();
    lines.sort_unstable();
    Some(format!("{}\n", lines.join("\n")))
}

#[cfg(test)]
mod tests {
    use super::missing_from;

    #[test]
    fn a_venv_with_every_wanted_pin_is_left_alone() {
        assert_eq!(missing_from("a==1\nb==2\nc==3\n", &["a==1", "c==3"]), None);
    }

    #[test]
    fn a_changed_pin_replaces_the_old_one_and_keeps_the_others() {
        assert_eq!(
            missing_from("a==1\nb==2\n", &["a==2"]).as_deref(),
            Some("a==2\nb==2\n")
        );
        assert_eq!(
            missing_from("", &["b==1", "a==1"]).as_deref(),
            Some("a==1\nb==1\n")
        );
    }
}
