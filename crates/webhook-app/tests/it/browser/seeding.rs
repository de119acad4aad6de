//! Large delivery histories written straight into a service's database, for the console's
//! browser tests and its measurements on 1,000,000 deliveries: n events, one delivery each,
//! and their attempts, in a fixed mix of states, inserted by set-based SQL (a recursive CTE on
//! SQLite, `generate_series` on PostgreSQL) in one transaction.
//!
//! Rows are numbered `i = 0..n`, oldest first, and everything about a row follows from `i`, so
//! [`Seeded`] knows exactly how many rows of each kind were written:
//! - state by `i % 100`: 0-95 delivered (96 %), 96-98 exhausted (3 %), 99 one of
//!   retry_scheduled, pending or cancelled in turn (by `i / 100 % 3`, about 0.33 % each);
//! - event type by `i % 13`: ConnectionUpdated 6 in 13, IssueCredentialRecordUpdated 4,
//!   PresentationUpdated 2, DIDStatusUpdated 1 (13 is prime to 100, so every type meets every
//!   state), with data its type's rules accept;
//! - created over the last two days (up to five minutes ago), evenly spaced;
//! - attempts: delivered 1 (response 200), exhausted 5, retry_scheduled 2, cancelled 1, pending
//!   0, each failure a 503, a 500, a timeout or a refused connection, 30 s apart. Every attempt
//!   of a row that did not succeed is logged; of the delivered rows only every tenth has its
//!   attempt row (see [`DELIVERED_LOG_EVERY`]);
//! - unfinished rows are due in the future (retries in one to two hours, pending rows in two),
//!   so a dispatcher of the service under test leaves them alone during a test.
//!
//! This writes the tables behind the adapters' back: it must follow the migrations
//! (`crates/webhook-adapters/migrations/`) and the row mapping (`rows.rs`), and
//! `seeding_is_consistent` reads what it wrote back through the REST API to prove it does.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use diesel::Connection;
use diesel::connection::SimpleConnection;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use webhook_domain::{WalletId, WebhookId};

use crate::utils::Service;

/// One delivered row in this many has its attempt logged: logging all of them would double
/// the rows to write (and the seeding time) for attempts that all look alike. The others keep
/// `attempts_made = 1` with an empty log.
pub const DELIVERED_LOG_EVERY: u64 = 10;

/// Attempts made by a row of each final or waiting state.
const EXHAUSTED_ATTEMPTS: u64 = 5;
const RETRYING_ATTEMPTS: u64 = 2;
const CANCELLED_ATTEMPTS: u64 = 1;

const MICROS_PER_SECOND: i64 = 1_000_000;
/// The rows' creation times span [now - 2 days, now - 5 minutes].
const NEWEST_AGE_US: i64 = 5 * 60 * MICROS_PER_SECOND;
const SPAN_US: i64 = 2 * 24 * 3600 * MICROS_PER_SECOND - NEWEST_AGE_US;

/// What a seeding wrote: rows per delivery state, attempt rows, and how long it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seeded {
    pub deliveries: BTreeMap<&'static str, u64>,
    pub attempts: u64,
    pub elapsed: Duration,
}

impl Seeded {
    /// Deliveries in `state` (by its API name).
    pub fn in_state(&self, state: &str) -> u64 {
        self.deliveries.get(state).copied().unwrap_or(0)
    }
}

/// The state of row `i`, as the SQL below decides it.
fn state_of(i: u64) -> &'static str {
    match i % 100 {
        0..=95 => "delivered",
        96..=98 => "exhausted",
        _ => match (i / 100) % 3 {
            0 => "retry_scheduled",
            1 => "pending",
            _ => "cancelled",
        },
    }
}

/// Attempt rows logged for row `i`.
fn logged_attempts(i: u64) -> u64 {
    match state_of(i) {
        "delivered" => u64::from(i.is_multiple_of(DELIVERED_LOG_EVERY)),
        "exhausted" => EXHAUSTED_ATTEMPTS,
        "retry_scheduled" => RETRYING_ATTEMPTS,
        "cancelled" => CANCELLED_ATTEMPTS,
        _ => 0,
    }
}

