//! Keeping a store healthy and looking inside it: WAL checkpoints, `PRAGMA optimize`, `VACUUM`,
//! the integrity check, and the figures `eventlite inspect` prints. Each is what SQLite itself
//! reports, so that an operator can compare it with SQLite's documentation.

use rusqlite::OptionalExtension;
use serde::Serialize;

use crate::connection::Connection;
use crate::consumer::{self, ConsumerInfo};
use crate::error::Result;
use crate::schema;
use crate::stream::Filter;

/// What `PRAGMA wal_checkpoint(TRUNCATE)` reports.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Checkpointed {
    /// Another connection held a lock the checkpoint needed, so it did not finish.
    pub busy: bool,
    /// Frames in the WAL when the checkpoint started (-1 when the file is not in WAL mode).
    pub wal_frames: i64,
    /// Frames copied back into the database (-1 when not in WAL mode).
    pub checkpointed_frames: i64,
}

/// Copies the WAL back into the database and truncates it to zero bytes, waiting (up to the
/// busy timeout) for readers and writers to let it.
pub fn checkpoint(conn: &Connection) -> Result<Checkpointed> {
    Ok(conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
        Ok(Checkpointed { busy: r.get::<_, i64>(0)? != 0, wal_frames: r.get(1)?, checkpointed_frames: r.get(2)? })
    })?)
}

/// `PRAGMA optimize`: refreshes the planner's statistics where SQLite thinks they are stale.
/// `0x10002` also looks at tables never queried on this connection, which a fresh connection
/// (the command line's) has not.
pub fn optimize(conn: &Connection) -> Result<()> {
    conn.execute_batch("PRAGMA optimize(0x10002)")?;
    Ok(())
}

/// `VACUUM`: rebuilds the file without its free pages.
pub fn vacuum(conn: &Connection) -> Result<()> {
    conn.execute_batch("VACUUM")?;
    Ok(())
}

/// `PRAGMA integrity_check`: `["ok"]`, or the problems SQLite found.
pub fn integrity_check(conn: &Connection) -> Result<Vec<String>> {
    let mut stmt = conn.prepare("PRAGMA integrity_check")?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// How many events have `from <= id <= to`: what an export of that range will write.
pub fn count_between(conn: &Connection, from: i64, to: i64) -> Result<i64> {
    Ok(conn.query_row("SELECT COUNT(*) FROM queue WHERE id >= ?1 AND id <= ?2", [from, to], |r| r.get(0))?)
}

/// The id from which the last `count` events matching `filter` start (0 when none match), so
/// that `eventlite tail` reads just those, newest last, through a stream.
pub fn tail_start(conn: &Connection, filter: &Filter, count: i64) -> Result<i64> {
    let mut sql = String::from("SELECT MIN(id) FROM (SELECT id FROM queue WHERE 1");
    let given = [("correlation_id", &filter.correlation_id), ("user", &filter.user), ("cmd", &filter.cmd)];
    let mut values: Vec<&str> = Vec::new();
    for (column, value) in given {
        if let Some(value) = value {
            values.push(value);
            sql.push_str(&format!(" AND {column} = ?{}", values.len()));
        }
    }
    sql.push_str(&format!(" ORDER BY id DESC LIMIT {})", count.max(0)));
    let start: Option<i64> = conn.query_row(&sql, rusqlite::params_from_iter(values), |r| r.get(0))?;
    Ok(start.unwrap_or(0))
}

/// What is wrong with the optional indexes present: one that this library knows by name but
/// whose columns differ from the ones it defines (another program made it).
pub fn index_problems(conn: &Connection) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    for name in schema::present_indexes(conn)? {
        let mut stmt = conn.prepare("SELECT name FROM pragma_index_info(?1) ORDER BY seqno")?;
        let columns = stmt.query_map([&name], |r| r.get::<_, String>(0))?.collect::<rusqlite::Result<Vec<_>>>()?;
        let expected = schema::INDEXES.iter().find(|d| d.name == name).map(|d| d.columns);
        if let Some(expected) = expected.filter(|expected| columns.join(", ") != *expected) {
            problems.push(format!("index {name} is on ({}), expected ({expected})", columns.join(", ")));
        }
    }
    Ok(problems)
}

/// One end of the log.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct End {
    pub id: i64,
    pub datetime: i64,
}

/// A `cmd` and how many events carry it.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct CmdCount {
    pub cmd: String,
    pub count: i64,
}

/// A status of `pending_events` and how many rows have it.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct StatusCount {
    pub status: String,
    pub count: i64,
}

/// What `eventlite inspect` reports about the file, read in one read transaction so that the
/// figures agree with each other.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Inspection {
    pub events: i64,
    pub first: Option<End>,
    pub last: Option<End>,
    pub page_size: i64,
    pub page_count: i64,
    pub freelist_count: i64,
    pub journal_mode: String,
    pub indexes: Vec<String>,
    /// The most frequent `cmd`s, most frequent first (ties by name).
    pub top_cmds: Vec<CmdCount>,
    /// `None` when the file has no `pending_events` table (no wait conditions ever used).
    pub pending_events: Option<Vec<StatusCount>>,
    /// The consumers with their positions and lag; `None` when the file has no consumer table.
    pub consumers: Option<Vec<ConsumerInfo>>,
}

/// How many `cmd`s [`inspect`] lists.
pub const TOP_CMDS: i64 = 20;

