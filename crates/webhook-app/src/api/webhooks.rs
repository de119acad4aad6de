//! `/events/webhooks`: a wallet's webhooks. Registration and listing keep Identus's shapes
//! (`{id, url, customHeaders, createdAt}`, status 200, `WebhookNotificationPage`); the rest is
//! ours: get, update, delete (404 for another wallet's id), secret rotation and test sends.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::OriginalUri;
use axum::extract::{Path, State};
use serde::{Deserialize, Deserializer, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use webhook_domain::{
    CustomHeaders, Event, EventId, EventType, EventTypeFilter, OutboundMessage, RateLimit,
    RetryPolicy, SigningKeys, SigningSecret, Timestamp, WalletId, Webhook, WebhookId, WebhookScope,
    WebhookUrl,
};
use webhook_ports::WebhookStoreError;

use super::auth::WalletAuth;
use super::json::{JsonBody, OptionalJsonBody};
use super::paging::{PageQuery, Paged, probe};
use super::params::{path_id, query};
use super::problem::Problem;
use super::state::ApiState;
use crate::secrets;

/// `POST /events/webhooks`. `url` and `customHeaders` are Identus's; the rest are ours. Other
/// fields are ignored, as Identus ignores them, except one that spells one of ours with other
/// case, `_` or `-` (`retry_policy`): that is refused (422).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CreateWebhook {
    /// http or https, at most 2,048 characters, no user info.
    #[schema(example = "https://example.com/webhooks")]
    url: String,
    /// Sent with every delivery. Names are HTTP tokens; webhookd's own headers are reserved.
    #[serde(default)]
    custom_headers: Option<BTreeMap<String, String>>,
    /// Only these event types are delivered; absent means all.
    #[serde(default)]
    #[schema(value_type = Option<Vec<EventTypeName>>, min_items = 1)]
    event_types: Option<Vec<String>>,
    /// A Standard Webhooks secret (`whsec_` and base64 of 24 to 64 bytes); generated when absent.
    #[serde(default)]
    #[schema(example = "whsec_YW4gZXhhbXBsZSBzZWNyZXQsIDMyIGJ5")]
    secret: Option<String>,
    /// The service's default policy when absent.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    retry_policy: Option<serde_json::Value>,
    /// Whether new events are delivered (default true).
    #[serde(default)]
    enabled: Option<bool>,
    /// One attempt at a time, in publish order (default false).
    #[serde(default)]
    ordered: Option<bool>,
    /// Attempts per second at most, 1 to 10,000.
    #[serde(default)]
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 10_000)]
    rate_limit: Option<serde_json::Value>,
    /// The names of the fields this type does not know; their values are skipped unread.
    #[serde(flatten)]
    #[schema(ignore)]
    unknown: BTreeMap<String, serde::de::IgnoredAny>,
}

/// Our settings of [`CreateWebhook`], which an Identus client never sends.
const SETTINGS: [&str; 6] = [
    "eventTypes",
    "secret",
    "retryPolicy",
    "enabled",
    "ordered",
    "rateLimit",
];

/// Refuses an unknown field that spells one of our settings with other case, `_` or `-`
/// (`retry_policy`, `RetryPolicy`): ignored, it would register a webhook other than the one
/// asked for, with no sign of it but the answer. Identus's own fields, and anything further
/// from ours, stay ignored.
fn refuse_misspelt_settings(
    unknown: &BTreeMap<String, serde::de::IgnoredAny>,
) -> Result<(), Problem> {
    let folded = |name: &str| -> String {
        name.chars()
            .filter(|c| !matches!(c, '_' | '-'))
            .map(|c| c.to_ascii_lowercase())
            .collect()
    };
    for name in unknown.keys() {
        if let Some(setting) = SETTINGS.iter().find(|s| folded(s) == folded(name)) {
            return Err(Problem::unprocessable(format!(
                "{name}: unknown field; the setting is spelt {setting} (other unknown fields are ignored)"
            )));
        }
    }
    Ok(())
}

/// An event type, as a filter names it: one of Identus's or a custom name. Only documents the
/// rule; `EventType::parse` enforces it.
#[derive(ToSchema)]
#[schema(value_type = String, pattern = "^[A-Za-z][A-Za-z0-9._-]{0,127}$")]
#[expect(dead_code, reason = "a schema for the document; never built")]
pub(crate) struct EventTypeName(String);

