//! Plain reads. Each returns JSON text that JavaScript parses once: rows as flat arrays of
//! values (see [`crate::row::write_values`]), which `lib/rows.js` turns into row objects. A
//! read of one row returns one text; a read of many returns [`Pieces`], nearly always one.

use once_cell::sync::Lazy;

use crate::connection::Connection;
use crate::error::Result;
use crate::pieces::{write_row, Limits, Pieces};
use crate::row::{cells, select_list, Cell};
use crate::statement::{Param, Statement};

struct Sql {
    by_id: String,
    last: String,
    by_correlation: String,
    children: String,
}

/// The statements, built once: [`Connection::cached`] knows a statement by its text's address.
static SQL: Lazy<Sql> = Lazy::new(|| {
    let cols = select_list();
    Sql {
        by_id: format!("SELECT {cols} FROM queue WHERE id = ?1"),
        last: format!("SELECT {cols} FROM queue ORDER BY id DESC LIMIT 1"),
        by_correlation: format!("SELECT {cols} FROM queue WHERE correlation_id = ?1 ORDER BY id"),
        children: format!("SELECT {cols} FROM queue WHERE causation_id = ?1 ORDER BY id"),
    }
});

/// Appends the first row of a query as a JSON array of its values; returns whether there was
/// one.
fn write_first(out: &mut String, conn: &Connection, sql: &'static str, params: impl Params) -> Result<bool> {
    let mut stmt = conn.cached(sql)?;
    params.bind(&mut stmt)?;
    let mut rows = stmt.rows();
    match rows.next()? {
        Some(row) => {
            out.push('[');
            write_row(out, &row, &Limits::current())?;
            out.push(']');
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Appends every row of a query to `pieces`, row after row.
fn write_all(pieces: &mut Pieces, conn: &Connection, sql: &'static str, params: impl Params) -> Result<()> {
    let mut stmt = conn.cached(sql)?;
    params.bind(&mut stmt)?;
    let mut rows = stmt.rows();
    while let Some(row) = rows.next()? {
        pieces.row(&row)?;
    }
    Ok(())
}

fn first(conn: &Connection, sql: &'static str, params: impl Params) -> Result<Option<String>> {
    let mut out = String::with_capacity(256);
    Ok(write_first(&mut out, conn, sql, params)?.then_some(out))
}

/// Every row of a query as one flat JSON array of their values, in [`Pieces`].
fn all(conn: &Connection, sql: &'static str, params: impl Params) -> Result<Vec<String>> {
    let mut pieces = Pieces::new(String::with_capacity(1024) + "[");
    write_all(&mut pieces, conn, sql, params)?;
    pieces.first.push(']');
    Ok(pieces.finish())
}

/// What `visit` makes of event `id`'s ten values, read for handing over one by one (see
/// [`cells`]); `None` when there is no such event. The values are valid only during the call.
pub fn visit_by_id<T>(conn: &Connection, id: i64, visit: impl FnOnce(&[Cell<'_>]) -> T) -> Result<Option<T>> {
    let mut stmt = conn.cached(&SQL.by_id)?;
    stmt.bind(1, id)?;
    let mut rows = stmt.rows();
    match rows.next()? {
        Some(row) => Ok(Some(visit(&cells(&row, Limits::current().row)?))),
        None => Ok(None),
    }
}

/// Appends event `id` as a JSON array of its values; returns whether it exists.
pub fn write_by_id(out: &mut String, conn: &Connection, id: i64) -> Result<bool> {
    write_first(out, conn, &SQL.by_id, [id])
}

pub fn last(conn: &Connection) -> Result<Option<String>> {
    first(conn, &SQL.last, ())
}

pub fn by_correlation(conn: &Connection, correlation_id: &str) -> Result<Vec<String>> {
    all(conn, &SQL.by_correlation, [correlation_id])
}

/// Appends the events of one correlation id to `pieces`, in id order.
pub fn write_by_correlation(pieces: &mut Pieces, conn: &Connection, correlation_id: &str) -> Result<()> {
    write_all(pieces, conn, &SQL.by_correlation, [correlation_id])
}

pub fn children(conn: &Connection, id: i64) -> Result<Vec<String>> {
    all(conn, &SQL.children, [id])
}

/// The largest id in the log; `None` when it is empty.
pub fn newest_id(conn: &Connection) -> Result<Option<i64>> {
    Ok(conn.prepare_cached("SELECT MAX(id) FROM queue")?.query_row([], |r| r.get(0))?)
}

/// The stored correlation id of one event; `None` when the event or its id is missing.
pub fn correlation_id(conn: &Connection, id: i64) -> Result<Option<String>> {
    let mut stmt = conn.prepare_cached("SELECT correlation_id FROM queue WHERE id = ?1")?;
    let mut rows = stmt.query([id])?;
    match rows.next()? {
        Some(row) => Ok(row.get(0)?),
        None => Ok(None),
    }
}

/// One flat array of rows, in [`Pieces`]: the event, its parent (ten nulls when it has none),
/// then its children; `None` when `id` does not exist. Flat, so that the three can be split
/// between pieces like the rows of any read.
pub fn lineage(conn: &Connection, id: i64) -> Result<Option<Vec<String>>> {
    let mut pieces = Pieces::new(String::with_capacity(1024) + "[");
    let mut event = conn.cached(&SQL.by_id)?;
    event.bind(1, id)?;
    let mut rows = event.rows();
    match rows.next()? {
        Some(row) => pieces.row(&row)?,
        None => return Ok(None),
    }
    drop(rows);
    drop(event);
    let parent: Option<i64> =
        conn.prepare_cached("SELECT causation_id FROM queue WHERE id = ?1")?.query_row([id], |r| r.get(0))?;
    let mut found = false;
    if let Some(parent_id) = parent {
        let mut stmt = conn.cached(&SQL.by_id)?;
        stmt.bind(1, parent_id)?;
        let mut rows = stmt.rows();
        if let Some(row) = rows.next()? {
            pieces.row(&row)?;
            found = true;
        }
    }
    if !found {
        pieces.null_row();
    }
    write_all(&mut pieces, conn, &SQL.children, [id])?;
    pieces.first.push(']');
    Ok(Some(pieces.finish()))
}

/// The parameters of a read: none, or one bound to `?1`.
trait Params {
    fn bind(self, stmt: &mut Statement<'_>) -> Result<()>;
}

impl Params for () {
    fn bind(self, _: &mut Statement<'_>) -> Result<()> {
        Ok(())
    }
}

impl<P: Param> Params for [P; 1] {
    fn bind(self, stmt: &mut Statement<'_>) -> Result<()> {
        let [value] = self;
        stmt.bind(1, value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Config, Store, MEMORY};
    use serde_json::Value;

    fn store_with(n: usize) -> Store {
        let mut store = Store::open(Config::new(MEMORY)).unwrap();
        for i in 0..n {
            let causation = if i == 0 { "null".to_string() } else { "1".to_string() };
            let payload = format!(r#"[["cmd{i}",{{"i":{i}}},"u","ip",1,"c",{causation},{{}},{i}]]"#);
            store.append(&payload).unwrap();
        }
        store
    }

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    /// The ids of a flat array of rows: every tenth value, from the first.
    fn ids(flat: &Value) -> Vec<i64> {
        flat.as_array().unwrap().chunks(10).map(|row| row[0].as_i64().unwrap()).collect()
    }

    #[test]
    fn by_id_and_last_return_one_row_or_none() {
        let store = store_with(3);
        let id_and_data = |cells: &[Cell<'_>]| (cells[0], cells[6]) == (Cell::Integer(2), Cell::Json(br#"{"i":1}"#));
        assert_eq!(visit_by_id(store.conn(), 2, id_and_data).unwrap(), Some(true));
        assert!(visit_by_id(store.conn(), 9, |_| ()).unwrap().is_none());
        let mut out = String::new();
        assert!(write_by_id(&mut out, store.conn(), 2).unwrap());
        assert_eq!(parse(&out)[6]["i"], 1);
        assert_eq!(parse(&last(store.conn()).unwrap().unwrap())[0], 3);
        let empty = Store::open(Config::new(MEMORY)).unwrap();
        assert!(last(empty.conn()).unwrap().is_none());
    }

    /// The one piece of a read of a few rows.
    fn one(pieces: Vec<String>) -> Value {
        assert_eq!(pieces.len(), 1);
        parse(&pieces[0])
    }

    /// The first value of each row: its id, or null for a row of nulls.
    fn firsts(flat: &Value) -> Vec<Value> {
        flat.as_array().unwrap().chunks(10).map(|row| row[0].clone()).collect()
    }

    #[test]
    fn lineage_is_event_parent_and_children_as_one_flat_array() {
        let store = store_with(3);
        let root = one(lineage(store.conn(), 1).unwrap().unwrap());
        assert_eq!(firsts(&root), [Value::from(1), Value::Null, Value::from(2), Value::from(3)]);
        assert_eq!(root.as_array().unwrap()[10..20], vec![Value::Null; 10], "no parent: a row of nulls");
        let child = one(lineage(store.conn(), 3).unwrap().unwrap());
        assert_eq!(firsts(&child), [Value::from(3), Value::from(1)]);
        assert!(lineage(store.conn(), 42).unwrap().is_none());
    }

    #[test]
    fn transactions_and_children_come_in_id_order() {
        let store = store_with(5);
        assert_eq!(ids(&one(by_correlation(store.conn(), "c").unwrap())), [1, 2, 3, 4, 5]);
        assert_eq!(ids(&one(children(store.conn(), 1).unwrap())), [2, 3, 4, 5]);
    }

    #[test]
    fn a_corrupt_row_fails_the_read_with_its_id() {
        let store = store_with(2);
        store.conn().execute("UPDATE queue SET data = '{\"a\":1},\"c\",null,{},999' WHERE id = 2", []).unwrap();
        let one_row = write_by_id(&mut String::new(), store.conn(), 2).unwrap_err();
        let many = by_correlation(store.conn(), "c").unwrap_err();
        let family = lineage(store.conn(), 1).unwrap_err();
        for err in [one_row, many, family] {
            assert_eq!((err.code(), err.row_id()), ("ERR_CORRUPT_ROW", Some(2)));
        }
        // Handed over by value, the text goes as it is, for JavaScript's parser to refuse.
        let data = |cells: &[Cell<'_>]| cells[6] == Cell::Json(br#"{"a":1},"c",null,{},999"#);
        assert_eq!(visit_by_id(store.conn(), 2, data).unwrap(), Some(true));
    }
}
