//! The N-API surface, and nothing else: each method checks the queue is open, converts its
//! arguments, calls the plain-Rust core, and turns a core error into a JavaScript `Error`
//! whose `code` is the error's stable code. The JavaScript layer (`lib/`) shapes arguments
//! and results; see `lib/queue.js`.

pub mod backup;
pub mod cache;
pub mod checkpoint;
pub mod condition;
pub mod connection;
pub mod error;
pub mod event;
pub mod hash;
pub mod jsvalue;
pub mod lock;
pub mod maintenance;
pub mod metrics;
pub mod page;
pub mod pending;
pub mod read;
pub mod row;
pub mod schema;
pub mod statement;
pub mod store;
pub mod stream;
pub mod transfer;

use std::collections::HashMap;
use std::ffi::CStr;
use std::ptr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use napi::bindgen_prelude::{
    validate_type_tag, AsyncTask, Either, JsObjectValue, JsValue, Object, ObjectFinalize, ToNapiValue, TypeName,
    TypeTag, ValueType,
};
use napi::{check_status, sys, Env, JsError, Task};
use napi_derive::napi;

use crate::backup::Backup;
use crate::cache::{CacheConfig, Lookup};
use crate::error::Error;
use crate::page::{PageOptions, Query};
use crate::store::{Config, Store};
use crate::stream::{Filter, Next, Stream};

/// Named `Result` because the `#[napi]` macro recognises fallible returns by that name.
type Result<T, E = napi::Error<&'static str>> = std::result::Result<T, E>;

fn to_js(err: Error) -> napi::Error<&'static str> {
    napi::Error::new(err.code(), err.to_string())
}

/// An id from JavaScript: a number that must be a whole, safe integer.
fn to_id(value: f64) -> Result<i64, Error> {
    const MAX_SAFE: f64 = 9_007_199_254_740_991.0;
    if value.is_finite() && value.fract() == 0.0 && value.abs() <= MAX_SAFE {
        Ok(value as i64)
    } else {
        Err(Error::InvalidOption(format!("{value} is not an integer id")))
    }
}

/// The options `initQueue` hands to the core, after validating them.
#[napi(object)]
pub struct OpenOptions {
    pub db_name: String,
    pub wal: bool,
    pub synchronous: Option<String>,
    pub busy_timeout: u32,
    /// Only the keys the user gave; the defaults are applied in Rust.
    pub indexes: HashMap<String, bool>,
    pub reset: bool,
    pub cache: CacheOptions,
    /// Only the command line's read-only tools set it; `initQueue` has no such option.
    pub read_only: Option<bool>,
}

#[napi(object)]
pub struct CacheOptions {
    pub enabled: bool,
    pub max_size: u32,
    /// Milliseconds; a number because it may exceed 32 bits.
    pub ttl: f64,
}

/// A cached read for JavaScript: the slot of a template it holds, or the `[values, slot]` text
/// of a miss; see `src/cache.rs`.
fn to_found(lookup: Option<Lookup>) -> Option<Either<u32, Json>> {
    lookup.map(|found| match found {
        Lookup::Hit(slot) => Either::A(slot),
        Lookup::Miss(text) => Either::B(Json(text)),
    })
}

/// The option keys of `indexes`, so that JavaScript validates against the one list.
#[napi]
pub fn index_keys() -> Vec<&'static str> {
    schema::index_keys()
}

/// The groups of `waitFor`, each with the `condition_type` of its conditions, in the order
/// EventLite stores them, so that JavaScript validates and builds against the one list.
#[napi]
pub fn wait_groups() -> Vec<Vec<&'static str>> {
    condition::Group::ALL.iter().map(|g| vec![g.key(), g.condition_type()]).collect()
}

/// Roughly what an open queue holds outside the JavaScript heap: SQLite's connection, its page
/// cache, statements and lookaside, and file descriptors. It is reported to the engine while
/// the queue is open, so that queues dropped without `close()` are collected (closing their
/// files) before the process runs out of file descriptors: the engine cannot see those.
const NATIVE_FOOTPRINT: i64 = 1 << 20;

/// Tells the engine that `bytes` of native memory came or went. Advisory: a failure changes
/// only when the engine collects, so it does not fail the call that reports it.
fn report_native_memory(env: &Env, bytes: i64) {
    let _ = env.adjust_external_memory(bytes);
}

