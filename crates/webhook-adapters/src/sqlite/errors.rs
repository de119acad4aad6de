//! What SQLite's errors mean to the ports: which ones are a refusal of the disk (full,
//! read-only, a failed write) and which mean the work could not run at all. Only SQLite's own
//! result codes and diesel's error kinds decide; this module must not match any other text.
//!
//! SQLite tells a refusal by its primary result code (`SQLITE_FULL`, `SQLITE_READONLY`,
//! `SQLITE_IOERR`), but diesel keeps no code of an error it does not give a kind of its own
//! (its SQLite connection reads `sqlite3_extended_errcode` only to tell constraint violations
//! apart, and keeps `sqlite3_errmsg` as the message). Reading the code from the connection
//! afterwards is no way out either: that takes unsafe code (forbidden here), and by then
//! diesel has rolled the transaction back, after which SQLite leaves the code undefined. What
//! diesel does keep is the message, and for these codes SQLite's message is the fixed text
//! `sqlite3_errstr` gives for the primary code: part of SQLite's API, the same for every
//! extended code of a primary one, and never translated. So the message is compared with
//! `sqlite3_errstr` of each code, asked of the linked SQLite itself, never with a copy of it.

use diesel::result::{DatabaseErrorKind, Error};
use webhook_ports::StorageRefusal;

use crate::port_errors::DriverFault;

/// The primary result codes that are a refusal of the disk, and which refusal each is.
const REFUSALS: [(std::ffi::c_int, StorageRefusal); 3] = [
    // What SQLite answers on ENOSPC, or past `max_page_count`.
    (libsqlite3_sys::SQLITE_FULL, StorageRefusal::DiskFull),
    // The file was opened read-only, or cannot be opened for writing.
    (libsqlite3_sys::SQLITE_READONLY, StorageRefusal::ReadOnly),
    // Any other failed read or write of the files: EFBIG past a file-size limit, EROFS or
    // EPERM on a file already open, EIO.
    (libsqlite3_sys::SQLITE_IOERR, StorageRefusal::WriteFailed),
];

/// What a driver error of the SQLite store means to the ports (see the module's docs).
pub(crate) fn driver_fault(e: &Error) -> Option<DriverFault> {
    match e {
        // diesel-async's `SyncConnectionWrapper` says so when the blocking thread could not
        // run the work (the runtime is shutting down): nothing ran.
        Error::DatabaseError(DatabaseErrorKind::UnableToSendCommand, _) => Some(DriverFault::Lost),
        Error::DatabaseError(DatabaseErrorKind::Unknown, info) => {
            refusal_of_message(info.message()).map(DriverFault::Refused)
        }
        _ => None,
    }
}

/// The refusal whose primary result code SQLite describes with `message`.
fn refusal_of_message(message: &str) -> Option<StorageRefusal> {
    REFUSALS
        .iter()
        .find(|(code, _)| libsqlite3_sys::code_to_str(*code) == message)
        .map(|&(_, refusal)| refusal)
}

#[cfg(test)]
mod tests {
    use diesel::connection::SimpleConnection;
    use diesel::{Connection, SqliteConnection};
    use webhook_ports::OutboxError;

    use super::super::port;
    use super::*;

    /// The error SQLite gives for `sql` on a connection to `url` prepared with `setup`.
    fn sqlite_error(url: &str, setup: &str, sql: &str) -> Error {
        let mut conn = SqliteConnection::establish(url).unwrap();
        conn.batch_execute(setup).unwrap();
        conn.batch_execute(sql).unwrap_err()
    }

    fn driver(kind: DatabaseErrorKind, message: &str) -> Error {
        Error::DatabaseError(kind, Box::new(message.to_owned()))
    }

