//! Event sources in the service: which sources the `sources` setting names (looked up by URL
//! scheme among the built-in kinds and those registered through [`Extensions`]), starting
//! each with the publishing service as its sink, and stopping them at shutdown.
//!
//! It must not read any input or know any source's protocol (that is the source's adapter),
//! and a source must reach storage only through [`Publishing`], whose answer means committed.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use webhook_ports::{
    EventSource, OutboxError, PublishError, PublishEvents, PublishItem, Published, Refusal,
    Shutdown, SourceKind, WalletStoreError,
};

use crate::Extensions;
use crate::metrics::Metrics;
use crate::publisher::{self, Publishing};

/// How many refused messages are kept for `GET /sources/refusals`, the newest.
const REFUSALS_KEPT: usize = 1000;

/// The messages this instance's sources refused for good, newest last, at most
/// [`REFUSALS_KEPT`]; each also counted in `webhookd_source_refusals_total`. Kept in memory:
/// the broker keeps the message itself (a JetStream advisory, a dead-letter exchange).
#[derive(Debug)]
pub(crate) struct Refusals {
    kept: std::sync::Mutex<std::collections::VecDeque<RefusalRecord>>,
    metrics: Arc<Metrics>,
}

/// One refused message, as `GET /sources/refusals` lists it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RefusalRecord {
    /// When it was refused (RFC 3339).
    pub(crate) at: String,
    /// The source, as its kind names it with its URL (without credentials).
    pub(crate) source: String,
    /// Where the message is (`stream EVENTS sequence 42 (subject events.a)`).
    pub(crate) input: String,
    /// Why it cannot be published.
    pub(crate) reason: String,
}

impl Refusals {
    pub(crate) fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            kept: std::sync::Mutex::new(std::collections::VecDeque::new()),
            metrics,
        }
    }

    fn record(&self, refusal: Refusal) {
        self.metrics.source_refused(&refusal.source);
        let at = webhook_domain::Timestamp::from_datetime(time::OffsetDateTime::now_utc());
        let mut kept = self
            .kept
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if kept.len() == REFUSALS_KEPT {
            kept.pop_front();
        }
        kept.push_back(RefusalRecord {
            at: at.to_string(),
            source: refusal.source,
            input: refusal.input,
            reason: refusal.reason,
        });
    }

    /// The kept refusals, newest first.
    pub(crate) fn newest_first(&self) -> Vec<RefusalRecord> {
        let kept = self
            .kept
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        kept.iter().rev().cloned().collect()
    }
}

/// What a source is handed: the publishing service, and the refusal list.
struct SourceSink {
    publishing: Publishing,
    refusals: Arc<Refusals>,
}

#[async_trait]
impl PublishEvents for SourceSink {
    async fn publish(&self, items: Vec<PublishItem>) -> Result<Vec<Published>, PublishError> {
        PublishEvents::publish(&self.publishing, items).await
    }

    fn refused(&self, refusal: Refusal) {
        self.refusals.record(refusal);
    }
}

/// How long a source may take to return once told to stop, before it is dropped (with it, its
/// unacknowledged input, which it reads again at the next start).
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The sources the settings name, made but not started.
pub(crate) struct Configured {
    sources: Vec<(String, Box<dyn EventSource>)>,
}

/// Makes a source of each URL in `urls` (blank ones are left out), by its scheme, from the kinds
/// of `built_in` and `extensions`.
///
/// # Errors
/// When a URL's scheme names no known kind, or two kinds, or the kind refuses the URL; the
/// message names the URL (without credentials) and what would be right.
pub(crate) fn open(
    urls: &[String],
    built_in: &[SourceKind],
    extensions: &Extensions,
) -> anyhow::Result<Configured> {
    let kinds: Vec<&SourceKind> = built_in.iter().chain(extensions.sources()).collect();
    let mut sources = Vec::new();
    for url in urls
        .iter()
        .map(|url| url.trim())
        .filter(|url| !url.is_empty())
    {
        let shown = without_credentials(url);
        let serving: Vec<&&SourceKind> = kinds.iter().filter(|kind| kind.serves(url)).collect();
        let kind = match serving.as_slice() {
            [kind] => kind,
            [] => anyhow::bail!(
                "sources: {shown:?} names no known event source; {}",
                known(&kinds)
            ),
            [first, second, ..] => anyhow::bail!(
                "sources: {shown:?} is served by two event sources ({} and {}); register only one kind per scheme",
                first.name,
                second.name
            ),
        };
        let source = (kind.open)(url)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("sources: {} source {shown:?}", kind.name))?;
        sources.push((format!("{} {shown}", kind.name), source));
    }
    Ok(Configured { sources })
}

