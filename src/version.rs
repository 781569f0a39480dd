//! Stream versions: the version of a stream (the events sharing one correlation id) is how many
//! events it holds, and an event may carry the `expectedVersion` its stream must be at for it
//! to be appended (optimistic concurrency).
//!
//! Counting a stream's events on every check would cost as much as the stream is long, so each
//! stream's count is kept in `eventlite_stream_versions`: `version` events up to the id
//! `counted_to`. Events of the stream after that id, whoever appended them (this library's
//! plain appends, or EventLite on the same file, which knows nothing of the counts), are
//! counted when the version is read: `idx_correlation_id` finds them directly. A read that
//! finds more than [`FOLD_LIMIT`] of them counts them into the row (an append with
//! `expectedVersion` in its own write transaction, `getStreamVersion` in one of its own), so a
//! version costs an index lookup plus at most [`FOLD_LIMIT`] index entries, whatever the
//! stream's length, and each event is counted into a row once. Writing the row on every append
//! instead would cost each append one more page to commit: a fifth of a single `store()`.
//! Appends without `expectedVersion` do nothing of this: no trigger runs on insert, and they
//! cost what they did.
//!
//! Deletes and correlation-id updates by other programs of events a row counted are followed
//! by triggers (which run only on those, never on insert). Dropping the `queue` table
//! (EventLite's reset) drops the triggers too; `crate::streams` notices and starts the counts
//! again.

use std::fmt;

use serde::Serialize;

use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::store::WriteTxn;

/// Events of a stream after its counted mark that a version read accepts counting one by one;
/// past it, they are counted into the stream's row. Small, so that the count costs little
/// next to a commit; large enough that the row is written once per that many appends.
pub const FOLD_LIMIT: i64 = 32;

pub const CREATE: &str = "
CREATE TABLE IF NOT EXISTS eventlite_stream_versions (
    correlation_id TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    counted_to INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS eventlite_stream_versions_delete AFTER DELETE ON queue
WHEN OLD.correlation_id IS NOT NULL
BEGIN
    UPDATE eventlite_stream_versions SET version = version - 1
    WHERE correlation_id = OLD.correlation_id AND OLD.id <= counted_to;
END;
CREATE TRIGGER IF NOT EXISTS eventlite_stream_versions_update AFTER UPDATE OF correlation_id ON queue
WHEN OLD.correlation_id IS NOT NEW.correlation_id
BEGIN
    UPDATE eventlite_stream_versions SET version = version - 1
    WHERE correlation_id = OLD.correlation_id AND OLD.id <= counted_to;
    UPDATE eventlite_stream_versions SET version = version + 1
    WHERE correlation_id = NEW.correlation_id AND NEW.id <= counted_to;
END;
";

/// The triggers [`CREATE`] makes: when the `queue` table is dropped they go with it.
pub const TRIGGERS: [&str; 2] = ["eventlite_stream_versions_delete", "eventlite_stream_versions_update"];

/// One snapshot (one statement) of a stream: the count in its row, and the events after the
/// row's mark.
const READ: &str = "SELECT COALESCE(v.version, 0),
    (SELECT COUNT(*) FROM queue WHERE correlation_id = ?1 AND id > COALESCE(v.counted_to, 0))
    FROM (SELECT 1) LEFT JOIN eventlite_stream_versions v ON v.correlation_id = ?1";
const NEWEST: &str = "SELECT MAX(id) FROM queue WHERE correlation_id = ?1";
const COUNTED: &str = "INSERT INTO eventlite_stream_versions (correlation_id, version, counted_to) VALUES (?1, ?2, ?3)
    ON CONFLICT (correlation_id) DO UPDATE SET version = excluded.version, counted_to = excluded.counted_to";

/// A stream at another version than an event expected: what `ERR_VERSION_CONFLICT` carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Conflict {
    pub correlation_id: String,
    pub expected_version: i64,
    pub actual_version: i64,
    /// The event's position in its call (always 0 for a single event).
    pub index: usize,
}

impl Conflict {
    /// JSON text for JavaScript. Serializing strings and integers cannot fail.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "event {}: stream {:?} is at version {}, not the expected {}; nothing was stored",
            self.index, self.correlation_id, self.actual_version, self.expected_version
        )
    }
}

/// What [`read`] found of a stream.
struct Snapshot {
    /// Its events up to its newest.
    version: i64,
    /// How many of them lie after its row's mark.
    uncounted: i64,
}

