//! The store: one SQLite connection with its pragmas, the schema, and the write path.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use once_cell::sync::Lazy;
use rusqlite::config::DbConfig;
use rusqlite::{OpenFlags, OptionalExtension};

use crate::busy;
use crate::cache::{Cache, CacheConfig, CacheStats, Lookup};
use crate::checkpoint::Checkpoints;
use crate::condition;
use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::event::{conditional_parts, parse_batch, NewEvent, Part};
use crate::file;
use crate::metrics::{Metrics, MetricsSnapshot, SqliteReport, WriteKind};
use crate::pending::{self, Pending};
use crate::statement::Binder;
use crate::transfer;
use crate::writer::Write;
use crate::{idempotency, read, schema, streams, version};

pub const MEMORY: &str = ":memory:";

/// The file `initQueue` opens when given no `dbName`.
pub const DEFAULT_PATH: &str = "data/events.sqlite";

/// The longest `busy_timeout` SQLite takes, in milliseconds (a C `int`).
pub const MAX_BUSY_TIMEOUT_MS: u32 = i32::MAX as u32;

/// The levels of `PRAGMA synchronous`, each at its number.
pub const SYNCHRONOUS: [&str; 4] = ["OFF", "NORMAL", "FULL", "EXTRA"];

/// How to open a store. The JavaScript layer fills it from `initQueue`'s options, already
/// validated; [`Store::open`] still refuses what SQLite would misread.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: String,
    pub wal: bool,
    /// `OFF`, `NORMAL`, `FULL` or `EXTRA`; `None` picks `NORMAL` with WAL and `FULL` without.
    pub synchronous: Option<String>,
    pub busy_timeout_ms: u32,
    /// Index keys given explicitly; see [`schema::apply_indexes`].
    pub indexes: HashMap<String, bool>,
    pub reset: bool,
    pub cache: CacheConfig,
    /// Opens the file read-only, never creating it or changing its schema: for tools that only
    /// look (the command line's `inspect`, `tail`, `export`, `check`).
    pub read_only: bool,
}

impl Config {
    pub fn new(path: impl Into<String>) -> Config {
        Config {
            path: path.into(),
            wal: true,
            synchronous: None,
            busy_timeout_ms: 5000,
            indexes: HashMap::new(),
            reset: false,
            cache: CacheConfig::default(),
            read_only: false,
        }
    }

    fn synchronous(&self) -> Result<&str> {
        match self.synchronous.as_deref() {
            None if self.wal => Ok("NORMAL"),
            None => Ok("FULL"),
            Some(level) if SYNCHRONOUS.contains(&level) => Ok(level),
            Some(other) => Err(Error::InvalidOption(format!(
                "synchronous must be one of {}, got {other:?}",
                SYNCHRONOUS.join(", ")
            ))),
        }
    }
}

/// What one append wrote: `count` events with the consecutive ids `first_id..first_id+count`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Appended {
    pub first_id: i64,
    pub count: usize,
}

/// What one call of a group stored (see [`Store::append_group`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// Every event of the call, with consecutive ids.
    Appended(Appended),
    /// A call with stream conditions that left out repeats of idempotency keys: what it
    /// stored, and its reply, [`Checked::to_json`]'s text.
    Checked(Appended, String),
}

impl Stored {
    pub fn appended(&self) -> Appended {
        match self {
            Stored::Appended(appended) | Stored::Checked(appended, _) => *appended,
        }
    }
}

/// The connection, and what lives as long as it: the query cache, the write metrics, and what
/// is known of the pending events.
pub struct Store {
    /// Held for its drop, which waits for a checkpoint in progress; declared before `conn` so
    /// that it runs before the connection closes.
    _checkpoints: Option<Checkpoints>,
    conn: Connection,
    config: Config,
    cache: Cache,
    metrics: Metrics,
    pending: Pending,
    /// How many times [`Store::reset`] ran; streams compare it to notice (see `src/stream.rs`).
    resets: Arc<AtomicU64>,
    streams: streams::Watch,
}

/// What an append with stream conditions ([`Store::append_checked`]) did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checked {
    /// The first id stored (0 when every event was a repeat); the `count` stored events have
    /// consecutive ids from it, in the order of the call.
    pub first_id: i64,
    pub count: usize,
    /// The events not stored because their idempotency key was used before: each one's index
    /// in the call, and the id of the event first appended with its key.
    pub duplicates: Vec<(usize, i64)>,
}

impl Checked {
    /// Counts `count` events just stored from id `first_id`, which must follow the ones before:
    /// callers number the rows they return by it.
    pub(crate) fn stored(&mut self, first_id: i64, count: usize) -> Result<()> {
        let expected = self.first_id + self.count as i64;
        if self.count == 0 {
            self.first_id = first_id;
        } else if first_id != expected {
            return Err(Error::Sqlite {
                code: "SQLITE_INTERNAL",
                message: format!("ids not consecutive within one batch (expected {expected}, got {first_id})"),
            });
        }
        self.count += count;
        Ok(())
    }

    /// JSON text for JavaScript: `{"firstId","count","duplicates":[[index,id],…],"rows":[…]}`,
    /// where `rows` holds the values of each duplicate's first event, in the order of
    /// `duplicates` (see [`crate::read`]).
    pub fn to_json(&self, conn: &Connection) -> Result<String> {
        self.to_json_with(|out, id| read::write_by_id(out, conn, id))
    }

