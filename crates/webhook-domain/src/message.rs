//! The exact HTTP request for one attempt: the compact JSON envelope and every header webhookd
//! sets, so the transport only has to send bytes.

use std::fmt;

use time::OffsetDateTime;

use crate::{Event, Webhook};

/// The body and headers of one attempt (the transport adds `Host`, `Content-Length` and
/// `User-Agent`). `Debug` shows header names only: values may be credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct OutboundMessage {
    pub body: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

impl OutboundMessage {
    /// Builds the request for `event` to `webhook` at `now`: `Content-Type`, the Standard
    /// Webhooks `webhook-id` (the event id), `webhook-timestamp` and, when the target has
    /// signing keys, `webhook-signature`; then the target's custom headers.
    pub fn build(event: &Event, webhook: &Webhook, now: OffsetDateTime) -> Self {
        let body = event.to_json_bytes();
        let msg_id = event.id().to_string();
        let timestamp = now.unix_timestamp();
        let mut headers = vec![
            ("content-type".to_owned(), "application/json".to_owned()),
            ("webhook-id".to_owned(), msg_id.clone()),
            ("webhook-timestamp".to_owned(), timestamp.to_string()),
        ];
        if let Some(keys) = &webhook.signing_keys {
            headers.push((
                "webhook-signature".to_owned(),
                keys.signature_header(&msg_id, timestamp, &body, now),
            ));
        }
        headers.extend(
            webhook
                .custom_headers
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        Self { body, headers }
    }

    /// The value of the first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl fmt::Debug for OutboundMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboundMessage")
            .field("body_len", &self.body.len())
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish()
    }
}
