//! Stream versions: the version of a stream (the events sharing one correlation id) is how many
//! events it holds, and an event may carry the `expectedVersion` its stream must be at for it
//! to be appended (optimistic concurrency).
//!
//! Counting a stream's events on every check would cost as much as the stream is long, so the
//! counts are kept in `eventlite_stream_versions`, exact for every event up to the id in
//! `eventlite_stream_counted` (the *counted* mark). Events after the mark, whoever appended
//! them (this library's plain appends, or EventLite on the same file, which knows nothing of
//! the counts), are counted when a version is read: `idx_correlation_id` finds a stream's events
//! after the mark directly. Once more than [`FOLD_LIMIT`] events lie after the mark, a reader
//! with the write lock folds them into the counts and moves the mark. A version thus costs an
//! index lookup plus at most [`FOLD_LIMIT`] index entries, whatever the stream's length, and each
//! event is folded once. Appends without `expectedVersion` do nothing of this: no trigger runs
//! on insert, and they cost what they did.
//!
//! Deletes and correlation-id updates by other programs of events before the mark are
//! followed by triggers (which run only on those, never on insert). Dropping the `queue` table
//! (EventLite's reset) drops the triggers too; `crate::streams` notices and starts the counts
//! again.

use std::collections::HashMap;
use std::fmt;

use rusqlite::types::ValueRef;
use serde::Serialize;

use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::store::WriteTxn;

/// Events after the counted mark that a version read accepts counting one by one; past it the
/// reader folds them first. Small, because an append with `expectedVersion` on a stream that
/// has all of them scans them all.
pub const FOLD_LIMIT: i64 = 256;

/// Events folded per write transaction when catching up on a long backlog (a file EventLite
/// filled, opened for the first time), so that other writers never wait long for the lock.
pub const FOLD_CHUNK: i64 = 50_000;

