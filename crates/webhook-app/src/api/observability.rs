//! What operators and orchestrators ask, outside the base path and without credentials:
//! `/health` (the process answers), `/ready` (the database answers and has every migration)
//! and `/metrics` (Prometheus). None of them changes anything, and none of their answers
//! names a credential: database failures are logged, and answered with a fixed text.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::problem::Problem;
use super::state::{ApiState, DatabaseStatus};
use crate::metrics;

/// The longest a readiness check waits for the database.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest a scrape waits for the backlog; past it the backlog gauges keep their values.
const BACKLOG_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// `200 {"status":"ready"}`, or a 503 problem saying what is missing.
pub(crate) async fn ready(
    State(state): State<ApiState>,
) -> Result<Json<serde_json::Value>, Problem> {
    readiness(state.database.as_ref()).await?;
    Ok(Json(serde_json::json!({ "status": "ready" })))
}

/// The metrics in the OpenMetrics text format, with the backlog read now.
pub(crate) async fn metrics(State(state): State<ApiState>) -> Result<Response, Problem> {
    let now = state.clock.now();
    let backlog = match tokio::time::timeout(BACKLOG_TIMEOUT, state.queue.backlog(now)).await {
        Ok(Ok(backlog)) => Some(backlog),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "metrics: cannot read the backlog");
            None
        }
        Err(_) => {
            tracing::warn!(
                "metrics: the backlog was not read within {} s",
                BACKLOG_TIMEOUT.as_secs()
            );
            None
        }
    };
    let text = state
        .metrics
        .render(now, backlog, state.database.pool())
        .map_err(|e| Problem::internal(&e))?;
    Ok(([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response())
}

fn not_ready(detail: impl Into<String>) -> Problem {
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "not-ready",
        "The service is not ready",
    )
    .detail(detail)
}

/// Ready when the database answers within [`READY_TIMEOUT`] and lacks no migration.
async fn readiness(database: &dyn DatabaseStatus) -> Result<(), Problem> {
    let pending = match tokio::time::timeout(READY_TIMEOUT, database.pending_migrations()).await {
        Ok(Ok(pending)) => pending,
        Ok(Err(e)) => {
            tracing::warn!(
                error = format!("{e:#}"),
                "readiness: the database does not answer"
            );
            return Err(not_ready("the database does not answer; the log says why"));
        }
        Err(_) => {
            return Err(not_ready(format!(
                "the database did not answer within {} s",
                READY_TIMEOUT.as_secs()
            )));
        }
    };
    if !pending.is_empty() {
        return Err(not_ready(format!(
            "the database lacks {} migration(s): {}; run `webhookd migrate`",
            pending.len(),
            pending.join(", ")
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;

    use super::*;
    use crate::metrics::PoolUsage;

    /// A database that answers with `pending`, or fails with `error`, or never answers.
    enum FakeDatabase {
        Pending(Vec<String>),
        Fails(&'static str),
        Hangs,
    }

    #[async_trait]
    impl DatabaseStatus for FakeDatabase {
        async fn pending_migrations(&self) -> anyhow::Result<Vec<String>> {
            match self {
                FakeDatabase::Pending(pending) => Ok(pending.clone()),
                FakeDatabase::Fails(message) => Err(anyhow::anyhow!(*message)),
                FakeDatabase::Hangs => std::future::pending().await,
            }
        }

        fn pool(&self) -> PoolUsage {
            PoolUsage::default()
        }
    }

    async fn check(database: FakeDatabase) -> Result<(), Problem> {
        readiness(&database).await
    }

    #[tokio::test]
    async fn a_migrated_database_that_answers_is_ready() {
        assert!(check(FakeDatabase::Pending(Vec::new())).await.is_ok());
    }

    #[tokio::test]
    async fn pending_migrations_are_named_in_a_503() {
        let problem = check(FakeDatabase::Pending(vec![
            "2026-11-29-000000_api".to_owned(),
        ]))
        .await
        .unwrap_err();
        assert_eq!(problem.status, 503);
        assert_eq!(problem.kind, "https://webhookd.dev/problems/not-ready");
        assert_eq!(
            problem.detail.as_deref(),
            Some(
                "the database lacks 1 migration(s): 2026-11-29-000000_api; run `webhookd migrate`"
            )
        );
        let response = problem.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    }

    #[tokio::test]
    async fn a_failing_database_is_a_503_that_does_not_repeat_the_error() {
        let problem = check(FakeDatabase::Fails(
            "cannot connect to postgres://app:s3cret@db/hooks",
        ))
        .await
        .unwrap_err();
        assert_eq!(problem.status, 503);
        let body = serde_json::to_string(&problem).unwrap();
        assert!(body.contains("the database does not answer"), "{body}");
        assert!(!body.contains("s3cret"), "{body}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_database_that_never_answers_is_a_503_after_the_timeout() {
        let problem = check(FakeDatabase::Hangs).await.unwrap_err();
        assert_eq!(problem.status, 503);
        assert_eq!(
            problem.detail.as_deref(),
            Some("the database did not answer within 5 s")
        );
    }
}
