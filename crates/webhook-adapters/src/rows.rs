//! Translation between domain values and column values, shared by the SQL adapters: times as
//! microseconds since the epoch, ids as hyphenated UUID text (bound as [`SqlId`], which
//! PostgreSQL stores as `uuid`), structured settings as JSON text.

use std::collections::HashMap;
use std::time::Duration;

use diesel::prelude::*;
use thiserror::Error;
use time::OffsetDateTime;
use webhook_domain::{
    ApiKeyHash, ApiKeyTag, AttemptDetail, CancelReason, CustomHeaders, Delivery, DeliveryId,
    DeliveryState, DeliveryStateKind, EarlierPublish, Entity, Event, EventType, EventTypeFilter,
    JobState, JobStopReason, RateLimit, RedeliveryJob, Repeat, RetryPolicy, SigningKeys, Timestamp,
    Wallet, WalletId, WalletName, Webhook, WebhookScope, WebhookUrl,
};
use webhook_ports::{Backlog, Idempotency, Page, Published, RecentAttempts};

use crate::schema::{
    admin_token, attempts, deliveries, entities, events, redelivery_jobs, webhooks,
};
use crate::sql_id::{SqlId, sql_id};

/// What went wrong inside an adapter, before it is translated into a port's error (by
/// [`crate::port_errors::Classified`], once the backend has classified a driver error).
#[derive(Debug, Error)]
pub(crate) enum AdapterError {
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("limit of {0} reached")]
    LimitReached(u32),
    /// A compare-and-set found another revision than the one it was given.
    #[error("the row changed since it was read")]
    Stale,
    #[error("a stored row is invalid: {0}")]
    Corrupt(String),
    #[error("the connection pool gave no connection: {0}")]
    Unavailable(String),
    /// A bulk write found rows that a concurrent transaction had just stored; the caller
    /// redoes the work on its careful path.
    #[error("a concurrent transaction stored some of the same rows")]
    Raced,
    #[cfg(feature = "testing")]
    #[error("injected fault")]
    Injected,
    #[error(transparent)]
    Db(#[from] diesel::result::Error),
}

impl AdapterError {
    pub(crate) fn corrupt(what: impl std::fmt::Display) -> Self {
        AdapterError::Corrupt(what.to_string())
    }
}

/// Why a delivery of a deleted or disabled webhook is not requeued.
pub(crate) const TARGET_NOT_LIVE: &str = "the webhook of this delivery is deleted or disabled";

/// Microseconds since the epoch.
pub(crate) fn micros(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)
}

pub(crate) fn from_micros(us: i64) -> Result<OffsetDateTime, AdapterError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1_000).map_err(AdapterError::corrupt)
}

pub(crate) fn parse_id<T: std::str::FromStr>(text: &str) -> Result<T, AdapterError> {
    text.parse()
        .map_err(|_| AdapterError::corrupt(format_args!("invalid id {text:?}")))
}

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, AdapterError> {
    serde_json::from_str(text).map_err(AdapterError::corrupt)
}

/// The columns that hold a delivery's state.
#[derive(Debug)]
pub(crate) struct StateColumns {
    pub(crate) state: &'static str,
    pub(crate) due_at: Option<i64>,
    pub(crate) final_at: Option<i64>,
    pub(crate) cancel_reason: Option<&'static str>,
}

pub(crate) fn state_columns(state: DeliveryState) -> StateColumns {
    let (due_at, final_at, cancel_reason) = match state {
        DeliveryState::Pending { due } => (Some(due), None, None),
        DeliveryState::InFlight { leased_until, .. } => (Some(leased_until), None, None),
        DeliveryState::RetryScheduled { at } => (Some(at), None, None),
        DeliveryState::Delivered { at } | DeliveryState::Exhausted { at } => (None, Some(at), None),
        DeliveryState::Cancelled { at, reason } => (None, Some(at), Some(reason.as_str())),
    };
    StateColumns {
        state: state.kind().as_str(),
        due_at: due_at.map(micros),
        final_at: final_at.map(micros),
        cancel_reason,
    }
}

/// A delivery's columns, as read.
#[derive(Debug)]
pub(crate) struct DeliveryColumns<'a> {
    pub(crate) id: &'a str,
    pub(crate) event_id: &'a str,
    pub(crate) webhook_id: &'a str,
    pub(crate) state: &'a str,
    pub(crate) due_at: Option<i64>,
    pub(crate) attempts: i32,
    pub(crate) attempts_made: i32,
    pub(crate) final_at: Option<i64>,
    pub(crate) cancel_reason: Option<&'a str>,
    pub(crate) first_due: i64,
}

