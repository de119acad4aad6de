//! A test-only event source, the worked example of docs/extending.md: it reads a file of JSON
//! lines, one event per line (`{"walletId": ..., "type": ..., "data": ..., "id": ...}`, `id`
//! optional), and hands each to the publishing service. Its acknowledgement is the committed
//! offset, the byte after the last line it is done with, kept in `<file>.offset`; lines it
//! cannot publish are reported in `<file>.rejected` and skipped.
//!
//! It must not acknowledge a line before the sink's answer for it, and must not stop on a bad
//! one. Files are read with `std::fs`: they are small, and a test source need not be fast.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use webhook_domain::{Event, EventId, EventType, Timestamp, WalletId};
use webhook_ports::{EventSource, PublishEvents, PublishItem, Shutdown, SourceError, SourceKind};

/// `jsonl:///absolute/path/events.jsonl`.
pub const KIND: SourceKind = SourceKind {
    name: "JSON lines",
    schemes: &["jsonl"],
    example: "jsonl:///var/lib/webhookd/events.jsonl",
    open: JsonLines::open,
};

/// How often the file is read again once every line in it is done.
const POLL: Duration = Duration::from_millis(20);
/// How long to wait before publishing a line again after a transient refusal.
const RETRY: Duration = Duration::from_millis(50);
/// The deepest `data` accepted, as the REST API's default `api.max_json_depth`.
const MAX_JSON_DEPTH: usize = 32;

pub struct JsonLines {
    path: PathBuf,
}

/// One line of the file.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Line {
    wallet_id: WalletId,
    #[serde(rename = "type")]
    event_type: String,
    data: serde_json::Value,
    id: Option<EventId>,
}

impl JsonLines {
    fn open(url: &str) -> Result<Box<dyn EventSource>, String> {
        match url.split_once("://") {
            Some((_, path)) if path.starts_with('/') => {
                Ok(Box::new(JsonLines { path: path.into() }))
            }
            _ => Err(format!(
                "{url:?} names no absolute file path; write it as {}",
                KIND.example
            )),
        }
    }

    /// The committed offset of `file`: every line before it is published or rejected.
    pub fn acknowledged(file: &Path) -> u64 {
        std::fs::read_to_string(offset_file(file))
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(0)
    }

    /// The complete lines from `offset` on, each with where it starts. A last line without its
    /// newline is still being written: it waits for the next read.
    fn lines_from(&self, offset: u64) -> std::io::Result<Vec<(u64, Vec<u8>)>> {
        let mut file = match std::fs::File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        file.seek(SeekFrom::Start(offset))?;
        let mut rest = Vec::new();
        file.read_to_end(&mut rest)?;
        let mut lines = Vec::new();
        let mut at = offset;
        let mut remaining = rest.as_slice();
        while let Some(end) = remaining.iter().position(|&b| b == b'\n') {
            lines.push((at, remaining[..end].to_vec()));
            at += end as u64 + 1;
            remaining = &remaining[end + 1..];
        }
        Ok(lines)
    }

    /// Commits `offset`: written beside and renamed over, so a crash leaves the old or the new.
    fn acknowledge(&self, offset: u64) -> std::io::Result<()> {
        let committed = offset_file(&self.path);
        let written = committed.with_extension("offset.new");
        let mut file = std::fs::File::create(&written)?;
        file.write_all(offset.to_string().as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&written, &committed)
    }

    /// Reports the line at `at` as skipped, and why.
    fn reject(&self, at: u64, reason: &str) -> std::io::Result<()> {
        tracing::warn!(file = %self.path.display(), offset = at, reason, "event line skipped");
        let mut report = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(rejected_file(&self.path))?;
        writeln!(report, "{at}: {reason}")
    }
}

pub fn offset_file(file: &Path) -> PathBuf {
    file.with_extension("offset")
}

pub fn rejected_file(file: &Path) -> PathBuf {
    file.with_extension("rejected")
}

/// The event of the line at `at`: its own id, or one derived from where it is and what it
/// holds, so that reading it again publishes the same event.
fn parse(line: &[u8], at: u64) -> Result<PublishItem, String> {
    let depth = webhook_domain::json_nesting_depth(line);
    if depth > MAX_JSON_DEPTH + 1 {
        return Err(format!(
            "nested {depth} deep; at most {MAX_JSON_DEPTH} in data"
        ));
    }
    let parsed: Line = serde_json::from_slice(line).map_err(|e| format!("not an event: {e}"))?;
    let id = parsed.id.unwrap_or_else(|| {
        let digest = Sha256::new()
            .chain_update(at.to_be_bytes())
            .chain_update(line)
            .finalize();
        let mut bytes = [0; 16];
        bytes.copy_from_slice(&digest[..16]);
        EventId::from_uuid(uuid::Uuid::from_bytes(bytes))
    });
    let event_type = EventType::parse(&parsed.event_type).map_err(|e| e.to_string())?;
    let now = Timestamp::from_datetime(time::OffsetDateTime::now_utc());
    let event = Event::new(id, now, event_type, parsed.data, parsed.wallet_id)
        .map_err(|e| e.to_string())?;
    Ok(PublishItem {
        event,
        idempotency: None,
    })
}

fn unavailable(e: std::io::Error) -> SourceError {
    SourceError::Unavailable(Box::new(e))
}

#[async_trait]
impl EventSource for JsonLines {
    async fn run(
        self: Box<Self>,
        sink: Arc<dyn PublishEvents>,
        mut shutdown: Shutdown,
    ) -> Result<(), SourceError> {
        let mut offset = Self::acknowledged(&self.path);
        loop {
            for (at, line) in self.lines_from(offset).map_err(unavailable)? {
                if !line.trim_ascii().is_empty() {
                    let refused = match parse(&line, at) {
                        Ok(item) => loop {
                            match sink.publish(vec![item.clone()]).await {
                                Ok(_) => break None,
                                Err(e) if e.is_transient() => tokio::select! {
                                    // Not acknowledged: read again at the next start.
                                    () = &mut shutdown => return Ok(()),
                                    () = tokio::time::sleep(RETRY) => {}
                                },
                                Err(e) => break Some(e.to_string()),
                            }
                        },
                        Err(reason) => Some(reason),
                    };
                    if let Some(reason) = refused {
                        self.reject(at, &reason).map_err(unavailable)?;
                    }
                }
                // Only now is the line done with: published (committed) or reported.
                offset = at + line.len() as u64 + 1;
                self.acknowledge(offset).map_err(unavailable)?;
            }
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }
}
