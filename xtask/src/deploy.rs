//! `cargo xtask deploy --check`: what can be checked of the deployment files under `deploy/`
//! on a machine with neither a Docker engine nor a Kubernetes cluster. Every YAML file is
//! parsed with PyYAML (in the xtask venv, see `python.rs`), and the files are held to the
//! service and to each other: the pinned toolchain, a non-root user, the entry point, the
//! listen port, the probes' paths, the ports, the grace periods against the drain bound, the
//! order of migration and start, and no secret written down. The systemd unit also goes
//! through `systemd-analyze verify` where that exists. It builds no image and applies nothing.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use serde_json::Value;

const DOCKERFILE: &str = "deploy/Dockerfile";
const DOCKERIGNORE: &str = ".dockerignore";
const COMPOSE: &str = "deploy/docker-compose.yml";
const K8S_DIR: &str = "deploy/k8s";
const SYSTEMD_UNIT: &str = "deploy/systemd/webhookd.service";
const TOOLCHAIN: &str = "rust-toolchain.toml";
/// Holds the built-in defaults, among them the drain bound.
const CONFIG_RS: &str = "crates/webhook-app/src/config/defaults.rs";

/// Answers 200 while the process runs.
const LIVENESS_PATH: &str = "/health";
/// Answers 200 while the database answers and is migrated.
const READINESS_PATH: &str = "/ready";
/// The environment variable that overrides the drain bound.
const GRACE_VARIABLE: &str = "WEBHOOKD_DISPATCHER__SHUTDOWN_GRACE_MS";
/// Every value of the Secret template must hold this, so that no real secret is committed.
const PLACEHOLDER: &str = "REPLACE_ME";
/// Kubernetes' default when a pod does not set terminationGracePeriodSeconds.
const DEFAULT_TERMINATION_GRACE_SECS: u64 = 30;

pub(crate) fn check() -> anyhow::Result<()> {
    let mut findings = Findings::default();
    let channel = toolchain_channel(&read(TOOLCHAIN)?)?;
    let grace_ms = default_shutdown_grace_ms(&read(CONFIG_RS)?)?;
    println!(
        "rust-toolchain.toml pins {channel}; the drain bound (dispatcher.shutdown_grace_ms) defaults to {grace_ms} ms"
    );

    findings.section(DOCKERFILE);
    let image = check_dockerfile(&read(DOCKERFILE)?, &channel, &mut findings);
    check_dockerignore(&read(DOCKERIGNORE)?, &mut findings);

    let files = yaml_files()?;
    let documents = parse_yaml(&files)?;
    findings.section("YAML");
    for (file, docs) in &documents {
        findings.ok(format_args!(
            "{file}: parsed by PyYAML, {} document(s)",
            docs.len()
        ));
    }

    findings.section(COMPOSE);
    match documents.get(COMPOSE).and_then(|docs| docs.first()) {
        Some(compose) => check_compose(compose, &image, grace_ms, &mut findings),
        None => findings.fail(format_args!("{COMPOSE} is missing or empty")),
    }

    findings.section(&format!("{K8S_DIR}/"));
    let manifests: Vec<(&str, &Value)> = documents
        .iter()
        .filter(|(file, _)| file.starts_with(&format!("{K8S_DIR}/")))
        .flat_map(|(file, docs)| docs.iter().map(move |doc| (file.as_str(), doc)))
        .filter(|(_, doc)| !doc.is_null())
        .collect();
    check_kubernetes(&manifests, &image, grace_ms, &mut findings);

    findings.section(SYSTEMD_UNIT);
    let unit = read(SYSTEMD_UNIT)?;
    check_systemd_unit(&unit, grace_ms, &mut findings);
    verify_with_systemd_analyze(&unit, &mut findings)?;

    println!();
    if findings.failed.is_empty() {
        println!("deploy --check: all checks passed");
        Ok(())
    } else {
        bail!(
            "deploy --check: {} check(s) failed:\n  {}",
            findings.failed.len(),
            findings.failed.join("\n  ")
        )
    }
}

/// The checks' results, printed as they come; the run fails at the end if any failed.
#[derive(Debug, Default)]
struct Findings {
    failed: Vec<String>,
}

impl Findings {
    fn section(&self, name: &str) {
        println!("\n== {name}");
    }

    fn ok(&mut self, what: impl Display) {
        println!("  ok    {what}");
    }

    fn note(&mut self, what: impl Display) {
        println!("  note  {what}");
    }

    fn fail(&mut self, what: impl Display) {
        let what = what.to_string();
        println!("  FAIL  {what}");
        self.failed.push(what);
    }

    fn expect(&mut self, holds: bool, ok: impl Display, fail: impl Display) {
        if holds {
            self.ok(ok);
        } else {
            self.fail(fail);
        }
    }
}

fn read(path: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))
}

/// The `channel` of rust-toolchain.toml.
fn toolchain_channel(toml: &str) -> anyhow::Result<String> {
    toml.lines()
        .filter_map(|line| line.trim().strip_prefix("channel"))
        .filter_map(|rest| rest.trim().strip_prefix('='))
        .map(|value| value.trim().trim_matches('"').to_owned())
        .next()
        .context("rust-toolchain.toml: no channel = \"...\" line")
}

/// `shutdown_grace_ms` in the built-in defaults (`config/defaults.rs`), read from the source so that the
/// check follows the code.
fn default_shutdown_grace_ms(config_rs: &str) -> anyhow::Result<u64> {
    config_rs
        .lines()
        .filter_map(|line| line.trim().strip_prefix("shutdown_grace_ms = "))
        .find_map(|value| value.trim().parse().ok())
        .with_context(|| format!("{CONFIG_RS}: no `shutdown_grace_ms = N` in the defaults"))
}

// ---------------------------------------------------------------------------------------
// Dockerfile

/// One instruction, continuation lines joined and comments dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Instruction {
    keyword: String,
    args: String,
}

fn instructions(text: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || trimmed.is_empty() {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(continued) => {
                pending.push_str(continued);
                pending.push(' ');
            }
            None => {
                pending.push_str(trimmed);
                let whole = std::mem::take(&mut pending);
                if let Some((keyword, args)) = whole.split_once(char::is_whitespace) {
                    out.push(Instruction {
                        keyword: keyword.to_ascii_uppercase(),
                        args: args.trim().to_owned(),
                    });
                }
            }
        }
    }
    out
}

/// A build stage: its base image (global `ARG`s substituted) and its instructions.
#[derive(Debug)]
struct Stage {
    base: String,
    instructions: Vec<Instruction>,
}

