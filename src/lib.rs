//! The N-API surface, and nothing else: each method checks the queue is open, converts its
//! arguments, calls the plain-Rust core, and turns a core error into a JavaScript `Error`
//! whose `code` is the error's stable code. The JavaScript layer (`lib/`) shapes arguments
//! and results; see `lib/queue.js`.

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

// Public only for what the tests in `tests/` and the programs in `examples/` use: the rest,
// the raw SQLite parts above all, is the crate's own.
pub(crate) mod backup;
pub(crate) mod busy;
pub(crate) mod cache;
pub(crate) mod checkpoint;
pub(crate) mod condition;
pub(crate) mod connection;
pub(crate) mod consumer;
pub mod error;
pub mod event;
pub(crate) mod file;
pub(crate) mod hash;
pub(crate) mod idempotency;
pub mod json;
pub(crate) mod jsvalue;
pub(crate) mod lock;
pub(crate) mod maintenance;
pub mod metrics;
pub mod page;
pub(crate) mod pending;
pub mod pg;
pub(crate) mod pieces;
pub mod read;
pub mod row;
pub(crate) mod rowset;
pub mod schema;
pub(crate) mod statement;
pub mod store;
pub(crate) mod stream;
pub(crate) mod streams;
pub(crate) mod transfer;
pub mod version;
pub(crate) mod writer;

