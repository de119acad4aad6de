//! Who is calling: a wallet (the `apikey` header) or the administrator (`x-admin-api-key`).
//! Keys are compared with their salted hashes, in constant time: a presented key is hashed
//! with each candidate's salt and the digests compared with `subtle`. Candidates are found by a
//! tag of the key, which tells a timing observer no more than the answer does, and the
//! `KnownKeys` memory is keyed by a digest salted with a per-process secret, which an outsider
//! cannot compute for a guess.
//!
//! A client address with too many failed authentications lately (`AuthFailures`) gets 429
//! before any key it sends is looked at, a valid one included.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;
use webhook_domain::{ApiKey, ApiKeyTag, WalletId};

use super::problem::Problem;
use super::state::ApiState;

const WALLET_HEADER: &str = "apikey";
const ADMIN_HEADER: &str = "x-admin-api-key";

/// The wallet that the `apikey` header authenticates.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WalletAuth(pub(crate) WalletId);

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
    if let Some(wallet) = state.known_keys.get(key) {
        return Ok(Some(wallet));
    }
    let candidates = state.wallets.find_api_keys(ApiKeyTag::of(key)).await?;
    let wallet = candidates
        .iter()
        .find(|stored| stored.hash.matches(key))
        .map(|stored| stored.wallet_id);
    if let Some(wallet) = wallet {
        state.known_keys.insert(key, wallet);
    }
    Ok(wallet)
}

fn wrong_wallet_key() -> Problem {
    Problem::unauthorized("apikey: send a valid wallet API key in the apikey header")
}

fn wrong_admin_key() -> Problem {
    Problem::unauthorized("x-admin-api-key: send the admin key in the x-admin-api-key header")
}

/// Runs `authenticate` unless the client has used up its failed authentications, and counts
/// its 401 as one more. Without a known peer address (a router served without connect info)
/// nothing is counted.
async fn limited<T>(
    parts: &Parts,
    state: &ApiState,
    authenticate: impl Future<Output = Result<T, Problem>>,
) -> Result<T, Problem> {
    let client = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip());
    if let Some(client) = client
        && let Err(wait) = state.auth_failures.admit(client, Instant::now())
    {
        return Err(too_many_failures(wait));
    }
    let result = authenticate.await;
    if let (Some(client), Err(problem)) = (client, &result)
        && problem.status == StatusCode::UNAUTHORIZED.as_u16()
    {
        state.auth_failures.record(client, Instant::now());
    }
    result
}

fn too_many_failures(wait: Duration) -> Problem {
    // Rounded up, so that a client that waits as told is admitted.
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too-many-requests",
        "Too many failed authentications",
    )
    .detail(format!(
        "too many failed authentications from this address; try again in {secs} s with a valid key"
    ))
    .retry_after(secs)
}

async fn wallet_auth(parts: &Parts, state: &ApiState) -> Result<WalletId, Problem> {
    let Some(Ok(key)) = presented(parts, WALLET_HEADER) else {
        return Err(wrong_wallet_key());
    };
    wallet_of(state, &key).await?.ok_or_else(wrong_wallet_key)
}

async fn admin_auth(parts: &Parts, state: &ApiState) -> Result<AdminAuth, Problem> {
    match presented(parts, ADMIN_HEADER) {
        Some(Ok(key)) if state.admin.admits(&key) => Ok(AdminAuth),
        Some(_) => Err(wrong_admin_key()),
        None => match presented(parts, WALLET_HEADER) {
            Some(Ok(key)) if wallet_of(state, &key).await?.is_some() => Err(Problem::forbidden(
                "this call needs the admin key in x-admin-api-key; a wallet's apikey cannot make it",
            )),
            _ => Err(wrong_admin_key()),
        },
    }
}

impl FromRequestParts<ApiState> for WalletAuth {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Problem> {
        limited(parts, state, wallet_auth(parts, state))
            .await
            .map(WalletAuth)
    }
}

impl FromRequestParts<ApiState> for AdminAuth {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Problem> {
        limited(parts, state, admin_auth(parts, state)).await
    }
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Problem> {
        let authenticate = async {
            if parts.headers.contains_key(ADMIN_HEADER) {
                admin_auth(parts, state)
                    .await
                    .map(|AdminAuth| Caller::Admin)
            } else {
                wallet_auth(parts, state).await.map(Caller::Wallet)
            }
        };
        limited(parts, state, authenticate).await
    }
}
