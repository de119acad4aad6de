//! The hot queries read indexes, not whole tables: with realistic volumes loaded (50,000
//! deliveries, most of them finished) and statistics gathered, no planner (SQLite's,
//! PostgreSQL's, MySQL's) chooses a full scan of deliveries, events or attempts (on MySQL: `ALL`
//! or a whole `index`) for the claim, a batch of outcomes, the listings, the attempts of a
//! listed page, a redelivery step, the next due time, the backlog, a pruning batch, (on SQLite
//! and MySQL) the events of a claimed batch or (on PostgreSQL) a batch publish's lookup of
//! earlier events. And with 200,000 deliveries waiting behind a resting target and a blocked
//! ordered one, a claim for another tenant reads only what it takes.

use diesel_async::{
    AsyncConnection, AsyncMysqlConnection, AsyncPgConnection, SimpleAsyncConnection,
};
use uuid::Uuid;
use webhook_adapters::testing::PgTestSchema;
use webhook_adapters::{MysqlStore, MysqlTestDatabase, PgStore, SqliteStore};
use webhook_domain::{EventId, WalletId, WebhookId};

const WALLET: &str = "00000000-0000-4000-8000-00000000000a";
const OTHER: &str = "00000000-0000-4000-8000-00000000000b";

/// How each backend spells what the loading SQL needs: PostgreSQL's ids are `uuid`s, SQLite's
/// and MySQL's text, and their string functions, integer division and series differ.
#[derive(Clone, Copy)]
enum Dialect {
    Postgres,
    Sqlite,
    Mysql,
}

impl Dialect {
    /// An id made of a kind (one hex digit) and the number `n` (an SQL expression).
    fn id(self, kind: char, n: &str) -> String {
        let prefix = format!("{kind}0000000-0000-4000-8000-");
        match self {
            Dialect::Postgres => format!("('{prefix}' || lpad(({n})::text, 12, '0'))::uuid"),
            Dialect::Sqlite => format!("'{prefix}' || substr('000000000000' || ({n}), -12, 12)"),
            Dialect::Mysql => format!("CONCAT('{prefix}', LPAD({n}, 12, '0'))"),
        }
    }

    /// The text expression `text` as an id.
    fn uuid(self, text: &str) -> String {
        match self {
            Dialect::Postgres => format!("({text})::uuid"),
            Dialect::Sqlite | Dialect::Mysql => text.to_owned(),
        }
    }

    /// The integer quotient of `n` (an SQL expression) by `d`: MySQL's `/` answers a decimal.
    fn quotient(self, n: &str, d: u32) -> String {
        match self {
            Dialect::Postgres | Dialect::Sqlite => format!("({n}) / {d}"),
            Dialect::Mysql => format!("({n}) DIV {d}"),
        }
    }

    /// What makes `g(n)`, the numbers 1 to `max`, for the `INSERT ... SELECT ... FROM g` that
    /// follows. MySQL takes a `WITH` only after `INSERT`, and MySQL 8 stops a recursion at
    /// 1,000 rows: there `g` is a table, filled from `numbers` ([`Dialect::prelude`]).
    fn series(self, max: u32) -> String {
        match self {
            Dialect::Postgres | Dialect::Sqlite => format!(
                "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {max})"
            ),
            Dialect::Mysql => format!(
                "DROP TABLE IF EXISTS g; \
                 CREATE TABLE g (n INT NOT NULL PRIMARY KEY) SELECT n FROM numbers WHERE n <= {max};"
            ),
        }
    }

    /// What the loading SQL runs first: on MySQL, the table `numbers` of 1 to 2^18, doubled
    /// 18 times.
    fn prelude(self) -> String {
        match self {
            Dialect::Postgres | Dialect::Sqlite => String::new(),
            Dialect::Mysql => {
                let mut sql = "CREATE TABLE numbers (n INT NOT NULL PRIMARY KEY); \
                               INSERT INTO numbers VALUES (1);"
                    .to_owned();
                for power in 0..18 {
                    sql.push_str(&format!(
                        " INSERT INTO numbers SELECT n + {} FROM numbers;",
                        1_u32 << power
                    ));
                }
                sql
            }
        }
    }

    /// What the loading SQL runs last: statistics gathered (and MySQL's helper tables gone).
    fn analyze(self) -> &'static str {
        match self {
            Dialect::Postgres | Dialect::Sqlite => "ANALYZE;",
            Dialect::Mysql => {
                "DROP TABLE g; DROP TABLE numbers; \
                 ANALYZE TABLE wallets, webhooks, events, deliveries, attempts;"
            }
        }
    }
}

