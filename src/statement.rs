//! Prepared statements driven through SQLite's C API, for the hot paths: the reads that render
//! rows, and the inserts.
//!
//! rusqlite reads a column with `sqlite3_column_type`, then `_text` and `_bytes`: three calls
//! that each go through the statement's error and mutex bookkeeping. Fetching the column's
//! `sqlite3_value` once and reading it with the `sqlite3_value_*` accessors skips that, and
//! rendering a page of rows costs about a third less. On the way in, rusqlite binds every text
//! as SQLITE_TRANSIENT, a copy that [`Statement::execute`] avoids.
//!
//! The C API leaves to its caller that a statement is used only on the connection it was
//! prepared on, and finalized before that connection closes. Here the types keep that rule, as
//! rusqlite's do: each connection keeps its statements in a [`StatementCache`], and lends one
//! out as a [`Statement`] guard that borrows the cache and puts the statement back when it
//! drops. The prepared statement itself (`RawStatement`) never leaves this module: the guard
//! offers methods, not a reference to it, so safe code cannot move it into another
//! connection's cache or keep it past its connection's close.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{c_int, CStr};
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::ptr::NonNull;

use rusqlite::ffi;
use rusqlite::types::ValueRef;

use crate::error::Result;
use crate::hash::FastHash;

/// Where a `'static` SQL text lives and how long it is: equal keys are the same text.
type SqlKey = (usize, usize);

/// One connection's prepared statements, looked up by the address of their `'static` SQL text:
/// no hashing of the text on every call, as a cache keyed by text needs.
#[derive(Default)]
pub struct StatementCache(RefCell<HashMap<SqlKey, RawStatement, FastHash>>);

impl StatementCache {
    /// The statement for `sql`, prepared on `db` on first use. It goes back to the cache when
    /// the returned guard drops; a second use of the same text meanwhile prepares its own.
    ///
    /// # Safety
    /// `db` must be the open connection the cache belongs to, the same on every call, and it
    /// must close only after the cache is dropped.
    pub unsafe fn get(&self, db: NonNull<ffi::sqlite3>, sql: &'static str) -> Result<Statement<'_>> {
        let key = (sql.as_ptr() as usize, sql.len());
        let taken = self.0.borrow_mut().remove(&key);
        let raw = match taken {
            Some(raw) => raw,
            // SAFETY: `db` outlives the cache (as this function requires), and the statement
            // stays in the cache, or in a guard that borrows it, until it is finalized.
            None => unsafe { RawStatement::prepare(db, sql)? },
        };
        Ok(Statement { cache: self, key, raw: ManuallyDrop::new(raw) })
    }
}

/// A prepared statement, lent out by [`crate::connection::Connection::cached`] until the guard
/// drops.
pub struct Statement<'c> {
    cache: &'c StatementCache,
    key: SqlKey,
    /// Taken back into the cache when the guard drops.
    raw: ManuallyDrop<RawStatement>,
}

