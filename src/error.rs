//! The one error type of the core. Every fallible function returns [`Result`]; the N-API layer
//! turns an [`Error`] into a JavaScript `Error` whose `code` is [`Error::code`], so callers can
//! branch on a stable string instead of parsing messages.

use std::fmt;

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug)]
pub enum Error {
    /// An event (or a batch payload) that cannot be stored as given.
    InvalidEvent(String),
    /// An option or argument outside what the API accepts.
    InvalidOption(String),
    /// A call on a queue after `close()`.
    QueueClosed,
    /// The file holds a `queue` table this library cannot use.
    SchemaMismatch(String),
    /// An error reported by SQLite; `code` is SQLite's own name, such as `SQLITE_BUSY`.
    Sqlite { code: &'static str, message: String },
    /// A stored row whose `data` or `metadata` is not JSON (written so by another program).
    CorruptRow { id: i64, column: &'static str, at: usize, what: &'static str },
    /// A stored row whose JSON text is longer than the runtime can hold in one string.
    RowTooLarge { id: i64, limit: usize },
    /// An event's `expectedVersion` did not match its stream; see [`crate::version`].
    VersionConflict(Box<crate::version::Conflict>),
    /// A consumer's lease is held by another reader; see [`crate::consumer`].
    ConsumerBusy(String),
}

impl Error {
    /// The stable code JavaScript sees as `err.code`.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidEvent(_) => "ERR_INVALID_EVENT",
            Error::InvalidOption(_) => "ERR_INVALID_OPTION",
            Error::QueueClosed => "ERR_QUEUE_CLOSED",
            Error::SchemaMismatch(_) => "ERR_SCHEMA_MISMATCH",
            Error::Sqlite { code, .. } => code,
            Error::VersionConflict(_) => "ERR_VERSION_CONFLICT",
            Error::ConsumerBusy(_) => "ERR_CONSUMER_BUSY",
            Error::CorruptRow { .. } => "ERR_CORRUPT_ROW",
            Error::RowTooLarge { .. } => "ERR_ROW_TOO_LARGE",
        }
    }

    /// The id of the stored row the error is about, for the errors that are about one.
    pub fn row_id(&self) -> Option<i64> {
        match self {
            Error::CorruptRow { id, .. } | Error::RowTooLarge { id, .. } => Some(*id),
            _ => None,
        }
    }

    /// An error that SQLite would have reported for a file it could not open, used when the
    /// failure happens before SQLite is reached (creating the parent folder).
    pub fn cant_open(message: String) -> Error {
        Error::Sqlite { code: "SQLITE_CANTOPEN", message }
    }

    /// The error, naming the file at `path` when it is about the file itself: SQLite's message
    /// ("file is not a database") does not say which. Worded as rusqlite words a file it
    /// cannot open.
    pub fn naming_file(self, path: &str) -> Error {
        match self {
            Error::Sqlite { code: code @ "SQLITE_NOTADB", message } => {
                Error::Sqlite { code, message: format!("{message}: {path}") }
            }
            other => other,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidEvent(m) | Error::InvalidOption(m) | Error::SchemaMismatch(m) | Error::ConsumerBusy(m) => {
                f.write_str(m)
            }
            Error::VersionConflict(conflict) => conflict.fmt(f),
            Error::QueueClosed => f.write_str("the queue is closed"),
            Error::Sqlite { message, .. } => f.write_str(message),
            Error::CorruptRow { id, column, at, what } => write!(
                f,
                "event {id} cannot be read: its stored {column} is not JSON ({what} at byte {at}); \
                 another program wrote it so"
            ),
            Error::RowTooLarge { id, limit } => write!(
                f,
                "event {id} cannot be read: its JSON text is longer than {limit} bytes, the most this runtime \
                 holds in one string"
            ),
        }
    }
}

impl std::error::Error for Error {}

impl From<rusqlite::Error> for Error {
    fn from(err: rusqlite::Error) -> Error {
        let code = match &err {
            rusqlite::Error::SqliteFailure(e, _) => primary_code_name(e.extended_code),
            rusqlite::Error::NulError(_) => "SQLITE_MISUSE",
            rusqlite::Error::InvalidPath(_) => "SQLITE_CANTOPEN",
            _ => "SQLITE_ERROR",
        };
        let message = match &err {
            // An empty message from SQLite would leave a blank: its text for the code says it.
            rusqlite::Error::SqliteFailure(e, Some(m)) if m.is_empty() => e.to_string(),
            _ => err.to_string(),
        };
        Error::Sqlite { code, message }
    }
}