/// SQL in each backend's dialect that loads two wallets, 100 webhooks, 5,000 events (one in a
/// hundred of the rare type `load.rare`) and 50,000 deliveries of which the last 1,000 are
/// due, with one attempt per finished delivery.
fn load_sql(d: Dialect) -> String {
    let wallet_of = |n: &str| {
        d.uuid(&format!(
            "CASE WHEN {n} % 2 = 0 THEN '{WALLET}' ELSE '{OTHER}' END"
        ))
    };
    let series = |max: u32| d.series(max);
    format!(
        "{prelude}
         INSERT INTO wallets VALUES ('{WALLET}', 'a', 0, 0), ('{OTHER}', 'b', 0, 0);
         {webhooks} INSERT INTO webhooks (id, wallet_id, url, custom_headers, enabled, created_at)
             SELECT {hook_id}, {hook_wallet}, 'http://127.0.0.1:9/', '{{}}', TRUE, n FROM g;
         {events} INSERT INTO events (id, wallet_id, event_type, ts, data, deliveries, created_at)
             SELECT {event_id}, {event_wallet},
                 CASE WHEN n % 100 = 0 THEN 'load.rare' ELSE 'load.test' END, n, '{{}}', 10, n
             FROM g;
         {deliveries} INSERT INTO deliveries (id, event_id, webhook_id, wallet_id, state, due_at,
                 attempts, final_at, first_due, created_at)
             SELECT {delivery_id}, {delivery_event}, {delivery_hook},
                 {delivery_wallet},
                 CASE WHEN n > 49000 THEN 'pending' ELSE 'delivered' END,
                 CASE WHEN n > 49000 THEN n ELSE NULL END, 1,
                 CASE WHEN n > 49000 THEN NULL ELSE n END, n, n FROM g;
         {attempts} INSERT INTO attempts (delivery_id, number, started_at, duration_us, outcome,
                 status_code, webhook_id)
             SELECT {delivery_id}, 1, n, 1000, 'response', 200, {delivery_hook} FROM g;
         {analyze}",
        prelude = d.prelude(),
        analyze = d.analyze(),
        webhooks = series(100),
        hook_id = d.id('c', "n"),
        event_id = d.id('e', "n"),
        delivery_id = d.id('d', "n"),
        delivery_event = d.id('e', &format!("{} + 1", d.quotient("n - 1", 10))),
        delivery_hook = d.id('c', "(n - 1) % 100 + 1"),
        hook_wallet = wallet_of("n"),
        events = series(5_000),
        event_wallet = wallet_of("n"),
        deliveries = series(50_000),
        delivery_wallet = wallet_of(&format!("({} + 1)", d.quotient("n - 1", 10))),
        attempts = series(49_000),
    )
}

/// The wallet, an event and a webhook to list by, and a pruning cut-off that keeps all but the
/// oldest 2% of events (stored at 1 to 5,000 microseconds).
fn arguments() -> (WalletId, EventId, WebhookId, time::OffsetDateTime) {
    (
        WalletId::from_uuid(Uuid::parse_str(WALLET).unwrap()),
        EventId::from_uuid(Uuid::new_v4()),
        WebhookId::from_uuid(Uuid::new_v4()),
        time::OffsetDateTime::from_unix_timestamp_nanos(100_000).unwrap(),
    )
}

fn assert_no_full_scans(backend: &str, plans: &[(String, String)], full_scan: &[&str]) {
    assert!(plans.len() >= 7, "{plans:?}");
    for (name, plan) in plans {
        for pattern in full_scan {
            assert!(
                !plan
                    .lines()
                    .any(|line| line.trim_start().starts_with(pattern)),
                "{backend}: {name} scans a whole table:\n{plan}"
            );
        }
    }
}

/// A fresh, migrated SQLite store whose tables hold what `sql` inserts (written through a
/// connection of its own, as another process would).
async fn sqlite_loaded(sql: &str) -> (tempfile::TempDir, SqliteStore) {
    use diesel::connection::SimpleConnection;
    use diesel::{Connection, SqliteConnection};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plans.db");
    let store = SqliteStore::open(&path, 1).await.unwrap();
    store.migrate().await.unwrap();
    let mut conn = SqliteConnection::establish(&path.to_string_lossy()).unwrap();
    conn.batch_execute(sql).unwrap();
    (dir, store)
}

