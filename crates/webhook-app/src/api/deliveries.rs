//! Delivery logs and redelivery: a wallet reads the deliveries of its events and webhooks with
//! every attempt, makes one exhausted delivery due again, or starts a background job that
//! requeues a webhook's exhausted deliveries in a time window.

use axum::Json;
use axum::extract::OriginalUri;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri, header};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use webhook_domain::{
    Delivery, DeliveryId, DeliveryState, DeliveryStateKind, EventId, EventType, JobStopReason,
    RedeliveryJob, RedeliveryJobId, Timestamp, WalletId, WebhookId,
};
use webhook_ports::{
    AttemptLog, DeliveryFilter, DeliverySearch, EventOutbox, FoundDelivery, OutboxError,
    RecentAttempts,
};

use super::auth::WalletAuth;
use super::cursor;
use super::json::JsonBody;
use super::paging::{PageQuery, Paged, probe};
use super::params::{path_id, query, timestamp};
use super::problem::Problem;
use super::state::ApiState;
use crate::redelivery;

/// One attempt, as the log shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AttemptResource {
    number: u32,
    #[schema(value_type = String, format = DateTime)]
    started_at: Timestamp,
    duration_ms: u64,
    /// What the destination saw: `response` (with `statusCode`), `accepted` or `declined` (a
    /// destination without status codes took or refused the message), `timeout`,
    /// `connection_failed`, `tls_failed`, `response_too_large` or `address_refused`.
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_code: Option<u16>,
    /// The start of the response body, truncated.
    #[serde(skip_serializing_if = "Option::is_none")]
    response_body: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl AttemptResource {
    fn of(attempt: AttemptLog) -> Self {
        Self {
            number: attempt.number,
            started_at: Timestamp::from_datetime(attempt.started_at),
            duration_ms: u64::try_from(attempt.duration.as_millis()).unwrap_or(u64::MAX),
            outcome: attempt.detail.kind().as_str(),
            status_code: attempt.detail.status(),
            response_body: attempt.response_excerpt,
            error: attempt.error,
        }
    }
}

/// A delivery of one event to one webhook, with its attempts.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeliveryResource {
    #[schema(value_type = uuid::Uuid)]
    id: DeliveryId,
    #[schema(value_type = uuid::Uuid)]
    event_id: EventId,
    #[schema(value_type = uuid::Uuid)]
    webhook_id: WebhookId,
    /// `pending`, `in_flight`, `retry_scheduled`, `delivered`, `exhausted` or `cancelled`.
    state: &'static str,
    /// When the next attempt is due (pending and retry-scheduled deliveries).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    next_attempt_at: Option<Timestamp>,
    /// When it became final (delivered, exhausted, cancelled).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    finished_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cancel_reason: Option<&'static str>,
    /// Attempts made since the delivery was created, redeliveries included; the next one
    /// gets this number plus one.
    attempt_count: u32,
    /// The most recent attempts, in the order they were made: at most
    /// `api.max_attempts_per_delivery` (100 unless configured).
    attempts: Vec<AttemptResource>,
    /// How many attempts the log holds in all; present only when `attempts` leaves the
    /// oldest of them out.
    #[serde(skip_serializing_if = "Option::is_none")]
    attempts_total: Option<u64>,
}

impl DeliveryResource {
    fn of(delivery: &Delivery, recent: RecentAttempts) -> Self {
        let ts = Timestamp::from_datetime;
        let (next, finished, reason) = match delivery.state() {
            DeliveryState::Pending { due } => (Some(ts(due)), None, None),
            DeliveryState::RetryScheduled { at } => (Some(ts(at)), None, None),
            DeliveryState::InFlight { .. } => (None, None, None),
            DeliveryState::Delivered { at } | DeliveryState::Exhausted { at } => {
                (None, Some(ts(at)), None)
            }
            DeliveryState::Cancelled { at, reason } => (None, Some(ts(at)), Some(reason.as_str())),
        };
        Self {
            id: delivery.id(),
            event_id: delivery.event_id(),
            webhook_id: delivery.webhook_id(),
            state: delivery.state().kind().as_str(),
            next_attempt_at: next,
            finished_at: finished,
            cancel_reason: reason,
            attempt_count: delivery.attempts_made(),
            attempts_total: (recent.total > recent.attempts.len() as u64).then_some(recent.total),
            attempts: recent
                .attempts
                .into_iter()
                .map(AttemptResource::of)
                .collect(),
        }
    }
}

