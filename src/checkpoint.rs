//! WAL checkpoints on a background thread instead of inside a commit.
//!
//! By default SQLite checkpoints from the commit that takes the WAL past 1,000 pages: that
//! commit copies the WAL back into the database file and waits for two fsyncs, so one `store()`
//! in a few hundred stalls for milliseconds, and a bulk load spends a good part of its time
//! there. SQLite's documentation suggests the alternative used here: the store's connection
//! turns automatic checkpoints off and, through its WAL hook, asks a background thread to run
//! a PASSIVE checkpoint on a connection of its own, while writers and readers go on. The
//! guarantees do not change: with `synchronous=NORMAL` a checkpoint is where the WAL reaches
//! the disk, wherever it runs, and it runs as often as before: each time the WAL has grown by
//! 1,000 pages.
//!
//! While commits follow each other without a pause, a checkpoint running beside them never
//! finds the WAL idle, and SQLite starts the WAL over from its beginning only after a
//! checkpoint that caught up with every commit. So the commit that takes the WAL past
//! [`INLINE_PAGES`] checkpoints it itself. SQLite runs one checkpoint on a file at a time and
//! refuses a second one rather than waiting for it, so that commit first waits for a
//! checkpoint of the thread still in progress; what is left to copy by then is little. Its
//! checkpoint catches up with every commit, and the next commit starts the WAL over: under
//! sustained writes the WAL cycles at about 4,000 pages (16 MB at the default page size)
//! instead of 1,000, and never holds more than [`INLINE_PAGES`] pages plus one commit's,
//! however slowly the thread runs. Only another connection can stop it starting over, as it
//! stops SQLite's own checkpoints: one reading an older snapshot, or another queue or process
//! checkpointing the file.
//!
//! Taking the checkpoints out of the commits makes a bulk load's native work about a tenth
//! cheaper, and the benchmark's `store` and `storeBulk` about a fifth faster (`npm run bench`).

use std::ffi::{c_char, c_int, c_void};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use once_cell::sync::Lazy;
use rusqlite::{ffi, OpenFlags};

use crate::connection::Connection;

/// WAL pages after which a commit asks for a checkpoint: SQLite's own default.
const REQUEST_PAGES: c_int = 1000;
/// WAL pages after which a commit checkpoints itself (PASSIVE) instead of waiting for the
/// thread.
const INLINE_PAGES: c_int = 4 * REQUEST_PAGES;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    /// Sent to the thread, not started yet.
    Requested,
    Running,
    /// The store closed; nothing more runs for it.
    Closed,
}

/// One store's checkpoints: the file and where they stand.
struct Shared {
    path: String,
    state: Mutex<State>,
    /// Signalled when a checkpoint ends, for a store that is closing.
    ended: Condvar,
    /// The WAL's size in pages when the last checkpoint was asked for. Only the store's
    /// connection, in its WAL hook, reads and writes it.
    requested_at: AtomicI32,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs the checkpoint asked for, unless the store closed first.
    fn run(&self) {
        {
            let mut state = self.lock();
            if *state != State::Requested {
                return;
            }
            *state = State::Running;
        }
        // Ends the run even if the checkpoint unwinds: a store that is closing waits for it.
        let _ended = Ended(self);
        self.checkpoint_file();
    }

