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
pub(crate) use explain::{Explain, listing_filters};

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
