//! The tables the stream features keep beside `queue` (stream versions, idempotency keys,
//! consumers; see [`crate::version`], [`crate::idempotency`], [`crate::consumer`]), created
//! when a queue opens a file, emptied by `reset`, and kept in step with a `queue` table that
//! another program dropped and created again.
//!
//! EventLite's reset drops `queue`, which drops the version triggers with it, and starts ids at
//! 1 again: the counts, the keys (ids of the old log) and the consumers' positions (in the old
//! log) would all be wrong for the new one. Tables present without their triggers therefore mean
//! the log was reset elsewhere, and they are reset here too. The stream features look for that
//! before they use the tables, at the cost of reading the schema cookie, which any change to the
//! schema moves.

use std::cell::Cell;

use crate::connection::Connection;
use crate::error::Result;
use crate::store::WriteTxn;
use crate::{consumer, idempotency, version};

/// The tables, then the triggers, that must all exist.
const TABLES: [&str; 3] = ["eventlite_stream_versions", "eventlite_idempotency_keys", "eventlite_consumers"];

fn count_present(conn: &Connection, kind: &str, names: &[&str]) -> Result<usize> {
    let mut stmt = conn.prepare_cached("SELECT COUNT(*) FROM sqlite_master WHERE type = ?1 AND name = ?2")?;
    let mut present = 0;
    for name in names {
        present += stmt.query_row([kind, name], |r| r.get::<_, i64>(0))? as usize;
    }
    Ok(present)
}

/// Whether every table and trigger exists, so that opening has nothing to write.
pub fn is_current(conn: &Connection) -> Result<bool> {
    Ok(count_present(conn, "table", &TABLES)? == TABLES.len()
        && count_present(conn, "trigger", &version::TRIGGERS)? == version::TRIGGERS.len())
}

/// Creates what is missing, inside the caller's write transaction; with `reset` (the queue
/// was just reset), or when the tables outlived their triggers (it was reset by another
/// program), empties them for the new log.
pub fn ensure(conn: &Connection, reset: bool) -> Result<()> {
    let reset_elsewhere = count_present(conn, "table", &TABLES[..1])? == 1
        && count_present(conn, "trigger", &version::TRIGGERS)? < version::TRIGGERS.len();
    conn.execute_batch(version::CREATE)?;
    conn.execute_batch(idempotency::CREATE_TABLE)?;
    conn.execute_batch(consumer::CREATE_TABLE)?;
    if reset || reset_elsewhere {
        version::reset(conn)?;
        idempotency::forget_all(conn)?;
        consumer::rewind_all(conn)?;
    }
    Ok(())
}

/// Notices schema changes made through other connections, one connection's worth.
#[derive(Debug, Default)]
pub struct Watch {
    /// The schema cookie when the tables were last known to be whole.
    seen: Cell<Option<i64>>,
}

impl Watch {
    /// Makes sure the tables are whole (see the module's notes) before a stream feature uses
    /// them. `in_write_txn`: the caller holds a write transaction, in which any repair happens;
    /// otherwise the repair takes one of its own.
    pub fn ready(&self, conn: &Connection, in_write_txn: bool) -> Result<()> {
        let cookie = schema_cookie(conn)?;
        if self.seen.get() == Some(cookie) {
            return Ok(());
        }
        if !is_current(conn)? {
            if in_write_txn {
                ensure(conn, false)?;
            } else {
                let txn = WriteTxn::begin(conn)?;
                ensure(conn, false)?;
                txn.commit()?;
            }
        }
        self.seen.set(Some(schema_cookie(conn)?));
        Ok(())
    }
}

fn schema_cookie(conn: &Connection) -> Result<i64> {
    Ok(conn.cached("PRAGMA schema_version")?.integers()?.map_or(0, |[cookie]| cookie))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> Connection {
        let conn = Connection::new(rusqlite::Connection::open_in_memory().unwrap());
        conn.execute_batch(crate::schema::CREATE_TABLE).unwrap();
        conn
    }

    fn counts(conn: &Connection) -> (i64, i64, i64) {
        conn.query_row(
            "SELECT (SELECT COUNT(*) FROM eventlite_stream_versions), (SELECT COUNT(*) FROM eventlite_idempotency_keys),
                    (SELECT SUM(position) FROM eventlite_consumers)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap()
    }

    fn fill(conn: &Connection) {
        conn.execute_batch(
            "INSERT INTO queue (datetime, cmd, correlation_id) VALUES (0, 'a', 'c');
             INSERT INTO eventlite_stream_versions VALUES ('c', 1, 1);
             INSERT INTO eventlite_idempotency_keys VALUES ('k', 1);
             INSERT OR REPLACE INTO eventlite_consumers (name, member, size, position) VALUES ('p', 0, 1, 1);",
        )
        .unwrap();
    }

    #[test]
    fn tables_outliving_their_triggers_are_reset() {
        let conn = memory();
        assert!(!is_current(&conn).unwrap());
        ensure(&conn, false).unwrap();
        assert!(is_current(&conn).unwrap());
        fill(&conn);
        ensure(&conn, false).unwrap();
        assert_eq!(counts(&conn), (1, 1, 1), "nothing to repair: nothing forgotten");
        // EventLite's reset: the table, and with it the triggers, dropped and made again.
        conn.execute_batch("DROP TABLE queue").unwrap();
        conn.execute_batch(crate::schema::CREATE_TABLE).unwrap();
        assert!(!is_current(&conn).unwrap());
        ensure(&conn, false).unwrap();
        assert_eq!(counts(&conn), (0, 0, 0));
        assert!(is_current(&conn).unwrap());
        fill(&conn);
        ensure(&conn, true).unwrap();
        assert_eq!(counts(&conn), (0, 0, 0), "our own reset");
    }

    #[test]
    fn the_watch_repairs_after_a_schema_change_only() {
        let conn = memory();
        let watch = Watch::default();
        watch.ready(&conn, false).unwrap();
        assert!(is_current(&conn).unwrap());
        fill(&conn);
        conn.execute_batch("CREATE INDEX unrelated ON queue(cmd)").unwrap();
        watch.ready(&conn, false).unwrap();
        assert_eq!(counts(&conn), (1, 1, 1));
        conn.execute_batch("DROP TABLE queue").unwrap();
        conn.execute_batch(crate::schema::CREATE_TABLE).unwrap();
        watch.ready(&conn, false).unwrap();
        assert_eq!(counts(&conn), (0, 0, 0));
    }
}
