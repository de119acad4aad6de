//! The result table of the fault scenarios, and its place in `docs/reliability.md`: between
//! the markers [`BEGIN`] and [`END`], which this module alone writes. Other sections of that
//! file belong to other runs and are left as they are. A run of some scenarios replaces their
//! rows and details and keeps the others'.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};

use super::tally::Tally;

pub(crate) const BEGIN: &str = "<!-- reliability:faults:begin -->";
pub(crate) const END: &str = "<!-- reliability:faults:end -->";

const HEADER: &str = "| scenario | backend | events published | deliveries expected | delivered | lost | duplicates | peak RSS | duration | notes |";
const RULE: &str = "|---|---|--:|--:|--:|--:|--:|--:|--:|---|";

/// One scenario's result.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) scenario: String,
    pub(crate) backend: &'static str,
    pub(crate) tally: Tally,
    /// The largest peak resident set of any webhookd process of the scenario.
    pub(crate) peak_rss: Option<u64>,
    pub(crate) duration: Duration,
    /// Short figures for the table (kills, 503s, takeover).
    pub(crate) notes: Vec<String>,
    /// The longer account below the table.
    pub(crate) details: Vec<String>,
    /// Why the scenario failed; empty when it passed.
    pub(crate) failures: Vec<String>,
}

impl Row {
    pub(crate) fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    fn table_line(&self) -> String {
        let t = &self.tally;
        let mut notes = self.notes.join("; ");
        if !self.passed() {
            notes = format!("**FAILED**: {}; {notes}", self.failures.join("; "));
        }
        format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.1} s | {} |",
            self.scenario,
            self.backend,
            t.published,
            t.expected,
            t.delivered,
            t.lost,
            t.duplicates,
            self.peak_rss.map_or_else(
                || "n/a".to_owned(),
                |b| format!("{:.1} MiB", b as f64 / 1048576.0)
            ),
            self.duration.as_secs_f64(),
            notes.replace('|', "/"),
        )
    }

    fn detail_line(&self, stamp: &str) -> String {
        format!(
            "- **{}** ({stamp}): {}",
            self.scenario,
            self.details.join(" ")
        )
    }
}

/// The table of these rows, for the terminal.
pub(crate) fn table(rows: &[Row]) -> String {
    let mut out = vec![HEADER.to_owned(), RULE.to_owned()];
    out.extend(rows.iter().map(Row::table_line));
    out.join("\n")
}

/// The first cell of a table line, or the bold name of a detail line.
fn key_of(line: &str) -> Option<&str> {
    if let Some(rest) = line.strip_prefix("| ") {
        let cell = rest.split(" |").next()?.trim();
        return (cell != "scenario").then_some(cell);
    }
    line.strip_prefix("- **")?.split("**").next()
}

/// The section between the markers: the rows and details of this run, and those of earlier
/// runs for the scenarios this run did not repeat.
fn section(old: &str, rows: &[Row], stamp: &str) -> String {
    let ran = |key: &str| rows.iter().any(|r| r.scenario == key);
    let mut table_lines: Vec<String> = Vec::new();
    let mut details: Vec<String> = Vec::new();
    for line in old.lines() {
        match key_of(line) {
            Some(key) if !ran(key) && line.starts_with("| ") => table_lines.push(line.to_owned()),
            Some(key) if !ran(key) => details.push(line.to_owned()),
            _ => {}
        }
    }
    table_lines.extend(rows.iter().map(Row::table_line));
    details.extend(rows.iter().map(|r| r.detail_line(stamp)));
    // The scenarios in their usual order, whichever run measured them.
    let order = |line: &String| {
        key_of(line)
            .and_then(|k| super::ALL_SCENARIOS.iter().position(|s| *s == k))
            .unwrap_or(usize::MAX)
    };
    table_lines.sort_by_key(order);
    details.sort_by_key(order);
    let mut out = vec![HEADER.to_owned(), RULE.to_owned()];
    out.extend(table_lines);
    out.push(String::new());
    out.extend(details);
    out.join("\n")
}

/// The file as created when it does not exist yet: an introduction, how to run the fault
/// scenarios, and the empty section.
fn new_file() -> String {
    format!(
        "# Reliability\n\n\
         What webhookd does when things fail, measured on the real release binary. Each section \
         is written by the run that measured it.\n\n{}",
        faults_intro()
    )
}