/// `PATCH /events/webhooks/{id}`: absent fields stay as they are; `null` resets `eventTypes`,
/// `retryPolicy` and `rateLimit` to their defaults and is refused for the others. The secret
/// changes only through rotation.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct UpdateWebhook {
    #[serde(default, deserialize_with = "not_null")]
    #[schema(nullable = false, example = "https://example.com/webhooks")]
    url: Option<String>,
    #[serde(default, deserialize_with = "not_null")]
    #[schema(nullable = false)]
    custom_headers: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Vec<EventTypeName>>, min_items = 1)]
    event_types: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Object>)]
    retry_policy: Option<Option<serde_json::Value>>,
    #[serde(default, deserialize_with = "not_null")]
    #[schema(nullable = false)]
    enabled: Option<bool>,
    #[serde(default, deserialize_with = "not_null")]
    #[schema(nullable = false)]
    ordered: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 10_000)]
    rate_limit: Option<Option<serde_json::Value>>,
}

/// A present field must have a value: `null` is refused (absent fields are `None` by `default`).
fn not_null<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// Tells a field set to `null` (`Some(None)`) from an absent one (`None`, by `default`).
fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// The webhook resource: Identus's `{id, url, customHeaders, createdAt}` plus our settings.
/// `secret` appears only in the answer to the creation.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WebhookResource {
    #[schema(value_type = uuid::Uuid)]
    id: WebhookId,
    url: String,
    custom_headers: BTreeMap<String, String>,
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>)]
    event_types: Option<EventTypeFilter>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    retry_policy: Option<RetryPolicy>,
    enabled: bool,
    ordered: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<u32>)]
    rate_limit: Option<RateLimit>,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

impl WebhookResource {
    fn of(webhook: &Webhook) -> Self {
        Self {
            id: webhook.id,
            url: webhook.url.to_string(),
            custom_headers: webhook.custom_headers.clone().into(),
            created_at: Timestamp::from_datetime(webhook.created_at),
            event_types: webhook.event_types.clone(),
            retry_policy: webhook.retry_policy.clone(),
            enabled: webhook.enabled,
            ordered: webhook.ordered,
            rate_limit: webhook.rate_limit,
            secret: None,
        }
    }
}

fn invalid(e: &dyn std::fmt::Display) -> Problem {
    Problem::unprocessable(e.to_string())
}

fn parse_url(text: &str, state: &ApiState) -> Result<WebhookUrl, Problem> {
    let url = WebhookUrl::parse_with_schemes(text, &state.schemes).map_err(|e| invalid(&e))?;
    // An address the SSRF guard would refuse at every attempt is refused now, while the caller
    // can still fix it. A name is judged at each attempt instead: what it resolves to changes.
    if let (Some(policy), Some(ip)) = (&state.address_policy, url.ip_host()) {
        policy.check(ip).map_err(|refused| {
            Problem::unprocessable(format!(
                "url: {refused}, an address webhooks may not target; use a public address or a host name (operators can allow ranges with transport.allowed_cidrs)"
            ))
        })?;
    }
    // What the target's own destination says of it (a broker the operator did not list).
    state
        .transport
        .check_target(&url)
        .map_err(|why| Problem::unprocessable(format!("url: {why}")))?;
    Ok(url)
}

fn parse_headers(headers: BTreeMap<String, String>) -> Result<CustomHeaders, Problem> {
    CustomHeaders::new(headers).map_err(|e| invalid(&e))
}

fn parse_event_types(names: &[String]) -> Result<EventTypeFilter, Problem> {
    if names.is_empty() {
        return Err(Problem::unprocessable(
            "eventTypes: must name at least one type; leave it out (or null) for every type",
        ));
    }
    names
        .iter()
        .map(|name| EventType::parse(name))
        .collect::<Result<Vec<_>, _>>()
        .map(EventTypeFilter::new)
        .map_err(|e| invalid(&format_args!("eventTypes: {e}")))
}

fn parse_retry_policy(value: serde_json::Value) -> Result<RetryPolicy, Problem> {
    serde_json::from_value(value).map_err(|e| invalid(&format_args!("retryPolicy: {e}")))
}