pub(crate) fn to_delivery(row: DeliveryColumns<'_>) -> Result<Delivery, AdapterError> {
    let missing =
        |what: &str| AdapterError::corrupt(format_args!("delivery {}: {what} missing", row.id));
    let attempts = u32::try_from(row.attempts).map_err(AdapterError::corrupt)?;
    let attempts_made = u32::try_from(row.attempts_made).map_err(AdapterError::corrupt)?;
    let due = || {
        row.due_at
            .ok_or_else(|| missing("due_at"))
            .and_then(from_micros)
    };
    let finished = || {
        row.final_at
            .ok_or_else(|| missing("final_at"))
            .and_then(from_micros)
    };
    let kind = DeliveryStateKind::parse(row.state)
        .ok_or_else(|| AdapterError::corrupt(format_args!("unknown state {:?}", row.state)))?;
    let state = match kind {
        DeliveryStateKind::Pending => DeliveryState::Pending { due: due()? },
        DeliveryStateKind::InFlight => DeliveryState::InFlight {
            attempt: attempts + 1,
            leased_until: due()?,
        },
        DeliveryStateKind::RetryScheduled => DeliveryState::RetryScheduled { at: due()? },
        DeliveryStateKind::Delivered => DeliveryState::Delivered { at: finished()? },
        DeliveryStateKind::Exhausted => DeliveryState::Exhausted { at: finished()? },
        DeliveryStateKind::Cancelled => DeliveryState::Cancelled {
            at: finished()?,
            reason: row
                .cancel_reason
                .and_then(CancelReason::parse)
                .ok_or_else(|| missing("cancel_reason"))?,
        },
    };
    Ok(Delivery::restore(
        parse_id(row.id)?,
        parse_id(row.event_id)?,
        parse_id(row.webhook_id)?,
        from_micros(row.first_due)?,
        attempts,
        attempts_made,
        state,
    ))
}

/// A webhook's columns, as stored.
#[derive(Debug)]
pub(crate) struct WebhookColumns {
    pub(crate) id: String,
    pub(crate) wallet_id: Option<String>,
    pub(crate) url: String,
    pub(crate) custom_headers: String,
    pub(crate) event_types: Option<String>,
    pub(crate) signing_keys: Option<String>,
    pub(crate) retry_policy: Option<String>,
    pub(crate) enabled: bool,
    pub(crate) ordered: bool,
    pub(crate) rate_limit: Option<i32>,
    pub(crate) created_at: i64,
    pub(crate) revision: i64,
}

pub(crate) fn webhook_columns(w: &Webhook) -> WebhookColumns {
    WebhookColumns {
        id: w.id.to_string(),
        wallet_id: match w.scope {
            WebhookScope::Wallet(wallet) => Some(wallet.to_string()),
            WebhookScope::Global => None,
        },
        url: w.url.as_str().to_owned(),
        custom_headers: to_json(&w.custom_headers),
        event_types: w.event_types.as_ref().map(to_json),
        signing_keys: w.signing_keys.as_ref().map(to_json),
        retry_policy: w.retry_policy.as_ref().map(to_json),
        enabled: w.enabled,
        ordered: w.ordered,
        rate_limit: w
            .rate_limit
            .map(|r| i32::try_from(r.get()).unwrap_or(i32::MAX)),
        created_at: micros(w.created_at),
        revision: revision_column(w.revision),
    }
}

/// A revision as stored (revisions start at 1 and grow by one a change: never near the limit).
pub(crate) fn revision_column(revision: u64) -> i64 {
    i64::try_from(revision).unwrap_or(i64::MAX)
}

pub(crate) fn to_webhook(row: WebhookColumns) -> Result<Webhook, AdapterError> {
    let scope = match &row.wallet_id {
        Some(wallet) => WebhookScope::Wallet(parse_id::<WalletId>(wallet)?),
        None => WebhookScope::Global,
    };
    Ok(Webhook {
        id: parse_id(&row.id)?,
        scope,
        url: WebhookUrl::parse_stored(&row.url).map_err(AdapterError::corrupt)?,
        custom_headers: from_json::<CustomHeaders>(&row.custom_headers)?,
        event_types: row
            .event_types
            .as_deref()
            .map(from_json::<EventTypeFilter>)
            .transpose()?,
        signing_keys: row
            .signing_keys
            .as_deref()
            .map(from_json::<SigningKeys>)
            .transpose()?,
        retry_policy: row
            .retry_policy
            .as_deref()
            .map(from_json::<RetryPolicy>)
            .transpose()?,
        enabled: row.enabled,
        ordered: row.ordered,
        rate_limit: row
            .rate_limit
            .map(|r| {
                u32::try_from(r)
                    .map_err(AdapterError::corrupt)
                    .and_then(|r| RateLimit::per_second(r).map_err(AdapterError::corrupt))
            })
            .transpose()?,
        created_at: from_micros(row.created_at)?,
        revision: u64::try_from(row.revision).map_err(AdapterError::corrupt)?,
    })
}