fn read(conn: &Connection, correlation_id: &str) -> Result<Snapshot> {
    let mut stmt = conn.cached(READ)?;
    stmt.bind(1, correlation_id)?;
    // `FROM (SELECT 1)` makes one row for any stream, a new one included.
    let [counted, uncounted] = stmt.integers()?.unwrap_or_default();
    Ok(Snapshot { version: counted + uncounted, uncounted })
}

/// The version of a stream, counting a long backlog into its row first. Must run inside a
/// write transaction.
fn read_and_fold(conn: &Connection, correlation_id: &str) -> Result<i64> {
    let found = read(conn, correlation_id)?;
    if found.uncounted > FOLD_LIMIT {
        let mut newest = conn.cached(NEWEST)?;
        newest.bind(1, correlation_id)?;
        // More than FOLD_LIMIT events of the stream were found in this transaction.
        let [newest] = newest.integers()?.unwrap_or_default();
        conn.cached(COUNTED)?.execute(|b| {
            b.push_text(Some(correlation_id))?;
            b.push(Some(found.version))?;
            b.push(Some(newest))
        })?;
    }
    Ok(found.version)
}

/// `getStreamVersion`: the version of a stream, read outside any transaction. When many of
/// its events are not counted into its row yet, they are, in a write transaction of its own;
/// a file that cannot be written is counted as it is.
pub fn stream_version(conn: &Connection, correlation_id: &str) -> Result<i64> {
    let found = read(conn, correlation_id)?;
    if found.uncounted <= FOLD_LIMIT || conn.is_readonly(rusqlite::MAIN_DB)? {
        return Ok(found.version);
    }
    let txn = WriteTxn::begin(conn)?;
    let version = read_and_fold(conn, correlation_id)?;
    txn.commit()?;
    Ok(version)
}

/// Checks an event's `expectedVersion` against its stream, inside the write transaction that
/// appends it (so no other writer can move the stream in between), after the events before it
/// in the same call were inserted: they count. `index` is the event's position in its call. An
/// event without a correlation id (its own, or its parent's) cannot expect a version.
pub fn check(conn: &Connection, index: usize, correlation_id: Option<&str>, expected: i64) -> Result<()> {
    let Some(correlation_id) = correlation_id else {
        return Err(Error::InvalidEvent(format!(
            "event {index}: expectedVersion needs a correlation id (its own, or inherited from an existing parent through causationId)"
        )));
    };
    let actual = read_and_fold(conn, correlation_id)?;
    if actual == expected {
        Ok(())
    } else {
        Err(Error::VersionConflict(Box::new(Conflict {
            correlation_id: correlation_id.to_string(),
            expected_version: expected,
            actual_version: actual,
            index,
        })))
    }
}

