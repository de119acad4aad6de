//! `cargo xtask db`: makes sure the servers that the tests and benchmarks use answer:
//! PostgreSQL at 127.0.0.1:5432 (starting this machine's cluster the way `.ci/run` does when it
//! does not, and printing its version), and NATS with JetStream (4222), RabbitMQ (5672) and
//! MariaDB (3306), each started with Debian's command when its port does not answer. It also
//! checks that Chromium and chromedriver, which the console's browser tests drive, start; it
//! does not install them (that needs root: `.ci/run` does it on CI), it says how.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

const HOST: &str = "127.0.0.1";
const PORT: &str = "5432";
/// How long a starting server may take to answer.
const START_WAIT: Duration = Duration::from_secs(30);

pub(crate) fn ensure_running() -> anyhow::Result<()> {
    ensure_postgres()?;
    for server in OTHER_SERVERS {
        ensure_other(server)?;
    }
    check_browser();
    Ok(())
}

/// The programs of the browser tests, at the paths the tests use.
const BROWSER_PROGRAMS: &[&str] = &["/usr/bin/chromium", "/usr/bin/chromedriver"];

/// Prints the version of each browser program, or a warning that says how to install it: the
/// browser tests skip without them (outside CI), so their absence is no error here.
fn check_browser() {
    for program in BROWSER_PROGRAMS {
        match Command::new(program).arg("--version").output() {
            Ok(output) if output.status.success() => {
                println!("{}", String::from_utf8_lossy(&output.stdout).trim());
            }
            Ok(output) => eprintln!(
                "warning: {program} --version failed ({}): {}; the browser tests will fail \
                 (CI) or skip",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
            Err(e) => eprintln!(
                "warning: cannot run {program}: {e}; the browser tests skip without it \
                 (Debian: sudo apt-get install chromium chromium-driver)"
            ),
        }
    }
}

/// A server besides PostgreSQL: its port on 127.0.0.1 and the command that starts it.
struct Server {
    name: &'static str,
    port: u16,
    start: &'static [&'static str],
}

const OTHER_SERVERS: &[Server] = &[
    Server {
        name: "NATS (JetStream)",
        port: 4222,
        start: &[
            "start-stop-daemon",
            "--start",
            "--oknodo",
            "--background",
            "--exec",
            "/usr/sbin/nats-server",
            "--",
            "-a",
            "127.0.0.1",
            "-p",
            "4222",
            "-js",
            "-sd",
            "/var/lib/nats-server",
            "-l",
            "/var/log/nats-server.log",
        ],
    },
    Server {
        name: "RabbitMQ",
        port: 5672,
        start: &["rabbitmq-server", "-detached"],
    },
    Server {
        name: "MariaDB",
        port: 3306,
        start: &[
            "start-stop-daemon",
            "--start",
            "--oknodo",
            "--background",
            "--exec",
            "/usr/sbin/mariadbd",
        ],
    },
];

fn port_answers(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(1),
    )
    .is_ok()
}

fn ensure_other(server: &Server) -> anyhow::Result<()> {
    if !port_answers(server.port) {
        println!(
            "{} does not answer at {HOST}:{}: starting it",
            server.name, server.port
        );
        let (program, args) = server.start.split_first().expect("a start command");
        if let Err(e) = crate::run(program, args) {
            eprintln!("warning: {e:#}; waiting for the server all the same");
        }
        let step = Duration::from_secs(1);
        let mut waited = Duration::ZERO;
        while !port_answers(server.port) {
            if waited >= START_WAIT * 2 {
                bail!(
                    "{} still does not answer at {HOST}:{} after {}s",
                    server.name,
                    server.port,
                    waited.as_secs()
                );
            }
            std::thread::sleep(step);
            waited += step;
        }
    }
    println!("{} answers at {HOST}:{}", server.name, server.port);
    Ok(())
}

fn ensure_postgres() -> anyhow::Result<()> {
    if answers()? {
        println!("PostgreSQL answers at {HOST}:{PORT}");
    } else {
        let cluster = cluster_version()?;
        println!("PostgreSQL does not answer at {HOST}:{PORT}: starting cluster {cluster}/main");
        // As in .ci/run, a failed start is not the end: the server may already be starting.
        if let Err(e) = crate::run(
            "pg_ctlcluster",
            &["--skip-systemctl-redirect", &cluster, "main", "start"],
        ) {
            eprintln!("warning: {e:#}; waiting for the server all the same");
        }
        wait_until_it_answers()?;
        println!("PostgreSQL answers at {HOST}:{PORT}");
    }
    let output = Command::new("psql")
        .args([
            "-h",
            HOST,
            "-p",
            PORT,
            "-U",
            "postgres",
            "-tAc",
            "select version()",
        ])
        .output()
        .context("cannot run psql: install the PostgreSQL client (Debian: postgresql-client)")?;
    if !output.status.success() {
        bail!(
            "psql -U postgres cannot query the server: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    println!("{}", String::from_utf8_lossy(&output.stdout).trim());
    Ok(())
}

/// Whether the server accepts connections, by `pg_isready`.
fn answers() -> anyhow::Result<bool> {
    let status = Command::new("pg_isready")
        .args(["-h", HOST, "-p", PORT, "-q"])
        .status()
        .context(
            "cannot run pg_isready: install the PostgreSQL client (Debian: postgresql-client)",
        )?;
    Ok(status.success())
}

fn wait_until_it_answers() -> anyhow::Result<()> {
    let step = Duration::from_secs(1);
    let mut waited = Duration::ZERO;
    while waited < START_WAIT {
        std::thread::sleep(step);
        waited += step;
        if answers()? {
            return Ok(());
        }
    }
    bail!(
        "PostgreSQL still does not answer at {HOST}:{PORT} after {}s; see /var/log/postgresql/",
        START_WAIT.as_secs()
    )
}

/// The installed server's major version: the one directory under `/etc/postgresql` (Debian's
/// layout), or the highest when there are several.
fn cluster_version() -> anyhow::Result<String> {
    let entries = std::fs::read_dir("/etc/postgresql").context(
        "no /etc/postgresql: install the server (Debian: postgresql), or start yours by hand",
    )?;
    let mut versions: Vec<(u32, String)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter_map(|name| Some((name.split('.').next()?.parse().ok()?, name)))
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, name)) => Ok(name),
        None => bail!("/etc/postgresql holds no cluster version: install the server"),
    }
}