/// An outcome as (kind, status code): the kind by the domain's name for it.
pub(crate) fn outcome_columns(outcome: &AttemptDetail) -> (&'static str, Option<i32>) {
    (outcome.kind().as_str(), outcome.status().map(i32::from))
}

/// The outcome of a stored kind and status code. A status that no `u16` holds counts as
/// missing, which only a response needs.
pub(crate) fn to_outcome(kind: &str, status: Option<i32>) -> Result<AttemptDetail, AdapterError> {
    AttemptDetail::parse(kind, status.and_then(|s| u16::try_from(s).ok()))
        .map_err(AdapterError::corrupt)
}

pub(crate) fn duration_micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

// Row shapes shared by the SQL adapters: the columns each listing selects, as tuples, and
// their conversion into domain values.

pub(crate) fn is_unique_violation(e: &diesel::result::Error) -> bool {
    matches!(
        e,
        diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)
    )
}

/// Maps a unique violation to `Conflict(what)`, for inserts of rows whose id may be taken.
pub(crate) fn conflict_if_taken(
    what: String,
) -> impl FnOnce(diesel::result::Error) -> AdapterError {
    move |e| {
        if is_unique_violation(&e) {
            AdapterError::Conflict(what)
        } else {
            e.into()
        }
    }
}

pub(crate) fn is_foreign_key_violation(e: &diesel::result::Error) -> bool {
    matches!(
        e,
        diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::ForeignKeyViolation,
            _
        )
    )
}

pub(crate) fn to_wallet(
    (id, name, created, updated): (String, String, i64, i64),
) -> Result<Wallet, AdapterError> {
    Ok(Wallet {
        id: parse_id(&id)?,
        name: WalletName::new(&name).map_err(AdapterError::corrupt)?,
        created_at: from_micros(created)?,
        updated_at: from_micros(updated)?,
    })
}

/// The row of the backlog query: the number of due deliveries and the earliest due time.
pub(crate) fn to_backlog((due, oldest): (i64, Option<i64>)) -> Result<Backlog, AdapterError> {
    Ok(Backlog {
        due: u64::try_from(due).map_err(AdapterError::corrupt)?,
        oldest_due_at: oldest.map(from_micros).transpose()?,
    })
}

pub(crate) fn offset(page: Page) -> i64 {
    i64::try_from(page.offset).unwrap_or(i64::MAX)
}

pub(crate) type WebhookRow = (
    String,
    Option<String>,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    bool,
    bool,
    Option<i32>,
    i64,
    i64,
);

macro_rules! webhook_select {
    () => {
        (
            webhooks::id,
            webhooks::wallet_id,
            webhooks::url,
            webhooks::custom_headers,
            webhooks::event_types,
            webhooks::signing_keys,
            webhooks::retry_policy,
            webhooks::enabled,
            webhooks::ordered,
            webhooks::rate_limit,
            webhooks::created_at,
            webhooks::revision,
        )
    };
}
pub(crate) use webhook_select;

pub(crate) fn row_to_webhook(row: WebhookRow) -> Result<Webhook, AdapterError> {
    let (
        id,
        wallet_id,
        url,
        custom_headers,
        event_types,
        signing_keys,
        retry_policy,
        enabled,
        ordered,
        rate_limit,
        created_at,
        revision,
    ) = row;
    to_webhook(WebhookColumns {
        id,
        wallet_id,
        url,
        custom_headers,
        event_types,
        signing_keys,
        retry_policy,
        enabled,
        ordered,
        rate_limit,
        created_at,
        revision,
    })
}

pub(crate) type DeliveryRow = (
    String,
    String,
    String,
    String,
    Option<i64>,
    i32,
    Option<i64>,
    Option<String>,
    i64,
    i32,
);

macro_rules! delivery_select {
    () => {
        (
            deliveries::id,
            deliveries::event_id,
            deliveries::webhook_id,
            deliveries::state,
            deliveries::due_at,
            deliveries::attempts,
            deliveries::final_at,
            deliveries::cancel_reason,
            deliveries::first_due,
            deliveries::attempts_made,
        )
    };
}
pub(crate) use delivery_select;