/// Filters of a delivery listing.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct DeliveryQuery {
    /// Only deliveries in this state: pending, in_flight, retry_scheduled, delivered,
    /// exhausted or cancelled.
    #[serde(default)]
    #[param(pattern = "^(pending|in_flight|retry_scheduled|delivered|exhausted|cancelled)$")]
    state: Option<String>,
    /// Rows to skip (default 0), at most 2^63 - 1.
    #[serde(default)]
    #[param(maximum = 9_223_372_036_854_775_807_u64)]
    offset: Option<u64>,
    /// Rows to return, 1 to 1000 (default 100).
    #[serde(default)]
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

fn not_found(what: &'static str) -> impl Fn(OutboxError) -> Problem {
    move |e| match e {
        OutboxError::NotFound => Problem::not_found(what),
        other => other.into(),
    }
}

/// The deliveries as resources, each with its `per_delivery` most recent attempts, read in one
/// query for all of them.
async fn with_attempts(
    outbox: &dyn EventOutbox,
    wallet: WalletId,
    deliveries: &[Delivery],
    per_delivery: u32,
) -> Result<Vec<DeliveryResource>, Problem> {
    let ids: Vec<DeliveryId> = deliveries.iter().map(Delivery::id).collect();
    let mut attempts = outbox.list_attempts_of(wallet, &ids, per_delivery).await?;
    Ok(deliveries
        .iter()
        .map(|d| DeliveryResource::of(d, attempts.remove(&d.id()).unwrap_or_default()))
        .collect())
}

/// One delivery as a resource with its most recent attempts (`api.max_attempts_per_delivery`).
async fn one_with_attempts(
    state: &ApiState,
    wallet: WalletId,
    delivery: &Delivery,
) -> Result<DeliveryResource, Problem> {
    let per_delivery = state.limits.max_attempts_per_delivery;
    let mut found = with_attempts(
        state.outbox.as_ref(),
        wallet,
        std::slice::from_ref(delivery),
        per_delivery,
    )
    .await?;
    Ok(found.remove(0))
}

/// One page of the wallet's deliveries that match `filter` and the query, each with its
/// `per_delivery` most recent attempts: one query for the page, one for all of its attempts.
async fn listing(
    outbox: &dyn EventOutbox,
    per_delivery: u32,
    wallet: WalletId,
    uri: &Uri,
    mut filter: DeliveryFilter,
) -> Result<Json<Paged<DeliveryResource>>, Problem> {
    let q: DeliveryQuery = query(uri)?;
    let page = PageQuery {
        offset: q.offset,
        limit: q.limit,
    }
    .page()?;
    let mut extra = String::new();
    if let Some(name) = &q.state {
        let kind = DeliveryStateKind::parse(name).ok_or_else(|| {
            Problem::bad_request(format!(
                "state: must be one of pending, in_flight, retry_scheduled, delivered, exhausted, cancelled; got {name:?}"
            ))
        })?;
        filter.state = Some(kind);
        extra = format!("&state={}", kind.as_str());
    }
    let mut found = outbox.list_deliveries(wallet, filter, probe(page)).await?;
    // The row past the page only tells that another page follows: its attempts are not read.
    let has_next = found.len() > page.limit as usize;
    found.truncate(page.limit as usize);
    let contents = with_attempts(outbox, wallet, &found, per_delivery).await?;
    Ok(Json(Paged::of_page(
        "DeliveryPage",
        uri.path(),
        &extra,
        page,
        contents,
        has_next,
    )))
}

/// `GET /events/deliveries`: a search of the wallet's deliveries.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub(crate) struct SearchQuery {
    /// Only deliveries in this state.
    #[serde(default)]
    #[param(pattern = "^(pending|in_flight|retry_scheduled|delivered|exhausted|cancelled)$")]
    state: Option<String>,
    /// Only deliveries of events of this type (exact name).
    #[serde(default)]
    event_type: Option<String>,
    /// Only deliveries to this webhook; a deleted webhook's id too.
    #[serde(default)]
    #[param(value_type = Option<uuid::Uuid>)]
    webhook_id: Option<String>,
    /// Only deliveries created at or after this time (RFC 3339).
    #[serde(default)]
    #[param(value_type = Option<String>, format = DateTime)]
    since: Option<String>,
    /// Only deliveries created before this time (RFC 3339).
    #[serde(default)]
    #[param(value_type = Option<String>, format = DateTime)]
    until: Option<String>,
    /// Rows to return, 1 to 1000 (default 50).
    #[serde(default)]
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// Where the page starts: copied from the previous page's `next`.
    #[serde(default)]
    cursor: Option<String>,
}

