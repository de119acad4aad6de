//! `/events/webhooks`: register and list a wallet's webhooks, in the Identus shapes.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::Uri;
use serde::{Deserialize, Serialize};
use webhook_domain::{
    CustomHeaders, EventType, EventTypeFilter, RateLimit, RetryPolicy, SigningKeys, SigningSecret,
    Timestamp, Webhook, WebhookId, WebhookScope, WebhookUrl,
};
use webhook_ports::Page;

use super::{ApiState, JsonBody, Problem, WalletAuth};
use crate::secrets;

/// `POST /events/webhooks`. `url` and `customHeaders` are Identus's; the rest are ours.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct CreateWebhook {
    url: String,
    #[serde(default)]
    custom_headers: Option<BTreeMap<String, String>>,
    #[serde(default)]
    event_types: Option<Vec<String>>,
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    retry_policy: Option<serde_json::Value>,
    /// One attempt at a time, in publish order.
    #[serde(default)]
    ordered: Option<bool>,
    /// Attempts per second at most.
    #[serde(default)]
    rate_limit: Option<serde_json::Value>,
}

/// The webhook resource: Identus's `{id, url, customHeaders, createdAt}` plus our settings.
/// `secret` appears only in the answer to the creation.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WebhookResource {
    id: WebhookId,
    url: String,
    custom_headers: BTreeMap<String, String>,
    created_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_types: Option<EventTypeFilter>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_policy: Option<RetryPolicy>,
    enabled: bool,
    ordered: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
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

pub(crate) async fn create(
    State(state): State<ApiState>,
    WalletAuth(wallet): WalletAuth,
    JsonBody(request): JsonBody<CreateWebhook>,
) -> Result<Json<WebhookResource>, Problem> {
    let invalid = |e: &dyn std::fmt::Display| Problem::unprocessable(e.to_string());
    let url = WebhookUrl::parse(&request.url).map_err(|e| invalid(&e))?;
    let custom_headers =
        CustomHeaders::new(request.custom_headers.unwrap_or_default()).map_err(|e| invalid(&e))?;
    let event_types = request
        .event_types
        .map(|names| {
            names
                .iter()
                .map(|name| EventType::parse(name))
                .collect::<Result<Vec<_>, _>>()
                .map(EventTypeFilter::new)
        })
        .transpose()
        .map_err(|e| invalid(&format_args!("eventTypes: {e}")))?;
    let secret = match request.secret {
        Some(text) => SigningSecret::parse(&text).map_err(|e| invalid(&e))?,
        None => secrets::signing_secret().map_err(|e| Problem::internal(&e))?,
    };
    let retry_policy = request
        .retry_policy
        .map(serde_json::from_value::<RetryPolicy>)
        .transpose()
        .map_err(|e| invalid(&format_args!("retryPolicy: {e}")))?;
    let rate_limit = request
        .rate_limit
        .map(|value| {
            serde_json::from_value::<u32>(value)
                .map_err(|_| "rateLimit: must be a whole number of attempts per second".to_owned())
                .and_then(|n| RateLimit::per_second(n).map_err(|e| e.to_string()))
        })
        .transpose()
        .map_err(|e| invalid(&e))?;

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PageQuery {
    #[serde(default)]
    offset: Option<u64>,
    #[serde(default)]
    limit: Option<u32>,
}

/// Identus's `WebhookNotificationPage`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WebhookPage {
    #[serde(rename = "self")]
    self_: String,
    kind: &'static str,
    page_of: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    previous: Option<String>,
    contents: Vec<WebhookResource>,
}

const DEFAULT_PAGE_SIZE: u32 = 100;
const MAX_PAGE_SIZE: u32 = 1000;

pub(crate) async fn list(
    State(state): State<ApiState>,
    WalletAuth(wallet): WalletAuth,
    uri: Uri,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<WebhookPage>, Problem> {
    let Query(query) = query.map_err(|e| Problem::bad_request(e.body_text()))?;
    let offset = query.offset.unwrap_or(0);
    let limit = query.limit.unwrap_or(DEFAULT_PAGE_SIZE);
    if !(1..=MAX_PAGE_SIZE).contains(&limit) {
        return Err(Problem::bad_request(format!(
            "limit: must be between 1 and {MAX_PAGE_SIZE}"
        )));
    }
    // One more than asked tells whether a next page exists.
    let mut found = state
        .webhooks
        .list_webhooks(
            wallet,
            Page {
                offset,
                limit: limit + 1,
            },
        )
        .await?;
    let has_next = found.len() > limit as usize;
    found.truncate(limit as usize);
    let path = uri.path().to_owned();
    let link = |offset: u64| format!("{path}?offset={offset}&limit={limit}");
    Ok(Json(WebhookPage {
        self_: link(offset),
        kind: "WebhookNotificationPage",
        page_of: path.clone(),
        next: has_next.then(|| link(offset + u64::from(limit))),
        previous: (offset > 0).then(|| link(offset.saturating_sub(u64::from(limit)))),
        contents: found.iter().map(WebhookResource::of).collect(),
    }))
}