pub(crate) fn row_to_delivery(row: &DeliveryRow) -> Result<Delivery, AdapterError> {
    to_delivery(DeliveryColumns {
        id: &row.0,
        event_id: &row.1,
        webhook_id: &row.2,
        state: &row.3,
        due_at: row.4,
        attempts: row.5,
        final_at: row.6,
        cancel_reason: row.7.as_deref(),
        first_due: row.8,
        attempts_made: row.9,
    })
}

/// A delivery found by a search: its columns and its creation time.
pub(crate) type SearchRow = (DeliveryRow, i64);

/// [`SearchRow`] as MySQL's search statement (plain SQL) returns it.
#[derive(Debug, QueryableByName)]
pub(crate) struct SearchRowByName {
    #[diesel(sql_type = crate::sql_id::Id)]
    id: String,
    #[diesel(sql_type = crate::sql_id::Id)]
    event_id: String,
    #[diesel(sql_type = crate::sql_id::Id)]
    webhook_id: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    state: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    due_at: Option<i64>,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    attempts: i32,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    final_at: Option<i64>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    cancel_reason: Option<String>,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    first_due: i64,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    attempts_made: i32,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    created_at: i64,
}

impl SearchRowByName {
    pub(crate) fn into_row(self) -> SearchRow {
        (
            (
                self.id,
                self.event_id,
                self.webhook_id,
                self.state,
                self.due_at,
                self.attempts,
                self.final_at,
                self.cancel_reason,
                self.first_due,
                self.attempts_made,
            ),
            self.created_at,
        )
    }
}

/// The event types read for a page of a search, by event id.
pub(crate) fn event_types(
    rows: Vec<(String, String)>,
) -> Result<HashMap<webhook_domain::EventId, EventType>, AdapterError> {
    rows.into_iter()
        .map(|(id, kind)| {
            Ok((
                parse_id(&id)?,
                EventType::parse(&kind).map_err(AdapterError::corrupt)?,
            ))
        })
        .collect()
}

/// A search's rows as found deliveries, each with its event's type by `type_of` (its event's
/// id); a delivery whose event has no type there is corrupt (an event outlives its deliveries).
pub(crate) fn rows_to_found(
    rows: Vec<SearchRow>,
    type_of: impl Fn(&webhook_domain::EventId) -> Option<EventType>,
) -> Result<Vec<webhook_ports::FoundDelivery>, AdapterError> {
    rows.iter()
        .map(|(row, created_at)| {
            let delivery = row_to_delivery(row)?;
            let event_type = type_of(&delivery.event_id()).ok_or_else(|| {
                AdapterError::corrupt(format!("delivery {} has no event", delivery.id()))
            })?;
            Ok(webhook_ports::FoundDelivery {
                delivery,
                event_type,
                created_at: from_micros(*created_at)?,
            })
        })
        .collect()
}

pub(crate) type EventRow = (String, String, String, i64, String);

macro_rules! event_select {
    () => {
        (
            events::id,
            events::wallet_id,
            events::event_type,
            events::ts,
            events::data,
        )
    };
}
pub(crate) use event_select;

pub(crate) fn row_to_event((id, wallet, kind, ts, data): EventRow) -> Result<Event, AdapterError> {
    // Stored events were validated when published; rebuild without rejecting data that an
    // older version accepted.
    let event_type = EventType::parse(&kind).map_err(AdapterError::corrupt)?;
    let data: serde_json::Value = from_json(&data)?;
    Event::new(
        parse_id(&id)?,
        Timestamp::from_datetime(from_micros(ts)?),
        event_type,
        data,
        parse_id(&wallet)?,
    )
    .map_err(AdapterError::corrupt)
}

/// Every column that holds a delivery's state, always written together so that no write leaves
/// them disagreeing.
#[derive(AsChangeset)]
#[diesel(table_name = deliveries, treat_none_as_null = true)]
pub(crate) struct DeliveryStateChange {
    pub(crate) state: &'static str,
    pub(crate) due_at: Option<i64>,
    pub(crate) attempts: i32,
    pub(crate) attempts_made: i32,
    pub(crate) lease_owner: Option<String>,
    pub(crate) final_at: Option<i64>,
    pub(crate) cancel_reason: Option<&'static str>,
    pub(crate) first_due: i64,
}

impl DeliveryStateChange {
    pub(crate) fn of(delivery: &Delivery, lease_owner: Option<String>) -> Self {
        let s = state_columns(delivery.state());
        Self {
            state: s.state,
            due_at: s.due_at,
            attempts: i32::try_from(delivery.attempts()).unwrap_or(i32::MAX),
            attempts_made: i32::try_from(delivery.attempts_made()).unwrap_or(i32::MAX),
            lease_owner,
            final_at: s.final_at,
            cancel_reason: s.cancel_reason,
            first_due: micros(delivery.first_due()),
        }
    }
}