const DEFAULT_SEARCH_PAGE: u32 = 50;
const MAX_SEARCH_PAGE: u32 = 1000;

/// The most recent attempt of a delivery, as the search shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LastAttemptResource {
    number: u32,
    #[schema(value_type = String, format = DateTime)]
    started_at: Timestamp,
    duration_ms: u64,
    /// As in a delivery's `attempts`.
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_code: Option<u16>,
}

/// A delivery as the search lists it: its state, without its attempt log but its last attempt.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FoundDeliveryResource {
    #[schema(value_type = uuid::Uuid)]
    id: DeliveryId,
    #[schema(value_type = uuid::Uuid)]
    event_id: EventId,
    event_type: String,
    #[schema(value_type = uuid::Uuid)]
    webhook_id: WebhookId,
    /// `pending`, `in_flight`, `retry_scheduled`, `delivered`, `exhausted` or `cancelled`.
    state: &'static str,
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
    /// Attempts made since the delivery was created, redeliveries included.
    attempt_count: u32,
    /// When the next attempt is due (pending and retry-scheduled deliveries).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    next_attempt_at: Option<Timestamp>,
    /// When it became final (delivered, exhausted, cancelled).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    finished_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cancel_reason: Option<&'static str>,
    /// Absent before the first attempt.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_attempt: Option<LastAttemptResource>,
}

impl FoundDeliveryResource {
    fn of(found: FoundDelivery, last: Option<AttemptLog>) -> Self {
        let whole = DeliveryResource::of(&found.delivery, RecentAttempts::default());
        Self {
            id: whole.id,
            event_id: whole.event_id,
            event_type: found.event_type.as_str().to_owned(),
            webhook_id: whole.webhook_id,
            state: whole.state,
            created_at: Timestamp::from_datetime(found.created_at),
            attempt_count: whole.attempt_count,
            next_attempt_at: whole.next_attempt_at,
            finished_at: whole.finished_at,
            cancel_reason: whole.cancel_reason,
            last_attempt: last.map(|a| LastAttemptResource {
                number: a.number,
                started_at: Timestamp::from_datetime(a.started_at),
                duration_ms: u64::try_from(a.duration.as_millis()).unwrap_or(u64::MAX),
                outcome: a.detail.kind().as_str(),
                status_code: a.detail.status(),
            }),
        }
    }
}

/// A page of a delivery search: `next` (present only when more rows match) carries the
/// cursor of the next page.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeliverySearchPage {
    /// `DeliverySearchPage`.
    kind: &'static str,
    #[serde(rename = "self")]
    self_: String,
    page_of: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
    contents: Vec<FoundDeliveryResource>,
}