/// A stored value of another type than the schema's, such as a text `id` written by hand.
impl From<rusqlite::types::FromSqlError> for Error {
    fn from(err: rusqlite::types::FromSqlError) -> Error {
        Error::SchemaMismatch(format!("a stored value has the wrong type: {err}"))
    }
}

/// SQLite's name for the primary result code inside an extended one.
fn primary_code_name(extended: i32) -> &'static str {
    use rusqlite::ffi;
    match extended & 0xff {
        ffi::SQLITE_ERROR => "SQLITE_ERROR",
        ffi::SQLITE_INTERNAL => "SQLITE_INTERNAL",
        ffi::SQLITE_PERM => "SQLITE_PERM",
        ffi::SQLITE_ABORT => "SQLITE_ABORT",
        ffi::SQLITE_BUSY => "SQLITE_BUSY",
        ffi::SQLITE_LOCKED => "SQLITE_LOCKED",
        ffi::SQLITE_NOMEM => "SQLITE_NOMEM",
        ffi::SQLITE_READONLY => "SQLITE_READONLY",
        ffi::SQLITE_INTERRUPT => "SQLITE_INTERRUPT",
        ffi::SQLITE_IOERR => "SQLITE_IOERR",
        ffi::SQLITE_CORRUPT => "SQLITE_CORRUPT",
        ffi::SQLITE_NOTFOUND => "SQLITE_NOTFOUND",
        ffi::SQLITE_FULL => "SQLITE_FULL",
        ffi::SQLITE_CANTOPEN => "SQLITE_CANTOPEN",
        ffi::SQLITE_PROTOCOL => "SQLITE_PROTOCOL",
        ffi::SQLITE_SCHEMA => "SQLITE_SCHEMA",
        ffi::SQLITE_TOOBIG => "SQLITE_TOOBIG",
        ffi::SQLITE_CONSTRAINT => "SQLITE_CONSTRAINT",
        ffi::SQLITE_MISMATCH => "SQLITE_MISMATCH",
        ffi::SQLITE_MISUSE => "SQLITE_MISUSE",
        ffi::SQLITE_NOLFS => "SQLITE_NOLFS",
        ffi::SQLITE_AUTH => "SQLITE_AUTH",
        ffi::SQLITE_RANGE => "SQLITE_RANGE",
        ffi::SQLITE_NOTADB => "SQLITE_NOTADB",
        _ => "SQLITE_ERROR",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_failures_keep_sqlites_own_name() {
        let busy = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY_SNAPSHOT), None);
        assert_eq!(Error::from(busy).code(), "SQLITE_BUSY");
        let notadb = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_NOTADB), None);
        assert_eq!(Error::from(notadb).code(), "SQLITE_NOTADB");
    }

    #[test]
    fn an_empty_sqlite_message_gives_way_to_sqlites_text_for_the_code() {
        let busy =
            rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY), Some("".into()));
        assert!(Error::from(busy).to_string().contains("locked"));
    }

    #[test]
    fn notadb_names_the_file_and_other_errors_keep_their_message() {
        let notadb = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_NOTADB), None);
        let named = Error::from(notadb).naming_file("/tmp/x.sqlite");
        assert_eq!(named.code(), "SQLITE_NOTADB");
        assert!(named.to_string().ends_with(": /tmp/x.sqlite"), "{named}");
        assert_eq!(Error::InvalidEvent("x".into()).naming_file("/tmp/x.sqlite").to_string(), "x");
    }

    #[test]
    fn library_errors_have_stable_codes() {
        assert_eq!(Error::QueueClosed.code(), "ERR_QUEUE_CLOSED");
        assert_eq!(Error::InvalidEvent("x".into()).code(), "ERR_INVALID_EVENT");
        assert_eq!(Error::InvalidOption("x".into()).code(), "ERR_INVALID_OPTION");
    }
}
