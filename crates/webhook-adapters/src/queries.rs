//! The hot queries that both SQL adapters build the same way, as macros so that each backend
//! infers its own query type: the delivery listing, the backlog, the candidates of a pruning
//! batch, a publish's targets and a redelivery job's deliveries. Under the `testing` feature,
//! [`Explain`] runs any query under `EXPLAIN`, so tests can check that these (and the claim)
//! use indexes.

/// The wallet's deliveries matching a `DeliveryFilter`, oldest first, one page.
macro_rules! deliveries_listing {
    ($wallet:expr, $filter:expr, $page:expr) => {{
        let filter: &webhook_ports::DeliveryFilter = $filter;
        let page: webhook_ports::Page = $page;
        let mut query = deliveries::table
            .filter(deliveries::wallet_id.eq($crate::sql_id::sql_id($wallet)))
            .into_boxed();
        if let Some(event) = filter.event_id {
            query = query.filter(deliveries::event_id.eq($crate::sql_id::sql_id(event)));
        }
        if let Some(webhook) = filter.webhook_id {
            query = query.filter(deliveries::webhook_id.eq($crate::sql_id::sql_id(webhook)));
        }
        if let Some(state) = filter.state {
            query = query.filter(deliveries::state.eq(state.as_str()));
        }
        query
            .order((deliveries::created_at, deliveries::id))
            .offset($crate::rows::offset(page))
            .limit(i64::from(page.limit))
            .select(delivery_select!())
    }};
}
pub(crate) use deliveries_listing;

/// Which part of a search's order a statement reads: everything, the rows sharing the cursor's
/// creation time after it (smaller ids), or the rows created before the cursor. A page after a
/// cursor reads the second, then the third for what is still missing: two plain index ranges,
/// where `(created_at, id) < (c, i)` in one statement is not one on every planner (MariaDB
/// reads the wallet's index from its end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SearchRange {
    All,
    TiesAfter(webhook_ports::SearchPosition),
    Before(time::OffsetDateTime),
}

/// Narrows the boxed search `$query` to the filters of `$search` and the part `$range` of the
/// order, with `$created_at` the creation time the order follows (the delivery's, or its
/// event's, which is the same time: both are written by the publish).
macro_rules! narrow_search {
    ($query:ident, $search:expr, $range:expr, $created_at:path) => {
        if let Some(state) = $search.state {
            $query = $query.filter(deliveries::state.eq(state.as_str()));
        }
        if let Some(webhook) = $search.webhook_id {
            $query = $query.filter(deliveries::webhook_id.eq($crate::sql_id::sql_id(webhook)));
        }
        if let Some(since) = $search.since {
            $query = $query.filter($created_at.ge($crate::rows::micros(since)));
        }
        if let Some(until) = $search.until {
            $query = $query.filter($created_at.lt($crate::rows::micros(until)));
        }
        match $range {
            $crate::queries::SearchRange::All => {}
            $crate::queries::SearchRange::TiesAfter(after) => {
                $query = $query
                    .filter($created_at.eq($crate::rows::micros(after.created_at)))
                    .filter(deliveries::id.lt($crate::sql_id::sql_id(after.id)));
            }
            $crate::queries::SearchRange::Before(at) => {
                $query = $query.filter($created_at.lt($crate::rows::micros(at)));
            }
        }
    };
}
pub(crate) use narrow_search;