/// The summary of a stored event that a repeated publish answers with: id, wallet,
/// idempotency fingerprint, deliveries created.
pub(crate) type EventSummary = (String, String, Option<String>, i32);

macro_rules! event_summary {
    () => {
        (
            events::id,
            events::wallet_id,
            events::fingerprint,
            events::deliveries,
        )
    };
}
pub(crate) use event_summary;

/// What a publish answers when `earlier` (of the same wallet: event ids and idempotency keys
/// are unique per wallet) was stored before, found by the idempotency key (`by_key`) or by the
/// event id: the domain's rule ([`EarlierPublish::replay`]), a replay of the first result or
/// `Conflict`.
pub(crate) fn replay(
    idempotency: Option<&Idempotency>,
    by_key: bool,
    earlier: EventSummary,
) -> Result<Published, AdapterError> {
    let (first_id, _wallet, fingerprint, count) = earlier;
    let earlier = EarlierPublish {
        event_id: parse_id(&first_id)?,
        fingerprint: fingerprint.as_deref(),
        deliveries: u32::try_from(count).unwrap_or_default(),
    };
    let repeat = match idempotency {
        Some(idem) if by_key => Repeat::SameKey {
            fingerprint: &idem.fingerprint,
        },
        _ => Repeat::SameEventId,
    };
    let replay = earlier
        .replay(repeat)
        .map_err(|conflict| AdapterError::Conflict(conflict.to_string()))?;
    Ok(Published {
        event_id: replay.event_id,
        deliveries: replay.deliveries,
        replayed: true,
    })
}

/// An event as inserted by a publish, with its idempotency key and the number of deliveries
/// created, which a replay answers with.
#[derive(Insertable)]
#[diesel(table_name = events)]
pub(crate) struct NewEvent {
    id: SqlId,
    wallet_id: SqlId,
    event_type: String,
    ts: i64,
    data: String,
    idempotency_key: Option<String>,
    fingerprint: Option<String>,
    deliveries: i32,
    created_at: i64,
}

impl NewEvent {
    pub(crate) fn of(
        event: &Event,
        idempotency: Option<&Idempotency>,
        deliveries: usize,
        now: OffsetDateTime,
    ) -> Self {
        Self {
            id: sql_id(event.id()),
            wallet_id: sql_id(event.wallet_id()),
            event_type: event.event_type().as_str().to_owned(),
            ts: micros(event.ts().as_datetime()),
            data: to_json(event.data()),
            idempotency_key: idempotency.map(|i| i.key.clone()),
            fingerprint: idempotency.map(|i| i.fingerprint.clone()),
            deliveries: i32::try_from(deliveries).unwrap_or(i32::MAX),
            created_at: micros(now),
        }
    }
}

/// The exhausted deliveries a redelivery job took, requeued at `now` ([`Delivery::requeue`]).
pub(crate) fn requeue_all(
    rows: &[DeliveryRow],
    now: OffsetDateTime,
) -> Result<Vec<Delivery>, AdapterError> {
    rows.iter()
        .map(|row| {
            row_to_delivery(row)?
                .requeue(now)
                .map_err(AdapterError::corrupt)
        })
        .collect()
}

/// A delivery as inserted by a publish: a domain [`Delivery`] (new ones come from
/// [`webhook_domain::fan_out`]) with what only storage adds, its wallet (which finds its event)
/// and its place in an ordered target's sequence.
#[derive(Insertable)]
#[diesel(table_name = deliveries)]
pub(crate) struct NewDelivery {
    id: SqlId,
    event_id: SqlId,
    webhook_id: SqlId,
    wallet_id: SqlId,
    state: &'static str,
    due_at: Option<i64>,
    attempts: i32,
    attempts_made: i32,
    final_at: Option<i64>,
    cancel_reason: Option<&'static str>,
    first_due: i64,
    created_at: i64,
    /// The place in its ordered target's sequence; `None` for other targets.
    seq: Option<i64>,
}

impl NewDelivery {
    /// The row of `delivery`, of an event of `wallet`, stored at `now`.
    pub(crate) fn of(delivery: &Delivery, wallet: WalletId, now: OffsetDateTime) -> Self {
        let state = DeliveryStateChange::of(delivery, None);
        Self {
            id: sql_id(delivery.id()),
            event_id: sql_id(delivery.event_id()),
            webhook_id: sql_id(delivery.webhook_id()),
            wallet_id: sql_id(wallet),
            state: state.state,
            due_at: state.due_at,
            attempts: state.attempts,
            attempts_made: state.attempts_made,
            final_at: state.final_at,
            cancel_reason: state.cancel_reason,
            first_due: state.first_due,
            created_at: micros(now),
            seq: None,
        }
    }

