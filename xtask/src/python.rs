//! The Python virtual environment under `target/` for the checks that use PyPI packages
//! (`openapi --check`, `deploy --check`), so that nothing is installed system-wide.

use std::path::{Path, PathBuf};

use anyhow::Context;

const VENV: &str = "target/xtask-venv";

/// The packages the checks use, pinned. A venv made with another list is updated on the next
/// run, so adding a package here is enough.
const REQUIREMENTS: &[&str] = &["openapi-spec-validator==0.7.2", "PyYAML==6.0.3"];

/// Records what was installed, to tell an up-to-date venv from an older one.
const INSTALLED_STAMP: &str = "xtask-requirements.txt";

/// The venv's interpreter, after creating the venv and installing [`REQUIREMENTS`] when they
/// are not there yet.
pub(crate) fn interpreter() -> anyhow::Result<PathBuf> {
    let venv = Path::new(VENV);
    let python = venv.join("bin/python");
    if !python.exists() {
        crate::run("python3", &["-m", "venv", VENV])?;
    }
    let stamp = venv.join(INSTALLED_STAMP);
    let wanted = format!("{}\n", REQUIREMENTS.join("\n"));
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(wanted.as_str()) {
        let mut args = vec!["-m", "pip", "install", "--quiet"];
        args.extend(REQUIREMENTS);
        crate::run(&python.to_string_lossy(), &args)?;
        std::fs::write(&stamp, wanted)
            .with_context(|| format!("cannot write {}", stamp.display()))?;
    }
    Ok(python)
}