/// Which database a seeding writes, and how its SQL spells what the two differ in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// `seq(i)`: the integers 0 to n - 1, as the first common table expression.
    fn numbers(self, n: u64) -> String {
        match self {
            Dialect::Sqlite => format!(
                "RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i + 1 < {n})"
            ),
            Dialect::Postgres => {
                format!("seq(i) AS (SELECT generate_series(0::bigint, {n}::bigint - 1))")
            }
        }
    }

    /// `i` as 12 hexadecimal digits: the last group of a row's ids.
    fn hex12(self) -> &'static str {
        match self {
            Dialect::Sqlite => "printf('%012x', i)",
            Dialect::Postgres => "lpad(to_hex(i), 12, '0')",
        }
    }

    /// An id column's value from UUID text: text on SQLite, `uuid` on PostgreSQL.
    fn id(self, text: &str) -> String {
        match self {
            Dialect::Sqlite => text.to_owned(),
            Dialect::Postgres => format!("CAST({text} AS uuid)"),
        }
    }
}

/// When attempt `k` (from 1) of a row started: 5 ms after its creation, then every 30 s.
fn started(k: &str) -> String {
    format!("(created_at + 5000 + ({k} - 1) * 30000000)")
}

/// Attempt `k`'s outcome: a delivered row's one attempt got a 200; failures go round 503, 500,
/// timeout, refused connection.
fn outcome(k: &str) -> String {
    format!(
        "CASE WHEN state = 'delivered' THEN 'response' WHEN (i + {k}) % 4 < 2 THEN 'response' \
         WHEN (i + {k}) % 4 = 2 THEN 'timeout' ELSE 'connection_failed' END"
    )
}

fn status_code(k: &str) -> String {
    format!(
        "CASE WHEN state = 'delivered' THEN 200 WHEN (i + {k}) % 4 = 0 THEN 503 \
         WHEN (i + {k}) % 4 = 1 THEN 500 END"
    )
}

/// Microseconds: 20 to 199 ms for an answer, 10 s for a timeout, 1 ms for a refusal.
fn duration(k: &str) -> String {
    format!(
        "CASE WHEN state = 'delivered' THEN 20000 + (i % 180) * 1000 \
         WHEN (i + {k}) % 4 = 2 THEN 10000000 WHEN (i + {k}) % 4 = 3 THEN 1000 \
         ELSE 20000 + (i % 180) * 1000 END"
    )
}

fn response_excerpt(k: &str) -> String {
    format!(
        "CASE WHEN state = 'delivered' THEN 'ok' WHEN (i + {k}) % 4 = 0 THEN 'Service Unavailable' \
         WHEN (i + {k}) % 4 = 1 THEN 'Internal Server Error' END"
    )
}

fn error(k: &str) -> String {
    format!(
        "CASE WHEN state <> 'delivered' AND (i + {k}) % 4 = 2 THEN 'no response within 10 s' \
         WHEN state <> 'delivered' AND (i + {k}) % 4 = 3 THEN 'connection refused' END"
    )
}

