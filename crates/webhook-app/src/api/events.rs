//! `POST /events` and `POST /events/batch`: producers publish events. The answer (202) comes
//! only after the events and their deliveries are committed. A wallet key publishes into its
//! own wallet; the admin key into any wallet named by `walletId`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use webhook_domain::{Event, EventId, EventType, Timestamp, WalletId};
use webhook_ports::{Idempotency, PublishItem, Published};

use super::auth::{Caller, WalletAuth};
use super::json::JsonBody;
use super::params::path_id;
use super::problem::Problem;
use super::state::ApiState;

/// The longest idempotency key accepted.
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// One event to publish.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct PublishEvent {
    /// One of the four Identus types (whose `data` is validated), or a custom name matching
    /// `^[A-Za-z][A-Za-z0-9._-]{0,127}$`.
    #[serde(rename = "type")]
    #[schema(pattern = "^[A-Za-z][A-Za-z0-9._-]{0,127}$")]
    event_type: String,
    #[schema(value_type = Object)]
    data: serde_json::Value,
    /// A producer-chosen id makes a repeated publish a no-op.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<uuid::Uuid>)]
    id: Option<EventId>,
    /// Admin key only: the wallet to publish into. With a wallet key it may only name that
    /// wallet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<uuid::Uuid>)]
    wallet_id: Option<WalletId>,
    /// The event's idempotency key, as an alternative to the `Idempotency-Key` header (which
    /// a batch cannot carry per event); not both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 255, pattern = "^[!-~]*$")]
    idempotency_key: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PublishAccepted {
    #[schema(value_type = uuid::Uuid)]
    id: EventId,
    /// Deliveries created for it (by the first publish, when replayed).
    deliveries: u32,
    /// This publish repeated an earlier one (same id or idempotency key) and stored nothing.
    replayed: bool,
}

impl From<Published> for PublishAccepted {
    fn from(published: Published) -> Self {
        Self {
            id: published.event_id,
            deliveries: published.deliveries,
            replayed: published.replayed,
        }
    }
}

/// `POST /events/batch`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PublishBatch {
    /// At least one event; at most `api.max_batch_events` (1000 unless configured).
    #[schema(min_items = 1)]
    events: Vec<PublishEvent>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BatchAccepted {
    /// One result per event, in order.
    events: Vec<PublishAccepted>,
}

/// Whether `text` is a valid idempotency key: 1 to 255 visible ASCII characters.
fn valid_idempotency_key(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_IDEMPOTENCY_KEY_LEN
        && text.bytes().all(|b| b.is_ascii_graphic())
}

fn invalid_key(field: &str) -> String {
    format!(
        "{field}: must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters without spaces"
    )
}

/// Validates one request into an event for its wallet; `field` prefixes error paths in a batch.
fn to_item(
    state: &ApiState,
    caller: Caller,
    request: PublishEvent,
    header_key: Option<String>,
    field: &str,
) -> Result<PublishItem, Problem> {
    let wallet = match (caller, request.wallet_id) {
        (Caller::Wallet(own), None) => own,
        (Caller::Wallet(own), Some(named)) if named == own => own,
        (Caller::Wallet(_), Some(_)) => {
            return Err(Problem::forbidden(format!(
                "{field}walletId: a wallet key publishes only into its own wallet"
            )));
        }
        (Caller::Admin, Some(named)) => named,
        (Caller::Admin, None) => {
            return Err(Problem::unprocessable(format!(
                "{field}walletId: required when publishing with the admin key"
            )));
        }
    };
    let key = match (header_key, &request.idempotency_key) {
        (Some(key), None) => Some(key),
        (None, Some(key)) if valid_idempotency_key(key) => Some(key.clone()),
        (None, Some(_)) => {
            return Err(Problem::unprocessable(invalid_key(&format!(
                "{field}idempotencyKey"
            ))));
        }
        (None, None) => None,
        (Some(_), Some(_)) => {
            return Err(Problem::unprocessable(
                "idempotencyKey: give it in the Idempotency-Key header or the body, not both",
            ));
        }
    };
    let idempotency = key.map(|key| Idempotency {
        key,
        fingerprint: format!(
            "{:x}",
            Sha256::digest(serde_json::to_vec(&request).unwrap_or_default())
        ),
    });
    let event_type = EventType::parse(&request.event_type)
        .map_err(|e| Problem::unprocessable(format!("{field}{e}")))?;
    let now = state.clock.now();
    let event = Event::new(
        request
            .id
            .unwrap_or_else(|| EventId::from_uuid(uuid::Uuid::new_v4())),
        Timestamp::from_datetime(now),
        event_type,
        request.data,
        wallet,
    )
    .map_err(|e| Problem::unprocessable(format!("{field}{e}")))?;
    Ok(PublishItem { event, idempotency })
}