    pub(crate) fn webhook_id(&self) -> &str {
        &self.webhook_id.0
    }

    /// Places the delivery at `seq` in its ordered target's sequence.
    pub(crate) fn number(&mut self, seq: i64) {
        self.seq = Some(seq);
    }
}

/// One attempt as inserted with its outcome.
#[derive(Insertable)]
#[diesel(table_name = attempts)]
pub(crate) struct NewAttempt {
    pub(crate) delivery_id: SqlId,
    pub(crate) number: i32,
    pub(crate) started_at: i64,
    pub(crate) duration_us: i64,
    pub(crate) outcome: &'static str,
    pub(crate) status_code: Option<i32>,
    pub(crate) response_excerpt: Option<String>,
    pub(crate) error: Option<String>,
    /// The delivery's webhook, copied so that a webhook's attempts are one index range.
    pub(crate) webhook_id: SqlId,
}

impl NewAttempt {
    pub(crate) fn of(record: &webhook_ports::AttemptRecord) -> Self {
        let a = &record.attempt;
        let (outcome, status_code) = outcome_columns(&a.detail);
        Self {
            delivery_id: sql_id(record.delivery.id()),
            number: i32::try_from(a.number).unwrap_or(i32::MAX),
            started_at: micros(a.started_at),
            duration_us: duration_micros(a.duration),
            outcome,
            status_code,
            response_excerpt: a.response_excerpt.clone(),
            error: a.error.clone(),
            webhook_id: sql_id(record.delivery.webhook_id()),
        }
    }
}

/// An attempt's columns, as listed.
pub(crate) type AttemptRow = (
    i32,
    i64,
    i64,
    String,
    Option<i32>,
    Option<String>,
    Option<String>,
);

macro_rules! attempt_select {
    () => {
        (
            attempts::number,
            attempts::started_at,
            attempts::duration_us,
            attempts::outcome,
            attempts::status_code,
            attempts::response_excerpt,
            attempts::error,
        )
    };
}
pub(crate) use attempt_select;

pub(crate) fn row_to_attempt(
    (number, started, duration, outcome, status, excerpt, error): AttemptRow,
) -> Result<webhook_ports::AttemptLog, AdapterError> {
    Ok(webhook_ports::AttemptLog {
        number: u32::try_from(number).map_err(AdapterError::corrupt)?,
        started_at: from_micros(started)?,
        duration: Duration::from_micros(u64::try_from(duration).unwrap_or_default()),
        detail: to_outcome(&outcome, status)?,
        response_excerpt: excerpt,
        error,
    })
}

/// One attempt of a delivery with the number of attempts the delivery has in all, as the
/// statements of `list_attempts_of` return them (ordered by delivery, then attempt).
#[derive(Debug, QueryableByName)]
pub(crate) struct RecentAttemptRow {
    #[diesel(sql_type = crate::sql_id::Id)]
    delivery_id: String,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    number: i32,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    started_at: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    duration_us: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    outcome: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Integer>)]
    status_code: Option<i32>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    response_excerpt: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    error: Option<String>,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    total: i64,
}

/// The rows of `list_attempts_of`, grouped by delivery in the order they came.
pub(crate) fn group_recent_attempts(
    rows: Vec<RecentAttemptRow>,
) -> Result<HashMap<DeliveryId, RecentAttempts>, AdapterError> {
    let mut grouped: HashMap<DeliveryId, RecentAttempts> = HashMap::new();
    for row in rows {
        let recent = grouped.entry(parse_id(&row.delivery_id)?).or_default();
        recent.total = u64::try_from(row.total).map_err(AdapterError::corrupt)?;
        recent.attempts.push(row_to_attempt((
            row.number,
            row.started_at,
            row.duration_us,
            row.outcome,
            row.status_code,
            row.response_excerpt,
            row.error,
        ))?);
    }
    Ok(grouped)
}

/// An API key's columns, as found by tag: wallet, salt, digest, creation time.
pub(crate) type ApiKeyRow = (String, Vec<u8>, Vec<u8>, i64);