    #[test]
    fn out_of_pages_is_a_full_disk() {
        // `max_page_count` makes SQLite answer SQLITE_FULL, as it does on ENOSPC.
        let error = sqlite_error(
            ":memory:",
            "PRAGMA max_page_count = 3; CREATE TABLE t (b BLOB);",
            "INSERT INTO t VALUES (zeroblob(100000));",
        );
        assert_eq!(
            driver_fault(&error),
            Some(DriverFault::Refused(StorageRefusal::DiskFull)),
            "{error}"
        );
    }

    #[test]
    fn a_file_opened_read_only_is_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ro.db");
        let mut conn = SqliteConnection::establish(&path.to_string_lossy()).unwrap();
        conn.batch_execute("CREATE TABLE t (n INTEGER);").unwrap();
        drop(conn);
        let error = sqlite_error(
            &format!("file:{}?mode=ro", path.display()),
            "",
            "INSERT INTO t VALUES (1);",
        );
        assert_eq!(
            driver_fault(&error),
            Some(DriverFault::Refused(StorageRefusal::ReadOnly)),
            "{error}"
        );
    }

    #[test]
    fn each_refusal_is_told_by_its_codes_text() {
        for (code, refusal) in REFUSALS {
            let message = libsqlite3_sys::code_to_str(code);
            assert_eq!(
                driver_fault(&driver(DatabaseErrorKind::Unknown, message)),
                Some(DriverFault::Refused(refusal)),
                "{message}"
            );
        }
        // The extended codes share their primary code's text.
        assert_eq!(
            refusal_of_message(libsqlite3_sys::code_to_str(
                libsqlite3_sys::SQLITE_IOERR_WRITE
            )),
            Some(StorageRefusal::WriteFailed)
        );
    }

    #[test]
    fn other_errors_mean_nothing_to_the_ports_but_a_thread_that_could_not_run() {
        assert_eq!(
            driver_fault(&driver(
                DatabaseErrorKind::UnableToSendCommand,
                "runtime shutting down"
            )),
            Some(DriverFault::Lost)
        );
        let unique = sqlite_error(
            ":memory:",
            "CREATE TABLE t (n INTEGER PRIMARY KEY); INSERT INTO t VALUES (1);",
            "INSERT INTO t VALUES (1);",
        );
        assert_eq!(driver_fault(&unique), None, "{unique}");
        let missing = sqlite_error(":memory:", "", "INSERT INTO events VALUES (1);");
        assert_eq!(driver_fault(&missing), None, "{missing}");
        // A text that merely mentions a refusal is not one.
        assert_eq!(
            driver_fault(&driver(
                DatabaseErrorKind::Unknown,
                "no such column: database or disk is full"
            )),
            None
        );
        assert_eq!(driver_fault(&Error::NotFound), None);
    }

    #[test]
    fn a_refusal_reaches_the_port_as_unavailable_with_its_kind() {
        let full = libsqlite3_sys::code_to_str(libsqlite3_sys::SQLITE_FULL);
        let error: OutboxError = port(driver(DatabaseErrorKind::Unknown, full));
        let OutboxError::Unavailable(cause) = error else {
            panic!("expected Unavailable, got {error:?}");
        };
        assert_eq!(
            cause.downcast_ref::<StorageRefusal>(),
            Some(&StorageRefusal::DiskFull)
        );
        // A commit that failed on a failed write, whose rollback found nothing to roll back.
        let commit = Error::RollbackErrorOnCommit {
            commit_error: Box::new(driver(
                DatabaseErrorKind::Unknown,
                libsqlite3_sys::code_to_str(libsqlite3_sys::SQLITE_IOERR),
            )),
            rollback_error: Box::new(Error::BrokenTransactionManager),
        };
        assert_eq!(
            DriverFault::of(&commit, driver_fault),
            Some(DriverFault::Refused(StorageRefusal::WriteFailed))
        );
        // Other driver failures stay opaque.
        let error: OutboxError = port(driver(DatabaseErrorKind::Unknown, "no such table: events"));
        assert!(matches!(error, OutboxError::Backend(_)), "{error:?}");
    }
}