    /// [`Checked::to_json`], the rows written by `write_row(out, id)`, which appends event
    /// `id`'s values and says whether it exists: another backend's read.
    pub(crate) fn to_json_with(&self, mut write_row: impl FnMut(&mut String, i64) -> Result<bool>) -> Result<String> {
        let mut out = format!(r#"{{"firstId":{},"count":{},"duplicates":["#, self.first_id, self.count);
        for (n, (index, id)) in self.duplicates.iter().enumerate() {
            out.push_str(if n == 0 { "[" } else { ",[" });
            out.push_str(&format!("{index},{id}]"));
        }
        out.push_str(r#"],"rows":["#);
        for (n, (_, id)) in self.duplicates.iter().enumerate() {
            if n > 0 {
                out.push(',');
            }
            if !write_row(&mut out, *id)? {
                out.push_str("null");
            }
        }
        out.push_str("]}");
        Ok(out)
    }
}

/// Rows per multi-row `INSERT`. One statement per 64 rows instead of one per row saves a
/// quarter of SQLite's cost per event (AUTOINCREMENT updates `sqlite_sequence` once per
/// statement, and each statement run has fixed overhead); larger chunks gain little more.
const CHUNK: usize = 64;

static INSERT_ONE: Lazy<String> = Lazy::new(|| insert_sql(1));
/// The multi-row `INSERT`s of `CHUNK`, `CHUNK / 2`, ... 2 rows, largest first: a batch goes in
/// as about as many statements as its length has binary digits set, where rows one at a
/// time after the last full chunk cost a statement each.
static INSERT_CHUNKS: Lazy<Vec<(usize, String)>> = Lazy::new(|| {
    std::iter::successors(Some(CHUNK), |&rows| (rows > 2).then_some(rows / 2))
        .map(|rows| (rows, insert_sql(rows)))
        .collect()
});
/// The savepoint each call of a group is written in; see [`Store::append_group`].
const SAVEPOINT: &str = "SAVEPOINT call";
const RELEASE: &str = "RELEASE call";
const ROLLBACK_TO: &str = "ROLLBACK TO call";
const PARENT_CORRELATION: &str = "SELECT correlation_id FROM queue WHERE id = ?1";

fn insert_sql(rows: usize) -> String {
    let row = "(?,?,?,?,?,?,?,?,?)";
    format!(
        "INSERT OR FAIL INTO queue (version, datetime, user, ip, cmd, data, correlation_id, causation_id, metadata) VALUES {}",
        vec![row; rows].join(",")
    )
}

/// Binds one event's nine values, next in line.
fn bind_event<'t>(b: &mut Binder<'_, 't>, e: &'t NewEvent<'_>, correlation_id: Option<&'t str>) -> Result<()> {
    b.push(Some(e.version()))?;
    b.push(Some(e.datetime()))?;
    b.push_text(e.user())?;
    b.push_text(e.ip())?;
    b.push_text(Some(e.cmd()))?;
    b.push_text(Some(e.data()))?;
    b.push_text(correlation_id)?;
    b.push(e.causation_id())?;
    b.push_text(Some(e.metadata()))
}

/// A child with no correlation id of its own joins its parent's transaction.
fn inherits(e: &NewEvent<'_>) -> bool {
    e.correlation_id().is_none() && e.causation_id().is_some()
}

impl Store {
    /// Opens (creating if needed) the store `config` describes. An error about the file itself
    /// names it.
    pub fn open(config: Config) -> Result<Store> {
        let path = config.path.clone();
        Store::open_config(config).map_err(|err| err.naming_file(&path))
    }

    fn open_config(config: Config) -> Result<Store> {
        let synchronous = config.synchronous()?.to_string();
        if config.busy_timeout_ms > MAX_BUSY_TIMEOUT_MS {
            return Err(Error::InvalidOption(format!(
                "busyTimeout must be an integer from 0 to {MAX_BUSY_TIMEOUT_MS}, got {}",
                config.busy_timeout_ms
            )));
        }
        schema::check_index_keys(&config.indexes)?;
        config.cache.check()?;
        if config.path.is_empty() || config.path.contains('\0') {
            return Err(Error::InvalidOption("dbName must be a non-empty path without NUL characters".into()));
        }
        if config.path != MEMORY && !config.read_only {
            create_parent_folder(&config.path)?;
        }
        let flags = if config.read_only {
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX
        };
        let conn = Connection::open(&config.path, flags)?;
        configure(&conn, config.busy_timeout_ms)?;
        condition::register(&conn)?;
        conn.set_prepared_statement_cache_capacity(64);
        let read_only = conn.is_readonly(rusqlite::MAIN_DB)?;
        let mut checkpoints = None;
        if !read_only {
            let mode = if config.wal { "WAL" } else { "DELETE" };
            let timeout = Duration::from_millis(u64::from(config.busy_timeout_ms));
            let mode = busy::retry_while_busy(timeout, || {
                Ok(conn.pragma_update_and_check(None, "journal_mode", mode, |r| r.get::<_, String>(0))?)
            })?;
            if mode.eq_ignore_ascii_case("wal") && config.path != MEMORY {
                // SAFETY: the handle is the store's open connection, which `checkpoints`,
                // declared before it in `Store`, does not outlive.
                checkpoints = unsafe { Checkpoints::attach(conn.handle()?, &config.path) };
            }
        }
        conn.execute_batch(&format!(
            "PRAGMA synchronous = {synchronous}; PRAGMA temp_store = MEMORY; PRAGMA cache_size = -16384;"
        ))?;
        let mut cache = Cache::new(config.cache);
        cache.follow_other_connections(&conn)?;
        let resets = Arc::default();
        let mut store = Store {
            _checkpoints: checkpoints,
            conn,
            cache,
            metrics: Metrics::default(),
            pending: Pending::default(),
            config,
            resets,
            streams: streams::Watch::default(),
        };
        if read_only {
            store.refuse_changes()?;
            schema::check_table(&store.conn)?;
        } else {
            store.prepare_schema(store.config.reset)?;
        }
        store.pending.refresh(&store.conn);
        Ok(store)
    }

