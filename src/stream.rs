//! Reading the log in id order, batch by batch: the one batched reader behind `streamEvents`
//! (a [`Stream`], read on the libuv thread pool) and `cycleThrough` (a [`Filter::read`] per
//! batch on the queue's own connection). Each batch is a keyset step, `id >= next`, so the
//! cost of a batch does not grow with how far into the log it is, and no statement stays open
//! between batches: nothing is held that could block a writer or a checkpoint.

use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use once_cell::sync::Lazy;
use rusqlite::OpenFlags;

use crate::connection::Connection;
use crate::consumer::{Partition, PARTITION_FUNCTION};
use crate::error::Result;
use crate::pieces::Limits;
use crate::row::{select_list, Values};
use crate::rowset::{RowSet, ROW_BYTES};
use crate::store::{self, Store, MEMORY};

/// The rows a stream reads at a time when not told otherwise.
pub const DEFAULT_BATCH_SIZE: i64 = 1000;

/// The optional filters of a stream; they combine with AND.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub correlation_id: Option<String>,
    pub user: Option<String>,
    pub cmd: Option<String>,
    /// Only a consumer group member's share of the events (see [`crate::consumer`]).
    pub partition: Option<Partition>,
}

/// One statement per combination of the filters present (bit 0 correlation id, bit 1 user,
/// bit 2 cmd, bit 3 partition), so that SQLite sees plain equalities and can use
/// `idx_correlation_id`, `idx_user` or `idx_cmd` with the id range. Parameters: `?1`/`?2` the
/// id range, `?3`..`?5` the filters, `?6` the limit, `?7`/`?8` the group size and member.
static BATCH_SQL: Lazy<Vec<String>> = Lazy::new(|| {
    let cols = select_list();
    let partition = format!(" AND {PARTITION_FUNCTION}(correlation_id, ?7) = ?8");
    (0..16)
        .map(|mask| {
            let mut sql = format!("SELECT {cols} FROM queue WHERE id >= ?1 AND id <= ?2");
            let clauses = [" AND correlation_id = ?3", " AND user = ?4", " AND cmd = ?5", &partition];
            for (bit, clause) in clauses.iter().enumerate() {
                if mask & (1 << bit) != 0 {
                    sql.push_str(clause);
                }
            }
            sql.push_str(" ORDER BY id LIMIT ?6");
            sql
        })
        .collect()
});

/// A batch: the rows (see [`crate::rowset`]), and the id of the last.
#[derive(Debug)]
pub struct Batch {
    pub rows: RowSet,
    pub last_id: Option<i64>,
    /// Whether the batch ended before `limit` rows with more possibly to come: it reached
    /// [`Limits::batch`] bytes, or the next row cannot be read (the next batch, which starts
    /// with it, reports why), so that the rows before it are delivered first.
    pub cut: bool,
}

impl Filter {
    /// Reads up to `limit` matching rows with an id in `ids`, in id order, within `limits`.
    pub fn read(&self, conn: &Connection, ids: RangeInclusive<i64>, limit: i64, limits: &Limits) -> Result<Batch> {
        let filters = [&self.correlation_id, &self.user, &self.cmd];
        let mask = filters.iter().enumerate().fold(0, |m, (bit, f)| if f.is_some() { m | 1 << bit } else { m });
        let mask = if self.partition.is_some() { mask | 1 << 3 } else { mask };
        let mut stmt = conn.cached(&BATCH_SQL[mask])?;
        stmt.bind(1, *ids.start())?;
        stmt.bind(2, *ids.end())?;
        for (i, value) in (3..).zip(filters) {
            if let Some(value) = value {
                stmt.bind(i, value.as_str())?;
            }
        }
        stmt.bind(6, limit)?;
        if let Some(Partition { member, size }) = self.partition {
            stmt.bind(7, i64::from(size))?;
            stmt.bind(8, i64::from(member))?;
        }
        let mut rows = stmt.rows();
        let mut batch = Batch::new(limit, limits);
        while !batch.full(limits) {
            let Some(row) = rows.next()? else { break };
            if !batch.push(&row, limits)? {
                break;
            }
        }
        Ok(batch)
    }
}