pub const CREATE: &str = "
CREATE TABLE IF NOT EXISTS eventlite_stream_versions (
    correlation_id TEXT PRIMARY KEY,
    version INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS eventlite_stream_counted (
    only INTEGER PRIMARY KEY CHECK (only = 1),
    counted_to INTEGER NOT NULL
);
INSERT OR IGNORE INTO eventlite_stream_counted (only, counted_to) VALUES (1, 0);
CREATE TRIGGER IF NOT EXISTS eventlite_stream_versions_delete AFTER DELETE ON queue
WHEN OLD.id <= (SELECT counted_to FROM eventlite_stream_counted)
BEGIN
    UPDATE eventlite_stream_versions SET version = version - 1 WHERE correlation_id = OLD.correlation_id;
END;
CREATE TRIGGER IF NOT EXISTS eventlite_stream_versions_update AFTER UPDATE OF correlation_id ON queue
WHEN OLD.id <= (SELECT counted_to FROM eventlite_stream_counted) AND OLD.correlation_id IS NOT NEW.correlation_id
BEGIN
    UPDATE eventlite_stream_versions SET version = version - 1 WHERE correlation_id = OLD.correlation_id;
    INSERT OR IGNORE INTO eventlite_stream_versions (correlation_id, version)
        SELECT NEW.correlation_id, 0 WHERE NEW.correlation_id IS NOT NULL;
    UPDATE eventlite_stream_versions SET version = version + 1 WHERE correlation_id = NEW.correlation_id;
END;
";

/// The triggers [`CREATE`] makes: when the `queue` table is dropped they go with it.
pub const TRIGGERS: [&str; 2] = ["eventlite_stream_versions_delete", "eventlite_stream_versions_update"];

/// One snapshot (one statement): the stream's version, and how many ids lie after the mark.
const READ: &str = "SELECT
    COALESCE((SELECT version FROM eventlite_stream_versions WHERE correlation_id = ?1), 0)
        + (SELECT COUNT(*) FROM queue WHERE correlation_id = ?1
           AND id > (SELECT counted_to FROM eventlite_stream_counted)),
    COALESCE((SELECT MAX(id) FROM queue), 0) - (SELECT counted_to FROM eventlite_stream_counted)";

/// The events after the mark, oldest first. NOT INDEXED: the walk is by id (the rowid), never
/// along `idx_correlation_id`, which would visit the whole log.
const AFTER_MARK: &str = "SELECT id, correlation_id FROM queue NOT INDEXED
    WHERE id > (SELECT counted_to FROM eventlite_stream_counted) ORDER BY id LIMIT ?1";
const ADD: &str = "INSERT INTO eventlite_stream_versions (correlation_id, version) VALUES (?1, ?2)
    ON CONFLICT (correlation_id) DO UPDATE SET version = version + excluded.version";
const MARK: &str = "UPDATE eventlite_stream_counted SET counted_to = ?1";
const BACKLOG: &str =
    "SELECT COALESCE((SELECT MAX(id) FROM queue), 0) - (SELECT counted_to FROM eventlite_stream_counted)";

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

/// The version of stream `correlation_id` and the backlog after the mark, in one snapshot.
fn read(conn: &Connection, correlation_id: &str) -> Result<(i64, i64)> {
    Ok(conn.prepare_cached(READ)?.query_row([correlation_id], |r| Ok((r.get(0)?, r.get(1)?)))?)
}

/// How many ids lie after the counted mark.
pub fn backlog(conn: &Connection) -> Result<i64> {
    Ok(conn.prepare_cached(BACKLOG)?.query_row([], |r| r.get(0))?)
}

/// Folds up to `limit` events after the mark into the counts and moves the mark past them;
/// returns how many it folded. Must run inside a write transaction.
pub fn fold(conn: &Connection, limit: i64) -> Result<usize> {
    let mut counts: HashMap<String, i64> = HashMap::new();
    let mut last = None;
    let mut folded = 0;
    {
        let mut stmt = conn.prepare_cached(AFTER_MARK)?;
        let mut rows = stmt.query([limit])?;
        while let Some(row) = rows.next()? {
            last = Some(row.get::<_, i64>(0)?);
            folded += 1;
            // TEXT affinity stores every correlation id as text; anything else (a blob written
            // by hand) is no correlation id the API can ask about.
            if let ValueRef::Text(id) = row.get_ref(1)? {
                *counts.entry(String::from_utf8_lossy(id).into_owned()).or_default() += 1;
            }
        }
    }
    let Some(last) = last else { return Ok(0) };
    let mut add = conn.prepare_cached(ADD)?;
    for (correlation_id, count) in &counts {
        add.execute(rusqlite::params![correlation_id, count])?;
    }
    conn.prepare_cached(MARK)?.execute([last])?;
    Ok(folded)
}

/// The version of stream `correlation_id` now: exact, whoever appended. `fold_now` runs the
/// given fold (a write transaction of the caller's) when the backlog is past [`FOLD_LIMIT`].
fn version_with(conn: &Connection, correlation_id: &str, fold_now: impl FnOnce() -> Result<()>) -> Result<i64> {
    let (version, backlog) = read(conn, correlation_id)?;
    if backlog <= FOLD_LIMIT {
        return Ok(version);
    }
    fold_now()?;
    Ok(read(conn, correlation_id)?.0)
}

/// `getStreamVersion`: the version of a stream, read outside any transaction. A long backlog
/// is folded first, in write transactions of its own; a file that cannot be written is counted
/// as it is.
pub fn stream_version(conn: &Connection, correlation_id: &str) -> Result<i64> {
    version_with(conn, correlation_id, || {
        if conn.is_readonly(rusqlite::MAIN_DB)? {
            return Ok(());
        }
        catch_up(conn, FOLD_LIMIT)
    })
}

/// Folds, [`FOLD_CHUNK`] events per write transaction, until at most `keep` events lie after
/// the mark. Outside any transaction.
pub fn catch_up(conn: &Connection, keep: i64) -> Result<()> {
    loop {
        let txn = WriteTxn::begin(conn)?;
        let behind = backlog(conn)?;
        if behind > keep {
            fold(conn, FOLD_CHUNK.min(behind))?;
        }
        txn.commit()?;
        if behind <= FOLD_CHUNK.max(keep) {
            return Ok(());
        }
    }
}

/// Checks an event's `expectedVersion` against its stream, inside the write transaction that
/// appends it (so no other writer can move the stream in between), after the events before it
/// in the same call were inserted: they count. `index` is the event's position in its call.
/// An event without a correlation id (its own, or its parent's) cannot expect a version.
pub fn check(conn: &Connection, index: usize, correlation_id: Option<&str>, expected: i64) -> Result<()> {
    let Some(correlation_id) = correlation_id else {
        return Err(Error::InvalidEvent(format!(
            "event {index}: expectedVersion needs a correlation id (its own, or inherited from an existing parent through causationId)"
        )));
    };
    let actual = version_with(conn, correlation_id, || fold(conn, i64::MAX).map(drop))?;
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

/// Starts counting again from the first event: the log was reset.
pub fn reset(conn: &Connection) -> Result<()> {
    conn.execute_batch("DELETE FROM eventlite_stream_versions; UPDATE eventlite_stream_counted SET counted_to = 0;")?;
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

    fn append(conn: &Connection, correlation_id: Option<&str>, count: usize) {
        for _ in 0..count {
            conn.execute("INSERT INTO queue (datetime, cmd, correlation_id) VALUES (0, 'e', ?1)", [correlation_id])
                .unwrap();
        }
    }

    fn version(conn: &Connection, correlation_id: &str) -> i64 {
        read(conn, correlation_id).unwrap().0
    }

    fn mark(conn: &Connection) -> i64 {
        conn.query_row("SELECT counted_to FROM eventlite_stream_counted", [], |r| r.get(0)).unwrap()
    }

    /// Versions as the count of each stream's events says, whatever was folded.
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
    fn versions_count_events_before_and_after_the_mark() {
        let conn = memory();
        assert_eq!(version(&conn, "a"), 0, "a stream never written is at 0");
        append(&conn, Some("a"), 3);
        append(&conn, Some("b"), 2);
        append(&conn, None, 2);
        assert_eq!((version(&conn, "a"), version(&conn, "b")), (3, 2));
        assert_eq!(fold(&conn, 4).unwrap(), 4);
        assert_eq!(mark(&conn), 4);
        assert_exact(&conn);
        assert_eq!(fold(&conn, i64::MAX).unwrap(), 3);
        assert_eq!(fold(&conn, i64::MAX).unwrap(), 0);
        append(&conn, Some("a"), 1);
        assert_eq!(version(&conn, "a"), 4);
        assert_exact(&conn);
    }

    #[test]
    fn deletes_and_updates_by_other_programs_are_followed() {
        let conn = memory();
        append(&conn, Some("a"), 3);
        append(&conn, Some("b"), 1);
        fold(&conn, i64::MAX).unwrap();
        append(&conn, Some("a"), 2);
        conn.execute_batch("DELETE FROM queue WHERE id IN (1, 5)").unwrap();
        assert_exact(&conn);
        conn.execute_batch("UPDATE queue SET correlation_id = 'b' WHERE id = 2").unwrap();
        conn.execute_batch("UPDATE queue SET correlation_id = NULL WHERE id = 3").unwrap();
        conn.execute_batch("UPDATE queue SET correlation_id = 'c' WHERE id = 6").unwrap();
        assert_exact(&conn);
        assert_eq!((version(&conn, "a"), version(&conn, "b"), version(&conn, "c")), (0, 2, 1));
        conn.execute_batch("DELETE FROM queue").unwrap();
        assert_eq!((version(&conn, "a"), version(&conn, "b"), version(&conn, "c")), (0, 0, 0));
    }

    #[test]
    fn check_counts_the_backlog_and_folds_past_the_limit() {
        let conn = memory();
        append(&conn, Some("a"), FOLD_LIMIT as usize + 10);
        check(&conn, 0, Some("a"), FOLD_LIMIT + 10).unwrap();
        assert_eq!(mark(&conn), FOLD_LIMIT + 10, "the backlog was folded");
        append(&conn, Some("a"), 5);
        check(&conn, 0, Some("a"), FOLD_LIMIT + 15).unwrap();
        assert_eq!(mark(&conn), FOLD_LIMIT + 10, "a short backlog is counted, not folded");
        let err = check(&conn, 7, Some("a"), 3).unwrap_err();
        assert_eq!(err.code(), "ERR_VERSION_CONFLICT");
        let Error::VersionConflict(conflict) = err else { unreachable!() };
        assert_eq!(
            *conflict,
            Conflict { correlation_id: "a".into(), expected_version: 3, actual_version: FOLD_LIMIT + 15, index: 7 }
        );
        assert_eq!(check(&conn, 0, None, 0).unwrap_err().code(), "ERR_INVALID_EVENT");
    }

    #[test]
    fn catching_up_folds_until_the_backlog_is_short() {
        let conn = memory();
        append(&conn, Some("a"), 50);
        catch_up(&conn, 100).unwrap();
        assert_eq!(mark(&conn), 0, "a backlog within the limit stays");
        append(&conn, Some("a"), 100);
        catch_up(&conn, 100).unwrap();
        assert_eq!(mark(&conn), 150);
        assert_eq!(stream_version(&conn, "a").unwrap(), 150);
        assert_exact(&conn);
    }

    #[test]
    fn a_stream_after_the_mark_is_found_through_the_correlation_index() {
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
    fn reset_starts_counting_again() {
        let conn = memory();
        append(&conn, Some("a"), 3);
        fold(&conn, i64::MAX).unwrap();
        conn.execute_batch("DROP TABLE queue").unwrap();
        conn.execute_batch(crate::schema::CREATE_TABLE).unwrap();
        conn.execute_batch(CREATE).unwrap();
        reset(&conn).unwrap();
        append(&conn, Some("a"), 1);
        assert_eq!((version(&conn, "a"), mark(&conn)), (1, 0));
    }
}
