//! Importing rows that were exported from a log (JSONL, one row of the read shape per line):
//! unlike `store`, an import keeps each row's own `datetime`, `version`, `user`, `ip` and
//! `metadata`, and, into an empty log, its id. The JavaScript side reads the lines, remaps
//! causation ids and sends batches; each batch is one transaction.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::store::{Appended, WriteTxn};

/// One row of an import batch, as `[id, version, datetime, user, ip, cmd, data,
/// correlation_id, causation_id, metadata, parent]`; `id` is null unless the import keeps ids.
/// `data` and `metadata` stay JSON text, stored as they came. `parent`, when not null, is the
/// position in this batch of the row that caused this one: its new id is only known here, so
/// it replaces `causation_id`.
#[derive(Deserialize)]
struct ImportRow<'a>(
    Option<i64>,
    Option<i64>,
    i64,
    Option<String>,
    Option<String>,
    String,
    #[serde(borrow)] Option<&'a RawValue>,
    Option<String>,
    Option<i64>,
    #[serde(borrow)] Option<&'a RawValue>,
    Option<usize>,
);

const INSERT: &str = "INSERT INTO queue (id, version, datetime, user, ip, cmd, data, correlation_id, causation_id, \
                      metadata) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";

/// Inserts one batch in one transaction: all of it or none of it. Without `keep_ids` the rows
/// get consecutive new ids (the write lock is held throughout), and the first is returned.
pub fn insert(conn: &Connection, payload: &str, keep_ids: bool) -> Result<Appended> {
    let rows: Vec<ImportRow<'_>> =
        serde_json::from_str(payload).map_err(|e| Error::InvalidEvent(format!("an import batch is malformed: {e}")))?;
    if rows.is_empty() {
        return Ok(Appended { first_id: 0, count: 0 });
    }
    let txn = WriteTxn::begin(conn)?;
    let mut stmt = conn.prepare_cached(INSERT)?;
    let mut first_id = None;
    for (i, row) in rows.iter().enumerate() {
        if row.5.is_empty() {
            return Err(Error::InvalidEvent(format!("row {i} of an import batch has an empty cmd")));
        }
        let id = if keep_ids { row.0 } else { None };
        let causation_id = match (row.10, first_id) {
            (Some(parent), Some(first)) if parent < i => Some(first + parent as i64),
            (Some(parent), _) => {
                return Err(Error::InvalidEvent(format!(
                    "row {i} of an import batch names a later row ({parent}) as its parent"
                )))
            }
            (None, _) => row.8,
        };
        stmt.execute(rusqlite::params![
            id,
            row.1.unwrap_or(1),
            row.2,
            row.3,
            row.4,
            row.5,
            row.6.map(RawValue::get),
            row.7,
            causation_id,
            row.9.map(RawValue::get),
        ])?;
        let stored = conn.last_insert_rowid();
        let first = *first_id.get_or_insert(stored);
        if !keep_ids && stored != first + i as i64 {
            return Err(Error::Sqlite {
                code: "SQLITE_INTERNAL",
                message: format!(
                    "ids not consecutive within one import batch (expected {}, got {stored})",
                    first + i as i64
                ),
            });
        }
    }
    drop(stmt);
    txn.commit()?;
    Ok(Appended { first_id: first_id.unwrap_or(0), count: rows.len() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Config, Store, MEMORY};

    /// `id, datetime, cmd, data, causation_id, metadata` of a stored row.
    type Stored = (i64, i64, String, Option<String>, Option<i64>, Option<String>);

    fn rows(store: &Store) -> Vec<Stored> {
        let mut stmt = store
            .conn()
            .prepare("SELECT id, datetime, cmd, data, causation_id, metadata FROM queue ORDER BY id")
            .unwrap();
        let found = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))
            .unwrap()
            .collect::<rusqlite::Result<Vec<_>>>()
            .unwrap();
        found
    }

    #[test]
    fn rows_keep_their_fields_and_get_consecutive_new_ids() {
        let mut store = Store::open(Config::new(MEMORY)).unwrap();
        let batch = r#"[[7,1,100,"u","1.2.3.4","a",{"b":1, "a":2},"c",null,{"m":1},null],
                        [9,2,90,null,null,"b",null,"c",7,{},null],
                        [10,1,91,null,null,"c",{},"c",9,{},1]]"#;
        let done = store.import(batch, false).unwrap();
        assert_eq!(done, Appended { first_id: 1, count: 3 });
        let found = rows(&store);
        assert_eq!(found[0], (1, 100, "a".into(), Some(r#"{"b":1, "a":2}"#.into()), None, Some(r#"{"m":1}"#.into())));
        assert_eq!(found[1], (2, 90, "b".into(), None, Some(7), Some("{}".into())));
        assert_eq!(found[2].4, Some(2), "a parent in the batch is named by its new id");
    }

    #[test]
    fn kept_ids_are_kept_and_a_failing_row_stores_nothing_of_its_batch() {
        let mut store = Store::open(Config::new(MEMORY)).unwrap();
        store.import(r#"[[5,1,1,null,null,"a",{},null,null,{},null]]"#, true).unwrap();
        assert_eq!(rows(&store)[0].0, 5);
        // The second row repeats id 5: the whole batch is refused.
        let err = store
            .import(r#"[[6,1,1,null,null,"a",{},null,null,{},null],[5,1,1,null,null,"a",{},null,null,{},null]]"#, true);
        assert_eq!(err.err().map(|e| e.code()), Some("SQLITE_CONSTRAINT"));
        assert_eq!(rows(&store).len(), 1);
        let empty_cmd = store.import(r#"[[null,1,1,null,null,"",{},null,null,{},null]]"#, false);
        assert_eq!(empty_cmd.err().map(|e| e.code()), Some("ERR_INVALID_EVENT"));
        let malformed = store.import(r#"[[null,1,"x"]]"#, false);
        assert_eq!(malformed.err().map(|e| e.code()), Some("ERR_INVALID_EVENT"));
        assert_eq!(rows(&store).len(), 1);
    }
}
