//! Whether the database server (PostgreSQL or MySQL) accepted the pool's last connection
//! attempt, so that nobody waits long for a connection from a server that refuses them.
//!
//! bb8 lets a caller wait for a connection for the pool's whole timeout (ten seconds) even
//! when the server refuses every attempt: it learns of the failures only through its error
//! sink. With the database down, every request would hang that long before its 503. The pool
//! reports each refused attempt here (as its error sink) and each connection made (as its
//! connection customizer); a caller that is still waiting a moment after a refusal gives up
//! (see `PgStore::conn`). Pooled connections are checked out untested, so a dead one says
//! nothing about the server until its statement fails, and is not counted.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use diesel_async::pooled_connection::PoolError;
use tokio::sync::watch;

/// The server's last answer to a connection attempt, shared by the pool and its callers.
#[derive(Debug, Clone)]
pub(crate) struct Reachability {
    /// Why the last attempt failed, from a refusal until a connection is made.
    refused: Arc<watch::Sender<Option<Arc<str>>>>,
}

impl Reachability {
    pub(crate) fn new() -> Self {
        Self {
            refused: Arc::new(watch::Sender::new(None)),
        }
    }

    /// A connection was made: the server answers.
    pub(crate) fn accepted(&self) {
        self.refused
            .send_if_modified(|refused| refused.take().is_some());
    }

    /// Resolves once the last connection attempt was refused (at once if it was already), with
    /// the reason.
    pub(crate) async fn until_refused(&self) -> Arc<str> {
        let mut receiver = self.refused.subscribe();
        loop {
            if let Some(reason) = receiver.borrow_and_update().clone() {
                return reason;
            }
            // The sender lives as long as `self`: this fails only if it was dropped meanwhile.
            if receiver.changed().await.is_err() {
                return Arc::from("the connection pool was closed");
            }
        }
    }
}

impl bb8::ErrorSink<PoolError> for Reachability {
    fn sink(&self, error: PoolError) {
        if let PoolError::ConnectionError(e) = &error {
            // The text names the server's address and the reason, never the password.
            tracing::debug!(error = %e, "the database server refused a connection");
            self.refused.send_replace(Some(Arc::from(e.to_string())));
        }
    }

    fn boxed_clone(&self) -> Box<dyn bb8::ErrorSink<PoolError>> {
        Box::new(self.clone())
    }
}

impl<C: Send + 'static> bb8::CustomizeConnection<C, PoolError> for Reachability {
    fn on_acquire<'a>(
        &'a self,
        _connection: &'a mut C,
    ) -> Pin<Box<dyn Future<Output = Result<(), PoolError>> + Send + 'a>> {
        self.accepted();
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bb8::ErrorSink;
    use std::time::Duration;

    fn refused_error() -> PoolError {
        PoolError::ConnectionError(diesel::ConnectionError::BadConnection(
            "connection refused".to_owned(),
        ))
    }

    #[tokio::test]
    async fn a_refused_attempt_wakes_the_waiters_until_a_connection_is_made() {
        let reach = Reachability::new();
        let waiting = tokio::spawn({
            let reach = reach.clone();
            async move { reach.until_refused().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "nothing was refused yet");
        reach.sink(refused_error());
        let reason = tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("the refusal wakes the waiter")
            .unwrap();
        assert!(reason.contains("connection refused"), "{reason}");
        // Refused now: a new waiter resolves at once.
        tokio::time::timeout(Duration::from_millis(100), reach.until_refused())
            .await
            .expect("already refused");
        reach.accepted();
        let again = tokio::time::timeout(Duration::from_millis(50), reach.until_refused()).await;
        assert!(again.is_err(), "a made connection clears the refusal");
    }

    #[tokio::test]
    async fn a_failed_check_out_test_is_not_a_refusal() {
        let reach = Reachability::new();
        reach.sink(PoolError::QueryError(
            diesel::result::Error::BrokenTransactionManager,
        ));
        let waited = tokio::time::timeout(Duration::from_millis(50), reach.until_refused()).await;
        assert!(waited.is_err());
    }
}