/// The known kinds for an error message, each with an example URL.
fn known(kinds: &[&SourceKind]) -> String {
    if kinds.is_empty() {
        return "none is known: the REST API and the CLI are the only ways in, and an embedder \
                adds a source through webhook_app::Extensions::with_source"
            .to_owned();
    }
    let each: Vec<String> = kinds
        .iter()
        .map(|kind| format!("{} ({})", kind.schemes.join(", "), kind.example))
        .collect();
    format!("use one of these schemes: {}", each.join("; "))
}

/// `url` with any user info replaced by `****`: source URLs may carry credentials, and this
/// text goes into errors and logs.
fn without_credentials(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://****@{host}{}", &rest[authority_end..]),
        None => url.to_owned(),
    }
}

impl Configured {
    /// Starts each source with `publishing` as its sink (its refusals kept in `refusals`), where `takes_events` (the roles that
    /// serve the API; a dispatcher-only instance takes no events in). Each task ends when its
    /// source returns, which it must do soon after `shutdown` turns true; one that does not is
    /// dropped after [`STOP_GRACE`]. A source that fails is logged, and the service runs on.
    pub(crate) fn start(
        self,
        publishing: &Publishing,
        refusals: &Arc<Refusals>,
        takes_events: bool,
        shutdown: &watch::Receiver<bool>,
    ) -> Vec<JoinHandle<()>> {
        if !takes_events {
            if !self.sources.is_empty() {
                tracing::warn!(
                    sources = self.sources.len(),
                    "event sources are configured, but a dispatcher-only instance takes no \
                     events in; they start with the instances that serve the API"
                );
            }
            return Vec::new();
        }
        self.sources
            .into_iter()
            .map(|(name, source)| {
                let sink: Arc<dyn PublishEvents> = Arc::new(SourceSink {
                    publishing: publishing.clone(),
                    refusals: refusals.clone(),
                });
                tokio::spawn(supervise(name, source, sink, shutdown.clone()))
            })
            .collect()
    }
}

/// Runs one source until it returns, or until [`STOP_GRACE`] after the shutdown.
async fn supervise(
    name: String,
    source: Box<dyn EventSource>,
    sink: Arc<dyn PublishEvents>,
    shutdown: watch::Receiver<bool>,
) {
    tracing::info!(source = %name, "event source started");
    let mut told = shutdown.clone();
    // A dropped sender (a start that failed after the sources began) also means stop.
    let signal = async move {
        let _ = told.wait_for(|stop| *stop).await;
    };
    let run = source.run(sink, Shutdown::new(signal));
    let mut overdue = shutdown;
    let grace = async move {
        let _ = overdue.wait_for(|stop| *stop).await;
        tokio::time::sleep(STOP_GRACE).await;
    };
    tokio::select! {
        ran = run => match ran {
            Ok(()) => tracing::info!(source = %name, "event source stopped"),
            Err(e) => tracing::error!(
                source = %name,
                error = %e,
                "event source failed and stays stopped; the REST API and other sources run on"
            ),
        },
        () = grace => tracing::warn!(
            source = %name,
            "event source did not stop within {STOP_GRACE:?} of the shutdown; dropped with \
             whatever it had not acknowledged, which it reads again at the next start"
        ),
    }
}