use std::collections::HashMap;
use std::ffi::CStr;
use std::ptr;
use std::sync::atomic::{AtomicI64, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use napi::bindgen_prelude::{
    validate_type_tag, AsyncTask, Either, Either3, JsObjectValue, JsValue, Object, ObjectFinalize, ToNapiValue,
    TypeName, TypeTag, ValueType,
};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{check_status, sys, Env, JsError, Status, Task};
use napi_derive::napi;
use tokio::sync::Mutex as AsyncMutex;

use crate::backup::Backup;
use crate::cache::{CacheConfig, Lookup};
use crate::consumer::{Acquired, Claim, Member, Partition};
use crate::error::Error;
use crate::metrics::WriteKind;
use crate::page::{PageOptions, Query};
use crate::pg::config::PgConfig;
use crate::pg::listen::Listener;
use crate::pg::pool::Pool;
use crate::pg::read::ReadSql;
use crate::pg::schema::Names;
use crate::pg::stream::PgStream;
use crate::pg::write::{Inherited, PgBackend};
use crate::store::{Config, Store, MEMORY};
use crate::stream::{Filter, Next, Stream};
use crate::writer::{Backend, ConsumerAt, Request, SqliteBackend, Write, Writer};

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
/// of a miss (in pieces); see `src/cache.rs`.
fn to_found(lookup: Option<Lookup>) -> Option<Either3<u32, Json, Vec<Json>>> {
    lookup.map(|found| match found {
        Lookup::Hit(slot) => Either3::A(slot),
        Lookup::Miss(pieces) => match to_text(pieces) {
            Either::A(text) => Either3::B(text),
            Either::B(pieces) => Either3::C(pieces),
        },
    })
}

/// A read's text for JavaScript (see `src/pieces.rs`): one string, as nearly always, or an
/// array of the pieces.
fn to_text(mut pieces: Vec<String>) -> Either<Json, Vec<Json>> {
    match pieces.len() {
        1 => Either::A(Json(pieces.pop().unwrap_or_default())),
        _ => Either::B(pieces.into_iter().map(Json).collect()),
    }
}

/// The longest string the runtime can create, in UTF-16 code units (`buffer.constants.
/// MAX_STRING_LENGTH`): no read hands over more in one string. Called once, as the addon loads.
#[napi]
pub fn set_max_string(units: f64) {
    if units.is_finite() && units >= 1.0 {
        pieces::set_max_string(units as usize);
    }
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

/// The constants the JavaScript layer shares with the core, defined here once; `lib/constants.js`
/// reads them when the package loads.
#[napi(object, object_from_js = false)]
pub struct Constants {
    /// The columns of a row, in the order every read sends their values.
    pub columns: Vec<&'static str>,
    /// The columns that hold JSON, which a row carries parsed.
    pub json_columns: Vec<&'static str>,
    /// The values of the `synchronous` option.
    pub synchronous: Vec<&'static str>,
    pub max_page_limit: u32,
    pub max_cache_size: u32,
    pub max_busy_timeout: u32,
    pub defaults: Defaults,
}

/// What an option left out means.
#[napi(object, object_from_js = false)]
pub struct Defaults {
    pub db_name: &'static str,
    pub wal: bool,
    pub busy_timeout: u32,
    pub reset: bool,
    pub cache: CacheOptions,
    /// A page's `limit`.
    pub page_limit: u32,
    /// A stream's `batchSize`.
    pub batch_size: u32,
}

#[napi]
pub fn constants() -> Constants {
    let config = Config::new(store::DEFAULT_PATH);
    // The casts are of small constants, which fit.
    Constants {
        columns: schema::COLUMNS.to_vec(),
        json_columns: row::json_columns().collect(),
        synchronous: store::SYNCHRONOUS.to_vec(),
        max_page_limit: page::MAX_LIMIT as u32,
        max_cache_size: cache::MAX_SIZE as u32,
        max_busy_timeout: store::MAX_BUSY_TIMEOUT_MS,
        defaults: Defaults {
            db_name: store::DEFAULT_PATH,
            wal: config.wal,
            busy_timeout: config.busy_timeout_ms,
            reset: config.reset,
            cache: CacheOptions {
                enabled: config.cache.enabled,
                max_size: config.cache.max_size as u32,
                ttl: config.cache.ttl.as_millis() as f64,
            },
            page_limit: page::DEFAULT_LIMIT as u32,
            batch_size: stream::DEFAULT_BATCH_SIZE as u32,
        },
    }
}

/// The longest `idempotencyKey`, in UTF-16 code units, so that JavaScript validates against it.
#[napi]
pub fn idempotency_key_max_length() -> u32 {
    idempotency::MAX_KEY_LENGTH as u32
}

/// How long a consumer's lease lasts unrenewed, in milliseconds; JavaScript renews it more often.
#[napi]
pub fn consumer_lease_ms() -> u32 {
    consumer::LEASE_MS as u32
}

/// The system clock in milliseconds since the Unix epoch, for consumer leases.
fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
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

    pub(crate) fn shared(&self) -> Result<&Arc<Mutex<Store>>> {
        self.store.as_ref().ok_or_else(|| to_js(Error::QueueClosed))
    }

    /// The store, locked. Uncontended unless a stream of a `:memory:` store is reading a
    /// batch. Nothing panics while holding the lock, and a SQLite transaction cut short rolls
    /// back, so a poisoned lock still guards a usable store.
    fn store(&self) -> Result<MutexGuard<'_, Store>> {
        self.locked().map_err(to_js)
    }

    /// [`NativeQueue::store`], with the core's error.
    fn locked(&self) -> Result<MutexGuard<'_, Store>, Error> {
        Ok(self.store.as_ref().ok_or(Error::QueueClosed)?.lock().unwrap_or_else(PoisonError::into_inner))
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

    /// Stores the payload of a `store` (`batch` false) or `storeBulk` call whose events may carry
    /// `expectedVersion` or `idempotencyKey`; see [`checked_reply`] for what it returns.
    #[napi(ts_return_type = "number | string")]
    pub fn append_checked(&self, payload: String, batch: bool) -> Result<Either<f64, Json>> {
        let mut store = self.store()?;
        let kind = if batch { WriteKind::Batch } else { WriteKind::Single };
        let checked = store.append_checked(&payload, kind);
        checked_reply(&store, checked)
    }

    /// `appendChecked` for the store of ready pending event `pending_id`, claimed in the same
    /// transaction; null (nothing stored) when it was no longer ready.
    #[napi(ts_return_type = "number | string | null")]
    pub fn append_pending_checked(&self, pending_id: f64, payload: String) -> Result<Option<Either<f64, Json>>> {
        let pending_id = to_id(pending_id).map_err(to_js)?;
        let mut store = self.store()?;
        match store.append_pending_checked(pending_id, &payload) {
            Ok(None) => Ok(None),
            Ok(Some(checked)) => checked_reply(&store, Ok(checked)).map(Some),
            Err(err) => checked_reply(&store, Err(err)).map(Some),
        }
    }

    /// `getStreamVersion`.
    #[napi]
    pub fn stream_version(&self, correlation_id: String) -> Result<f64> {
        self.store()?.stream_version(&correlation_id).map(|v| v as f64).map_err(to_js)
    }

    /// Takes a consumer's lease for `token`; returns its position, or the owner token of the
    /// reader holding it. `dead`: owners JavaScript found gone, whose leases are free.
    #[napi(ts_return_type = "number | string")]
    pub fn consumer_acquire(
        &self,
        name: String,
        member: u32,
        size: u32,
        token: String,
        dead: Vec<String>,
    ) -> Result<Either<f64, String>> {
        let store = self.store()?;
        store.streams_ready().map_err(to_js)?;
        let claim = Claim { at: Member { name: &name, member }, size, token: &token, now: now_ms(), dead: &dead };
        match consumer::acquire(store.conn(), &claim).map_err(to_js)? {
            Acquired::Position(position) => Ok(Either::A(position as f64)),
            Acquired::Busy(owner) => Ok(Either::B(owner)),
        }
    }

    /// Stores a consumer's position and renews its lease; `ERR_CONSUMER_BUSY` once `token` lost it.
    #[napi]
    pub fn consumer_commit(&self, name: String, member: u32, token: String, position: f64) -> Result<()> {
        let position = to_id(position).map_err(to_js)?;
        let at = Member { name: &name, member };
        consumer::commit(self.store()?.conn(), &at, &token, position, now_ms()).map_err(to_js)
    }

    /// Renews a consumer's lease; false once `token` lost it.
    #[napi]
    pub fn consumer_renew(&self, name: String, member: u32, token: String) -> Result<bool> {
        let at = Member { name: &name, member };
        consumer::renew(self.store()?.conn(), &at, &token, now_ms()).map_err(to_js)
    }

    #[napi]
    pub fn consumer_release(&self, name: String, member: u32, token: String) -> Result<()> {
        let at = Member { name: &name, member };
        consumer::release(self.store()?.conn(), &at, &token).map_err(to_js)
    }

    /// The position stored for a consumer, or null when its name was never used.
    #[napi]
    pub fn consumer_position(&self, name: String, member: u32) -> Result<Option<f64>> {
        let store = self.store()?;
        store.streams_ready().map_err(to_js)?;
        let at = Member { name: &name, member };
        Ok(consumer::position(store.conn(), &at).map_err(to_js)?.map(|p| p as f64))
    }

    /// `getConsumers()` as JSON text.
    #[napi(ts_return_type = "string")]
    pub fn consumers(&self) -> Result<Json> {
        let store = self.store()?;
        store.streams_ready().map_err(to_js)?;
        let list = consumer::list(store.conn()).map_err(to_js)?;
        // Serializing strings and integers cannot fail.
        Ok(Json(serde_json::to_string(&list).unwrap_or_default()))
    }

    /// `resetConsumer`; returns null, or the owner token of a reader that holds it (see
    /// `consumerAcquire`).
    #[napi]
    pub fn reset_consumer(&self, name: String, position: f64, dead: Vec<String>) -> Result<Option<String>> {
        let position = to_id(position).map_err(to_js)?;
        let store = self.store()?;
        store.streams_ready().map_err(to_js)?;
        consumer::reset(store.conn(), &name, position, now_ms(), &dead).map_err(to_js)
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

    /// Runs a read on the store. Its error is thrown as [`rejection`] makes it, with the `id`
    /// of a row that cannot be read.
    fn read<T>(&self, env: &Env, read: impl FnOnce(&mut Store) -> Result<T, Error>) -> Result<T, napi::Error> {
        self.locked().and_then(|mut store| read(&mut store)).map_err(|err| rejection(env, err))
    }

    /// Throws the error the reads of rows give event `id`, if they give one: for `retrieveByID`,
    /// once JavaScript could not parse a value `rowById` handed over (see `row::cells`).
    #[napi]
    pub fn check_row(&self, env: Env, id: f64) -> Result<(), napi::Error> {
        self.read(&env, |store| read::write_by_id(&mut String::new(), store.conn(), to_id(id)?).map(|_| ()))
    }

    #[napi(ts_return_type = "string | null")]
    pub fn last(&self, env: Env) -> Result<Option<Json>, napi::Error> {
        self.read(&env, |store| Ok(read::last(store.conn())?.map(Json)))
    }

    /// Reads of many rows return their text in pieces; see [`to_text`].
    #[napi(ts_return_type = "string | string[]")]
    pub fn by_correlation(&self, env: Env, correlation_id: String) -> Result<Either<Json, Vec<Json>>, napi::Error> {
        self.read(&env, |store| read::by_correlation(store.conn(), &correlation_id).map(to_text))
    }

    #[napi(ts_return_type = "string | string[]")]
    pub fn children(&self, env: Env, id: f64) -> Result<Either<Json, Vec<Json>>, napi::Error> {
        self.read(&env, |store| read::children(store.conn(), to_id(id)?).map(to_text))
    }

    #[napi(ts_return_type = "string | string[] | null")]
    pub fn lineage(&self, env: Env, id: f64) -> Result<Option<Either<Json, Vec<Json>>>, napi::Error> {
        self.read(&env, |store| Ok(read::lineage(store.conn(), to_id(id)?)?.map(to_text)))
    }

    /// The largest id stored, or `null`: where a replay that starts now ends.
    #[napi]
    pub fn newest_id(&self) -> Result<Option<f64>> {
        read::newest_id(self.store()?.conn()).map(|id| id.map(|id| id as f64)).map_err(to_js)
    }

    /// Up to `limit` rows with `from <= id` (and `id < until` when given), in id order, as
    /// [`RowParts`]: the batches `cycleThrough` replays. A batch may end early (see
    /// `src/pieces.rs`), which one more value after its parts (`true`) says.
    #[napi(ts_return_type = "Array<string | ArrayBuffer | true>")]
    pub fn range(&self, env: Env, from: f64, until: Option<f64>, limit: u32) -> Result<RowParts, napi::Error> {
        self.read(&env, |store| {
            let end = until.map(to_id).transpose()?.map_or(i64::MAX, |u| u.saturating_sub(1));
            let ids = to_id(from)?..=end;
            let batch = Filter::default().read(store.conn(), ids, i64::from(limit), &pieces::Limits::current())?;
            let cut = batch.cut;
            Ok(RowParts { sets: vec![batch.finish()], cut })
        })
    }

    /// One page, as the text described in `src/page.rs` and its rows' cells, in [`RowParts`].
    fn page(&self, env: &Env, query: Query<'_>, options: PageArgs) -> Result<RowParts, napi::Error> {
        self.read(env, |store| {
            let offset = to_id(options.offset)?;
            let cursor = options.cursor.as_deref();
            let limit = i64::from(options.limit);
            let options = PageOptions { limit, offset, cursor, with_count: options.with_count };
            page::read(store.conn(), query, &options).map(|sets| RowParts { sets, cut: false })
        })
    }

    #[napi(ts_return_type = "Array<string | ArrayBuffer>")]
    pub fn page_by_correlation(
        &self,
        env: Env,
        correlation_id: String,
        options: PageArgs,
    ) -> Result<RowParts, napi::Error> {
        self.page(&env, Query::Correlation(&correlation_id), options)
    }

    #[napi(ts_return_type = "Array<string | ArrayBuffer>")]
    pub fn page_of_children(&self, env: Env, id: f64, options: PageArgs) -> Result<RowParts, napi::Error> {
        let id = to_id(id).map_err(|err| rejection(&env, err))?;
        self.page(&env, Query::Children(id), options)
    }

    #[napi(ts_return_type = "Array<string | ArrayBuffer>")]
    pub fn page_by_user(&self, env: Env, user: String, options: PageArgs) -> Result<RowParts, napi::Error> {
        self.page(&env, Query::User(&user), options)
    }

    #[napi(ts_return_type = "Array<string | ArrayBuffer>")]
    pub fn page_by_cmd(&self, env: Env, cmd: String, options: PageArgs) -> Result<RowParts, napi::Error> {
        self.page(&env, Query::Cmd(&cmd), options)
    }

    /// `start` and `end` may be infinite; NaN matches nothing.
    #[napi(ts_return_type = "Array<string | ArrayBuffer>")]
    pub fn page_in_time_range(
        &self,
        env: Env,
        start: f64,
        end: f64,
        options: PageArgs,
    ) -> Result<RowParts, napi::Error> {
        self.page(&env, Query::TimeRange(start, end), options)
    }

    /// A reader of this store's events; see [`NativeStream`].
    #[napi]
    pub fn stream(&self, env: Env, options: StreamOptions) -> Result<NativeStream> {
        let start = to_id(options.start_id).map_err(to_js)?;
        let end = options.end_id.map(to_id).transpose().map_err(to_js)?;
        let partition = options.group_size.map(|size| Partition { member: options.group_member.unwrap_or(0), size });
        let filter = Filter { correlation_id: options.correlation_id, user: options.user, cmd: options.cmd, partition };
        let batch_size = to_id(options.batch_size).map_err(to_js)?;
        let stream = Stream::new(self.shared()?, filter, start, end, batch_size);
        report_native_memory(&env, STREAM_FOOTPRINT);
        Ok(NativeStream { stream: Arc::new(Mutex::new(Some(stream))) })
    }

    #[napi(ts_return_type = "number | string | string[] | null")]
    pub fn cached_by_id(&self, env: Env, id: f64) -> Result<Option<Either3<u32, Json, Vec<Json>>>, napi::Error> {
        self.read(&env, |store| store.cached_by_id(to_id(id)?).map(to_found))
    }

    #[napi(ts_return_type = "number | string | string[] | null")]
    pub fn cached_transaction(
        &self,
        env: Env,
        correlation_id: String,
    ) -> Result<Option<Either3<u32, Json, Vec<Json>>>, napi::Error> {
        self.read(&env, |store| store.cached_transaction(correlation_id).map(to_found))
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
        let filter =
            Filter { correlation_id: filter.correlation_id, user: filter.user, cmd: filter.cmd, partition: None };
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

/// The JavaScript function a writer thread hands each group's replies to: one call per group,
/// which does not keep the event loop alive by itself (see [`NativeWriter::hold`]).
type RepliesFn = ThreadsafeFunction<Json, napi::bindgen_prelude::Unknown<'static>, Json, Status, false, true>;

/// The writer thread of an async queue (`openQueue`; see `src/writer.rs` and
/// `lib/sqlite-backend.js`): writes are submitted here one call at a time, and come back
/// committed, a group at a time, through the `onReplies` function.
#[napi(custom_finalize)]
pub struct NativeWriter {
    /// `None` once closed.
    writer: Option<Writer>,
    /// Shared with the thread, which calls it; this side refs and unrefs it. `None` once closed.
    replies: Option<Arc<RepliesFn>>,
    /// What the writer's own connection holds outside the JavaScript heap, reported to the
    /// engine while it is open (see [`NATIVE_FOOTPRINT`]); 0 on `:memory:`, where the writer
    /// shares the queue's.
    footprint: i64,
}

impl ObjectFinalize for NativeWriter {
    fn finalize(self, env: Env) -> napi::Result<()> {
        if self.writer.is_some() {
            report_native_memory(&env, -self.footprint);
        }
        Ok(())
    }
}

#[napi]
impl NativeWriter {
    /// Starts the writer of `queue`'s file: on a connection of its own, or for `:memory:` on the
    /// queue's own store, the only one that holds its data.
    #[napi(constructor, ts_args_type = "queue: NativeQueue, onReplies: (replies: string) => void")]
    pub fn new(env: Env, queue: &NativeQueue, on_replies: RepliesFn) -> Result<NativeWriter> {
        let shared = queue.shared()?;
        let config = shared.lock().unwrap_or_else(PoisonError::into_inner).config().clone();
        let (store, footprint) = if config.path == MEMORY {
            (Arc::clone(shared), 0)
        } else {
            // The queue opened the file first and has already reset it if asked to; the cached
            // reads are the queue's, so the writer's connection keeps no cache of its own.
            let cache = CacheConfig { enabled: false, ..config.cache };
            (
                Arc::new(Mutex::new(Store::open(Config { reset: false, cache, ..config }).map_err(to_js)?)),
                NATIVE_FOOTPRINT,
            )
        };
        let writer = NativeWriter::start(SqliteBackend(store), on_replies, footprint)?;
        report_native_memory(&env, footprint);
        Ok(writer)
    }

    /// Starts the writer of a PostgreSQL queue, on the queue's pool.
    #[napi(factory, ts_args_type = "queue: NativePg, onReplies: (replies: string) => void")]
    pub fn postgres(queue: &NativePg, on_replies: RepliesFn) -> Result<NativeWriter> {
        let backend = PgBackend::new(queue.pool.clone(), &queue.names, Arc::clone(&queue.inherited));
        NativeWriter::start(backend, on_replies, 0)
    }

    fn start(backend: impl Backend, on_replies: RepliesFn, footprint: i64) -> Result<NativeWriter> {
        let replies = Arc::new(on_replies);
        let deliver = Arc::clone(&replies);
        let writer = Writer::spawn(backend, move |text| {
            // Refused only while the environment shuts down, when nobody awaits the replies.
            deliver.call(Json(text), ThreadsafeFunctionCallMode::NonBlocking);
        })
        .map_err(to_js)?;
        Ok(NativeWriter { writer: Some(writer), replies: Some(replies), footprint })
    }

    fn submit(&self, request: Request) -> Result<()> {
        let writer = self.writer.as_ref().ok_or_else(|| to_js(Error::QueueClosed))?;
        writer.submit(request).map_err(to_js)
    }

    /// Submits the payloads (see `src/event.rs`) of `store` and `storeBulk` calls, one per
    /// line (see [`Write::lines`]): one crossing for the calls a turn of the event loop made.
    /// Each call's reply is its first id.
    #[napi]
    pub fn write(&self, lines: String) -> Result<()> {
        let writer = self.writer.as_ref().ok_or_else(|| to_js(Error::QueueClosed))?;
        writer.submit_all(Write::lines(&lines).map(Request::Write)).map_err(to_js)
    }

    /// Asks for the write metrics; the reply is `getMetrics()`'s object.
    #[napi]
    pub fn metrics(&self) -> Result<()> {
        self.submit(Request::Metrics)
    }

    /// `NativeQueue.consumerAcquire` on the writer's connection; the reply is its result.
    #[napi]
    pub fn consumer_acquire(
        &self,
        name: String,
        member: u32,
        size: u32,
        token: String,
        dead: Vec<String>,
    ) -> Result<()> {
        let at = ConsumerAt { name, member };
        self.submit(Request::ConsumerAcquire { at, size, token, now: now_ms(), dead })
    }

    /// `NativeQueue.consumerCommit` on the writer's connection; the reply is `null`.
    #[napi]
    pub fn consumer_commit(&self, name: String, member: u32, token: String, position: f64) -> Result<()> {
        let position = to_id(position).map_err(to_js)?;
        let at = ConsumerAt { name, member };
        self.submit(Request::ConsumerCommit { at, token, position, now: now_ms() })
    }

    /// `NativeQueue.consumerRenew` on the writer's connection; the reply is its result.
    #[napi]
    pub fn consumer_renew(&self, name: String, member: u32, token: String) -> Result<()> {
        self.submit(Request::ConsumerRenew { at: ConsumerAt { name, member }, token, now: now_ms() })
    }

    /// `NativeQueue.consumerRelease` on the writer's connection; the reply is `null`.
    #[napi]
    pub fn consumer_release(&self, name: String, member: u32, token: String) -> Result<()> {
        self.submit(Request::ConsumerRelease { at: ConsumerAt { name, member }, token })
    }

    /// `NativeQueue.resetConsumer` on the writer's connection; the reply is its result.
    #[napi]
    pub fn reset_consumer(&self, name: String, position: f64, dead: Vec<String>) -> Result<()> {
        let position = to_id(position).map_err(to_js)?;
        self.submit(Request::ResetConsumer { name, position, now: now_ms(), dead })
    }

    /// Closes the writer once the writes submitted are committed; the reply, `null`, comes after
    /// the file is closed. Idempotent.
    #[napi]
    pub fn close(&mut self, env: Env) {
        // Dropping the handle submits the close; the thread keeps the replies function until
        // it has delivered the last reply.
        if self.writer.take().is_some() {
            report_native_memory(&env, -self.footprint);
        }
        self.replies.take();
    }

    /// Whether the replies function keeps the event loop alive: JavaScript holds it while
    /// replies are due, so that a program awaiting a write does not exit before it resolves,
    /// and lets go when none are, so that an idle queue never keeps a program running.
    #[napi]
    pub fn hold(&self, env: Env, busy: bool) -> Result<()> {
        let Some(replies) = &self.replies else { return Ok(()) };
        replies.handle.with_read_aborted(|aborted| {
            if aborted {
                return Ok(());
            }
            // SAFETY: on the JavaScript thread of the environment the function was created in,
            // while it is alive: not aborted, and not released, as this object holds a reference.
            let status = unsafe {
                if busy {
                    sys::napi_ref_threadsafe_function(env.raw(), replies.raw())
                } else {
                    sys::napi_unref_threadsafe_function(env.raw(), replies.raw())
                }
            };
            check_status!(status).map_err(|err| napi::Error::new("ERR_NAPI", err.reason.clone()))
        })
    }
}

/// JSON text of a report the core built. Serialising plain structs of numbers and strings
/// cannot fail; should it, the caller gets `null` rather than a crash.
fn to_json_text(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

/// What JavaScript gets of an append with stream conditions: the first id when every event was
/// stored; otherwise JSON text, [`store::Checked::to_json`] when some were repeats, or
/// `{"conflict":{…}}` (see [`version::Conflict`]) when an expected version did not hold, for
/// JavaScript to throw with its fields. A number spares the common case a `JSON.parse`.
fn checked_reply(store: &Store, checked: std::result::Result<store::Checked, Error>) -> Result<Either<f64, Json>> {
    match checked {
        Ok(checked) if checked.duplicates.is_empty() => Ok(Either::A(checked.first_id as f64)),
        Ok(checked) => checked.to_json(store.conn()).map(|text| Either::B(Json(text))).map_err(to_js),
        Err(Error::VersionConflict(conflict)) => {
            Ok(Either::B(Json(format!(r#"{{"conflict":{}}}"#, conflict.to_json()))))
        }
        Err(err) => Err(to_js(err)),
    }
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
    /// A consumer group member's share of the events only: its member number and the group size.
    pub group_member: Option<u32>,
    pub group_size: Option<u32>,
}

/// What an open stream is reported to hold outside the JavaScript heap, for the reason
/// [`NATIVE_FOOTPRINT`] is: a stream dropped unfinished is released only when collected. It
/// holds its own connection (a few hundred KB once it has read) and two file descriptors;
/// descriptors run out first, and reporting half this left Node collecting too late to keep
/// 2,000 dropped streams under `ulimit -n 256` without forced collections.
const STREAM_FOOTPRINT: i64 = 1 << 20;

/// A stream's reader. Its reads run on the libuv thread pool; `lib/stream.js` keeps at most one
/// in flight. Collected unclosed (its stream was dropped unfinished), it closes its connection.
#[napi(custom_finalize)]
pub struct NativeStream {
    /// `None` once closed, which drops the stream's connection.
    stream: Arc<Mutex<Option<Stream>>>,
}

impl NativeStream {
    /// Drops the reader, once; true the time it did.
    fn release(&self) -> bool {
        self.stream.lock().unwrap_or_else(PoisonError::into_inner).take().is_some()
    }
}

impl ObjectFinalize for NativeStream {
    fn finalize(self, env: Env) -> napi::Result<()> {
        let open = match self.stream.try_lock() {
            Ok(mut stream) => stream.take().is_some(),
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner().take().is_some(),
            // A read in flight on the thread pool: the reader drops when it ends, with the last
            // reference to it. Not closed: `lib/stream.js` closes a reader only once its read
            // has settled, and reads no more after.
            Err(TryLockError::WouldBlock) => true,
        };
        if open {
            report_native_memory(&env, -STREAM_FOOTPRINT);
        }
        Ok(())
    }
}

#[napi]
impl NativeStream {
    /// Resolves to the next batch as a set of rows ([`RowParts`]), to `""` when there is
    /// nothing new yet, or to `null` when nothing more can come (past `endId`, or closed).
    #[napi(ts_return_type = "Promise<Array<string | ArrayBuffer> | '' | null>")]
    pub fn next(&self) -> AsyncTask<NextBatch> {
        AsyncTask::new(NextBatch { stream: Arc::clone(&self.stream) })
    }

    /// The id the reader has read past (see [`Stream::position`]); null once closed. Waits for a
    /// read in flight: call it after one resolves.
    #[napi]
    pub fn position(&self) -> Option<f64> {
        let stream = self.stream.lock().unwrap_or_else(PoisonError::into_inner);
        stream.as_ref().map(|s| s.position() as f64)
    }

    /// Releases the reader. Waits for a read in flight to finish. Idempotent.
    #[napi]
    pub fn close(&self, env: Env) {
        if self.release() {
            report_native_memory(&env, -STREAM_FOOTPRINT);
        }
    }
}

/// One read of a [`NativeStream`], run on the libuv thread pool.
pub struct NextBatch {
    stream: Arc<Mutex<Option<Stream>>>,
}

impl Task for NextBatch {
    type Output = std::result::Result<Option<Either<Json, RowParts>>, Error>;
    type JsValue = Option<Either<Json, RowParts>>;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        let mut stream = self.stream.lock().unwrap_or_else(PoisonError::into_inner);
        let next = match stream.as_mut() {
            Some(stream) => stream.read(),
            None => Ok(Next::Finished),
        };
        Ok(next.map(|next| match next {
            Next::Rows(set) => Some(Either::B(RowParts { sets: vec![set], cut: false })),
            Next::CaughtUp => Some(Either::A(Json(String::new()))),
            Next::Finished => None,
        }))
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> napi::Result<Self::JsValue> {
        output.map_err(|err| rejection(&env, err))
    }
}

/// The JavaScript error a failed read rejects with or throws, carrying the same `code` as the
/// errors synchronous calls throw (a task's own error type can only carry napi's status names),
/// and the `id` of the row it is about, when it is about one.
fn rejection(env: &Env, err: Error) -> napi::Error {
    let coded = || -> napi::Result<napi::Error> {
        let mut object = env.create_error(napi::Error::from_reason(err.to_string()))?;
        object.set_named_property("code", err.code())?;
        if let Some(id) = err.row_id() {
            object.set_named_property("id", id as f64)?;
        }
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
        // SAFETY: `env` is the one this conversion was called with (as the trait requires).
        check_status!(unsafe { create_string(env, value.0.as_bytes(), &mut string) })?;
        Ok(string)
    }
}

/// Rows on their way to JavaScript (see `src/rowset.rs`): one array of each set's text and
/// cells (an `ArrayBuffer` of `f64`), in order, then `true` when a replay's batch was cut short.
pub struct RowParts {
    sets: Vec<(String, Vec<f64>)>,
    cut: bool,
}

impl ToNapiValue for RowParts {
    unsafe fn to_napi_value(env: sys::napi_env, value: RowParts) -> napi::Result<sys::napi_value> {
        let mut array = ptr::null_mut();
        let length = value.sets.len() * 2 + usize::from(value.cut);
        // SAFETY: `env` is the one this conversion was called with (as the trait requires);
        // every pointer handed over is valid for the call.
        check_status!(unsafe { sys::napi_create_array_with_length(env, length, &mut array) })?;
        let mut at = 0;
        let mut push = |element: sys::napi_value| {
            // SAFETY: as above; `array` is the array just created.
            let status = unsafe { sys::napi_set_element(env, array, at, element) };
            at += 1;
            check_status!(status)
        };
        for (text, cells) in value.sets {
            let mut string = ptr::null_mut();
            // SAFETY: as above.
            check_status!(unsafe { create_string(env, text.as_bytes(), &mut string) })?;
            push(string)?;
            let bytes = cells.len() * std::mem::size_of::<f64>();
            let (mut buffer, mut data) = (ptr::null_mut(), ptr::null_mut());
            // SAFETY: as above. The new buffer holds `bytes` bytes at `data`, which the cells
            // fill: they cannot overlap memory JavaScript has just allocated.
            unsafe {
                check_status!(sys::napi_create_arraybuffer(env, bytes, &mut data, &mut buffer))?;
                if bytes > 0 {
                    ptr::copy_nonoverlapping(cells.as_ptr().cast::<u8>(), data.cast::<u8>(), bytes);
                }
            }
            push(buffer)?;
        }
        if value.cut {
            let mut yes = ptr::null_mut();
            // SAFETY: as above.
            check_status!(unsafe { sys::napi_get_boolean(env, true, &mut yes) })?;
            push(yes)?;
        }
        Ok(array)
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

impl TypeName for RowParts {
    fn type_name() -> &'static str {
        "Array"
    }

    fn value_type() -> ValueType {
        ValueType::Object
    }
}

/// A plain Node-API callback, as `napi_create_function` takes it.
type RawCallback = unsafe extern "C" fn(sys::napi_env, sys::napi_callback_info) -> sys::napi_value;

/// The hottest reads, exported as plain Node-API functions that take the queue as their first
/// argument (`rowById(queue, id, makeRow)`). The `#[napi]` method glue tracks borrows on every call, on
/// Node and Bun alike, which costs a noticeable share of a whole `retrieveByID`, and more than
/// a cache hit costs without it. Writes keep the glue: a commit costs far more, and going raw
/// bought nothing measurable there.
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
/// `env` and `info` must be those of a Node-API callback in progress. The queue must not be
/// used after that callback returns, nor while JavaScript runs (see below).
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
    // for the call since it is an argument. A shared reference to it is sound because nothing
    // can take the queue mutably while it is used. Only the `#[napi]` glue of a method that
    // takes `&mut self` (`close`) does that, and only when JavaScript calls it, on the one
    // JavaScript thread: that thread is inside this callback until it returns, and the
    // callback runs no JavaScript while it uses the queue (the caller's promise), so no such
    // call can re-enter. Other threads never reach the `NativeQueue`, only the store its `Arc`
    // shares with streams. Bypassing the glue skips its run-time borrow tracking, which is
    // what these functions save.
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
/// as their JSON text, for it to parse), or null when there is no such event. One row this way
/// costs less than as JSON text: JavaScript parses only the two JSON columns, as it does after
/// any SQLite driver, and builds the row with one object literal (docs/performance.md). A row
/// that cannot be read throws as the other reads throw (`ERR_CORRUPT_ROW` with its `id`).
unsafe extern "C" fn row_by_id(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    // The queue is used only in `row_values`, which runs no JavaScript, and its reference ends
    // with this block, before `makeRow` runs.
    let (values, make_row) = {
        // SAFETY: called by Node-API with its own env and callback info.
        let args = unsafe { queue_and_args(env, info) };
        // SAFETY: `env` and the argument are this callback's.
        let Some((queue, [id, make_row])) = args.filter(|(_, [_, f])| unsafe { is_function(env, *f) }) else {
            let err = napi::Error::new("ERR_INVALID_ARG", "expected a NativeQueue, an id and a function".to_string());
            // SAFETY: `env` is this callback's.
            return unsafe { throw(env, err) };
        };
        // SAFETY: `env` and `id` are this callback's; the queue is used as `queue_and_args` allows.
        (unsafe { row_values(env, queue, id) }, make_row)
    };
    let mut result = ptr::null_mut();
    // SAFETY: `env` and the values are this callback's.
    unsafe {
        match values {
            Ok(Some(values)) => {
                let mut undefined = ptr::null_mut();
                sys::napi_get_undefined(env, &mut undefined);
                // A throw of `makeRow` stays pending and reaches the caller as it is; `result`
                // is then null.
                sys::napi_call_function(env, undefined, make_row, values.len(), values.as_ptr(), &mut result);
            }
            Ok(None) => {
                sys::napi_get_null(env, &mut result);
            }
            Err(err) => return throw(env, err),
        }
    }
    result
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
/// A failure is thrown as the other reads throw it ([`rejection`]).
///
/// # Safety
/// `env` and `id` must be those of a Node-API callback in progress. It runs no JavaScript.
unsafe fn row_values(
    env: sys::napi_env,
    queue: &NativeQueue,
    id: sys::napi_value,
) -> Result<Option<[sys::napi_value; schema::COLUMNS.len()]>, napi::Error> {
    let mut number = 0.0;
    // SAFETY: as this function requires.
    check_status!(unsafe { sys::napi_get_value_double(env, id, &mut number) }, "the id must be a number")?;
    let env = Env::from_raw(env);
    let id = to_id(number).map_err(|err| rejection(&env, err))?;
    let store = queue.locked().map_err(|err| rejection(&env, err))?;
    let found = read::visit_by_id(store.conn(), id, |cells| {
        let mut values = [ptr::null_mut(); schema::COLUMNS.len()];
        for (value, cell) in values.iter_mut().zip(cells) {
            // SAFETY: as this function requires; the cell's text lives as long as the row.
            check_status!(unsafe { create_cell(env.raw(), *cell, value) })?;
        }
        Ok(values)
    });
    found.map_err(|err| rejection(&env, err))?.transpose()
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
            row::Cell::Text(text) | row::Cell::Json(text) => create_string(env, text, value),
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
    // SAFETY: as this function requires; the queue does not outlive this call, and reading a
    // number and the cache run no JavaScript.
    let (queue, [arg]) = unsafe { queue_and_args(env, info) }?;
    let mut id = 0.0;
    // SAFETY: `arg` is a value of this callback; a non-number leaves a status, not `id`.
    if unsafe { sys::napi_get_value_double(env, arg, &mut id) } != sys::Status::napi_ok {
        return None;
    }
    let id = to_id(id).ok()?;
    queue.store.as_ref()?.lock().unwrap_or_else(PoisonError::into_inner).cached_id_hit(id)
}

/// `openQueue`'s defaults and limits on PostgreSQL.
#[napi(object)]
pub struct PgDefaults {
    pub schema: String,
    pub pool_size: u32,
    pub connect_timeout: u32,
    pub max_pool_size: u32,
    /// The longest schema name, in bytes.
    pub max_schema_length: u32,
}

#[napi]
pub fn pg_defaults() -> PgDefaults {
    use pg::config::*;
    // The casts are of small constants, which fit.
    PgDefaults {
        schema: DEFAULT_SCHEMA.into(),
        pool_size: DEFAULT_POOL_SIZE as u32,
        connect_timeout: DEFAULT_CONNECT_TIMEOUT_MS,
        max_pool_size: MAX_POOL_SIZE as u32,
        max_schema_length: MAX_IDENTIFIER as u32,
    }
}

/// An error of an `async fn`, whose rejection napi makes with a code of its own (`Status`): the
/// stable code leads the message instead, `CODE: message`, and `lib/pg-backend.js` moves it to
/// `err.code` (and a trailing SQLSTATE to `err.pgCode`).
fn to_js_async(err: Error) -> napi::Error {
    napi::Error::from_reason(format!("{}: {err}", err.code()))
}

/// The options `openQueue({ url })` hands to the core, after validating them (`lib/options.js`).
#[napi(object)]
pub struct PgOptions {
    pub url: String,
    pub schema: String,
    pub pool_size: u32,
    /// Milliseconds.
    pub connect_timeout: u32,
    /// Only the keys the user gave; the defaults are applied in Rust.
    pub indexes: HashMap<String, bool>,
}

/// The reads of a PostgreSQL queue (`lib/pg-backend.js`), each a Promise that never blocks the
/// JavaScript thread; its writes go through [`NativeWriter::postgres`] on the same pool.
#[napi]
pub struct NativePg {
    pool: Pool,
    names: Names,
    sql: Arc<ReadSql>,
    inherited: Arc<Inherited>,
}

/// Connects, creates the schema's tables when missing and applies the index options: the
/// queue of `openQueue({ url })`.
#[napi]
pub async fn pg_open(options: PgOptions) -> napi::Result<NativePg> {
    let config = PgConfig {
        url: options.url,
        schema: options.schema,
        pool_size: options.pool_size as usize,
        connect_timeout: Duration::from_millis(options.connect_timeout.into()),
        indexes: options.indexes,
    };
    let pool = Pool::new(&config).map_err(to_js_async)?;
    let names = Names::new(&config.schema);
    let mut conn = pool.get().await.map_err(to_js_async)?;
    pg::schema::ensure(&mut conn, &names, &config.indexes).await.map_err(to_js_async)?;
    drop(conn);
    Ok(NativePg { pool, sql: Arc::new(ReadSql::new(&names)), names, inherited: Arc::default() })
}

#[napi]
impl NativePg {
    /// A connection of the pool, with the read statements.
    async fn conn(&self) -> napi::Result<(pg::pool::Pooled, Arc<ReadSql>)> {
        Ok((self.pool.get().await.map_err(to_js_async)?, Arc::clone(&self.sql)))
    }

    #[napi(ts_return_type = "Promise<string | null>")]
    pub async fn by_id(&self, id: f64) -> napi::Result<Option<Json>> {
        let id = to_id(id).map_err(to_js_async)?;
        let (mut conn, sql) = self.conn().await?;
        Ok(pg::read::by_id(&mut conn, &sql, id).await.map_err(to_js_async)?.map(Json))
    }

    #[napi(ts_return_type = "Promise<string | null>")]
    pub async fn last(&self) -> napi::Result<Option<Json>> {
        let (mut conn, sql) = self.conn().await?;
        Ok(pg::read::last(&mut conn, &sql).await.map_err(to_js_async)?.map(Json))
    }

    #[napi(ts_return_type = "Promise<string | string[]>")]
    pub async fn by_correlation(&self, correlation_id: String) -> napi::Result<Either<Json, Vec<Json>>> {
        let (mut conn, sql) = self.conn().await?;
        Ok(to_text(pg::read::by_correlation(&mut conn, &sql, &correlation_id).await.map_err(to_js_async)?))
    }

    #[napi(ts_return_type = "Promise<string | string[]>")]
    pub async fn children(&self, id: f64) -> napi::Result<Either<Json, Vec<Json>>> {
        let id = to_id(id).map_err(to_js_async)?;
        let (mut conn, sql) = self.conn().await?;
        Ok(to_text(pg::read::children(&mut conn, &sql, id).await.map_err(to_js_async)?))
    }

    #[napi(ts_return_type = "Promise<string | string[] | null>")]
    pub async fn lineage(&self, id: f64) -> napi::Result<Option<Either<Json, Vec<Json>>>> {
        let id = to_id(id).map_err(to_js_async)?;
        let (mut conn, sql) = self.conn().await?;
        Ok(pg::read::lineage(&mut conn, &sql, id).await.map_err(to_js_async)?.map(to_text))
    }

    /// `[newest id, count]` of a transaction: what a cached one is checked against.
    #[napi]
    pub async fn transaction_mark(&self, correlation_id: String) -> napi::Result<Vec<f64>> {
        let (mut conn, sql) = self.conn().await?;
        let (newest, count) =
            pg::read::transaction_mark(&mut conn, &sql, &correlation_id).await.map_err(to_js_async)?;
        Ok(vec![newest as f64, count as f64])
    }

    #[napi]
    pub async fn indexes(&self) -> napi::Result<Vec<String>> {
        let mut conn = self.pool.get().await.map_err(to_js_async)?;
        pg::schema::present_indexes(&mut conn, &self.names).await.map_err(to_js_async)
    }

    /// The correlation id event `id` inherited from its parent, once, right after its write
    /// (see [`Inherited`]); `null` for any other event.
    #[napi]
    pub fn correlation_id(&self, id: f64) -> Result<Option<String>> {
        Ok(self.inherited.take(to_id(id).map_err(to_js)?))
    }

    /// Closes the idle connections; the ones in use close when their reads end.
    #[napi]
    pub fn close(&self) {
        self.pool.close();
    }
}

/// The ordered reads of a PostgreSQL queue: pages, streams, and the listener that wakes
/// followers (`src/pg/page.rs`, `src/pg/stream.rs`, `src/pg/listen.rs`).
#[napi]
impl NativePg {
    async fn page(&self, query: Query<'_>, options: PageArgs) -> napi::Result<RowParts> {
        let offset = to_id(options.offset).map_err(to_js_async)?;
        let cursor = options.cursor.as_deref();
        let options = PageOptions { limit: i64::from(options.limit), offset, cursor, with_count: options.with_count };
        let mut conn = self.pool.get().await.map_err(to_js_async)?;
        pg::page::read(&mut conn, &self.names, query, &options)
            .await
            .map(|sets| RowParts { sets, cut: false })
            .map_err(to_js_async)
    }

    #[napi(ts_return_type = "Promise<Array<string | ArrayBuffer>>")]
    pub async fn page_by_correlation(&self, correlation_id: String, options: PageArgs) -> napi::Result<RowParts> {
        self.page(Query::Correlation(&correlation_id), options).await
    }

    #[napi(ts_return_type = "Promise<Array<string | ArrayBuffer>>")]
    pub async fn page_of_children(&self, id: f64, options: PageArgs) -> napi::Result<RowParts> {
        self.page(Query::Children(to_id(id).map_err(to_js_async)?), options).await
    }

    #[napi(ts_return_type = "Promise<Array<string | ArrayBuffer>>")]
    pub async fn page_by_user(&self, user: String, options: PageArgs) -> napi::Result<RowParts> {
        self.page(Query::User(&user), options).await
    }

    #[napi(ts_return_type = "Promise<Array<string | ArrayBuffer>>")]
    pub async fn page_by_cmd(&self, cmd: String, options: PageArgs) -> napi::Result<RowParts> {
        self.page(Query::Cmd(&cmd), options).await
    }

    #[napi(ts_return_type = "Promise<Array<string | ArrayBuffer>>")]
    pub async fn page_in_time_range(&self, start: f64, end: f64, options: PageArgs) -> napi::Result<RowParts> {
        self.page(Query::TimeRange(start, end), options).await
    }

    /// A reader of this queue's events; see [`NativePgStream`].
    #[napi]
    pub fn stream(&self, options: StreamOptions) -> Result<NativePgStream> {
        let start = to_id(options.start_id).map_err(to_js)?;
        let end = options.end_id.map(to_id).transpose().map_err(to_js)?;
        let partition = options.group_size.map(|size| Partition { member: options.group_member.unwrap_or(0), size });
        let filter = Filter { correlation_id: options.correlation_id, user: options.user, cmd: options.cmd, partition };
        let batch_size = to_id(options.batch_size).map_err(to_js)?;
        let stream = PgStream::new(self.pool.clone(), &self.names, filter, start, end, batch_size);
        Ok(NativePgStream {
            position: Arc::new(AtomicI64::new(stream.position())),
            stream: Arc::new(AsyncMutex::new(Some(stream))),
        })
    }

    /// Listens for the commits of every process on this queue's schema: `onWake` is called
    /// after them (see `src/pg/listen.rs`), without keeping the event loop alive.
    #[napi(ts_args_type = "onWake: (nothing: string) => void")]
    pub fn listen(&self, on_wake: RepliesFn) -> Result<NativePgListener> {
        let listener = Listener::start(&self.pool, &self.names, move || {
            // Refused only while the environment shuts down, when nobody follows.
            on_wake.call(Json(String::new()), ThreadsafeFunctionCallMode::NonBlocking);
        })
        .map_err(to_js)?;
        Ok(NativePgListener { listener })
    }
}

/// The consumers' reads of a PostgreSQL queue (`src/pg/consumer.rs`), each a Promise; their
/// writes go through the writer (`NativeWriter`), as on SQLite.
#[napi]
impl NativePg {
    #[napi]
    pub async fn consumer_position(&self, name: String, member: u32) -> napi::Result<Option<f64>> {
        let mut conn = self.pool.get().await.map_err(to_js_async)?;
        let at = Member { name: &name, member };
        let position = pg::consumer::position(&mut conn, &self.names, &at).await.map_err(to_js_async)?;
        Ok(position.map(|p| p as f64))
    }

    /// `getConsumers()` as JSON text.
    #[napi(ts_return_type = "Promise<string>")]
    pub async fn consumers(&self) -> napi::Result<Json> {
        let mut conn = self.pool.get().await.map_err(to_js_async)?;
        let list = pg::consumer::list(&mut conn, &self.names).await.map_err(to_js_async)?;
        // Serializing strings and integers cannot fail.
        Ok(Json(serde_json::to_string(&list).unwrap_or_default()))
    }

    #[napi]
    pub async fn stream_version(&self, correlation_id: String) -> napi::Result<f64> {
        let mut conn = self.pool.get().await.map_err(to_js_async)?;
        let version = pg::consumer::stream_version(&mut conn, &self.names, &correlation_id).await;
        Ok(version.map_err(to_js_async)? as f64)
    }
}

/// A stream's reader on PostgreSQL: `next()` resolves to a batch's set of rows, `''` when caught up,
/// `null` when nothing more can come (or once closed). It holds no connection between batches.
#[napi]
pub struct NativePgStream {
    /// `None` once closed.
    stream: Arc<AsyncMutex<Option<PgStream>>>,
    /// The stream's position after its last read, readable while a read is in flight.
    position: Arc<AtomicI64>,
}

#[napi]
impl NativePgStream {
    #[napi(ts_return_type = "Promise<Array<string | ArrayBuffer> | '' | null>")]
    pub async fn next(&self) -> napi::Result<Option<Either<Json, RowParts>>> {
        let mut guard = self.stream.lock().await;
        let Some(stream) = guard.as_mut() else { return Ok(None) };
        let next = stream.read().await;
        self.position.store(stream.position(), AtomicOrdering::Release);
        Ok(match next.map_err(to_js_async)? {
            Next::Rows(set) => Some(Either::B(RowParts { sets: vec![set], cut: false })),
            Next::CaughtUp => Some(Either::A(Json(String::new()))),
            Next::Finished => None,
        })
    }

    /// The id the stream has read past (see [`PgStream::position`]).
    #[napi]
    pub fn position(&self) -> f64 {
        self.position.load(AtomicOrdering::Acquire) as f64
    }

    /// Ends the stream: a read in flight finishes, and every later one resolves to `null`.
    #[napi]
    pub fn close(&self) {
        let stream = Arc::clone(&self.stream);
        if let Ok(runtime) = pg::runtime() {
            runtime.spawn(async move { stream.lock().await.take() });
        }
    }
}

/// A running listener (see [`NativePg::listen`]).
#[napi]
pub struct NativePgListener {
    listener: Listener,
}

#[napi]
impl NativePgListener {
    /// Stops listening and closes its connection. Idempotent.
    #[napi]
    pub fn close(&self) {
        self.listener.stop();
    }
}
