//! Copying a live store with SQLite's online backup API, a step of pages at a time, so that the
//! caller can report progress between steps and other connections keep working meanwhile.
//!
//! SQLite restarts a backup from the first page whenever another connection changes the source
//! between two steps; under steady writes from other processes a large backup would then never
//! finish. So the backup reads the source through a connection of its own that holds one read
//! transaction from the first step to the last: in WAL mode that pins a snapshot, which no
//! writer disturbs (they append to the WAL), so the copy is consistent, holds every event
//! committed before it started, and finishes. In rollback-journal mode the same read lock makes
//! writers wait, up to their busy timeout, until the backup is done.
//!
//! rusqlite's `Backup` borrows both connections, so it cannot live in a struct that owns them
//! between steps run on different pool threads; this drives the same C API (`sqlite3_backup_*`)
//! directly.

use std::ffi::CString;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::{ffi, OpenFlags};

use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::store::{self, Store, MEMORY};

/// Where a backup reads from.
enum Source {
    /// A file: the backup's own connection, inside a read transaction.
    File(Connection),
    /// `:memory:` cannot be opened twice: the backup reads through the queue's connection,
    /// locked a step at a time. Changes the queue makes through it meanwhile are copied too
    /// (SQLite updates a backup from the connection it reads).
    Shared(Arc<Mutex<Store>>),
}

/// How far a backup has come, in pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub done: i64,
    pub total: i64,
    pub finished: bool,
}

/// A backup in progress. Declared field order matters: `raw` must be finished (in `Drop`)
/// before either connection closes, as SQLite requires.
pub struct Backup {
    raw: Option<NonNull<ffi::sqlite3_backup>>,
    dest: Connection,
    source: Source,
}

// SAFETY: the backup handle and both connections are only used from one thread at a time: the
// N-API layer runs each step on a pool thread while holding the `Backup` behind a `Mutex`. The
// connections are opened with SQLITE_OPEN_NO_MUTEX, which allows that (serialised use, any
// thread), and a shared source is only touched while its own `Mutex` is held.
unsafe impl Send for Backup {}

impl Backup {
    /// Starts a backup of `store` into the file `dest`, which is replaced.
    pub fn start(store: &Arc<Mutex<Store>>, dest: &str) -> Result<Backup> {
        if dest.is_empty() || dest.contains('\0') || dest == MEMORY {
            return Err(Error::InvalidOption("the backup destination must be a file path".into()));
        }
        let (path, busy_timeout_ms) = {
            let guard = store.lock().unwrap_or_else(PoisonError::into_inner);
            (guard.config().path.clone(), guard.config().busy_timeout_ms)
        };
        if path != MEMORY && same_file(&path, dest) {
            return Err(Error::InvalidOption(format!("the backup destination {dest} is the database itself")));
        }
        store::create_parent_folder(dest)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let dest_conn = Connection::open(dest, flags)?;
        dest_conn.busy_timeout(std::time::Duration::from_millis(u64::from(busy_timeout_ms)))?;
        let source = if path == MEMORY {
            Source::Shared(Arc::clone(store))
        } else {
            let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
            let conn = Connection::open(&path, flags)?;
            store::configure(&conn, busy_timeout_ms)?;
            // A read of the schema opens the read transaction that pins the snapshot.
            conn.execute_batch("BEGIN")?;
            conn.query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0))?;
            Source::File(conn)
        };
        let mut backup = Backup { raw: None, dest: dest_conn, source };
        let main = CString::new("main").map_err(|_| Error::InvalidOption("unreachable NUL".into()))?;
        let dest_handle = backup.dest.handle()?.as_ptr();
        let raw = backup.with_source(|source| {
            // SAFETY: both handles are open connections owned by `backup`, which finishes the
            // backup handle before closing either (see `Drop`).
            let raw = unsafe { ffi::sqlite3_backup_init(dest_handle, main.as_ptr(), source, main.as_ptr()) };
            NonNull::new(raw).ok_or_else(|| {
                // SAFETY: `dest_handle` is open; SQLite reports a failed init on the destination.
                let code = unsafe { ffi::sqlite3_extended_errcode(dest_handle) };
                Error::from(rusqlite::Error::SqliteFailure(ffi::Error::new(code), None))
            })
        })?;
        backup.raw = Some(raw);
        Ok(backup)
    }

    /// Runs `f` with the source's SQLite handle, locking a shared store for the call.
    fn with_source<T>(&self, f: impl FnOnce(*mut ffi::sqlite3) -> Result<T>) -> Result<T> {
        match &self.source {
            Source::File(conn) => f(conn.handle()?.as_ptr()),
            Source::Shared(store) => {
                let guard = store.lock().unwrap_or_else(PoisonError::into_inner);
                f(guard.conn().handle()?.as_ptr())
            }
        }
    }

    /// Copies up to `pages` more pages (all that are left when negative).
    pub fn step(&mut self, pages: i32) -> Result<Progress> {
        let Some(raw) = self.raw else {
            return Ok(Progress { done: 0, total: 0, finished: true });
        };
        let rc = self.with_source(|_| {
            // SAFETY: `raw` is a live backup handle (finished only in `finish`, which clears
            // it); a shared source is locked for the step by `with_source`.
            Ok(unsafe { ffi::sqlite3_backup_step(raw.as_ptr(), pages) })
        })?;
        // SAFETY: as above.
        let (remaining, total) =
            unsafe { (ffi::sqlite3_backup_remaining(raw.as_ptr()), ffi::sqlite3_backup_pagecount(raw.as_ptr())) };
        match rc {
            ffi::SQLITE_DONE => {
                self.finish()?;
                Ok(Progress { done: i64::from(total), total: i64::from(total), finished: true })
            }
            ffi::SQLITE_OK | ffi::SQLITE_BUSY | ffi::SQLITE_LOCKED => {
                Ok(Progress { done: i64::from(total - remaining), total: i64::from(total), finished: false })
            }
            rc => {
                let failed = self.finish();
                let err = Error::from(rusqlite::Error::SqliteFailure(ffi::Error::new(rc), None));
                failed.and(Err(err))
            }
        }
    }

    /// Releases the backup handle and ends the source's read transaction.
    fn finish(&mut self) -> Result<()> {
        if let Some(raw) = self.raw.take() {
            // SAFETY: `raw` is live and is not used again (taken out of `self.raw`).
            let rc = unsafe { ffi::sqlite3_backup_finish(raw.as_ptr()) };
            if let Source::File(conn) = &self.source {
                conn.execute_batch("COMMIT")?;
            }
            if rc != ffi::SQLITE_OK {
                return Err(Error::from(rusqlite::Error::SqliteFailure(ffi::Error::new(rc), None)));
            }
        }
        Ok(())
    }
}

