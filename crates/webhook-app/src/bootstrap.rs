//! Start-up state from configuration: the admin token, the default wallet (with its key and,
//! once, its webhook) and the global webhook, which only the roles that serve the API store.

use anyhow::Context;
use time::OffsetDateTime;
use webhook_domain::{
    ApiKey, ApiKeyHash, ApiKeyTag, CustomHeaders, Wallet, WalletId, WalletName, Webhook, WebhookId,
    WebhookScope, WebhookUrl,
};
use webhook_ports::{StoredApiKey, WalletRepository, WalletStoreError, WebhookRepository};

use crate::config::{IdentusSettings, Role};
use crate::secrets;

/// What start-up settled, and what it created that the operator must see once.
#[derive(Debug)]
pub(crate) struct Bootstrapped {
    /// A default-wallet key that was generated because none was configured. Shown once.
    pub(crate) generated_default_key: Option<ApiKey>,
    /// An admin token that was generated because none was configured or stored. Shown once.
    pub(crate) generated_admin_token: Option<ApiKey>,
    /// What `x-admin-api-key` is checked against: the admin token's salted hash.
    pub(crate) admin: ApiKeyHash,
}

/// Settles the admin token; creates the default wallet on first start (with its key and,
/// once, its webhook from the environment), binds a configured default-wallet key if it is
/// new, and, in a role that owns it, sets the global webhook from the environment.
pub(crate) async fn bootstrap(
    wallets: &dyn WalletRepository,
    webhooks: &dyn WebhookRepository,
    identus: &IdentusSettings,
    role: Role,
    now: OffsetDateTime,
) -> anyhow::Result<Bootstrapped> {
    let (admin, generated_admin_token) = admin_credential(wallets, identus, now).await?;
    let generated_default_key = if identus.default_wallet_enabled {
        default_wallet(wallets, webhooks, identus, now).await?
    } else {
        None
    };
    let configured = identus
        .global_webhook_url
        .as_deref()
        .filter(|url| !url.is_empty());
    if role.owns_global_webhook() {
        // Enabled, as Identus's always is: the same settings switch a stored one back on, and
        // new ones change it in place, for the deliveries already waiting too.
        let global = configured
            .map(|url| {
                env_webhook(
                    "GLOBAL_WEBHOOK_URL",
                    url,
                    identus.global_webhook_api_key.as_deref(),
                    WebhookScope::Global,
                    now,
                )
            })
            .transpose()?;
        webhooks
            .set_global_webhook(global, now)
            .await
            .context("cannot store the global webhook")?;
    } else if configured.is_some() {
        tracing::warn!(
            "GLOBAL_WEBHOOK_URL and GLOBAL_WEBHOOK_API_KEY are read by the instances that serve the API; this dispatcher-only instance ignores them and delivers to the global webhook as those stored it"
        );
    }
    Ok(Bootstrapped {
        generated_default_key,
        generated_admin_token,
        admin,
    })
}

/// `ADMIN_TOKEN` when set (hashed in memory, never stored); otherwise the stored token; on the
/// very first start, a generated one, stored hashed and returned to be shown once. When several
/// instances start together, exactly one generates the token.
async fn admin_credential(
    wallets: &dyn WalletRepository,
    identus: &IdentusSettings,
    now: OffsetDateTime,
) -> anyhow::Result<(ApiKeyHash, Option<ApiKey>)> {
    if let Some(text) = identus.admin_token.as_deref().filter(|t| !t.is_empty()) {
        let key = ApiKey::parse(text).map_err(|e| anyhow::anyhow!("ADMIN_TOKEN: {e}"))?;
        return Ok((ApiKeyHash::new(&key, secrets::salt()?), None));
    }
    if let Some(hash) = wallets.admin_token().await? {
        return Ok((hash, None));
    }
    let key = secrets::api_key()?;
    let hash = ApiKeyHash::new(&key, secrets::salt()?);
    if wallets.init_admin_token(&hash, now).await? {
        return Ok((hash, Some(key)));
    }
    let stored = wallets
        .admin_token()
        .await?
        .context("the admin token was stored by another instance but cannot be read")?;
    Ok((stored, None))
}