impl Batch {
    /// An empty batch of up to `limit` rows, to [`push`](Batch::push) rows into.
    pub(crate) fn new(limit: i64, limits: &Limits) -> Batch {
        let capacity = (ROW_BYTES * limit.min(1000) as usize).min(limits.batch);
        Batch { rows: RowSet::new(String::with_capacity(capacity) + "["), last_id: None, cut: false }
    }

    /// Whether the batch reached its byte budget (then it is cut: more may follow).
    pub(crate) fn full(&mut self, limits: &Limits) -> bool {
        self.cut = self.rows.rows > 0 && self.rows.bytes() >= limits.batch;
        self.cut
    }

    /// Adds a row; false when it did not fit (the batch is cut, the row left for the next).
    pub(crate) fn push(&mut self, row: &impl Values, limits: &Limits) -> Result<bool> {
        let set = &mut self.rows;
        let mark = set.mark();
        let written = set.push(row, limits.row);
        // Past what a string may hold, the row goes to the next batch, on its own.
        let overfull = set.rows > 1 && set.text.len() > limits.row;
        match written {
            Ok(id) if !overfull => {
                self.last_id = id;
                Ok(true)
            }
            Err(err) if set.rows == 0 => Err(err),
            _ => {
                set.rollback(mark);
                self.cut = true;
                Ok(false)
            }
        }
    }

    /// The batch's two parts (see [`crate::rowset`]).
    pub fn finish(self) -> (String, Vec<f64>) {
        self.rows.finish("")
    }
}

/// What a stream's next read found.
#[derive(Debug, PartialEq)]
pub enum Next {
    /// A batch of rows, in its two parts (see [`crate::rowset`]).
    Rows((String, Vec<f64>)),
    /// Nothing new yet: a following stream waits and reads again.
    CaughtUp,
    /// Past `end_id`: nothing can ever come.
    Finished,
}

/// Where a stream reads from.
enum Source {
    /// A file: the stream's own read-only connection, opened on the first read (on a pool
    /// thread). WAL lets it read while the queue writes.
    File { path: String, busy_timeout_ms: u32, conn: Option<Connection> },
    /// `:memory:` cannot be opened twice, so the stream reads through the queue's own
    /// connection, taking the lock a batch at a time: a write on the JavaScript thread waits
    /// for at most one batch read.
    Shared(Arc<Mutex<Store>>),
}

impl Source {
    fn with_conn<T>(&mut self, read: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        match self {
            Source::File { path, busy_timeout_ms, conn } => {
                let conn = match conn {
                    Some(conn) => conn,
                    None => conn.insert(open_reader(path, *busy_timeout_ms)?),
                };
                read(conn)
            }
            Source::Shared(store) => read(store.lock().unwrap_or_else(PoisonError::into_inner).conn()),
        }
    }
}

fn open_reader(path: &str, busy_timeout_ms: u32) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open(path, flags)?;
    store::configure(&conn, busy_timeout_ms)?;
    Ok(conn)
}

/// The newest id (0 when the log is empty) and the schema version, read together at the start
/// of each batch.
const NEWEST: &str =
    "SELECT coalesce((SELECT MAX(id) FROM queue), 0), (SELECT schema_version FROM pragma_schema_version)";

/// A stream's reader: its source, its filters, and how far it has read.
pub struct Stream {
    source: Source,
    filter: Filter,
    start_id: i64,
    next_id: i64,
    end_id: i64,
    batch_size: i64,
    limits: Limits,
    seen: Seen,
}

/// Where the log stood at a stream's last read, to notice a reset: the table dropped and
/// created again, ids starting over at 1 below where the stream has read.
struct Seen {
    /// The store's count of resets, shared with it, and its value at the last read.
    resets: Arc<AtomicU64>,
    reset_count: u64,
    schema_version: Option<i64>,
    newest: i64,
}