/// The publishing service as a source's sink: the same path as `POST /events` (one event,
/// grouped with concurrent ones) and `POST /events/batch` (several in one transaction), with
/// each named wallet checked, since a source may name any.
#[async_trait]
impl PublishEvents for Publishing {
    async fn publish(&self, items: Vec<PublishItem>) -> Result<Vec<Published>, PublishError> {
        let answered = match <[PublishItem; 1]>::try_from(items) {
            Ok([item]) => Publishing::publish(self, item, true)
                .await
                .map(|published| vec![published]),
            Err(items) if items.is_empty() => Ok(Vec::new()),
            Err(items) => self.publish_batch(&items, true).await,
        };
        answered.map_err(for_sources)
    }
}

/// The service's error as the port says it: what a source can act on.
fn for_sources(error: publisher::PublishError) -> PublishError {
    use publisher::PublishError as Service;
    match error {
        Service::Wallet(WalletStoreError::NotFound) => PublishError::WalletNotFound,
        Service::Wallet(WalletStoreError::Unavailable(cause))
        | Service::Outbox(OutboxError::Unavailable(cause)) => PublishError::Unavailable(cause),
        Service::Outbox(OutboxError::Conflict(text)) => PublishError::Conflict(text),
        Service::Wallet(other) => PublishError::Backend(Box::new(other)),
        Service::Outbox(other) => PublishError::Backend(Box::new(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::PoolUsage;
    use webhook_ports::SourceError;

    /// A source that does nothing until told to stop.
    struct Idle;

    #[async_trait]
    impl EventSource for Idle {
        async fn run(
            self: Box<Self>,
            _sink: Arc<dyn PublishEvents>,
            shutdown: Shutdown,
        ) -> Result<(), SourceError> {
            shutdown.await;
            Ok(())
        }
    }

    fn open_idle(url: &str) -> Result<Box<dyn EventSource>, String> {
        if url.ends_with('/') {
            return Err("the URL needs a name after the last /, as in idle://host/name".into());
        }
        Ok(Box::new(Idle))
    }

    const IDLE: SourceKind = SourceKind {
        name: "Idle",
        schemes: &["idle"],
        example: "idle://host/name",
        open: open_idle,
    };

    fn urls(list: &[&str]) -> Vec<String> {
        list.iter().map(|&url| url.to_owned()).collect()
    }

    fn refusal(list: &[&str], built_in: &[SourceKind], extensions: &Extensions) -> String {
        match open(&urls(list), built_in, extensions) {
            Ok(_) => panic!("{list:?} was accepted"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn a_registered_kind_opens_its_urls_and_blank_entries_are_left_out() {
        let extensions = Extensions::default().with_source(IDLE);
        let opened = open(
            &urls(&["idle://a/one", " ", "IDLE://b/two"]),
            &[],
            &extensions,
        )
        .unwrap();
        let names: Vec<&str> = opened.sources.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["Idle idle://a/one", "Idle IDLE://b/two"]);
        // The built-in kinds are looked up the same way.
        assert_eq!(
            open(&urls(&["idle://a/one"]), &[IDLE], &Extensions::default())
                .unwrap()
                .sources
                .len(),
            1
        );
    }

    #[test]
    fn an_unknown_scheme_is_refused_naming_the_known_ones_without_credentials() {
        let extensions = Extensions::default().with_source(IDLE);
        assert_eq!(
            refusal(&["kafka://user:s3cret@broker/topic"], &[], &extensions),
            "sources: \"kafka://****@broker/topic\" names no known event source; use one of \
             these schemes: idle (idle://host/name)"
        );
        let none = refusal(&["kafka://broker/topic"], &[], &Extensions::default());
        assert!(none.contains("none is known"), "{none}");
        assert!(none.contains("Extensions::with_source"), "{none}");
    }

    #[test]
    fn a_url_the_kind_refuses_and_a_scheme_served_twice_are_refused() {
        let extensions = Extensions::default().with_source(IDLE);
        assert_eq!(
            refusal(&["idle://a/"], &[], &extensions),
            "sources: Idle source \"idle://a/\": the URL needs a name after the last /, as in \
             idle://host/name"
        );
        let twice = refusal(&["idle://a/one"], &[IDLE], &extensions);
        assert!(
            twice.contains("served by two event sources (Idle and Idle)"),
            "{twice}"
        );
    }

    #[test]
    fn refusals_keep_the_newest_thousand_and_count_every_one() {
        let metrics = Arc::new(Metrics::new());
        let refusals = Refusals::new(metrics.clone());
        for n in 0..REFUSALS_KEPT + 5 {
            refusals.record(Refusal {
                source: "NATS x".into(),
                input: format!("sequence {n}"),
                reason: "not an event".into(),
            });
        }
        let kept = refusals.newest_first();
        assert_eq!(kept.len(), REFUSALS_KEPT);
        assert_eq!(kept[0].input, format!("sequence {}", REFUSALS_KEPT + 4));
        assert_eq!(kept[REFUSALS_KEPT - 1].input, "sequence 5");
        let text = metrics
            .render(time::OffsetDateTime::UNIX_EPOCH, None, PoolUsage::default())
            .unwrap();
        assert!(
            text.contains(&format!(
                "webhookd_source_refusals_total{{source=\"NATS x\"}} {}",
                REFUSALS_KEPT + 5
            )),
            "{text}"
        );
    }

    #[test]
    fn credentials_never_reach_a_message() {
        for (url, shown) in [
            ("nats://u:p@h:4222/s", "nats://****@h:4222/s"),
            ("nats://token@h", "nats://****@h"),
            ("jsonl:///tmp/a@b.jsonl", "jsonl:///tmp/a@b.jsonl"),
            ("x://h/p?q=a@b", "x://h/p?q=a@b"),
            ("no-scheme", "no-scheme"),
        ] {
            assert_eq!(without_credentials(url), shown);
        }
    }

    #[test]
    fn service_errors_become_what_a_source_can_act_on() {
        use publisher::PublishError as Service;
        let check = |error: Service, transient: bool, text: &str| {
            let translated = for_sources(error);
            assert_eq!(translated.is_transient(), transient, "{translated:?}");
            assert!(translated.to_string().contains(text), "{translated}");
        };
        check(
            Service::Wallet(WalletStoreError::NotFound),
            false,
            "does not exist",
        );
        check(
            Service::Outbox(OutboxError::Unavailable("down".into())),
            true,
            "try again later",
        );
        check(
            Service::Wallet(WalletStoreError::Unavailable("down".into())),
            true,
            "try again later",
        );
        check(
            Service::Outbox(OutboxError::Conflict("idempotency key reused".into())),
            false,
            "idempotency key reused",
        );
        check(
            Service::Outbox(OutboxError::NotFound),
            false,
            "nothing was stored",
        );
    }

    #[tokio::test]
    async fn sources_stop_with_the_service_and_none_start_without_the_api() {
        use webhook_ports::{MockClock, MockEventOutbox, MockWalletRepository};
        let (publishing, workers) = Publishing::start(
            Arc::new(MockEventOutbox::new()),
            Arc::new(MockWalletRepository::new()),
            Arc::new(MockClock::new()),
            None,
            Arc::new(tokio::sync::Notify::new()),
        );
        let extensions = Extensions::default().with_source(IDLE);
        let (stop, stopping) = watch::channel(false);
        let refusals = Arc::new(Refusals::new(Arc::new(Metrics::new())));
        let opened = open(&urls(&["idle://a/one"]), &[], &extensions).unwrap();
        assert!(
            opened
                .start(&publishing, &refusals, false, &stopping)
                .is_empty()
        );
        let opened = open(&urls(&["idle://a/one", "idle://a/two"]), &[], &extensions).unwrap();
        let tasks = opened.start(&publishing, &refusals, true, &stopping);
        assert_eq!(tasks.len(), 2);
        stop.send(true).unwrap();
        for task in tasks {
            tokio::time::timeout(Duration::from_secs(1), task)
                .await
                .expect("an idle source returns once told to stop")
                .unwrap();
        }
        // The sources let go of their sinks: the publishing workers can end.
        drop(publishing);
        for worker in workers {
            tokio::time::timeout(Duration::from_secs(1), worker)
                .await
                .expect("no source holds the publishing service after it stopped")
                .unwrap();
        }
    }
}