impl Statement<'_> {
    /// Binds parameter `index` (from 1) to `value`.
    pub fn bind(&mut self, index: c_int, value: impl Param) -> Result<()> {
        let raw = &mut *self.raw;
        raw.forget_stale_texts();
        // SAFETY: `raw` is a live statement.
        let rc = unsafe { value.bind_to(raw.stmt.as_ptr(), index) };
        raw.check(rc)
    }

    /// Runs a statement that returns no rows, with every parameter bound by `bind`, in order.
    /// Texts are bound without a copy (SQLITE_STATIC), which the write path, six texts an
    /// event, needs: copying each cost a malloc, a copy and a free. `'t` keeps them alive for
    /// the call. After it they stay bound, as clearing every parameter of a chunk after each
    /// run costs a few percent of a batch; nothing can read them: this only steps once every
    /// parameter has been bound anew, and [`Statement::bind`] and [`Statement::rows`] clear
    /// them first.
    pub fn execute<'t>(&mut self, bind: impl FnOnce(&mut Binder<'_, 't>) -> Result<()>) -> Result<()> {
        // SAFETY: `stmt` is a live statement.
        let parameters = unsafe { ffi::sqlite3_bind_parameter_count(self.raw.stmt.as_ptr()) };
        let mut binder = Binder { raw: &mut self.raw, next: 1, _texts: PhantomData };
        bind(&mut binder)?;
        let raw = &mut *binder.raw;
        if binder.next != parameters + 1 {
            return Err(failure(raw.db, ffi::SQLITE_RANGE));
        }
        // SAFETY: `stmt` is a live statement.
        match unsafe { ffi::sqlite3_step(raw.stmt.as_ptr()) } {
            ffi::SQLITE_DONE | ffi::SQLITE_ROW => Ok(()),
            rc => Err(failure(raw.db, rc)),
        }
    }

    /// Runs the statement with the parameters bound so far; the rows are read as they are
    /// stepped to, and the statement is reset when they are dropped.
    pub fn rows(&mut self) -> Rows<'_> {
        self.raw.forget_stale_texts();
        Rows { raw: &mut self.raw, done: false }
    }

    /// Runs the statement with the parameters bound so far and reads the first `N` columns
    /// of its first row as integers; `None` when it returns no row.
    pub fn integers<const N: usize>(&mut self) -> Result<Option<[i64; N]>> {
        let mut rows = self.rows();
        let Some(row) = rows.next()? else { return Ok(None) };
        let mut values = [0; N];
        for (column, value) in (0..).zip(values.iter_mut()) {
            *value = row.value(column)?.as_i64()?;
        }
        Ok(Some(values))
    }
}

impl Drop for Statement<'_> {
    fn drop(&mut self) {
        // SAFETY: `raw` is not touched again after this.
        let raw = unsafe { ManuallyDrop::take(&mut self.raw) };
        // When the same text was lent out twice at once, the copy that comes back second is
        // dropped (finalized): one is enough.
        self.cache.0.borrow_mut().entry(self.key).or_insert(raw);
    }
}

/// One prepared statement, finalized when dropped. Only a [`StatementCache`] holds one, or the
/// guard it lends it through.
struct RawStatement {
    stmt: NonNull<ffi::sqlite3_stmt>,
    db: NonNull<ffi::sqlite3>,
    /// Whether a finished [`Statement::execute`] left texts bound that may be gone by now.
    stale_texts: bool,
}

// SAFETY: a statement is only used through its connection's cache (see the module's comment),
// so it moves with the connection, which is `Send`, and is never used from two threads at once
// (connections are opened with SQLITE_OPEN_NO_MUTEX and sit behind a `Mutex` or belong to one
// stream).
unsafe impl Send for RawStatement {}

impl RawStatement {
    /// Prepares `sql` on `db` as a long-lived statement.
    ///
    /// # Safety
    /// `db` must be an open connection that outlives the statement.
    unsafe fn prepare(db: NonNull<ffi::sqlite3>, sql: &str) -> Result<RawStatement> {
        let mut stmt = std::ptr::null_mut();
        let len = c_int::try_from(sql.len()).map_err(|_| failure(db, ffi::SQLITE_TOOBIG))?;
        let flags = ffi::SQLITE_PREPARE_PERSISTENT;
        // SAFETY: `db` is open (as this function requires); `sql` is valid for `len` bytes.
        let rc = unsafe {
            ffi::sqlite3_prepare_v3(db.as_ptr(), sql.as_ptr().cast(), len, flags, &mut stmt, std::ptr::null_mut())
        };
        if rc != ffi::SQLITE_OK {
            return Err(failure(db, rc));
        }
        // A statement of only whitespace or comments prepares to nothing.
        let stmt = NonNull::new(stmt).ok_or_else(|| failure(db, ffi::SQLITE_MISUSE))?;
        Ok(RawStatement { stmt, db, stale_texts: false })
    }

    /// Clears the texts a finished `execute` left bound, before anything else can step.
    fn forget_stale_texts(&mut self) {
        if std::mem::take(&mut self.stale_texts) {
            // SAFETY: `stmt` is a live statement.
            unsafe { ffi::sqlite3_clear_bindings(self.stmt.as_ptr()) };
        }
    }

