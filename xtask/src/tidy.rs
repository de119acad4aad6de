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

/// The modules of webhook-app that may name `webhook_adapters`: `database` finds the backend a
/// URL's scheme names in the adapters' registry, and `store` opens it. (`lib.rs` and `main.rs`,
/// the composition root and the binary, may name anything.)
const MAY_NAME_ADAPTERS: &[&str] = &["database", "store"];

/// Fails when webhook-app's modules import each other in a circle (directly or through
/// others), when a module other than the store names the adapters crate, or when a module
/// outside the REST API reaches into it. Modules are the top-level ones (`config.rs`, `api/`
/// with everything under it): what a module's own submodules do among themselves is its
/// business. `lib.rs` and `main.rs` wire everything and are left out.
pub(crate) fn check_app_boundaries() -> Result<(), String> {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/webhook-app/src");
    let mut files = Vec::new();
    collect_sources(&src, &mut files).map_err(|e| format!("cannot read {}: {e}", src.display()))?;
    let mut sources: Vec<(String, String)> = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap_or(file);
        let Some(first) = relative.components().next() else {
            continue;
        };
        let module = first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        if module == "lib" || module == "main" {
            continue;
        }
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        sources.push((module, text));
    }
    if sources.len() < 5 {
        return Err(
            "found almost no modules in webhook-app: the tidy rule no longer matches the code"
                .to_owned(),
        );
    }
    app_boundary_problems(&sources).map_or(Ok(()), Err)
}

/// The problems of [`check_app_boundaries`] over (module, source text) pairs, one line each.
fn app_boundary_problems(sources: &[(String, String)]) -> Option<String> {
    use std::collections::{BTreeMap, BTreeSet};
    let modules: BTreeSet<&str> = sources.iter().map(|(m, _)| m.as_str()).collect();
    let mut imports: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut problems = Vec::new();
    for (module, text) in sources {
        let code = without_comments(text);
        let named = imports.entry(module.as_str()).or_default();
        named.extend(
            crate_paths(&code)
                .into_iter()
                .filter(|m| m != module && modules.contains(m.as_str())),
        );
        if code.contains("webhook_adapters") && !MAY_NAME_ADAPTERS.contains(&module.as_str()) {
            problems.push(format!(
                "webhook-app's `{module}` names webhook_adapters: only {MAY_NAME_ADAPTERS:?} (and lib.rs) may; take what it needs through a port"
            ));
        }
    }
    for (module, named) in &imports {
        if *module != "api" && named.contains("api") {
            problems.push(format!(
                "webhook-app's `{module}` reaches into `api`: move what it uses out of the REST API (or wire it in lib.rs)"
            ));
        }
    }
    if let Some(circle) = find_circle(&imports) {
        problems.push(format!(
            "webhook-app's modules import each other in a circle: {}",
            circle.join(" -> ")
        ));
    }
    problems.dedup();
    (!problems.is_empty()).then(|| problems.join("\n"))
}

/// The text without its `//` comment lines (doc comments included), so that a module named in
/// prose is not an import.
fn without_comments(text: &str) -> String {
    text.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first segment of every `crate::` path in `code`, including each first-level item of a
/// `use crate::{a, b::c, d::{e}}` group.
fn crate_paths(code: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            // First-level items: after the brace and after each comma at depth one.
            let mut depth = 1;
            let mut expecting = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 1 => break,
                    '}' => depth -= 1,
                    ',' if depth == 1 => expecting = true,
                    c if expecting && (c.is_ascii_alphabetic() || c == '_') => {
                        found.push(ident(&group[i..]));
                        expecting = false;
                    }
                    _ => {}
                }
            }
        } else {
            found.push(ident(after));
        }
        rest = after;
    }
    found.retain(|m| !m.is_empty());
    found
}

/// A circle of imports, as the modules along it with the first repeated at the end.
fn find_circle(
    imports: &std::collections::BTreeMap<&str, std::collections::BTreeSet<String>>,
) -> Option<Vec<String>> {
    fn visit<'a>(
        module: &'a str,
        imports: &'a std::collections::BTreeMap<&str, std::collections::BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut std::collections::BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|m| *m == module) {
            let mut circle: Vec<String> = path[start..].iter().map(|m| (*m).to_owned()).collect();
            circle.push(module.to_owned());
            return Some(circle);
        }
        if done.contains(module) {
            return None;
        }
        path.push(module);
        for next in imports.get(module).into_iter().flatten() {
            if let Some(circle) = visit(next.as_str(), imports, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        done.insert(module);
        None
    }
    let mut done = std::collections::BTreeSet::new();
    imports
        .keys()
        .find_map(|module| visit(module, imports, &mut Vec::new(), &mut done))
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

    #[test]
    fn webhook_app_modules_keep_their_boundaries() {
        if let Err(problem) = super::check_app_boundaries() {
            panic!("{problem}");
        }
    }

    fn sources(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(m, t)| ((*m).to_owned(), (*t).to_owned()))
            .collect()
    }

    #[test]
    fn circles_through_other_modules_are_found() {
        let circle = sources(&[
            ("api", "use crate::config::Settings;"),
            ("config", "use crate::{database::Database, store::Store};"),
            ("store", "fn f() -> crate::api::Status { todo!() }"),
            ("database", "// crate::api in a comment is no import"),
        ]);
        let problems = super::app_boundary_problems(&circle).unwrap();
        assert!(
            problems.contains("api -> config -> store -> api"),
            "{problems}"
        );
        assert!(
            problems.contains("`store` reaches into `api`"),
            "{problems}"
        );
        let clean = sources(&[
            ("api", "use crate::{config::{Settings, Role}, metrics};"),
            ("config", "use crate::database::Database;"),
            ("database", "// uses crate::api in prose only"),
            ("metrics", ""),
        ]);
        assert_eq!(super::app_boundary_problems(&clean), None);
    }

    #[test]
    fn only_the_store_names_the_adapters() {
        let problems = super::app_boundary_problems(&sources(&[
            ("store", "use webhook_adapters::PgStore;"),
            ("dispatcher", "use webhook_adapters::HyperTransport;"),
        ]))
        .unwrap();
        assert!(
            problems.contains("`dispatcher` names webhook_adapters"),
            "{problems}"
        );
        assert!(!problems.contains("`store`"), "{problems}");
    }

    #[test]
    fn group_imports_name_their_first_level_items() {
        assert_eq!(
            super::crate_paths("use crate::{a, b::c, d::{e, f}, g};\nlet x = crate::h::i();"),
            ["a", "b", "d", "g", "h"]
        );
    }
}