fn stages(instructions: &[Instruction]) -> Vec<Stage> {
    let mut global_args: BTreeMap<String, String> = BTreeMap::new();
    let mut stages: Vec<Stage> = Vec::new();
    for instruction in instructions {
        match (instruction.keyword.as_str(), stages.last_mut()) {
            ("ARG", None) => {
                if let Some((name, value)) = instruction.args.split_once('=') {
                    global_args.insert(name.trim().to_owned(), value.trim().to_owned());
                }
            }
            ("FROM", _) => {
                let base = instruction
                    .args
                    .split_whitespace()
                    .find(|word| !word.starts_with("--"))
                    .unwrap_or_default();
                let base = global_args
                    .iter()
                    .fold(base.to_owned(), |base, (name, value)| {
                        base.replace(&format!("${{{name}}}"), value)
                            .replace(&format!("${name}"), value)
                    });
                stages.push(Stage {
                    base,
                    instructions: Vec::new(),
                });
            }
            (_, Some(stage)) => stage.instructions.push(instruction.clone()),
            (_, None) => {}
        }
    }
    stages
}

/// What the final image promises, as far as the other files depend on it.
#[derive(Debug, Default)]
struct ImageFacts {
    /// `WEBHOOKD_LISTEN` set in the image.
    listen: Option<SocketAddr>,
    /// The port the image listens on and exposes, when the two agree.
    port: Option<u16>,
}

fn check_dockerfile(text: &str, channel: &str, findings: &mut Findings) -> ImageFacts {
    let stages = stages(&instructions(text));
    let (Some(builder), Some(last)) = (stages.first(), stages.last()) else {
        findings.fail("no FROM: not a Dockerfile");
        return ImageFacts::default();
    };
    let expected_builder = format!("rust:{channel}-bookworm");
    findings.expect(
        stages.len() >= 2 && builder.base == expected_builder,
        format_args!("builder stage on {expected_builder}, the toolchain of {TOOLCHAIN}"),
        format_args!(
            "the first stage builds on {}, but {TOOLCHAIN} pins {channel}: use {expected_builder} and a separate final stage",
            builder.base
        ),
    );
    // A binary built against bookworm's glibc runs on Debian 12, not on anything older.
    findings.expect(
        last.base.contains("debian12") || last.base.contains("bookworm"),
        format_args!("final stage on {}, Debian 12 like the builder", last.base),
        format_args!(
            "the final stage builds on {}; use a Debian 12 (bookworm) base so that the builder's glibc matches",
            last.base
        ),
    );

    let user = last
        .instructions
        .iter()
        .rev()
        .find(|i| i.keyword == "USER")
        .map(|i| i.args.trim().to_owned());
    match &user {
        Some(user) => {
            let name = user.split(':').next().unwrap_or_default();
            findings.expect(
                name != "root" && name != "0",
                format_args!("final stage runs as USER {user}, not root"),
                format_args!("the final stage runs as USER {user}; run as a non-root user"),
            );
        }
        None => findings.expect(
            last.base.contains("nonroot"),
            format_args!("final stage runs as {}'s non-root user", last.base),
            "the final stage has no USER line and its base is not a nonroot image: add USER",
        ),
    }

    let entrypoint = last
        .instructions
        .iter()
        .rev()
        .find(|i| i.keyword == "ENTRYPOINT")
        .map(|i| exec_form(&i.args));
    let entrypoint = entrypoint.unwrap_or_default();
    let program = entrypoint
        .first()
        .map(|program| program.rsplit('/').next().unwrap_or_default().to_owned());
    findings.expect(
        program.as_deref() == Some("webhookd"),
        format_args!("ENTRYPOINT {entrypoint:?} runs webhookd"),
        format_args!("the final stage's ENTRYPOINT is {entrypoint:?}; it must run webhookd"),
    );

    let mut env = BTreeMap::new();
    for instruction in last.instructions.iter().filter(|i| i.keyword == "ENV") {
        env.extend(env_assignments(&instruction.args));
    }
    let listen = env
        .get("WEBHOOKD_LISTEN")
        .and_then(|l| l.parse::<SocketAddr>().ok());
    match listen {
        Some(addr) => findings.expect(
            addr.ip().is_unspecified(),
            format_args!("WEBHOOKD_LISTEN={addr}: reachable from outside the container"),
            format_args!(
                "WEBHOOKD_LISTEN={addr} is not reachable from outside the container; use 0.0.0.0:{}",
                addr.port()
            ),
        ),
        None => findings.fail(
            "the final stage sets no valid WEBHOOKD_LISTEN; the default 127.0.0.1:8080 is unreachable from outside: set ENV WEBHOOKD_LISTEN=0.0.0.0:8080",
        ),
    }
    let exposed: Vec<u16> = last
        .instructions
        .iter()
        .filter(|i| i.keyword == "EXPOSE")
        .flat_map(|i| i.args.split_whitespace())
        .filter_map(|port| port.split('/').next()?.parse().ok())
        .collect();
    let port = listen.map(|addr| addr.port());
    let agree = port.is_some_and(|port| exposed.contains(&port));
    findings.expect(
        agree,
        format_args!("EXPOSE {exposed:?} includes the listen port"),
        format_args!("EXPOSE {exposed:?} does not include the listen port {port:?}"),
    );
    ImageFacts {
        listen,
        port: port.filter(|_| agree),
    }
}

/// An exec-form (`["a", "b"]`) or shell-form argument list.
fn exec_form(args: &str) -> Vec<String> {
    serde_json::from_str(args)
        .unwrap_or_else(|_| args.split_whitespace().map(str::to_owned).collect())
}

/// `ENV A=1 B="2"` (or the old `ENV A 1`) as pairs.
fn env_assignments(args: &str) -> Vec<(String, String)> {
    let unquote = |v: &str| v.trim_matches('"').to_owned();
    let words: Vec<&str> = args.split_whitespace().collect();
    match words.first() {
        Some(first) if !first.contains('=') => {
            vec![((*first).to_owned(), unquote(&words[1..].join(" ")))]
        }
        _ => words
            .iter()
            .filter_map(|word| word.split_once('='))
            .map(|(k, v)| (k.to_owned(), unquote(v)))
            .collect(),
    }
}

fn check_dockerignore(text: &str, findings: &mut Findings) {
    let patterns: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| line.trim_end_matches('/'))
        .collect();
    let missing: Vec<&str> = ["target", ".git", "**/.env"]
        .into_iter()
        .filter(|wanted| !patterns.contains(wanted))
        .collect();
    findings.expect(
        missing.is_empty(),
        format_args!("{DOCKERIGNORE} keeps target/, .git and .env files out of the build context"),
        format_args!("{DOCKERIGNORE} lacks {missing:?}"),
    );
}