#[napi(custom_finalize)]
pub struct NativeQueue {
    /// `None` once closed; dropping the last reference closes the SQLite connection. Shared
    /// with the streams of a `:memory:` store, which have no other way to reach its data.
    store: Option<Arc<Mutex<Store>>>,
}

impl ObjectFinalize for NativeQueue {
    fn finalize(self, env: Env) -> napi::Result<()> {
        if self.store.is_some() {
            report_native_memory(&env, -NATIVE_FOOTPRINT);
        }
        Ok(())
    }
}

#[napi]
impl NativeQueue {
    #[napi(constructor)]
    pub fn new(env: Env, options: OpenOptions) -> Result<NativeQueue> {
        let config = Config {
            path: options.db_name,
            wal: options.wal,
            synchronous: options.synchronous,
            busy_timeout_ms: options.busy_timeout,
            indexes: options.indexes,
            reset: options.reset,
            cache: CacheConfig {
                enabled: options.cache.enabled,
                max_size: options.cache.max_size as usize,
                // Saturating: NaN and negatives become 0, which `Store::open` refuses.
                ttl: Duration::from_millis(options.cache.ttl as u64),
            },
            read_only: options.read_only.unwrap_or(false),
        };
        let store = Store::open(config).map_err(to_js)?;
        report_native_memory(&env, NATIVE_FOOTPRINT);
        Ok(NativeQueue { store: Some(Arc::new(Mutex::new(store))) })
    }

    fn shared(&self) -> Result<&Arc<Mutex<Store>>> {
        self.store.as_ref().ok_or_else(|| to_js(Error::QueueClosed))
    }

