//! The paginated reads of a PostgreSQL queue: the pages, cursors and checks of SQLite's
//! ([`crate::page`]: the same JSON text, cursor format and validation), over statements in
//! PostgreSQL's dialect. Like every ordered read here, a page leaves out the rows of
//! transactions that may still be in flight (see [`super`]), so that a walk by cursor never
//! steps past an event that commits later with a smaller id.

use tokio_postgres::types::ToSql;

use super::pool::Conn;
use super::read::PgRow;
use super::schema::{quote, Names};
use crate::error::Result;
use crate::page::{self, Cursor, Events, Order, PageOptions, Query};
use crate::rowset::RowSets;
use crate::schema::COLUMNS;

/// The rows every ordered read may return: those written by transactions older than any still
/// in flight. A scalar subquery, so that the snapshot is taken once per statement.
pub const SETTLED: &str = "tx_id < (SELECT pg_snapshot_xmin(pg_current_snapshot()))";

/// A statement's text and its parameters, numbered as they are added.
#[derive(Default)]
struct Statement {
    clauses: Vec<String>,
    params: Vec<Box<dyn ToSql + Sync + Send>>,
}

impl Statement {
    /// Adds a parameter; its placeholder.
    fn param(&mut self, value: impl ToSql + Sync + Send + 'static) -> String {
        self.params.push(Box::new(value));
        format!("${}", self.params.len())
    }

    fn clause(&mut self, clause: String) {
        self.clauses.push(clause);
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect()
    }
}

/// `datetime` is a `bigint` here: a bound given as a number becomes the whole number that
/// selects the same rows (the cast saturates, so infinities select everything).
fn at_least(bound: f64) -> i64 {
    bound.ceil() as i64
}

fn at_most(bound: f64) -> i64 {
    bound.floor() as i64
}

/// The query's filter; a time range's upper end only before a cursor, which replaces it (see
/// [`crate::page`]'s shapes).
fn filter(statement: &mut Statement, query: &Query<'_>, after: Option<&Cursor>) {
    match *query {
        Query::Correlation(text) => {
            let p = statement.param(text.to_string());
            statement.clause(format!("correlation_id = {p}"));
        }
        Query::Children(id) => {
            let p = statement.param(id);
            statement.clause(format!("causation_id = {p}"));
        }
        Query::User(text) => {
            let p = statement.param(text.to_string());
            statement.clause(format!("\"user\" = {p}"));
        }
        Query::Cmd(text) => {
            let p = statement.param(text.to_string());
            statement.clause(format!("cmd = {p}"));
        }
        Query::TimeRange(start, end) => {
            let p = statement.param(at_least(start));
            statement.clause(format!("datetime >= {p}"));
            if after.is_none() {
                let p = statement.param(at_most(end));
                statement.clause(format!("datetime <= {p}"));
            }
        }
    }
    statement.clause(SETTLED.into());
}

/// The keyset bound past a cursor.
fn keyset(statement: &mut Statement, query: &Query<'_>, after: &Cursor) {
    match query.order() {
        Order::IdAscending => {
            let p = statement.param(after.id);
            statement.clause(format!("id > {p}"));
        }
        Order::NewestFirst => {
            // A cursor's datetime is a stored one, a whole number; an edited one in between
            // two whole numbers starts the page at the lower.
            let (datetime, id) = match after.datetime.fract() == 0.0 {
                true => (after.datetime as i64, after.id),
                false => (at_least(after.datetime), i64::MIN),
            };
            let (d, i) = (statement.param(datetime), statement.param(id));
            statement.clause(format!("(datetime, id) < ({d}, {i})"));
        }
    }
}

fn where_clause(statement: &Statement) -> String {
    statement.clauses.join(" AND ")
}

/// Reads one page of `query` in [`RowSets`]' parts: the parts of [`crate::page::read`].
pub async fn read(
    conn: &mut Conn,
    names: &Names,
    query: Query<'_>,
    options: &PageOptions<'_>,
) -> Result<Vec<(String, Vec<f64>)>> {
    page::check(options)?;
    let after = options.cursor.map(|text| Cursor::decode(text, &query)).transpose()?;
    if !options.with_count {
        return render(conn, names, query, options, after).await;
    }
    // The page and its count see one snapshot, even with other processes writing.
    conn.client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await?;
    let result = render(conn, names, query, options, after).await;
    // A read-only transaction has nothing to undo: COMMIT ends it whether the read failed or not.
    let ended = conn.client.batch_execute("COMMIT").await;
    let page = result?;
    ended?;
    Ok(page)
}

async fn render(
    conn: &mut Conn,
    names: &Names,
    query: Query<'_>,
    options: &PageOptions<'_>,
    after: Option<Cursor>,
) -> Result<Vec<(String, Vec<f64>)>> {
    let mut select = Statement::default();
    filter(&mut select, &query, after.as_ref());
    if let Some(after) = &after {
        keyset(&mut select, &query, after);
    }
    let order = match query.order() {
        Order::IdAscending => "id",
        Order::NewestFirst => "datetime DESC, id DESC",
    };
    let cols = COLUMNS.map(quote).join(", ");
    let mut sql = format!("SELECT {cols} FROM {} WHERE {} ORDER BY {order}", names.queue, where_clause(&select));
    let limit = select.param(options.limit + 1);
    sql.push_str(&format!(" LIMIT {limit}"));
    if after.is_none() {
        let offset = select.param(options.offset);
        sql.push_str(&format!(" OFFSET {offset}"));
    }
    let statement = conn.statement(&sql).await?;
    let rows = conn.client.query(&statement, &select.params()).await?;
    let mut sets = RowSets::new(page::head(options));
    let mut events = Events::default();
    for row in &rows {
        if !events.take(&mut sets, &PgRow(row), options.limit)? {
            break;
        }
    }
    let total = match options.with_count {
        true => Some(match events.known_total(options, after) {
            Some(total) => total,
            None => count(conn, names, &query).await?,
        }),
        false => None,
    };
    Ok(page::finish(sets, &query, options, after, &events, total))
}

async fn count(conn: &mut Conn, names: &Names, query: &Query<'_>) -> Result<i64> {
    let mut select = Statement::default();
    filter(&mut select, query, None);
    let sql = format!("SELECT count(*) FROM {} WHERE {}", names.queue, where_clause(&select));
    let statement = conn.statement(&sql).await?;
    let row = conn.client.query_one(&statement, &select.params()).await?;
    Ok(row.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_bounds_select_the_same_whole_datetimes() {
        assert_eq!((at_least(1.5), at_most(1.5)), (2, 1));
        assert_eq!((at_least(2.0), at_most(2.0)), (2, 2));
        assert_eq!((at_least(f64::NEG_INFINITY), at_most(f64::INFINITY)), (i64::MIN, i64::MAX));
    }

    #[test]
    fn statements_number_their_parameters_in_order() {
        let query = Query::TimeRange(1.0, 9.0);
        let mut first = Statement::default();
        filter(&mut first, &query, None);
        assert_eq!(where_clause(&first), format!("datetime >= $1 AND datetime <= $2 AND {SETTLED}"));
        let cursor = Cursor { passed: 3, datetime: 5.0, id: 7 };
        let mut next = Statement::default();
        filter(&mut next, &query, Some(&cursor));
        keyset(&mut next, &query, &cursor);
        assert_eq!(where_clause(&next), format!("datetime >= $1 AND {SETTLED} AND (datetime, id) < ($2, $3)"));
        assert_eq!(next.params().len(), 3);
    }
}