// ---------------------------------------------------------------------------------------
// Compose

fn check_compose(
    compose: &Value,
    image: &ImageFacts,
    default_grace_ms: u64,
    findings: &mut Findings,
) {
    let Some(services) = compose.get("services").and_then(Value::as_object) else {
        findings.fail("no services");
        return;
    };
    let postgres = services.iter().find(|(_, service)| {
        text(service, "/image").is_some_and(|image| image.starts_with("postgres"))
    });
    let Some((postgres_name, postgres)) = postgres else {
        findings.fail("no service runs the postgres image");
        return;
    };
    let healthcheck = words(postgres.pointer("/healthcheck/test"));
    findings.expect(
        healthcheck.iter().any(|word| word.contains("pg_isready")),
        format_args!(
            "service {postgres_name}: {}, healthcheck {healthcheck:?}",
            text(postgres, "/image").unwrap_or_default()
        ),
        format_args!("service {postgres_name} has no pg_isready healthcheck"),
    );
    findings.expect(
        postgres.get("volumes").is_some(),
        format_args!("service {postgres_name} keeps its data in a volume"),
        format_args!("service {postgres_name} has no volume: its data dies with the container"),
    );

    let command = |service: &Value| words(service.get("command"));
    let migrate = services
        .iter()
        .find(|(_, service)| command(service).first().map(String::as_str) == Some("migrate"));
    let replicas: Vec<(&String, &Value)> = services
        .iter()
        .filter(|(_, service)| command(service).first().map(String::as_str) == Some("serve"))
        .collect();
    match migrate {
        Some((name, service)) => findings.expect(
            condition(service, postgres_name) == Some("service_healthy"),
            format_args!("service {name} runs `webhookd migrate` once postgres is healthy"),
            format_args!(
                "service {name} must depend on {postgres_name} with condition service_healthy"
            ),
        ),
        None => findings.note("no migrate service: the replicas migrate at start"),
    }
    findings.expect(
        replicas.len() >= 2,
        format_args!(
            "{} webhookd replicas: {}",
            replicas.len(),
            replicas
                .iter()
                .map(|(name, _)| name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        format_args!(
            "{} service(s) run `webhookd serve`; two replicas are expected",
            replicas.len()
        ),
    );

    let mut published = Vec::new();
    for (name, service) in &replicas {
        let command = command(service);
        if let Some((migrate_name, _)) = migrate {
            findings.expect(
                command.iter().any(|word| word == "--no-migrate")
                    && condition(service, migrate_name) == Some("service_completed_successfully"),
                format_args!("{name}: serve --no-migrate after {migrate_name} completed successfully"),
                format_args!(
                    "{name}: with a {migrate_name} service, run `serve --no-migrate` and depend on it with condition service_completed_successfully"
                ),
            );
        }
        findings.expect(
            condition(service, postgres_name) == Some("service_healthy"),
            format_args!("{name}: starts once {postgres_name} is healthy"),
            format_args!("{name}: must depend on {postgres_name} with condition service_healthy"),
        );
        let environment = environment(service);
        let database = environment
            .get("WEBHOOKD_DATABASE_URL")
            .cloned()
            .unwrap_or_default();
        findings.expect(
            database.starts_with("postgres://") && database.contains(&format!("@{postgres_name}:")),
            format_args!("{name}: WEBHOOKD_DATABASE_URL names {postgres_name}"),
            format_args!(
                "{name}: WEBHOOKD_DATABASE_URL must be postgres://...@{postgres_name}:5432/..."
            ),
        );
        let token = environment.get("ADMIN_TOKEN").cloned().unwrap_or_default();
        findings.expect(
            token.starts_with("${") && token.contains(":?"),
            format_args!("{name}: ADMIN_TOKEN comes from a required variable, no default"),
            format_args!(
                "{name}: ADMIN_TOKEN is {:?}; write ${{VARIABLE:?message}} so that no token is committed",
                if token.is_empty() { "unset" } else { "written in the file" }
            ),
        );
        let grace_ms = environment
            .get(GRACE_VARIABLE)
            .and_then(|ms| ms.parse().ok())
            .unwrap_or(default_grace_ms);
        match text(service, "/stop_grace_period").map(|p| (p, compose_duration_ms(p))) {
            Some((period, Some(ms))) => findings.expect(
                ms > grace_ms,
                format_args!("{name}: stop_grace_period {period} > the {grace_ms} ms drain"),
                format_args!("{name}: stop_grace_period {period} does not exceed the {grace_ms} ms drain"),
            ),
            Some((period, None)) => findings.fail(format_args!("{name}: cannot read stop_grace_period {period:?}")),
            None => findings.fail(format_args!(
                "{name}: no stop_grace_period; docker's 10 s default cuts the {grace_ms} ms drain short"
            )),
        }
        for port in service
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let (host, container) = published_port(port);
            findings.expect(
                container.is_some() && container == image.port,
                format_args!(
                    "{name}: publishes {host} to the image's port {}",
                    image.port.unwrap_or_default()
                ),
                format_args!(
                    "{name}: publishes {}, but the image listens on {:?}",
                    scalar(port),
                    image.port
                ),
            );
            published.push(host);
        }
    }
    let mut distinct = published.clone();
    distinct.sort();
    distinct.dedup();
    findings.expect(
        distinct.len() == published.len(),
        format_args!("the replicas publish distinct host ports {published:?}"),
        format_args!("the replicas publish the same host port twice: {published:?}"),
    );
}

/// A compose port, `"8081:8080"` or `{published: 8081, target: 8080}`, as the host side and
/// the container's port.
fn published_port(port: &Value) -> (String, Option<u16>) {
    match port {
        Value::Object(_) => (
            port.get("published").map(scalar).unwrap_or_default(),
            port.get("target")
                .and_then(Value::as_u64)
                .and_then(|p| u16::try_from(p).ok()),
        ),
        other => {
            let text = scalar(other);
            let (host, container) = text.rsplit_once(':').unwrap_or(("", &text));
            let container = container.split('/').next().and_then(|p| p.parse().ok());
            (host.to_owned(), container)
        }
    }
}

/// The `depends_on` condition of `service` on `on`, in the long form.
fn condition<'a>(service: &'a Value, on: &str) -> Option<&'a str> {
    service
        .get("depends_on")?
        .get(on)?
        .get("condition")?
        .as_str()
}