#[tokio::test]
async fn sqlite_hot_queries_search_indexes() {
    let (_dir, store) = sqlite_loaded(&load_sql(Dialect::Sqlite)).await;
    let (wallet, event, webhook, before) = arguments();
    let plans = store
        .explain_hot_queries(wallet, event, webhook, before)
        .await
        .unwrap();
    // The backlog counts what is due: it reads the index of unfinished rows (and only that),
    // which its plan names a scan of that index.
    let plans: Vec<_> = plans
        .into_iter()
        .map(|(name, plan)| {
            let plan = if name == "backlog" {
                plan.replace(
                    "SCAN deliveries USING COVERING INDEX deliveries_due_by_target",
                    "reads the partial index of unfinished deliveries",
                )
            } else {
                plan
            };
            (name, plan)
        })
        .collect();
    assert_no_full_scans(
        "SQLite",
        &plans,
        &["SCAN deliveries", "SCAN events", "SCAN attempts"],
    );
    assert_reads_exhausted_rows_only("SQLite", &plans);
    assert_reads_attempts_by_delivery("SQLite", &plans);
    // A skip-scan (`ANY(column)`) steps through every value of an index's first column: SQLite
    // picks it here only because the loaded data has two wallets and statistics say so; with
    // no statistics (a running webhookd's database) or many wallets the same statement reads
    // the whole table.
    for (name, plan) in &plans {
        assert!(
            !plan.contains("ANY("),
            "SQLite: {name} skip-scans an index, which is a full scan without its statistics:\n{plan}"
        );
    }
}

/// The attempts of a listed page are read delivery by delivery through `attempts_by_delivery`.
fn assert_reads_attempts_by_delivery(backend: &str, plans: &[(String, String)]) {
    let (_, plan) = plans
        .iter()
        .find(|(name, _)| name == "attempts of a page")
        .expect("no plan for the attempts of a page");
    assert!(
        plan.contains("attempts_by_delivery"),
        "{backend}: the attempts of a page are not read through attempts_by_delivery:\n{plan}"
    );
}

/// A redelivery step reads the partial index of exhausted deliveries, not every delivery of
/// the window; or, as planners may choose when few deliveries are exhausted,
/// `deliveries_by_state`, whose range its state (only ever `exhausted` in this statement)
/// bounds too.
fn assert_reads_exhausted_rows_only(backend: &str, plans: &[(String, String)]) {
    let (_, plan) = plans
        .iter()
        .find(|(name, _)| name == "redelivery step")
        .expect("no plan for the redelivery step");
    assert!(
        plan.contains("deliveries_exhausted_by_webhook") || plan.contains("deliveries_by_state"),
        "{backend}: the redelivery step does not read the exhausted deliveries' index:\n{plan}"
    );
}

#[tokio::test]
async fn postgres_hot_queries_use_indexes() {
    let Some(schema) = PgTestSchema::create().await else {
        return;
    };
    let store = PgStore::connect(&schema.url(), 1).await.unwrap();
    store.migrate().await.unwrap();
    let mut conn = AsyncPgConnection::establish(&schema.url()).await.unwrap();
    conn.batch_execute(&load_sql(Dialect::Postgres))
        .await
        .unwrap();
    let (wallet, event, webhook, before) = arguments();
    let plans = store
        .explain_hot_queries(wallet, event, webhook, before)
        .await
        .unwrap();
    let scans = [
        "Seq Scan on deliveries",
        "Seq Scan on events",
        "Seq Scan on attempts",
    ];
    // Also inside a plan line such as "->  Seq Scan on deliveries".
    for (name, plan) in &plans {
        for pattern in scans {
            assert!(
                !plan.contains(pattern),
                "PostgreSQL: {name} scans a whole table:\n{plan}"
            );
        }
    }
    assert_no_full_scans("PostgreSQL", &plans, &scans);
    assert_reads_exhausted_rows_only("PostgreSQL", &plans);
    assert_reads_attempts_by_delivery("PostgreSQL", &plans);
    drop(store);
}

/// One table read of a MySQL plan.
struct TableRead {
    /// The table, or its alias in the statement.
    table: String,
    /// `ALL` (the whole table), `index` (a whole index), `range`, `ref`, `eq_ref`...
    access: String,
    /// The rows it read over all its loops, as MariaDB's `ANALYZE` counts them; infinite in a
    /// plan that was not run.
    rows: f64,
}

/// The claims' time of the isolation scenario.
fn now() -> time::OffsetDateTime {
    isolation_claim().now
}