    fn check(&self, rc: c_int) -> Result<()> {
        if rc == ffi::SQLITE_OK {
            Ok(())
        } else {
            Err(failure(self.db, rc))
        }
    }

    fn reset(&mut self) {
        // SAFETY: `stmt` is a live statement. Its result repeats the last step's error, which
        // that step already reported.
        unsafe { ffi::sqlite3_reset(self.stmt.as_ptr()) };
    }
}

impl Drop for RawStatement {
    fn drop(&mut self) {
        // SAFETY: the connection is still open (see `prepare`), and `stmt` is not used again.
        unsafe { ffi::sqlite3_finalize(self.stmt.as_ptr()) };
    }
}

mod sealed {
    /// Keeps [`super::Param`] implemented only here.
    pub trait Sealed {}
}

/// A value a parameter can be bound to: `i64`, `f64`, or `&str` (copied). Sealed: the types
/// above are all it needs, and every implementation is a promise the statements rely on.
pub trait Param: sealed::Sealed {
    /// Binds parameter `index` of `stmt` to the value and returns SQLite's result code.
    /// Whatever is bound must stay valid as long as it stays bound, which a value bound by a
    /// `sqlite3_bind_*` call by value (a number, NULL) or copied by SQLite (SQLITE_TRANSIENT)
    /// does: the binding outlives `self`. A text bound without a copy goes through
    /// [`Binder::push_text`] instead, whose lifetime keeps it alive.
    ///
    /// # Safety
    /// `stmt` must be a live statement.
    unsafe fn bind_to(self, stmt: *mut ffi::sqlite3_stmt, index: c_int) -> c_int;
}

impl sealed::Sealed for i64 {}
impl sealed::Sealed for f64 {}
impl sealed::Sealed for &str {}

impl Param for i64 {
    unsafe fn bind_to(self, stmt: *mut ffi::sqlite3_stmt, index: c_int) -> c_int {
        // SAFETY: `stmt` is live (as this function requires); an integer is bound by value.
        unsafe { ffi::sqlite3_bind_int64(stmt, index, self) }
    }
}

impl Param for f64 {
    unsafe fn bind_to(self, stmt: *mut ffi::sqlite3_stmt, index: c_int) -> c_int {
        // SAFETY: `stmt` is live (as this function requires); a real is bound by value.
        unsafe { ffi::sqlite3_bind_double(stmt, index, self) }
    }
}

/// SQLite copies the text (SQLITE_TRANSIENT), so the binding never outlives the string: the
/// texts bound on reads are short keys, and the copy costs nothing worth saving.
impl Param for &str {
    unsafe fn bind_to(self, stmt: *mut ffi::sqlite3_stmt, index: c_int) -> c_int {
        // Only a string over 2 GiB overflows: SQLite refuses those anyway.
        let Ok(len) = c_int::try_from(self.len()) else { return ffi::SQLITE_TOOBIG };
        // SAFETY: `stmt` is live (as this function requires); the text is valid for `len`
        // bytes during the call, and SQLite copies it before returning.
        unsafe { ffi::sqlite3_bind_text(stmt, index, self.as_ptr().cast(), len, ffi::SQLITE_TRANSIENT()) }
    }
}

/// The parameters of one [`Statement::execute`], bound in order from `?1`. Dropping it (when
/// `execute` returns, or unwinds) resets the statement and marks its texts stale.
pub struct Binder<'s, 't> {
    raw: &'s mut RawStatement,
    /// The parameter bound next.
    next: c_int,
    _texts: PhantomData<&'t str>,
}