fn parse_rate_limit(value: serde_json::Value) -> Result<RateLimit, Problem> {
    let per_second = serde_json::from_value::<u32>(value).map_err(|_| {
        Problem::unprocessable("rateLimit: must be a whole number of attempts per second")
    })?;
    RateLimit::per_second(per_second).map_err(|e| invalid(&e))
}

fn parse_secret(text: &str) -> Result<SigningSecret, Problem> {
    SigningSecret::parse(text).map_err(|e| invalid(&format_args!("secret: {e}")))
}

fn new_secret() -> Result<SigningSecret, Problem> {
    secrets::signing_secret().map_err(|e| Problem::internal(&e))
}

/// Registers a webhook (status 200, as Identus answers).
#[utoipa::path(post, operation_id = "createWebhookNotification", path = "/events/webhooks", tag = "webhooks",
    request_body = CreateWebhook,
    security(("apikey" = [])),
    responses(
        (status = 200, description = "Registered; `secret` is shown only now", body = WebhookResource),
        (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 413, body = Problem), (status = 415, body = Problem),
        (status = 422, description = "Invalid field, or the wallet's webhook limit is reached", body = Problem),
    ))]
pub(crate) async fn create(
    State(state): State<ApiState>,
    WalletAuth(wallet): WalletAuth,
    JsonBody(request): JsonBody<CreateWebhook>,
) -> Result<Json<WebhookResource>, Problem> {
    refuse_misspelt_settings(&request.unknown)?;
    let url = parse_url(&request.url, &state)?;
    let custom_headers = parse_headers(request.custom_headers.unwrap_or_default())?;
    let event_types = request
        .event_types
        .as_deref()
        .map(parse_event_types)
        .transpose()?;
    let secret = match request.secret {
        Some(text) => parse_secret(&text)?,
        None => new_secret()?,
    };
    let retry_policy = request.retry_policy.map(parse_retry_policy).transpose()?;
    let rate_limit = request.rate_limit.map(parse_rate_limit).transpose()?;

    let now = state.clock.now();
    let mut webhook = Webhook::new(
        WebhookId::from_uuid(uuid::Uuid::new_v4()),
        WebhookScope::Wallet(wallet),
        url,
        custom_headers,
        now,
    );
    webhook.event_types = event_types;
    webhook.retry_policy = retry_policy;
    webhook.enabled = request.enabled.unwrap_or(true);
    webhook.ordered = request.ordered.unwrap_or(false);
    webhook.rate_limit = rate_limit;
    webhook.signing_keys = Some(SigningKeys::new(secret.clone()));
    state
        .webhooks
        .create_webhook(&webhook, Some(state.max_webhooks_per_wallet))
        .await?;
    tracing::info!(webhook = %webhook.id, %wallet, "webhook registered");
    let mut resource = WebhookResource::of(&webhook);
    resource.secret = Some(secret.expose());
    Ok(Json(resource))
}

/// Lists the wallet's webhooks, oldest first (Identus's `WebhookNotificationPage`).
#[utoipa::path(get, operation_id = "getWebhookNotifications", path = "/events/webhooks", tag = "webhooks",
    params(PageQuery),
    security(("apikey" = [])),
    responses((status = 200, body = Paged<WebhookResource>), (status = 400, body = Problem), (status = 401, body = Problem)))]
pub(crate) async fn list(
    State(state): State<ApiState>,
    WalletAuth(wallet): WalletAuth,
    OriginalUri(uri): OriginalUri,
) -> Result<Json<Paged<WebhookResource>>, Problem> {
    let page = query::<PageQuery>(&uri)?.page()?;
    let found = state.webhooks.list_webhooks(wallet, probe(page)).await?;
    let contents = found.iter().map(WebhookResource::of).collect();
    Ok(Json(Paged::new(
        "WebhookNotificationPage",
        uri.path(),
        "",
        page,
        contents,
    )))
}

async fn load(state: &ApiState, wallet: WalletId, id: &str) -> Result<Webhook, Problem> {
    let id: WebhookId = path_id(id, "webhook_id")?;
    Ok(state.webhooks.get_webhook(wallet, id).await?)
}

/// How many times a change of a webhook is read and made again when other changes keep coming
/// in between, before the caller gets 409. Each retry means that another change was stored, so
/// the writers racing on one webhook all get through within about as many rounds as they are.
const CHANGE_ATTEMPTS: u32 = 10;