/// Whether the test server is MariaDB.
async fn mariadb(database: &MysqlTestDatabase) -> bool {
    #[derive(diesel::QueryableByName)]
    struct Version {
        #[diesel(sql_type = diesel::sql_types::Text)]
        version: String,
    }
    let mut conn = AsyncMysqlConnection::establish(&database.url())
        .await
        .unwrap();
    let found: Version = diesel_async::RunQueryDsl::get_result(
        diesel::sql_query("SELECT VERSION() AS version"),
        &mut conn,
    )
    .await
    .unwrap();
    found.version.contains("MariaDB")
}

/// Each table read of a MySQL plan (`EXPLAIN FORMAT=JSON`'s document, of MySQL 8 or
/// MariaDB), from every object that names a table and its access type.
fn mysql_table_reads(plan: &str) -> Vec<TableRead> {
    fn walk(node: &serde_json::Value, reads: &mut Vec<TableRead>) {
        match node {
            serde_json::Value::Object(fields) => {
                if let (Some(table), Some(access)) = (
                    fields.get("table_name").and_then(serde_json::Value::as_str),
                    fields
                        .get("access_type")
                        .and_then(serde_json::Value::as_str),
                ) {
                    let number = |key: &str| fields.get(key).and_then(serde_json::Value::as_f64);
                    let rows = match (number("r_rows"), number("r_loops")) {
                        (Some(rows), Some(loops)) => rows * loops.max(1.0),
                        _ => f64::INFINITY,
                    };
                    reads.push(TableRead {
                        table: table.to_owned(),
                        access: access.to_owned(),
                        rows,
                    });
                }
                for value in fields.values() {
                    walk(value, reads);
                }
            }
            serde_json::Value::Array(items) => {
                for item in items {
                    walk(item, reads);
                }
            }
            _ => {}
        }
    }
    let mut reads = Vec::new();
    let document: serde_json::Value = serde_json::from_str(plan)
        .unwrap_or_else(|e| panic!("MySQL: a plan is not JSON ({e}):\n{plan}"));
    walk(&document, &mut reads);
    reads
}

/// The tables whose whole reads the MySQL test refuses: the big ones, under the names and
/// aliases the statements give them.
const MYSQL_BIG_TABLES: &[&str] = &["deliveries", "events", "attempts", "d", "a", "e"];

/// No read of a big table in `plan` is a full scan: `ALL` (the table) or `index` (a whole
/// index, in its order).
fn assert_mysql_reads_no_whole_table(name: &str, plan: &str) {
    let reads = mysql_table_reads(plan);
    assert!(!reads.is_empty(), "MySQL: {name} reads no table?\n{plan}");
    for TableRead { table, access, .. } in &reads {
        assert!(
            !(MYSQL_BIG_TABLES.contains(&table.as_str()) && (access == "ALL" || access == "index")),
            "MySQL: {name} reads the whole of {table} ({access}):\n{plan}"
        );
    }
}

#[tokio::test]
async fn mysql_hot_queries_use_indexes() {
    let Some(database) = MysqlTestDatabase::create().await else {
        return;
    };
    let store = MysqlStore::connect(&database.url(), 1).await.unwrap();
    store.migrate().await.unwrap();
    let mut conn = AsyncMysqlConnection::establish(&database.url())
        .await
        .unwrap();
    conn.batch_execute(&load_sql(Dialect::Mysql)).await.unwrap();
    let (wallet, event, webhook, before) = arguments();
    let plans = store
        .explain_hot_queries(wallet, event, webhook, before)
        .await
        .unwrap();
    assert!(plans.len() >= 7, "{plans:?}");
    for (name, plan) in &plans {
        assert_mysql_reads_no_whole_table(name, plan);
    }
    assert_reads_exhausted_rows_only("MySQL", &plans);
    assert_reads_attempts_by_delivery("MySQL", &plans);
    // The loose scan's step from just before the first target finds it among its 490
    // finished deliveries and 10 unfinished ones in one descent: finished rows (no partial
    // index here) are never walked. Counted by MariaDB only (see below).
    let before_first = hook("c0000000-0000-4000-8000-000000000000");
    if let Ok(analysed) = store.analyze_claim_steps(before_first, now()).await {
        for (name, plan) in &analysed {
            for read in mysql_table_reads(plan) {
                assert!(
                    read.rows < 20.0,
                    "MariaDB: the {name} read {} rows of {}:\n{plan}",
                    read.rows,
                    read.table
                );
            }
        }
    } else {
        assert!(
            !mariadb(&database).await,
            "MariaDB refused ANALYZE FORMAT=JSON"
        );
    }
}