impl Seen {
    /// Whether the log was reset since the last read; takes note of where it stands now. A
    /// reset by this store is counted. One through another connection shows as a schema change
    /// after which the newest id is lower than before, which appending never causes; a reset
    /// elsewhere followed, before the stream reads again, by more appends than the log held
    /// goes unnoticed.
    fn was_reset(&mut self, newest: i64, schema_version: i64) -> bool {
        let count = self.resets.load(Ordering::Acquire);
        let elsewhere = self.schema_version.is_some_and(|v| v != schema_version) && newest < self.newest;
        let reset = count != self.reset_count || elsewhere;
        (self.reset_count, self.schema_version, self.newest) = (count, Some(schema_version), newest);
        reset
    }
}

impl Stream {
    /// A stream of `store`'s events with `start_id <= id <= end_id` (no end when `None`).
    pub fn new(
        store: &Arc<Mutex<Store>>,
        filter: Filter,
        start_id: i64,
        end_id: Option<i64>,
        batch_size: i64,
    ) -> Stream {
        let guard = store.lock().unwrap_or_else(PoisonError::into_inner);
        let config = guard.config();
        let source = if config.path == MEMORY {
            Source::Shared(Arc::clone(store))
        } else {
            Source::File { path: config.path.clone(), busy_timeout_ms: config.busy_timeout_ms, conn: None }
        };
        let resets = Arc::clone(guard.resets());
        let seen = Seen { reset_count: resets.load(Ordering::Acquire), resets, schema_version: None, newest: 0 };
        Stream {
            source,
            filter,
            start_id,
            next_id: start_id,
            end_id: end_id.unwrap_or(i64::MAX),
            batch_size: batch_size.max(1),
            limits: Limits::current(),
            seen,
        }
    }

    /// The id the stream has read past: every event up to it that passes the filters was in a
    /// batch already returned. A consumer commits it as its position.
    pub fn position(&self) -> i64 {
        self.next_id - 1
    }

