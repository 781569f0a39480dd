//! A SQLite connection with its hot statements (the reads that render rows, the inserts)
//! prepared on it once.
//!
//! It dereferences to [`rusqlite::Connection`] for everything else (pragmas, schema,
//! transactions). The hot statements are kept in a [`StatementCache`] of its own and lent out
//! as [`Statement`]s, which cannot leave it (see [`crate::statement`]).

use std::ops::Deref;
use std::ptr::NonNull;

use rusqlite::{ffi, OpenFlags};

use crate::error::{Error, Result};
use crate::statement::{Statement, StatementCache};

pub struct Connection {
    /// Declared before `conn` so that the statements are dropped (finalized) before it closes:
    /// SQLite refuses to close a connection that still has statements.
    statements: StatementCache,
    conn: rusqlite::Connection,
}

impl Connection {
    pub fn new(conn: rusqlite::Connection) -> Connection {
        Connection { statements: StatementCache::default(), conn }
    }

    /// Opens `path`. Every connection to a file opens here, so that the file locks are made
    /// this copy of SQLite's own before the first one (see [`crate::lock`]).
    pub fn open(path: &str, flags: OpenFlags) -> Result<Connection> {
        crate::lock::install();
        Ok(Connection::new(rusqlite::Connection::open_with_flags(path, flags)?))
    }

    /// The statement for `sql`, prepared on first use. It goes back to the cache when the
    /// returned guard drops; a second use of the same text meanwhile prepares its own.
    pub fn cached(&self, sql: &'static str) -> Result<Statement<'_>> {
        // SAFETY: the cache is this connection's own, used with no other, and dropped before
        // the connection closes (see the fields); the connection is private, so nothing else
        // can close it.
        unsafe { self.statements.get(self.handle()?, sql) }
    }

    /// The connection's SQLite handle, valid while `self` lives.
    pub fn handle(&self) -> Result<NonNull<ffi::sqlite3>> {
        // SAFETY: reading the handle of an open connection; it is only used while `self` lives.
        let raw = unsafe { self.conn.handle() };
        NonNull::new(raw).ok_or(Error::QueueClosed)
    }
}

impl Deref for Connection {
    type Target = rusqlite::Connection;

    fn deref(&self) -> &rusqlite::Connection {
        &self.conn
    }
}
