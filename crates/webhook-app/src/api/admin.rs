//! Admin calls, behind `x-admin-api-key`: wallets, and binding API keys to them, in Identus's
//! shapes (`/wallets`, `/iam/entities`, `/iam/apikey-authentication`) and in one simpler call
//! (`POST /wallets/{id}/apikeys`, which generates the key).

use axum::Json;
use axum::extract::OriginalUri;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use webhook_domain::{
    ApiKey, ApiKeyHash, ApiKeyTag, Entity, EntityId, Timestamp, Wallet, WalletId, WalletName,
};
use webhook_ports::{StoredApiKey, WalletStoreError};

use super::auth::AdminAuth;
use super::json::JsonBody;
use super::paging::{PageQuery, Paged, probe};
use super::params::{path_id, query};
use super::problem::Problem;
use super::state::ApiState;
use crate::secrets;

/// `POST /wallets`, as Identus takes it. `seed` is accepted for compatibility and not used:
/// webhookd holds no keys derived from it. Other fields are ignored, as Identus ignores them.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct CreateWallet {
    /// 1 to 128 characters without control characters.
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$"
    )]
    name: String,
    /// Chosen by the caller; generated when absent.
    #[serde(default)]
    #[schema(value_type = Option<uuid::Uuid>)]
    id: Option<WalletId>,
    /// Hex, as Identus accepts it; not used by webhookd.
    #[serde(default)]
    #[schema(max_length = 256, pattern = "^[0-9A-Fa-f]*$")]
    seed: Option<String>,
}

/// A wallet, as Identus shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WalletResource {
    #[schema(value_type = uuid::Uuid)]
    id: WalletId,
    name: String,
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    updated_at: Timestamp,
}

impl WalletResource {
    fn of(wallet: &Wallet) -> Self {
        Self {
            id: wallet.id,
            name: wallet.name.as_str().to_owned(),
            created_at: Timestamp::from_datetime(wallet.created_at),
            updated_at: Timestamp::from_datetime(wallet.updated_at),
        }
    }
}

fn invalid(e: &dyn std::fmt::Display) -> Problem {
    Problem::unprocessable(e.to_string())
}

/// Creates a wallet.
#[utoipa::path(post, operation_id = "createWallet", path = "/wallets", tag = "admin",
    request_body = CreateWallet,
    security(("admin" = [])),
    responses(
        (status = 201, body = WalletResource),
        (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 409, description = "A wallet with this id exists (webhookd's answer to a duplicate; Identus's document lists no 409 here)", body = Problem),
        (status = 422, body = Problem), (status = 400, body = Problem), (status = 413, body = Problem), (status = 415, body = Problem),))]
pub(crate) async fn create_wallet(
    State(state): State<ApiState>,
    _: AdminAuth,
    JsonBody(request): JsonBody<CreateWallet>,
) -> Result<(StatusCode, Json<WalletResource>), Problem> {
    let name = WalletName::new(&request.name).map_err(|e| invalid(&e))?;
    if let Some(seed) = &request.seed
        && (seed.len() > 256 || !seed.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(Problem::unprocessable(
            "seed: must be hexadecimal, at most 256 characters",
        ));
    }
    let now = state.clock.now();
    let wallet = Wallet {
        id: request
            .id
            .unwrap_or_else(|| WalletId::from_uuid(uuid::Uuid::new_v4())),
        name,
        created_at: now,
        updated_at: now,
    };
    state.wallets.create_wallet(&wallet).await?;
    tracing::info!(wallet = %wallet.id, "wallet created");
    Ok((StatusCode::CREATED, Json(WalletResource::of(&wallet))))
}