impl<'t> Binder<'_, 't> {
    /// Binds the next parameter to `value`, or to NULL.
    pub fn push(&mut self, value: Option<impl Param>) -> Result<()> {
        let stmt = self.raw.stmt.as_ptr();
        // SAFETY: `stmt` is a live statement.
        let rc = unsafe {
            match value {
                Some(value) => value.bind_to(stmt, self.next),
                None => ffi::sqlite3_bind_null(stmt, self.next),
            }
        };
        self.advance(rc)
    }

    /// Binds the next parameter to `text` without copying it, or to NULL.
    pub fn push_text(&mut self, text: Option<&'t str>) -> Result<()> {
        let Some(text) = text else { return self.push(None::<i64>) };
        let len = c_int::try_from(text.len()).map_err(|_| failure(self.raw.db, ffi::SQLITE_TOOBIG))?;
        // SAFETY: `stmt` is a live statement; `text` outlives the `execute` call this binder
        // belongs to, and no step reads it after that (see `execute`).
        let rc = unsafe {
            ffi::sqlite3_bind_text(self.raw.stmt.as_ptr(), self.next, text.as_ptr().cast(), len, ffi::SQLITE_STATIC())
        };
        self.advance(rc)
    }

    fn advance(&mut self, rc: c_int) -> Result<()> {
        self.raw.check(rc)?;
        self.next += 1;
        Ok(())
    }
}

impl Drop for Binder<'_, '_> {
    fn drop(&mut self) {
        self.raw.reset();
        self.raw.stale_texts = true;
    }
}

/// The rows of one run of a statement, read one at a time.
pub struct Rows<'s> {
    raw: &'s mut RawStatement,
    done: bool,
}

impl Rows<'_> {
    /// Steps to the next row; `None` once there are no more.
    pub fn next(&mut self) -> Result<Option<Row<'_>>> {
        if self.done {
            return Ok(None);
        }
        // SAFETY: `stmt` is a live statement.
        match unsafe { ffi::sqlite3_step(self.raw.stmt.as_ptr()) } {
            ffi::SQLITE_ROW => Ok(Some(Row { stmt: self.raw.stmt, db: self.raw.db, _rows: PhantomData })),
            ffi::SQLITE_DONE => {
                self.done = true;
                Ok(None)
            }
            rc => {
                self.done = true;
                Err(failure(self.raw.db, rc))
            }
        }
    }
}

impl Drop for Rows<'_> {
    fn drop(&mut self) {
        self.raw.reset();
    }
}

/// The current row of a [`Rows`]; valid until the next step.
pub struct Row<'r> {
    stmt: NonNull<ffi::sqlite3_stmt>,
    db: NonNull<ffi::sqlite3>,
    _rows: PhantomData<&'r mut ()>,
}

impl Row<'_> {
    /// Column `index` (from 0). A column the statement lacks reads as NULL. Always inlined: a
    /// stream or a page calls it for every cell, and the call with its `Result` in memory cost
    /// a stream's reader about a twentieth of its instructions.
    #[inline(always)]
    pub fn value(&self, index: c_int) -> Result<ValueRef<'_>> {
        // SAFETY: the statement is live and on a row (the borrow of `Rows` guarantees no step
        // or reset until this row is dropped), so the value and the memory its text or blob
        // points to stay valid for the lifetime of `&self`. The value is "unprotected", which
        // SQLite lets the `sqlite3_value_*` accessors read when the connection has no mutex
        // of its own: every connection here is opened with SQLITE_OPEN_NO_MUTEX (rusqlite's
        // default too) and used by one thread at a time.
        unsafe {
            let value = ffi::sqlite3_column_value(self.stmt.as_ptr(), index);
            if value.is_null() {
                return Ok(ValueRef::Null);
            }
            Ok(match ffi::sqlite3_value_type(value) {
                ffi::SQLITE_INTEGER => ValueRef::Integer(ffi::sqlite3_value_int64(value)),
                ffi::SQLITE_FLOAT => ValueRef::Real(ffi::sqlite3_value_double(value)),
                ffi::SQLITE_TEXT => ValueRef::Text(self.bytes(ffi::sqlite3_value_text(value), value)?),
                ffi::SQLITE_BLOB => ValueRef::Blob(self.bytes(ffi::sqlite3_value_blob(value).cast(), value)?),
                _ => ValueRef::Null,
            })
        }
    }

    /// The bytes at `data`, as many as the value holds. Must be called after the accessor that
    /// returned `data`, as SQLite documents (the length is of the converted form).
    ///
    /// # Safety
    /// `value` must be a column value of this row, and `data` what `sqlite3_value_text` or
    /// `sqlite3_value_blob` has just returned for it.
    unsafe fn bytes(&self, data: *const u8, value: *mut ffi::sqlite3_value) -> Result<&[u8]> {
        // SAFETY: `value` is a value of this row (as this function requires).
        let len = unsafe { ffi::sqlite3_value_bytes(value) };
        if len <= 0 {
            return Ok(&[]);
        }
        if data.is_null() {
            // Only an allocation failure leaves a non-empty value without its bytes.
            return Err(failure(self.db, ffi::SQLITE_NOMEM));
        }
        // SAFETY: `data` points to the value's `len` bytes (as this function requires), which
        // stay valid as long as the row (see `value`).
        Ok(unsafe { std::slice::from_raw_parts(data, len as usize) })
    }
}