/// A compose `environment`, as a map or as a list of `KEY=value`.
fn environment(service: &Value) -> BTreeMap<String, String> {
    match service.get("environment") {
        Some(Value::Object(map)) => map.iter().map(|(k, v)| (k.clone(), scalar(v))).collect(),
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .filter_map(|entry| entry.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// `30s`, `1m30s`, `500ms`: compose's durations, in milliseconds.
fn compose_duration_ms(text: &str) -> Option<u64> {
    let mut total = 0;
    let mut rest = text.trim();
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        let number: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "h" => 3_600_000,
            "m" => 60_000,
            "s" => 1_000,
            "ms" => 1,
            _ => return None,
        };
        total += number * factor;
        rest = &rest[unit_len..];
    }
    Some(total)
}

// ---------------------------------------------------------------------------------------
// Kubernetes

fn check_kubernetes(
    manifests: &[(&str, &Value)],
    image: &ImageFacts,
    default_grace_ms: u64,
    findings: &mut Findings,
) {
    let mut kinds = Vec::new();
    for (file, doc) in manifests {
        let api_version = text(doc, "/apiVersion").unwrap_or_default();
        let kind = text(doc, "/kind").unwrap_or_default();
        let name = text(doc, "/metadata/name").unwrap_or_default();
        findings.expect(
            !api_version.is_empty() && !kind.is_empty() && !name.is_empty(),
            format_args!("{file}: {api_version} {kind} {name}"),
            format_args!("{file}: every document needs apiVersion, kind and metadata.name"),
        );
        kinds.push(kind);
    }
    let missing: Vec<&str> = ["ConfigMap", "Secret", "Deployment", "Service"]
        .into_iter()
        .filter(|kind| !kinds.contains(kind))
        .collect();
    findings.expect(
        missing.is_empty(),
        "ConfigMap, Secret, Deployment and Service are all there",
        format_args!("no {missing:?} under {K8S_DIR}/"),
    );
    let of_kind = |wanted: &'static str| {
        manifests
            .iter()
            .filter(move |(_, doc)| text(doc, "/kind") == Some(wanted))
            .map(|(_, doc)| *doc)
    };

    let mut settings = BTreeMap::new();
    for config_map in of_kind("ConfigMap") {
        let name = text(config_map, "/metadata/name").unwrap_or_default();
        let data = config_map.get("data").and_then(Value::as_object);
        let not_strings: Vec<&String> = data
            .into_iter()
            .flatten()
            .filter(|(_, v)| !v.is_string())
            .map(|(k, _)| k)
            .collect();
        findings.expect(
            not_strings.is_empty(),
            format_args!("ConfigMap {name}: every value is a string"),
            format_args!("ConfigMap {name}: quote the values of {not_strings:?}; Kubernetes takes only strings"),
        );
        settings.extend(
            data.into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), scalar(v))),
        );
    }
    for secret in of_kind("Secret") {
        let name = text(secret, "/metadata/name").unwrap_or_default();
        let values: Vec<(&String, &Value)> = ["stringData", "data"]
            .iter()
            .filter_map(|field| secret.get(field)?.as_object())
            .flatten()
            .collect();
        let real: Vec<&String> = values
            .iter()
            .filter(|(_, v)| !v.as_str().is_some_and(|v| v.contains(PLACEHOLDER)))
            .map(|(k, _)| *k)
            .collect();
        findings.expect(
            real.is_empty(),
            format_args!("Secret {name}: a template, every value holds {PLACEHOLDER}"),
            format_args!(
                "Secret {name}: {real:?} hold no {PLACEHOLDER}; never commit a real secret"
            ),
        );
    }

    let grace_ms = settings
        .get(GRACE_VARIABLE)
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(default_grace_ms);
    let listen_port = settings
        .get("WEBHOOKD_LISTEN")
        .and_then(|l| l.parse::<SocketAddr>().ok())
        .or(image.listen)
        .map(|addr| addr.port());
    let config_maps: Vec<&str> = of_kind("ConfigMap")
        .filter_map(|d| text(d, "/metadata/name"))
        .collect();
    let secrets: Vec<&str> = of_kind("Secret")
        .filter_map(|d| text(d, "/metadata/name"))
        .collect();
    let jobs_migrate = of_kind("Job").any(|job| {
        containers(job.pointer("/spec/template/spec/containers"))
            .any(|c| runs(c).first().map(String::as_str) == Some("migrate"))
    });

    for deployment in of_kind("Deployment") {
        check_deployment(
            deployment,
            &DeploymentContext {
                grace_ms,
                listen_port,
                config_maps: &config_maps,
                secrets: &secrets,
                job_migrates: jobs_migrate,
            },
            findings,
        );
        for service in of_kind("Service") {
            check_service(service, deployment, findings);
        }
    }
}

/// What the Deployment is checked against, from the other manifests.
#[derive(Debug)]
struct DeploymentContext<'a> {
    grace_ms: u64,
    listen_port: Option<u16>,
    config_maps: &'a [&'a str],
    secrets: &'a [&'a str],
    job_migrates: bool,
}