/// Lists wallets, oldest first.
#[utoipa::path(get, operation_id = "listWallets", path = "/wallets", tag = "admin",
    params(PageQuery),
    security(("admin" = [])),
    responses((status = 200, body = Paged<WalletResource>), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub(crate) async fn list_wallets(
    State(state): State<ApiState>,
    _: AdminAuth,
    OriginalUri(uri): OriginalUri,
) -> Result<Json<Paged<WalletResource>>, Problem> {
    let page = query::<PageQuery>(&uri)?.page()?;
    let found = state.wallets.list_wallets(probe(page)).await?;
    let contents = found.iter().map(WalletResource::of).collect();
    Ok(Json(Paged::new(
        "WalletDetailPage",
        uri.path(),
        "",
        page,
        contents,
    )))
}

/// The messages this instance's event sources refused for good (they can never be published:
/// not an event, an unknown wallet, invalid data), newest first, at most the last 1,000 since
/// the start. Each was also terminated or rejected at its broker, and counted in
/// `webhookd_source_refusals_total`.
#[utoipa::path(get, operation_id = "listSourceRefusals", path = "/sources/refusals", tag = "admin",
    security(("admin" = [])),
    responses((status = 200, body = SourceRefusals), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub(crate) async fn list_source_refusals(
    State(state): State<ApiState>,
    _: AdminAuth,
) -> Json<SourceRefusals> {
    Json(SourceRefusals {
        contents: state.refusals.newest_first(),
    })
}

/// The deliveries due now, of every wallet.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OverviewBacklog {
    /// Unfinished deliveries due now (as the `webhookd_backlog_deliveries` gauge).
    deliveries: u64,
    /// How long the oldest of them has been due; 0 when none is.
    oldest_due_age_seconds: f64,
}

/// A circuit breaker that is not closed.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OverviewCircuit {
    #[schema(value_type = uuid::Uuid)]
    webhook_id: webhook_domain::WebhookId,
    /// `open` or `half_open`.
    state: &'static str,
}

/// The global webhook, as the overview shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OverviewGlobalWebhook {
    #[schema(value_type = uuid::Uuid)]
    id: webhook_domain::WebhookId,
    url: String,
    enabled: bool,
}

/// The service at a glance, over every wallet.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Overview {
    /// This webhookd's version.
    version: &'static str,
    wallets: u64,
    /// Webhooks not deleted, the global one included.
    webhooks: u64,
    backlog: OverviewBacklog,
    /// Attempts of every wallet, by every instance, started in the last 60 seconds.
    attempts_last_minute: u64,
    /// `attemptsLastMinute / 60`.
    attempts_per_second: f64,
    /// This process's dispatcher's breakers that are not closed; empty when it runs none.
    circuits: Vec<OverviewCircuit>,
    /// Null when there is none.
    global_webhook: Option<OverviewGlobalWebhook>,
}

/// Counts over every wallet: wallets, webhooks, the backlog, the attempts of the last minute,
/// and this process's open circuit breakers.
#[utoipa::path(get, operation_id = "getSystemOverview", path = "/system/overview", tag = "admin",
    security(("admin" = [])),
    responses((status = 200, body = Overview), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub(crate) async fn overview(
    State(state): State<ApiState>,
    _: AdminAuth,
) -> Result<Json<Overview>, Problem> {
    let now = state.clock.now();
    let counts = state
        .outbox
        .overview(now - time::Duration::seconds(60))
        .await?;
    let backlog = state.queue.backlog(now).await?;
    #[allow(clippy::cast_precision_loss, reason = "counts stay far below 2^53")]
    let attempts_per_second = counts.recent_attempts as f64 / 60.0;
    Ok(Json(Overview {
        version: env!("CARGO_PKG_VERSION"),
        wallets: counts.wallets,
        webhooks: counts.webhooks,
        backlog: OverviewBacklog {
            deliveries: backlog.due,
            oldest_due_age_seconds: backlog
                .oldest_due_at
                .map_or(0.0, |at| (now - at).as_seconds_f64().max(0.0)),
        },
        attempts_last_minute: counts.recent_attempts,
        attempts_per_second,
        circuits: state
            .metrics
            .open_circuits(now)
            .into_iter()
            .map(|(webhook_id, state)| OverviewCircuit { webhook_id, state })
            .collect(),
        global_webhook: counts.global_webhook.map(|w| OverviewGlobalWebhook {
            id: w.id,
            url: w.url.as_str().to_owned(),
            enabled: w.enabled,
        }),
    }))
}

/// The refused messages, newest first.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct SourceRefusals {
    contents: Vec<crate::sources::RefusalRecord>,
}