    /// The store, locked. Uncontended unless a stream of a `:memory:` store is reading a
    /// batch. Nothing panics while holding the lock, and a SQLite transaction cut short rolls
    /// back, so a poisoned lock still guards a usable store.
    fn store(&self) -> Result<MutexGuard<'_, Store>> {
        Ok(self.shared()?.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Stores the payload (see `src/event.rs`) of one `store` call; returns the first id.
    #[napi]
    pub fn append(&self, payload: String) -> Result<f64> {
        let appended = self.store()?.append(&payload).map_err(to_js)?;
        Ok(appended.first_id as f64)
    }

    /// Stores the payload of one `storeBulk` call in one transaction; returns the first id.
    #[napi]
    pub fn append_batch(&self, payload: String) -> Result<f64> {
        let appended = self.store()?.append_batch(&payload).map_err(to_js)?;
        Ok(appended.first_id as f64)
    }

    /// Stores the payload of ready pending event `pending_id` and marks it executed, in one
    /// transaction; returns the first id, or null (nothing stored) when it was no longer ready.
    #[napi]
    pub fn append_pending(&self, pending_id: f64, payload: String) -> Result<Option<f64>> {
        let pending_id = to_id(pending_id).map_err(to_js)?;
        let appended = self.store()?.append_pending(pending_id, &payload).map_err(to_js)?;
        Ok(appended.map(|a| a.first_id as f64))
    }

    /// `storeWhen`: stores the pending event its payload describes (see `lib/pending.js`) and
    /// evaluates it; returns its id.
    #[napi]
    pub fn store_when(&self, payload: String) -> Result<f64> {
        let mut store = self.store()?;
        let (conn, pending) = store.pending();
        pending.store_when(conn, &payload).map(|id| id as f64).map_err(to_js)
    }

    /// `checkAllPendingEvents`: the ready rows after evaluating every pending event, as JSON.
    #[napi(ts_return_type = "string")]
    pub fn check_pending(&self) -> Result<Json> {
        let mut store = self.store()?;
        let (conn, pending) = store.pending();
        pending.check_all(conn).map(Json).map_err(to_js)
    }

    /// The ready rows, oldest first, as JSON.
    #[napi(ts_return_type = "string")]
    pub fn ready_pending(&self) -> Result<Json> {
        pending::rows_with_status(self.store()?.conn(), "ready").map(Json).map_err(to_js)
    }

    /// `expirePendingEvents` with the clock's `now`: the rows it expired, as JSON.
    #[napi(ts_return_type = "string")]
    pub fn expire_pending(&self, now: f64) -> Result<Json> {
        let now = to_id(now).map_err(to_js)?;
        let mut store = self.store()?;
        let (conn, pending) = store.pending();
        pending.expire(conn, now).map(Json).map_err(to_js)
    }

    #[napi]
    pub fn cancel_pending(&self, id: f64) -> Result<bool> {
        let id = to_id(id).map_err(to_js)?;
        let mut store = self.store()?;
        let (conn, pending) = store.pending();
        pending.cancel(conn, id).map_err(to_js)
    }

    /// The pending rows of a correlation id, as JSON.
    #[napi(ts_return_type = "string")]
    pub fn pending_by_correlation(&self, correlation_id: String) -> Result<Json> {
        pending::pending_by_correlation(self.store()?.conn(), &correlation_id).map(Json).map_err(to_js)
    }

    /// Counts a write refused in JavaScript, before `append`.
    #[napi]
    pub fn record_failed_write(&self) -> Result<()> {
        self.store()?.record_failed_write();
        Ok(())
    }

    /// The stored correlation id of event `id` (used after an append that inherited one).
    #[napi]
    pub fn correlation_id(&self, id: f64) -> Result<Option<String>> {
        let id = to_id(id).map_err(to_js)?;
        read::correlation_id(self.store()?.conn(), id).map_err(to_js)
    }

    #[napi(ts_return_type = "string | null")]
    pub fn last(&self) -> Result<Option<Json>> {
        read::last(self.store()?.conn()).map(|row| row.map(Json)).map_err(to_js)
    }

    #[napi(ts_return_type = "string")]
    pub fn by_correlation(&self, correlation_id: String) -> Result<Json> {
        read::by_correlation(self.store()?.conn(), &correlation_id).map(Json).map_err(to_js)
    }

    #[napi(ts_return_type = "string")]
    pub fn children(&self, id: f64) -> Result<Json> {
        let id = to_id(id).map_err(to_js)?;
        read::children(self.store()?.conn(), id).map(Json).map_err(to_js)
    }

    #[napi(ts_return_type = "string | null")]
    pub fn lineage(&self, id: f64) -> Result<Option<Json>> {
        let id = to_id(id).map_err(to_js)?;
        read::lineage(self.store()?.conn(), id).map(|text| text.map(Json)).map_err(to_js)
    }

    /// Up to `limit` rows with `from <= id` (and `id < until` when given), in id order, as a
    /// flat JSON array of values: the batches `cycleThrough` replays.
    #[napi(ts_return_type = "string")]
    pub fn range(&self, from: f64, until: Option<f64>, limit: u32) -> Result<Json> {
        let from = to_id(from).map_err(to_js)?;
        let end = until.map(to_id).transpose().map_err(to_js)?.map_or(i64::MAX, |u| u.saturating_sub(1));
        let batch = Filter::default().read(self.store()?.conn(), from..=end, i64::from(limit)).map_err(to_js)?;
        Ok(Json(batch.text))
    }

    /// One page, as the JSON text described in `src/page.rs`.
    fn page(&self, query: Query<'_>, options: PageArgs) -> Result<Json> {
        let offset = to_id(options.offset).map_err(to_js)?;
        let cursor = options.cursor.as_deref();
        let options = PageOptions { limit: i64::from(options.limit), offset, cursor, with_count: options.with_count };
        page::read(self.store()?.conn(), query, &options).map(Json).map_err(to_js)
    }

    #[napi(ts_return_type = "string")]
    pub fn page_by_correlation(&self, correlation_id: String, options: PageArgs) -> Result<Json> {
        self.page(Query::Correlation(&correlation_id), options)
    }

    #[napi(ts_return_type = "string")]
    pub fn page_of_children(&self, id: f64, options: PageArgs) -> Result<Json> {
        let id = to_id(id).map_err(to_js)?;
        self.page(Query::Children(id), options)
    }

    #[napi(ts_return_type = "string")]
    pub fn page_by_user(&self, user: String, options: PageArgs) -> Result<Json> {
        self.page(Query::User(&user), options)
    }

    #[napi(ts_return_type = "string")]
    pub fn page_by_cmd(&self, cmd: String, options: PageArgs) -> Result<Json> {
        self.page(Query::Cmd(&cmd), options)
    }

    /// `start` and `end` may be infinite; NaN matches nothing.
    #[napi(ts_return_type = "string")]
    pub fn page_in_time_range(&self, start: f64, end: f64, options: PageArgs) -> Result<Json> {
        self.page(Query::TimeRange(start, end), options)
    }

    /// A reader of this store's events; see [`NativeStream`].
    #[napi]
    pub fn stream(&self, options: StreamOptions) -> Result<NativeStream> {
        let start = to_id(options.start_id).map_err(to_js)?;
        let end = options.end_id.map(to_id).transpose().map_err(to_js)?;
        let filter = Filter { correlation_id: options.correlation_id, user: options.user, cmd: options.cmd };
        let batch_size = to_id(options.batch_size).map_err(to_js)?;
        let stream = Stream::new(self.shared()?, filter, start, end, batch_size);
        Ok(NativeStream { stream: Arc::new(Mutex::new(Some(stream))) })
    }

    #[napi(ts_return_type = "number | string | null")]
    pub fn cached_by_id(&self, id: f64) -> Result<Option<Either<u32, Json>>> {
        let id = to_id(id).map_err(to_js)?;
        self.store()?.cached_by_id(id).map(to_found).map_err(to_js)
    }

    #[napi(ts_return_type = "number | string | null")]
    pub fn cached_transaction(&self, correlation_id: String) -> Result<Option<Either<u32, Json>>> {
        self.store()?.cached_transaction(correlation_id).map(to_found).map_err(to_js)
    }

    #[napi]
    pub fn clear_cache(&self) -> Result<()> {
        self.store()?.clear_cache();
        Ok(())
    }

    /// `getCacheStats()` as JSON text.
    #[napi]
    pub fn cache_stats(&self) -> Result<String> {
        Ok(self.store()?.cache_stats().to_json())
    }

    /// `getMetrics()` as JSON text.
    #[napi]
    pub fn metrics(&self) -> Result<String> {
        self.store()?.metrics().map(|m| m.to_json()).map_err(to_js)
    }

    #[napi]
    pub fn indexes(&self) -> Result<Vec<String>> {
        self.store()?.indexes().map_err(to_js)
    }

    #[napi]
    pub fn reset(&self) -> Result<()> {
        self.store()?.reset().map_err(to_js)
    }

    /// `checkpoint()`: what `PRAGMA wal_checkpoint(TRUNCATE)` reports, as JSON text.
    #[napi]
    pub fn checkpoint(&self) -> Result<String> {
        let done = maintenance::checkpoint(self.store()?.conn()).map_err(to_js)?;
        Ok(to_json_text(&done))
    }

    #[napi]
    pub fn optimize(&self) -> Result<()> {
        maintenance::optimize(self.store()?.conn()).map_err(to_js)
    }

    #[napi]
    pub fn vacuum(&self) -> Result<()> {
        maintenance::vacuum(self.store()?.conn()).map_err(to_js)
    }

    #[napi]
    pub fn integrity_check(&self) -> Result<Vec<String>> {
        maintenance::integrity_check(self.store()?.conn()).map_err(to_js)
    }

    /// What `eventlite inspect` shows, as JSON text.
    #[napi]
    pub fn inspect(&self) -> Result<String> {
        let seen = maintenance::inspect(self.store()?.conn()).map_err(to_js)?;
        Ok(to_json_text(&seen))
    }

    /// How many events have `from <= id <= to`.
    #[napi]
    pub fn count_between(&self, from: f64, to: f64) -> Result<f64> {
        let (from, to) = (to_id(from).map_err(to_js)?, to_id(to).map_err(to_js)?);
        Ok(maintenance::count_between(self.store()?.conn(), from, to).map_err(to_js)? as f64)
    }

    /// The id from which the last `count` events matching the filters start (0: none match).
    #[napi]
    pub fn tail_start(&self, filter: TailFilter, count: u32) -> Result<f64> {
        let filter = Filter { correlation_id: filter.correlation_id, user: filter.user, cmd: filter.cmd };
        Ok(maintenance::tail_start(self.store()?.conn(), &filter, i64::from(count)).map_err(to_js)? as f64)
    }

    /// What is wrong with the optional indexes present (nothing, usually).
    #[napi]
    pub fn index_problems(&self) -> Result<Vec<String>> {
        maintenance::index_problems(self.store()?.conn()).map_err(to_js)
    }

    /// Stores one batch of exported rows (see `src/transfer.rs`); returns the first new id.
    #[napi]
    pub fn import_rows(&self, payload: String, keep_ids: bool) -> Result<f64> {
        let imported = self.store()?.import(&payload, keep_ids).map_err(to_js)?;
        Ok(imported.first_id as f64)
    }

    /// Starts an online backup into `dest`; `lib/transfer.js` steps it.
    #[napi]
    pub fn backup(&self, dest: String) -> Result<NativeBackup> {
        let backup = Backup::start(self.shared()?, &dest).map_err(to_js)?;
        Ok(NativeBackup { backup: Arc::new(Mutex::new(Some(backup))) })
    }

    /// Closes the connection. Idempotent.
    #[napi]
    pub fn close(&mut self, env: Env) {
        if self.store.take().is_some() {
            report_native_memory(&env, -NATIVE_FOOTPRINT);
        }
    }
}

/// JSON text of a report the core built. Serialising plain structs of numbers and strings
/// cannot fail; should it, the caller gets `null` rather than a crash.
fn to_json_text(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

/// The filters of `tail_start`, as `streamEvents` takes them.
#[napi(object)]
pub struct TailFilter {
    pub correlation_id: Option<String>,
    pub user: Option<String>,
    pub cmd: Option<String>,
}

/// An online backup in progress; see `src/backup.rs`.
#[napi]
pub struct NativeBackup {
    /// `None` once finished or closed.
    backup: Arc<Mutex<Option<Backup>>>,
}

#[napi(object)]
pub struct BackupProgress {
    pub done: f64,
    pub total: f64,
    pub finished: bool,
}

#[napi]
impl NativeBackup {
    /// Copies up to `pages` more pages on the libuv thread pool (all that are left when
    /// negative).
    #[napi(ts_return_type = "Promise<BackupProgress>")]
    pub fn step(&self, pages: i32) -> AsyncTask<BackupStep> {
        AsyncTask::new(BackupStep { backup: Arc::clone(&self.backup), pages })
    }

    /// Abandons the backup (the destination is left as SQLite leaves an unfinished one).
    /// Waits for a step in flight. Idempotent.
    #[napi]
    pub fn close(&self) {
        self.backup.lock().unwrap_or_else(PoisonError::into_inner).take();
    }
}

/// One step of a [`NativeBackup`], run on the libuv thread pool.
pub struct BackupStep {
    backup: Arc<Mutex<Option<Backup>>>,
    pages: i32,
}

impl Task for BackupStep {
    type Output = std::result::Result<backup::Progress, Error>;
    type JsValue = BackupProgress;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        let mut slot = self.backup.lock().unwrap_or_else(PoisonError::into_inner);
        let progress = match slot.as_mut() {
            Some(backup) => backup.step(self.pages),
            None => Err(Error::QueueClosed),
        };
        if !matches!(progress, Ok(backup::Progress { finished: false, .. })) {
            slot.take();
        }
        Ok(progress)
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> napi::Result<Self::JsValue> {
        let progress = output.map_err(|err| rejection(&env, err))?;
        Ok(BackupProgress { done: progress.done as f64, total: progress.total as f64, finished: progress.finished })
    }
}

/// The options of a page, validated by `lib/page.js`.
#[napi(object)]
pub struct PageArgs {
    pub limit: u32,
    pub offset: f64,
    pub cursor: Option<String>,
    pub with_count: bool,
}

/// The options of `NativeQueue::stream`, validated by `lib/stream.js`.
#[napi(object)]
pub struct StreamOptions {
    pub start_id: f64,
    pub end_id: Option<f64>,
    /// Any whole number from 1: a batch is as large as the rows it finds, never allocated ahead.
    pub batch_size: f64,
    pub correlation_id: Option<String>,
    pub user: Option<String>,
    pub cmd: Option<String>,
}

/// A stream's reader. Its reads run on the libuv thread pool; `lib/stream.js` keeps at most one
/// in flight.
#[napi]
pub struct NativeStream {
    /// `None` once closed, which drops the stream's connection.
    stream: Arc<Mutex<Option<Stream>>>,
}

#[napi]
impl NativeStream {
    /// Resolves to the next batch as a flat JSON array of row values, to `""` when there is
    /// nothing new yet, or to `null` when nothing more can come (past `endId`, or closed).
    #[napi(ts_return_type = "Promise<string | null>")]
    pub fn next(&self) -> AsyncTask<NextBatch> {
        AsyncTask::new(NextBatch { stream: Arc::clone(&self.stream) })
    }

    /// Releases the reader. Waits for a read in flight to finish. Idempotent.
    #[napi]
    pub fn close(&self) {
        self.stream.lock().unwrap_or_else(PoisonError::into_inner).take();
    }
}

/// One read of a [`NativeStream`], run on the libuv thread pool.
pub struct NextBatch {
    stream: Arc<Mutex<Option<Stream>>>,
}

impl Task for NextBatch {
    type Output = std::result::Result<Option<Json>, Error>;
    type JsValue = Option<Json>;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        let mut stream = self.stream.lock().unwrap_or_else(PoisonError::into_inner);
        let next = match stream.as_mut() {
            Some(stream) => stream.read(),
            None => Ok(Next::Finished),
        };
        Ok(next.map(|next| match next {
            Next::Rows(text) => Some(Json(text)),
            Next::CaughtUp => Some(Json(String::new())),
            Next::Finished => None,
        }))
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> napi::Result<Self::JsValue> {
        output.map_err(|err| rejection(&env, err))
    }
}

/// The JavaScript error a failed read rejects with, carrying the same `code` as the errors
/// synchronous calls throw (a task's own error type can only carry napi's status names).
fn rejection(env: &Env, err: Error) -> napi::Error {
    let coded = || -> napi::Result<napi::Error> {
        let mut object = env.create_error(napi::Error::from_reason(err.to_string()))?;
        object.set_named_property("code", err.code())?;
        Ok(napi::Error::from(object.to_unknown()))
    };
    coded().unwrap_or_else(|failed| failed)
}

/// JSON text on its way to JavaScript. Text that is all ASCII (nearly every row) is handed over
/// with `napi_create_string_latin1`, a plain copy into a one-byte string; `_utf8` first decodes
/// the text, which on Bun costs about as much as reading the rows did.
pub struct Json(pub String);

impl ToNapiValue for Json {
    unsafe fn to_napi_value(env: sys::napi_env, value: Json) -> napi::Result<sys::napi_value> {
        let mut string = ptr::null_mut();
        // SAFETY: as this function requires.
        check_status!(unsafe { create_string(env, value.0.as_bytes(), &mut string) })?;
        Ok(string)
    }
}

/// Makes `value` a JavaScript string of `text`, whose bytes that are not UTF-8 read as U+FFFD;
/// returns the Node-API status. Text that is all ASCII (nearly every value) goes over as
/// Latin-1, a plain copy (see [`Json`]).
///
/// # Safety
/// `env` must be that of a Node-API callback in progress.
unsafe fn create_string(env: sys::napi_env, text: &[u8], value: &mut sys::napi_value) -> sys::napi_status {
    // SAFETY: `text` is valid for its length during each call, and ASCII is Latin-1.
    unsafe {
        if text.is_ascii() {
            sys::napi_create_string_latin1(env, text.as_ptr().cast(), text.len() as isize, value)
        } else {
            let text = String::from_utf8_lossy(text);
            sys::napi_create_string_utf8(env, text.as_ptr().cast(), text.len() as isize, value)
        }
    }
}

impl TypeName for Json {
    fn type_name() -> &'static str {
        "String"
    }

    fn value_type() -> ValueType {
        ValueType::String
    }
}

/// A plain Node-API callback, as `napi_create_function` takes it.
type RawCallback = unsafe extern "C" fn(sys::napi_env, sys::napi_callback_info) -> sys::napi_value;

/// The hottest reads, exported as plain Node-API functions that take the queue as their first
/// argument (`rowById(queue, id, makeRow)`). The `#[napi]` method glue tracks borrows on every call, on
/// Node and Bun alike, which costs a measurable part of a whole `retrieveByID` and more than a
/// cache hit costs without it (docs/performance.md). Writes keep the glue: a commit costs far
/// more, and going raw bought nothing measurable there.
const RAW_FUNCTIONS: [(&CStr, RawCallback); 2] = [(c"cachedIdHit", cached_id_hit), (c"rowById", row_by_id)];

/// Adds [`RAW_FUNCTIONS`] to the exports.
#[napi(module_exports)]
pub fn export_raw_functions(exports: Object, env: Env) -> napi::Result<()> {
    for (name, callback) in RAW_FUNCTIONS {
        let mut function = ptr::null_mut();
        // SAFETY: plain Node-API calls on the env and exports object this module is loading
        // with; `name` is NUL-terminated.
        unsafe {
            check_status!(sys::napi_create_function(
                env.raw(),
                name.as_ptr(),
                name.count_bytes() as isize,
                Some(callback),
                ptr::null_mut(),
                &mut function,
            ))?;
            check_status!(sys::napi_set_named_property(env.raw(), exports.raw(), name.as_ptr(), function))?;
        }
    }
    Ok(())
}

/// The `NativeQueue` that a raw callback's first argument wraps, and the `N` arguments after
/// it; `None` unless it got them all.
///
/// # Safety
/// `env` and `info` must be those of a Node-API callback in progress, and the queue must not
/// be used after that callback returns.
unsafe fn queue_and_args<'a, const N: usize>(
    env: sys::napi_env,
    info: sys::napi_callback_info,
) -> Option<(&'a NativeQueue, [sys::napi_value; N])> {
    const MOST: usize = 3;
    const { assert!(N < MOST) };
    let mut argc = MOST;
    let mut argv = [ptr::null_mut(); MOST];
    let mut kind = sys::ValueType::napi_undefined;
    let mut wrapped = ptr::null_mut();
    // SAFETY: `argv` has room for `argc` values. The type tag, stamped by the `#[napi]` class
    // glue, proves `argv[0]` wraps a `NativeQueue` of this addon, which JavaScript keeps alive
    // for the call since it is an argument; its store is only reached through its lock.
    unsafe {
        let ok = sys::Status::napi_ok;
        if sys::napi_get_cb_info(env, info, &mut argc, argv.as_mut_ptr(), ptr::null_mut(), ptr::null_mut()) != ok
            || argc < N + 1
            // Checking the tag of a non-object throws (it converts the value to an object).
            || sys::napi_typeof(env, argv[0], &mut kind) != ok
            || kind != sys::ValueType::napi_object
            || validate_type_tag(env, argv[0], &NativeQueue::type_tag(), "NativeQueue").is_err()
            || sys::napi_unwrap(env, argv[0], &mut wrapped) != ok
            || wrapped.is_null()
        {
            return None;
        }
        Some((&*wrapped.cast::<NativeQueue>(), std::array::from_fn(|i| argv[i + 1])))
    }
}

