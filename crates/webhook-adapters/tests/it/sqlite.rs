//! The contract suite against `SqliteStore`: a fresh database file per test.

use tempfile::TempDir;
use webhook_adapters::SqliteStore;

pub(crate) async fn fresh() -> Option<(TempDir, SqliteStore)> {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("t.db"), 4)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    Some((dir, store))
}

contract_suite!(fresh);

#[tokio::test]
async fn migrate_reports_what_it_applied() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("t.db"), 1)
        .await
        .unwrap();
    let pending = store.pending_migrations().await.unwrap();
    assert!(!pending.is_empty());
    assert_eq!(store.migrate().await.unwrap().len(), pending.len());
    assert!(store.pending_migrations().await.unwrap().is_empty());
    assert!(store.migrate().await.unwrap().is_empty());
}

#[tokio::test]
async fn pool_state_counts_connections_up_to_the_pool_size() {
    use webhook_ports::DeliveryQueue;
    let (_dir, store) = fresh().await.unwrap();
    assert_eq!(store.pool_state().max, 4);
    store
        .next_due_at(time::OffsetDateTime::UNIX_EPOCH, &[])
        .await
        .unwrap();
    let state = store.pool_state();
    assert!((1..=4).contains(&state.connections), "{state:?}");
    assert!(state.idle <= state.connections, "{state:?}");
}