/// MySQL's claim steps each read a few rows of deliveries through an index, never a whole
/// table, with the 200,000 rows of the isolation scenario loaded; and the claim finds the one
/// delivery of the other tenant. On MariaDB the count is the server's own, from `ANALYZE
/// FORMAT=JSON` (`r_rows`, per loop, times `r_loops`): each step reads fewer than 1,000 rows.
/// MySQL 8 has no such statement: there only the plans are checked.
#[tokio::test]
async fn mysql_claims_never_walk_other_targets_backlogs() {
    let Some(database) = MysqlTestDatabase::create().await else {
        return;
    };
    let store = MysqlStore::connect(&database.url(), 2).await.unwrap();
    store.migrate().await.unwrap();
    let mut conn = AsyncMysqlConnection::establish(&database.url())
        .await
        .unwrap();
    conn.batch_execute(&backlog_sql(Dialect::Mysql))
        .await
        .unwrap();
    let (wallet, event, _, before) = arguments();
    let plans = store
        .explain_hot_queries(wallet, event, hook(DOWN), before)
        .await
        .unwrap();
    let steps: Vec<_> = plans
        .iter()
        .filter(|(name, _)| name.starts_with("claim"))
        .collect();
    assert_eq!(steps.len(), 4, "{plans:?}");
    for (name, plan) in steps {
        assert_mysql_reads_no_whole_table(name, plan);
    }
    if let Ok(analysed) = store.analyze_claim_steps(hook(DOWN), now()).await {
        assert_eq!(analysed.len(), 4, "{analysed:?}");
        for (name, plan) in &analysed {
            assert_mysql_reads_no_whole_table(name, plan);
            for TableRead {
                table,
                access,
                rows,
            } in mysql_table_reads(plan)
            {
                assert!(
                    rows < 1_000.0,
                    "MariaDB: the {name} read {rows} rows of {table} ({access}) with 200,000 \
                     waiting elsewhere:\n{plan}"
                );
            }
        }
    } else {
        assert!(
            !mariadb(&database).await,
            "MariaDB refused ANALYZE FORMAT=JSON"
        );
    }
    assert_eq!(claim_in_scenario(&store).await, [B_DELIVERY]);
}

/// The targets of the isolation scenario: a down one and an ordered one in wallet A, and
/// another tenant's in wallet B.
const DOWN: &str = "00000000-0000-4000-8000-0000000000d1";
const ORDERED: &str = "00000000-0000-4000-8000-0000000000d2";
const B_HOOK: &str = "00000000-0000-4000-8000-0000000000d3";
/// B's one event and delivery.
const B_EVENT: &str = "00000000-0000-4000-8000-0000000000e1";
const B_DELIVERY: &str = "00000000-0000-4000-8000-0000000000f1";
/// Never due: far after `NOW`.
const FUTURE: i64 = 4_000_000_000_000_000;
/// The claims' time, microseconds: every row but the ordered target's first is due by then.
const NOW: i64 = 1_000_000_000_000;

/// Portable SQL for the isolation scenario: 200,000 unfinished deliveries that a claim must
/// not walk, and one that it must find. Wallet A holds a down target with 100,000 deliveries
/// due (the claim skips it, as a dispatcher skips a resting target) and an ordered target
/// whose first delivery waits for a retry far in the future with 99,999 due behind it; wallet
/// B holds one due delivery, due after all of them, so that a walk in due order would meet
/// every other row first.
fn backlog_sql(d: Dialect) -> String {
    let series = |max: u32| d.series(max);
    format!(
        "{prelude}
         INSERT INTO wallets VALUES ('{WALLET}', 'a', 0, 0), ('{OTHER}', 'b', 0, 0);
         INSERT INTO webhooks (id, wallet_id, url, custom_headers, enabled, created_at, ordered,
                 last_seq)
         VALUES ('{DOWN}', '{WALLET}', 'http://127.0.0.1:9/', '{{}}', TRUE, 0, FALSE, 0),
                ('{ORDERED}', '{WALLET}', 'http://127.0.0.1:9/', '{{}}', TRUE, 0, TRUE, 100000),
                ('{B_HOOK}', '{OTHER}', 'http://127.0.0.1:9/', '{{}}', TRUE, 0, FALSE, 0);
         {events} INSERT INTO events (id, wallet_id, event_type, ts, data, deliveries, created_at)
             SELECT {event_id}, '{WALLET}', 'load.test', n, '{{}}', 200, n FROM g;
         INSERT INTO events (id, wallet_id, event_type, ts, data, deliveries, created_at)
             VALUES ('{B_EVENT}', '{OTHER}', 'load.test', 1, '{{}}', 1, 1);
         {rows} INSERT INTO deliveries (id, event_id, webhook_id, wallet_id, state, due_at,
                 attempts, first_due, created_at)
             SELECT {down_id}, {delivery_event}, '{DOWN}', '{WALLET}', 'pending', n, 0, n,
                 n FROM g;
         {rows} INSERT INTO deliveries (id, event_id, webhook_id, wallet_id, state, due_at,
                 attempts, first_due, created_at, seq)
             SELECT {ordered_id}, {delivery_event}, '{ORDERED}', '{WALLET}',
                 CASE WHEN n = 1 THEN 'retry_scheduled' ELSE 'pending' END,
                 CASE WHEN n = 1 THEN {FUTURE} ELSE n END, 0, n, n, n FROM g;
         INSERT INTO deliveries (id, event_id, webhook_id, wallet_id, state, due_at, attempts,
                 first_due, created_at)
             VALUES ('{B_DELIVERY}', '{B_EVENT}', '{B_HOOK}', '{OTHER}', 'pending', 500000, 0,
                 500000, 500000);
         {analyze}",
        prelude = d.prelude(),
        analyze = d.analyze(),
        events = series(1_000),
        rows = series(100_000),
        event_id = d.id('e', "n"),
        down_id = d.id('a', "n"),
        ordered_id = d.id('b', "n"),
        delivery_event = d.id('e', "n % 1000 + 1"),
    )
}

