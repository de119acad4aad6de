//! An [`AdapterError`] turned into each port's error enum, once the backend that produced its
//! driver error has said what that error means ([`DriverFault`]).
//!
//! The meaning of a driver error depends on the driver: PostgreSQL speaks in SQLSTATEs and
//! server messages, SQLite in result codes. So each backend classifies its own errors (in
//! `sqlite/errors.rs` and `postgres/errors.rs`) and this module only acts on the verdict:
//! a lost connection or a refusal of the disk is the port's `Unavailable`, anything else its
//! `Backend`. It must not look at a driver's message text, nor name a backend.
//!
//! No port error is made from an `AdapterError` directly (there is no `From` for that): only
//! from a [`Classified`], which takes the backend's classifier. A new call site that forgets to
//! ask the backend does not compile, instead of answering 500 where 503 was due.

use diesel::result::Error as DriverError;
use webhook_ports::{BoxError, OutboxError, StorageRefusal, WalletStoreError, WebhookStoreError};

use crate::rows::AdapterError;

/// What a driver error means to the ports, as the backend that produced it tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DriverFault {
    /// The connection is gone (the server stopped, restarted or cut it), or the driver could
    /// not run the statement at all: nothing was decided, try again later.
    Lost,
    /// The database refused to write for a reason of its disk or files.
    Refused(StorageRefusal),
}

/// A backend's classifier: what one of its driver errors means, `None` when it means nothing
/// the ports act on (a constraint, a syntax error, ...). It is only ever shown the errors of
/// one statement; [`Classified::new`] unwraps diesel's compound errors first.
pub(crate) type Classifier = fn(&DriverError) -> Option<DriverFault>;

impl DriverFault {
    /// What `e` means by `classify`, looking through diesel's `RollbackErrorOnCommit`, which
    /// is not a driver's error but two of them: the commit's error says why the write failed;
    /// a rollback that could not be sent either means the connection is gone.
    pub(crate) fn of(e: &DriverError, classify: Classifier) -> Option<DriverFault> {
        match e {
            DriverError::RollbackErrorOnCommit {
                rollback_error,
                commit_error,
            } => match Self::of(commit_error, classify) {
                Some(fault) => Some(fault),
                None => Self::of(rollback_error, classify).filter(|f| *f == DriverFault::Lost),
            },
            other => classify(other),
        }
    }
}

/// An adapter error with its backend's verdict on its driver error: what port errors are made
/// from.
#[derive(Debug)]
pub(crate) struct Classified {
    error: AdapterError,
    fault: Option<DriverFault>,
}

impl Classified {
    /// `error`, its driver error (if any) classified by its backend's `classify`.
    pub(crate) fn new(error: AdapterError, classify: Classifier) -> Self {
        let fault = match &error {
            AdapterError::Db(e) => DriverFault::of(e, classify),
            // The pool gave no connection: the database is out of reach.
            AdapterError::Unavailable(_) => Some(DriverFault::Lost),
            _ => None,
        };
        Self { error, fault }
    }

    /// A port's `Unavailable` error when the database is out of reach or refused to write for
    /// a reason of its disk or files (then with the [`StorageRefusal`] as its cause, which the
    /// driver's text is logged beside, never passed on); its `Backend` error otherwise.
    fn unavailable_or_backend<E>(
        self,
        unavailable: fn(BoxError) -> E,
        backend: fn(BoxError) -> E,
    ) -> E {
        match self.fault {
            Some(DriverFault::Refused(refusal)) => {
                tracing::error!(error = %self.error, "{refusal}");
                unavailable(Box::new(refusal))
            }
            Some(DriverFault::Lost) => unavailable(Box::new(self.error)),
            None => backend(Box::new(self.error)),
        }
    }
}

impl From<Classified> for WalletStoreError {
    fn from(e: Classified) -> Self {
        match e.error {
            AdapterError::NotFound => WalletStoreError::NotFound,
            AdapterError::Conflict(what) => WalletStoreError::Conflict(what),
            _ => e.unavailable_or_backend(WalletStoreError::Unavailable, WalletStoreError::Backend),
        }
    }
}

impl From<Classified> for WebhookStoreError {
    fn from(e: Classified) -> Self {
        match e.error {
            AdapterError::NotFound => WebhookStoreError::NotFound,
            AdapterError::Conflict(what) => WebhookStoreError::Conflict(what),
            AdapterError::LimitReached(limit) => WebhookStoreError::LimitReached { limit },
            AdapterError::Stale => WebhookStoreError::Stale,
            _ => {
                e.unavailable_or_backend(WebhookStoreError::Unavailable, WebhookStoreError::Backend)
            }
        }
    }
}