/// Throws `err` as a JavaScript `Error` whose `code` is its status; returns the null value a
/// callback that threw returns.
///
/// # Safety
/// `env` must be that of a Node-API callback in progress.
unsafe fn throw<S: AsRef<str>>(env: sys::napi_env, err: napi::Error<S>) -> sys::napi_value {
    // SAFETY: as this function requires.
    unsafe { JsError::from(err).throw_into(env) };
    ptr::null_mut()
}

/// `rowById(queue, id, makeRow)`: what `makeRow` returns for event `id`, called with the row's
/// ten values in column order as JavaScript values (see [`row::Cell`]: `data` and `metadata`
/// as their JSON text, to parse), or null when there is no such event. One row this way costs
/// less than as JSON text: JavaScript parses only the two JSON columns, as it would after any
/// SQLite driver, and builds the row with one object literal (docs/performance.md).
unsafe extern "C" fn row_by_id(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    // SAFETY: called by Node-API with its own env and callback info; the queue does not outlive
    // this call.
    let Some((queue, [id, make_row])) =
        (unsafe { queue_and_args(env, info) }).filter(|(_, [_, make_row])| unsafe { is_function(env, *make_row) })
    else {
        let err = napi::Error::new("ERR_INVALID_ARG", "expected a NativeQueue, an id and a function".to_string());
        // SAFETY: `env` is this callback's.
        return unsafe { throw(env, err) };
    };
    // SAFETY: `env` and the values are this callback's.
    unsafe {
        match row_values(env, queue, id) {
            Ok(Some(values)) => {
                let (mut undefined, mut row) = (ptr::null_mut(), ptr::null_mut());
                sys::napi_get_undefined(env, &mut undefined);
                // A throw of `makeRow` (a JSON column that is not JSON) stays pending and
                // reaches the caller as it is; `row` is then null.
                sys::napi_call_function(env, undefined, make_row, values.len(), values.as_ptr(), &mut row);
                row
            }
            Ok(None) => {
                let mut null = ptr::null_mut();
                sys::napi_get_null(env, &mut null);
                null
            }
            Err(err) => throw(env, err),
        }
    }
}

