//! The contract suite against `SqliteStore`: a fresh database file per test.

use tempfile::TempDir;
use webhook_adapters::SqliteStore;

use crate::contract;

async fn fresh() -> (TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("t.db"), 4)
        .await
        .unwrap();
    (dir, store)
}

#[tokio::test]
async fn wallet_create_get() {
    let (_dir, store) = fresh().await;
    contract::wallet_create_get_contract(&store).await;
}

#[tokio::test]
async fn api_keys() {
    let (_dir, store) = fresh().await;
    contract::api_keys_contract(&store).await;
}

#[tokio::test]
async fn webhook_round_trip() {
    let (_dir, store) = fresh().await;
    contract::webhook_round_trip_contract(&store).await;
}

#[tokio::test]
async fn webhook_tenant_isolation() {
    let (_dir, store) = fresh().await;
    contract::webhook_tenant_isolation_contract(&store).await;
}

#[tokio::test]
async fn webhook_limit() {
    let (_dir, store) = fresh().await;
    contract::webhook_limit_contract(&store).await;
}

#[tokio::test]
async fn webhook_delete() {
    let (_dir, store) = fresh().await;
    contract::webhook_delete_contract(&store).await;
}

#[tokio::test]
async fn webhook_disable() {
    let (_dir, store) = fresh().await;
    contract::webhook_disable_contract(&store).await;
}

#[tokio::test]
async fn global_webhook() {
    let (_dir, store) = fresh().await;
    contract::global_webhook_contract(&store).await;
}

#[tokio::test]
async fn publish_fan_out() {
    let (_dir, store) = fresh().await;
    contract::publish_fan_out_contract(&store).await;
}

#[tokio::test]
async fn publish_replay() {
    let (_dir, store) = fresh().await;
    contract::publish_replay_contract(&store).await;
}

#[tokio::test]
async fn publish_replay_with_new_key() {
    let (_dir, store) = fresh().await;
    contract::publish_replay_with_new_key_contract(&store).await;
}

#[tokio::test]
async fn publish_idempotency() {
    let (_dir, store) = fresh().await;
    contract::publish_idempotency_contract(&store).await;
}

#[tokio::test]
async fn publish_atomicity() {
    let (_dir, store) = fresh().await;
    contract::publish_atomicity_contract(&store).await;
}

#[tokio::test]
async fn claim_due() {
    let (_dir, store) = fresh().await;
    contract::claim_due_contract(&store).await;
}

#[tokio::test]
async fn record_attempts() {
    let (_dir, store) = fresh().await;
    contract::record_attempts_contract(&store).await;
}

#[tokio::test]
async fn release() {
    let (_dir, store) = fresh().await;
    contract::release_contract(&store).await;
}

#[tokio::test]
async fn next_due_at() {
    let (_dir, store) = fresh().await;
    contract::next_due_at_contract(&store).await;
}

#[tokio::test]
async fn requeue() {
    let (_dir, store) = fresh().await;
    contract::requeue_contract(&store).await;
}

#[tokio::test]
async fn list_deliveries_isolation() {
    let (_dir, store) = fresh().await;
    contract::list_deliveries_isolation_contract(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims() {
    let (_dir, store) = fresh().await;
    contract::concurrent_claims_contract(&store).await;
}