/// One page of the wallet's deliveries matching a `DeliverySearch` without an event type, in
/// `$range` (a [`SearchRange`]), at most `$limit`, newest first (creation time, then id, both
/// descending), each with its creation time: one range of one index of deliveries, by state
/// `deliveries_by_state`, by webhook `deliveries_by_webhook`, otherwise
/// `deliveries_by_wallet`. Their events' types are read afterwards for the page only
/// ([`event_types_of_page`]): joined here, SQLite's planner drives the join from events and
/// sorts the whole wallet. Rows sharing a creation time are put in id order among themselves
/// only (PostgreSQL's incremental sort, SQLite's sort of the right part of the order, InnoDB's
/// secondary indexes ending with the primary key).
macro_rules! deliveries_search {
    ($wallet:expr, $search:expr, $range:expr, $limit:expr) => {{
        let search: &webhook_ports::DeliverySearch = $search;
        let mut query = deliveries::table
            .filter(deliveries::wallet_id.eq($crate::sql_id::sql_id($wallet)))
            .into_boxed();
        $crate::queries::narrow_search!(query, search, $range, deliveries::created_at);
        query
            .order((deliveries::created_at.desc(), deliveries::id.desc()))
            .limit(i64::from($limit))
            .select((delivery_select!(), deliveries::created_at))
    }};
}
pub(crate) use deliveries_search;

/// The types of the events `$ids` (id texts) of the wallet `$wallet`, by primary key: for the
/// page of [`deliveries_search`].
macro_rules! event_types_of_page {
    ($wallet:expr, $ids:expr) => {
        events::table
            .filter(events::wallet_id.eq($crate::sql_id::sql_id($wallet)))
            .filter(events::id.eq_any($crate::sql_id::sql_ids($ids)))
            .select((events::id, events::event_type))
    };
}
pub(crate) use event_types_of_page;

/// [`deliveries_search`] with an event type: the wallet's events of that type newest first
/// (`events_by_type`, a range), each joined to its deliveries through `deliveries_by_event`.
/// A delivery is created in its event's publish, at the same time, so the events' creation
/// time stands for the deliveries' in the range and the order; the other filters apply to the
/// deliveries joined.
macro_rules! deliveries_search_by_type {
    ($wallet:expr, $search:expr, $event_type:expr, $range:expr, $limit:expr) => {{
        use diesel::{BoolExpressionMethods, JoinOnDsl};
        let search: &webhook_ports::DeliverySearch = $search;
        let event_type: &webhook_domain::EventType = $event_type;
        let wallet = $crate::sql_id::sql_id($wallet);
        let mut query = events::table
            .inner_join(
                deliveries::table.on(deliveries::wallet_id
                    .eq(events::wallet_id)
                    .and(deliveries::event_id.eq(events::id))),
            )
            .filter(events::wallet_id.eq(wallet.clone()))
            .filter(events::event_type.eq(event_type.as_str().to_owned()))
            .filter(deliveries::wallet_id.eq(wallet))
            .into_boxed();
        $crate::queries::narrow_search!(query, search, $range, events::created_at);
        query
            .order((events::created_at.desc(), deliveries::id.desc()))
            .limit(i64::from($limit))
            .select((delivery_select!(), deliveries::created_at))
    }};
}
pub(crate) use deliveries_search_by_type;

/// The number of the webhook `$webhook`'s (id text) unfinished deliveries, read in the index of
/// unfinished rows by target.
macro_rules! webhook_backlog {
    ($webhook:expr) => {
        deliveries::table
            .filter(deliveries::webhook_id.eq($crate::sql_id::sql_id($webhook)))
            .filter(deliveries::due_at.is_not_null())
            .select(diesel::dsl::count_star())
    };
}
pub(crate) use webhook_backlog;