pub(crate) fn row_to_api_key(
    tag: ApiKeyTag,
    (wallet, salt, digest, created): ApiKeyRow,
) -> Result<webhook_ports::StoredApiKey, AdapterError> {
    Ok(webhook_ports::StoredApiKey {
        wallet_id: parse_id(&wallet)?,
        hash: to_api_key_hash(tag, salt, digest)?,
        created_at: from_micros(created)?,
    })
}

fn to_api_key_hash(
    tag: ApiKeyTag,
    salt: Vec<u8>,
    digest: Vec<u8>,
) -> Result<ApiKeyHash, AdapterError> {
    Ok(ApiKeyHash {
        tag,
        salt: salt
            .try_into()
            .map_err(|_| AdapterError::corrupt("salt length"))?,
        digest: digest
            .try_into()
            .map_err(|_| AdapterError::corrupt("digest length"))?,
    })
}

/// The admin token's row. Its id is always 1: the primary key lets a second insert do
/// nothing, which makes storing the first token atomic.
#[derive(Debug, Insertable)]
#[diesel(table_name = admin_token)]
pub(crate) struct NewAdminToken {
    id: i64,
    tag: Vec<u8>,
    salt: Vec<u8>,
    digest: Vec<u8>,
    created_at: i64,
}

impl NewAdminToken {
    pub(crate) fn of(hash: &ApiKeyHash, now: OffsetDateTime) -> Self {
        Self {
            id: 1,
            tag: hash.tag.0.to_vec(),
            salt: hash.salt.to_vec(),
            digest: hash.digest.to_vec(),
            created_at: micros(now),
        }
    }
}

/// The admin token's columns, as read: tag, salt, digest.
pub(crate) type AdminTokenRow = (Vec<u8>, Vec<u8>, Vec<u8>);

macro_rules! admin_token_select {
    () => {
        (admin_token::tag, admin_token::salt, admin_token::digest)
    };
}
pub(crate) use admin_token_select;

pub(crate) fn row_to_admin_token(
    (tag, salt, digest): AdminTokenRow,
) -> Result<ApiKeyHash, AdapterError> {
    let tag = tag
        .try_into()
        .map_err(|_| AdapterError::corrupt("admin token: tag length"))?;
    to_api_key_hash(ApiKeyTag(tag), salt, digest)
}

/// An IAM entity's row, as stored and read.
#[derive(Debug, Insertable, Queryable, Selectable)]
#[diesel(table_name = entities)]
pub(crate) struct EntityRow {
    id: SqlId,
    name: String,
    pub(crate) wallet_id: SqlId,
    created_at: i64,
    updated_at: i64,
}

impl EntityRow {
    pub(crate) fn of(entity: &Entity) -> Self {
        Self {
            id: sql_id(entity.id),
            name: entity.name.as_str().to_owned(),
            wallet_id: sql_id(entity.wallet_id),
            created_at: micros(entity.created_at),
            updated_at: micros(entity.updated_at),
        }
    }

    pub(crate) fn into_entity(self) -> Result<Entity, AdapterError> {
        Ok(Entity {
            id: parse_id(&self.id.0)?,
            name: WalletName::new(&self.name).map_err(AdapterError::corrupt)?,
            wallet_id: parse_id(&self.wallet_id.0)?,
            created_at: from_micros(self.created_at)?,
            updated_at: from_micros(self.updated_at)?,
        })
    }
}

/// The settings of a webhook that an update replaces: everything but its id, scope and
/// creation time. `None` clears a column.
#[derive(Debug, AsChangeset)]
#[diesel(table_name = webhooks, treat_none_as_null = true)]
pub(crate) struct WebhookSettingsChange {
    url: String,
    custom_headers: String,
    event_types: Option<String>,
    signing_keys: Option<String>,
    retry_policy: Option<String>,
    enabled: bool,
    ordered: bool,
    rate_limit: Option<i32>,
}

impl WebhookSettingsChange {
    pub(crate) fn of(webhook: &Webhook) -> Self {
        let w = webhook_columns(webhook);
        Self {
            url: w.url,
            custom_headers: w.custom_headers,
            event_types: w.event_types,
            signing_keys: w.signing_keys,
            retry_policy: w.retry_policy,
            enabled: w.enabled,
            ordered: w.ordered,
            rate_limit: w.rate_limit,
        }
    }
}

/// A redelivery job's row, as inserted.
#[derive(Debug, Insertable)]
#[diesel(table_name = redelivery_jobs)]
pub(crate) struct NewRedeliveryJob {
    id: SqlId,
    wallet_id: SqlId,
    webhook_id: SqlId,
    since: i64,
    until: i64,
    state: &'static str,
    total: i64,
    requeued: i64,
    created_at: i64,
    updated_at: i64,
    stop_reason: Option<&'static str>,
}