/// The three statements (events, deliveries, attempts) that seed `n` rows, each with the same
/// plan of rows as common table expressions.
fn statements(
    dialect: Dialect,
    wallet: WalletId,
    webhook: WebhookId,
    n: u64,
    now_us: i64,
) -> [String; 3] {
    // Ids: this seeding's own random prefix (two seedings of one database never collide),
    // then 8 for events and 9 for deliveries in the fourth group, then `i` in hexadecimal.
    let prefix = uuid::Uuid::new_v4().to_string();
    let prefix = &prefix[..19];
    let hex = dialect.hex12();
    let first = now_us - NEWEST_AGE_US - SPAN_US;
    let numbers = dialect.numbers(n);
    let plan = format!(
        "WITH {numbers},
plan AS (
    SELECT i,
        '{prefix}8000-' || {hex} AS event_id,
        '{prefix}9000-' || {hex} AS delivery_id,
        CASE WHEN i % 100 < 96 THEN 'delivered' WHEN i % 100 < 99 THEN 'exhausted'
            WHEN (i / 100) % 3 = 0 THEN 'retry_scheduled' WHEN (i / 100) % 3 = 1 THEN 'pending'
            ELSE 'cancelled' END AS state,
        CASE WHEN i % 13 < 6 THEN 'ConnectionUpdated'
            WHEN i % 13 < 10 THEN 'IssueCredentialRecordUpdated'
            WHEN i % 13 < 12 THEN 'PresentationUpdated' ELSE 'DIDStatusUpdated' END AS event_type,
        {first} + i * {SPAN_US} / {n} AS created_at
    FROM seq
),
tried AS (
    SELECT plan.*,
        CASE state WHEN 'delivered' THEN 1 WHEN 'exhausted' THEN {EXHAUSTED_ATTEMPTS}
            WHEN 'retry_scheduled' THEN {RETRYING_ATTEMPTS} WHEN 'cancelled' THEN {CANCELLED_ATTEMPTS}
            ELSE 0 END AS made,
        CASE state WHEN 'delivered' THEN CASE WHEN i % {DELIVERED_LOG_EVERY} = 0 THEN 1 ELSE 0 END
            WHEN 'exhausted' THEN {EXHAUSTED_ATTEMPTS} WHEN 'retry_scheduled' THEN {RETRYING_ATTEMPTS}
            WHEN 'cancelled' THEN {CANCELLED_ATTEMPTS} ELSE 0 END AS logged
    FROM plan
)"
    );
    let wallet = dialect.id(&format!("'{wallet}'"));
    let webhook = dialect.id(&format!("'{webhook}'"));
    let event_id = dialect.id("event_id");
    let delivery_id = dialect.id("delivery_id");

    let events = format!(
        "INSERT INTO events
    (id, wallet_id, event_type, ts, data, idempotency_key, fingerprint, deliveries, created_at)
{plan}
SELECT {event_id}, {wallet}, event_type, created_at,
    CASE event_type
        WHEN 'ConnectionUpdated' THEN '{{\"connectionId\":\"' || event_id
            || '\",\"state\":\"ConnectionResponseSent\",\"role\":\"Inviter\",\"label\":\"Seeded\"}}'
        WHEN 'IssueCredentialRecordUpdated' THEN '{{\"recordId\":\"' || event_id
            || '\",\"protocolState\":\"CredentialSent\",\"role\":\"Issuer\"}}'
        WHEN 'PresentationUpdated' THEN '{{\"presentationId\":\"' || event_id
            || '\",\"status\":\"PresentationVerified\",\"role\":\"Verifier\"}}'
        ELSE '{{\"did\":\"did:prism:' || event_id || '\",\"status\":\"PUBLISHED\"}}'
    END,
    NULL, NULL, 1, created_at
FROM tried"
    );

    let delivered_at = format!("{} + {}", started("1"), duration("1"));
    let exhausted_at = format!("{} + {}", started("5"), duration("5"));
    let deliveries = format!(
        "INSERT INTO deliveries
    (id, event_id, webhook_id, wallet_id, state, due_at, attempts, lease_owner, final_at,
     cancel_reason, first_due, created_at, seq, attempts_made)
{plan}
SELECT {delivery_id}, {event_id}, {webhook}, {wallet}, state,
    CASE state
        WHEN 'retry_scheduled' THEN {now_us} + 3600000000 + (i % 3600) * 1000000
        WHEN 'pending' THEN {now_us} + 7200000000 END,
    made, NULL,
    CASE state
        WHEN 'delivered' THEN {delivered_at}
        WHEN 'exhausted' THEN {exhausted_at}
        WHEN 'cancelled' THEN created_at + 60000000 END,
    CASE state WHEN 'cancelled' THEN 'target_disabled' END,
    created_at, created_at, NULL, made
FROM tried"
    );

    // The attempts' columns and their values, one pair a line.
    let attempt_columns: [(&str, &str); 9] = [
        ("delivery_id", delivery_id.as_str()),
        ("webhook_id", webhook.as_str()),
        ("number", "k"),
        ("started_at", &started("k")),
        ("duration_us", &duration("k")),
        ("outcome", &outcome("k")),
        ("status_code", &status_code("k")),
        ("response_excerpt", &response_excerpt("k")),
        ("error", &error("k")),
    ];
    let names: Vec<&str> = attempt_columns.iter().map(|(name, _)| *name).collect();
    let values: Vec<&str> = attempt_columns.iter().map(|(_, value)| *value).collect();
    let attempts = format!(
        "INSERT INTO attempts ({names})
{plan},
tries(k) AS (VALUES (1), (2), (3), (4), (5))
SELECT {values}
FROM tried JOIN tries ON tries.k <= tried.logged",
        names = names.join(", "),
        values = values.join(",\n    "),
    );
    [events, deliveries, attempts]
}