/// One wallet.
#[utoipa::path(get, operation_id = "getWallet", path = "/wallets/{wallet_id}", tag = "admin",
    params(("wallet_id" = uuid::Uuid, Path)),
    security(("admin" = [])),
    responses((status = 200, body = WalletResource), (status = 401, body = Problem), (status = 404, body = Problem), (status = 400, body = Problem), (status = 403, body = Problem)))]
pub(crate) async fn get_wallet(
    State(state): State<ApiState>,
    _: AdminAuth,
    Path(wallet_id): Path<String>,
) -> Result<Json<WalletResource>, Problem> {
    let id: WalletId = path_id(&wallet_id, "wallet_id")?;
    let wallet = state.wallets.get_wallet(id).await?;
    Ok(Json(WalletResource::of(&wallet)))
}

/// A key, shown once.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct NewApiKey {
    #[schema(value_type = uuid::Uuid)]
    wallet_id: WalletId,
    /// Send it in the `apikey` header. It is stored hashed and never shown again.
    api_key: String,
}

/// Generates an API key for a wallet (a simpler equivalent of the two IAM calls).
#[utoipa::path(post, operation_id = "createWalletApiKey", path = "/wallets/{wallet_id}/apikeys", tag = "admin",
    params(("wallet_id" = uuid::Uuid, Path)),
    security(("admin" = [])),
    responses((status = 201, body = NewApiKey), (status = 401, body = Problem), (status = 404, body = Problem), (status = 400, body = Problem), (status = 403, body = Problem)))]
pub(crate) async fn create_api_key(
    State(state): State<ApiState>,
    _: AdminAuth,
    Path(wallet_id): Path<String>,
) -> Result<(StatusCode, Json<NewApiKey>), Problem> {
    let wallet: WalletId = path_id(&wallet_id, "wallet_id")?;
    let key = secrets::api_key().map_err(|e| Problem::internal(&e))?;
    store_key(&state, wallet, &key).await?;
    Ok((
        StatusCode::CREATED,
        Json(NewApiKey {
            wallet_id: wallet,
            api_key: key.expose().to_owned(),
        }),
    ))
}

async fn store_key(state: &ApiState, wallet: WalletId, key: &ApiKey) -> Result<(), Problem> {
    let bound = state.wallets.find_api_keys(ApiKeyTag::of(key)).await?;
    if bound.iter().any(|stored| stored.hash.matches(key)) {
        return Err(Problem::conflict(
            "apiKey: this key is already bound; every key must open exactly one wallet",
        ));
    }
    let salt = secrets::salt().map_err(|e| Problem::internal(&e))?;
    state
        .wallets
        .add_api_key(&StoredApiKey {
            wallet_id: wallet,
            hash: ApiKeyHash::new(key, salt),
            created_at: state.clock.now(),
        })
        .await?;
    tracing::info!(%wallet, "API key bound");
    Ok(())
}

/// `POST /iam/entities`, as Identus takes it; other fields are ignored, as Identus ignores them.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CreateEntity {
    /// 1 to 128 characters without control characters.
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$"
    )]
    name: String,
    /// Generated when absent.
    #[serde(default)]
    #[schema(value_type = Option<uuid::Uuid>)]
    id: Option<EntityId>,
    /// The default wallet when absent, as in Identus.
    #[serde(default)]
    #[schema(value_type = Option<uuid::Uuid>)]
    wallet_id: Option<WalletId>,
}

/// An IAM entity, as Identus shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EntityResource {
    kind: &'static str,
    #[serde(rename = "self")]
    self_: String,
    #[schema(value_type = uuid::Uuid)]
    id: EntityId,
    name: String,
    #[schema(value_type = uuid::Uuid)]
    wallet_id: WalletId,
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    updated_at: Timestamp,
}

impl EntityResource {
    fn of(entity: &Entity, path: &str) -> Self {
        Self {
            kind: "Entity",
            self_: path.to_owned(),
            id: entity.id,
            name: entity.name.as_str().to_owned(),
            wallet_id: entity.wallet_id,
            created_at: Timestamp::from_datetime(entity.created_at),
            updated_at: Timestamp::from_datetime(entity.updated_at),
        }
    }
}