/// A redelivery job's row, as read.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = redelivery_jobs)]
pub(crate) struct RedeliveryJobRow {
    id: String,
    wallet_id: String,
    webhook_id: String,
    since: i64,
    until: i64,
    state: String,
    total: i64,
    requeued: i64,
    created_at: i64,
    updated_at: i64,
    stop_reason: Option<String>,
}

fn count_column(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl NewRedeliveryJob {
    pub(crate) fn of(job: &RedeliveryJob) -> Self {
        Self {
            id: sql_id(job.id),
            wallet_id: sql_id(job.wallet_id),
            webhook_id: sql_id(job.webhook_id),
            since: micros(job.since),
            until: micros(job.until),
            state: job.state.as_str(),
            total: count_column(job.total),
            requeued: count_column(job.requeued),
            created_at: micros(job.created_at),
            updated_at: micros(job.updated_at),
            stop_reason: job.state.stop_reason().map(JobStopReason::as_str),
        }
    }
}

impl RedeliveryJobRow {
    pub(crate) fn into_job(self) -> Result<RedeliveryJob, AdapterError> {
        let count = |n: i64| u64::try_from(n).map_err(AdapterError::corrupt);
        Ok(RedeliveryJob {
            id: parse_id(&self.id)?,
            wallet_id: parse_id(&self.wallet_id)?,
            webhook_id: parse_id(&self.webhook_id)?,
            since: from_micros(self.since)?,
            until: from_micros(self.until)?,
            state: JobState::parse(&self.state, self.stop_reason.as_deref()).ok_or_else(|| {
                AdapterError::corrupt(format_args!(
                    "unknown job state {:?} (stop reason {:?})",
                    self.state, self.stop_reason
                ))
            })?,
            total: count(self.total)?,
            requeued: count(self.requeued)?,
            created_at: from_micros(self.created_at)?,
            updated_at: from_micros(self.updated_at)?,
        })
    }
}

/// What a step changes of a job: its progress, and why it stopped.
#[derive(Debug, AsChangeset)]
#[diesel(table_name = redelivery_jobs, treat_none_as_null = true)]
pub(crate) struct JobProgressChange {
    state: &'static str,
    requeued: i64,
    updated_at: i64,
    stop_reason: Option<&'static str>,
}

impl JobProgressChange {
    pub(crate) fn of(job: &RedeliveryJob) -> Self {
        Self {
            state: job.state.as_str(),
            requeued: count_column(job.requeued),
            updated_at: micros(job.updated_at),
            stop_reason: job.state.stop_reason().map(JobStopReason::as_str),
        }
    }
}

/// Why a job of this webhook must stop, given the webhook's `enabled` and `deleted_at` columns
/// (`None` when its row is gone): `None` while it may still be sent to.
pub(crate) fn job_stop_reason(webhook: Option<(bool, Option<i64>)>) -> Option<JobStopReason> {
    match webhook {
        None | Some((_, Some(_))) => Some(JobStopReason::WebhookDeleted),
        Some((false, None)) => Some(JobStopReason::WebhookDisabled),
        Some((true, None)) => None,
    }
}

/// The columns of a job that select its deliveries, as the `redelivery_candidates` query takes
/// them.
#[derive(Debug, Clone)]
pub(crate) struct JobWindow {
    pub(crate) wallet_id: String,
    pub(crate) webhook_id: String,
    pub(crate) since: i64,
    pub(crate) until: i64,
    pub(crate) created_at: i64,
}

impl JobWindow {
    pub(crate) fn of(job: &RedeliveryJob) -> Self {
        Self {
            wallet_id: job.wallet_id.to_string(),
            webhook_id: job.webhook_id.to_string(),
            since: micros(job.since),
            until: micros(job.until),
            created_at: micros(job.created_at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_round_trip_through_their_columns_and_bad_ones_are_corrupt() {
        for outcome in [
            AttemptDetail::Response {
                status: 410,
                retry_after: None,
            },
            AttemptDetail::Timeout,
            AttemptDetail::AddressRefused,
        ] {
            let (kind, status) = outcome_columns(&outcome);
            assert_eq!(to_outcome(kind, status).unwrap(), outcome);
        }
        assert_eq!(
            outcome_columns(&AttemptDetail::ConnectionFailed),
            ("connection_failed", None)
        );
        for (kind, status) in [
            ("lost", None),
            ("response", None),
            ("response", Some(70_000)),
        ] {
            assert!(
                matches!(to_outcome(kind, status), Err(AdapterError::Corrupt(_))),
                "{kind} {status:?}"
            );
        }
    }
}