/// The attempts of a webhook per bucket of a window, as an SQL statement: the bucket's number
/// (from 0), its attempts, those that succeeded (a response from 200 to 299, or `accepted`),
/// their durations added up and the longest, grouped in one range read of
/// `attempts_by_webhook`. Its parameters, in the order they appear (MySQL's `?` are bound in
/// that order): the window's start and the bucket length (microseconds), the webhook, the
/// window's start and end. `placeholder(n)` spells the n-th (from 1), `div` the integer
/// division and `int` the 64-bit integer type of a `CAST` on the backend.
pub(crate) fn stats_sql(placeholder: impl Fn(usize) -> String, div: &str, int: &str) -> String {
    let response = webhook_domain::DetailKind::Response.as_str();
    let accepted = webhook_domain::DetailKind::Accepted.as_str();
    format!(
        "SELECT CAST((started_at - {p1}) {div} {p2} AS {int}) AS bucket, \
                CAST(COUNT(*) AS {int}) AS attempts, \
                CAST(SUM(CASE WHEN (outcome = '{response}' AND status_code BETWEEN 200 AND 299) \
                               OR outcome = '{accepted}' THEN 1 ELSE 0 END) AS {int}) AS succeeded, \
                CAST(SUM(duration_us) AS {int}) AS total_us, \
                CAST(MAX(duration_us) AS {int}) AS max_us \
         FROM attempts \
         WHERE webhook_id = {p3} AND started_at >= {p4} AND started_at < {p5} \
         GROUP BY bucket",
        p1 = placeholder(1),
        p2 = placeholder(2),
        p3 = placeholder(3),
        p4 = placeholder(4),
        p5 = placeholder(5),
    )
}

/// One bucket's row of [`stats_sql`].
#[derive(Debug, diesel::QueryableByName)]
pub(crate) struct StatsRow {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub(crate) bucket: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub(crate) attempts: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub(crate) succeeded: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub(crate) total_us: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub(crate) max_us: i64,
}

/// Binds [`stats_sql`]'s parameters for `webhook` (id text) and `window`.
macro_rules! bind_stats {
    ($statement:expr, $webhook:expr, $window:expr) => {{
        use diesel::sql_types::BigInt;
        let window: &webhook_ports::StatsWindow = $window;
        let since = $crate::rows::micros(window.since);
        $statement
            .bind::<BigInt, _>(since)
            .bind::<BigInt, _>($crate::rows::duration_micros(window.bucket).max(1))
            .bind::<$crate::sql_id::Id, _>($crate::sql_id::sql_id($webhook))
            .bind::<BigInt, _>(since)
            .bind::<BigInt, _>($crate::rows::micros(window.until()))
    }};
}
pub(crate) use bind_stats;

/// The buckets of a window from [`stats_sql`]'s rows: every bucket present, empty ones zero.
pub(crate) fn stats_buckets(
    rows: Vec<StatsRow>,
    window: &webhook_ports::StatsWindow,
) -> Result<Vec<webhook_ports::AttemptStats>, crate::rows::AdapterError> {
    use crate::rows::AdapterError;
    let count = |n: i64| u64::try_from(n).map_err(AdapterError::corrupt);
    let micros = |n: i64| {
        u64::try_from(n)
            .map(std::time::Duration::from_micros)
            .map_err(AdapterError::corrupt)
    };
    let mut buckets = vec![webhook_ports::AttemptStats::default(); window.buckets as usize];
    for row in rows {
        let slot = usize::try_from(row.bucket)
            .ok()
            .and_then(|i| buckets.get_mut(i))
            .ok_or_else(|| AdapterError::corrupt(format!("bucket {} of none", row.bucket)))?;
        *slot = webhook_ports::AttemptStats {
            attempts: count(row.attempts)?,
            succeeded: count(row.succeeded)?,
            total_duration: micros(row.total_us)?,
            max_duration: Some(micros(row.max_us)?),
        };
    }
    Ok(buckets)
}

/// The deliveries of the webhook `$webhook` (id text) that [`cancel_unleased`] cancels at
/// `$now` (an `OffsetDateTime`), as a filtered `deliveries` table: unfinished, of a kind in
/// [`webhook_domain::CANCELLED_WITH_TARGET`], and held by no lease live at `$now`. MySQL reads
/// their ids first and cancels them by primary key (see its `cancel_deliveries_of`).
macro_rules! unleased_of {
    ($webhook:expr, $now:expr) => {{
        let now = $crate::rows::micros($now);
        let cancellable = webhook_domain::CANCELLED_WITH_TARGET.map(|kind| kind.as_str());
        deliveries::table
            .filter(deliveries::webhook_id.eq($crate::sql_id::sql_id($webhook)))
            .filter(deliveries::due_at.is_not_null())
            .filter(deliveries::state.eq_any(cancellable))
            .filter(
                deliveries::state
                    .ne(webhook_domain::DeliveryStateKind::InFlight.as_str())
                    .or(deliveries::due_at.le(now)),
            )
    }};
}
pub(crate) use unleased_of;

