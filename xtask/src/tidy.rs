//! Architecture rules checked mechanically. They run as `#[test]`s, so `cargo test` enforces
//! them. They read the sources as text (comments and literals blanked out first): they must not
//! need a build, and they never change a file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Crates that would mean the domain does I/O or is tied to a runtime, a driver or an HTTP
/// stack.
const FORBIDDEN_IN_DOMAIN: &[&str] = &[
    "tokio",
    "hyper",
    "hyper-util",
    "reqwest",
    "diesel",
    "diesel-async",
    "mio",
    "socket2",
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
    domain_tree_problems(&String::from_utf8_lossy(&output.stdout))
}

/// The verdict of [`check_domain_is_pure`] on the output of `cargo tree --prefix none`.
fn domain_tree_problems(tree: &str) -> Result<(), String> {
    if tree
        .lines()
        .next()
        .is_none_or(|first| !first.starts_with("webhook-domain"))
    {
        return Err(format!("unexpected cargo tree output:\n{tree}"));
    }
    let found: BTreeSet<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| FORBIDDEN_IN_DOMAIN.contains(name))
        .collect();
    if found.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "webhook-domain must stay pure, but depends on {}: move the code that needs it to an adapter (webhook-adapters) or the app, behind a port of webhook-ports",
            found.into_iter().collect::<Vec<_>>().join(", ")
        ))
    }
}

/// What webhook-domain's source must not use, and why: the domain does no I/O, never reads
/// the clock or the environment, and never draws random numbers, so that every rule of it is a
/// function of its inputs. (Paths under `std::net` are judged apart: the address types are
/// plain values the SSRF policy works on.)
const FORBIDDEN_IN_DOMAIN_SOURCE: &[(&str, &str)] = &[
    ("std::fs", "reads or writes files"),
    ("std::io::stdin", "reads the terminal"),
    ("std::process", "starts or ends processes"),
    ("std::env", "reads the environment"),
    ("std::thread", "sleeps or starts threads"),
    ("thread::sleep", "sleeps"),
    ("SystemTime::now", "reads the clock"),
    ("Instant::now", "reads the clock"),
    ("OffsetDateTime::now_utc", "reads the clock"),
    ("OffsetDateTime::now_local", "reads the clock"),
    ("Uuid::new_v4", "draws random numbers"),
    ("getrandom::", "draws random numbers"),
    ("rand::", "draws random numbers"),
    ("tokio::", "needs a runtime"),
];

/// The items of `std::net` that are values, not sockets: what an address is, never a
/// connection or a name lookup (`ToSocketAddrs` resolves names, so it is not here).
const DOMAIN_MAY_USE_FROM_STD_NET: &[&str] = &[
    "IpAddr",
    "Ipv4Addr",
    "Ipv6Addr",
    "SocketAddr",
    "SocketAddrV4",
    "SocketAddrV6",
    "AddrParseError",
];

/// Fails when webhook-domain's source (tests included) does I/O, reads the clock or the
/// environment, or draws random numbers: the dependency tree ([`check_domain_is_pure`])
/// cannot see the standard library.
pub(crate) fn check_domain_does_no_io() -> Result<(), String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/webhook-domain/src");
    let mut files = Vec::new();
    collect_sources(&src, &mut files).map_err(|e| format!("cannot read {}: {e}", src.display()))?;
    let mut sources = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let shown = file
            .strip_prefix(&src)
            .unwrap_or(file)
            .display()
            .to_string();
        sources.push((shown, text));
    }
    if sources.len() < 5 {
        return Err(
            "found almost no source files in webhook-domain: the tidy rule no longer matches the code"
                .to_owned(),
        );
    }
    domain_io_problems(&sources).map_or(Ok(()), Err)
}