fn hook(id: &str) -> WebhookId {
    WebhookId::from_uuid(Uuid::parse_str(id).unwrap())
}

/// The dispatcher's claim in the scenario: the down target is resting, so skipped.
fn isolation_claim() -> webhook_ports::ClaimRequest {
    webhook_ports::ClaimRequest {
        now: time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(NOW) * 1000).unwrap(),
        lease: std::time::Duration::from_secs(60),
        limit: 64,
        per_target: 32,
        skip: vec![hook(DOWN)],
    }
}

/// The rows a plan node and its children read, over all their loops: those it returned and
/// those its filter threw away (PostgreSQL prints both as averages per loop).
fn rows_read(node: &serde_json::Value) -> f64 {
    let number = |key: &str| {
        node.get(key)
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(0.0)
    };
    let loops = number("Actual Loops").max(1.0);
    let own = (number("Actual Rows") + number("Rows Removed by Filter")) * loops;
    let children: f64 = node
        .get("Plans")
        .and_then(serde_json::Value::as_array)
        .map_or(0.0, |plans| plans.iter().map(rows_read).sum());
    own + children
}

async fn claim_in_scenario<S: webhook_ports::DeliveryQueue>(store: &S) -> Vec<String> {
    let claimed = store
        .claim_due(
            &webhook_ports::LeaseOwner("t".to_owned()),
            &isolation_claim(),
        )
        .await
        .unwrap();
    claimed
        .iter()
        .map(|c| c.delivery.id().to_string())
        .collect()
}

/// A claim reads what it takes, whatever other targets hold waiting: with 200,000 unfinished
/// deliveries of a skipped target and of an ordered one blocked behind its first, claiming the
/// one delivery of another tenant reads a few rows, not the backlogs; so does the next due
/// time. The count is PostgreSQL's own, from `EXPLAIN ANALYZE`.
#[tokio::test]
async fn postgres_claims_never_walk_other_targets_backlogs() {
    let Some(schema) = PgTestSchema::create().await else {
        return;
    };
    let store = PgStore::connect(&schema.url(), 2).await.unwrap();
    store.migrate().await.unwrap();
    let mut conn = AsyncPgConnection::establish(&schema.url()).await.unwrap();
    conn.batch_execute(&backlog_sql(Dialect::Postgres))
        .await
        .unwrap();
    for (name, plan) in store
        .explain_analyze_claim(&isolation_claim())
        .await
        .unwrap()
    {
        let read = rows_read(&plan[0]["Plan"]);
        assert!(
            read < 1_000.0,
            "PostgreSQL: the {name} read {read} rows with 200,000 waiting elsewhere:\n{plan:#}"
        );
    }
    assert_eq!(claim_in_scenario(&store).await, [B_DELIVERY]);
    drop(store);
}