    /// Creates (or with `reset`, recreates) the tables, the event table's and EventLite's
    /// pending events', and applies the index options, in one write transaction so that two
    /// processes opening one file do not race. When there is nothing to change, only reads:
    /// opening does not wait for another process's writer.
    fn prepare_schema(&self, reset: bool) -> Result<()> {
        if !reset
            && schema::is_current(&self.conn, &self.config.indexes)?
            && pending::tables_current(&self.conn)?
            && streams::is_current(&self.conn)?
        {
            return schema::check_table(&self.conn);
        }
        let txn = WriteTxn::begin(&self.conn)?;
        if reset {
            self.conn.execute_batch("DROP TABLE IF EXISTS queue")?;
            pending::drop_tables(&self.conn)?;
        }
        schema::ensure_table(&self.conn)?;
        schema::apply_indexes(&self.conn, &self.config.indexes)?;
        pending::create_tables(&self.conn)?;
        streams::ensure(&self.conn, reset)?;
        txn.commit()
    }

    /// On a file this process may only read, options that ask for a change (a reset, an index
    /// to create or drop) fail as the writes they are would, rather than open with nothing done.
    fn refuse_changes(&self) -> Result<()> {
        let asked = if self.config.reset {
            Some("reset".to_string())
        } else {
            schema::unmet_index_keys(&self.conn, &self.config.indexes)?.first().map(|k| format!("indexes.{k}"))
        };
        match asked {
            Some(option) => Err(Error::Sqlite {
                code: "SQLITE_READONLY",
                message: format!(
                    "attempt to write a readonly database: {option} would change the file, which is read-only"
                ),
            }),
            None => Ok(()),
        }
    }

    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Drops and recreates the event table (ids starting again at 1) and the pending events'
    /// tables, and empties the cache. The stream versions and idempotency keys are forgotten and
    /// every consumer starts again at 0.
    pub fn reset(&mut self) -> Result<()> {
        file::check_in_place(&self.conn)?;
        self.prepare_schema(true)?;
        self.cache.clear();
        self.pending.refresh(&self.conn);
        self.resets.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// The count of resets, shared: a stream reads it from another thread.
    pub fn resets(&self) -> &Arc<AtomicU64> {
        &self.resets
    }

    /// The connection with what is known of its pending events, for [`crate::pending`]'s
    /// methods.
    pub fn pending(&mut self) -> (&Connection, &mut Pending) {
        (&self.conn, &mut self.pending)
    }

    /// Stores the events of one `store` call (see [`crate::event`]) in one transaction: all of
    /// them or none of them.
    pub fn append(&mut self, payload: &str) -> Result<Appended> {
        // Only a claim can store nothing.
        self.write(payload, WriteKind::Single, None).map(Option::unwrap_or_default)
    }

    /// Stores the events of one `storeBulk` call; as [`Store::append`], but counted as a batch
    /// in the metrics.
    pub fn append_batch(&mut self, payload: &str) -> Result<Appended> {
        self.write(payload, WriteKind::Batch, None).map(Option::unwrap_or_default)
    }

    /// Stores the event of ready pending event `pending_id` and marks that one `executed`, in
    /// one transaction: two processes executing ready events never both store it, and a
    /// crash stores neither. `None` (nothing stored) when it was no longer ready.
    pub fn append_pending(&mut self, pending_id: i64, payload: &str) -> Result<Option<Appended>> {
        self.write(payload, WriteKind::Single, Some(pending_id))
    }

    /// Stores one batch of exported rows (see [`crate::transfer`]), counted as a batch write.
    /// Imported rows may join any cached transaction, so the cache is emptied.
    pub fn import(&mut self, payload: &str, keep_ids: bool) -> Result<Appended> {
        let started = Instant::now();
        let written = transfer::insert(&self.conn, payload, keep_ids);
        match &written {
            Ok(appended) => self.metrics.record_write(WriteKind::Batch, appended.count, started.elapsed()),
            Err(_) => self.metrics.record_error(),
        }
        self.cache.clear();
        written
    }

    /// Counts a write that JavaScript refused before it reached the store (an invalid event),
    /// so that `errorsTotal` counts every failed write.
    pub fn record_failed_write(&mut self) {
        self.metrics.record_error();
    }

    /// Stores a payload (claiming pending event `claim` in the same transaction), then has the
    /// pending events it may satisfy evaluated.
    fn write(&mut self, payload: &str, kind: WriteKind, claim: Option<i64>) -> Result<Option<Appended>> {
        let started = Instant::now();
        let written = self.insert(payload, claim);
        match &written {
            Ok(Some(appended)) => {
                self.metrics.record_write(kind, appended.count, started.elapsed());
                self.pending.after_append(&self.conn, *appended);
            }
            Ok(None) => {}
            Err(_) => {
                self.metrics.record_error();
                self.pending.forget();
            }
        }
        written
    }

    /// Parses and stores a payload, all of it or none of it; the cache forgets each
    /// transaction the events join as they are inserted. With `claim`, nothing is stored
    /// (`None`) unless that pending event was ready.
    fn insert(&mut self, payload: &str, claim: Option<i64>) -> Result<Option<Appended>> {
        let events = parse_batch(payload)?;
        file::check_in_place(&self.conn)?;
        if let Some(index) = events.iter().position(NewEvent::is_conditional) {
            return Err(Error::InvalidEvent(format!(
                "event {index} carries expectedVersion or idempotencyKey, which only append_checked honours"
            )));
        }
        let mut writer = Writer { conn: &self.conn, cache: &mut self.cache };
        let first_id = if claim.is_none() && events.len() == 1 && !inherits(&events[0]) {
            // One INSERT on its own is already atomic, and SQLite starts its write from no
            // transaction, so the busy handler still waits for other writers: BEGIN and
            // COMMIT would only add two statement runs to the commit-bound single store.
            writer.insert_one(&events[0], events[0].correlation_id())?
        } else {
            let txn = WriteTxn::begin(&self.conn)?;
            if let Some(pending_id) = claim {
                if !pending::claim(&self.conn, pending_id)? {
                    return Ok(None);
                }
            }
            let first_id = writer.insert_all(&events)?;
            txn.commit()?;
            first_id
        };
        Ok(Some(Appended { first_id, count: events.len() }))
    }

    /// Stores the writes of several calls in one transaction (a group commit; see
    /// [`crate::writer`]), each call in a savepoint of its own, so that a call that fails
    /// stores nothing and fails alone. `Err` when the transaction itself failed (it could not
    /// begin or commit, or SQLite rolled it back): then none of the calls is stored.
    pub(crate) fn append_group(&mut self, writes: &[Write]) -> Result<Vec<Result<Stored>>> {
        if let [write] = writes {
            if !write.conditional {
                // A call alone is a transaction of its own, with the single store's shortcut;
                // only a claim can store nothing.
                let written = self.write(&write.payload, write.kind, None);
                return Ok(vec![written.map(|appended| Stored::Appended(appended.unwrap_or_default()))]);
            }
        }
        let started = Instant::now();
        let outcome = self.insert_group(writes);
        let took = started.elapsed();
        match &outcome {
            Ok(results) => {
                for (write, result) in writes.iter().zip(results) {
                    match result {
                        // A call whose every event was a repeat wrote nothing, as `append_checked`.
                        Ok(stored) if stored.appended().count == 0 => {}
                        Ok(stored) => self.metrics.record_write(write.kind, stored.appended().count, took),
                        Err(_) => self.metrics.record_error(),
                    }
                }
                // The events stored hold consecutive ids (a failed call leaves no gap, a call
                // that left repeats out none either), and their one commit is what the pending
                // events must be measured against.
                let stored = results.iter().filter_map(|result| result.as_ref().ok().map(Stored::appended));
                let stored = stored.filter(|appended| appended.count > 0);
                if let Some(first_id) = stored.clone().map(|a| a.first_id).min() {
                    let count = stored.map(|a| a.count).sum();
                    self.pending.after_append(&self.conn, Appended { first_id, count });
                }
            }
            Err(_) => {
                writes.iter().for_each(|_| self.metrics.record_error());
                self.pending.forget();
            }
        }
        outcome
    }

    /// The group is first written as one batch, in multi-row chunks as `storeBulk`'s events
    /// are: a savepoint per call costs as much again as the inserts (each call copies the pages
    /// it touches into the statement journal, and runs a statement per event instead of one per
    /// 32). Only when SQLite refuses an event is that rolled back and the group written again
    /// call by call, each in a savepoint of its own, so that the call at fault fails alone.
    /// A group with stream conditions is written call by call from the start: a conflict
    /// must fail its call alone, and each check counts the calls before it.
    fn insert_group(&mut self, writes: &[Write]) -> Result<Vec<Result<Stored>>> {
        // Every call's events one after another, and each call's place among them (or why its
        // payload did not parse: that call fails alone, before anything is written).
        let mut events = Vec::new();
        let calls: Vec<Result<Range<usize>>> = writes
            .iter()
            .map(|write| {
                let parsed = parse_batch(&write.payload)?;
                let start = events.len();
                events.extend(parsed);
                Ok(start..events.len())
            })
            .collect();
        let conditional = events.iter().any(NewEvent::is_conditional);
        let mut writer = Writer { conn: &self.conn, cache: &mut self.cache };
        let mut txn = WriteTxn::begin(&self.conn)?;
        let batch = if conditional { None } else { Some(writer.insert_all(&events)) };
        let results = match batch {
            Some(Ok(first_id)) => calls
                .into_iter()
                .map(|call| {
                    call.map(|at| Stored::Appended(Appended { first_id: first_id + at.start as i64, count: at.len() }))
                })
                .collect(),
            Some(Err(_)) | None => {
                if conditional {
                    self.streams.ready(&self.conn, true)?;
                } else {
                    txn.rollback()?;
                    txn = WriteTxn::begin(&self.conn)?;
                }
                calls
                    .into_iter()
                    .map(|call| match call {
                        Ok(at) => writer.insert_call(&events[at]),
                        Err(err) => Ok(Err(err)),
                    })
                    .collect::<Result<Vec<_>>>()?
            }
        };
        txn.commit()?;
        Ok(results)
    }

    /// Stores the events of one call that may carry stream conditions, in one transaction: each
    /// event with an `idempotencyKey` used before is left out (see [`Checked::duplicates`]), and
    /// each with an `expectedVersion` is checked against its stream as it comes, the events
    /// before it in the call counted; a conflict stores nothing ([`Error::VersionConflict`]).
    pub fn append_checked(&mut self, payload: &str, kind: WriteKind) -> Result<Checked> {
        // Without a pending event to claim there is always an outcome.
        Ok(self.write_checked(payload, kind, None)?.unwrap_or_default())
    }

    /// [`Store::append_pending`] for an event that carries `expectedVersion` or
    /// `idempotencyKey`: the pending event is claimed in the transaction that checks and stores
    /// it. `None` (nothing stored) when it was no longer ready.
    pub fn append_pending_checked(&mut self, pending_id: i64, payload: &str) -> Result<Option<Checked>> {
        self.write_checked(payload, WriteKind::Single, Some(pending_id))
    }

    /// As [`Store::write`], for appends with stream conditions.
    fn write_checked(&mut self, payload: &str, kind: WriteKind, claim: Option<i64>) -> Result<Option<Checked>> {
        let started = Instant::now();
        let written = self.insert_checked(payload, claim);
        match &written {
            Ok(Some(checked)) if checked.count > 0 => {
                self.metrics.record_write(kind, checked.count, started.elapsed());
                let appended = Appended { first_id: checked.first_id, count: checked.count };
                self.pending.after_append(&self.conn, appended);
            }
            Ok(_) => {}
            Err(_) => {
                self.metrics.record_error();
                self.pending.forget();
            }
        }
        written
    }

    fn insert_checked(&mut self, payload: &str, claim: Option<i64>) -> Result<Option<Checked>> {
        let events = parse_batch(payload)?;
        let conn = &self.conn;
        file::check_in_place(conn)?;
        let txn = WriteTxn::begin(conn)?;
        if let Some(pending_id) = claim {
            if !pending::claim(conn, pending_id)? {
                return Ok(None);
            }
        }
        self.streams.ready(conn, true)?;
        let checked = Writer { conn, cache: &mut self.cache }.insert_conditional(&events)?;
        txn.commit()?;
        Ok(Some(checked))
    }

    /// `getStreamVersion`: how many events hold `correlation_id`, whoever appended them.
    pub fn stream_version(&self, correlation_id: &str) -> Result<i64> {
        self.streams.ready(&self.conn, false)?;
        version::stream_version(&self.conn, correlation_id)
    }

    /// Makes sure the stream tables are whole before a consumer uses them; see
    /// [`streams::Watch::ready`].
    pub fn streams_ready(&self) -> Result<()> {
        self.streams.ready(&self.conn, false)
    }

    /// `retrieveByIDCached`; see [`crate::cache`].
    pub fn cached_by_id(&mut self, id: i64) -> Result<Option<Lookup>> {
        self.cache.by_id(&self.conn, id)
    }

    /// The fast path of `retrieveByIDCached`: see [`Cache::id_hit`].
    pub fn cached_id_hit(&mut self, id: i64) -> Option<u32> {
        self.cache.id_hit(id)
    }

    /// `getTransactionCached`; see [`crate::cache`].
    pub fn cached_transaction(&mut self, correlation_id: String) -> Result<Option<Lookup>> {
        self.cache.transaction(&self.conn, correlation_id)
    }

    pub fn clear_cache(&mut self) {
        self.cache.clear();
    }

    pub fn cache_stats(&mut self) -> CacheStats {
        self.cache.stats(Instant::now())
    }

    /// The write metrics, with the journal mode and `synchronous` as SQLite reports them.
    pub fn metrics(&self) -> Result<MetricsSnapshot> {
        let journal_mode: String = self.conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
        let level: i64 = self.conn.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
        let event_count = self.conn.query_row("SELECT COUNT(*) FROM queue", [], |r| r.get(0))?;
        Ok(self.metrics.snapshot(SqliteReport {
            journal_mode: journal_mode.to_uppercase(),
            synchronous: synchronous_name(level),
            event_count,
        }))
    }

    /// The names of the optional indexes present, sorted.
    pub fn indexes(&self) -> Result<Vec<String>> {
        schema::present_indexes(&self.conn)
    }
}

/// The write path's view of the store: inserting events, and forgetting the cached
/// transactions they join, inside the write transaction that holds the connection.
struct Writer<'s> {
    conn: &'s Connection,
    cache: &'s mut Cache,
}

impl Writer<'_> {
    /// Inserts the events in order, in multi-row chunks where no event in the chunk has to
    /// look up its parent; returns the first id. The write lock is held throughout, so
    /// AUTOINCREMENT hands out consecutive ids, which callers rely on to number the rows they
    /// return; that is checked rather than assumed.
    fn insert_all(&mut self, events: &[NewEvent<'_>]) -> Result<i64> {
        let mut first_id = None;
        let mut done = 0;
        while done < events.len() {
            let rest = &events[done..];
            // A child that inherits its parent's correlation id goes in alone, after the lookup.
            let chunk =
                INSERT_CHUNKS.iter().find(|(rows, _)| *rows <= rest.len() && !rest[..*rows].iter().any(inherits));
            let (count, last_id) = match chunk {
                Some((rows, sql)) => (*rows, self.insert_chunk(sql, &rest[..*rows])?),
                None => {
                    let correlation_id = self.correlation_for(&rest[0])?;
                    (1, self.insert_one(&rest[0], correlation_id.as_deref())?)
                }
            };
            let first = *first_id.get_or_insert(last_id + 1 - count as i64);
            done += count;
            if last_id != first + done as i64 - 1 {
                return Err(Error::Sqlite {
                    code: "SQLITE_INTERNAL",
                    message: format!(
                        "ids not consecutive within one batch (expected {}, got {last_id})",
                        first + done as i64 - 1
                    ),
                });
            }
        }
        Ok(first_id.unwrap_or(0))
    }

    /// Inserts one call's events inside the group's transaction, in a savepoint: all of them or
    /// none (a call with stream conditions leaves its repeats out, as `append_checked` does).
    /// The inner `Result` is the call's own; the outer one fails the group, when SQLite
    /// rolled the whole transaction back (a full disk, an I/O error) or the savepoint itself
    /// failed, so that a call is never reported failed while its events stay.
    fn insert_call(&mut self, events: &[NewEvent<'_>]) -> Result<Result<Stored>> {
        self.run(SAVEPOINT)?;
        let inserted = if events.iter().any(NewEvent::is_conditional) {
            self.insert_conditional(events).and_then(|checked| {
                let appended = Appended { first_id: checked.first_id, count: checked.count };
                if checked.duplicates.is_empty() {
                    Ok(Stored::Appended(appended))
                } else {
                    // Read in the savepoint: a reply that cannot be made fails its call alone.
                    Ok(Stored::Checked(appended, checked.to_json(self.conn)?))
                }
            })
        } else {
            self.insert_all(events).map(|first_id| Stored::Appended(Appended { first_id, count: events.len() }))
        };
        match inserted {
            Ok(stored) => {
                self.run(RELEASE)?;
                Ok(Ok(stored))
            }
            Err(err) if self.conn.is_autocommit() => Err(err),
            Err(err) => {
                self.run(ROLLBACK_TO)?;
                self.run(RELEASE)?;
                Ok(Err(err))
            }
        }
    }

    /// Inserts the events of one call that may carry stream conditions, inside the caller's
    /// write transaction (the stream tables made ready): each event with an `idempotencyKey`
    /// used before is left out, and each with an `expectedVersion` is checked against its
    /// stream as it comes, every event written before it in the transaction counted; a
    /// conflict is [`Error::VersionConflict`], and the caller rolls back what was written.
    fn insert_conditional(&mut self, events: &[NewEvent<'_>]) -> Result<Checked> {
        let conn = self.conn;
        let mut checked = Checked { first_id: 0, count: 0, duplicates: Vec::new() };
        for part in conditional_parts(events) {
            let index = match part {
                Part::Plain(run) => {
                    checked.stored(self.insert_all(&events[run.clone()])?, run.len())?;
                    continue;
                }
                Part::Conditional(index) => index,
            };
            let e = &events[index];
            let correlation_id = self.correlation_for(e)?;
            let key = e.idempotency_key();
            if let Some(first) = key.map(|key| idempotency::lookup(conn, key)).transpose()?.flatten() {
                checked.duplicates.push((index, first));
                continue;
            }
            if let Some(expected) = e.expected_version() {
                version::check(conn, index, correlation_id.as_deref(), expected)?;
            }
            let id = self.insert_one(e, correlation_id.as_deref())?;
            checked.stored(id, 1)?;
            if let Some(key) = key {
                idempotency::remember(conn, key, id)?;
            }
        }
        Ok(checked)
    }

    /// Runs a statement without parameters or rows, prepared once.
    fn run(&self, sql: &'static str) -> Result<()> {
        self.conn.cached(sql)?.execute(|_| Ok(()))
    }

    /// The correlation id an event is stored with: its own, or its parent's. The lookup runs
    /// inside the write transaction, so a parent earlier in the same batch is found too.
    fn correlation_for<'e>(&self, e: &'e NewEvent<'_>) -> Result<Option<Cow<'e, str>>> {
        match (e.correlation_id(), e.causation_id()) {
            (Some(own), _) => Ok(Some(Cow::Borrowed(own))),
            (None, Some(parent_id)) => Ok(self
                .conn
                .prepare_cached(PARENT_CORRELATION)?
                .query_row([parent_id], |r| r.get::<_, Option<String>>(0))
                .optional()?
                .flatten()
                .map(Cow::Owned)),
            (None, None) => Ok(None),
        }
    }

    /// Inserts one event; returns its id.
    fn insert_one(&mut self, e: &NewEvent<'_>, correlation_id: Option<&str>) -> Result<i64> {
        self.conn.cached(&INSERT_ONE)?.execute(|b| bind_event(b, e, correlation_id))?;
        self.cache.forget_transaction(correlation_id);
        Ok(self.conn.last_insert_rowid())
    }

    /// Inserts events that carry their own correlation ids with `sql`, an `INSERT` of as many
    /// rows; returns the last id.
    fn insert_chunk(&mut self, sql: &'static str, events: &[NewEvent<'_>]) -> Result<i64> {
        self.conn.cached(sql)?.execute(|b| events.iter().try_for_each(|e| bind_event(b, e, e.correlation_id())))?;
        let mut forgotten = None;
        for e in events {
            // Events of one transaction usually come together: forget each id once.
            if e.correlation_id() != forgotten {
                self.cache.forget_transaction(e.correlation_id());
                forgotten = e.correlation_id();
            }
        }
        Ok(self.conn.last_insert_rowid())
    }
}

/// SQLite's name for a `PRAGMA synchronous` level.
fn synchronous_name(level: i64) -> &'static str {
    usize::try_from(level).ok().and_then(|level| SYNCHRONOUS.get(level)).copied().unwrap_or("UNKNOWN")
}

/// What every connection of the library needs, the store's and a stream's alike. The timeout
/// is one [`Store::open`] accepted.
pub(crate) fn configure(conn: &Connection, busy_timeout_ms: u32) -> Result<()> {
    conn.busy_timeout(Duration::from_millis(u64::from(busy_timeout_ms)))?;
    // The query planner stability guarantee. Without it SQLite (built with STAT4, as the
    // bundled one is) marks a statement whose LIMIT is a bound parameter to be compiled again
    // whenever that parameter is bound, which a cached statement is on every run: a page or
    // stream batch then costs a third more than stepping through its 100 rows does.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    crate::consumer::register(conn)
}

pub(crate) fn create_parent_folder(path: &str) -> Result<()> {
    match Path::new(path).parent() {
        Some(parent) if !parent.as_os_str().is_empty() && !parent.exists() => std::fs::create_dir_all(parent)
            .map_err(|e| Error::cant_open(format!("cannot create the folder {}: {e}", parent.display()))),
        _ => Ok(()),
    }
}

/// A `BEGIN IMMEDIATE` transaction: the write lock is taken up front, so a writer in another
/// process makes this one wait (up to `busy_timeout`) instead of failing half way. Rolled back
/// on drop unless ended. The statements are cached like any other.
pub(crate) struct WriteTxn<'c> {
    conn: &'c Connection,
    ended: bool,
}