/// SQLite's error for `rc` on `db`, with its message, as rusqlite reports errors.
fn failure(db: NonNull<ffi::sqlite3>, rc: c_int) -> crate::error::Error {
    // SAFETY: `db` is an open connection; the message is copied before any other call on it.
    let message = unsafe {
        let text = ffi::sqlite3_errmsg(db.as_ptr());
        (!text.is_null()).then(|| CStr::from_ptr(text).to_string_lossy().into_owned())
    };
    // The connection's last error belongs to `rc` only when they agree; otherwise (an error
    // raised here, before SQLite was called) SQLite's text for the code says it.
    // SAFETY: as above.
    let message = message.filter(|_| unsafe { ffi::sqlite3_extended_errcode(db.as_ptr()) } == rc);
    rusqlite::Error::SqliteFailure(ffi::Error::new(rc), message).into()
}

#[cfg(test)]
mod tests {
    use super::Statement;
    use crate::connection::Connection;
    use rusqlite::types::ValueRef;

    fn memory() -> Connection {
        let conn = Connection::new(rusqlite::Connection::open_in_memory().unwrap());
        conn.execute_batch("CREATE TABLE t (a, b)").unwrap();
        conn
    }

    fn count(conn: &Connection) -> i64 {
        conn.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn execute_runs_only_once_every_parameter_is_bound() {
        let conn = memory();
        let mut insert = conn.cached("INSERT INTO t VALUES (?1, ?2)").unwrap();
        let err = insert.execute(|b| b.push_text(Some("only one"))).unwrap_err();
        assert_eq!(err.code(), "SQLITE_RANGE");
        assert_eq!(count(&conn), 0, "nothing was stepped");
        let owned = String::from("two");
        insert
            .execute(|b| {
                b.push_text(Some(&owned))?;
                b.push(Some(2_i64))
            })
            .unwrap();
        assert_eq!(count(&conn), 1);
    }

    #[test]
    fn texts_an_execute_bound_are_never_read_afterwards() {
        let conn = memory();
        let mut select = conn.cached("SELECT ?1").unwrap();
        {
            let gone = String::from("gone");
            select.execute(|b| b.push_text(Some(&gone))).unwrap();
        }
        // Run without binding anything: the parameter reads as NULL, not as the dropped text.
        let mut rows = select.rows();
        let row = rows.next().unwrap().unwrap();
        assert_eq!(row.value(0).unwrap(), ValueRef::Null);
    }

    /// The first column of the statement's first row, as an integer.
    fn first(stmt: &mut Statement<'_>) -> i64 {
        let mut rows = stmt.rows();
        let row = rows.next().unwrap().unwrap();
        row.value(0).unwrap().as_i64().unwrap()
    }

    #[test]
    fn a_statement_goes_back_to_the_connection_it_was_prepared_on() {
        const COUNT: &str = "SELECT COUNT(*) FROM t";
        let (one, two) = (memory(), memory());
        one.execute_batch("INSERT INTO t VALUES (1, 2)").unwrap();
        {
            let mut a = one.cached(COUNT).unwrap();
            let mut b = two.cached(COUNT).unwrap();
            // A guard moves whole: the statement goes with the cache it came from.
            std::mem::swap(&mut a, &mut b);
            assert_eq!((first(&mut a), first(&mut b)), (0, 1));
        }
        assert_eq!(first(&mut one.cached(COUNT).unwrap()), 1);
        assert_eq!(first(&mut two.cached(COUNT).unwrap()), 0);
    }
}