/// SQLite's claim steps each search an index for one target, never scan: with the same 200,000
/// rows loaded, each step's plan reads deliveries through an index with the target's id bound,
/// and the claim finds the one delivery of the other tenant.
#[tokio::test]
async fn sqlite_claims_never_walk_other_targets_backlogs() {
    let (_dir, store) = sqlite_loaded(&backlog_sql(Dialect::Sqlite)).await;
    let (wallet, event, _, before) = arguments();
    let plans = store
        .explain_hot_queries(wallet, event, hook(DOWN), before)
        .await
        .unwrap();
    let steps: Vec<_> = plans
        .iter()
        .filter(|(name, _)| name.starts_with("claim"))
        .collect();
    assert_eq!(steps.len(), 4, "{plans:?}");
    for (name, plan) in steps {
        assert!(
            plan.contains("SEARCH deliveries USING") && plan.contains("(webhook_id"),
            "SQLite: {name} does not search by target:\n{plan}"
        );
        assert!(
            !plan.contains("SCAN deliveries"),
            "SQLite: {name} scans:\n{plan}"
        );
    }
    assert_eq!(claim_in_scenario(&store).await, [B_DELIVERY]);
}

/// The console's reads in the loaded data: a page of the search deep in the wallet (after
/// delivery 25,000 of 50,000), by each filter and none; a webhook (all of whose 500 deliveries
/// are the wallet's) for the search by webhook and for its stats; the rare event type.
fn console_arguments() -> (
    WalletId,
    WebhookId,
    &'static str,
    webhook_ports::SearchPosition,
) {
    (
        WalletId::from_uuid(Uuid::parse_str(WALLET).unwrap()),
        hook("c0000000-0000-4000-8000-000000000011"),
        "load.rare",
        webhook_ports::SearchPosition {
            created_at: time::OffsetDateTime::from_unix_timestamp_nanos(25_000_000).unwrap(),
            id: webhook_domain::DeliveryId::from_uuid(
                Uuid::parse_str("d0000000-0000-4000-8000-000000025000").unwrap(),
            ),
        },
    )
}

/// SQLite keeps its planner's statistics up to date itself: a database that was empty when
/// the store opened (a fresh install) and filled up afterwards gets them at the store's next
/// upkeep, without a restart, and the event type search then starts from its index. Without
/// statistics SQLite drives that search from the wallet's deliveries and sorts them all (2.4 s
/// on 1,000,000 rows).
#[tokio::test]
async fn sqlite_statistics_follow_the_data_without_a_restart() {
    let (_dir, store) = sqlite_loaded(&load_sql(Dialect::Sqlite).replace("ANALYZE;", "")).await;
    let (wallet, webhook, kind, cursor) = console_arguments();

    store.refresh_statistics().await.unwrap();

    let plans = store
        .explain_console_queries(wallet, webhook, kind, cursor)
        .await
        .unwrap();
    let by_type = &plans
        .iter()
        .find(|(n, _)| n == "search by event type, first page")
        .unwrap()
        .1;
    assert!(by_type.contains("events_by_type"), "{by_type}");
    assert!(
        !by_type.contains("USE TEMP B-TREE FOR ORDER BY"),
        "{by_type}"
    );
}

/// SQLite: the console's reads search indexes; none scans deliveries, events or attempts, and
/// none sorts what it read as a whole: the search's order comes from the index, and only rows
/// sharing a creation time are put in id order (`RIGHT PART OF ORDER BY`).
#[tokio::test]
async fn sqlite_console_queries_search_indexes() {
    let (_dir, store) = sqlite_loaded(&load_sql(Dialect::Sqlite)).await;
    let (wallet, webhook, kind, cursor) = console_arguments();
    let plans = store
        .explain_console_queries(wallet, webhook, kind, cursor)
        .await
        .unwrap();
    assert_eq!(plans.len(), 14, "{plans:?}");
    for (name, plan) in &plans {
        for pattern in [
            "SCAN deliveries",
            "SCAN events",
            "SCAN attempts",
            "SCAN d",
            "SCAN e",
        ] {
            assert!(
                !plan.lines().any(|l| l.trim_start().starts_with(pattern)),
                "SQLite: {name} scans a whole table:\n{plan}"
            );
        }
        assert!(
            !plan.contains("USE TEMP B-TREE FOR ORDER BY"),
            "SQLite: {name} sorts all it read:\n{plan}"
        );
        assert!(!plan.contains("ANY("), "SQLite: {name} skip-scans:\n{plan}");
        println!("SQLite {name}:\n{plan}\n");
    }
    let index_of = |name: &str| &plans.iter().find(|(n, _)| n == name).unwrap().1;
    assert!(index_of("search by state, before the cursor").contains("deliveries_by_state"));
    assert!(index_of("search by event type, before the cursor").contains("events_by_type"));
    assert!(index_of("webhook stats").contains("attempts_by_webhook"));
    assert!(index_of("attempts of the last minute").contains("attempts_by_started_at"));
}

