//! The file locks of this copy of SQLite, made its own rather than the process's.
//!
//! SQLite's unix VFS takes POSIX record locks (`fcntl(F_SETLK)`), which belong to the process.
//! When another SQLite library in the same process (better-sqlite3, `bun:sqlite`) opens the
//! event file, the two copies do not see each other's locks, and its `close()` drops ours:
//! it then truncates the `-shm` our connections have mapped (SIGBUS), and it, or another
//! process, deletes the WAL our connections still append to (acknowledged events lost).
//!
//! On Linux, [`install`] gives the unix VFS an `fcntl` of ours (through
//! `sqlite3_vfs::xSetSystemCall`) that takes the same locks as open-file-description locks
//! (`F_OFD_SETLK`), which belong to an open file instead: other libraries in this process and
//! other processes see them and conflict with them, and no other descriptor's `close()`
//! releases them.
//!
//! SQLite counts the locks of its connections per file and asks the kernel only when the
//! file's combined lock changes, through the descriptor of whichever connection causes the
//! change: right when the process owns the lock. An OFD lock is owned by the description it
//! was taken through, so the locks of one file must all go through one description, or a
//! connection upgrading its lock would conflict with the read lock another of our connections
//! took. So this module keeps one description per file (a duplicate of the first descriptor
//! that locks it), takes every lock on that file through it, and closes it when the last of
//! SQLite's descriptors that locked the file closes: SQLite never closes a descriptor of a
//! file while any of its connections holds a lock on that file (with POSIX locks that would
//! release them all; it keeps such a descriptor open until the locks are gone), so by then
//! there is no lock left to keep. The `-shm` file's locks take the same path.
//!
//! Elsewhere (macOS, Windows, other architectures) [`install`] does nothing and SQLite locks
//! as it always does; on macOS, which has no OFD locks, the hazard stands (README, "Other
//! SQLite libraries in the same process").

/// Makes SQLite's file locks this copy's own (see the module documentation). Must run before
/// the first connection to a file opens: every connection is opened through
/// [`crate::connection::Connection::open`], which calls it; later calls do nothing.
pub fn install() {
    #[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        static INSTALL: std::sync::Once = std::sync::Once::new();
        INSTALL.call_once(ofd::install);
    }
}

#[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
mod ofd {
    use std::collections::hash_map::Entry;
    use std::collections::HashMap;
    use std::ffi::{c_int, c_void, CStr};
    use std::sync::{Mutex, MutexGuard, PoisonError};

    use once_cell::sync::Lazy;
    use rusqlite::ffi;