    /// Waits for the thread's checkpoint in progress on the file, and cancels one it has not
    /// started, so that the committing connection's own checkpoint is the only one running.
    /// The thread never waits for that connection (it only opens the file and runs a PASSIVE
    /// checkpoint, which takes no lock the connection holds after its commit), so this wait
    /// ends when that checkpoint does.
    fn hold_off_thread(&self) {
        let mut state = self.lock();
        while *state == State::Running {
            state = self.ended.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
        if *state == State::Requested {
            // The thread finds the request withdrawn (see `run`) and skips it.
            *state = State::Idle;
        }
    }

    /// Checkpoints on a connection of its own, opened for the occasion: it holds no file
    /// between checkpoints, and the store's connection, opened first, stays the one that
    /// closes the file last. A failure is left to the next checkpoint, or to a commit's own:
    /// a busy or vanished file costs nothing but the attempt.
    ///
    /// A checkpoint that did not catch up with the commits (the usual case under sustained
    /// writes) leaves the pages it copied unsynced: SQLite syncs the database file only when
    /// the WAL can start over, and does not say which happened (`wal_checkpoint` compares
    /// with the WAL as the checkpoint found it). A second sync of a synced file is cheap. The commit that takes the WAL past [`INLINE_PAGES`] then waits
    /// for every page the thread copied since the last sync. Syncing them here, beside the
    /// commits, leaves that commit only what it copies itself.
    fn checkpoint_file(&self) {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if let Ok(conn) = Connection::open(&self.path, flags) {
            let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
            if let Ok(db) = conn.handle() {
                sync_database(db);
            }
        }
    }
}

/// Syncs the main database file of `db` through SQLite's own file handle. Opening the file
/// anew to sync it would not do: closing that descriptor would drop every POSIX lock this
/// process holds on the file, SQLite's included. A failure is left to the sync of the
/// checkpoint that lets the WAL start over, which syncs the same pages.
fn sync_database(db: NonNull<ffi::sqlite3>) {
    let mut file: *mut ffi::sqlite3_file = std::ptr::null_mut();
    // SAFETY: `db` is an open connection; this file control writes the `sqlite3_file` pointer
    // of its main database through the pointer given, which points at `file`.
    let rc = unsafe {
        ffi::sqlite3_file_control(db.as_ptr(), c"main".as_ptr(), ffi::SQLITE_FCNTL_FILE_POINTER, (&raw mut file).cast())
    };
    if rc != ffi::SQLITE_OK || file.is_null() {
        return;
    }
    // SAFETY: `file` is the connection's open main database file, valid while `db` is open
    // and used by no other thread (the connection is this thread's alone); `xSync` is part of
    // every file's methods, SQLite's own way to sync it.
    unsafe {
        if let Some(methods) = (*file).pMethods.as_ref() {
            if let Some(sync) = methods.xSync {
                sync(file, ffi::SQLITE_SYNC_NORMAL);
            }
        }
    }
}

/// Marks a checkpoint run over when dropped, and wakes whoever waits for it: a store closing,
/// or a commit past [`INLINE_PAGES`].
struct Ended<'a>(&'a Shared);

impl Drop for Ended<'_> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        if *state == State::Running {
            *state = State::Idle;
        }
        self.0.ended.notify_all();
    }
}

/// The thread, started on first use, and the way to it. `None` if it could not be started:
/// stores then keep SQLite's automatic checkpoints.
static WORKER: Lazy<Option<Mutex<Sender<Arc<Shared>>>>> = Lazy::new(|| {
    let (sender, receiver) = mpsc::channel::<Arc<Shared>>();
    std::thread::Builder::new()
        .name("eventlite-checkpoint".into())
        .spawn(move || receiver.into_iter().for_each(|shared| shared.run()))
        .ok()?;
    Some(Mutex::new(sender))
});

/// The background checkpoints of one store's connection. Must be dropped before the
/// connection closes; dropping it waits for a checkpoint in progress on the file.
pub struct Checkpoints {
    db: NonNull<ffi::sqlite3>,
    /// Also owned, as a raw pointer, by the WAL hook while it is registered.
    shared: Arc<Shared>,
}

// SAFETY: `db` is only used in `drop`, by whichever thread holds the store, which owns the
// connection too.
unsafe impl Send for Checkpoints {}