/// Cancels, as `$reason` (a [`webhook_domain::CancelReason`]) at `$now` (an
/// `OffsetDateTime`), the deliveries of the webhook `$webhook` (id text) that the domain's rule
/// cancels when a target goes away ([`webhook_domain::Delivery::cancel_with_target`]): those of
/// a kind in [`webhook_domain::CANCELLED_WITH_TARGET`] that no lease live at `$now` holds
/// ([`webhook_domain::DeliveryState::is_held_at`]: in flight with a due time, its lease's end,
/// after now). They get the columns of the domain's cancelled state. A delivery in flight is
/// left to its holder, whose outcome or release comes next; what it leaves unfinished is
/// cancelled by a later call, or by a claim that meets the target deleted or disabled.
///
/// `due_at IS NOT NULL` says "unfinished" once more, in the form the index of unfinished rows
/// (`deliveries_due_by_target`) is declared with, so that both planners use it.
macro_rules! cancel_unleased {
    ($webhook:expr, $reason:expr, $now:expr) => {{
        let at: time::OffsetDateTime = $now;
        let cancelled = $crate::rows::state_columns(webhook_domain::DeliveryState::Cancelled {
            at,
            reason: $reason,
        });
        diesel::update($crate::queries::unleased_of!($webhook, at)).set((
            deliveries::state.eq(cancelled.state),
            deliveries::due_at.eq(cancelled.due_at),
            deliveries::lease_owner.eq(None::<String>),
            deliveries::final_at.eq(cancelled.final_at),
            deliveries::cancel_reason.eq(cancelled.cancel_reason),
        ))
    }};
}
pub(crate) use cancel_unleased;

/// The latest end of a lease live at `$now` (microseconds) among the deliveries of the webhook
/// `$webhook` (id text) in flight, if any. Only rows due after now are read: for an ordered
/// target a row or two, for another at most what is in flight or scheduled later.
macro_rules! leased_until {
    ($webhook:expr, $now:expr) => {
        deliveries::table
            .filter(deliveries::webhook_id.eq($crate::sql_id::sql_id($webhook)))
            .filter(deliveries::due_at.gt($now))
            .filter(deliveries::state.eq(webhook_domain::DeliveryStateKind::InFlight.as_str()))
            .select(diesel::dsl::max(deliveries::due_at))
    };
}
pub(crate) use leased_until;

/// The number of deliveries claimable at `$now` (microseconds) and their earliest due time, in
/// one read of a partial index of unfinished rows (the `IS NOT NULL` lets both planners choose
/// it).
macro_rules! backlog {
    ($now:expr) => {
        deliveries::table
            .filter(deliveries::due_at.is_not_null())
            .filter(deliveries::due_at.le($now))
            .select((
                diesel::dsl::count_star(),
                diesel::dsl::min(deliveries::due_at),
            ))
    };
}
pub(crate) use backlog;

/// Up to `$limit` events (wallet and id) stored before `$before` (microseconds) whose
/// deliveries are all final, oldest first.
macro_rules! prune_candidates {
    ($before:expr, $limit:expr) => {
        events::table
            .filter(events::created_at.lt($before))
            .filter(diesel::dsl::not(diesel::dsl::exists(
                deliveries::table
                    .filter(deliveries::wallet_id.eq(events::wallet_id))
                    .filter(deliveries::event_id.eq(events::id))
                    .filter(deliveries::due_at.is_not_null()),
            )))
            .order(events::created_at)
            .limit(i64::from($limit))
            .select((events::wallet_id, events::id))
    };
}
pub(crate) use prune_candidates;

