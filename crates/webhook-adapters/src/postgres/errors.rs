//! What PostgreSQL's errors mean to the ports: which ones are a lost connection and which a
//! refusal of the disk (full, read-only, a failed write). This module must not be asked about
//! another driver's errors, and nothing outside it may look at PostgreSQL's texts.
//!
//! PostgreSQL names each error by its SQLSTATE, and that is what should decide: 57P01
//! `admin_shutdown` and 57P02 `crash_shutdown` (the server ends the session), 53100
//! `disk_full`, 25006 `read_only_sql_transaction`, 58030 `io_error`. But diesel-async 0.9 keeps
//! the SQLSTATE only as far as it maps it to one of diesel's error kinds (unique, foreign key,
//! restrict, exclusion, not-null and check violations, serialization failure, and 25006 as
//! `ReadOnlyTransaction`); the server's error it wraps is private, and diesel 2.3's
//! `DatabaseErrorInformation` has no accessor for the code (diesel-rs/diesel#5232 proposes
//! one). So:
//! - 25006 is told by its kind, `ReadOnlyTransaction`: the SQLSTATE, as diesel keeps it.
//! - A connection that is gone is told by its kinds: diesel-async reports a closed connection
//!   as `UnableToSendCommand` (an error without SQLSTATE), diesel's libpq connection (which the
//!   migration harness does not use, but may) as `ClosedConnection`.
//! - 57P01 and 57P02, which a statement running when the server shuts down gets, are told by
//!   the server's message for them ([`SHUTDOWN_MESSAGES`]). These are PostgreSQL's texts
//!   (`ProcessInterrupts` and `quickdie` in its `postgres.c`), sent in English unless the
//!   server's `lc_messages` translates them; a translated one goes unrecognised here (a 500),
//!   and the next statement on that connection fails as closed, which is recognised.
//! - 53100 and 58030 (and EROFS, which PostgreSQL files under 42501 with permission errors,
//!   so that not even the SQLSTATE would tell it) are told by the operating system's
//!   `strerror` text that PostgreSQL quotes after the file it could not extend or write
//!   ([`OS_REFUSALS`]), again in English unless translated.
//!
//! When diesel exposes the SQLSTATE, the texts go and the codes decide; nothing outside this
//! module changes.

use diesel::result::{DatabaseErrorKind, Error};
use webhook_ports::StorageRefusal;

use crate::port_errors::DriverFault;

/// The messages of the SQLSTATEs with which PostgreSQL ends a session when it shuts down
/// (57P01 `admin_shutdown`, 57P02 `crash_shutdown`); see the module's docs for why texts.
const SHUTDOWN_MESSAGES: [&str; 2] = [
    "terminating connection due to administrator command",
    "terminating connection because of crash of another server process",
];

/// The operating system's texts for the errors of a write that PostgreSQL quotes (`could not
/// extend file "...": No space left on device`), and which refusal each is.
const OS_REFUSALS: [(&str, StorageRefusal); 3] = [
    // ENOSPC: SQLSTATE 53100 `disk_full`.
    ("No space left on device", StorageRefusal::DiskFull),
    // EROFS: SQLSTATE 42501, shared with permission errors.
    ("Read-only file system", StorageRefusal::ReadOnly),
    // EIO: SQLSTATE 58030 `io_error`.
    ("Input/output error", StorageRefusal::WriteFailed),
];