/// Creates an IAM entity of a wallet.
#[utoipa::path(post, operation_id = "createEntity", path = "/iam/entities", tag = "admin",
    request_body = CreateEntity,
    security(("admin" = [])),
    responses(
        (status = 201, body = EntityResource),
        (status = 401, body = Problem),
        (status = 404, description = "No such wallet", body = Problem),
        (status = 409, description = "An entity with this id exists (webhookd's answer to a duplicate; Identus's document lists no 409 here)", body = Problem),
        (status = 422, body = Problem), (status = 400, body = Problem), (status = 403, body = Problem), (status = 413, body = Problem), (status = 415, body = Problem),))]
pub(crate) async fn create_entity(
    State(state): State<ApiState>,
    _: AdminAuth,
    OriginalUri(uri): OriginalUri,
    JsonBody(request): JsonBody<CreateEntity>,
) -> Result<(StatusCode, Json<EntityResource>), Problem> {
    let name = WalletName::new(&request.name).map_err(|e| invalid(&e))?;
    let now = state.clock.now();
    let entity = Entity {
        id: request
            .id
            .unwrap_or_else(|| EntityId::from_uuid(uuid::Uuid::new_v4())),
        name,
        wallet_id: request.wallet_id.unwrap_or(WalletId::DEFAULT),
        created_at: now,
        updated_at: now,
    };
    state.wallets.create_entity(&entity).await?;
    let path = format!("{}/{}", uri.path(), entity.id);
    Ok((
        StatusCode::CREATED,
        Json(EntityResource::of(&entity, &path)),
    ))
}

/// One IAM entity.
#[utoipa::path(get, operation_id = "getEntity", path = "/iam/entities/{entity_id}", tag = "admin",
    params(("entity_id" = uuid::Uuid, Path)),
    security(("admin" = [])),
    responses((status = 200, body = EntityResource), (status = 401, body = Problem), (status = 404, body = Problem), (status = 400, body = Problem), (status = 403, body = Problem)))]
pub(crate) async fn get_entity(
    State(state): State<ApiState>,
    _: AdminAuth,
    OriginalUri(uri): OriginalUri,
    Path(entity_id): Path<String>,
) -> Result<Json<EntityResource>, Problem> {
    let id: EntityId = path_id(&entity_id, "entity_id")?;
    let entity = state.wallets.get_entity(id).await.map_err(|e| match e {
        WalletStoreError::NotFound => Problem::not_found("entity"),
        other => other.into(),
    })?;
    Ok(Json(EntityResource::of(&entity, uri.path())))
}

/// `POST /iam/apikey-authentication`, as Identus takes it; other fields are ignored, as Identus
/// ignores them.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BindApiKey {
    #[schema(value_type = uuid::Uuid)]
    entity_id: EntityId,
    /// 1 to 256 visible ASCII characters.
    #[schema(min_length = 1, max_length = 256, pattern = "^[!-~]*$")]
    api_key: String,
}

/// Binds an API key to an entity, and so to its wallet.
#[utoipa::path(post, operation_id = "addEntityApiKeyAuthentication", path = "/iam/apikey-authentication", tag = "admin",
    request_body = BindApiKey,
    security(("admin" = [])),
    responses(
        (status = 201, description = "Bound"),
        (status = 401, body = Problem),
        (status = 404, description = "No such entity", body = Problem),
        (status = 409, description = "The key is already bound, to this or another wallet: a key opens exactly one (webhookd's answer to a duplicate; Identus's document lists no 409 here)", body = Problem),
        (status = 422, body = Problem), (status = 400, body = Problem), (status = 403, body = Problem), (status = 413, body = Problem), (status = 415, body = Problem),))]
pub(crate) async fn bind_api_key(
    State(state): State<ApiState>,
    _: AdminAuth,
    JsonBody(request): JsonBody<BindApiKey>,
) -> Result<StatusCode, Problem> {
    let key = ApiKey::parse(&request.api_key).map_err(|e| invalid(&e))?;
    let entity = state
        .wallets
        .get_entity(request.entity_id)
        .await
        .map_err(|e| match e {
            WalletStoreError::NotFound => Problem::not_found("entity"),
            other => other.into(),
        })?;
    store_key(&state, entity.wallet_id, &key).await?;
    Ok(StatusCode::CREATED)
}