    /// A file as the kernel names it, the key SQLite also keeps its lock counts by.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub(super) struct FileId {
        dev: u64,
        ino: u64,
    }

    impl FileId {
        fn of(stat: &libc::stat) -> FileId {
            FileId { dev: stat.st_dev, ino: stat.st_ino }
        }
    }

    /// The description all of our locks on one file go through.
    struct Description {
        /// Our own descriptor of it; SQLite never sees this number.
        fd: c_int,
        /// SQLite's descriptors of the file that have locked through it and are still open.
        users: usize,
    }

    /// One of SQLite's descriptors that has locked.
    struct Handle {
        file: FileId,
        /// The file's [`Description::fd`], stable while this handle is registered.
        description: c_int,
        /// Whether the descriptor was opened for writing: a write lock through a read-only
        /// descriptor fails with `EBADF`, and must still fail when taken through ours.
        writable: bool,
    }

    #[derive(Default)]
    struct Registry {
        /// By SQLite's descriptor number. A number is removed when SQLite closes it, before
        /// the kernel can hand it out again.
        handles: HashMap<c_int, Handle, crate::hash::FastHash>,
        descriptions: HashMap<FileId, Description>,
    }

    static REGISTRY: Lazy<Mutex<Registry>> = Lazy::new(Mutex::default);

    fn registry() -> MutexGuard<'static, Registry> {
        // The registry is consistent between statements, so a panic elsewhere leaves it usable.
        REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn errno() -> c_int {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
    }

    fn set_errno(value: c_int) {
        // SAFETY: `__errno_location` returns this thread's errno, valid for the thread's life.
        unsafe { *libc::__errno_location() = value }
    }

    impl Registry {
        /// The description to lock SQLite's descriptor `fd`'s file through, and whether `fd`
        /// may take write locks. `fd` is registered (and the file's description opened, if it
        /// is the first) on its first lock. Fails with an errno.
        fn enter(&mut self, fd: c_int) -> Result<(c_int, bool), c_int> {
            let handle = match self.handles.entry(fd) {
                Entry::Occupied(entry) => entry.into_mut(),
                Entry::Vacant(entry) => entry.insert(register(&mut self.descriptions, fd)?),
            };
            Ok((handle.description, handle.writable))
        }

        /// Forgets SQLite's descriptor `fd`, which it is closing; returns the file's
        /// description if `fd` was its last user, for the caller to close.
        fn leave(&mut self, fd: c_int) -> Option<c_int> {
            let handle = self.handles.remove(&fd)?;
            let Entry::Occupied(mut entry) = self.descriptions.entry(handle.file) else { return None };
            entry.get_mut().users -= 1;
            (entry.get().users == 0).then(|| entry.remove().fd)
        }
    }

    /// The handle of SQLite's descriptor `fd`, on its first lock: the file it names, that
    /// file's description (opened for it if it is the first), and its access.
    fn register(descriptions: &mut HashMap<FileId, Description>, fd: c_int) -> Result<Handle, c_int> {
        // SAFETY: `stat` is plain data that `fstat` fills; all zeroes is a valid value.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `fd` is a descriptor SQLite passed to fcntl, and `stat` is writable.
        if unsafe { libc::fstat(fd, &mut stat) } != 0 {
            return Err(errno());
        }
        // SAFETY: F_GETFL takes no argument and only reads the descriptor's flags.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        if flags < 0 {
            return Err(errno());
        }
        let file = FileId::of(&stat);
        let description = match descriptions.entry(file) {
            Entry::Occupied(mut entry) => {
                entry.get_mut().users += 1;
                entry.get().fd
            }
            Entry::Vacant(entry) => {
                // A duplicate shares SQLite's description, so it needs no path and has the
                // access SQLite opened the file with, and it outlives SQLite's descriptor. Not
                // below 3, as SQLite's own: a stray write to stdout must not reach a file. The
                // first to lock a file is the queue's writer, opened for writing (and the
                // `-shm` is opened for writing by every connection that can); a read-only one
                // first would make a later writer's write locks fail with EBADF: an error,
                // never a lock silently lost.
                // SAFETY: duplicating an open descriptor; the new one is ours to close.
                let fd = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
                if fd < 0 {
                    return Err(errno());
                }
                entry.insert(Description { fd, users: 1 }).fd
            }
        };
        Ok(Handle { file, description, writable: flags & libc::O_ACCMODE != libc::O_RDONLY })
    }

    /// SQLite's `fcntl`. SQLite calls it through a pointer of type `int (*)(int, int, ...)`,
    /// always with three arguments.
    ///
    /// SAFETY (of the signature): a variadic call passes its arguments exactly as a call to
    /// this non-variadic function expects them on the two targets this module is built for:
    /// on x86-64 (System V) the first six integer or pointer arguments of any call go in
    /// rdi, rsi, rdx, ..., variadic or not (a variadic caller also sets al, which a
    /// non-variadic callee ignores); on AArch64 Linux (standard AAPCS64, unlike Apple's)
    /// variadic arguments go in x0-x7 like named ones. For the record-lock commands the
    /// third argument is SQLite's `struct flock *`, a full register. For any other command it
    /// may be an `int` whose upper register half is undefined; it is passed on unread to the
    /// C library's `fcntl`, which gives the kernel the whole register as glibc's and musl's
    /// own variadic `fcntl` do, and the kernel truncates it to `int` for those commands.
    pub(super) unsafe extern "C" fn fcntl(fd: c_int, cmd: c_int, arg: *mut c_void) -> c_int {
        let ofd_cmd = match cmd {
            libc::F_SETLK => libc::F_OFD_SETLK,
            libc::F_SETLKW => libc::F_OFD_SETLKW,
            libc::F_GETLK => libc::F_OFD_GETLK,
            // SAFETY: the caller's own call, passed on unchanged (see the signature above).
            _ => return unsafe { libc::fcntl(fd, cmd, arg) },
        };
        let lock = arg.cast::<libc::flock>();
        if lock.is_null() {
            set_errno(libc::EFAULT);
            return -1;
        }
        // SAFETY: for the record-lock commands SQLite passes a valid, aligned `struct flock`,
        // whose layout `libc::flock` is, and does not touch it until this call returns.
        let mut ours = unsafe { *lock };
        let entered = registry().enter(fd);
        let (description, writable) = match entered {
            Ok(found) => found,
            Err(errno) => {
                set_errno(errno);
                return -1;
            }
        };
        if cmd != libc::F_GETLK && c_int::from(ours.l_type) == libc::F_WRLCK && !writable {
            set_errno(libc::EBADF);
            return -1;
        }
        // The kernel refuses an OFD request whose l_pid is not zero; SQLite leaves it unset.
        ours.l_pid = 0;
        // The description stays open during the call, without the registry's lock held (an
        // F_SETLKW may wait): `fd` is registered as its user until SQLite closes `fd`, which
        // it does not do while it is locking through it.
        // SAFETY: `description` is an open descriptor and `ours` a valid `struct flock`.
        let rc = unsafe { libc::fcntl(description, ofd_cmd, &mut ours) };
        if rc == 0 && cmd == libc::F_GETLK {
            // SAFETY: as above; F_GETLK reports the conflicting lock back through SQLite's struct.
            unsafe { *lock = ours };
        }
        rc
    }

    /// SQLite's `close`: its descriptors are closed through here, which releases a file's
    /// description with the last of them that locked the file.
    pub(super) unsafe extern "C" fn close(fd: c_int) -> c_int {
        if let Some(description) = registry().leave(fd) {
            // SAFETY: the description's descriptor is ours, and no longer in the registry.
            unsafe { libc::close(description) };
        }
        // SAFETY: SQLite's own call, passed on; its result and errno are what SQLite sees.
        unsafe { libc::close(fd) }
    }

    /// Whether a description of `file` is open, for the tests.
    #[cfg(test)]
    pub(super) fn holds(file: FileId) -> bool {
        registry().descriptions.contains_key(&file)
    }

    #[cfg(test)]
    pub(super) fn file_id(path: &std::path::Path) -> FileId {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).unwrap();
        FileId { dev: meta.dev(), ino: meta.ino() }
    }

    /// Replaces the unix VFS's `close` and then its `fcntl`. The replacements are shared by
    /// every `unix*` VFS, which all use one table of system calls.
    pub(super) fn install() {
        let replace = |name: &CStr, call: ffi::sqlite3_syscall_ptr| {
            // SAFETY: `sqlite3_vfs_find` returns a registered VFS or null; SQLite keeps a
            // registered VFS for the life of the process. `xSetSystemCall` is called before
            // any connection to a file opens (see `install` above), as SQLite requires, and
            // with a function of the type SQLite casts the entry back to (see `fcntl` for the
            // variadic one).
            unsafe {
                let vfs = ffi::sqlite3_vfs_find(c"unix".as_ptr());
                if vfs.is_null() || (*vfs).iVersion < 3 {
                    return false;
                }
                let Some(set) = (*vfs).xSetSystemCall else { return false };
                set(vfs, name.as_ptr(), call) == ffi::SQLITE_OK
            }
        };
        // SAFETY: SQLite stores system calls as `void (*)(void)` and casts each back to its
        // own type before calling it: `close`'s is exactly `int (*)(int)`, and `fcntl`'s is
        // call-compatible with `int (*)(int, int, ...)` (see `fcntl`).
        let (close_ptr, fcntl_ptr) = unsafe {
            (
                std::mem::transmute::<unsafe extern "C" fn(c_int) -> c_int, unsafe extern "C" fn()>(close),
                std::mem::transmute::<unsafe extern "C" fn(c_int, c_int, *mut c_void) -> c_int, unsafe extern "C" fn()>(
                    fcntl,
                ),
            )
        };
        // `close` first: an `fcntl` of ours without it would never release a description.
        if replace(c"close", Some(close_ptr)) {
            replace(c"fcntl", Some(fcntl_ptr));
        }
    }
}

