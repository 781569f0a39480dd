//! The PostgreSQL backend of the async queue (`openQueue({ url })`; see ASYNC.md).
//!
//! Plain Rust over `tokio-postgres`; `src/lib.rs` binds it. Its connections live on a runtime
//! of their own ([`runtime`]), so that the writer thread (`src/writer.rs`) can block on it and
//! the reads can be awaited from any other runtime.
//!
//! # The write protocol, which every reader relies on
//!
//! Ids come from an identity sequence, so without care a transaction that commits later could
//! hold a smaller id than one already visible, and a reader that goes by position would skip
//! it for ever. Two rules prevent that:
//!
//! - every writing transaction (one per group of calls, see [`write`]) first takes
//!   `pg_advisory_xact_lock` on the schema's write key ([`schema::Names::write_key`]), so the
//!   writers of every process assign ids in commit order, and ids within one call are
//!   consecutive;
//! - each row stores the id of the transaction that wrote it (`tx_id xid8`, defaulting to
//!   `pg_current_xact_id()`), and every ORDERED read (streams, consumers, `cycleThrough`,
//!   keyset cursors) returns only rows with `tx_id < pg_snapshot_xmin(pg_current_snapshot())`:
//!   rows of transactions that may still be in flight are left for the next read, so even a
//!   row written by a program that ignores the lock is never skipped.
//!
//! Each committed group also sends one `pg_notify` on the schema's channel
//! ([`schema::Names::channel`]), with an empty payload: a follower `LISTEN`s there and
//! re-reads by position, so a lost notification delays an event and never loses it.

pub mod config;
pub mod consumer;
pub mod listen;
pub mod page;
pub mod pool;
pub mod read;
pub mod schema;
pub mod stream;
pub mod tls;
pub mod write;

use once_cell::sync::Lazy;
use tokio::runtime::Runtime;

use crate::error::{Error, Result};

static RUNTIME: Lazy<std::io::Result<Runtime>> = Lazy::new(|| {
    tokio::runtime::Builder::new_multi_thread().worker_threads(1).thread_name("eventlite-pg").enable_all().build()
});

/// The runtime every PostgreSQL connection runs on, started on first use.
pub fn runtime() -> Result<&'static Runtime> {
    RUNTIME.as_ref().map_err(|err| Error::Connection {
        message: format!("cannot start the PostgreSQL runtime: {err}"),
        pg_code: None,
    })
}

/// SQLSTATE classes that mean the connection, not the statement, failed: connection
/// exceptions (08), bad credentials (28), a database that does not exist (3D), and the server
/// shutting down or starting up (57P).
fn is_connection_state(state: &str) -> bool {
    ["08", "28", "3D", "57P"].iter().any(|class| state.starts_with(class))
}

impl From<tokio_postgres::Error> for Error {
    fn from(err: tokio_postgres::Error) -> Error {
        match err.as_db_error() {
            Some(db) => {
                let state = db.code().code().to_string();
                let message = db.message().to_string();
                if is_connection_state(&state) {
                    Error::Connection { message, pg_code: Some(state) }
                } else {
                    Error::Postgres { message, pg_code: Some(state) }
                }
            }
            // No answer from the server: the connection is refused, closed or broken.
            None if err.is_closed() || std::error::Error::source(&err).is_some_and(|s| s.is::<std::io::Error>()) => {
                Error::Connection { message: connection_message(&err), pg_code: None }
            }
            None => Error::Postgres { message: err.to_string(), pg_code: None },
        }
    }
}

/// The driver's message with its cause, which it leaves out ("error connecting to server"
/// alone does not say the port refused).
fn connection_message(err: &tokio_postgres::Error) -> String {
    match std::error::Error::source(err) {
        Some(source) => format!("{err}: {source}"),
        None => err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_states_are_told_from_statement_states() {
        for state in ["08006", "28P01", "3D000", "57P01"] {
            assert!(is_connection_state(state), "{state}");
        }
        for state in ["23505", "42P01", "40001"] {
            assert!(!is_connection_state(state), "{state}");
        }
    }

    /// The server URL of the tests that need one, or `None` (with a note) when none is set.
    pub(crate) fn server_url() -> Option<String> {
        let url = std::env::var("EVENTLITE_TEST_PG_URL").ok().filter(|url| !url.is_empty());
        if url.is_none() {
            eprintln!("EVENTLITE_TEST_PG_URL is not set: skipping a PostgreSQL test");
        }
        url
    }
}
