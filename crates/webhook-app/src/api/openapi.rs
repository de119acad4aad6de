//! The OpenAPI 3.1 document, generated from the handlers and their types. It is served at
//! `/openapi.json` (with the configured base path as its server) and committed as
//! `docs/openapi.json`; a test fails when the two drift.

use axum::Json;
use axum::extract::State;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, Server};
use utoipa::{Modify, OpenApi};

use super::{ApiState, admin, deliveries, events, webhooks};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "webhookd",
        description = "Webhook notifications: a superset of the Hyperledger Identus Cloud Agent's webhook API.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        admin::create_wallet, admin::list_wallets, admin::get_wallet, admin::create_api_key,
        admin::create_entity, admin::get_entity, admin::bind_api_key,
        webhooks::create, webhooks::list, webhooks::get, webhooks::update, webhooks::delete,
        webhooks::rotate_secret, webhooks::test,
        events::publish, events::publish_batch, events::get,
        deliveries::list_for_event, deliveries::list_for_webhook, deliveries::get,
        deliveries::redeliver, deliveries::start_redelivery, deliveries::get_redelivery,
    ),
    components(schemas(super::Problem)),
    modifiers(&Security),
    tags(
        (name = "admin", description = "Wallets and API keys (x-admin-api-key)"),
        (name = "webhooks", description = "A wallet's webhooks (apikey)"),
        (name = "events", description = "Publishing events"),
        (name = "deliveries", description = "Delivery logs and redelivery (apikey)"),
    ),
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "apikey",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("apikey"))),
        );
        components.add_security_scheme(
            "admin",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-admin-api-key"))),
        );
    }
}

/// The document for an API served under `base_path`.
pub fn document(base_path: &str) -> Document {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc.servers = Some(vec![Server::new(if base_path.is_empty() {
        "/"
    } else {
        base_path
    })]);
    doc
}

/// The document as committed under `docs/`: for the default base path, pretty-printed.
///
/// # Panics
/// Never: the document is plain data.
pub fn committed_text() -> String {
    let mut text = serde_json::to_string_pretty(&document("/cloud-agent"))
        .expect("an OpenAPI document serialises");
    text.push('\n');
    text
}

pub(crate) async fn serve(State(state): State<ApiState>) -> Json<Document> {
    Json(document(&state.base_path))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_committed_document_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
        let committed = std::fs::read_to_string(path).expect("docs/openapi.json exists");
        assert!(
            committed == super::committed_text(),
            "docs/openapi.json differs from the code: run `cargo xtask openapi` and commit it"
        );
    }
}
