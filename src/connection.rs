//! A SQLite connection with its hot statements (the reads that render rows, the inserts)
//! prepared on it once.
//!
//! It dereferences to [`rusqlite::Connection`] for everything else (pragmas, schema,
//! transactions). The hot statements are [`crate::statement::Statement`]s, looked up by the
//! address of their `'static` SQL text: no hashing of the text on every call, as a cache keyed
//! by text needs.

use std::cell::RefCell;
use std::collections::HashMap;
use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

use rusqlite::{ffi, OpenFlags};

use crate::error::{Error, Result};
use crate::hash::FastHash;
use crate::statement::Statement;

/// Where a `'static` SQL text lives and how long it is: equal keys are the same text.
type SqlKey = (usize, usize);

pub struct Connection {
    /// Declared before `conn` so that the statements are dropped (finalized) before it closes:
    /// SQLite refuses to close a connection that still has statements.
    statements: RefCell<HashMap<SqlKey, Statement, FastHash>>,
    conn: rusqlite::Connection,
}

impl Connection {
    pub fn new(conn: rusqlite::Connection) -> Connection {
        Connection { statements: RefCell::default(), conn }
    }

    /// Opens `path`. Every connection to a file opens here, so that the file locks are made
    /// this copy of SQLite's own before the first one (see [`crate::lock`]).
    pub fn open(path: &str, flags: OpenFlags) -> Result<Connection> {
        crate::lock::install();
        Ok(Connection::new(rusqlite::Connection::open_with_flags(path, flags)?))
    }

    /// The statement for `sql`, prepared on first use. It goes back to the cache when the
    /// returned guard drops; a second use of the same text meanwhile prepares its own.
    pub fn cached(&self, sql: &'static str) -> Result<CachedStatement<'_>> {
        let key = (sql.as_ptr() as usize, sql.len());
        let taken = self.statements.borrow_mut().remove(&key);
        let stmt = match taken {
            Some(stmt) => stmt,
            // SAFETY: the handle is this open connection, and the statement stays inside this
            // `Connection` (in the cache or in a guard that borrows it) until it is finalized.
            None => unsafe { Statement::prepare(self.handle()?, sql)? },
        };
        Ok(CachedStatement { conn: self, key, stmt: ManuallyDrop::new(stmt) })
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

/// A statement lent out by [`Connection::cached`].
pub struct CachedStatement<'c> {
    conn: &'c Connection,
    key: SqlKey,
    /// Taken back into the cache when the guard drops.
    stmt: ManuallyDrop<Statement>,
}

impl Deref for CachedStatement<'_> {
    type Target = Statement;

    fn deref(&self) -> &Statement {
        &self.stmt
    }
}

impl DerefMut for CachedStatement<'_> {
    fn deref_mut(&mut self) -> &mut Statement {
        &mut self.stmt
    }
}

impl Drop for CachedStatement<'_> {
    fn drop(&mut self) {
        // SAFETY: `stmt` is not touched again after this.
        let stmt = unsafe { ManuallyDrop::take(&mut self.stmt) };
        // When the same text was lent out twice at once, the copy that comes back second is
        // dropped (finalized): one is enough.
        self.conn.statements.borrow_mut().entry(self.key).or_insert(stmt);
    }
}