/// What a driver error of the PostgreSQL store means to the ports (see the module's docs).
pub(crate) fn driver_fault(e: &Error) -> Option<DriverFault> {
    use DatabaseErrorKind as Kind;
    match e {
        Error::DatabaseError(Kind::ClosedConnection | Kind::UnableToSendCommand, _) => {
            Some(DriverFault::Lost)
        }
        // SQLSTATE 25006: a read-only transaction, or a standby server.
        Error::DatabaseError(Kind::ReadOnlyTransaction, _) => {
            Some(DriverFault::Refused(StorageRefusal::ReadOnly))
        }
        Error::DatabaseError(Kind::Unknown, info) => {
            let message = info.message();
            if SHUTDOWN_MESSAGES.iter().any(|m| message.starts_with(m)) {
                return Some(DriverFault::Lost);
            }
            OS_REFUSALS
                .iter()
                .find(|(text, _)| message.ends_with(text))
                .map(|&(_, refusal)| DriverFault::Refused(refusal))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use webhook_ports::OutboxError;

    use super::super::port;
    use super::*;

    fn driver(kind: DatabaseErrorKind, message: &str) -> Error {
        Error::DatabaseError(kind, Box::new(message.to_owned()))
    }

    /// Checks what `message` of `kind` means, and that the port answers `Unavailable` for it
    /// exactly when it means something.
    fn check(kind: DatabaseErrorKind, message: &str, expected: Option<DriverFault>) {
        assert_eq!(driver_fault(&driver(kind, message)), expected, "{message}");
        let error: OutboxError = port(driver(kind, message));
        assert_eq!(
            matches!(error, OutboxError::Unavailable(_)),
            expected.is_some(),
            "{message}: {error:?}"
        );
    }

    #[test]
    fn a_closed_connection_or_a_shutdown_is_lost() {
        use DatabaseErrorKind as Kind;
        let lost = Some(DriverFault::Lost);
        check(Kind::UnableToSendCommand, "connection closed", lost);
        check(Kind::ClosedConnection, "server closed the connection", lost);
        check(
            Kind::Unknown,
            "terminating connection due to administrator command",
            lost,
        );
        check(
            Kind::Unknown,
            "terminating connection because of crash of another server process",
            lost,
        );
        check(Kind::Unknown, "division by zero", None);
        check(Kind::UniqueViolation, "duplicate key value", None);
        check(
            Kind::SerializationFailure,
            "could not serialize access",
            None,
        );
        assert_eq!(driver_fault(&Error::NotFound), None);
        assert_eq!(driver_fault(&Error::BrokenTransactionManager), None);
        // A commit cut off with the connection: its rollback could not be sent either.
        let commit = Error::RollbackErrorOnCommit {
            rollback_error: Box::new(driver(Kind::UnableToSendCommand, "connection closed")),
            commit_error: Box::new(driver(Kind::Unknown, "could not serialize access")),
        };
        assert_eq!(DriverFault::of(&commit, driver_fault), lost);
        let error: OutboxError = port(commit);
        assert!(matches!(error, OutboxError::Unavailable(_)), "{error:?}");
    }

    #[test]
    fn the_disk_refusals_are_told_by_kind_or_by_the_quoted_os_error() {
        use DatabaseErrorKind as Kind;
        let refused = |r| Some(DriverFault::Refused(r));
        check(
            Kind::ReadOnlyTransaction,
            "cannot execute INSERT in a read-only transaction",
            refused(StorageRefusal::ReadOnly),
        );
        check(
            Kind::Unknown,
            "could not extend file \"base/5/16384\": No space left on device",
            refused(StorageRefusal::DiskFull),
        );
        check(
            Kind::Unknown,
            "could not write to file \"pg_wal/xlogtemp.77\": Read-only file system",
            refused(StorageRefusal::ReadOnly),
        );
        check(
            Kind::Unknown,
            "could not write block 7 in file \"base/5/16384\": Input/output error",
            refused(StorageRefusal::WriteFailed),
        );
        // A value that merely mentions one is not one.
        check(
            Kind::CheckViolation,
            "new row violates check constraint: No space left on device",
            None,
        );
        check(
            Kind::Unknown,
            "invalid input syntax for type uuid: \"No space left on device x\"",
            None,
        );
    }

    /// The server's own errors, not made-up ones: a write in a read-only transaction (25006),
    /// and a statement whose session an administrator ends (57P01), as diesel-async hands them
    /// over.
    #[tokio::test]
    async fn the_servers_errors_are_classified() {
        use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
        let Some(schema) = crate::testing::PgTestSchema::create().await else {
            return;
        };
        let mut admin = AsyncPgConnection::establish(&schema.url()).await.unwrap();
        let mut reader = AsyncPgConnection::establish(&schema.url()).await.unwrap();
        reader
            .batch_execute("SET default_transaction_read_only = on")
            .await
            .unwrap();
        let error = reader
            .batch_execute("CREATE TABLE refused (n int)")
            .await
            .unwrap_err();
        assert_eq!(
            driver_fault(&error),
            Some(DriverFault::Refused(StorageRefusal::ReadOnly)),
            "{error}"
        );

        // The sleeper tells its backend's pid by its application name, so that only it is ended.
        let name = format!("webhookd-cut-{}", uuid::Uuid::new_v4().simple());
        let mut sleeper = AsyncPgConnection::establish(&schema.url()).await.unwrap();
        sleeper
            .batch_execute(&format!("SET application_name = '{name}'"))
            .await
            .unwrap();
        let sleeping = tokio::spawn(async move {
            sleeper
                .batch_execute("SELECT pg_sleep(30)")
                .await
                .unwrap_err()
        });
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            // Ends the session once the sleeper's statement runs, and fails until then.
            let ended = admin
                .batch_execute(&format!(
                    "DO $$ BEGIN IF (SELECT count(pg_terminate_backend(pid)) \
                     FROM pg_stat_activity WHERE application_name = '{name}' \
                     AND query LIKE 'SELECT pg_sleep%') = 0 THEN RAISE EXCEPTION 'not yet'; \
                     END IF; END $$"
                ))
                .await;
            if ended.is_ok() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the sleeper never ran: {ended:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let error = tokio::time::timeout(std::time::Duration::from_secs(10), sleeping)
            .await
            .expect("the ended session still sleeps")
            .unwrap();
        assert_eq!(driver_fault(&error), Some(DriverFault::Lost), "{error}");
    }
}
