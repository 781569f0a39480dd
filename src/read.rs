//! Plain reads. Each returns JSON text that JavaScript parses once: rows as flat arrays of
//! values (see [`crate::row::write_values`]), which `lib/rows.js` turns into row objects.

use once_cell::sync::Lazy;

use crate::connection::Connection;
use crate::error::Result;
use crate::row::{select_list, write_values};
use crate::statement::{Param, Row};

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
            write_values(out, &row)?;
            out.push(']');
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Appends every row of a query as one flat JSON array of their values, row after row.
fn write_all(out: &mut String, conn: &Connection, sql: &'static str, params: impl Params) -> Result<usize> {
    let mut stmt = conn.cached(sql)?;
    params.bind(&mut stmt)?;
    let mut rows = stmt.rows();
    let mut n = 0;
    out.push('[');
    while let Some(row) = rows.next()? {
        if n > 0 {
            out.push(',');
        }
        write_values(out, &row)?;
        n += 1;
    }
    out.push(']');
    Ok(n)
}

fn first(conn: &Connection, sql: &'static str, params: impl Params) -> Result<Option<String>> {
    let mut out = String::with_capacity(256);
    Ok(write_first(&mut out, conn, sql, params)?.then_some(out))
}

fn all(conn: &Connection, sql: &'static str, params: impl Params) -> Result<String> {
    let mut out = String::with_capacity(1024);
    write_all(&mut out, conn, sql, params)?;
    Ok(out)
}

/// What `visit` makes of event `id`'s row, selected with [`crate::row::select_list`]; `None`
/// when there is no such event. The row is valid only during the call.
pub fn visit_by_id<T>(conn: &Connection, id: i64, visit: impl FnOnce(&Row<'_>) -> T) -> Result<Option<T>> {
    let mut stmt = conn.cached(&SQL.by_id)?;
    stmt.bind(1, id)?;
    let mut rows = stmt.rows();
    Ok(rows.next()?.map(|row| visit(&row)))
}

/// Appends event `id` as a JSON array of its values; returns whether it exists.
pub fn write_by_id(out: &mut String, conn: &Connection, id: i64) -> Result<bool> {
    write_first(out, conn, &SQL.by_id, [id])
}

pub fn last(conn: &Connection) -> Result<Option<String>> {
    first(conn, &SQL.last, ())
}

pub fn by_correlation(conn: &Connection, correlation_id: &str) -> Result<String> {
    all(conn, &SQL.by_correlation, [correlation_id])
}

/// Appends the events of one correlation id as a flat JSON array of values, in id order.
pub fn write_by_correlation(out: &mut String, conn: &Connection, correlation_id: &str) -> Result<usize> {
    write_all(out, conn, &SQL.by_correlation, [correlation_id])
}

pub fn children(conn: &Connection, id: i64) -> Result<String> {
    all(conn, &SQL.children, [id])
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

/// `[event, parent, children]`: the event's values, its parent's (or `null`), and its
/// children's as one flat array; `None` when `id` does not exist.
pub fn lineage(conn: &Connection, id: i64) -> Result<Option<String>> {
    let mut out = String::with_capacity(1024);
    out.push('[');
    if !write_first(&mut out, conn, &SQL.by_id, [id])? {
        return Ok(None);
    }
    let parent: Option<i64> =
        conn.prepare_cached("SELECT causation_id FROM queue WHERE id = ?1")?.query_row([id], |r| r.get(0))?;
    out.push(',');
    let found = match parent {
        Some(parent_id) => write_first(&mut out, conn, &SQL.by_id, [parent_id])?,
        None => false,
    };
    if !found {
        out.push_str("null");
    }
    out.push(',');
    write_all(&mut out, conn, &SQL.children, [id])?;
    out.push(']');
    Ok(Some(out))
}

/// The parameters of a read: none, or one bound to `?1`.
trait Params {
    fn bind(self, stmt: &mut crate::statement::Statement) -> Result<()>;
}

impl Params for () {
    fn bind(self, _: &mut crate::statement::Statement) -> Result<()> {
        Ok(())
    }
}

impl<P: Param> Params for [P; 1] {
    fn bind(self, stmt: &mut crate::statement::Statement) -> Result<()> {
        let [value] = self;
        stmt.bind(1, value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::row::Cell;
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
        let id_and_data = |row: &crate::statement::Row<'_>| {
            let cells = (crate::row::cell(row, 0).unwrap(), crate::row::cell(row, 6).unwrap());
            cells == (Cell::Integer(2), Cell::Json(r#"{"i":1}"#))
        };
        assert_eq!(visit_by_id(store.conn(), 2, id_and_data).unwrap(), Some(true));
        assert!(visit_by_id(store.conn(), 9, |_| ()).unwrap().is_none());
        let mut out = String::new();
        assert!(write_by_id(&mut out, store.conn(), 2).unwrap());
        assert_eq!(parse(&out)[6]["i"], 1);
        assert_eq!(parse(&last(store.conn()).unwrap().unwrap())[0], 3);
        let empty = Store::open(Config::new(MEMORY)).unwrap();
        assert!(last(empty.conn()).unwrap().is_none());
    }

    #[test]
    fn lineage_joins_event_parent_and_children() {
        let store = store_with(3);
        let root = parse(&lineage(store.conn(), 1).unwrap().unwrap());
        assert_eq!(root[0][0], 1);
        assert!(root[1].is_null());
        assert_eq!(ids(&root[2]), [2, 3]);
        let child = parse(&lineage(store.conn(), 3).unwrap().unwrap());
        assert_eq!(child[1][0], 1);
        assert_eq!(child[2], Value::Array(vec![]));
        assert!(lineage(store.conn(), 42).unwrap().is_none());
    }

    #[test]
    fn transactions_and_children_come_in_id_order() {
        let store = store_with(5);
        assert_eq!(ids(&parse(&by_correlation(store.conn(), "c").unwrap())), [1, 2, 3, 4, 5]);
        assert_eq!(ids(&parse(&children(store.conn(), 1).unwrap())), [2, 3, 4, 5]);
    }
}
