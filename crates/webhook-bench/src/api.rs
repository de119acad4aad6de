//! The HTTP client side: one pooled keep-alive hyper client, the webhookd calls the scenarios
//! make to set themselves up (wallets, keys, webhooks), and the event bodies they publish.

use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use uuid::Uuid;

/// A keep-alive HTTP/1.1 client whose pool holds `connections` per host.
#[derive(Debug, Clone)]
pub(crate) struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Http {
    pub(crate) fn new(connections: usize) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(connections)
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector);
        Self { client }
    }

    /// POSTs a JSON body with extra headers; answers the status and the whole body.
    pub(crate) async fn post(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let answer = self.post_answer(url, headers, body).await?;
        Ok((answer.status, answer.body))
    }

    /// As [`Self::post`], with the answer's content type.
    pub(crate) async fn post_answer(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> anyhow::Result<Answer> {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(url)
            .header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = self
            .client
            .request(request.body(Full::new(body))?)
            .await
            .with_context(|| format!("POST {url}"))?;
        let status = response.status();
        let content_type = response
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Answer {
            status,
            content_type,
            body,
        })
    }

    /// Sends `method` with an optional JSON body; answers the status and the whole body.
    pub(crate) async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let mut request = Request::builder().method(method.clone()).uri(url);
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = self
            .client
            .request(request.body(Full::new(Bytes::from(body.unwrap_or_default())))?)
            .await
            .with_context(|| format!("{method} {url}"))?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    pub(crate) async fn get(&self, url: &str) -> anyhow::Result<StatusCode> {
        let request = Request::builder()
            .method(Method::GET)
            .uri(url)
            .body(Full::new(Bytes::new()))?;
        let response = self.client.request(request).await?;
        let status = response.status();
        response.into_body().collect().await?;
        Ok(status)
    }
}

/// A whole HTTP answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) content_type: Option<String>,
    pub(crate) body: Bytes,
}

/// The admin and wallet keys the harness gives every webhookd it starts.
pub(crate) const ADMIN_TOKEN: &str = "bench-admin-token";
pub(crate) const DEFAULT_WALLET_KEY: &str = "bench-default-wallet-key";

/// One webhookd's REST API under its base path.
#[derive(Debug, Clone)]
pub(crate) struct Api {
    pub(crate) http: Http,
    /// `http://127.0.0.1:<port>/cloud-agent`.
    pub(crate) base: String,
}

impl Api {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn post_expecting(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: serde_json::Value,
        expected: StatusCode,
    ) -> anyhow::Result<serde_json::Value> {
        let (status, answer) = self
            .http
            .post(&self.url(path), headers, Bytes::from(body.to_string()))
            .await?;
        if status != expected {
            bail!(
                "POST {path} answered {status} (expected {expected}): {}",
                String::from_utf8_lossy(&answer)
            );
        }
        if answer.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_slice(&answer).with_context(|| format!("POST {path}: the answer"))
    }

    /// Creates a wallet and an API key for it through the admin API; answers the key.
    pub(crate) async fn create_wallet(&self, name: &str) -> anyhow::Result<String> {
        let admin = [("x-admin-api-key", ADMIN_TOKEN)];
        let wallet = self
            .post_expecting(
                "/wallets",
                &admin,
                serde_json::json!({ "name": name }),
                StatusCode::CREATED,
            )
            .await?;
        let id = wallet["id"].as_str().context("a wallet without an id")?;
        let key = self
            .post_expecting(
                &format!("/wallets/{id}/apikeys"),
                &admin,
                serde_json::Value::Null,
                StatusCode::CREATED,
            )
            .await?;
        Ok(key["apiKey"]
            .as_str()
            .context("an API key answer without apiKey")?
            .to_owned())
    }

    /// Registers a webhook for the wallet of `key`.
    pub(crate) async fn register_webhook(&self, key: &str, url: &str) -> anyhow::Result<()> {
        self.create_webhook(key, serde_json::json!({ "url": url }))
            .await
            .map(drop)
    }

