//! The OpenAPI 3.1 document, generated from the handlers and their types. It is served at
//! `/openapi.json` (with the configured base path as its server) and committed as
//! `docs/openapi.json`; a test fails when the two drift.

use axum::Json;
use axum::extract::State;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, OpenApi as Document, Ref, RefOr, Response, ResponseBuilder, Server,
};
use utoipa::{Modify, OpenApi};

use super::problem::Problem;
use super::state::ApiState;
use super::{admin, deliveries, events, webhooks};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "webhookd",
        description = "Webhook notifications: a superset of the Hyperledger Identus Cloud Agent's webhook API.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        admin::create_wallet, admin::list_wallets, admin::get_wallet, admin::create_api_key,
        admin::list_source_refusals, admin::overview,
        admin::create_entity, admin::get_entity, admin::bind_api_key,
        webhooks::create, webhooks::list, webhooks::get, webhooks::update, webhooks::delete,
        webhooks::rotate_secret, webhooks::test, webhooks::stats,
        events::publish, events::publish_batch, events::get,
        deliveries::search, deliveries::list_for_event, deliveries::list_for_webhook, deliveries::get,
        deliveries::redeliver, deliveries::start_redelivery, deliveries::get_redelivery,
    ),
    components(schemas(Problem)),
    modifiers(&Security, &ProblemMediaTypes),
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
        // Every call that authenticates may answer 429 after too many failures from the
        // client's address; added here once rather than on each handler.
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                if operation.security.as_ref().is_some_and(|s| !s.is_empty()) {
                    operation
                        .responses
                        .responses
                        .insert("429".to_owned(), too_many_failures().into());
                }
            }
        }
    }
}

/// Every error answer is sent as `application/json`, or as `application/problem+json` when the
/// request's `Accept` asks for it (see `problem.rs`), but utoipa documents each `body = Problem`
/// as `application/json` only; this adds the other media type, in one place rather than in
/// every handler's annotation.
struct ProblemMediaTypes;

const PROBLEM_MEDIA_TYPE: &str = "application/problem+json";

impl Modify for ProblemMediaTypes {
    fn modify(&self, openapi: &mut Document) {
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
                &mut item.head,
                &mut item.options,
                &mut item.trace,
            ];
            for operation in operations.into_iter().flatten() {
                problems_in_both_media_types(operation);
            }
        }
    }
}

fn problems_in_both_media_types(operation: &mut Operation) {
    for response in operation.responses.responses.values_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        let problem = response.content.get("application/json").filter(|c| {
            matches!(&c.schema, Some(RefOr::Ref(r)) if r.ref_location == "#/components/schemas/Problem")
        });
        if let Some(content) = problem.cloned() {
            response
                .content
                .insert(PROBLEM_MEDIA_TYPE.to_owned(), content);
        }
    }
}

fn too_many_failures() -> Response {
    let seconds = ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(1));
    ResponseBuilder::new()
        .description(
            "Too many failed authentications from the client's address (`api.auth_failure_limit` \
             per `api.auth_failure_window_ms`); refused before any key is checked",
        )
        .header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(seconds)
                .description(Some("seconds until the address may try again"))
                .build(),
        )
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
}

