//! What the benchmark reads from `/proc`: CPU time of a process and of the PostgreSQL server,
//! resident memory, and the machine's description. The parsers are pure functions over the
//! files' text, so they are tested without a `/proc`; the readers around them answer `None`
//! (or "unknown") where a file is missing, never an error: a figure is then reported as n/a.

use std::path::Path;
use std::process::Command;

/// CPU time (user and system) in clock ticks from the text of `/proc/<pid>/stat`, and the
/// command name. The name is in parentheses and may hold spaces or parentheses itself, so the
/// fields are counted after the last `)`: `utime` and `stime` are fields 14 and 15 of the
/// whole line, the 12th and 13th after the name.
pub(crate) fn parse_stat(stat: &str) -> Option<(&str, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?;
    let mut after = stat.get(close + 1..)?.split_ascii_whitespace();
    // After the name: state (3), ppid, pgrp, session, tty_nr, tpgid, flags, minflt, cminflt,
    // majflt, cmajflt (13), utime (14), stime (15).
    let utime: u64 = after.nth(11)?.parse().ok()?;
    let stime: u64 = after.next()?.parse().ok()?;
    Some((name, utime + stime))
}

/// The parent's pid, and the CPU ticks (user and system) of a process and of its children
/// that it has waited for, from the text of `/proc/<pid>/stat`: `ppid` is field 4 of the line,
/// `cutime` and `cstime` fields 16 and 17. The waited-for children's ticks keep the work of
/// PostgreSQL's short-lived processes (autovacuum workers) after they exit.
pub(crate) fn parse_stat_family(stat: &str) -> Option<(u32, u64, u64)> {
    let close = stat.rfind(')')?;
    let fields: Vec<&str> = stat.get(close + 1..)?.split_ascii_whitespace().collect();
    // After the name: state (3), ppid (4), ..., utime (14), stime (15), cutime, cstime (17).
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    let ppid = u32::try_from(field(4)?).ok()?;
    Some((ppid, field(14)? + field(15)?, field(16)? + field(17)?))
}

/// The value in KiB of a line such as `VmHWM:    12345 kB` of `/proc/<pid>/status` (or
/// `/proc/meminfo`).
pub(crate) fn parse_kib(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        rest.split_ascii_whitespace().next()?.parse().ok()
    })
}

/// The first `model name` of `/proc/cpuinfo`.
pub(crate) fn parse_cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "model name").then(|| value.trim().to_owned())
    })
}

/// Clock ticks per second (`getconf CLK_TCK`), 100 when it cannot be asked.
pub(crate) fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .filter(|&ticks| ticks > 0)
        .unwrap_or(100)
}

/// CPU ticks a process has used so far.
pub(crate) fn process_cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat).map(|(_, ticks)| ticks)
}

/// CPU ticks used so far by every process whose command name starts with `postgres` (the
/// server and its backends, whatever their process titles say). A backend that exits between
/// two readings takes its ticks with it: webhookd keeps its pooled connections open for a
/// whole scenario, so the difference still counts its work.
pub(crate) fn postgres_cpu_ticks() -> Option<u64> {
    let entries = std::fs::read_dir("/proc").ok()?;
    let mut total = 0;
    let mut found = false;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(Path::new("/proc").join(pid).join("stat")) else {
            continue;
        };
        if let Some((command, ticks)) = parse_stat(&stat)
            && command.starts_with("postgres")
        {
            total += ticks;
            found = true;
        }
    }
    found.then_some(total)
}

/// CPU ticks used so far by one PostgreSQL server: its postmaster, the children it has
/// reaped (autovacuum workers, backends of closed connections), and its children alive now.
/// Unlike [`postgres_cpu_ticks`], other servers on the machine do not count.
pub(crate) fn server_cpu_ticks(postmaster: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{postmaster}/stat")).ok()?;
    let (_, own, reaped) = parse_stat_family(&stat)?;
    let mut total = own + reaped;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if let Some((ppid, ticks, _)) = parse_stat_family(&stat)
            && ppid == postmaster
        {
            total += ticks;
        }
    }
    Some(total)
}

/// `VmHWM` (the peak resident set) of a process, in bytes.
pub(crate) fn peak_rss_bytes(pid: u32) -> Option<u64> {
    status_kib(pid, "VmHWM").map(|kib| kib * 1024)
}

/// `VmRSS` (the resident set now) of a process, in bytes.
pub(crate) fn rss_bytes(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS").map(|kib| kib * 1024)
}

fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_kib(&status, key)
}

/// The machine the figures were taken on.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Machine {
    pub(crate) cpu: String,
    pub(crate) cores: usize,
    pub(crate) memory_mib: Option<u64>,
    pub(crate) kernel: String,
    pub(crate) postgres_version: Option<String>,
    pub(crate) postgres_fsync: Option<String>,
}

impl Machine {
    pub(crate) fn describe() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        Self {
            cpu: parse_cpu_model(&cpuinfo).unwrap_or_else(|| "unknown".to_owned()),
            cores: std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
            memory_mib: parse_kib(&meminfo, "MemTotal").map(|kib| kib / 1024),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map_or_else(|_| "unknown".to_owned(), |k| k.trim().to_owned()),
            postgres_version: psql("show server_version"),
            postgres_fsync: psql("show fsync"),
        }
    }
}

/// One answer of the PostgreSQL server through `psql`, `None` when it cannot be asked.
fn psql(query: &str) -> Option<String> {
    let out = Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-tAc", query])
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_counts_user_and_system_time_after_the_name() {
        let stat = "4242 (webhookd) S 1 4242 4242 0 -1 4194560 2513 0 0 0 731 96 0 0 20 0 6 0 \
                    1234 100000 3000 18446744073709551615";
        assert_eq!(parse_stat(stat), Some(("webhookd", 827)));
    }

    #[test]
    fn stat_copes_with_spaces_and_parentheses_in_the_name() {
        let stat = "77 (postgres: a (b) c) R 1 77 77 0 -1 0 0 0 0 0 5 7 0 0";
        assert_eq!(parse_stat(stat), Some(("postgres: a (b) c", 12)));
        assert_eq!(parse_stat("77 (short) R 1 2"), None);
        assert_eq!(parse_stat("no parentheses"), None);
    }

    #[test]
    fn stat_family_reads_the_parent_and_the_reaped_children() {
        let stat = "4242 (postgres: x) S 77 4242 4242 0 -1 4194560 2513 0 0 0 731 96 40 2 20 0";
        assert_eq!(parse_stat_family(stat), Some((77, 827, 42)));
        assert_eq!(parse_stat_family("77 (short) R 1 2"), None);
    }

    #[test]
    fn status_and_meminfo_values_are_read_in_kib() {
        let status =
            "Name:\twebhookd\nVmPeak:\t  200000 kB\nVmHWM:\t   20480 kB\nVmRSS:\t   18000 kB\n";
        assert_eq!(parse_kib(status, "VmHWM"), Some(20480));
        assert_eq!(parse_kib(status, "VmRSS"), Some(18000));
        assert_eq!(parse_kib(status, "VmSwap"), None);
        assert_eq!(
            parse_kib("MemTotal:       24684044 kB\n", "MemTotal"),
            Some(24_684_044)
        );
    }

    #[test]
    fn the_cpu_model_is_the_first_model_name() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\nprocessor\t: 1\nmodel name\t: other\n";
        assert_eq!(
            parse_cpu_model(cpuinfo).as_deref(),
            Some("Intel(R) Xeon(R) CPU @ 2.20GHz")
        );
        assert_eq!(parse_cpu_model(""), None);
    }
}