/// # Safety
/// `env` and `value` must be those of a Node-API callback in progress.
unsafe fn is_function(env: sys::napi_env, value: sys::napi_value) -> bool {
    let mut kind = sys::ValueType::napi_undefined;
    // SAFETY: as this function requires.
    (unsafe { sys::napi_typeof(env, value, &mut kind) }) == sys::Status::napi_ok
        && kind == sys::ValueType::napi_function
}

/// Event `id`'s values as JavaScript values, for [`row_by_id`]; `None` when it does not exist.
///
/// # Safety
/// `env` and `id` must be those of a Node-API callback in progress.
unsafe fn row_values(
    env: sys::napi_env,
    queue: &NativeQueue,
    id: sys::napi_value,
) -> Result<Option<[sys::napi_value; schema::COLUMNS.len()]>, napi::Error<String>> {
    let mut number = 0.0;
    // SAFETY: as this function requires.
    check_status!(unsafe { sys::napi_get_value_double(env, id, &mut number) }, "the id must be a number")
        .map_err(owned)?;
    let id = to_id(number).map_err(|err| owned(to_js(err)))?;
    let store = queue.store().map_err(owned)?;
    let found = read::visit_by_id(store.conn(), id, |row| {
        let mut values = [ptr::null_mut(); schema::COLUMNS.len()];
        for (column, value) in values.iter_mut().enumerate() {
            let cell = row::cell(row, column).map_err(|err| owned(to_js(err)))?;
            // SAFETY: as this function requires; the cell's text lives as long as the row.
            check_status!(unsafe { create_cell(env, cell, value) }).map_err(owned)?;
        }
        Ok(values)
    });
    found.map_err(|err| owned(to_js(err)))?.transpose()
}