/// The search a query asks for, and its filters as a query string (without `limit` and
/// `cursor`), in one order: what the links repeat and the cursor is tied to.
fn parse_search(q: SearchQuery) -> Result<(DeliverySearch, String), Problem> {
    let mut filters: Vec<String> = Vec::new();
    let state = match &q.state {
        Some(name) => {
            let kind = DeliveryStateKind::parse(name).ok_or_else(|| {
                Problem::bad_request(format!(
                    "state: must be one of pending, in_flight, retry_scheduled, delivered, exhausted, cancelled; got {name:?}"
                ))
            })?;
            filters.push(format!("state={}", kind.as_str()));
            Some(kind)
        }
        None => None,
    };
    let event_type = match &q.event_type {
        Some(name) => {
            let kind = EventType::parse(name).map_err(|_| {
                Problem::bad_request(format!(
                    "eventType: {name:?} is not an event type; use ConnectionUpdated, \
                     IssueCredentialRecordUpdated, PresentationUpdated, DIDStatusUpdated or a \
                     name matching ^[A-Za-z][A-Za-z0-9._-]{{0,127}}$"
                ))
            })?;
            filters.push(format!("eventType={}", kind.as_str()));
            Some(kind)
        }
        None => None,
    };
    let webhook_id = match &q.webhook_id {
        Some(text) => {
            let id: WebhookId = path_id(text, "webhookId")?;
            filters.push(format!("webhookId={id}"));
            Some(id)
        }
        None => None,
    };
    let since = q
        .since
        .as_deref()
        .map(|t| timestamp(t, "since"))
        .transpose()?;
    let until = q
        .until
        .as_deref()
        .map(|t| timestamp(t, "until"))
        .transpose()?;
    if let (Some(since), Some(until)) = (since, until)
        && since >= until
    {
        return Err(Problem::bad_request(format!(
            "since: must be before until; got since {since} and until {until}"
        )));
    }
    for (name, at) in [("since", since), ("until", until)] {
        if let Some(at) = at {
            filters.push(format!("{name}={at}"));
        }
    }
    let limit = q.limit.unwrap_or(DEFAULT_SEARCH_PAGE);
    if !(1..=MAX_SEARCH_PAGE).contains(&limit) {
        return Err(Problem::bad_request(format!(
            "limit: must be between 1 and {MAX_SEARCH_PAGE}, got {limit}"
        )));
    }
    let filters = filters.join("&");
    let after = q
        .cursor
        .as_deref()
        .map(|c| cursor::decode(&filters, c))
        .transpose()?;
    let search = DeliverySearch {
        state,
        event_type,
        webhook_id,
        since: since.map(|t| t.as_datetime()),
        until: until.map(|t| t.as_datetime()),
        after,
        limit,
    };
    Ok((search, filters))
}

/// The wallet's deliveries, newest first (by creation time, then id), filtered, in pages
/// linked by a cursor; each with its last attempt.
#[utoipa::path(get, operation_id = "searchDeliveries", path = "/events/deliveries", tag = "deliveries",
    params(SearchQuery),
    security(("apikey" = [])),
    responses((status = 200, body = DeliverySearchPage), (status = 400, body = Problem), (status = 401, body = Problem)))]
pub(crate) async fn search(
    State(state): State<ApiState>,
    WalletAuth(wallet): WalletAuth,
    OriginalUri(uri): OriginalUri,
) -> Result<Json<DeliverySearchPage>, Problem> {
    let q: SearchQuery = query(&uri)?;
    let given_cursor = q.cursor.clone();
    let (search, filters) = parse_search(q)?;
    let limit = search.limit;
    let probe = DeliverySearch {
        limit: limit + 1,
        ..search
    };
    let mut found = state.outbox.search_deliveries(wallet, probe).await?;
    // The row past the page only tells that another page follows: its attempts are not read.
    let has_next = found.len() > limit as usize;
    found.truncate(limit as usize);
    let ids: Vec<DeliveryId> = found.iter().map(|f| f.delivery.id()).collect();
    let mut last = state.outbox.list_attempts_of(wallet, &ids, 1).await?;
    let path = uri.path();
    let link = |cursor: Option<&str>| {
        let mut query: Vec<String> = Vec::new();
        if !filters.is_empty() {
            query.push(filters.clone());
        }
        query.push(format!("limit={limit}"));
        if let Some(cursor) = cursor {
            query.push(format!("cursor={cursor}"));
        }
        format!("{path}?{}", query.join("&"))
    };
    let next = match found.last() {
        Some(row) if has_next => Some(link(Some(&cursor::encode(&filters, row.position())))),
        _ => None,
    };
    let contents = found
        .into_iter()
        .map(|f| {
            let attempt = last
                .remove(&f.delivery.id())
                .and_then(|recent| recent.attempts.into_iter().last());
            FoundDeliveryResource::of(f, attempt)
        })
        .collect();
    Ok(Json(DeliverySearchPage {
        kind: "DeliverySearchPage",
        self_: link(given_cursor.as_deref()),
        page_of: path.to_owned(),
        next,
        contents,
    }))
}