fn check_deployment(deployment: &Value, context: &DeploymentContext<'_>, findings: &mut Findings) {
    let name = text(deployment, "/metadata/name").unwrap_or_default();
    let replicas = deployment
        .pointer("/spec/replicas")
        .and_then(Value::as_u64)
        .unwrap_or(1);
    findings.expect(
        replicas >= 2,
        format_args!("Deployment {name}: {replicas} replicas"),
        format_args!("Deployment {name}: {replicas} replica(s); run at least two"),
    );
    let Some(pod) = deployment.pointer("/spec/template/spec") else {
        findings.fail(format_args!("Deployment {name}: no spec.template.spec"));
        return;
    };
    let Some(main) = containers(pod.get("containers"))
        .find(|c| runs(c).first().map(String::as_str) == Some("serve"))
    else {
        findings.fail(format_args!(
            "Deployment {name}: no container runs `webhookd serve`"
        ));
        return;
    };

    for (probe, path) in [
        ("livenessProbe", LIVENESS_PATH),
        ("readinessProbe", READINESS_PATH),
    ] {
        let got = text(main, &format!("/{probe}/httpGet/path"));
        let port = main.pointer(&format!("/{probe}/httpGet/port"));
        let port_number = port.and_then(|p| container_port(main, p));
        let port = port.map(scalar).unwrap_or_else(|| "no port".to_owned());
        let listen = context
            .listen_port
            .map_or_else(|| "?".to_owned(), |p| p.to_string());
        findings.expect(
            got == Some(path) && port_number.is_some() && port_number == context.listen_port,
            format_args!("{probe}: GET {path} on port {port} ({listen})"),
            format_args!(
                "{probe} must GET {path} on the port webhookd listens on ({listen}); it GETs {} on {port}",
                got.unwrap_or("no path")
            ),
        );
    }
    let declared: Vec<u64> = main
        .get("ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| p.get("containerPort")?.as_u64())
        .collect();
    findings.expect(
        context
            .listen_port
            .is_some_and(|port| declared.contains(&u64::from(port))),
        format_args!("containerPort {declared:?} is where webhookd listens (WEBHOOKD_LISTEN)"),
        format_args!(
            "containerPort {declared:?} is not the listen port {:?}",
            context.listen_port
        ),
    );

    let non_root = |context: Option<&Value>| {
        context
            .and_then(|c| c.get("runAsNonRoot"))
            .and_then(Value::as_bool)
            == Some(true)
            && context
                .and_then(|c| c.get("runAsUser"))
                .and_then(Value::as_u64)
                != Some(0)
    };
    findings.expect(
        non_root(pod.get("securityContext")) || non_root(main.get("securityContext")),
        "runAsNonRoot: true",
        "set securityContext.runAsNonRoot: true (and a non-zero runAsUser)",
    );
    // Service links put WEBHOOKD_SERVICE_HOST and the like into the environment for a
    // Service named webhookd, and webhookd refuses unknown WEBHOOKD_ variables.
    findings.expect(
        pod.get("enableServiceLinks").and_then(Value::as_bool) == Some(false),
        "enableServiceLinks: false (no WEBHOOKD_SERVICE_HOST and the like)",
        "set enableServiceLinks: false: the links of a Service named webhookd add WEBHOOKD_* variables that webhookd refuses",
    );
    let all_containers: Vec<&Value> = containers(pod.get("initContainers"))
        .chain(containers(pod.get("containers")))
        .collect();
    for container in &all_containers {
        let container_name = text(container, "/name").unwrap_or_default();
        let security = container.get("securityContext");
        let flag = |field: &str| security.and_then(|s| s.get(field)).and_then(Value::as_bool);
        findings.expect(
            flag("readOnlyRootFilesystem") == Some(true) && flag("allowPrivilegeEscalation") == Some(false),
            format_args!("container {container_name}: read-only root filesystem, no privilege escalation"),
            format_args!(
                "container {container_name}: set readOnlyRootFilesystem: true and allowPrivilegeEscalation: false"
            ),
        );
        let envs_from: Vec<(&str, &str)> = container
            .get("envFrom")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|source| {
                if let Some(name) = text(source, "/configMapRef/name") {
                    Some(("ConfigMap", name))
                } else {
                    Some(("Secret", text(source, "/secretRef/name")?))
                }
            })
            .collect();
        for (kind, from) in &envs_from {
            let known = if *kind == "ConfigMap" {
                context.config_maps
            } else {
                context.secrets
            };
            findings.expect(
                known.contains(from),
                format_args!("container {container_name}: environment from {kind} {from}"),
                format_args!("container {container_name}: envFrom names {kind} {from}, which is not defined here"),
            );
        }
        if envs_from.is_empty() {
            findings.fail(format_args!(
                "container {container_name}: no envFrom: it gets no settings"
            ));
        }
    }
    let resources = |field: &str| {
        main.pointer(&format!("/resources/{field}/memory"))
            .is_some()
    };
    findings.expect(
        resources("requests") && resources("limits"),
        "resources: memory requested and limited",
        "set resources.requests and resources.limits (memory at least)",
    );

    let termination = pod
        .get("terminationGracePeriodSeconds")
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_TERMINATION_GRACE_SECS);
    let pre_stop = main
        .pointer("/lifecycle/preStop/sleep/seconds")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let needed_ms = context.grace_ms + pre_stop * 1000;
    findings.expect(
        termination * 1000 > needed_ms,
        format_args!(
            "terminationGracePeriodSeconds {termination} > preStop {pre_stop} s + the {} ms drain",
            context.grace_ms
        ),
        format_args!(
            "terminationGracePeriodSeconds {termination} does not exceed preStop {pre_stop} s + the {} ms drain",
            context.grace_ms
        ),
    );

    let no_migrate = runs(main).iter().any(|word| word == "--no-migrate");
    let init_migrates = containers(pod.get("initContainers"))
        .any(|c| runs(c).first().map(String::as_str) == Some("migrate"));
    match (no_migrate, init_migrates, context.job_migrates) {
        (true, true, _) => {
            findings.ok("an initContainer runs `webhookd migrate`, then `serve --no-migrate`")
        }
        (true, false, true) => {
            findings.ok("a Job runs `webhookd migrate`; the pods `serve --no-migrate`")
        }
        (true, false, false) => findings.fail(
            "`serve --no-migrate` but neither an initContainer nor a Job runs `webhookd migrate`",
        ),
        (false, _, _) => findings.note("the pods migrate at start (no --no-migrate)"),
    }
}

fn check_service(service: &Value, deployment: &Value, findings: &mut Findings) {
    let name = text(service, "/metadata/name").unwrap_or_default();
    let service_type = text(service, "/spec/type").unwrap_or("ClusterIP");
    findings.expect(
        service_type == "ClusterIP",
        format_args!("Service {name}: ClusterIP"),
        format_args!("Service {name}: type {service_type}; expose it through an Ingress instead"),
    );
    let labels = deployment
        .pointer("/spec/template/metadata/labels")
        .and_then(Value::as_object);
    let selector = service.pointer("/spec/selector").and_then(Value::as_object);
    let selects = selector.is_some_and(|selector| {
        !selector.is_empty()
            && selector
                .iter()
                .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
    });
    findings.expect(
        selects,
        format_args!("Service {name}: its selector matches the Deployment's pods"),
        format_args!(
            "Service {name}: its selector {selector:?} does not match the pod labels {labels:?}"
        ),
    );
    let main = containers(deployment.pointer("/spec/template/spec/containers"))
        .find(|c| runs(c).first().map(String::as_str) == Some("serve"));
    for port in service
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let target = port.get("targetPort").or_else(|| port.get("port"));
        let resolved = main
            .zip(target)
            .and_then(|(main, target)| container_port(main, target));
        findings.expect(
            resolved.is_some(),
            format_args!(
                "Service {name}: port {} → targetPort {} = containerPort {}",
                port.get("port").map(scalar).unwrap_or_default(),
                target.map(scalar).unwrap_or_default(),
                resolved.map(|p| p.to_string()).unwrap_or_default()
            ),
            format_args!(
                "Service {name}: targetPort {:?} is no port of the webhookd container",
                target.map(scalar)
            ),
        );
    }
}