#[cfg(all(test, target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
mod tests {
    use std::fs::{File, OpenOptions};
    use std::os::fd::AsRawFd;
    use std::path::{Path, PathBuf};

    use rusqlite::OpenFlags;

    use super::ofd;
    use crate::connection::Connection;

    /// SQLite's lock bytes (sqlite3.c: PENDING_BYTE, SHARED_FIRST; in the `-shm`, the write lock
    /// and UNIX_SHM_DMS).
    const PENDING_BYTE: i64 = 0x4000_0000;
    const SHARED_FIRST: i64 = PENDING_BYTE + 2;
    const SHARED_SIZE: i64 = 510;
    const SHM_WRITE_LOCK: i64 = 120;
    const SHM_DMS: i64 = 128;

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!("eventlite-lock-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn file(&self) -> String {
            self.0.join("events.sqlite").to_string_lossy().into_owned()
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn open(path: &str, flags: OpenFlags) -> Connection {
        let conn = Connection::open(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX).unwrap();
        // No waiting: a lock that conflicts fails at once, so a self-deadlock shows as an error.
        conn.busy_timeout(std::time::Duration::ZERO).unwrap();
        conn
    }

    fn read_write(path: &str) -> Connection {
        open(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE)
    }

    fn count(conn: &Connection) -> i64 {
        conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap()
    }

    /// The type of a lock some other owner than the asking descriptor's holds on the range,
    /// seen as another library of this process sees it: a POSIX F_GETLK on a descriptor of its
    /// own.
    fn posix_lock_seen(path: &Path, start: i64, len: i64) -> i32 {
        let file = File::open(path).unwrap();
        // SAFETY: all zeroes is a valid `flock`, filled below.
        let mut lock: libc::flock = unsafe { std::mem::zeroed() };
        lock.l_type = libc::F_WRLCK as libc::c_short;
        lock.l_whence = libc::SEEK_SET as libc::c_short;
        lock.l_start = start;
        lock.l_len = len;
        // SAFETY: an open descriptor and a valid `flock`.
        assert_eq!(unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLK, &mut lock) }, 0);
        i32::from(lock.l_type)
    }

    #[test]
    fn connections_of_ours_upgrade_past_each_others_read_locks() {
        // Rollback journal: the first reader takes the file's shared lock from the kernel,
        // the second only counts; after the first commits, the second upgrades to exclusive.
        let dir = TempDir::new("upgrade");
        let path = dir.file();
        let first = read_write(&path);
        first.execute_batch("PRAGMA journal_mode = DELETE; CREATE TABLE t (x)").unwrap();
        let second = read_write(&path);
        first.execute_batch("BEGIN; SELECT count(*) FROM t").unwrap();
        second.execute_batch("BEGIN; SELECT count(*) FROM t").unwrap();
        first.execute_batch("COMMIT").unwrap();
        second.execute_batch("INSERT INTO t VALUES (1); COMMIT").unwrap();
        assert_eq!(count(&first), 1);
    }

    #[test]
    fn writer_readers_and_checkpointer_share_one_file_and_the_last_closes_it() {
        let dir = TempDir::new("wal");
        let path = dir.file();
        let writer = read_write(&path);
        writer.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (x); INSERT INTO t VALUES (1)").unwrap();
        let reader = open(&path, OpenFlags::SQLITE_OPEN_READ_ONLY);
        let checkpointer = read_write(&path);
        reader.execute_batch("BEGIN; SELECT count(*) FROM t").unwrap();
        writer.execute_batch("INSERT INTO t VALUES (2)").unwrap();
        checkpointer.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())).unwrap();
        reader.execute_batch("COMMIT").unwrap();
        assert_eq!(count(&reader), 2);
        let db = ofd::file_id(Path::new(&path));
        let shm = ofd::file_id(Path::new(&format!("{path}-shm")));
        assert!(ofd::holds(db) && ofd::holds(shm));
        // The connection that took the file's shared lock from the kernel closes first; the
        // last one must still get the exclusive lock that lets it checkpoint and remove the WAL.
        drop(writer);
        drop(reader);
        drop(checkpointer);
        assert!(!Path::new(&format!("{path}-wal")).exists(), "the last connection removed the WAL");
        // (The `-shm` is gone with the WAL, and its inode number free for another file.)
        assert!(!ofd::holds(db), "no description outlives the connections");
    }

    #[test]
    fn another_library_in_the_process_sees_our_locks_after_closing_a_descriptor() {
        let dir = TempDir::new("seen");
        let path = dir.file();
        let conn = read_write(&path);
        conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (x); INSERT INTO t VALUES (1)").unwrap();
        // What better-sqlite3 does when it closes the file: a POSIX lock would be gone now.
        drop(File::open(&path).unwrap());
        drop(File::open(format!("{path}-shm")).unwrap());
        // A WAL connection holds the database's shared lock while open, and the `-shm`'s
        // "in use" lock that keeps a newcomer from truncating it.
        assert_eq!(posix_lock_seen(Path::new(&path), SHARED_FIRST, SHARED_SIZE), libc::F_RDLCK);
        assert_eq!(posix_lock_seen(Path::new(&format!("{path}-shm")), SHM_DMS, 1), libc::F_RDLCK);
        conn.execute_batch("INSERT INTO t VALUES (2)").unwrap();
        assert_eq!(count(&conn), 2);
    }

    #[test]
    fn we_see_another_librarys_locks_in_the_process() {
        let dir = TempDir::new("theirs");
        let path = dir.file();
        let conn = read_write(&path);
        conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (x)").unwrap();
        // Another library holding the WAL's write lock, as in a write transaction.
        let shm = OpenOptions::new().read(true).write(true).open(format!("{path}-shm")).unwrap();
        let set = |kind: libc::c_int| {
            // SAFETY: all zeroes is a valid `flock`, filled below.
            let mut lock: libc::flock = unsafe { std::mem::zeroed() };
            lock.l_type = kind as libc::c_short;
            lock.l_whence = libc::SEEK_SET as libc::c_short;
            lock.l_start = SHM_WRITE_LOCK;
            lock.l_len = 1;
            // SAFETY: an open descriptor and a valid `flock`.
            assert_eq!(unsafe { libc::fcntl(shm.as_raw_fd(), libc::F_SETLK, &lock) }, 0);
        };
        set(libc::F_WRLCK);
        let err = conn.execute_batch("INSERT INTO t VALUES (1)").unwrap_err();
        assert_eq!(err.sqlite_error_code(), Some(rusqlite::ErrorCode::DatabaseBusy));
        set(libc::F_UNLCK);
        conn.execute_batch("INSERT INTO t VALUES (1)").unwrap();
        assert_eq!(count(&conn), 1);
    }
}