/// The deliveries of one event, oldest first, with their attempts.
#[utoipa::path(get, operation_id = "listEventDeliveries", path = "/events/{event_id}/deliveries", tag = "deliveries",
    params(("event_id" = uuid::Uuid, Path), DeliveryQuery),
    security(("apikey" = [])),
    responses((status = 200, body = Paged<DeliveryResource>), (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn list_for_event(
    State(state): State<ApiState>,
    WalletAuth(wallet): WalletAuth,
    Path(event_id): Path<String>,
    OriginalUri(uri): OriginalUri,
) -> Result<Json<Paged<DeliveryResource>>, Problem> {
    let id: EventId = path_id(&event_id, "event_id")?;
    state
        .outbox
        .get_event(wallet, id)
        .await
        .map_err(not_found("event"))?;
    let filter = DeliveryFilter {
        event_id: Some(id),
        ..DeliveryFilter::default()
    };
    let per_delivery = state.limits.max_attempts_per_delivery;
    listing(state.outbox.as_ref(), per_delivery, wallet, &uri, filter).await
}

/// The deliveries to one webhook, oldest first, with their attempts.
#[utoipa::path(get, operation_id = "listWebhookDeliveries", path = "/events/webhooks/{webhook_id}/deliveries", tag = "deliveries",
    params(("webhook_id" = uuid::Uuid, Path), DeliveryQuery),
    security(("apikey" = [])),
    responses((status = 200, body = Paged<DeliveryResource>), (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn list_for_webhook(
    State(state): State<ApiState>,
    WalletAuth(wallet): WalletAuth,
    Path(webhook_id): Path<String>,
    OriginalUri(uri): OriginalUri,
) -> Result<Json<Paged<DeliveryResource>>, Problem> {
    let id: WebhookId = path_id(&webhook_id, "webhook_id")?;
    state.webhooks.get_webhook(wallet, id).await?;
    let filter = DeliveryFilter {
        webhook_id: Some(id),
        ..DeliveryFilter::default()
    };
    let per_delivery = state.limits.max_attempts_per_delivery;
    listing(state.outbox.as_ref(), per_delivery, wallet, &uri, filter).await
}

/// One delivery with its attempts.
#[utoipa::path(get, operation_id = "getDelivery", path = "/events/deliveries/{delivery_id}", tag = "deliveries",
    params(("delivery_id" = uuid::Uuid, Path)),
    security(("apikey" = [])),
    responses((status = 200, body = DeliveryResource), (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn get(
    State(state): State<ApiState>,
    WalletAuth(wallet): WalletAuth,
    Path(delivery_id): Path<String>,
) -> Result<Json<DeliveryResource>, Problem> {
    let id: DeliveryId = path_id(&delivery_id, "delivery_id")?;
    let delivery = state
        .outbox
        .get_delivery(wallet, id)
        .await
        .map_err(not_found("delivery"))?;
    Ok(Json(one_with_attempts(&state, wallet, &delivery).await?))
}

/// Makes an exhausted or cancelled delivery due now, with a fresh attempt budget.
#[utoipa::path(post, operation_id = "redeliverDelivery", path = "/events/deliveries/{delivery_id}/redeliver", tag = "deliveries",
    params(("delivery_id" = uuid::Uuid, Path)),
    security(("apikey" = [])),
    responses(
        (status = 202, description = "Due again", body = DeliveryResource),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem),
        (status = 409, description = "Not exhausted or cancelled, or its webhook is deleted or disabled", body = Problem),
    ))]
pub(crate) async fn redeliver(
    State(state): State<ApiState>,
    WalletAuth(wallet): WalletAuth,
    Path(delivery_id): Path<String>,
) -> Result<(StatusCode, Json<DeliveryResource>), Problem> {
    let id: DeliveryId = path_id(&delivery_id, "delivery_id")?;
    let current = state
        .outbox
        .get_delivery(wallet, id)
        .await
        .map_err(not_found("delivery"))?;
    // A delivery cancelled with its webhook stays with it: redelivering it would send to a
    // target that was deleted or switched off.
    match state
        .webhooks
        .get_webhook(wallet, current.webhook_id())
        .await
    {
        Ok(webhook) if webhook.enabled => {}
        Ok(_) => {
            return Err(Problem::conflict(
                "the delivery's webhook is disabled; enable it first (PATCH enabled: true)",
            ));
        }
        Err(webhook_ports::WebhookStoreError::NotFound) => {
            return Err(Problem::conflict("the delivery's webhook was deleted"));
        }
        Err(e) => return Err(e.into()),
    }
    let delivery = state
        .outbox
        .requeue(wallet, id, state.clock.now())
        .await
        .map_err(not_found("delivery"))?;
    state.wake.notify_one();
    tracing::info!(delivery = %id, %wallet, "delivery requeued");
    let resource = one_with_attempts(&state, wallet, &delivery).await?;
    Ok((StatusCode::ACCEPTED, Json(resource)))
}

/// `POST /events/webhooks/{id}/redeliver`: a time window of delivery creation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RedeliveryWindow {
    /// Deliveries created at or after this time (RFC 3339).
    // The domain's Timestamp, not time's own parser: it refuses instants whose UTC year leaves
    // 0000-9999, which could not be stored or echoed back as RFC 3339.
    #[schema(value_type = String, format = DateTime)]
    since: Timestamp,
    /// Deliveries created before this time (RFC 3339); now when absent.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    until: Option<Timestamp>,
}

/// A bulk redelivery and its progress.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RedeliveryResource {
    #[schema(value_type = uuid::Uuid)]
    id: RedeliveryJobId,
    #[schema(value_type = uuid::Uuid)]
    webhook_id: WebhookId,
    #[schema(value_type = String, format = DateTime)]
    since: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    until: Timestamp,
    /// `running`, `completed` (nothing was left to requeue) or `stopped` (its webhook was
    /// deleted or disabled; see `stopReason`).
    state: &'static str,
    /// Why a `stopped` job stopped: `webhook_deleted` or `webhook_disabled`. Absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_reason: Option<&'static str>,
    /// Exhausted deliveries in the window when the job started.
    total: u64,
    /// Requeued so far.
    requeued: u64,
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    updated_at: Timestamp,
}

impl RedeliveryResource {
    fn of(job: &RedeliveryJob) -> Self {
        let ts = Timestamp::from_datetime;
        Self {
            id: job.id,
            webhook_id: job.webhook_id,
            since: ts(job.since),
            until: ts(job.until),
            state: job.state.as_str(),
            stop_reason: job.state.stop_reason().map(JobStopReason::as_str),
            total: job.total,
            requeued: job.requeued,
            created_at: ts(job.created_at),
            updated_at: ts(job.updated_at),
        }
    }
}

/// Starts a background job that requeues the webhook's exhausted deliveries created in the
/// window. Poll the `Location` for its progress.
#[utoipa::path(post, operation_id = "startBulkRedelivery", path = "/events/webhooks/{webhook_id}/redeliver", tag = "deliveries",
    params(("webhook_id" = uuid::Uuid, Path)),
    request_body = RedeliveryWindow,
    security(("apikey" = [])),
    responses(
        (status = 202, description = "Started", body = RedeliveryResource),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem),
        (status = 409, description = "The webhook is disabled", body = Problem),
        (status = 415, body = Problem), (status = 422, body = Problem), (status = 413, body = Problem),))]