/// An error with its code as an owned string, whichever kind of code it had.
fn owned<S: AsRef<str>>(err: napi::Error<S>) -> napi::Error<String> {
    napi::Error::new(err.status.as_ref().to_string(), err.reason)
}

/// Makes `value` the JavaScript value of a stored value; returns the Node-API status. An
/// integer beyond 2^53 becomes the nearest double, as `JSON.parse` reads its digits.
///
/// # Safety
/// `env` must be that of a Node-API callback in progress.
unsafe fn create_cell(env: sys::napi_env, cell: row::Cell<'_>, value: &mut sys::napi_value) -> sys::napi_status {
    // SAFETY: as this function requires.
    unsafe {
        match cell {
            row::Cell::Null => sys::napi_get_null(env, value),
            row::Cell::Integer(n) => sys::napi_create_int64(env, n, value),
            row::Cell::Real(f) => sys::napi_create_double(env, f, value),
            row::Cell::Text(text) => create_string(env, text, value),
            row::Cell::Json(text) => create_string(env, text.as_bytes(), value),
            row::Cell::NotJson(bytes) => {
                let mut json = String::new();
                row::write_lossy(&mut json, bytes);
                create_string(env, json.as_bytes(), value)
            }
        }
    }
}

/// `cachedIdHit(queue, id)`: the slot of event `id` when the cache holds it (counted as a
/// hit), else -1 (counting nothing). The hot call of `retrieveByIDCached`. It never throws:
/// on anything but a hit JavaScript calls `cachedById`, which reports errors and counts the
/// miss.
unsafe extern "C" fn cached_id_hit(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    // SAFETY: called by Node-API with its own env and callback info.
    let slot = unsafe { id_hit(env, info) }.map_or(-1, |slot| slot as i32);
    let mut result = ptr::null_mut();
    // SAFETY: as above; on failure `result` stays null, which JavaScript sees as undefined.
    unsafe { sys::napi_create_int32(env, slot, &mut result) };
    result
}

/// # Safety
/// `env` and `info` must be those of a Node-API callback in progress.
unsafe fn id_hit(env: sys::napi_env, info: sys::napi_callback_info) -> Option<u32> {
    // SAFETY: as this function requires; the queue does not outlive this call.
    let (queue, [arg]) = unsafe { queue_and_args(env, info) }?;
    let mut id = 0.0;
    // SAFETY: `arg` is a value of this callback; a non-number leaves a status, not `id`.
    if unsafe { sys::napi_get_value_double(env, arg, &mut id) } != sys::Status::napi_ok {
        return None;
    }
    let id = to_id(id).ok()?;
    queue.store.as_ref()?.lock().unwrap_or_else(PoisonError::into_inner).cached_id_hit(id)
}