impl Drop for Backup {
    fn drop(&mut self) {
        // An abandoned backup leaves the destination as it was before it started (SQLite
        // rolls the destination back); errors have no one to go to here.
        let _ = self.finish();
    }
}

/// Whether two paths name one file (a destination that does not exist yet is not the source).
fn same_file(a: &str, b: &str) -> bool {
    match (Path::new(a).canonicalize(), Path::new(b).canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Config;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("eventlite-backup-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn append(store: &Arc<Mutex<Store>>, count: usize) {
        let events: Vec<String> = (0..count)
            .map(|i| format!(r#"["e",{{"i":{i},"pad":"{}"}},"u","",1,"c",null,{{}},{i}]"#, "x".repeat(200)))
            .collect();
        store.lock().unwrap().append_batch(&format!("[{}]", events.join(","))).unwrap();
    }

    fn count(path: &Path) -> i64 {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.query_row("SELECT COUNT(*) FROM queue", [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn a_backup_holds_what_was_committed_when_it_started_despite_later_writes() {
        let dir = temp_dir("snapshot");
        let store = Arc::new(Mutex::new(Store::open(Config::new(dir.join("a.sqlite").to_string_lossy())).unwrap()));
        append(&store, 5000);
        let dest = dir.join("copy.sqlite");
        let mut backup = Backup::start(&store, &dest.to_string_lossy()).unwrap();
        let mut steps = 0;
        loop {
            let progress = backup.step(16).unwrap();
            steps += 1;
            // Writes between steps, through another connection, do not restart the copy.
            append(&store, 10);
            assert!(progress.done <= progress.total);
            if progress.finished {
                break;
            }
        }
        assert!(steps > 2, "the copy took several steps");
        drop(backup);
        assert_eq!(count(&dest), 5000);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_memory_store_backs_up_through_its_own_connection() {
        let dir = temp_dir("memory");
        let store = Arc::new(Mutex::new(Store::open(Config::new(MEMORY)).unwrap()));
        append(&store, 100);
        let dest = dir.join("copy.sqlite");
        let mut backup = Backup::start(&store, &dest.to_string_lossy()).unwrap();
        while !backup.step(-1).unwrap().finished {}
        drop(backup);
        assert_eq!(count(&dest), 100);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_source_is_never_its_own_destination() {
        let dir = temp_dir("itself");
        let path = dir.join("a.sqlite").to_string_lossy().into_owned();
        let store = Arc::new(Mutex::new(Store::open(Config::new(path.clone())).unwrap()));
        let err = Backup::start(&store, &path).err().unwrap();
        assert_eq!(err.code(), "ERR_INVALID_OPTION");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