pub fn inspect(conn: &Connection) -> Result<Inspection> {
    let txn = conn.unchecked_transaction()?;
    let (events, first_id, last_id): (i64, Option<i64>, Option<i64>) =
        txn.query_row("SELECT COUNT(*), MIN(id), MAX(id) FROM queue", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    let end = |id: Option<i64>| -> Result<Option<End>> {
        let Some(id) = id else { return Ok(None) };
        let datetime = txn.query_row("SELECT datetime FROM queue WHERE id = ?1", [id], |r| r.get(0)).optional()?;
        Ok(datetime.map(|datetime| End { id, datetime }))
    };
    let pragma = |name: &str| -> Result<i64> { Ok(txn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))?) };
    let mut top = txn.prepare("SELECT cmd, COUNT(*) AS n FROM queue GROUP BY cmd ORDER BY n DESC, cmd LIMIT ?1")?;
    let top_cmds = top
        .query_map([TOP_CMDS], |r| Ok(CmdCount { cmd: r.get(0)?, count: r.get(1)? }))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let has_table = |name: &str| -> Result<bool> {
        let found: i64 =
            txn.query_row("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?1", [name], |r| {
                r.get(0)
            })?;
        Ok(found > 0)
    };
    let consumers = if has_table("eventlite_consumers")? { Some(consumer::list(conn)?) } else { None };
    let pending_events = if !has_table("pending_events")? {
        None
    } else {
        let mut stmt =
            txn.prepare("SELECT COALESCE(status, 'pending'), COUNT(*) FROM pending_events GROUP BY 1 ORDER BY 1")?;
        let rows = stmt.query_map([], |r| Ok(StatusCount { status: r.get(0)?, count: r.get(1)? }))?;
        Some(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    };
    Ok(Inspection {
        events,
        first: end(first_id)?,
        last: end(last_id)?,
        page_size: pragma("page_size")?,
        page_count: pragma("page_count")?,
        freelist_count: pragma("freelist_count")?,
        journal_mode: txn.query_row("PRAGMA journal_mode", [], |r| r.get::<_, String>(0))?.to_uppercase(),
        indexes: schema::present_indexes(conn)?,
        top_cmds,
        pending_events,
        consumers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Config, Store, MEMORY};

    fn store_with(events: &[(&str, i64)]) -> Store {
        let mut store = Store::open(Config::new(MEMORY)).unwrap();
        let payload: Vec<String> =
            events.iter().map(|(cmd, at)| format!(r#"["{cmd}",{{}},"u","",1,"c",null,{{}},{at}]"#)).collect();
        store.append_batch(&format!("[{}]", payload.join(","))).unwrap();
        store
    }

    #[test]
    fn inspect_reports_the_ends_and_the_most_frequent_cmds() {
        let store = store_with(&[("b", 10), ("a", 11), ("b", 12), ("c", 13), ("a", 14), ("b", 15)]);
        let seen = inspect(store.conn()).unwrap();
        assert_eq!(seen.events, 6);
        assert_eq!(seen.first, Some(End { id: 1, datetime: 10 }));
        assert_eq!(seen.last, Some(End { id: 6, datetime: 15 }));
        let top: Vec<(&str, i64)> = seen.top_cmds.iter().map(|c| (c.cmd.as_str(), c.count)).collect();
        assert_eq!(top, vec![("b", 3), ("a", 2), ("c", 1)]);
        assert_eq!(seen.indexes, vec!["idx_causation_id", "idx_correlation_id"]);
        assert_eq!(seen.pending_events, Some(vec![]), "a queue creates the pending events table");
        assert!(seen.page_size > 0 && seen.page_count > 0);
    }

    #[test]
    fn an_empty_log_has_no_ends() {
        let store = Store::open(Config::new(MEMORY)).unwrap();
        let seen = inspect(store.conn()).unwrap();
        assert_eq!((seen.events, seen.first, seen.last), (0, None, None));
        assert!(seen.top_cmds.is_empty());
    }

    #[test]
    fn tail_starts_at_the_last_matching_events() {
        let store = store_with(&[("a", 1), ("b", 2), ("a", 3), ("b", 4), ("a", 5)]);
        assert_eq!(tail_start(store.conn(), &Filter::default(), 2).unwrap(), 4);
        let only_a = Filter { cmd: Some("a".into()), ..Filter::default() };
        assert_eq!(tail_start(store.conn(), &only_a, 2).unwrap(), 3);
        assert_eq!(tail_start(store.conn(), &only_a, 100).unwrap(), 1);
        let none = Filter { user: Some("nobody".into()), ..Filter::default() };
        assert_eq!(tail_start(store.conn(), &none, 2).unwrap(), 0);
    }

    #[test]
    fn an_index_of_a_known_name_on_other_columns_is_a_problem() {
        let store = store_with(&[("a", 1)]);
        assert!(index_problems(store.conn()).unwrap().is_empty());
        store
            .conn()
            .execute_batch("DROP INDEX idx_correlation_id; CREATE INDEX idx_correlation_id ON queue(user)")
            .unwrap();
        assert_eq!(
            index_problems(store.conn()).unwrap(),
            vec!["index idx_correlation_id is on (user), expected (correlation_id)"]
        );
    }

    #[test]
    fn maintenance_reports_what_sqlite_reports() {
        let store = store_with(&[("a", 1), ("a", 2), ("a", 3)]);
        assert_eq!(integrity_check(store.conn()).unwrap(), vec!["ok"]);
        assert_eq!(count_between(store.conn(), 2, 10).unwrap(), 2);
        optimize(store.conn()).unwrap();
        vacuum(store.conn()).unwrap();
        // An in-memory database is not in WAL mode: SQLite reports -1 frames.
        let done = checkpoint(store.conn()).unwrap();
        assert_eq!(done, Checkpointed { busy: false, wal_frames: -1, checkpointed_frames: -1 });
    }
}