/// Changes a webhook by a read-modify-write: reads it, applies `change` at the current time and
/// stores the result over the revision read. When another change was stored in between (a
/// PATCH, a rotation, a 410 that disabled it), the write is refused as stale and `change` is
/// applied again to what is stored now, so concurrent changes compose instead of undoing each
/// other. Returns the webhook as stored and what `change` returned.
async fn change_webhook<T>(
    state: &ApiState,
    wallet: WalletId,
    id: WebhookId,
    mut change: impl FnMut(&mut Webhook, OffsetDateTime) -> T,
) -> Result<(Webhook, T), Problem> {
    let mut attempt = 1;
    loop {
        let mut webhook = state.webhooks.get_webhook(wallet, id).await?;
        let now = state.clock.now();
        let changed = change(&mut webhook, now);
        match state.webhooks.update_webhook(&webhook, now).await {
            Ok(revision) => {
                webhook.revision = revision;
                return Ok((webhook, changed));
            }
            Err(WebhookStoreError::Stale) if attempt < CHANGE_ATTEMPTS => {
                attempt += 1;
                tracing::debug!(webhook = %id, attempt, "webhook changed meanwhile; applying the change again");
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// One webhook of the wallet.
#[utoipa::path(get, operation_id = "getWebhookNotification", path = "/events/webhooks/{webhook_id}", tag = "webhooks",
    params(("webhook_id" = uuid::Uuid, Path)),
    security(("apikey" = [])),
    responses((status = 200, body = WebhookResource), (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn get(
    State(state): State<ApiState>,
    WalletAuth(wallet): WalletAuth,
    Path(webhook_id): Path<String>,
) -> Result<Json<WebhookResource>, Problem> {
    let webhook = load(&state, wallet, &webhook_id).await?;
    Ok(Json(WebhookResource::of(&webhook)))
}

/// `GET /events/webhooks/{id}/stats`: the window, `1h` (default) or `24h`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct StatsQuery {
    /// `1h` (12 buckets of 5 minutes, the default) or `24h` (24 buckets of an hour).
    #[serde(default)]
    #[param(pattern = "^(1h|24h)$")]
    window: Option<String>,
}

/// What the attempts of a span came to.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StatsTotals {
    attempts: u64,
    /// A response from 200 to 299, or `accepted`.
    succeeded: u64,
    failed: u64,
    /// `succeeded / attempts`; null without attempts.
    success_rate: Option<f64>,
    /// Null without attempts.
    avg_latency_ms: Option<f64>,
    /// Null without attempts.
    max_latency_ms: Option<f64>,
}

/// One bucket of the window.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StatsBucket {
    /// The bucket's first instant: an attempt counts in the bucket of its start.
    #[schema(value_type = String, format = DateTime)]
    start: Timestamp,
    attempts: u64,
    succeeded: u64,
    failed: u64,
    /// Null without attempts.
    avg_latency_ms: Option<f64>,
    /// Null without attempts.
    max_latency_ms: Option<f64>,
}

/// A webhook's attempts over a window, its backlog and its circuit breaker.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WebhookStatsResource {
    #[schema(value_type = uuid::Uuid)]
    webhook_id: WebhookId,
    /// `1h` or `24h`.
    window: &'static str,
    #[schema(value_type = String, format = DateTime)]
    since: Timestamp,
    /// Now.
    #[schema(value_type = String, format = DateTime)]
    until: Timestamp,
    bucket_seconds: u64,
    totals: StatsTotals,
    /// Oldest first, every bucket present.
    buckets: Vec<StatsBucket>,
    /// The webhook's unfinished deliveries (pending, in flight, retry-scheduled).
    backlog: u64,
    /// This process's dispatcher's view of the webhook's circuit breaker: `closed`, `open`,
    /// `half_open`, or `unknown` when this process runs no dispatcher.
    breaker: &'static str,
}

fn milliseconds(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn avg_latency_ms(stats: &webhook_ports::AttemptStats) -> Option<f64> {
    // Exact in f64 for any count below 2^53.
    #[allow(clippy::cast_precision_loss, reason = "counts stay far below 2^53")]
    let count = stats.attempts as f64;
    (stats.attempts > 0).then(|| milliseconds(stats.total_duration) / count)
}

/// A webhook's attempts in the last hour (12 buckets of 5 minutes) or day (24 of an hour),
/// its backlog and its circuit breaker.
#[utoipa::path(get, operation_id = "getWebhookStats", path = "/events/webhooks/{webhook_id}/stats", tag = "webhooks",
    params(("webhook_id" = uuid::Uuid, Path), StatsQuery),
    security(("apikey" = [])),
    responses((status = 200, body = WebhookStatsResource), (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn stats(
    State(state): State<ApiState>,
    WalletAuth(wallet): WalletAuth,
    Path(webhook_id): Path<String>,
    OriginalUri(uri): OriginalUri,
) -> Result<Json<WebhookStatsResource>, Problem> {
    let id: WebhookId = path_id(&webhook_id, "webhook_id")?;
    let q: StatsQuery = query(&uri)?;
    let (window, bucket, buckets) = match q.window.as_deref() {
        None | Some("1h") => ("1h", Duration::from_secs(300), 12),
        Some("24h") => ("24h", Duration::from_secs(3600), 24),
        Some(other) => {
            return Err(Problem::bad_request(format!(
                "window: must be 1h or 24h, got {other:?}"
            )));
        }
    };
    // Whole microseconds, as stored and shown.
    let until = Timestamp::from_datetime(state.clock.now()).as_datetime();
    let span = webhook_ports::StatsWindow {
        since: until - bucket * buckets,
        bucket,
        buckets,
    };
    let found = state
        .outbox
        .webhook_stats(wallet, id, span)
        .await
        .map_err(|e| match e {
            webhook_ports::OutboxError::NotFound => Problem::not_found("webhook"),
            other => other.into(),
        })?;
    let total = found
        .buckets
        .iter()
        .fold(webhook_ports::AttemptStats::default(), |all, b| {
            all.merge(*b)
        });
    #[allow(clippy::cast_precision_loss, reason = "counts stay far below 2^53")]
    let success_rate = (total.attempts > 0).then(|| total.succeeded as f64 / total.attempts as f64);
    let breaker = if state.dispatcher_runs {
        state
            .metrics
            .open_circuits(until)
            .into_iter()
            .find(|(webhook, _)| *webhook == id)
            .map_or("closed", |(_, word)| word)
    } else {
        "unknown"
    };
    let buckets = found
        .buckets
        .iter()
        .zip(0_u32..)
        .map(|(b, n)| StatsBucket {
            start: Timestamp::from_datetime(span.since + bucket * n),
            attempts: b.attempts,
            succeeded: b.succeeded,
            failed: b.failed(),
            avg_latency_ms: avg_latency_ms(b),
            max_latency_ms: b.max_duration.map(milliseconds),
        })
        .collect();
    Ok(Json(WebhookStatsResource {
        webhook_id: id,
        window,
        since: Timestamp::from_datetime(span.since),
        until: Timestamp::from_datetime(until),
        bucket_seconds: bucket.as_secs(),
        totals: StatsTotals {
            attempts: total.attempts,
            succeeded: total.succeeded,
            failed: total.failed(),
            success_rate,
            avg_latency_ms: avg_latency_ms(&total),
            max_latency_ms: total.max_duration.map(milliseconds),
        },
        buckets,
        backlog: found.backlog,
        breaker,
    }))
}

/// Changes a webhook's settings. Disabling it cancels its unfinished deliveries.
#[utoipa::path(patch, operation_id = "updateWebhookNotification", path = "/events/webhooks/{webhook_id}", tag = "webhooks",
    params(("webhook_id" = uuid::Uuid, Path)),
    request_body = UpdateWebhook,
    security(("apikey" = [])),
    responses((status = 200, body = WebhookResource), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 404, body = Problem), (status = 409, description = "The webhook kept changing under concurrent requests; send the change again", body = Problem),
        (status = 415, body = Problem), (status = 422, body = Problem), (status = 413, body = Problem)))]
pub(crate) async fn update(
    State(state): State<ApiState>,
    WalletAuth(wallet): WalletAuth,
    Path(webhook_id): Path<String>,
    JsonBody(request): JsonBody<UpdateWebhook>,
) -> Result<Json<WebhookResource>, Problem> {
    let id: WebhookId = path_id(&webhook_id, "webhook_id")?;
    // Validate everything before reading, so a bad request is refused the same for any id.
    let url = request
        .url
        .as_deref()
        .map(|text| parse_url(text, &state))
        .transpose()?;
    let headers = request.custom_headers.map(parse_headers).transpose()?;
    let event_types = request
        .event_types
        .map(|v| v.as_deref().map(parse_event_types).transpose())
        .transpose()?;
    let retry_policy = request
        .retry_policy
        .map(|v| v.map(parse_retry_policy).transpose())
        .transpose()?;
    let rate_limit = request
        .rate_limit
        .map(|v| v.map(parse_rate_limit).transpose())
        .transpose()?;

    // Only the fields the request names are set: whatever else changed meanwhile (a rotation,
    // a 410 that disabled the target) stays as stored.
    let (webhook, disabled) = change_webhook(&state, wallet, id, |webhook, _| {
        let was_enabled = webhook.enabled;
        if let Some(url) = &url {
            webhook.url = url.clone();
        }
        if let Some(headers) = &headers {
            webhook.custom_headers = headers.clone();
        }
        if let Some(event_types) = &event_types {
            webhook.event_types = event_types.clone();
        }
        if let Some(retry_policy) = &retry_policy {
            webhook.retry_policy = retry_policy.clone();
        }
        if let Some(rate_limit) = rate_limit {
            webhook.rate_limit = rate_limit;
        }
        if let Some(enabled) = request.enabled {
            webhook.enabled = enabled;
        }
        if let Some(ordered) = request.ordered {
            webhook.ordered = ordered;
        }
        was_enabled && !webhook.enabled
    })
    .await?;
    tracing::info!(webhook = %webhook.id, %wallet, "webhook updated");
    if disabled {
        settle(&state, id).await?;
    }
    Ok(Json(WebhookResource::of(&webhook)))
}

/// Deletes a webhook and cancels its unfinished deliveries; their history stays readable.
#[utoipa::path(delete, operation_id = "deleteWebhookNotification", path = "/events/webhooks/{webhook_id}", tag = "webhooks",
    params(("webhook_id" = uuid::Uuid, Path)),
    security(("apikey" = [])),
    responses((status = 200, description = "Deleted"), (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn delete(
    State(state): State<ApiState>,
    WalletAuth(wallet): WalletAuth,
    Path(webhook_id): Path<String>,
) -> Result<(), Problem> {
    let id: WebhookId = path_id(&webhook_id, "webhook_id")?;
    state
        .webhooks
        .delete_webhook(wallet, id, state.clock.now())
        .await?;
    tracing::info!(webhook = %id, %wallet, "webhook deleted");
    settle(&state, id).await
}

/// How often [`settle`] asks whether attempts are still in flight.
const SETTLE_POLL: Duration = Duration::from_millis(10);

/// After a webhook was deleted or disabled: tells this process's dispatcher to drop what waits
/// for it (other instances hear it through the database), then waits until no attempt to it is
/// in flight anywhere, so that once the caller has the answer, no attempt to it starts. No
/// claim serves the webhook any more, so what is in flight only ends: the wait lasts as long
/// as an attempt under way (the attempt timeout at most), and never past the end of the
/// latest lease held when it began, after which nothing of those leases can start.
async fn settle(state: &ApiState, id: WebhookId) -> Result<(), Problem> {
    let _ = state.target_changes.send(id);
    let mut deadline = None;
    loop {
        let now = state.clock.now();
        let Some(until) = state.queue.settle_target(id, now).await? else {
            return Ok(());
        };
        if now >= *deadline.get_or_insert(until) {
            return Ok(());
        }
        tokio::time::sleep(SETTLE_POLL).await;
    }
}

/// The longest grace period a rotation may ask for.
const MAX_ROTATION_GRACE: Duration = Duration::from_secs(30 * 24 * 3600);

/// `POST /events/webhooks/{id}/secret/rotate`; the body is optional.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RotateSecret {
    /// The new secret; generated when absent.
    #[serde(default)]
    #[schema(example = "whsec_YW4gZXhhbXBsZSBzZWNyZXQsIDMyIGJ5")]
    secret: Option<String>,
    /// How long the old secret keeps signing beside the new one, at most 30 days; the
    /// service's default when absent.
    #[serde(default)]
    #[schema(maximum = 2_592_000)]
    grace_seconds: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RotatedSecret {
    /// The new secret, shown only now.
    secret: String,
    /// Until then, deliveries carry a signature with the old secret too; absent when the
    /// webhook was not signed before.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    previous_secret_expires_at: Option<Timestamp>,
}

/// Replaces the signing secret; the old one keeps signing for a grace period.
#[utoipa::path(post, operation_id = "rotateWebhookSecret", path = "/events/webhooks/{webhook_id}/secret/rotate", tag = "webhooks",
    params(("webhook_id" = uuid::Uuid, Path)),
    request_body(content = Option<RotateSecret>, description = "Optional"),
    security(("apikey" = [])),
    responses((status = 200, body = RotatedSecret), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 404, body = Problem), (status = 409, description = "The webhook kept changing under concurrent requests; send the rotation again", body = Problem),
        (status = 422, body = Problem), (status = 413, body = Problem), (status = 415, body = Problem)))]
pub(crate) async fn rotate_secret(
    State(state): State<ApiState>,
    WalletAuth(wallet): WalletAuth,
    Path(webhook_id): Path<String>,
    OptionalJsonBody(request): OptionalJsonBody<RotateSecret>,
) -> Result<Json<RotatedSecret>, Problem> {
    let id: WebhookId = path_id(&webhook_id, "webhook_id")?;
    let request = request.unwrap_or_default();
    let next = match request.secret {
        Some(text) => parse_secret(&text)?,
        None => new_secret()?,
    };
    let grace = match request.grace_seconds {
        Some(secs) if Duration::from_secs(secs) > MAX_ROTATION_GRACE => {
            return Err(Problem::unprocessable(format!(
                "graceSeconds: must be at most {}",
                MAX_ROTATION_GRACE.as_secs()
            )));
        }
        Some(secs) => Duration::from_secs(secs),
        None => state.limits.secret_rotation_grace(),
    };
    // Rotates the keys as stored at the write, so that a concurrent change keeps this secret.
    let (_, previous_expires) = change_webhook(&state, wallet, id, |webhook, now| {
        let previous_expires = webhook
            .signing_keys
            .as_ref()
            .map(|_| Timestamp::from_datetime(webhook_domain::add_saturating(now, grace)));
        webhook.signing_keys = Some(match &webhook.signing_keys {
            Some(keys) => keys.rotate(next.clone(), now, grace),
            None => SigningKeys::new(next.clone()),
        });
        previous_expires
    })
    .await?;
    tracing::info!(webhook = %id, %wallet, "signing secret rotated");
    Ok(Json(RotatedSecret {
        secret: next.expose(),
        previous_secret_expires_at: previous_expires,
    }))
}

/// What a test send came to.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TestResult {
    /// The target answered 2xx.
    delivered: bool,
    #[schema(value_type = uuid::Uuid)]
    event_id: EventId,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_code: Option<u16>,
    duration_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_body: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// The event type of test sends.
pub(crate) const TEST_EVENT_TYPE: &str = "WebhookTest";

/// Sends a `WebhookTest` event to this webhook now, signed and with its headers like any
/// delivery, and reports the answer. Nothing is stored or retried.
#[utoipa::path(post, operation_id = "testWebhookNotification", path = "/events/webhooks/{webhook_id}/test", tag = "webhooks",
    params(("webhook_id" = uuid::Uuid, Path)),
    security(("apikey" = [])),
    responses((status = 200, body = TestResult), (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn test(
    State(state): State<ApiState>,
    WalletAuth(wallet): WalletAuth,
    Path(webhook_id): Path<String>,
) -> Result<Json<TestResult>, Problem> {
    let webhook = load(&state, wallet, &webhook_id).await?;
    let now = state.clock.now();
    let event = Event::new(
        EventId::from_uuid(uuid::Uuid::new_v4()),
        Timestamp::from_datetime(now),
        EventType::parse(TEST_EVENT_TYPE).map_err(|e| Problem::internal(&e))?,
        serde_json::json!({ "webhookId": webhook.id, "message": "a test event from webhookd" }),
        wallet,
    )
    .map_err(|e| Problem::internal(&e))?;
    let message = OutboundMessage::build(&event, &webhook, now);
    let report = state
        .transport
        .send(&webhook.url, &message, state.attempt_timeout)
        .await;
    Ok(Json(TestResult {
        delivered: report.outcome.is_success(),
        event_id: event.id(),
        status_code: report.detail.status(),
        duration_ms: u64::try_from(report.duration.as_millis()).unwrap_or(u64::MAX),
        response_body: report.response_excerpt,
        error: report.error,
    }))
}