    /// Registers the webhook `body` describes for the wallet of `key`; answers its id.
    pub(crate) async fn create_webhook(
        &self,
        key: &str,
        body: serde_json::Value,
    ) -> anyhow::Result<String> {
        let created = self
            .post_expecting("/events/webhooks", &[("apikey", key)], body, StatusCode::OK)
            .await?;
        Ok(created["id"]
            .as_str()
            .context("a webhook answer without id")?
            .to_owned())
    }

    /// Sends `method` to `path` as the wallet of `key` and fails unless it answers `expected`.
    pub(crate) async fn expect(
        &self,
        method: Method,
        path: &str,
        key: &str,
        body: Option<serde_json::Value>,
        expected: StatusCode,
    ) -> anyhow::Result<()> {
        let (status, answer) = self
            .http
            .send(
                method.clone(),
                &self.url(path),
                &[("apikey", key)],
                body.map(|b| b.to_string()),
            )
            .await?;
        if status != expected {
            bail!(
                "{method} {path} answered {status} (expected {expected}): {}",
                String::from_utf8_lossy(&answer)
            );
        }
        Ok(())
    }
}

/// The `data` of every published event: Identus's example `ConnectionUpdated`, so that the
/// validation of the four Identus types runs as it would in production.
pub(crate) const CONNECTION_DATA: &str = r#"{"connectionId":"c10787cf-99bb-47f4-99bb-1fdcca32b673","label":"Connect with Alice","role":"Inviter","state":"InvitationGenerated","invitation":{"id":"c10787cf-99bb-47f4-99bb-1fdcca32b673","type":"https://didcomm.org/out-of-band/2.0/invitation","from":"did:peer:2.Ez6LSfuJvTtQ9sY1UH4vAQsNGzRZTc67BuTnL7cwQwuXHsmnP.Vz6MkkLgN5wJpTbfC2JJDn6RBt5wXxBMeRhJWyrXoEf5i7T6F.SeyJ0IjoiZG0iLCJzIjoiaHR0cDovL2hvc3QuZG9ja2VyLmludGVybmFsOjgwODAvZGlkY29tbSIsInIiOltdLCJhIjpbImRpZGNvbW0vdjIiXX0","invitationUrl":"https://my.domain.com/path?_oob=eyJpZCI6ImMxMDc4N2NmLTk5YmItNDdmNC05OWJiLTFmZGNjYTMyYjY3MyJ9"},"createdAt":"2023-07-06T12:01:19.760126Z","self":"c10787cf-99bb-47f4-99bb-1fdcca32b673","kind":"Connection"}"#;

/// One event as `POST /events` takes it, with the producer-chosen `id`.
pub(crate) fn event_body(id: Uuid) -> String {
    format!(r#"{{"id":"{id}","type":"ConnectionUpdated","data":{CONNECTION_DATA}}}"#)
}

/// Several events as `POST /events/batch` takes them.
pub(crate) fn batch_body(ids: &[Uuid]) -> String {
    let items: Vec<String> = ids.iter().map(|&id| event_body(id)).collect();
    format!(r#"{{"events":[{}]}}"#, items.join(","))
}

/// An envelope as webhookd delivers it, for the sink's own ceiling.
pub(crate) fn envelope(id: Uuid) -> String {
    format!(
        r#"{{"id":"{id}","ts":"2024-05-01T12:00:00.000000Z","type":"ConnectionUpdated","data":{CONNECTION_DATA},"walletId":"00000000-0000-0000-0000-000000000000"}}"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_valid_json_with_the_chosen_ids() {
        let a = Uuid::new_v4();
        let b = Uuid::new_v4();
        let one: serde_json::Value = serde_json::from_str(&event_body(a)).unwrap();
        assert_eq!(one["id"], a.to_string());
        assert_eq!(one["data"]["state"], "InvitationGenerated");
        let batch: serde_json::Value = serde_json::from_str(&batch_body(&[a, b])).unwrap();
        assert_eq!(batch["events"][1]["id"], b.to_string());
        // A batch of 100 stays well under webhookd's default body limit (256 KiB).
        let ids: Vec<Uuid> = (0..100).map(|_| Uuid::new_v4()).collect();
        assert!(batch_body(&ids).len() < 128 * 1024);
        let envelope = envelope(a);
        serde_json::from_str::<serde_json::Value>(&envelope).unwrap();
        assert_eq!(crate::sink::event_id_in(envelope.as_bytes()), Some(a));
    }
}
