//! `POST /events`: a producer publishes one event for its wallet. The answer (202) comes only
//! after the event and its deliveries are committed.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use webhook_domain::{Event, EventId, EventType, Timestamp};
use webhook_ports::Idempotency;

use super::{ApiState, JsonBody, Problem, WalletAuth};

/// The longest idempotency key accepted.
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PublishEvent {
    #[serde(rename = "type")]
    event_type: String,
    data: serde_json::Value,
    /// A producer-chosen id makes a repeated publish a no-op.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<EventId>,
}

#[derive(Debug, Serialize)]
pub(crate) struct PublishAccepted {
    id: EventId,
    deliveries: u32,
    replayed: bool,
}

pub(crate) async fn publish(
    State(state): State<ApiState>,
    WalletAuth(wallet): WalletAuth,
    headers: HeaderMap,
    JsonBody(request): JsonBody<PublishEvent>,
) -> Result<(StatusCode, Json<PublishAccepted>), Problem> {
    let idempotency = match headers.get("idempotency-key") {
        None => None,
        Some(value) => {
            let key = value
                .to_str()
                .ok()
                .filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY_LEN)
                .ok_or_else(|| {
                    Problem::bad_request(format!(
                        "Idempotency-Key: must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"
                    ))
                })?;
            let canonical = serde_json::to_vec(&request).unwrap_or_default();
            Some(Idempotency {
                key: key.to_owned(),
                fingerprint: format!("{:x}", Sha256::digest(&canonical)),
            })
        }
    };
    let event_type =
        EventType::parse(&request.event_type).map_err(|e| Problem::unprocessable(e.to_string()))?;
    let now = state.clock.now();
    let id = request
        .id
        .unwrap_or_else(|| EventId::from_uuid(uuid::Uuid::new_v4()));
    let event = Event::new(
        id,
        Timestamp::from_datetime(now),
        event_type,
        request.data,
        wallet,
    )
    .map_err(|e| Problem::unprocessable(e.to_string()))?;
    let published = state.outbox.publish(&event, idempotency, now).await?;
    if published.deliveries > 0 && !published.replayed {
        state.wake.notify_one();
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(PublishAccepted {
            id: published.event_id,
            deliveries: published.deliveries,
            replayed: published.replayed,
        }),
    ))
}