async fn default_wallet(
    wallets: &dyn WalletRepository,
    webhooks: &dyn WebhookRepository,
    identus: &IdentusSettings,
    now: OffsetDateTime,
) -> anyhow::Result<Option<ApiKey>> {
    let mut generated = None;
    let wallet = Wallet {
        id: WalletId::DEFAULT,
        name: WalletName::new("default").context("a valid name")?,
        created_at: now,
        updated_at: now,
    };
    let created = match wallets.create_wallet(&wallet).await {
        Ok(()) => true,
        Err(WalletStoreError::Conflict(_)) => false,
        Err(e) => return Err(e).context("cannot create the default wallet"),
    };
    let configured = identus
        .default_wallet_auth_api_key
        .as_deref()
        .filter(|k| !k.is_empty())
        .map(ApiKey::parse)
        .transpose()
        .context("DEFAULT_WALLET_AUTH_API_KEY")?;
    match configured {
        Some(key) => {
            let bound = wallets.find_api_keys(ApiKeyTag::of(&key)).await?;
            match bound.iter().find(|k| k.hash.matches(&key)) {
                None => bind_key(wallets, &key, now).await?,
                Some(k) if k.wallet_id == WalletId::DEFAULT => {}
                Some(_) => anyhow::bail!(
                    "DEFAULT_WALLET_AUTH_API_KEY: this key already opens another wallet; choose another"
                ),
            }
        }
        None if created => {
            let key = secrets::api_key()?;
            bind_key(wallets, &key, now).await?;
            generated = Some(key);
        }
        None => {}
    }
    // Identus reads the default wallet's webhook variables only when it creates the wallet.
    if created
        && let Some(url) = identus
            .default_wallet_webhook_url
            .as_deref()
            .filter(|u| !u.is_empty())
    {
        let webhook = env_webhook(
            "DEFAULT_WALLET_WEBHOOK_URL",
            url,
            identus.default_wallet_webhook_api_key.as_deref(),
            WebhookScope::Wallet(WalletId::DEFAULT),
            now,
        )?;
        webhooks
            .create_webhook(&webhook, None)
            .await
            .context("cannot store the default wallet's webhook")?;
    }
    Ok(generated)
}

async fn bind_key(
    wallets: &dyn WalletRepository,
    key: &ApiKey,
    now: OffsetDateTime,
) -> anyhow::Result<()> {
    wallets
        .add_api_key(&StoredApiKey {
            wallet_id: WalletId::DEFAULT,
            hash: ApiKeyHash::new(key, secrets::salt()?),
            created_at: now,
        })
        .await
        .context("cannot store the default wallet's API key")
}

/// A webhook configured by environment variables: the key becomes a bearer token, as Identus
/// does. Unsigned, because an Identus receiver expects no secret.
fn env_webhook(
    variable: &str,
    url: &str,
    api_key: Option<&str>,
    scope: WebhookScope,
    now: OffsetDateTime,
) -> anyhow::Result<Webhook> {
    let url = WebhookUrl::parse(url).with_context(|| variable.to_owned())?;
    let headers = match api_key.filter(|k| !k.is_empty()) {
        Some(key) => CustomHeaders::bearer(key).with_context(|| format!("{variable}: API key"))?,
        None => CustomHeaders::default(),
    };
    Ok(Webhook::new(
        WebhookId::from_uuid(uuid::Uuid::new_v4()),
        scope,
        url,
        headers,
        now,
    ))
}

#[cfg(test)]
mod tests {
    use webhook_ports::{MockWalletRepository, MockWebhookRepository};

    use super::*;

    /// Settings that reach no wallet storage: a configured admin token, no default wallet.
    fn identus(global: Option<&str>) -> IdentusSettings {
        let mut identus = crate::config::Settings::defaults().unwrap().identus;
        identus.admin_token = Some("an-admin-token-for-tests".to_owned());
        identus.default_wallet_enabled = false;
        identus.global_webhook_url = global.map(str::to_owned);
        identus.global_webhook_api_key = Some("global-key".to_owned());
        identus
    }

    #[tokio::test]
    async fn only_the_roles_that_serve_the_api_set_the_global_webhook() {
        let now = time::macros::datetime!(2026-12-01 00:00 UTC);
        for (role, global, expected) in [
            (Role::All, Some("https://global.example/in"), Some(true)),
            (Role::Api, Some("https://global.example/in"), Some(true)),
            (Role::Api, None, Some(false)),
            (Role::Dispatcher, Some("https://global.example/in"), None),
            (Role::Dispatcher, Some("not a url"), None),
            (Role::Dispatcher, None, None),
        ] {
            let mut webhooks = MockWebhookRepository::new();
            if let Some(present) = expected {
                webhooks
                    .expect_set_global_webhook()
                    .times(1)
                    .returning(move |webhook, _| {
                        assert_eq!(webhook.is_some(), present);
                        if let Some(webhook) = webhook {
                            assert!(webhook.enabled);
                            assert_eq!(webhook.scope, WebhookScope::Global);
                            assert_eq!(
                                webhook.custom_headers,
                                CustomHeaders::bearer("global-key").unwrap()
                            );
                        }
                        Ok(())
                    });
            }
            // A dispatcher-only instance calls nothing: the mock would panic.
            bootstrap(
                &MockWalletRepository::new(),
                &webhooks,
                &identus(global),
                role,
                now,
            )
            .await
            .unwrap_or_else(|e| panic!("{role:?}, {global:?}: {e:#}"));
        }
    }
}
