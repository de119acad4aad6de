//! What MySQL's errors mean to the ports: which ones mean the work could not run at all (the
//! connection is gone) and which are a refusal to write. Only diesel's error kinds and the
//! errors of the linked MySQL driver decide; this module must not match another backend's
//! texts, nor a server message.
//!
//! diesel-async keeps the kind of a server error it knows (a unique or foreign key violation,
//! a read-only transaction) and turns every other driver error into an `Unknown` one whose
//! message is the driver error's text, without its code. So a connection that is gone is told
//! by the text the linked `mysql_async` gives its own errors for it, asked of `mysql_async`
//! itself (never a copy): its I/O errors (a reset or closed socket, a server that stopped),
//! and the driver's "connection closed" and "pool disconnected". A server's error code (disk
//! full 1021 or 1114, say) does not survive the conversion; such errors stay `Backend`, never
//! guessed from their message.
//!
//! One exception, for the store's own use and not the ports': a transaction that InnoDB ended
//! for a lock conflict, ER_LOCK_DEADLOCK (1213) or ER_LOCK_WAIT_TIMEOUT (1205), which the
//! store runs again ([`is_lock_conflict`]). diesel-async 0.9 boxes only the server error's
//! message (its `ErrorHelper` keeps `e.message`, drops `e.code` and the SQLSTATE), with no
//! source to downcast, so the code cannot be read back; these two are told by their exact
//! messages ([`LOCK_CONFLICT_MESSAGES`]), which every pooled connection asks for in English
//! (`lc_messages`, set with the isolation level). A message that does not match exactly is
//! not retried: the error reaches the caller as before, never a wrong retry. When diesel-async
//! keeps the code, it decides here and the texts go.

use diesel::result::{DatabaseErrorKind, Error};
use webhook_ports::StorageRefusal;

use crate::port_errors::DriverFault;

/// The texts `mysql_async` gives its errors that say the connection is gone, as diesel-async
/// keeps them (`to_string` of the driver's error).
fn lost_connection_texts() -> [String; 2] {
    [
        mysql_async::Error::Driver(mysql_async::DriverError::ConnectionClosed).to_string(),
        mysql_async::Error::Driver(mysql_async::DriverError::PoolDisconnected).to_string(),
    ]
}

/// What every I/O error of `mysql_async` begins with (its text for the error's own text).
fn io_error_prefix() -> String {
    let io = std::io::Error::other("");
    mysql_async::Error::Io(mysql_async::IoError::Io(io)).to_string()
}

/// The server's messages, in English, of the two errors with which InnoDB ends a transaction
/// that another one's locks stand in the way of, and which MySQL asks the application to run
/// again (see the module's docs for why texts): ER_LOCK_DEADLOCK (1213, SQLSTATE 40001), the
/// whole transaction rolled back; ER_LOCK_WAIT_TIMEOUT (1205), the statement rolled back.
/// MySQL 8 and MariaDB 10.6 and later send them alike.
const LOCK_CONFLICT_MESSAGES: [&str; 2] = [
    "Deadlock found when trying to get lock; try restarting transaction",
    "Lock wait timeout exceeded; try restarting transaction",
];

/// Whether `e` says InnoDB ended the transaction for a lock conflict (a deadlock or a lock
/// wait timeout): the transaction may be run again as a whole.
pub(crate) fn is_lock_conflict(e: &Error) -> bool {
    match e {
        Error::DatabaseError(DatabaseErrorKind::Unknown, info) => {
            LOCK_CONFLICT_MESSAGES.contains(&info.message())
        }
        _ => false,
    }
}

/// What a driver error of the MySQL store means to the ports (see the module's docs).
pub(crate) fn driver_fault(e: &Error) -> Option<DriverFault> {
    match e {
        Error::DatabaseError(DatabaseErrorKind::ReadOnlyTransaction, _) => {
            Some(DriverFault::Refused(StorageRefusal::ReadOnly))
        }
        Error::DatabaseError(DatabaseErrorKind::ClosedConnection, _) => Some(DriverFault::Lost),
        Error::DatabaseError(DatabaseErrorKind::Unknown, info) => {
            let message = info.message();
            let lost = lost_connection_texts().iter().any(|t| t == message)
                || message.starts_with(io_error_prefix().trim_end());
            lost.then_some(DriverFault::Lost)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use webhook_ports::OutboxError;

    use super::super::port;
    use super::*;

    fn driver(kind: DatabaseErrorKind, message: String) -> Error {
        Error::DatabaseError(kind, Box::new(message))
    }

    /// The error diesel-async makes of a `mysql_async` error that is not the server's.
    fn converted(e: &mysql_async::Error) -> Error {
        driver(DatabaseErrorKind::Unknown, e.to_string())
    }

    #[test]
    fn a_closed_or_reset_connection_is_lost() {
        for error in [
            mysql_async::Error::Driver(mysql_async::DriverError::ConnectionClosed),
            mysql_async::Error::Io(mysql_async::IoError::Io(std::io::Error::from(
                std::io::ErrorKind::ConnectionReset,
            ))),
            mysql_async::Error::Io(mysql_async::IoError::Io(std::io::Error::from(
                std::io::ErrorKind::BrokenPipe,
            ))),
        ] {
            assert_eq!(
                driver_fault(&converted(&error)),
                Some(DriverFault::Lost),
                "{error}"
            );
        }
    }

    #[test]
    fn constraint_and_other_server_errors_mean_nothing_to_the_ports() {
        assert_eq!(
            driver_fault(&driver(
                DatabaseErrorKind::UniqueViolation,
                "Duplicate entry".to_owned()
            )),
            None
        );
        // A server message that merely mentions a lost connection is not one.
        assert_eq!(
            driver_fault(&driver(
                DatabaseErrorKind::Unknown,
                "Table 'x' doesn't exist: Connection to the server is closed.".to_owned()
            )),
            None
        );
        assert_eq!(driver_fault(&Error::NotFound), None);
    }

    #[test]
    fn a_lost_connection_reaches_the_port_as_unavailable_and_a_read_only_one_as_refused() {
        let closed = mysql_async::Error::Driver(mysql_async::DriverError::ConnectionClosed);
        let error: OutboxError = port(converted(&closed));
        assert!(matches!(error, OutboxError::Unavailable(_)), "{error:?}");
        let error: OutboxError = port(driver(
            DatabaseErrorKind::ReadOnlyTransaction,
            "read only".to_owned(),
        ));
        let OutboxError::Unavailable(cause) = error else {
            panic!("expected Unavailable, got {error:?}");
        };
        assert_eq!(
            cause.downcast_ref::<StorageRefusal>(),
            Some(&StorageRefusal::ReadOnly)
        );
        let error: OutboxError = port(driver(
            DatabaseErrorKind::Unknown,
            "Unknown column 'x'".to_owned(),
        ));
        assert!(matches!(error, OutboxError::Backend(_)), "{error:?}");
    }
}