impl Checkpoints {
    /// Moves `db`'s checkpoints (a WAL-mode connection to the file `path`) to the background
    /// thread; `None`, leaving SQLite's automatic checkpoints in place, when there is none.
    ///
    /// # Safety
    /// `db` must be an open connection that outlives the returned value.
    pub unsafe fn attach(db: NonNull<ffi::sqlite3>, path: &str) -> Option<Checkpoints> {
        WORKER.as_ref()?;
        let shared = Arc::new(Shared {
            path: path.to_string(),
            state: Mutex::new(State::Idle),
            ended: Condvar::new(),
            requested_at: AtomicI32::new(0),
        });
        let hook_arg = Arc::into_raw(Arc::clone(&shared)) as *mut c_void;
        // SAFETY: `db` is open; the hook's argument stays valid until `drop` takes it back,
        // after unregistering the hook. Registering a hook replaces the automatic checkpoints.
        unsafe { ffi::sqlite3_wal_hook(db.as_ptr(), Some(on_commit), hook_arg) };
        Some(Checkpoints { db, shared })
    }
}

impl Drop for Checkpoints {
    fn drop(&mut self) {
        let ours = Arc::as_ptr(&self.shared);
        // SAFETY: `db` is still open (see `attach`). The hook held one reference to `shared`,
        // taken back here once it can no longer run; only if the hook was still ours (nothing
        // else sets one on this connection, but a leak beats freeing what is not ours).
        unsafe {
            let previous = ffi::sqlite3_wal_hook(self.db.as_ptr(), None, std::ptr::null_mut());
            if std::ptr::eq(previous as *const Shared, ours) {
                drop(Arc::from_raw(ours));
            }
        }
        let mut state = self.shared.lock();
        while *state == State::Running {
            state = self.shared.ended.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
        *state = State::Closed;
    }
}

/// SQLite's WAL hook: called after each commit with the pages now in the WAL.
unsafe extern "C" fn on_commit(arg: *mut c_void, db: *mut ffi::sqlite3, _name: *const c_char, pages: c_int) -> c_int {
    // SAFETY: `arg` is the `Shared` that `attach` registered, alive while the hook is.
    let shared = unsafe { &*(arg as *const Shared) };
    if pages >= INLINE_PAGES {
        shared.hold_off_thread();
        // SAFETY: `db` is the committing connection, which may checkpoint from its hook (SQLite's
        // own automatic checkpoint is such a hook). PASSIVE neither waits nor blocks anyone.
        unsafe {
            ffi::sqlite3_wal_checkpoint_v2(
                db,
                std::ptr::null(),
                ffi::SQLITE_CHECKPOINT_PASSIVE,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
    } else if pages >= REQUEST_PAGES {
        request(shared, pages);
    }
    ffi::SQLITE_OK
}

/// Queues a checkpoint for the store, once per [`REQUEST_PAGES`] the WAL has grown by (or
/// when it has started over), unless one is queued or running already. Asking after every
/// commit past the mark, as the WAL cannot start over while commits keep coming, ran many
/// times as many checkpoints as SQLite would, each with its two fsyncs, which slowed the writes.
fn request(shared: &Shared, pages: c_int) {
    let last = shared.requested_at.load(Ordering::Relaxed);
    if pages >= last && pages - last < REQUEST_PAGES {
        return;
    }
    let mut state = shared.lock();
    if *state != State::Idle {
        return;
    }
    let Some(worker) = WORKER.as_ref() else { return };
    // SAFETY: `shared` lives in an `Arc` (see `attach`); this adds the reference the thread gets.
    let owned = unsafe {
        Arc::increment_strong_count(shared as *const Shared);
        Arc::from_raw(shared as *const Shared)
    };
    if worker.lock().unwrap_or_else(PoisonError::into_inner).send(owned).is_ok() {
        *state = State::Requested;
        shared.requested_at.store(pages, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::ptr::NonNull;

    use super::{Checkpoints, State, INLINE_PAGES, REQUEST_PAGES};

    /// A WAL connection to a new file, its checkpoints moved to the thread, with a table to fill.
    struct Db {
        /// Declared first: dropped before the connection closes, as `attach` requires.
        checkpoints: Checkpoints,
        conn: rusqlite::Connection,
        path: String,
        page: usize,
    }

    impl Db {
        fn open(name: &str) -> Db {
            let dir = std::env::temp_dir().join(format!("eventlite-checkpoint-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("events.sqlite").to_string_lossy().into_owned();
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; CREATE TABLE t (x)").unwrap();
            let page = conn.query_row("PRAGMA page_size", [], |r| r.get::<_, u32>(0)).unwrap() as usize;
            // SAFETY: the handle is `conn`'s, which `checkpoints`, dropped first, does not outlive.
            let checkpoints = unsafe { Checkpoints::attach(NonNull::new(conn.handle()).unwrap(), &path) }.unwrap();
            Db { checkpoints, conn, path, page }
        }

        /// Commits `rows` rows of 3.5 KB: a page apiece.
        fn commit(&self, rows: usize) {
            let tx = self.conn.unchecked_transaction().unwrap();
            let mut insert = tx.prepare_cached("INSERT INTO t VALUES (?1)").unwrap();
            for _ in 0..rows {
                insert.execute([vec![7_u8; 3500]]).unwrap();
            }
            drop(insert);
            tx.commit().unwrap();
        }

        /// Waits until the checkpoint asked of the thread, if any, has run.
        fn settle(&self) {
            let shared = &self.checkpoints.shared;
            let mut state = shared.lock();
            while matches!(*state, State::Requested | State::Running) {
                state = shared.ended.wait(state).unwrap();
            }
        }

        /// The WAL's salts and the frames of its current cycle. SQLite starts the WAL over by
        /// writing a header with new salts, and each frame repeats the salts of its cycle, so
        /// the frames an earlier, longer cycle left beyond the current one are told apart.
        fn wal_cycle(&self) -> ([u8; 8], usize) {
            let wal = std::fs::read(format!("{}-wal", self.path)).unwrap_or_default();
            let Some(salts) = wal.get(16..24) else { return ([0; 8], 0) };
            let frames = wal[32..].chunks_exact(24 + self.page).take_while(|frame| &frame[8..16] == salts).count();
            (salts.try_into().unwrap(), frames)
        }

        fn size(&self, suffix: &str) -> u64 {
            std::fs::metadata(format!("{}{suffix}", self.path)).map_or(0, |m| m.len())
        }

        fn remove(self) {
            let dir = std::path::Path::new(&self.path).parent().unwrap().to_path_buf();
            drop(self);
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    #[test]
    fn the_thread_checkpoints_once_the_wal_passes_the_request_mark() {
        let db = Db::open("request");
        let before = db.size("");
        // Past the request mark, short of the inline one: only the thread can checkpoint.
        db.commit(REQUEST_PAGES as usize + 500);
        db.settle();
        // In WAL mode the database file grows only when a checkpoint copies pages into it.
        assert!(db.size("") > before, "no checkpoint copied the WAL into the database file");
        db.remove();
    }

    #[test]
    fn sustained_writes_keep_the_wal_within_the_inline_mark_and_one_commit() {
        let db = Db::open("bounded");
        let (mut cycle, mut frames) = ([0; 8], 0);
        let (mut largest, mut largest_commit, mut cycles) = (0, 0, 0);
        // 20,000 pages without a pause between commits.
        for _ in 0..40 {
            db.commit(500);
            let (salts, now) = db.wal_cycle();
            // A commit that started the WAL over wrote its frames from the beginning.
            let commit = if salts == cycle { now - frames } else { now };
            cycles += usize::from(salts != cycle);
            (cycle, frames) = (salts, now);
            largest = largest.max(now);
            largest_commit = largest_commit.max(commit);
        }
        // The commit that takes the WAL to the inline mark checkpoints all of it (after any
        // checkpoint of the thread), and the next one starts it over: however the thread is
        // scheduled, the WAL never holds more than the mark's pages less one, plus a commit's.
        let bound = INLINE_PAGES as usize - 1 + largest_commit;
        assert!(largest <= bound, "the WAL held {largest} frames (bound {bound})");
        assert!(cycles > 1, "the WAL never started over");
        let bytes = 32 + bound * (24 + db.page);
        assert!(db.size("-wal") <= bytes as u64, "the WAL reached {} bytes (bound {bytes})", db.size("-wal"));
        db.remove();
    }
}