/// The webhooks a publish in `$wallet` (id text) may deliver to: the wallet's live, enabled
/// webhooks and the global one. Each publish transaction reads them once per wallet.
macro_rules! publish_targets {
    ($wallet:expr) => {
        webhooks::table
            .filter(webhooks::deleted_at.is_null())
            .filter(webhooks::enabled.eq(true))
            .filter(
                webhooks::wallet_id
                    .eq($crate::sql_id::sql_id($wallet))
                    .or(webhooks::wallet_id.is_null()),
            )
            .select(webhook_select!())
    };
}
pub(crate) use publish_targets;

/// The deliveries a redelivery job (a [`crate::rows::JobWindow`]) matches: its wallet's
/// deliveries to its webhook created in `[since, until)` that are exhausted and became so
/// before the job was created, oldest first. The last condition keeps the job finite: a
/// delivery it requeued that is exhausted again is not taken again.
///
/// The state is an SQL literal, not a bound parameter, so that both planners can prove the
/// predicate of the partial index `deliveries_exhausted_by_webhook` and read only exhausted
/// rows instead of every delivery in the window.
macro_rules! redelivery_candidates {
    ($window:expr) => {{
        let window: &$crate::rows::JobWindow = $window;
        deliveries::table
            .filter(deliveries::webhook_id.eq($crate::sql_id::sql_id(window.webhook_id.clone())))
            .filter(deliveries::state.eq($crate::queries::exhausted_literal()))
            .filter(deliveries::created_at.ge(window.since))
            .filter(deliveries::created_at.lt(window.until))
            .filter(deliveries::wallet_id.eq($crate::sql_id::sql_id(window.wallet_id.clone())))
            .filter(deliveries::final_at.lt(window.created_at))
    }};
}
pub(crate) use redelivery_candidates;

/// Up to `$limit` of the deliveries a redelivery job matches, oldest first: one step's batch.
macro_rules! redelivery_batch {
    ($window:expr, $limit:expr) => {
        redelivery_candidates!($window)
            .order(deliveries::created_at)
            .limit(i64::from($limit))
            .select(delivery_select!())
    };
}
pub(crate) use redelivery_batch;

/// `'exhausted'` as an SQL literal (see [`redelivery_candidates`]). The state name is a plain
/// lower-case word, so quoting it needs no escaping.
pub(crate) fn exhausted_literal() -> diesel::expression::SqlLiteral<diesel::sql_types::Text> {
    let name = webhook_domain::DeliveryStateKind::Exhausted.as_str();
    debug_assert!(name.bytes().all(|b| b.is_ascii_lowercase()));
    diesel::dsl::sql::<diesel::sql_types::Text>(&format!("'{name}'"))
}

#[cfg(feature = "testing")]
pub(crate) use explain::{Explain, console_searches, console_stats_window, listing_filters};

#[cfg(feature = "testing")]
mod explain {
    use std::marker::PhantomData;