/// Writes `n` events of `wallet`, one delivery each to `webhook` (which must exist), and their
/// attempts, into the database of `service` (SQLite or PostgreSQL), in one transaction; on
/// PostgreSQL the tables are analysed after, as autovacuum would, and on SQLite as the store's
/// statistics upkeep would. Returns what it wrote and
/// how long that took.
///
/// # Panics
/// On MySQL (not written yet), and when the database refuses the rows.
pub async fn seed_deliveries(
    service: &Service,
    wallet: WalletId,
    webhook: WebhookId,
    n: u64,
) -> Seeded {
    assert!(n > 0, "seed at least one delivery");
    let url = service.settings.database_url.clone();
    let now_us = i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000)
        .expect("a time in range");
    let started = Instant::now();
    if let Some(path) = url.strip_prefix("sqlite://") {
        let [events, deliveries, attempts] =
            statements(Dialect::Sqlite, wallet, webhook, n, now_us);
        let file = std::path::PathBuf::from(path);
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut conn = diesel::SqliteConnection::establish(&path)
                .unwrap_or_else(|e| panic!("cannot open the SQLite database {path}: {e}"));
            conn.batch_execute("PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;")
                .expect("the connection's settings");
            conn.batch_execute("BEGIN IMMEDIATE")
                .expect("a write transaction");
            for (table, sql) in [
                ("events", events),
                ("deliveries", deliveries),
                ("attempts", attempts),
            ] {
                conn.batch_execute(&sql)
                    .unwrap_or_else(|e| panic!("cannot seed {table}: {e}\n{sql}"));
            }
            conn.batch_execute("COMMIT").expect("the seeding commits");
        })
        .await
        .expect("the seeding task");
        // What the service's store does by itself every few minutes (its statistics upkeep),
        // done now rather than waited for.
        webhook_adapters::SqliteStore::open(&file, 1)
            .await
            .expect("the seeded database opens")
            .refresh_statistics()
            .await
            .expect("the seeded tables are analysed");
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let [events, deliveries, attempts] =
            statements(Dialect::Postgres, wallet, webhook, n, now_us);
        let mut conn = AsyncPgConnection::establish(&url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to PostgreSQL: {e}"));
        conn.batch_execute("BEGIN").await.expect("a transaction");
        for (table, sql) in [
            ("events", events),
            ("deliveries", deliveries),
            ("attempts", attempts),
        ] {
            conn.batch_execute(&sql)
                .await
                .unwrap_or_else(|e| panic!("cannot seed {table}: {e}\n{sql}"));
        }
        conn.batch_execute("COMMIT")
            .await
            .expect("the seeding commits");
        conn.batch_execute("ANALYZE events; ANALYZE deliveries; ANALYZE attempts;")
            .await
            .expect("the seeded tables are analysed");
    } else {
        panic!("seed_deliveries writes SQLite and PostgreSQL only, not {url}");
    }
    let mut deliveries = BTreeMap::new();
    let mut attempts = 0;
    for i in 0..n {
        *deliveries.entry(state_of(i)).or_default() += 1;
        attempts += logged_attempts(i);
    }
    Seeded {
        deliveries,
        attempts,
        elapsed: started.elapsed(),
    }
}
