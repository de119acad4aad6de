//! What an operator does directly on the database, without the API or any key: publish one
//! event, create and list wallets, generate a wallet's API key (`webhookd publish`, `wallet`,
//! `apikey`). It goes through the same ports and domain rules as the API, so it stores exactly
//! what the matching API call would; it must not grow rules of its own.

use std::sync::Arc;

use anyhow::Context;
use time::OffsetDateTime;
use webhook_domain::{
    ApiKey, ApiKeyHash, Event, EventId, EventType, Timestamp, Wallet, WalletId, WalletName,
};
use webhook_ports::{Clock, Page, PublishItem, Published, StoredApiKey, WalletStoreError};

use crate::config::ApiSettings;
use crate::publisher::Publishing;
use crate::secrets;
use crate::store::Store;

/// Wallets read per page when listing them all.
const LIST_PAGE: u32 = 500;

/// Builds the event `publish` stores, before any database is opened: `data` must be JSON
/// within the API's limits (`api.max_body_bytes`, `api.max_json_depth`), and the type and
/// data must pass the checks `POST /events` makes.
///
/// # Errors
/// One line naming what is wrong: `data: not JSON: ...`, `type: ...`, `data.state: ...`.
pub fn event(
    event_type: &str,
    wallet: WalletId,
    data: &[u8],
    limits: &ApiSettings,
    now: OffsetDateTime,
) -> anyhow::Result<Event> {
    if data.len() > limits.max_body_bytes {
        anyhow::bail!(
            "data: {} bytes is more than api.max_body_bytes ({})",
            data.len(),
            limits.max_body_bytes
        );
    }
    let depth = webhook_domain::json_nesting_depth(data);
    if depth > limits.max_json_depth {
        anyhow::bail!(
            "data: nested {depth} deep; api.max_json_depth allows {}",
            limits.max_json_depth
        );
    }
    let data: serde_json::Value =
        serde_json::from_slice(data).map_err(|e| anyhow::anyhow!("data: not JSON: {e}"))?;
    let event_type = EventType::parse(event_type).map_err(|e| anyhow::anyhow!("{e}"))?;
    Event::new(
        EventId::from_uuid(uuid::Uuid::new_v4()),
        Timestamp::from_datetime(now),
        event_type,
        data,
        wallet,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Stores `event` with one delivery per interested webhook of its wallet (and the global
/// webhook) through the publishing service `POST /events` uses. Dispatchers on PostgreSQL are woken; on SQLite they find
/// it at their next poll.
///
/// # Errors
/// When the wallet does not exist, or the database fails.
pub async fn publish(
    store: &Store,
    event: &Event,
    now: OffsetDateTime,
) -> anyhow::Result<Published> {
    // The wallet is checked here first, for an operator's message on a missing one.
    existing_wallet(store, event.wallet_id()).await?;
    let (publishing, workers) = Publishing::start(
        store.outbox(),
        store.wallets(),
        Arc::new(At(now)),
        None,
        Arc::new(tokio::sync::Notify::new()),
    );
    let item = PublishItem {
        event: event.clone(),
        idempotency: None,
    };
    let published = publishing
        .publish(item, false)
        .await
        .context("cannot store the event")?;
    drop(publishing);
    for worker in workers {
        worker.await.context("a publishing worker failed")?;
    }
    Ok(published)
}

/// The time of the CLI's one publish, as the publishing service reads it.
struct At(OffsetDateTime);

impl Clock for At {
    fn now(&self) -> OffsetDateTime {
        self.0
    }
}

/// Creates a wallet named `name` with a new id.
///
/// # Errors
/// When the name is not valid, or the database fails.
pub async fn create_wallet(
    store: &Store,
    name: &str,
    now: OffsetDateTime,
) -> anyhow::Result<Wallet> {
    let wallet = Wallet {
        id: WalletId::from_uuid(uuid::Uuid::new_v4()),
        name: WalletName::new(name).map_err(|e| anyhow::anyhow!("{e}"))?,
        created_at: now,
        updated_at: now,
    };
    store
        .wallets()
        .create_wallet(&wallet)
        .await
        .context("cannot store the wallet")?;
    tracing::info!(wallet = %wallet.id, "wallet created");
    Ok(wallet)
}

/// Every wallet, oldest first.
///
/// # Errors
/// When the database fails.
pub async fn list_wallets(store: &Store) -> anyhow::Result<Vec<Wallet>> {
    let wallets = store.wallets();
    let mut all = Vec::new();
    loop {
        let page = Page {
            offset: all.len() as u64,
            limit: LIST_PAGE,
        };
        let found = wallets
            .list_wallets(page)
            .await
            .context("cannot list the wallets")?;
        let last = found.len() < LIST_PAGE as usize;
        all.extend(found);
        if last {
            return Ok(all);
        }
    }
}

/// Generates an API key for `wallet` and stores only its salted hash, as
/// `POST /wallets/{id}/apikeys` does. The key is returned to be shown once.
///
/// # Errors
/// When the wallet does not exist, or the database fails.
pub async fn create_api_key(
    store: &Store,
    wallet: WalletId,
    now: OffsetDateTime,
) -> anyhow::Result<ApiKey> {
    existing_wallet(store, wallet).await?;
    // 32 random bytes: no need to check that another wallet already has this key.
    let key = secrets::api_key()?;
    store
        .wallets()
        .add_api_key(&StoredApiKey {
            wallet_id: wallet,
            hash: ApiKeyHash::new(&key, secrets::salt()?),
            created_at: now,
        })
        .await
        .context("cannot store the API key")?;
    tracing::info!(%wallet, "API key bound");
    Ok(key)
}

async fn existing_wallet(store: &Store, id: WalletId) -> anyhow::Result<Wallet> {
    match store.wallets().get_wallet(id).await {
        Ok(wallet) => Ok(wallet),
        Err(WalletStoreError::NotFound) if id == WalletId::DEFAULT => anyhow::bail!(
            "wallet {id}: not found; the default wallet is created by the first `webhookd serve` (unless DEFAULT_WALLET_ENABLED=false)"
        ),
        Err(WalletStoreError::NotFound) => {
            anyhow::bail!("wallet {id}: not found; `webhookd wallet list` shows the wallets")
        }
        Err(e) => Err(e).context("cannot read the wallet"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    fn build(event_type: &str, data: &str) -> anyhow::Result<Event> {
        let limits = Settings::defaults().unwrap().api;
        event(
            event_type,
            WalletId::DEFAULT,
            data.as_bytes(),
            &limits,
            OffsetDateTime::UNIX_EPOCH,
        )
    }

    #[test]
    fn bad_data_is_one_line_naming_the_field() {
        for (event_type, data, expected) in [
            ("custom.thing", "{\"a\": ", "data: not JSON: "),
            ("custom.thing", "", "data: not JSON: "),
            ("no spaces allowed", "{}", "type"),
            ("ConnectionUpdated", "{}", "data."),
            ("custom.thing", &"[".repeat(40), "data: nested 40 deep"),
        ] {
            let err = format!("{:#}", build(event_type, data).unwrap_err());
            assert!(err.starts_with(expected), "{event_type} {data:?}: {err}");
            assert_eq!(err.lines().count(), 1, "{err}");
        }
    }

    #[test]
    fn any_json_is_data_of_a_custom_type() {
        let event = build("custom.thing", "{\"n\": [1, 2]}").unwrap();
        assert_eq!(event.wallet_id(), WalletId::DEFAULT);
        assert_eq!(event.event_type().as_str(), "custom.thing");
    }
}