    use diesel::backend::Backend;
    use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};

    /// `query` prefixed by `prefix` (`EXPLAIN ` or `EXPLAIN QUERY PLAN `), returning rows of
    /// `ST`.
    #[derive(Debug)]
    pub(crate) struct Explain<Q, ST> {
        pub(crate) prefix: &'static str,
        pub(crate) query: Q,
        pub(crate) rows: PhantomData<ST>,
    }

    impl<Q, ST> Explain<Q, ST> {
        pub(crate) fn new(prefix: &'static str, query: Q) -> Self {
            Self {
                prefix,
                query,
                rows: PhantomData,
            }
        }
    }

    impl<DB: Backend, Q: QueryFragment<DB>, ST> QueryFragment<DB> for Explain<Q, ST> {
        fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> diesel::QueryResult<()> {
            out.unsafe_to_cache_prepared();
            out.push_sql(self.prefix);
            self.query.walk_ast(out.reborrow())
        }
    }

    impl<Q, ST> QueryId for Explain<Q, ST> {
        type QueryId = ();
        const HAS_STATIC_QUERY_ID: bool = false;
    }

    impl<Q, ST> Query for Explain<Q, ST> {
        type SqlType = ST;
    }

    impl<Q, ST, C> diesel::RunQueryDsl<C> for Explain<Q, ST> {}

    /// The console's searches whose plans are checked: each filter alone and none, each
    /// after `cursor` (a page deep in the wallet's deliveries) in both of the statements a page
    /// after a cursor runs (ties, then older), and the first page and a time window without
    /// one; with the range each reads.
    pub(crate) fn console_searches(
        webhook: webhook_domain::WebhookId,
        event_type: &str,
        cursor: webhook_ports::SearchPosition,
    ) -> Vec<(String, webhook_ports::DeliverySearch, super::SearchRange)> {
        use super::SearchRange;
        use webhook_ports::DeliverySearch;
        let none = DeliverySearch {
            state: None,
            event_type: None,
            webhook_id: None,
            since: None,
            until: None,
            after: Some(cursor),
            limit: 51,
        };
        let filters = [
            ("search", none.clone()),
            (
                "search by state",
                DeliverySearch {
                    state: Some(webhook_domain::DeliveryStateKind::Delivered),
                    ..none.clone()
                },
            ),
            (
                "search by event type",
                DeliverySearch {
                    event_type: webhook_domain::EventType::parse(event_type).ok(),
                    ..none.clone()
                },
            ),
            (
                "search by webhook",
                DeliverySearch {
                    webhook_id: Some(webhook),
                    ..none.clone()
                },
            ),
        ];
        let mut searches = Vec::new();
        for (name, search) in filters {
            searches.push((
                format!("{name}, ties of the cursor"),
                search.clone(),
                SearchRange::TiesAfter(cursor),
            ));
            searches.push((
                format!("{name}, before the cursor"),
                search,
                SearchRange::Before(cursor.created_at),
            ));
        }
        searches.push((
            "search, first page".to_owned(),
            none.clone(),
            SearchRange::All,
        ));
        searches.push((
            "search by event type, first page".to_owned(),
            DeliverySearch {
                event_type: webhook_domain::EventType::parse(event_type).ok(),
                after: None,
                ..none.clone()
            },
            SearchRange::All,
        ));
        searches.push((
            "search by time".to_owned(),
            DeliverySearch {
                since: Some(cursor.created_at - time::Duration::seconds(1)),
                until: Some(cursor.created_at + time::Duration::seconds(1)),
                ..none
            },
            SearchRange::All,
        ));
        searches
    }

    /// The stats window whose plan is checked: 24 hours before `until`, in hours.
    pub(crate) fn console_stats_window(until: time::OffsetDateTime) -> webhook_ports::StatsWindow {
        webhook_ports::StatsWindow {
            since: until - time::Duration::hours(24),
            bucket: std::time::Duration::from_secs(3600),
            buckets: 24,
        }
    }

    /// The delivery listings whose plans are checked: by wallet, event and webhook.
    pub(crate) fn listing_filters(
        event: webhook_domain::EventId,
        webhook: webhook_domain::WebhookId,
    ) -> [(&'static str, webhook_ports::DeliveryFilter); 3] {
        use webhook_ports::DeliveryFilter;
        [
            ("list by wallet", DeliveryFilter::default()),
            (
                "list by event",
                DeliveryFilter {
                    event_id: Some(event),
                    ..DeliveryFilter::default()
                },
            ),
            (
                "list by webhook",
                DeliveryFilter {
                    webhook_id: Some(webhook),
                    ..DeliveryFilter::default()
                },
            ),
        ]
    }
}
