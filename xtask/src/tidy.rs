//! Architecture rules checked mechanically. They run as `#[test]`s, so `cargo test` enforces
//! them.

use std::process::Command;

/// Crates that would mean the domain does I/O or is tied to a runtime or driver.
const FORBIDDEN_IN_DOMAIN: &[&str] = &[
    "tokio",
    "hyper",
    "hyper-util",
    "diesel",
    "diesel-async",
    "mio",
];

/// Fails when webhook-domain depends, directly or not, on a forbidden crate.
pub(crate) fn check_domain_is_pure() -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args([
            "tree",
            "--package",
            "webhook-domain",
            "--edges",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .output()
        .map_err(|e| format!("cannot run cargo tree: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo tree failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let tree = String::from_utf8_lossy(&output.stdout);
    let found: Vec<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| FORBIDDEN_IN_DOMAIN.contains(name))
        .collect();
    if tree
        .lines()
        .next()
        .is_none_or(|first| !first.starts_with("webhook-domain"))
    {
        return Err(format!("unexpected cargo tree output:\n{tree}"));
    }
    if found.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "webhook-domain must stay pure, but depends on {}: move that code to an adapter or the app",
            found.join(", ")
        ))
    }
}

/// Fails when a type that hides itself from `Debug` (a secret: `f.write_str("Name(<redacted>)")`)
/// derives `PartialEq`: a derived `==` stops at the first differing byte, so comparing a
/// presented secret with it leaks by timing. Such types implement `PartialEq` by hand with
/// `subtle`'s constant-time comparison.
pub(crate) fn check_secrets_compare_in_constant_time() -> Result<(), String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates");
    let mut problems = Vec::new();
    let mut secrets = 0;
    let mut files = Vec::new();
    collect_sources(&root, &mut files).map_err(|e| format!("cannot read crates/: {e}"))?;
    for file in files {
        let text =
            std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        for (at, _) in text.match_indices("(<redacted>)\")") {
            let start = text[..at].rfind('"').map_or(0, |quote| quote + 1);
            let name = &text[start..at];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
                continue;
            }
            secrets += 1;
            let lines: Vec<&str> = text.lines().collect();
            let declared = lines.iter().position(|line| {
                line.trim_start()
                    .trim_start_matches("pub ")
                    .starts_with(&format!("struct {name}"))
            });
            let derives_eq = declared.is_some_and(|index| {
                lines[..index]
                    .iter()
                    .rev()
                    .take_while(|line| {
                        line.trim_start().starts_with("#[") || line.trim_start().starts_with("///")
                    })
                    .any(|line| line.contains("derive(") && line.contains("PartialEq"))
            });
            if derives_eq {
                problems.push(format!(
                    "{}: {name} redacts its Debug (a secret) but derives PartialEq; implement it with subtle::ConstantTimeEq",
                    file.display()
                ));
            }
        }
    }
    if secrets == 0 {
        return Err("found no redacted type: the tidy rule no longer matches the code".to_owned());
    }
    // A name quoted twice in one file (its `Debug` and a test of it) is one problem.
    problems.dedup();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

fn collect_sources(
    dir: &std::path::Path,
    out: &mut Vec<std::path::PathBuf>,
) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "target") {
                collect_sources(&path, out)?;
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn secrets_compare_in_constant_time() {
        if let Err(problem) = super::check_secrets_compare_in_constant_time() {
            panic!("{problem}");
        }
    }

    #[test]
    fn webhook_domain_does_not_depend_on_io_crates() {
        if let Err(problem) = super::check_domain_is_pure() {
            panic!("{problem}");
        }
    }
}