/// The problems of [`check_domain_does_no_io`] over (file, source text) pairs, one line each.
fn domain_io_problems(sources: &[(String, String)]) -> Option<String> {
    let mut problems = Vec::new();
    for (file, text) in sources {
        let code = code_only(text);
        // `std::` paths with their `use` groups expanded: `use std::{fs, path::Path}` uses
        // `std::fs`.
        let std_paths: Vec<String> = paths_from(&code, "std")
            .into_iter()
            .map(|(_, path)| format!("std::{}", path.join("::")))
            .collect();
        for (pattern, what) in FORBIDDEN_IN_DOMAIN_SOURCE {
            let in_std = |path: &String| {
                path == pattern
                    || path
                        .strip_prefix(pattern)
                        .is_some_and(|rest| rest.starts_with("::"))
            };
            if contains_path(&code, pattern) || std_paths.iter().any(in_std) {
                problems.push(format!(
                    "webhook-domain/src/{file}: `{pattern}` {what}, which webhook-domain must not do: take the value as a parameter (the time as `now: OffsetDateTime`, random bytes or ids from the caller) and leave the I/O to an adapter or the app"
                ));
            }
        }
        for (_, path) in paths_from(&code, "std") {
            if path.first().map(String::as_str) != Some("net") {
                continue;
            }
            match path.get(1) {
                Some(item) if DOMAIN_MAY_USE_FROM_STD_NET.contains(&item.as_str()) => {}
                item => problems.push(format!(
                    "webhook-domain/src/{file}: `std::net::{}` is networking, which webhook-domain must not do: only the address types ({}) may be used here; connect or resolve in an adapter",
                    item.map_or("*", String::as_str),
                    DOMAIN_MAY_USE_FROM_STD_NET.join(", ")
                )),
            }
        }
    }
    problems.dedup();
    (!problems.is_empty()).then(|| problems.join("\n"))
}

/// Whether `code` names `pattern` (`SystemTime::now`, `getrandom::`) as a path of its own,
/// not as the tail of a longer name (`MySystemTime::now`).
fn contains_path(code: &str, pattern: &str) -> bool {
    code.match_indices(pattern).any(|(at, _)| {
        let before = code[..at].chars().next_back();
        let after = code[at + pattern.len()..].chars().next();
        !before.is_some_and(is_ident_char)
            && (pattern.ends_with("::") || !after.is_some_and(is_ident_char))
    })
}

/// Fails when a type that hides itself from `Debug` (a secret: `f.write_str("Name(<redacted>)")`)
/// derives `PartialEq`: a derived `==` stops at the first differing byte, so comparing a
/// presented secret with it leaks by timing. Such types implement `PartialEq` by hand with
/// `subtle`'s constant-time comparison.
pub(crate) fn check_secrets_compare_in_constant_time() -> Result<(), String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates");
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

/// The modules of webhook-app that may name `webhook_adapters`, with what each does with it.
/// (`lib.rs` and `main.rs`, the composition root and the binary, may name anything.)
const MAY_NAME_ADAPTERS: &[(&str, &str)] = &[
    (
        "database",
        "finds the backend a URL's scheme names in the adapters' registry",
    ),
    ("store", "opens that backend and hands out its ports"),
];

/// Fails when webhook-app's modules import each other in a circle (directly or through
/// others), when a module other than the store names the adapters crate, or when a module
/// outside the REST API reaches into it. Every file is a module of its own (`api` is
/// `api/mod.rs`, `api::auth` is `api/auth.rs`), so a `mod.rs` that uses its submodules must
/// not be used by them. `lib.rs` and `main.rs` wire everything and are left out.
pub(crate) fn check_app_boundaries() -> Result<(), String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/webhook-app/src");
    let mut files = Vec::new();
    collect_sources(&src, &mut files).map_err(|e| format!("cannot read {}: {e}", src.display()))?;
    let mut sources: Vec<(String, String)> = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap_or(file);
        let Some(module) = module_of(relative) else {
            continue;
        };
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        sources.push((module, text));
    }
    if sources.len() < 10 || !sources.iter().any(|(module, _)| module.contains("::")) {
        return Err(
            "found almost no modules, or no submodules, in webhook-app: the tidy rule no longer matches the code"
                .to_owned(),
        );
    }
    app_boundary_problems(&sources).map_or(Ok(()), Err)
}

