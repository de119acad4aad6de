//! Who is calling: a wallet (the `apikey` header) or the administrator (`x-admin-api-key`).
//! Keys are compared with their salted hashes, in constant time.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use webhook_domain::{ApiKey, ApiKeyHash, ApiKeyTag, WalletId};

use super::{ApiState, Problem};

const WALLET_HEADER: &str = "apikey";
const ADMIN_HEADER: &str = "x-admin-api-key";

/// The admin token as the API checks it: only its salted hash is held.
#[derive(Debug)]
pub struct AdminCredential(ApiKeyHash);

impl AdminCredential {
    pub fn new(hash: ApiKeyHash) -> Self {
        Self(hash)
    }

    fn admits(&self, presented: &ApiKey) -> bool {
        self.0.matches(presented)
    }
}

/// The wallet that the `apikey` header authenticates.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WalletAuth(pub WalletId);

/// A call authenticated with the admin key.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AdminAuth;

/// Either kind of caller, for calls both may make (publishing).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Caller {
    Wallet(WalletId),
    Admin,
}

fn presented(parts: &Parts, header: &str) -> Option<Result<ApiKey, ()>> {
    parts.headers.get(header).map(|v| {
        v.to_str()
            .ok()
            .and_then(|v| ApiKey::parse(v).ok())
            .ok_or(())
    })
}

async fn wallet_of(state: &ApiState, key: &ApiKey) -> Result<Option<WalletId>, Problem> {
    let candidates = state.wallets.find_api_keys(ApiKeyTag::of(key)).await?;
    Ok(candidates
        .iter()
        .find(|stored| stored.hash.matches(key))
        .map(|stored| stored.wallet_id))
}

fn wrong_wallet_key() -> Problem {
    Problem::unauthorized("apikey: send a valid wallet API key in the apikey header")
}

fn wrong_admin_key() -> Problem {
    Problem::unauthorized("x-admin-api-key: send the admin key in the x-admin-api-key header")
}

impl FromRequestParts<ApiState> for WalletAuth {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Problem> {
        let Some(Ok(key)) = presented(parts, WALLET_HEADER) else {
            return Err(wrong_wallet_key());
        };
        wallet_of(state, &key)
            .await?
            .map(WalletAuth)
            .ok_or_else(wrong_wallet_key)
    }
}

impl FromRequestParts<ApiState> for AdminAuth {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Problem> {
        match presented(parts, ADMIN_HEADER) {
            Some(Ok(key)) if state.admin.admits(&key) => Ok(AdminAuth),
            Some(_) => Err(wrong_admin_key()),
            None => match presented(parts, WALLET_HEADER) {
                Some(Ok(key)) if wallet_of(state, &key).await?.is_some() => {
                    Err(Problem::forbidden(
                        "this call needs the admin key in x-admin-api-key; a wallet's apikey cannot make it",
                    ))
                }
                _ => Err(wrong_admin_key()),
            },
        }
    }
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Problem> {
        if parts.headers.contains_key(ADMIN_HEADER) {
            return AdminAuth::from_request_parts(parts, state)
                .await
                .map(|AdminAuth| Caller::Admin);
        }
        WalletAuth::from_request_parts(parts, state)
            .await
            .map(|WalletAuth(wallet)| Caller::Wallet(wallet))
    }
}