fn faults_intro() -> String {
    format!(
        "## Faults: crashes, a database outage, failover\n\n\
         `cargo xtask reliability` (about two minutes once `webhookd` is built; `--quick` for a short check, \
         `--scenarios crash-sqlite,crash-postgres,pg-outage,failover` for some, `--no-docs` to \
         leave this file alone) builds the release `webhookd`, runs the scenarios through \
         `webhookd-bench reliability`, and writes the table below. Every scenario has a \
         deadline and fails rather than hangs; a run fails when any scenario lost an \
         acknowledged event, answered a 500, or hung. Only events whose publish was answered \
         `202` count as published; duplicates are allowed (delivery is at least once) and \
         counted. The crash and failover scenarios run webhookd with a 5 s lease \
         (`WEBHOOKD_DISPATCHER__LEASE_MS=5000`, attempts limited to 2 s), so that deliveries \
         cut off by a kill come back within seconds instead of the default minute.\n\n\
         {BEGIN}\n{END}\n"
    )
}

/// Writes the rows into `path` between the markers, creating the file or the section when
/// missing.
pub(crate) fn write_docs(path: &Path, rows: &[Row], stamp: &str) -> anyhow::Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => new_file(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let text = if text.contains(BEGIN) {
        text
    } else {
        format!("{}\n\n{}", text.trim_end(), faults_intro())
    };
    let (before, rest) = text
        .split_once(BEGIN)
        .context("the begin marker is there")?;
    let Some((old, after)) = rest.split_once(END) else {
        bail!(
            "{}: {BEGIN} is not followed by {END}; restore the end marker and run again",
            path.display()
        );
    };
    let new = format!(
        "{before}{BEGIN}\n{}\n{END}{after}",
        section(old, rows, stamp)
    );
    std::fs::write(path, new).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(scenario: &str, lost: u64) -> Row {
        Row {
            scenario: scenario.to_owned(),
            backend: "SQLite",
            tally: Tally {
                published: 10,
                expected: 30,
                delivered: 30 - lost,
                lost,
                duplicates: 2,
                unacknowledged_arrivals: 0,
            },
            peak_rss: Some(20 * 1048576),
            duration: Duration::from_millis(12_345),
            notes: vec!["6 kills".to_owned()],
            details: vec![format!("{scenario} went well.")],
            failures: if lost > 0 {
                vec![format!("{lost} lost")]
            } else {
                vec![]
            },
        }
    }

    #[test]
    fn a_row_reads_as_a_table_line() {
        assert_eq!(
            row("crash-sqlite", 0).table_line(),
            "| crash-sqlite | SQLite | 10 | 30 | 30 | 0 | 2 | 20.0 MiB | 12.3 s | 6 kills |"
        );
        assert!(
            row("crash-sqlite", 3)
                .table_line()
                .contains("**FAILED**: 3 lost; 6 kills")
        );
    }

    #[test]
    fn a_partial_run_keeps_the_other_scenarios_and_the_rest_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reliability.md");
        std::fs::write(&path, "# Reliability\n\nOther section.\n").unwrap();
        write_docs(
            &path,
            &[row("crash-sqlite", 0), row("failover", 0)],
            "first",
        )
        .unwrap();
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("\n## Later section\n\nSomeone else's.\n");
        std::fs::write(&path, text).unwrap();
        write_docs(&path, &[row("failover", 1)], "second").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# Reliability\n\nOther section.\n"));
        assert_eq!(text.matches(BEGIN).count(), 1);
        assert!(text.contains("- **crash-sqlite** (first): crash-sqlite went well."));
        assert!(text.contains("- **failover** (second): failover went well."));
        assert!(!text.contains("- **failover** (first)"));
        let rows: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| scenario"))
            .collect();
        assert_eq!(rows.len(), 2);
        assert!(rows[0].starts_with("| crash-sqlite |"));
        assert!(rows[1].starts_with("| failover |") && rows[1].contains("**FAILED**"));
        // Text after the end marker stays.
        let after = text.split_once(END).unwrap().1;
        assert_eq!(after, "\n\n## Later section\n\nSomeone else's.\n");
    }
}