fn containers(list: Option<&Value>) -> impl Iterator<Item = &Value> {
    list.and_then(Value::as_array).into_iter().flatten()
}

/// What a container runs after the image's entry point: `command` then `args`.
fn runs(container: &Value) -> Vec<String> {
    let mut all = words(container.get("command"));
    all.extend(words(container.get("args")));
    all
}

/// A probe's or Service's port, a number or the name of a container port, as a number.
fn container_port(container: &Value, port: &Value) -> Option<u16> {
    let declared = container.get("ports")?.as_array()?;
    let number = match port {
        Value::String(name) => declared
            .iter()
            .find(|p| p.get("name").and_then(Value::as_str) == Some(name.as_str()))?
            .get("containerPort")?
            .as_u64()?,
        other => {
            let number = other.as_u64()?;
            declared
                .iter()
                .any(|p| p.get("containerPort").and_then(Value::as_u64) == Some(number))
                .then_some(number)?
        }
    };
    u16::try_from(number).ok()
}

// ---------------------------------------------------------------------------------------
// systemd

/// `Key=value` lines, sections ignored.
fn unit_settings(unit: &str) -> Vec<(&str, &str)> {
    unit.lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#') && !line.starts_with('['))
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect()
}

fn check_systemd_unit(unit: &str, grace_ms: u64, findings: &mut Findings) {
    let settings = unit_settings(unit);
    let last = |key: &str| {
        settings
            .iter()
            .rev()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
    };
    let exec = last("ExecStart").unwrap_or_default();
    findings.expect(
        exec_program(exec).is_some_and(|program| program.ends_with("/webhookd")),
        format_args!("ExecStart={exec}"),
        format_args!("ExecStart={exec:?} does not run webhookd"),
    );
    let user = last("User");
    findings.expect(
        last("DynamicUser") == Some("yes") || user.is_some_and(|u| u != "root" && u != "0"),
        format_args!(
            "runs as {} (DynamicUser={})",
            user.unwrap_or("a dynamic user"),
            last("DynamicUser").unwrap_or("no")
        ),
        "set DynamicUser=yes or User= a dedicated user, not root",
    );
    let state = last("StateDirectory").unwrap_or_default();
    let data_dir = settings
        .iter()
        .filter(|(k, _)| *k == "Environment")
        .flat_map(|(_, v)| v.split_whitespace())
        .filter_map(|assignment| {
            assignment
                .trim_matches('"')
                .strip_prefix("WEBHOOKD_DATA_DIR=")
        })
        .next_back();
    findings.expect(
        !state.is_empty() && data_dir == Some(format!("/var/lib/{state}").as_str()),
        format_args!("StateDirectory={state} is WEBHOOKD_DATA_DIR={}", data_dir.unwrap_or_default()),
        format_args!("set StateDirectory=NAME and Environment=WEBHOOKD_DATA_DIR=/var/lib/NAME (have {state:?} and {data_dir:?})"),
    );
    let signal = last("KillSignal").unwrap_or("SIGTERM");
    findings.expect(
        signal == "SIGTERM",
        "KillSignal=SIGTERM starts the drain",
        format_args!("KillSignal={signal}: webhookd drains on SIGTERM"),
    );
    let timeout_ms = last("TimeoutStopSec")
        .and_then(systemd_seconds)
        .map(|s| s * 1000);
    findings.expect(
        timeout_ms.is_some_and(|ms| ms > grace_ms),
        format_args!(
            "TimeoutStopSec={} > the {grace_ms} ms drain",
            last("TimeoutStopSec").unwrap_or_default()
        ),
        format_args!(
            "TimeoutStopSec must exceed the {grace_ms} ms drain (have {:?})",
            last("TimeoutStopSec")
        ),
    );
    let hardening = [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("Restart", "on-failure"),
    ];
    let missing: Vec<String> = hardening
        .iter()
        .filter(|(key, value)| last(key) != Some(*value))
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    findings.expect(
        missing.is_empty(),
        "NoNewPrivileges, ProtectSystem=strict, ProtectHome, PrivateTmp, Restart=on-failure",
        format_args!("set {}", missing.join(", ")),
    );
}

/// The program of an `ExecStart=` line, past its `-@:+!` prefixes.
fn exec_program(exec: &str) -> Option<&str> {
    exec.split_whitespace()
        .next()
        .map(|program| program.trim_start_matches(['-', '@', ':', '+', '!']))
}

/// `30`, `30s`, `2min`: whole seconds.
fn systemd_seconds(text: &str) -> Option<u64> {
    let text = text.trim();
    if let Some(minutes) = text.strip_suffix("min") {
        return minutes.trim().parse::<u64>().ok().map(|m| m * 60);
    }
    text.strip_suffix('s').unwrap_or(text).trim().parse().ok()
}

/// `systemd-analyze verify`, when it exists. It fails on a missing executable, so the unit is
/// verified from a copy under target/ whose ExecStart points to a stand-in when webhookd is
/// not installed here; and it only warns about unknown keys, so any output fails the check.
fn verify_with_systemd_analyze(unit: &str, findings: &mut Findings) -> anyhow::Result<()> {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        findings.note("systemd-analyze is not installed: the unit was not verified by systemd");
        return Ok(());
    }
    let dir = PathBuf::from("target/xtask-deploy");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    let mut copy = unit.to_owned();
    let program = unit_settings(unit)
        .iter()
        .rev()
        .find(|(k, _)| *k == "ExecStart")
        .and_then(|(_, v)| exec_program(v))
        .unwrap_or_default()
        .to_owned();
    if !program.is_empty() && !Path::new(&program).exists() {
        let stand_in = dir.join("webhookd");
        write_stand_in(&stand_in)?;
        copy = copy.replace(&program, &stand_in.to_string_lossy());
        findings.note(format_args!(
            "{program} is not installed here: verified with ExecStart pointing to a stand-in"
        ));
    }
    let name = Path::new(SYSTEMD_UNIT).file_name().unwrap_or_default();
    let copy_path = dir.join(name);
    std::fs::write(&copy_path, copy)
        .with_context(|| format!("cannot write {}", copy_path.display()))?;
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy_path)
        .output()
        .context("cannot run systemd-analyze verify")?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    findings.expect(
        output.status.success() && said.trim().is_empty(),
        "systemd-analyze verify: no error, no warning",
        format_args!(
            "systemd-analyze verify ({}): {}",
            output.status,
            said.trim()
        ),
    );
    // The exposure score, for information: lower is better, below 2 is "OK".
    if let Ok(output) = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&copy_path)
        .output()
        && let Some(overall) = String::from_utf8_lossy(&output.stdout)
            .lines()
            .find(|line| line.contains("Overall exposure level"))
    {
        findings.note(format_args!(
            "systemd-analyze security: {}",
            overall.trim_start_matches(['→', ' '])
        ));
    }
    Ok(())
}