/// Each node of a PostgreSQL JSON plan, depth first.
fn plan_nodes(node: &serde_json::Value) -> Vec<&serde_json::Value> {
    let mut nodes = vec![node];
    if let Some(children) = node.get("Plans").and_then(serde_json::Value::as_array) {
        for child in children {
            nodes.extend(plan_nodes(child));
        }
    }
    nodes
}

/// PostgreSQL, counted by `EXPLAIN ANALYZE`: a search page deep in a wallet of 25,000
/// deliveries reads fewer than 1,000 rows, by each filter and none, with no sequential scan and
/// no sort of what it read (an incremental sort puts rows sharing a creation time in id order);
/// the stats of a webhook read its attempts of the window through `attempts_by_webhook`.
#[tokio::test]
async fn postgres_console_queries_read_a_page_not_the_wallet() {
    let Some(schema) = PgTestSchema::create().await else {
        return;
    };
    let store = PgStore::connect(&schema.url(), 1).await.unwrap();
    store.migrate().await.unwrap();
    let mut conn = AsyncPgConnection::establish(&schema.url()).await.unwrap();
    conn.batch_execute(&load_sql(Dialect::Postgres))
        .await
        .unwrap();
    let (wallet, webhook, kind, cursor) = console_arguments();
    let plans = store
        .explain_console_queries(wallet, webhook, kind, cursor)
        .await
        .unwrap();
    assert_eq!(plans.len(), 14, "{plans:?}");
    for (name, plan) in &plans {
        let root = &plan[0]["Plan"];
        for node in plan_nodes(root) {
            let kind = node["Node Type"].as_str().unwrap_or_default();
            assert!(
                kind != "Seq Scan",
                "PostgreSQL: {name} has a {kind}:\n{plan:#}"
            );
            // Only the rows sharing the cursor's creation time are sorted as a whole.
            assert!(
                kind != "Sort" || name.contains("ties of the cursor"),
                "PostgreSQL: {name} has a {kind}:\n{plan:#}"
            );
        }
        let read = rows_read(root);
        println!(
            "PostgreSQL {name}: {read} rows read, {} ms",
            plan[0]["Execution Time"]
        );
        // The count of the last minute's attempts reads them all: here, half the table.
        if name != "attempts of the last minute" {
            assert!(
                read < 1_000.0,
                "PostgreSQL: the {name} read {read} rows:\n{plan:#}"
            );
        }
    }
    drop(store);
}

/// MySQL and MariaDB: no console read takes a whole table or index (`ALL`, `index`); the
/// search's pages come in index order, without a filesort, except by event type (see
/// `docs/api.md`). On MariaDB, `ANALYZE` counts what each read: fewer than 1,000 rows but
/// for the last minute's count.
#[tokio::test]
async fn mysql_console_queries_use_indexes() {
    let Some(database) = MysqlTestDatabase::create().await else {
        return;
    };
    let store = MysqlStore::connect(&database.url(), 1).await.unwrap();
    store.migrate().await.unwrap();
    let mut conn = AsyncMysqlConnection::establish(&database.url())
        .await
        .unwrap();
    conn.batch_execute(&load_sql(Dialect::Mysql)).await.unwrap();
    let (wallet, webhook, kind, cursor) = console_arguments();
    let plans = store
        .explain_console_queries("EXPLAIN FORMAT=JSON ", wallet, webhook, kind, cursor)
        .await
        .unwrap();
    assert_eq!(plans.len(), 14, "{plans:?}");
    for (name, plan) in &plans {
        assert_mysql_reads_no_whole_table(name, plan);
        println!("MySQL {name}:\n{plan}\n");
        if name.starts_with("search") && !name.starts_with("search by event type") {
            assert!(
                !plan.contains("\"using_filesort\": true") && !plan.contains("\"filesort\""),
                "MySQL: {name} sorts what it read:\n{plan}"
            );
        }
    }
    if let Ok(analysed) = store
        .explain_console_queries("ANALYZE FORMAT=JSON ", wallet, webhook, kind, cursor)
        .await
    {
        for (name, plan) in &analysed {
            if name == "attempts of the last minute" {
                continue;
            }
            // A table never reached (after an empty read) has no count: infinite here.
            for read in mysql_table_reads(plan)
                .into_iter()
                .filter(|r| r.rows.is_finite())
            {
                println!("MariaDB {name}: {} rows of {}", read.rows, read.table);
                assert!(
                    read.rows < 1_000.0,
                    "MariaDB: the {name} read {} rows of {}:\n{plan}",
                    read.rows,
                    read.table
                );
            }
        }
    } else {
        assert!(
            !mariadb(&database).await,
            "MariaDB refused ANALYZE FORMAT=JSON"
        );
    }
}