impl<'c> WriteTxn<'c> {
    pub(crate) fn begin(conn: &'c Connection) -> Result<WriteTxn<'c>> {
        conn.cached("BEGIN IMMEDIATE")?.execute(|_| Ok(()))?;
        Ok(WriteTxn { conn, ended: false })
    }

    pub(crate) fn commit(mut self) -> Result<()> {
        self.conn.cached("COMMIT")?.execute(|_| Ok(()))?;
        self.ended = true;
        Ok(())
    }

    /// Rolls back now, reporting a failure (which `drop` cannot), unless SQLite already did.
    fn rollback(mut self) -> Result<()> {
        if !self.conn.is_autocommit() {
            self.conn.execute_batch("ROLLBACK")?;
        }
        self.ended = true;
        Ok(())
    }
}

impl Drop for WriteTxn<'_> {
    fn drop(&mut self) {
        if !self.ended && !self.conn.is_autocommit() {
            // Nothing to report to: the error that got us here is already on its way out.
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(name: &str) -> String {
        let dir = std::env::temp_dir().join(format!("eventlite-store-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("nested").join("events.sqlite").to_string_lossy().into_owned()
    }

    fn count(store: &Store) -> i64 {
        store.conn().query_row("SELECT COUNT(*) FROM queue", [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn opening_creates_folders_and_sets_the_pragmas() {
        let path = temp_path("pragmas");
        let store = Store::open(Config::new(path.clone())).unwrap();
        assert!(Path::new(&path).exists());
        let mode: String = store.conn().query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        let sync: i64 = store.conn().query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
        assert_eq!((mode.as_str(), sync), ("wal", 1));

        let mut config = Config::new(path);
        config.wal = false;
        drop(store);
        let store = Store::open(config).unwrap();
        let mode: String = store.conn().query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        let sync: i64 = store.conn().query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
        assert_eq!((mode.as_str(), sync), ("delete", 2));
    }

    #[test]
    fn a_batch_gets_consecutive_ids_and_children_inherit_correlation() {
        let mut store = Store::open(Config::new(MEMORY)).unwrap();
        let a = store.append(r#"[["a",{},"","",1,"corr-1",null,{},1],["b",{},"","",1,null,1,{},2]]"#).unwrap();
        assert_eq!(a, Appended { first_id: 1, count: 2 });
        let inherited: String =
            store.conn().query_row("SELECT correlation_id FROM queue WHERE id = 2", [], |r| r.get(0)).unwrap();
        assert_eq!(inherited, "corr-1");
        let orphan = store.append(r#"[["c",{},"","",1,null,99,{},3]]"#).unwrap();
        assert_eq!(orphan.first_id, 3);
        let none: Option<String> =
            store.conn().query_row("SELECT correlation_id FROM queue WHERE id = 3", [], |r| r.get(0)).unwrap();
        assert_eq!(none, None);
    }

    /// A batch whose length is no multiple of a chunk, with children that inherit their
    /// parent's correlation id here and there: every event is stored, in order, with the ids
    /// and correlation ids it would get stored one at a time.
    #[test]
    fn a_batch_of_any_length_goes_in_whole_and_in_order() {
        let mut store = Store::open(Config::new(MEMORY)).unwrap();
        let children = [1, 100, 101, 999];
        for len in [1, 2, 63, 64, 65, 127, 1000] {
            let first = store.append(r#"[["parent",{},"","",1,"corr-p",null,{},0]]"#).unwrap().first_id;
            let events: Vec<String> = (0..len)
                .map(|i| match children.contains(&i) {
                    true => format!(r#"["e{i}",{{}},"","",1,null,{first},{{}},{i}]"#),
                    false => format!(r#"["e{i}",{{}},"","",1,"corr-{i}",null,{{}},{i}]"#),
                })
                .collect();
            let appended = store.append_batch(&format!("[{}]", events.join(","))).unwrap();
            assert_eq!(appended, Appended { first_id: first + 1, count: len });
            let mut stmt =
                store.conn().prepare("SELECT id, cmd, correlation_id FROM queue WHERE id > ?1 ORDER BY id").unwrap();
            let rows: Vec<(i64, String, String)> = stmt
                .query_map([first], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .unwrap()
                .map(|r| r.unwrap())
                .collect();
            let expected: Vec<(i64, String, String)> = (0..len)
                .map(|i| {
                    let correlation = if children.contains(&i) { "corr-p".to_string() } else { format!("corr-{i}") };
                    (first + 1 + i as i64, format!("e{i}"), correlation)
                })
                .collect();
            assert_eq!(rows, expected, "a batch of {len}");
        }
    }

    #[test]
    fn a_failed_batch_stores_nothing() {
        let mut store = Store::open(Config::new(MEMORY)).unwrap();
        store.append(r#"[["a",{},"","",1,"c",null,{},1]]"#).unwrap();
        let err = store.append(r#"[["b",{},"","",1,"c",null,{},1],["",{},"","",1,"c",null,{},1]]"#);
        assert_eq!(err.unwrap_err().code(), "ERR_INVALID_EVENT");
        assert_eq!(count(&store), 1);
        // The connection is usable afterwards: no transaction was left open.
        store.append(r#"[["c",{},"","",1,"c",null,{},1]]"#).unwrap();
        assert_eq!(count(&store), 2);
    }

    /// SQLite refusing a row half way through a multi-row INSERT (which runs OR FAIL, keeping
    /// the rows before it), in a full chunk or in a smaller one after it: the write transaction
    /// still takes the whole batch back.
    #[test]
    fn a_batch_that_sqlite_refuses_half_way_stores_nothing() {
        let mut store = Store::open(Config::new(MEMORY)).unwrap();
        store.conn().execute_batch("CREATE UNIQUE INDEX test_unique_cmd ON queue(cmd)").unwrap();
        store.append(r#"[["first",{},"","",1,"c",null,{},1]]"#).unwrap();
        for clash in [5, 35] {
            let events: Vec<String> = (0..40)
                .map(|i| {
                    let cmd = if i == clash { "first".to_string() } else { format!("e{clash}-{i}") };
                    format!(r#"["{cmd}",{{}},"","",1,"c",null,{{}},{i}]"#)
                })
                .collect();
            let err = store.append(&format!("[{}]", events.join(","))).unwrap_err();
            assert_eq!(err.code(), "SQLITE_CONSTRAINT", "event {clash}");
            assert_eq!(count(&store), 1, "event {clash}: nothing of the batch stays");
        }
        store.append(r#"[["next",{},"","",1,"c",null,{},1]]"#).unwrap();
        assert_eq!(count(&store), 2);
    }

    #[test]
    fn reset_empties_the_table_and_restarts_ids() {
        let mut store = Store::open(Config::new(MEMORY)).unwrap();
        store.append(r#"[["a",{},"","",1,"c",null,{},1]]"#).unwrap();
        store.reset().unwrap();
        assert_eq!(count(&store), 0);
        assert_eq!(store.append(r#"[["a",{},"","",1,"c",null,{},1]]"#).unwrap().first_id, 1);
    }

    #[test]
    fn a_file_that_is_not_sqlite_is_notadb() {
        let path = temp_path("notadb");
        std::fs::create_dir_all(Path::new(&path).parent().unwrap()).unwrap();
        std::fs::write(&path, vec![b'x'; 4096]).unwrap();
        let err = Store::open(Config::new(&path)).err().unwrap();
        assert_eq!(err.code(), "SQLITE_NOTADB");
        assert!(err.to_string().contains(&path), "the message names the file: {err}");
    }

    #[test]
    fn a_busy_timeout_sqlite_cannot_take_is_an_option_error() {
        let mut config = Config::new(MEMORY);
        config.busy_timeout_ms = MAX_BUSY_TIMEOUT_MS + 1;
        assert_eq!(Store::open(config).err().unwrap().code(), "ERR_INVALID_OPTION");
    }

    #[test]
    fn bad_synchronous_is_an_option_error() {
        let mut config = Config::new(MEMORY);
        config.synchronous = Some("SOMETIMES".into());
        assert_eq!(Store::open(config).err().unwrap().code(), "ERR_INVALID_OPTION");
    }
}
