//! The point reads of a PostgreSQL queue: the same JSON text as SQLite's (`crate::read`), each
//! row rendered by [`crate::row::write_values`] from the values PostgreSQL returns.

use rusqlite::types::ValueRef;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::Row;

use super::pool::Conn;
use super::schema::{quote, Names};
use crate::error::{Error, Result};
use crate::pieces::{write_row, Limits, Pieces};
use crate::row::Values;
use crate::schema::COLUMNS;

/// The statements of the reads, for one schema.
#[derive(Debug, Clone)]
pub struct ReadSql {
    by_id: String,
    last: String,
    by_correlation: String,
    children: String,
    /// The newest id and the count of one transaction: what a cached transaction is checked
    /// against.
    transaction_mark: String,
    correlation_of: String,
}

impl ReadSql {
    pub fn new(names: &Names) -> ReadSql {
        let cols = COLUMNS.map(quote).join(", ");
        let from = format!("SELECT {cols} FROM {}", names.queue);
        ReadSql {
            by_id: format!("{from} WHERE id = $1"),
            last: format!("{from} ORDER BY id DESC LIMIT 1"),
            by_correlation: format!("{from} WHERE correlation_id = $1 ORDER BY id"),
            children: format!("{from} WHERE causation_id = $1 ORDER BY id"),
            transaction_mark: format!("SELECT max(id), count(*) FROM {} WHERE correlation_id = $1", names.queue),
            correlation_of: format!("SELECT correlation_id FROM {} WHERE id = $1", names.queue),
        }
    }
}

/// A row PostgreSQL returned, as the renderer reads it: integers and text by the column's type.
pub(crate) struct PgRow<'r>(pub(crate) &'r Row);

impl Values for PgRow<'_> {
    fn value(&self, index: usize) -> Result<ValueRef<'_>> {
        let row = self.0;
        let wrong =
            |err: tokio_postgres::Error| Error::SchemaMismatch(format!("a stored value has the wrong type: {err}"));
        let column = row.columns().get(index).ok_or_else(|| Error::SchemaMismatch(format!("no column {index}")))?;
        let value = match *column.type_() {
            Type::INT8 => row.try_get::<_, Option<i64>>(index).map_err(wrong)?.map(ValueRef::Integer),
            Type::INT4 => row.try_get::<_, Option<i32>>(index).map_err(wrong)?.map(|n| ValueRef::Integer(n.into())),
            Type::INT2 => row.try_get::<_, Option<i16>>(index).map_err(wrong)?.map(|n| ValueRef::Integer(n.into())),
            Type::FLOAT8 => row.try_get::<_, Option<f64>>(index).map_err(wrong)?.map(ValueRef::Real),
            _ => row.try_get::<_, Option<&str>>(index).map_err(wrong)?.map(|text| ValueRef::Text(text.as_bytes())),
        };
        Ok(value.unwrap_or(ValueRef::Null))
    }
}

async fn query(conn: &mut Conn, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
    let statement = conn.statement(sql).await?;
    Ok(conn.client.query(&statement, params).await?)
}

/// The first row of a query as a JSON array of its values.
async fn first(conn: &mut Conn, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Option<String>> {
    let rows = query(conn, sql, params).await?;
    let Some(row) = rows.first() else { return Ok(None) };
    let mut out = String::with_capacity(256);
    out.push('[');
    write_row(&mut out, &PgRow(row), &Limits::current())?;
    out.push(']');
    Ok(Some(out))
}

/// Every row of a query, one flat JSON array of their values, in [`Pieces`].
async fn all(conn: &mut Conn, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<String>> {
    let rows = query(conn, sql, params).await?;
    let mut pieces = Pieces::new(String::with_capacity(1024) + "[");
    for row in &rows {
        pieces.row(&PgRow(row))?;
    }
    pieces.first.push(']');
    Ok(pieces.finish())
}

pub async fn by_id(conn: &mut Conn, sql: &ReadSql, id: i64) -> Result<Option<String>> {
    first(conn, &sql.by_id, &[&id]).await
}

pub async fn last(conn: &mut Conn, sql: &ReadSql) -> Result<Option<String>> {
    first(conn, &sql.last, &[]).await
}

pub async fn by_correlation(conn: &mut Conn, sql: &ReadSql, correlation_id: &str) -> Result<Vec<String>> {
    all(conn, &sql.by_correlation, &[&correlation_id]).await
}

pub async fn children(conn: &mut Conn, sql: &ReadSql, id: i64) -> Result<Vec<String>> {
    all(conn, &sql.children, &[&id]).await
}

/// The stored correlation id of one event; `None` when the event or its id is missing.
pub async fn correlation_of(conn: &mut Conn, sql: &ReadSql, id: i64) -> Result<Option<String>> {
    let rows = query(conn, &sql.correlation_of, &[&id]).await?;
    Ok(rows.first().and_then(|row| row.get::<_, Option<String>>(0)))
}

/// What identifies the state of a transaction's list: its newest id and its length. Events
/// are only appended, so a list whose mark is unchanged is unchanged.
pub async fn transaction_mark(conn: &mut Conn, sql: &ReadSql, correlation_id: &str) -> Result<(i64, i64)> {
    let rows = query(conn, &sql.transaction_mark, &[&correlation_id]).await?;
    let row = rows
        .first()
        .ok_or_else(|| Error::Postgres { message: "an aggregate returned no row".into(), pg_code: None })?;
    Ok((row.get::<_, Option<i64>>(0).unwrap_or(0), row.get(1)))
}

/// As SQLite's [`crate::read::lineage`]: one flat array of rows, the event, its parent (ten
/// nulls when it has none), then its children; `None` when `id` does not exist.
pub async fn lineage(conn: &mut Conn, sql: &ReadSql, id: i64) -> Result<Option<Vec<String>>> {
    let event = query(conn, &sql.by_id, &[&id]).await?;
    let Some(event) = event.first() else { return Ok(None) };
    let mut pieces = Pieces::new(String::with_capacity(1024) + "[");
    pieces.row(&PgRow(event))?;
    let parent_id: Option<i64> = event.try_get("causation_id").ok().flatten();
    let parent = match parent_id {
        Some(parent_id) => query(conn, &sql.by_id, &[&parent_id]).await?,
        None => Vec::new(),
    };
    match parent.first() {
        Some(row) => pieces.row(&PgRow(row))?,
        None => pieces.null_row(),
    }
    for row in &query(conn, &sql.children, &[&id]).await? {
        pieces.row(&PgRow(row))?;
    }
    pieces.first.push(']');
    Ok(Some(pieces.finish()))
}