/// The module a file under `src/` holds (`api/auth.rs` is `api::auth`, `api/mod.rs` is
/// `api`); `None` for the crate roots `lib.rs` and `main.rs`.
fn module_of(relative: &Path) -> Option<String> {
    let mut segments: Vec<String> = relative
        .components()
        .map(|c| {
            c.as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_owned()
        })
        .collect();
    if segments.last().is_some_and(|last| last == "mod") {
        segments.pop();
    }
    match segments.as_slice() {
        [] => None,
        [root] if root == "lib" || root == "main" => None,
        _ => Some(segments.join("::")),
    }
}

/// The problems of [`check_app_boundaries`] over (module, source text) pairs, one line each.
fn app_boundary_problems(sources: &[(String, String)]) -> Option<String> {
    let known: BTreeSet<&str> = sources.iter().map(|(m, _)| m.as_str()).collect();
    let top = |module: &str| module.split("::").next().unwrap_or(module).to_owned();
    let mut imports: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut problems = Vec::new();
    for (module, text) in sources {
        let code = code_only(text);
        let named = named_modules(module, &code, &known);
        if contains_path(&code, "webhook_adapters")
            && !MAY_NAME_ADAPTERS
                .iter()
                .any(|(allowed, _)| *allowed == top(module))
        {
            let allowed: Vec<String> = MAY_NAME_ADAPTERS
                .iter()
                .map(|(allowed, does)| format!("{allowed} ({does})"))
                .collect();
            problems.push(format!(
                "webhook-app's `{module}` names webhook_adapters, which only {}, and lib.rs, may: have lib.rs::start hand it the port (a trait of webhook_ports) it needs, or add what it needs to `Store`",
                allowed.join(" and ")
            ));
        }
        if top(module) != "api" {
            for api in named.iter().filter(|m| top(m) == "api") {
                problems.push(format!(
                    "webhook-app's `{module}` reaches into `{api}`, the REST API: move what it uses out of `api` (into webhook-domain, or a module of the app that `api` uses too), or wire it in lib.rs"
                ));
            }
        }
        imports.insert(module.as_str(), named);
    }
    for circle in find_circles(&imports) {
        problems.push(format!(
            "webhook-app's modules import each other in a circle: {}; move what the others use of `{}` into a module of its own that imports none of them (a mod.rs that uses its submodules only declares and wires them)",
            circle.join(" -> "),
            circle[0]
        ));
    }
    problems.dedup();
    (!problems.is_empty()).then(|| problems.join("\n"))
}

/// The modules among `known` that the code of `module` names: through `crate::`, `super::`
/// and `self::` paths and through the submodules it declares (`mod auth;` then `auth::...`),
/// `use` groups included. A path names the longest module it starts with
/// (`crate::api::auth::WalletAuth` names `api::auth`); methods are not followed. `super` inside
/// an inline module (`mod tests { use super::*; }`) is the file's own module.
fn named_modules(module: &str, code: &str, known: &BTreeSet<&str>) -> BTreeSet<String> {
    let own: Vec<&str> = module.split("::").collect();
    let children: BTreeSet<&str> = code
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            let line = line.strip_prefix("pub ").unwrap_or(line);
            let line = match line.strip_prefix("pub(") {
                Some(rest) => rest.split_once(") ").map_or(line, |(_, item)| item),
                None => line,
            };
            line.strip_prefix("mod ")?.strip_suffix(';')
        })
        .collect();
    let inline = inline_module_spans(code);
    let mut named = BTreeSet::new();
    let mut roots: Vec<&str> = vec!["crate", "super", "self"];
    roots.extend(children.iter().copied());
    for root in roots {
        for (at, rest) in paths_from(code, root) {
            let depth = inline.iter().filter(|(s, e)| *s < at && at < *e).count();
            let mut path: Vec<String> = match root {
                "crate" => Vec::new(),
                "self" => own.iter().map(|s| (*s).to_owned()).collect(),
                "super" => {
                    // `super::super::x` arrives as `super` then `[super, x]`.
                    let ups = 1 + rest.iter().take_while(|s| *s == "super").count();
                    let Some(keep) = own.len().checked_sub(ups.saturating_sub(depth)) else {
                        continue;
                    };
                    own[..keep].iter().map(|s| (*s).to_owned()).collect()
                }
                child => own
                    .iter()
                    .map(|s| (*s).to_owned())
                    .chain([child.to_owned()])
                    .collect(),
            };
            path.extend(rest.iter().filter(|s| *s != "super").cloned());
            let longest = (1..=path.len())
                .rev()
                .map(|n| path[..n].join("::"))
                .find(|prefix| known.contains(prefix.as_str()));
            if let Some(target) = longest
                && target != module
            {
                named.insert(target);
            }
        }
    }
    named
}