pub(crate) async fn start_redelivery(
    State(state): State<ApiState>,
    WalletAuth(wallet): WalletAuth,
    Path(webhook_id): Path<String>,
    OriginalUri(uri): OriginalUri,
    JsonBody(window): JsonBody<RedeliveryWindow>,
) -> Result<
    (
        StatusCode,
        [(header::HeaderName, String); 1],
        Json<RedeliveryResource>,
    ),
    Problem,
> {
    let webhook: WebhookId = path_id(&webhook_id, "webhook_id")?;
    if !state.webhooks.get_webhook(wallet, webhook).await?.enabled {
        return Err(Problem::conflict(
            "the webhook is disabled; enable it first (PATCH enabled: true)",
        ));
    }
    let now = state.clock.now();
    let job = RedeliveryJob::new(
        RedeliveryJobId::from_uuid(uuid::Uuid::new_v4()),
        wallet,
        webhook,
        window.since.as_datetime(),
        window.until.map_or(now, |until| until.as_datetime()),
        now,
    )
    .map_err(|e| Problem::unprocessable(e.to_string()))?;
    let job = state
        .jobs
        .create_redelivery_job(&job)
        .await
        .map_err(not_found("webhook"))?;
    tracing::info!(job = %job.id, webhook = %webhook, %wallet, total = job.total, "bulk redelivery started");
    redelivery::spawn(
        state.jobs.clone(),
        state.clock.clone(),
        state.wake.clone(),
        job.id,
    );
    let location = format!(
        "{}/redeliveries/{}",
        uri.path().trim_end_matches("/redeliver"),
        job.id
    );
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(RedeliveryResource::of(&job)),
    ))
}