fn write_stand_in(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, "#!/bin/sh\nexit 0\n")
        .with_context(|| format!("cannot write {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot make {} executable", path.display()))
}

// ---------------------------------------------------------------------------------------
// YAML through PyYAML

/// Every YAML file under deploy/, sorted.
fn yaml_files() -> anyhow::Result<Vec<String>> {
    fn walk(dir: &Path, out: &mut Vec<String>) -> anyhow::Result<()> {
        for entry in
            std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?
        {
            let path = entry?.path();
            if path.is_dir() {
                walk(&path, out)?;
            } else if path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
                out.push(path.to_string_lossy().into_owned());
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(Path::new("deploy"), &mut files)?;
    files.sort();
    Ok(files)
}

/// Loads each file's documents with `yaml.safe_load_all` and hands them over as JSON.
const LOAD_YAML: &str = r#"
import json, sys, yaml
documents = {}
for path in sys.argv[1:]:
    try:
        with open(path, encoding="utf-8") as f:
            documents[path] = list(yaml.safe_load_all(f))
    except yaml.YAMLError as e:
        sys.exit(f"{path}: not valid YAML: {e}")
json.dump(documents, sys.stdout, default=str)
"#;

fn parse_yaml(files: &[String]) -> anyhow::Result<BTreeMap<String, Vec<Value>>> {
    let python = crate::python::interpreter(&[])?;
    let output = Command::new(&python)
        .arg("-c")
        .arg(LOAD_YAML)
        .args(files)
        .output()
        .with_context(|| format!("cannot run {}", python.display()))?;
    if !output.status.success() {
        bail!("{}", String::from_utf8_lossy(&output.stderr).trim());
    }
    serde_json::from_slice(&output.stdout).context("PyYAML's output is not the expected JSON")
}

// ---------------------------------------------------------------------------------------
// JSON helpers

/// A string at a JSON pointer.
fn text<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer)?.as_str()
}

