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

#[cfg(test)]
mod tests {
    #[test]
    fn webhook_domain_does_not_depend_on_io_crates() {
        if let Err(problem) = super::check_domain_is_pure() {
            panic!("{problem}");
        }
    }
}