    /// Reads the next batch. Each read is bounded by the newest id at its start: every id up
    /// to it is committed (writers are serialised and ids only grow), so when a batch comes
    /// back short the stream moves past that id at once, and a filter that matches rarely
    /// never rescans the rows it already passed, however often a following stream polls.
    /// After a reset the stream starts again from its first id, in the new log.
    pub fn read(&mut self) -> Result<Next> {
        if self.next_id > self.end_id {
            return Ok(Next::Finished);
        }
        let Stream { source, filter, start_id, next_id, end_id, batch_size, limits, seen } = self;
        source.with_conn(|conn| {
            // Both subqueries make one row whatever the log holds.
            let [newest, schema_version] = conn.cached(NEWEST)?.integers()?.unwrap_or_default();
            if seen.was_reset(newest, schema_version) {
                *next_id = *start_id;
            }
            let upper = newest.min(*end_id);
            if upper < *next_id {
                return Ok(Next::CaughtUp);
            }
            let batch = filter.read(conn, *next_id..=upper, *batch_size, limits)?;
            let passed = match batch.last_id {
                Some(last) if batch.rows.rows as i64 == *batch_size || batch.cut => last,
                _ => upper,
            };
            *next_id = passed.saturating_add(1);
            Ok(match batch.rows.rows {
                0 if passed >= *end_id => Next::Finished,
                0 => Next::CaughtUp,
                _ => Next::Rows(batch.finish()),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Config;

    /// Appends events `from..to` by this crate's payload format: user `u{i % 2}`, cmd
    /// `c{i % 3}`, correlation `k{i % 5}`.
    fn append(store: &mut Store, range: std::ops::Range<usize>) {
        let events: Vec<String> = range
            .map(|i| format!(r#"["c{}",{{"i":{i}}},"u{}","",1,"k{}",null,{{}},{i}]"#, i % 3, i % 2, i % 5))
            .collect();
        store.append(&format!("[{}]", events.join(","))).unwrap();
    }

    fn ids((_, cells): &(String, Vec<f64>)) -> Vec<i64> {
        cells.chunks(10).map(|row| row[0] as i64).collect()
    }

    /// Every id the stream yields until it catches up or finishes, batch by batch.
    fn drain(stream: &mut Stream) -> (Vec<Vec<i64>>, Next) {
        let mut batches = Vec::new();
        loop {
            match stream.read().unwrap() {
                Next::Rows(rows) => batches.push(ids(&rows)),
                other => return (batches, other),
            }
        }
    }

    fn shared(config: Config) -> Arc<Mutex<Store>> {
        Arc::new(Mutex::new(Store::open(config).unwrap()))
    }

    #[test]
    fn batches_come_in_id_order_within_the_bounds() {
        let store = shared(Config::new(MEMORY));
        append(&mut store.lock().unwrap(), 0..10);
        let mut stream = Stream::new(&store, Filter::default(), 2, Some(8), 3);
        assert_eq!(drain(&mut stream), (vec![vec![2, 3, 4], vec![5, 6, 7], vec![8]], Next::Finished));
        let mut open_ended = Stream::new(&store, Filter::default(), 0, None, 4);
        assert_eq!(drain(&mut open_ended), (vec![vec![1, 2, 3, 4], vec![5, 6, 7, 8], vec![9, 10]], Next::CaughtUp));
        append(&mut store.lock().unwrap(), 10..12);
        assert_eq!(drain(&mut open_ended), (vec![vec![11, 12]], Next::CaughtUp));
    }

    #[test]
    fn filters_combine_and_rare_matches_are_not_rescanned() {
        let store = shared(Config::new(MEMORY));
        append(&mut store.lock().unwrap(), 0..30);
        // Event id = i + 1: user u1 means i odd, cmd c0 means i % 3 == 0.
        let filter = Filter { user: Some("u1".into()), cmd: Some("c0".into()), ..Filter::default() };
        let mut stream = Stream::new(&store, filter, 0, None, 2);
        let (batches, end) = drain(&mut stream);
        assert_eq!((batches.concat(), end), (vec![4, 10, 16, 22, 28], Next::CaughtUp));
        assert_eq!(stream.next_id, 31, "a short batch moves the stream past every id it looked at");
        let by_correlation = Filter { correlation_id: Some("k2".into()), ..Filter::default() };
        let mut stream = Stream::new(&store, by_correlation, 10, Some(20), 100);
        assert_eq!(drain(&mut stream).0.concat(), vec![13, 18]);
    }

    #[test]
    fn a_batch_ends_early_at_its_byte_budget_and_the_stream_goes_on_after_it() {
        let store = shared(Config::new(MEMORY));
        append(&mut store.lock().unwrap(), 0..7);
        let mut stream = Stream::new(&store, Filter::default(), 0, None, 100);
        // A row of these events is about 110 bytes (80 of them its cells): a batch ends after
        // its third.
        stream.limits.batch = 250;
        let (batches, end) = drain(&mut stream);
        assert_eq!((batches, end), (vec![vec![1, 2, 3], vec![4, 5, 6], vec![7]], Next::CaughtUp));
    }

    #[test]
    fn rows_before_an_unreadable_row_are_delivered_then_the_row_is_an_error() {
        let store = shared(Config::new(MEMORY));
        append(&mut store.lock().unwrap(), 0..6);
        store.lock().unwrap().conn().execute("UPDATE queue SET data = 'hello world' WHERE id = 4", []).unwrap();
        let mut stream = Stream::new(&store, Filter::default(), 0, None, 100);
        let Next::Rows(rows) = stream.read().unwrap() else { panic!("expected rows") };
        assert_eq!(ids(&rows), [1, 2, 3]);
        let err = stream.read().unwrap_err();
        assert_eq!((err.code(), err.row_id()), ("ERR_CORRUPT_ROW", Some(4)));
        // A row too long for a string: the same, once the rows before it are out.
        store.lock().unwrap().conn().execute("UPDATE queue SET data = '{}' WHERE id = 4", []).unwrap();
        let mut stream = Stream::new(&store, Filter::default(), 2, None, 100);
        stream.limits.row = 200;
        store
            .lock()
            .unwrap()
            .conn()
            .execute("UPDATE queue SET data = '\"' || hex(zeroblob(100)) || '\"' WHERE id = 5", [])
            .unwrap();
        let Next::Rows(rows) = stream.read().unwrap() else { panic!("expected rows") };
        assert_eq!(ids(&rows), [2, 3, 4]);
        let err = stream.read().unwrap_err();
        assert_eq!((err.code(), err.row_id()), ("ERR_ROW_TOO_LARGE", Some(5)));
    }

    #[test]
    fn after_a_reset_a_stream_starts_again_in_the_new_log() {
        let dir = std::env::temp_dir().join(format!("eventlite-stream-reset-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("events.sqlite").to_string_lossy().into_owned();
        let store = shared(Config::new(path.clone()));
        append(&mut store.lock().unwrap(), 0..5);
        let mut stream = Stream::new(&store, Filter::default(), 0, None, 10);
        assert_eq!(drain(&mut stream).0.concat(), vec![1, 2, 3, 4, 5]);
        // A reset by this store, followed by more events than the log held: all are seen.
        store.lock().unwrap().reset().unwrap();
        append(&mut store.lock().unwrap(), 0..7);
        assert_eq!(drain(&mut stream).0.concat(), (1..=7).collect::<Vec<_>>());
        // A reset through another connection to the file.
        let mut other = Store::open(Config::new(path)).unwrap();
        other.reset().unwrap();
        append(&mut other, 0..2);
        assert_eq!(drain(&mut stream).0.concat(), vec![1, 2]);
        // Creating an index changes the schema too, but is no reset.
        other.conn().execute_batch("CREATE INDEX test_idx ON queue(user)").unwrap();
        append(&mut other, 2..3);
        assert_eq!(drain(&mut stream).0.concat(), vec![3]);
        drop((stream, other));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_partition_keeps_a_group_members_events_and_the_position_passes_the_others() {
        let store = shared(Config::new(MEMORY));
        append(&mut store.lock().unwrap(), 0..30);
        let mut seen = Vec::new();
        for member in 0..3 {
            let partition = Some(Partition { member, size: 3 });
            let mut stream = Stream::new(&store, Filter { partition, ..Filter::default() }, 0, None, 4);
            let ids = drain(&mut stream).0.concat();
            assert_eq!(stream.position(), 30, "member {member} read past every event");
            for id in &ids {
                // Event id n has correlation id k{(n - 1) % 5}.
                let correlation_id = format!("k{}", (id - 1) % 5);
                assert_eq!(crate::consumer::partition(Some(correlation_id.as_bytes()), 3), member);
            }
            seen.extend(ids);
        }
        seen.sort_unstable();
        assert_eq!(seen, (1..=30).collect::<Vec<_>>(), "the members together see every event once");
    }

    #[test]
    fn a_file_stream_reads_through_its_own_connection() {
        let dir = std::env::temp_dir().join(format!("eventlite-stream-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = shared(Config::new(dir.join("events.sqlite").to_string_lossy().into_owned()));
        append(&mut store.lock().unwrap(), 0..5);
        let mut stream = Stream::new(&store, Filter::default(), 0, None, 10);
        assert!(matches!(stream.source, Source::File { .. }));
        assert_eq!(drain(&mut stream).0, vec![vec![1, 2, 3, 4, 5]]);
        // The queue writes while the stream's connection is open, and the stream sees it.
        append(&mut store.lock().unwrap(), 5..7);
        assert_eq!(drain(&mut stream).0, vec![vec![6, 7]]);
        drop(stream);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