/// The document for an API served under `base_path`.
pub(crate) fn document(base_path: &str) -> Document {
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

    /// Schemathesis found every error documented as `application/json` while the service
    /// sent `application/problem+json`; now it sends either, as `Accept` asks, and the document
    /// must say both, with the same schema.
    #[test]
    fn every_problem_answer_is_documented_in_both_media_types() {
        let doc = serde_json::to_value(super::document("/cloud-agent")).unwrap();
        let mut problems = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                for (status, response) in operation["responses"].as_object().unwrap() {
                    let Some(content) = response.get("content").and_then(|c| c.as_object()) else {
                        continue;
                    };
                    let schema = |media_type: &str| {
                        content.get(media_type).map(|c| c["schema"]["$ref"].clone())
                    };
                    let problem = serde_json::json!("#/components/schemas/Problem");
                    let as_json = schema("application/json").is_some_and(|s| s == problem);
                    let as_problem_json = schema("application/problem+json");
                    assert_eq!(
                        as_json,
                        as_problem_json.is_some(),
                        "{method} {path} {status}: a problem must be documented in both media types"
                    );
                    if let Some(schema) = as_problem_json {
                        assert_eq!(schema, problem, "{method} {path} {status}");
                        assert!(
                            status.starts_with('4') || status.starts_with('5'),
                            "{method} {path} {status}"
                        );
                        problems += 1;
                    }
                }
            }
        }
        // Each of the 27 operations documents at least its 400 and 401.
        assert!(problems >= 46, "only {problems} problem answers documented");
    }

    /// Identus ignores unknown fields in its request bodies, and so do the Identus-shaped
    /// bodies here; webhookd's own bodies refuse them. Schemathesis sends what the document
    /// forbids and expects a refusal, so the document must say which is which.
    #[test]
    fn only_identus_bodies_allow_unknown_fields() {
        let doc = serde_json::to_value(super::document("/cloud-agent")).unwrap();
        let schemas = &doc["components"]["schemas"];
        for identus in [
            "CreateWebhook",
            "CreateWallet",
            "CreateEntity",
            "BindApiKey",
        ] {
            assert!(
                schemas[identus].get("additionalProperties").is_none(),
                "{identus}: {}",
                schemas[identus]
            );
        }
        for ours in [
            "UpdateWebhook",
            "RotateSecret",
            "PublishEvent",
            "PublishBatch",
            "RedeliveryWindow",
        ] {
            assert_eq!(
                schemas[ours]["additionalProperties"], false,
                "{ours}: {}",
                schemas[ours]
            );
        }
    }

    /// Identus's document gives `POST /wallets`, `POST /iam/entities` and
    /// `POST /iam/apikey-authentication` no 409; webhookd answers one to duplicates, so its
    /// document must say when, and that Identus does not.
    #[test]
    fn the_conflicts_identus_does_not_document_are_documented() {
        let doc = serde_json::to_value(super::document("/cloud-agent")).unwrap();
        for (path, conflict) in [
            ("/wallets", "wallet with this id"),
            ("/iam/entities", "entity with this id"),
            ("/iam/apikey-authentication", "key is already bound"),
        ] {
            let response = &doc["paths"][path]["post"]["responses"]["409"];
            let description = response["description"].as_str().unwrap_or_default();
            assert!(
                description.contains(conflict) && description.contains("Identus"),
                "POST {path} 409: {description:?}"
            );
            assert!(
                response["content"]["application/json"].is_object(),
                "{path}"
            );
        }
    }

    /// Schemathesis sent `limit=0`, an empty batch, `"enabled": null` in a PATCH and offsets
    /// past 2^63 - 1, all allowed by the document and refused by the service (or, for the
    /// offset, accepted beyond the documented int64): the document now states those rules.
    #[test]
    fn the_document_states_the_rules_the_service_enforces() {
        let doc = serde_json::to_value(super::document("/cloud-agent")).unwrap();
        let params = &doc["paths"]["/wallets"]["get"]["parameters"];
        let param = |name: &str| {
            params
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == name)
                .unwrap()["schema"]
                .clone()
        };
        assert_eq!(param("limit")["minimum"], 1);
        assert_eq!(param("limit")["maximum"], 1000);
        assert_eq!(param("offset")["maximum"], i64::MAX);
        let schemas = &doc["components"]["schemas"];
        assert_eq!(
            schemas["UpdateWebhook"]["properties"]["enabled"]["type"],
            "boolean"
        );
        assert_eq!(
            schemas["UpdateWebhook"]["properties"]["url"]["type"],
            "string"
        );
        assert_eq!(
            schemas["PublishBatch"]["properties"]["events"]["minItems"],
            1
        );
        assert_eq!(
            schemas["CreateWallet"]["properties"]["name"]["minLength"],
            1
        );
        assert_eq!(
            schemas["CreateWebhook"]["properties"]["rateLimit"]["minimum"],
            1
        );
        // And a status it sends: a bulk redelivery of a disabled webhook is a 409.
        let redeliver = &doc["paths"]["/events/webhooks/{webhook_id}/redeliver"]["post"];
        assert!(redeliver["responses"]["409"].is_object());
    }

    /// The attempt log's `outcome` is an [`DetailKind`](webhook_domain::DetailKind)'s name;
    /// its description, written by hand, names every kind.
    #[test]
    fn the_document_names_every_attempt_outcome() {
        let doc = serde_json::to_value(super::document("/cloud-agent")).unwrap();
        let outcome = &doc["components"]["schemas"]["AttemptResource"]["properties"]["outcome"];
        let description = outcome["description"].as_str().unwrap();
        for kind in webhook_domain::DetailKind::ALL {
            assert!(
                description.contains(&format!("`{}`", kind.as_str())),
                "{description:?} names {kind:?}"
            );
        }
    }
}
