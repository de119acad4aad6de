//! docs/extending.md stays true: each `rust` block of it is quoted from the file its first line
//! names (`// crates/...`), which the tests compile, and each path it names exists unless it is
//! marked `(new)`. A block may leave lines out where it says `// ...`; what it shows must be the
//! file's own lines, in order, at any one indentation.

use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The `rust` blocks of `markdown`, each with the line it starts on.
fn rust_blocks(markdown: &str) -> Vec<(usize, Vec<&str>)> {
    let mut blocks = Vec::new();
    let mut open: Option<(usize, Vec<&str>)> = None;
    for (number, line) in markdown.lines().enumerate() {
        let fence = line.trim_start();
        match &mut open {
            Some(_) if fence.starts_with("```") => blocks.extend(open.take()),
            Some((_, lines)) => lines.push(line),
            None if fence == "```rust" => open = Some((number + 1, Vec::new())),
            None => {}
        }
    }
    assert!(open.is_none(), "a rust block is never closed");
    blocks
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// Where `chunk` occurs in `file` at or after `from`, at any one indentation: the line after it.
fn find(file: &[&str], chunk: &[&str], from: usize) -> Option<usize> {
    let first = chunk.iter().find(|l| !l.trim().is_empty())?;
    (from..file.len()).find_map(|start| {
        let window = file.get(start..start + chunk.len())?;
        let at = window.iter().zip(chunk).find(|(_, c)| *c == first)?.0;
        let shift = indent(at).checked_sub(indent(first))?;
        let same = window.iter().zip(chunk).all(|(line, quoted)| {
            if quoted.trim().is_empty() {
                line.trim().is_empty()
            } else {
                indent(line) == indent(quoted) + shift && line.trim_start() == quoted.trim_start()
            }
        });
        same.then_some(start + chunk.len())
    })
}

/// What is wrong with the block starting at line `number`, if anything.
fn check_block(number: usize, block: &[&str]) -> Option<String> {
    let Some(path) = block
        .first()
        .and_then(|l| l.trim().strip_prefix("// crates/"))
    else {
        return Some(format!(
            "line {number}: a rust block must start with `// crates/...`, the file it quotes"
        ));
    };
    let path = format!("crates/{path}");
    let text = match std::fs::read_to_string(workspace().join(&path)) {
        Ok(text) => text,
        Err(e) => return Some(format!("line {number}: {path}: {e}")),
    };
    let file: Vec<&str> = text.lines().collect();
    let mut from = 0;
    for chunk in block[1..].split(|l| l.trim() == "// ...") {
        match find(&file, chunk, from) {
            Some(next) => from = next,
            None => {
                return Some(format!(
                    "line {number}: these lines are not in {path} (in this order, after the \
                     block's earlier lines); quote the file as it is:\n{}",
                    chunk.join("\n")
                ));
            }
        }
    }
    None
}

#[test]
fn every_rust_block_of_extending_md_is_quoted_from_a_compiled_file() {
    let doc = std::fs::read_to_string(workspace().join("docs/extending.md")).unwrap();
    let blocks = rust_blocks(&doc);
    assert!(blocks.len() >= 6, "only {} rust blocks", blocks.len());
    let problems: Vec<String> = blocks
        .iter()
        .filter_map(|(number, block)| check_block(*number, block))
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

#[test]
fn every_file_extending_md_names_exists_unless_marked_new() {
    let doc = std::fs::read_to_string(workspace().join("docs/extending.md")).unwrap();
    let mut missing = Vec::new();
    for (start, _) in doc.match_indices("`crates/") {
        let rest = &doc[start + 1..];
        let Some(end) = rest.find('`') else { continue };
        let path = &rest[..end];
        let new = rest[end + 1..].starts_with(" (new");
        if !new && !workspace().join(path).exists() {
            missing.push(path);
        }
    }
    assert!(
        missing.is_empty(),
        "docs/extending.md names files that do not exist (mark a file to create `(new)`): {missing:?}"
    );
}

#[test]
fn the_quote_check_finds_shifted_lines_in_order_and_refuses_others() {
    let file = ["fn a() {", "    let x = 1;", "    let y = 2;", "}"];
    assert_eq!(find(&file, &["let x = 1;", "let y = 2;"], 0), Some(3));
    assert_eq!(find(&file, &["let y = 2;", "let x = 1;"], 0), None);
    assert_eq!(find(&file, &["let x = 1;"], 2), None);
    assert_eq!(find(&file, &["  let x = 1;", "let y = 2;"], 0), None);
    assert!(check_block(1, &["let x = 1;"]).is_some());
    assert!(check_block(1, &["// crates/nowhere.rs", "x"]).is_some());
}
