//! Whether the database file a connection has open is still the file at its path.
//!
//! Deleting the file, or renaming another over it, while a queue has it open leaves the queue
//! writing to a file that no path reaches: every event it stores from then on is gone once the
//! queue closes. In rollback mode SQLite notices at the start of each write transaction and
//! refuses it (`SQLITE_READONLY_DBMOVED`); in WAL mode it does not look, so the store asks
//! before each write. The question is one `stat` of the path against the inode SQLite holds
//! (SQLite's `SQLITE_FCNTL_HAS_MOVED`): about a microsecond beside the 25 µs of a WAL commit.

use std::ffi::c_int;

use rusqlite::ffi;

use crate::connection::Connection;
use crate::error::{Error, Result};

/// Fails with `SQLITE_READONLY` (as SQLite's rollback mode does) when the connection's main
/// database file has been deleted, renamed or replaced since it was opened. An in-memory
/// database has no file and is always in place.
pub fn check_in_place(conn: &Connection) -> Result<()> {
    let mut moved: c_int = 0;
    // SAFETY: the handle is the open connection `conn` owns; "main" is NUL-terminated; for
    // this opcode SQLite writes one int through the pointer, which points at `moved`.
    let rc = unsafe {
        ffi::sqlite3_file_control(
            conn.handle()?.as_ptr(),
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_HAS_MOVED,
            (&raw mut moved).cast(),
        )
    };
    match rc {
        ffi::SQLITE_OK if moved != 0 => Err(Error::Sqlite {
            code: "SQLITE_READONLY",
            message: "attempt to write a readonly database: the database file was deleted, moved or replaced \
                      while the queue had it open (SQLITE_READONLY_DBMOVED); nothing was stored. Open the file \
                      at its path again."
                .into(),
        }),
        // No file to ask about (`:memory:`).
        ffi::SQLITE_OK | ffi::SQLITE_NOTFOUND => Ok(()),
        code => Err(Error::from(rusqlite::Error::SqliteFailure(ffi::Error::new(code), None))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(path: &std::path::Path) -> Connection {
        let conn = Connection::new(rusqlite::Connection::open(path).unwrap());
        conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (x)").unwrap();
        conn
    }

    #[test]
    fn a_file_deleted_or_replaced_is_no_longer_in_place() {
        let dir = std::env::temp_dir().join(format!("eventlite-file-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (path, other) = (dir.join("a.sqlite"), dir.join("b.sqlite"));

        let conn = open(&path);
        check_in_place(&conn).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(check_in_place(&conn).unwrap_err().code(), "SQLITE_READONLY");

        let conn = open(&path);
        drop(open(&other));
        std::fs::rename(&other, &path).unwrap();
        assert_eq!(check_in_place(&conn).unwrap_err().code(), "SQLITE_READONLY");

        let memory = Connection::new(rusqlite::Connection::open_in_memory().unwrap());
        check_in_place(&memory).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