impl From<Classified> for OutboxError {
    fn from(e: Classified) -> Self {
        match e.error {
            AdapterError::NotFound => OutboxError::NotFound,
            AdapterError::Conflict(what) => OutboxError::Conflict(what),
            _ => e.unavailable_or_backend(OutboxError::Unavailable, OutboxError::Backend),
        }
    }
}

#[cfg(test)]
mod tests {
    use diesel::result::DatabaseErrorKind;

    use super::*;

    /// A classifier that knows two made-up texts, standing for any backend's.
    fn classify(e: &DriverError) -> Option<DriverFault> {
        match e {
            DriverError::DatabaseError(_, info) if info.message() == "gone" => {
                Some(DriverFault::Lost)
            }
            DriverError::DatabaseError(_, info) if info.message() == "full" => {
                Some(DriverFault::Refused(StorageRefusal::DiskFull))
            }
            _ => None,
        }
    }

    fn driver(message: &str) -> DriverError {
        DriverError::DatabaseError(DatabaseErrorKind::Unknown, Box::new(message.to_owned()))
    }

    fn outbox(error: AdapterError) -> OutboxError {
        Classified::new(error, classify).into()
    }

    #[test]
    fn a_refusal_reaches_the_port_as_unavailable_with_its_kind() {
        let OutboxError::Unavailable(cause) = outbox(AdapterError::Db(driver("full"))) else {
            panic!("expected Unavailable");
        };
        assert_eq!(
            cause.downcast_ref::<StorageRefusal>(),
            Some(&StorageRefusal::DiskFull)
        );
        // Other driver failures stay opaque.
        let error = outbox(AdapterError::Db(driver("no such table: events")));
        assert!(matches!(error, OutboxError::Backend(_)), "{error:?}");
    }

    #[test]
    fn a_lost_connection_or_an_empty_pool_is_unavailable() {
        for error in [
            AdapterError::Db(driver("gone")),
            AdapterError::Unavailable("timed out".to_owned()),
        ] {
            let text = error.to_string();
            assert!(
                matches!(outbox(error), OutboxError::Unavailable(_)),
                "{text}"
            );
        }
        let error = outbox(AdapterError::Db(DriverError::NotFound));
        assert!(matches!(error, OutboxError::Backend(_)), "{error:?}");
    }

    #[test]
    fn a_failed_commit_is_judged_by_its_commit_then_by_its_rollback() {
        let check = |commit: DriverError, rollback: DriverError, expected: Option<DriverFault>| {
            let e = DriverError::RollbackErrorOnCommit {
                rollback_error: Box::new(rollback),
                commit_error: Box::new(commit),
            };
            assert_eq!(DriverFault::of(&e, classify), expected, "{e}");
        };
        let full = Some(DriverFault::Refused(StorageRefusal::DiskFull));
        check(driver("full"), DriverError::BrokenTransactionManager, full);
        check(driver("full"), driver("gone"), full);
        check(driver("serialize"), driver("gone"), Some(DriverFault::Lost));
        check(
            driver("gone"),
            DriverError::NotFound,
            Some(DriverFault::Lost),
        );
        // A rollback's refusal says nothing of why the commit failed.
        check(driver("serialize"), driver("full"), None);
        check(driver("serialize"), DriverError::NotFound, None);
    }

    #[test]
    fn port_variants_a_caller_acts_on_pass_through() {
        let conflict = Classified::new(AdapterError::Conflict("key".to_owned()), classify);
        assert!(matches!(
            WalletStoreError::from(conflict),
            WalletStoreError::Conflict(what) if what == "key"
        ));
        let stale = Classified::new(AdapterError::Stale, classify);
        assert!(matches!(
            WebhookStoreError::from(stale),
            WebhookStoreError::Stale
        ));
        let limit = Classified::new(AdapterError::LimitReached(3), classify);
        assert!(matches!(
            WebhookStoreError::from(limit),
            WebhookStoreError::LimitReached { limit: 3 }
        ));
        let missing = Classified::new(AdapterError::NotFound, classify);
        assert!(matches!(OutboxError::from(missing), OutboxError::NotFound));
    }
}