/// A bulk redelivery's progress.
#[utoipa::path(get, operation_id = "getBulkRedelivery", path = "/events/webhooks/{webhook_id}/redeliveries/{job_id}", tag = "deliveries",
    params(("webhook_id" = uuid::Uuid, Path), ("job_id" = uuid::Uuid, Path)),
    security(("apikey" = [])),
    responses((status = 200, body = RedeliveryResource), (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn get_redelivery(
    State(state): State<ApiState>,
    WalletAuth(wallet): WalletAuth,
    Path((webhook_id, job_id)): Path<(String, String)>,
) -> Result<Json<RedeliveryResource>, Problem> {
    let webhook: WebhookId = path_id(&webhook_id, "webhook_id")?;
    let id: RedeliveryJobId = path_id(&job_id, "job_id")?;
    let job = state
        .jobs
        .get_redelivery_job(wallet, id)
        .await
        .map_err(not_found("redelivery"))?;
    if job.webhook_id != webhook {
        return Err(Problem::not_found("redelivery"));
    }
    Ok(Json(RedeliveryResource::of(&job)))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use time::macros::datetime;
    use webhook_domain::AttemptDetail;
    use webhook_ports::{MockEventOutbox, Page};

    use super::*;

    fn attempt(number: u32) -> AttemptLog {
        AttemptLog {
            number,
            started_at: datetime!(2026-01-01 00:00 UTC),
            duration: std::time::Duration::from_millis(3),
            detail: AttemptDetail::Timeout,
            response_excerpt: None,
            error: None,
        }
    }

    /// The N+1 of issue 14: a page of 1,000 deliveries takes one read of the page (and the
    /// row that tells whether another follows) and one read of all its attempts, never one
    /// per delivery; the cap is the setting's, and the probe row's attempts are not read.
    #[tokio::test]
    async fn a_page_of_a_thousand_deliveries_reads_its_attempts_in_one_query() {
        let deliveries: Vec<Delivery> = (0..1001_u128)
            .map(|n| {
                Delivery::new(
                    DeliveryId::from_uuid(uuid::Uuid::from_u128(n)),
                    EventId::from_uuid(uuid::Uuid::from_u128(1)),
                    WebhookId::from_uuid(uuid::Uuid::from_u128(2)),
                    datetime!(2026-01-01 00:00 UTC),
                )
            })
            .collect();
        let page: Vec<DeliveryId> = deliveries[..1000].iter().map(Delivery::id).collect();
        let mut outbox = MockEventOutbox::new();
        outbox
            .expect_list_deliveries()
            .times(1)
            .returning(move |wallet, _, asked| {
                assert_eq!(wallet, WalletId::DEFAULT);
                assert_eq!(
                    asked,
                    Page {
                        offset: 0,
                        limit: 1001
                    }
                );
                Ok(deliveries.clone())
            });
        outbox.expect_list_attempts().never();
        outbox
            .expect_list_attempts_of()
            .times(1)
            .returning(move |wallet, ids, per_delivery| {
                assert_eq!(wallet, WalletId::DEFAULT);
                assert_eq!(ids, page.as_slice());
                assert_eq!(per_delivery, 2);
                // The first delivery has more attempts than the cap shows.
                Ok(HashMap::from([(
                    ids[0],
                    RecentAttempts {
                        total: 5,
                        attempts: vec![attempt(4), attempt(5)],
                    },
                )]))
            });
        let uri: Uri = "/cloud-agent/events/webhooks/x/deliveries?limit=1000"
            .parse()
            .unwrap();
        let Json(listed) = listing(
            &outbox,
            2,
            WalletId::DEFAULT,
            &uri,
            DeliveryFilter::default(),
        )
        .await
        .unwrap();
        let listed = serde_json::to_value(&listed).unwrap();
        let contents = listed["contents"].as_array().unwrap();
        assert_eq!(contents.len(), 1000);
        assert!(listed["next"].is_string(), "{}", listed["next"]);
        assert_eq!(contents[0]["attemptsTotal"], 5);
        let numbers: Vec<&serde_json::Value> = contents[0]["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| &a["number"])
            .collect();
        assert_eq!(numbers, [4, 5]);
        assert_eq!(contents[1]["attempts"], serde_json::json!([]));
        assert!(
            contents[1].get("attemptsTotal").is_none(),
            "{}",
            contents[1]
        );
    }
}