/// The byte ranges of the inline modules (`mod tests { ... }`) of `code`, braces included.
fn inline_module_spans(code: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    for (at, _) in code.match_indices("mod ") {
        if code[..at].chars().next_back().is_some_and(is_ident_char) {
            continue;
        }
        let after = &code[at + "mod ".len()..];
        let name_len = after.chars().take_while(|c| is_ident_char(*c)).count();
        let Some(body) = after[name_len..].trim_start().strip_prefix('{') else {
            continue;
        };
        let open = code.len() - body.len() - 1;
        let mut depth = 0;
        for (i, c) in code[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        spans.push((open, open + i));
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    spans
}

/// Every path of `code` that starts with the segment `root` (`crate`, `super`, `std`, a
/// submodule's name), as where it starts and its segments after `root`, with `use` groups
/// expanded: `crate::{a, b::{c, self}}` gives `[a]`, `[b, c]` and `[b]`.
fn paths_from(code: &str, root: &str) -> Vec<(usize, Vec<String>)> {
    let mut found = Vec::new();
    let needle = format!("{root}::");
    for (at, _) in code.match_indices(&needle) {
        // A segment of a longer path (`a::crate::`) or of a longer name (`my_crate::`) is not a
        // path of its own; `$crate` in a macro is.
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| is_ident_char(c) || c == ':') {
            continue;
        }
        for path in use_tree(&code[at + needle.len()..]).0 {
            found.push((at, path));
        }
    }
    found
}

/// The paths a use tree (or a plain path) at the start of `text` names, and the bytes it
/// spans: `a::b::{c, d::e as f}` gives `[a, b, c]` and `[a, b, d, e]`.
fn use_tree(text: &str) -> (Vec<Vec<String>>, usize) {
    let mut prefix: Vec<String> = Vec::new();
    let mut at = 0;
    loop {
        let rest = &text[at..];
        if let Some(group) = rest.strip_prefix('{') {
            let skip_space =
                |pos: usize| pos + (group[pos..].len() - group[pos..].trim_start().len());
            let mut paths = Vec::new();
            let mut pos = 0;
            loop {
                pos = skip_space(pos);
                if group[pos..].is_empty() {
                    break;
                }
                if group[pos..].starts_with('}') {
                    pos += 1;
                    break;
                }
                let (subpaths, used) = use_tree(&group[pos..]);
                if used == 0 {
                    // Not a use tree (a block after a path, say): what came before stands.
                    break;
                }
                for sub in subpaths {
                    let mut path = prefix.clone();
                    path.extend(sub.into_iter().filter(|s| s != "self"));
                    paths.push(path);
                }
                pos = skip_space(pos + used);
                if let Some(alias) = group[pos..].strip_prefix("as ") {
                    let name = alias.trim_start();
                    let len = name.chars().take_while(|c| is_ident_char(*c)).count();
                    pos = group.len() - name.len() + len;
                }
                pos = skip_space(pos);
                if group[pos..].starts_with(',') {
                    pos += 1;
                }
            }
            return (paths, at + 1 + pos);
        }
        let len = rest
            .chars()
            .take_while(|c| is_ident_char(*c) || *c == '*')
            .count();
        if len == 0 {
            return if prefix.is_empty() {
                (Vec::new(), 0)
            } else {
                (vec![prefix], at)
            };
        }
        prefix.push(rest[..len].to_owned());
        at += len;
        if text[at..].starts_with("::") {
            at += 2;
        } else {
            return (vec![prefix], at);
        }
    }
}

/// The circles of imports that a depth-first walk meets, each as the modules along it with the
/// first repeated at the end, each circle once.
fn find_circles(imports: &BTreeMap<&str, BTreeSet<String>>) -> Vec<Vec<String>> {
    fn visit<'a>(
        module: &'a str,
        imports: &'a BTreeMap<&str, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
        circles: &mut Vec<Vec<String>>,
    ) {
        if let Some(start) = path.iter().position(|m| *m == module) {
            let mut circle: Vec<String> = path[start..].iter().map(|m| (*m).to_owned()).collect();
            circle.push(module.to_owned());
            circles.push(circle);
            return;
        }
        if done.contains(module) {
            return;
        }
        path.push(module);
        for next in imports.get(module).into_iter().flatten() {
            visit(next.as_str(), imports, path, done, circles);
        }
        path.pop();
        done.insert(module);
    }
    let mut circles = Vec::new();
    let mut done = BTreeSet::new();
    for module in imports.keys() {
        visit(module, imports, &mut Vec::new(), &mut done, &mut circles);
    }
    circles
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Rust source with its comments, and the contents of its string and character literals, made
/// blank (line breaks kept), so that a path named in prose or in a message is not taken for
/// one the code uses.
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let previous_is_ident = i > 0 && is_ident_char(chars[i - 1]);
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            // Block comments nest in Rust.
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r'
            && matches!(next, Some('"' | '#'))
            && (!previous_is_ident
                || ((i == 1 || !is_ident_char(chars[i - 2])) && chars[i - 1] == 'b'))
            && chars[i + 1..]
                .iter()
                .find(|c| **c != '#')
                .is_some_and(|c| *c == '"')
        {
            // A raw string: r"...", r#"..."#, br"...".
            let hashes = chars[i + 1..].iter().take_while(|c| **c == '#').count();
            out.push('r');
            out.push_str(&"#".repeat(hashes));
            out.push('"');
            i += 1 + hashes + 1;
            while i < chars.len() {
                if chars[i] == '"'
                    && chars[i + 1..]
                        .iter()
                        .take(hashes)
                        .filter(|c| **c == '#')
                        .count()
                        == hashes
                {
                    out.push('"');
                    out.push_str(&"#".repeat(hashes));
                    i += 1 + hashes;
                    break;
                }
                out.push(blank(chars[i]));
                i += 1;
            }
        } else if c == '"' {
            out.push('"');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < chars.len() {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
            out.push('"');
            i += 1;
        } else if c == '\'' && next == Some('\\') {
            // An escaped character: '\n', '\'', '\u{7b}'.
            out.push_str("' '");
            i += 3;
            while i < chars.len() && chars[i] != '\'' {
                i += 1;
            }
            i += 1;
        } else if c == '\'' && chars.get(i + 2) == Some(&'\'') {
            // A character such as '{', which would otherwise open a block.
            out.push_str("' '");
            i += 3;
        } else {
            // Code, and lifetimes ('a), which have no closing quote.
            out.push(c);
            i += 1;
        }
    }
    out
}