/// A scalar as text (a number, a string, a boolean).
fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A command as words: a list, or a string split at spaces.
fn words(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::Array(list)) => list.iter().map(scalar).collect(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const GOOD_DOCKERFILE: &str = r#"
# syntax=docker/dockerfile:1
ARG RUST_VERSION=1.95.0
FROM rust:${RUST_VERSION}-bookworm AS builder
RUN --mount=type=cache,target=/src/target \
    # a comment inside a continuation
    cargo build --release --locked -p webhook-app
FROM gcr.io/distroless/cc-debian12:nonroot
USER 65532:65532
ENV WEBHOOKD_LISTEN=0.0.0.0:8080 \
    WEBHOOKD_DATA_DIR=/data
EXPOSE 8080
ENTRYPOINT ["webhookd"]
"#;

    fn failures(check: impl FnOnce(&mut Findings)) -> Vec<String> {
        let mut findings = Findings::default();
        check(&mut findings);
        findings.failed
    }

    fn image() -> ImageFacts {
        let mut findings = Findings::default();
        let image = check_dockerfile(GOOD_DOCKERFILE, "1.95.0", &mut findings);
        assert_eq!(findings.failed, Vec::<String>::new());
        image
    }

    #[test]
    fn a_good_dockerfile_passes_and_tells_its_port() {
        assert_eq!(image().port, Some(8080));
    }

    #[test]
    fn dockerfile_faults_are_each_found() {
        let check = |text: &str| {
            failures(|f| {
                check_dockerfile(text, "1.95.0", f);
            })
        };
        let cases = [
            (
                "ARG RUST_VERSION=1.95.0",
                "ARG RUST_VERSION=1.94.0",
                "pins 1.95.0",
            ),
            ("USER 65532:65532", "USER root", "USER root"),
            (
                "ENTRYPOINT [\"webhookd\"]",
                "ENTRYPOINT [\"sh\"]",
                "ENTRYPOINT",
            ),
            (
                "WEBHOOKD_LISTEN=0.0.0.0:8080",
                "WEBHOOKD_LISTEN=127.0.0.1:8080",
                "not reachable",
            ),
            ("EXPOSE 8080", "EXPOSE 9000", "EXPOSE [9000]"),
            ("cc-debian12:nonroot", "cc-debian13:nonroot", "Debian 12"),
        ];
        for (from, to, expected) in cases {
            let failed = check(&GOOD_DOCKERFILE.replace(from, to));
            assert!(
                failed.len() == 1 && failed[0].contains(expected),
                "{to}: {failed:?}"
            );
        }
        // Without USER, only a nonroot base will do.
        let no_user = GOOD_DOCKERFILE.replace("USER 65532:65532\n", "");
        assert_eq!(check(&no_user), Vec::<String>::new());
        let failed = check(&no_user.replace(":nonroot", ""));
        assert!(failed[0].contains("no USER"), "{failed:?}");
    }

    fn compose() -> Value {
        let replica = json!({
            "image": "webhookd",
            "command": ["serve", "--no-migrate"],
            "environment": {
                "WEBHOOKD_DATABASE_URL": "postgres://webhookd:${PW:?}@db:5432/webhookd",
                "ADMIN_TOKEN": "${TOKEN:?set it}"
            },
            "depends_on": {
                "db": {"condition": "service_healthy"},
                "migrate": {"condition": "service_completed_successfully"}
            },
            "stop_grace_period": "30s",
            "ports": ["8081:8080"]
        });
        let mut second = replica.clone();
        second["ports"] = json!([{"published": 8082, "target": 8080}]);
        json!({"services": {
            "db": {"image": "postgres:17", "volumes": ["pg:/var/lib/postgresql/data"],
                   "healthcheck": {"test": "pg_isready -U webhookd"}},
            "migrate": {"image": "webhookd", "command": "migrate",
                        "depends_on": {"db": {"condition": "service_healthy"}}},
            "one": replica,
            "two": second
        }})
    }

    #[test]
    fn compose_faults_are_each_found() {
        let check = |compose: &Value| failures(|f| check_compose(compose, &image(), 10_000, f));
        assert_eq!(check(&compose()), Vec::<String>::new());
        let edits: [(&str, Value, &str); 5] = [
            (
                "/services/one/environment/ADMIN_TOKEN",
                json!("hunter2"),
                "ADMIN_TOKEN",
            ),
            (
                "/services/one/stop_grace_period",
                json!("10s"),
                "does not exceed",
            ),
            (
                "/services/one/ports",
                json!(["8082:8080"]),
                "same host port",
            ),
            (
                "/services/two/ports",
                json!(["8082:9000"]),
                "image listens on",
            ),
            ("/services/two/command", json!(["serve"]), "--no-migrate"),
        ];
        for (pointer, value, expected) in edits {
            let mut edited = compose();
            *edited.pointer_mut(pointer).unwrap() = value;
            let failed = check(&edited);
            assert!(
                failed.len() == 1 && failed[0].contains(expected),
                "{pointer}: {failed:?}"
            );
        }
        let mut one_replica = compose();
        one_replica["services"]
            .as_object_mut()
            .unwrap()
            .remove("two");
        assert!(check(&one_replica)[0].contains("two replicas are expected"));
    }

    fn manifests() -> Vec<Value> {
        let container_security =
            json!({"readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false});
        let env_from = json!([{"configMapRef": {"name": "cfg"}}, {"secretRef": {"name": "sec"}}]);
        vec![
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"},
                   "data": {"WEBHOOKD_LISTEN": "0.0.0.0:8080"}}),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "sec"},
                   "stringData": {"ADMIN_TOKEN": "REPLACE_ME"}}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w"},
                "spec": {"replicas": 2, "template": {
                    "metadata": {"labels": {"app": "w"}},
                    "spec": {
                        "terminationGracePeriodSeconds": 30,
                        "enableServiceLinks": false,
                        "securityContext": {"runAsNonRoot": true, "runAsUser": 65532},
                        "initContainers": [{"name": "migrate", "args": ["migrate"],
                            "envFrom": env_from, "securityContext": container_security}],
                        "containers": [{"name": "w", "args": ["serve", "--no-migrate"],
                            "envFrom": env_from, "securityContext": container_security,
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "resources": {"requests": {"memory": "64Mi"}, "limits": {"memory": "512Mi"}},
                            "livenessProbe": {"httpGet": {"path": "/health", "port": "http"}},
                            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}}}]}}}}),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "w"},
                   "spec": {"selector": {"app": "w"}, "ports": [{"port": 80, "targetPort": "http"}]}}),
        ]
    }

    #[test]
    fn kubernetes_faults_are_each_found() {
        let check = |docs: &[Value]| {
            let manifests: Vec<(&str, &Value)> = docs.iter().map(|d| ("k8s.yaml", d)).collect();
            failures(|f| check_kubernetes(&manifests, &image(), 10_000, f))
        };
        assert_eq!(check(&manifests()), Vec::<String>::new());
        let containers = "/spec/template/spec/containers/0";
        let edits: [(usize, String, Value, &str); 9] = [
            (
                2,
                format!("{containers}/readinessProbe/httpGet/path"),
                json!("/health"),
                "readinessProbe",
            ),
            (
                2,
                format!("{containers}/livenessProbe/httpGet/port"),
                json!(9000),
                "livenessProbe",
            ),
            (
                3,
                "/spec/ports/0/targetPort".into(),
                json!("web"),
                "targetPort",
            ),
            (3, "/spec/selector/app".into(), json!("other"), "selector"),
            (
                2,
                "/spec/template/spec/terminationGracePeriodSeconds".into(),
                json!(10),
                "does not exceed",
            ),
            (
                2,
                "/spec/template/spec/securityContext/runAsNonRoot".into(),
                json!(false),
                "runAsNonRoot",
            ),
            (
                1,
                "/stringData/ADMIN_TOKEN".into(),
                json!("s3cret"),
                "real secret",
            ),
            (
                2,
                "/spec/template/spec/enableServiceLinks".into(),
                json!(true),
                "enableServiceLinks",
            ),
            (
                0,
                "/data/WEBHOOKD_LISTEN".into(),
                json!("0.0.0.0:9090"),
                "listen",
            ),
        ];
        for (doc, pointer, value, expected) in edits {
            let mut docs = manifests();
            *docs[doc].pointer_mut(&pointer).unwrap() = value;
            let failed = check(&docs);
            assert!(
                !failed.is_empty() && failed.iter().all(|f| f.contains(expected)),
                "{pointer}: {failed:?}"
            );
        }
        let mut no_migration = manifests();
        no_migration[2]["spec"]["template"]["spec"]
            .as_object_mut()
            .unwrap()
            .remove("initContainers");
        assert!(check(&no_migration)[0].contains("neither an initContainer nor a Job"));
        assert!(check(&manifests()[..3])[0].contains("Service"));
    }

    #[test]
    fn systemd_unit_faults_are_each_found() {
        let good = "[Service]\nExecStart=/usr/local/bin/webhookd serve\nDynamicUser=yes\n\
            StateDirectory=webhookd\nEnvironment=WEBHOOKD_DATA_DIR=/var/lib/webhookd\n\
            TimeoutStopSec=30\nRestart=on-failure\nNoNewPrivileges=yes\nProtectSystem=strict\n\
            ProtectHome=yes\nPrivateTmp=yes\n";
        let check = |unit: &str| failures(|f| check_systemd_unit(unit, 10_000, f));
        assert_eq!(check(good), Vec::<String>::new());
        for (from, to, expected) in [
            ("TimeoutStopSec=30", "TimeoutStopSec=10s", "TimeoutStopSec"),
            (
                "DATA_DIR=/var/lib/webhookd",
                "DATA_DIR=/srv",
                "StateDirectory",
            ),
            (
                "ProtectSystem=strict",
                "ProtectSystem=full",
                "ProtectSystem=strict",
            ),
            ("DynamicUser=yes", "User=root", "not root"),
        ] {
            let failed = check(&good.replace(from, to));
            assert!(
                failed.len() == 1 && failed[0].contains(expected),
                "{to}: {failed:?}"
            );
        }
    }

    #[test]
    fn durations_read_as_compose_and_systemd_write_them() {
        for (text, ms) in [
            ("30s", Some(30_000)),
            ("1m30s", Some(90_000)),
            ("500ms", Some(500)),
            ("30", None),
            ("1d", None),
        ] {
            assert_eq!(compose_duration_ms(text), ms, "{text}");
        }
        for (text, secs) in [
            ("30", Some(30)),
            ("30s", Some(30)),
            ("2min", Some(120)),
            ("soon", None),
        ] {
            assert_eq!(systemd_seconds(text), secs, "{text}");
        }
    }
}