impl From<crate::publisher::PublishError> for Problem {
    fn from(e: crate::publisher::PublishError) -> Self {
        match e {
            crate::publisher::PublishError::Wallet(e) => e.into(),
            crate::publisher::PublishError::Outbox(e) => e.into(),
        }
    }
}

/// Publishes one event.
#[utoipa::path(post, operation_id = "publishEvent", path = "/events", tag = "events",
    request_body = PublishEvent,
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[!-~]*$",
        description = "Makes a repeated publish a no-op; the same key with another body is a 409")),
    security(("apikey" = []), ("admin" = [])),
    responses(
        (status = 202, description = "Stored durably", body = PublishAccepted),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, description = "No such wallet (admin key)", body = Problem),
        (status = 409, description = "Idempotency key reused with another body", body = Problem),
        (status = 413, body = Problem), (status = 415, body = Problem), (status = 422, body = Problem),
        (status = 503, body = Problem),
    ))]
pub(crate) async fn publish(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    JsonBody(request): JsonBody<PublishEvent>,
) -> Result<(StatusCode, Json<PublishAccepted>), Problem> {
    let header_key = headers
        .get("idempotency-key")
        .map(|value| {
            value
                .to_str()
                .ok()
                .filter(|k| valid_idempotency_key(k))
                .map(str::to_owned)
                .ok_or_else(|| Problem::bad_request(invalid_key("Idempotency-Key")))
        })
        .transpose()?;
    let item = to_item(&state, caller, request, header_key, "")?;
    // The admin key may name any wallet; it must exist.
    let published = state
        .publishing
        .publish(item, matches!(caller, Caller::Admin))
        .await?;
    Ok((StatusCode::ACCEPTED, Json(published.into())))
}

/// Publishes many events in one transaction: all are stored, or none.
#[utoipa::path(post, operation_id = "publishEvents", path = "/events/batch", tag = "events",
    request_body = PublishBatch,
    security(("apikey" = []), ("admin" = [])),
    responses(
        (status = 202, description = "All stored durably", body = BatchAccepted),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 413, body = Problem),
        (status = 415, body = Problem), (status = 422, body = Problem), (status = 503, body = Problem),
    ))]
pub(crate) async fn publish_batch(
    State(state): State<ApiState>,
    caller: Caller,
    JsonBody(request): JsonBody<PublishBatch>,
) -> Result<(StatusCode, Json<BatchAccepted>), Problem> {
    let max = state.limits.max_batch_events;
    if request.events.is_empty() || request.events.len() > max {
        return Err(Problem::unprocessable(format!(
            "events: must hold 1 to {max} events, got {}",
            request.events.len()
        )));
    }
    let items = request
        .events
        .into_iter()
        .enumerate()
        .map(|(i, event)| to_item(&state, caller, event, None, &format!("events[{i}].")))
        .collect::<Result<Vec<_>, _>>()?;
    let published = state
        .publishing
        .publish_batch(&items, matches!(caller, Caller::Admin))
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(BatchAccepted {
            events: published.into_iter().map(Into::into).collect(),
        }),
    ))
}

/// One event of the wallet, as its webhooks receive it.
#[utoipa::path(get, operation_id = "getEvent", path = "/events/{event_id}", tag = "events",
    params(("event_id" = uuid::Uuid, Path)),
    security(("apikey" = [])),
    responses(
        (status = 200, description = "The envelope `{id, ts, type, data, walletId}`", body = Object),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem),
    ))]
pub(crate) async fn get(
    State(state): State<ApiState>,
    WalletAuth(wallet): WalletAuth,
    Path(event_id): Path<String>,
) -> Result<Response, Problem> {
    let id: EventId = path_id(&event_id, "event_id")?;
    let event = state
        .outbox
        .get_event(wallet, id)
        .await
        .map_err(|e| match e {
            webhook_ports::OutboxError::NotFound => Problem::not_found("event"),
            other => other.into(),
        })?;
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        event.to_json_bytes(),
    )
        .into_response())
}