fn collect_sources(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
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
    fn webhook_domain_source_does_no_io() {
        if let Err(problem) = super::check_domain_does_no_io() {
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
    fn a_domain_depending_on_an_io_crate_is_caught() {
        let tree = "webhook-domain v0.0.0 (/w/crates/webhook-domain)\nserde v1.0.0\ntokio v1.40.0\nreqwest v0.12.0\n";
        let problem = super::domain_tree_problems(tree).unwrap_err();
        assert!(problem.contains("depends on reqwest, tokio"), "{problem}");
        assert!(problem.contains("move the code"), "{problem}");
        let pure = "webhook-domain v0.0.0 (/w/crates/webhook-domain)\nserde v1.0.0\ntime v0.3.0\n";
        assert_eq!(super::domain_tree_problems(pure), Ok(()));
        assert!(super::domain_tree_problems("error: no such package").is_err());
    }

    #[test]
    fn a_domain_doing_io_in_its_source_is_caught() {
        for (code, named) in [
            ("use std::fs;", "`std::fs`"),
            ("let x = std::fs::read(p);", "`std::fs`"),
            ("use std::{fs, path::Path};", "`std::fs`"),
            ("std::process::exit(1)", "`std::process`"),
            ("let v = std::env::var(\"X\");", "`std::env`"),
            ("std::thread::sleep(d);", "`std::thread`"),
            ("use std::thread; thread::sleep(d);", "`thread::sleep`"),
            ("let t = SystemTime::now();", "`SystemTime::now`"),
            ("let t = std::time::Instant::now();", "`Instant::now`"),
            (
                "let t = OffsetDateTime::now_utc();",
                "`OffsetDateTime::now_utc`",
            ),
            ("let id = Uuid::new_v4();", "`Uuid::new_v4`"),
            ("getrandom::fill(&mut b)", "`getrandom::`"),
            ("use std::net::TcpStream;", "`std::net::TcpStream`"),
            (
                "use std::net::{IpAddr, ToSocketAddrs};",
                "`std::net::ToSocketAddrs`",
            ),
            ("use std::net::*;", "`std::net::*`"),
        ] {
            let problems = super::domain_io_problems(&sources(&[("x.rs", code)]))
                .unwrap_or_else(|| panic!("{code}: not caught"));
            assert!(problems.contains(named), "{code}: {problems}");
            assert!(problems.contains("webhook-domain/src/x.rs"), "{problems}");
        }
        let pure = sources(&[(
            "address.rs",
            "//! Never calls SystemTime::now or std::fs.\n\
             use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};\n\
             fn f(now: OffsetDateTime) -> String { let _ = MySystemTime::now(); \"std::fs\".into() }",
        )]);
        assert_eq!(super::domain_io_problems(&pure), None);
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

    /// A mod.rs that uses its submodules, and a submodule that uses the mod.rs back (through
    /// `super::`, `crate::` or a re-export), make a circle like any other.
    #[test]
    fn circles_through_submodules_are_found() {
        let problems = super::app_boundary_problems(&sources(&[
            (
                "api",
                "mod auth;\nmod json;\npub(crate) use auth::AdminCredential;\npub(crate) struct ApiState;",
            ),
            ("api::auth", "use super::{ApiState, json::JsonBody};"),
            ("api::json", "use crate::api::problem::Problem;"),
            ("api::problem", ""),
        ]))
        .unwrap();
        assert!(problems.contains("api -> api::auth -> api"), "{problems}");
        assert!(problems.contains("a mod.rs that uses"), "{problems}");

        let problems = super::app_boundary_problems(&sources(&[
            ("config", "mod validate;\nfn load() { validate::check(); }"),
            ("config::schema", ""),
            (
                "config::validate",
                "use super::schema::Settings;\nmod tests {\n    mod deeper { use super::super::super::Loaded; }\n}",
            ),
        ]))
        .unwrap();
        assert!(
            problems.contains("config -> config::validate -> config"),
            "{problems}"
        );

        let problems = super::app_boundary_problems(&sources(&[
            ("dispatcher", "mod slots;\nuse slots::Slots;"),
            ("dispatcher::slots", "use crate::dispatcher::Dispatcher;"),
        ]))
        .unwrap();
        assert!(
            problems.contains("dispatcher -> dispatcher::slots -> dispatcher"),
            "{problems}"
        );

        // Submodules that use their siblings, and test modules that `use super::*`, are fine;
        // so is a crate or a local name that only looks like a submodule.
        let layered = sources(&[
            (
                "api",
                "mod auth;\nmod state;\npub(crate) use auth::AdminCredential;\npub(crate) use state::ApiState;",
            ),
            (
                "api::auth",
                "use super::state::ApiState;\nuse serde_json::json;\nlet s = \"super::ApiState\";\n#[cfg(test)]\nmod tests {\n    use super::*;\n    fn f(c: char) -> bool { c == '{' }\n}",
            ),
            ("api::state", "use crate::config::ApiSettings;"),
            (
                "config",
                "mod schema;\npub use schema::ApiSettings;\nfn f() { config::Config::builder(); }",
            ),
            ("config::schema", ""),
        ]);
        assert_eq!(super::app_boundary_problems(&layered), None);
    }

    #[test]
    fn only_non_api_code_is_kept_out_of_the_api() {
        let problems = super::app_boundary_problems(&sources(&[
            ("api", "mod json;"),
            ("api::json", ""),
            ("operator", "use crate::api::json::nesting_depth;"),
            ("bootstrap", "let c = crate::api::AdminCredential::new(h);"),
        ]))
        .unwrap();
        assert!(
            problems.contains("`operator` reaches into `api::json`"),
            "{problems}"
        );
        assert!(
            problems.contains("`bootstrap` reaches into `api`"),
            "{problems}"
        );
        assert!(
            problems.contains("move what it uses out of `api`"),
            "{problems}"
        );
    }

    #[test]
    fn only_the_store_names_the_adapters() {
        let problems = super::app_boundary_problems(&sources(&[
            ("store", "use webhook_adapters::PgStore;"),
            ("dispatcher", "use webhook_adapters::HyperTransport;"),
            (
                "dispatcher::slots",
                "let t = webhook_adapters::SystemClock;",
            ),
            (
                "metrics",
                "// webhook_adapters in prose\nlet s = \"webhook_adapters\";",
            ),
        ]))
        .unwrap();
        assert!(
            problems.contains("`dispatcher` names webhook_adapters"),
            "{problems}"
        );
        assert!(
            problems.contains("`dispatcher::slots` names webhook_adapters"),
            "{problems}"
        );
        assert!(
            problems.contains("have lib.rs::start hand it the port"),
            "{problems}"
        );
        assert!(!problems.contains("`store`"), "{problems}");
        assert!(!problems.contains("`metrics`"), "{problems}");
    }

    #[test]
    fn group_imports_name_their_first_level_items() {
        let code = "use crate::{a, b::c, d::{e, f}, g};\nlet x = crate::h::i();";
        let first: Vec<String> = super::paths_from(code, "crate")
            .into_iter()
            .map(|(_, path)| path[0].clone())
            .collect();
        assert_eq!(first, ["a", "b", "d", "d", "g", "h"]);
        let paths: Vec<Vec<String>> =
            super::paths_from("use super::{self as me, x::{y as z, self}, w};", "super")
                .into_iter()
                .map(|(_, path)| path)
                .collect();
        assert_eq!(
            paths,
            [
                vec![],
                vec!["x".to_owned(), "y".to_owned()],
                vec!["x".to_owned()],
                vec!["w".to_owned()]
            ]
        );
    }

    #[test]
    fn comments_and_literals_are_blanked() {
        let code = super::code_only(
            "a /* x /* crate::y */ z */ b // crate::c\n\"crate::d \\\" {\" r#\"crate::e \"{\"# 'x' '{' '\\'' <'a> f",
        );
        assert!(!code.contains("crate::"), "{code}");
        assert!(!code.contains('{'), "{code}");
        assert!(code.starts_with("a ") && code.contains(" b "), "{code}");
        assert!(code.contains("<'a> f"), "{code}");
        assert_eq!(code.lines().count(), 2, "{code}");
    }
}