/// Forgets every count: the log was reset.
pub fn reset(conn: &Connection) -> Result<()> {
    conn.execute_batch("DELETE FROM eventlite_stream_versions")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> Connection {
        let conn = Connection::new(rusqlite::Connection::open_in_memory().unwrap());
        conn.execute_batch(crate::schema::CREATE_TABLE).unwrap();
        conn.execute_batch("CREATE INDEX idx_correlation_id ON queue(correlation_id)").unwrap();
        conn.execute_batch(CREATE).unwrap();
        conn
    }

    fn append(conn: &Connection, correlation_id: Option<&str>, count: usize) -> i64 {
        for _ in 0..count {
            conn.execute("INSERT INTO queue (datetime, cmd, correlation_id) VALUES (0, 'e', ?1)", [correlation_id])
                .unwrap();
        }
        conn.last_insert_rowid()
    }

    fn version(conn: &Connection, correlation_id: &str) -> i64 {
        read(conn, correlation_id).unwrap().version
    }

    fn row(conn: &Connection, correlation_id: &str) -> Option<(i64, i64)> {
        conn.query_row(
            "SELECT version, counted_to FROM eventlite_stream_versions WHERE correlation_id = ?1",
            [correlation_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .ok()
    }

    /// Versions as the count of each stream's events says, whatever was counted into rows.
    fn assert_exact(conn: &Connection) {
        let mut stmt = conn
            .prepare("SELECT correlation_id, COUNT(*) FROM queue WHERE correlation_id IS NOT NULL GROUP BY 1")
            .unwrap();
        let counts: Vec<(String, i64)> =
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(|r| r.unwrap()).collect();
        for (correlation_id, count) in counts {
            assert_eq!(version(conn, &correlation_id), count, "stream {correlation_id}");
        }
    }

    #[test]
    fn versions_count_the_events_before_and_after_the_mark() {
        let conn = memory();
        assert_eq!(version(&conn, "a"), 0, "a stream never written is at 0");
        append(&conn, Some("a"), FOLD_LIMIT as usize + 1);
        append(&conn, Some("b"), 2);
        append(&conn, None, 2);
        assert_eq!((version(&conn, "a"), version(&conn, "b")), (FOLD_LIMIT + 1, 2));
        assert_eq!(read_and_fold(&conn, "a").unwrap(), FOLD_LIMIT + 1);
        assert_eq!(row(&conn, "a"), Some((FOLD_LIMIT + 1, FOLD_LIMIT + 1)));
        assert_eq!((read_and_fold(&conn, "b").unwrap(), row(&conn, "b")), (2, None), "a short backlog stays");
        append(&conn, Some("a"), 2);
        assert_eq!(version(&conn, "a"), FOLD_LIMIT + 3);
        assert_exact(&conn);
    }

    #[test]
    fn deletes_and_updates_by_other_programs_are_followed() {
        let conn = memory();
        let n = FOLD_LIMIT as usize + 1;
        append(&conn, Some("a"), n);
        append(&conn, Some("b"), n);
        read_and_fold(&conn, "a").unwrap();
        read_and_fold(&conn, "b").unwrap();
        append(&conn, Some("a"), 2);
        // Counted ones (ids up to 2n) and uncounted ones (after), of both streams.
        conn.execute_batch(&format!("DELETE FROM queue WHERE id IN (1, {n}, {}, {})", n + 1, 2 * n + 1)).unwrap();
        assert_exact(&conn);
        conn.execute_batch("UPDATE queue SET correlation_id = 'b' WHERE id = 2").unwrap();
        conn.execute_batch("UPDATE queue SET correlation_id = NULL WHERE id = 3").unwrap();
        conn.execute_batch(&format!("UPDATE queue SET correlation_id = 'c' WHERE id = {}", 2 * n + 2)).unwrap();
        conn.execute_batch(&format!("UPDATE queue SET correlation_id = 'a' WHERE id = {}", n + 2)).unwrap();
        assert_exact(&conn);
        assert_eq!((version(&conn, "b"), version(&conn, "c")), (n as i64 - 1, 1));
        conn.execute_batch("DELETE FROM queue").unwrap();
        assert_eq!((version(&conn, "a"), version(&conn, "b"), version(&conn, "c")), (0, 0, 0));
    }

    #[test]
    fn check_compares_with_every_event_of_the_stream() {
        let conn = memory();
        append(&conn, Some("a"), 10);
        check(&conn, 0, Some("a"), 10).unwrap();
        let err = check(&conn, 7, Some("a"), 3).unwrap_err();
        assert_eq!(err.code(), "ERR_VERSION_CONFLICT");
        let Error::VersionConflict(conflict) = err else { unreachable!() };
        assert_eq!(
            *conflict,
            Conflict { correlation_id: "a".into(), expected_version: 3, actual_version: 10, index: 7 }
        );
        assert_eq!(check(&conn, 0, None, 0).unwrap_err().code(), "ERR_INVALID_EVENT");
    }

    #[test]
    fn reading_a_long_uncounted_stream_counts_it_into_its_row() {
        let conn = memory();
        append(&conn, Some("a"), FOLD_LIMIT as usize);
        append(&conn, Some("b"), 1);
        assert_eq!(stream_version(&conn, "a").unwrap(), FOLD_LIMIT);
        assert_eq!(row(&conn, "a"), None, "a short backlog is counted, not folded");
        let last = append(&conn, Some("a"), 1);
        assert_eq!(stream_version(&conn, "a").unwrap(), FOLD_LIMIT + 1);
        assert_eq!(row(&conn, "a"), Some((FOLD_LIMIT + 1, last)));
        assert_exact(&conn);
    }

    #[test]
    fn a_stream_after_its_mark_is_found_through_the_correlation_index() {
        let conn = memory();
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {READ}"))
            .unwrap()
            .query_map(["a"], |r| r.get::<_, String>(3))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert!(plan.iter().any(|step| step.contains("idx_correlation_id (correlation_id=? AND rowid>?)")), "{plan:?}");
    }

    #[test]
    fn reset_forgets_the_counts() {
        let conn = memory();
        append(&conn, Some("a"), FOLD_LIMIT as usize + 1);
        read_and_fold(&conn, "a").unwrap();
        conn.execute_batch("DROP TABLE queue").unwrap();
        conn.execute_batch(crate::schema::CREATE_TABLE).unwrap();
        conn.execute_batch(CREATE).unwrap();
        reset(&conn).unwrap();
        append(&conn, Some("a"), 1);
        assert_eq!((version(&conn, "a"), row(&conn, "a")), (1, None));
    }
}
