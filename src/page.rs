//! Paginated reads: one page of a query, the query's total, and where the next page starts,
//! rendered as one JSON text so that a page crosses to JavaScript in one piece:
//! `{"events":[…],"totalCount":…,"hasMore":…,"nextOffset":…,"nextCursor":…}`, where `events`
//! is the array of values of the page's rows, whose cells cross beside it (see
//! [`crate::rowset`]); a page of very large rows continues in further [`RowSets`].
//!
//! A page reads `limit + 1` rows: the extra one only says whether more follow, so `hasMore` is
//! exact without counting. A cursor is keyset pagination: it holds the sort key of the last row
//! of its page, and the next page starts with an index seek past that key (`id > ?`, or
//! `(datetime, id) < (?, ?)`), so a page deep in a large result costs what the first one costs.

use std::fmt::Write as _;

use once_cell::sync::Lazy;
use rusqlite::types::ValueRef;

use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::row::{select_list, Values};
use crate::rowset::{RowSets, ROW_BYTES};
use crate::statement::Statement;

/// The largest `limit` a page accepts.
pub const MAX_LIMIT: i64 = 10_000;

/// The `limit` of a page when none is given.
pub const DEFAULT_LIMIT: i64 = 100;

/// JavaScript's `Number.MAX_SAFE_INTEGER`: the ids and offsets a cursor carries are numbers
/// there.
const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// The most rows a cursor may say it has passed: `nextOffset` (that plus a limit) stays a safe
/// integer.
const MAX_PASSED: i64 = MAX_SAFE_INTEGER - MAX_LIMIT;

/// The five paginated queries, each with its arguments.
#[derive(Debug, Clone, Copy)]
pub enum Query<'a> {
    Correlation(&'a str),
    Children(i64),
    User(&'a str),
    Cmd(&'a str),
    /// Inclusive bounds on `datetime`.
    TimeRange(f64, f64),
}

/// Where a page starts and what it includes.
#[derive(Debug, Clone, Copy)]
pub struct PageOptions<'a> {
    pub limit: i64,
    pub offset: i64,
    /// The `nextCursor` of an earlier page of the same query; the page starts after it.
    pub cursor: Option<&'a str>,
    pub with_count: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Order {
    IdAscending,
    /// `datetime` descending, then `id` descending.
    NewestFirst,
}

/// One query's `WHERE` clauses. Every statement numbers its parameters alike: `?1` and `?2` the
/// query's arguments, `?3` and `?4` the cursor's key (`datetime`, `id`), `?5` the limit and
/// `?6` the offset; a statement that leaves a number out simply does not use it.
struct Shape {
    filter: &'static str,
    /// The filter of the pages after a cursor, which adds the keyset bound.
    after: &'static str,
    order: Order,
}

/// In the order of [`Query::index`].
const SHAPES: [Shape; 5] = [
    Shape { filter: "correlation_id = ?1", after: "correlation_id = ?1 AND id > ?4", order: Order::IdAscending },
    Shape { filter: "causation_id = ?1", after: "causation_id = ?1 AND id > ?4", order: Order::IdAscending },
    Shape { filter: "user = ?1", after: "user = ?1 AND (datetime, id) < (?3, ?4)", order: Order::NewestFirst },
    Shape { filter: "cmd = ?1", after: "cmd = ?1 AND (datetime, id) < (?3, ?4)", order: Order::NewestFirst },
    // After a cursor the upper bound is the cursor's key, which lies inside the range already
    // (the cursor's fingerprint holds the range). Repeating `datetime <= ?2` would give SQLite
    // two upper bounds to choose from; should it seek from the range's end, it would step over
    // every row before the cursor.
    Shape {
        filter: "datetime >= ?1 AND datetime <= ?2",
        after: "datetime >= ?1 AND (datetime, id) < (?3, ?4)",
        order: Order::NewestFirst,
    },
];

struct Sql {
    first: String,
    after: String,
    count: String,
}

/// The statements, built once: [`Connection::cached`] knows a statement by its text's address.
static SQL: Lazy<Vec<Sql>> = Lazy::new(|| {
    let cols = select_list();
    SHAPES
        .iter()
        .map(|shape| {
            let order = match shape.order {
                Order::IdAscending => "id",
                Order::NewestFirst => "datetime DESC, id DESC",
            };
            Sql {
                first: format!("SELECT {cols} FROM queue WHERE {} ORDER BY {order} LIMIT ?5 OFFSET ?6", shape.filter),
                after: format!("SELECT {cols} FROM queue WHERE {} ORDER BY {order} LIMIT ?5", shape.after),
                count: format!("SELECT COUNT(*) FROM queue WHERE {}", shape.filter),
            }
        })
        .collect()
});

impl Query<'_> {
    pub(crate) fn index(&self) -> usize {
        match self {
            Query::Correlation(_) => 0,
            Query::Children(_) => 1,
            Query::User(_) => 2,
            Query::Cmd(_) => 3,
            Query::TimeRange(..) => 4,
        }
    }

    pub(crate) fn order(&self) -> Order {
        SHAPES[self.index()].order
    }

    fn sql(&self) -> &'static Sql {
        &SQL[self.index()]
    }

    /// Binds the query's arguments, `?1` and `?2`.
    fn bind(&self, stmt: &mut Statement<'_>) -> Result<()> {
        match *self {
            Query::Correlation(text) | Query::User(text) | Query::Cmd(text) => stmt.bind(1, text),
            Query::Children(id) => stmt.bind(1, id),
            Query::TimeRange(start, end) => {
                stmt.bind(1, start)?;
                stmt.bind(2, end)
            }
        }
    }

    /// A hash of the method and its arguments, carried in cursors so that a cursor given to
    /// another query is refused instead of misread. FNV-1a: stable across builds and versions,
    /// which a cursor kept by a client needs; it guards against mistakes, not forgery.
    fn fingerprint(&self) -> u64 {
        let mut hash = Fnv::new();
        hash.write(&[self.index() as u8]);
        match *self {
            Query::Correlation(text) | Query::User(text) | Query::Cmd(text) => {
                hash.write(&(text.len() as u64).to_le_bytes());
                hash.write(text.as_bytes());
            }
            Query::Children(id) => hash.write(&id.to_le_bytes()),
            // `+ 0.0` turns -0 into 0: the same range either way.
            Query::TimeRange(start, end) => {
                hash.write(&(start + 0.0).to_bits().to_le_bytes());
                hash.write(&(end + 0.0).to_bits().to_le_bytes());
            }
        }
        hash.finish()
    }
}

struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Where a page ends: the sort key of its last row, and how many rows of the result come
/// before the next page (so that `nextOffset` stays meaningful along a walk by cursor).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Cursor {
    pub(crate) passed: i64,
    /// Unused (0) in id order.
    pub(crate) datetime: f64,
    pub(crate) id: i64,
}

impl Cursor {
    /// `<fingerprint>_<passed>_<id>` in id order, `<fingerprint>_<passed>_<datetime>_<id>` in
    /// time order: only characters that need no escaping in JSON or in a URL.
    fn encode(&self, query: &Query<'_>) -> String {
        let mut text = format!("{:016x}_{}_", query.fingerprint(), self.passed);
        if query.order() == Order::NewestFirst {
            // Display of an f64 is the shortest text that parses back to the same value.
            let _ = write!(text, "{}_", self.datetime);
        }
        let _ = write!(text, "{}", self.id);
        text
    }

    pub(crate) fn decode(text: &str, query: &Query<'_>) -> Result<Cursor> {
        let malformed = || {
            let shown: String = text.chars().take(40).collect();
            Error::InvalidOption(format!("malformed cursor {shown:?}: pass back a page's nextCursor unchanged"))
        };
        let mut parts = text.split('_');
        let fingerprint = parts
            .next()
            .filter(|p| p.len() == 16)
            .and_then(|p| u64::from_str_radix(p, 16).ok())
            .ok_or_else(malformed)?;
        let passed: i64 = parts.next().and_then(|p| p.parse().ok()).filter(|n| *n >= 0).ok_or_else(malformed)?;
        let datetime: f64 = match query.order() {
            Order::IdAscending => 0.0,
            Order::NewestFirst => parts.next().and_then(|p| p.parse().ok()).ok_or_else(malformed)?,
        };
        let id: i64 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(malformed)?;
        if parts.next().is_some() {
            return Err(malformed());
        }
        if fingerprint != query.fingerprint() {
            return Err(Error::InvalidOption(
                "this cursor belongs to another query: a cursor only continues the method and arguments that returned it"
                    .into(),
            ));
        }
        let cursor = Cursor { passed, datetime, id };
        cursor.check(query)?;
        Ok(cursor)
    }

    /// Refuses a cursor that no page of `query` could have returned. The fingerprint only says
    /// which query a cursor claims; its numbers are checked here, so that an edited cursor can
    /// only narrow its query: the keyset bound of a time range replaces the range's upper end,
    /// and `nextOffset` adds to `passed`.
    fn check(&self, query: &Query<'_>) -> Result<()> {
        let out_of_range = |what: String| {
            Error::InvalidOption(format!("cursor out of range: {what}; pass back a page's nextCursor unchanged"))
        };
        if !(0..=MAX_PASSED).contains(&self.passed) {
            return Err(out_of_range(format!("{} rows passed", self.passed)));
        }
        if !(-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER).contains(&self.id) {
            return Err(out_of_range(format!("id {}", self.id)));
        }
        let inside = match *query {
            // The key of a row of the range, whose datetime the range holds.
            Query::TimeRange(start, end) => start <= self.datetime && self.datetime <= end,
            _ => !self.datetime.is_nan(),
        };
        if !inside {
            return Err(out_of_range(format!("datetime {} outside the query", self.datetime)));
        }
        Ok(())
    }

    /// The key of a row selected with `select_list`; `passed` is the page's to fill in.
    fn at(row: &impl Values) -> Result<Cursor> {
        let id = row.value(0)?.as_i64()?;
        let datetime = match row.value(2)? {
            ValueRef::Integer(n) => n as f64,
            ValueRef::Real(f) => f,
            _ => {
                return Err(Error::SchemaMismatch(format!(
                    "event {id} has a datetime that is not a number; pages cannot continue past it"
                )))
            }
        };
        Ok(Cursor { passed: 0, datetime, id })
    }
}

pub(crate) fn check(options: &PageOptions<'_>) -> Result<()> {
    if !(1..=MAX_LIMIT).contains(&options.limit) {
        return Err(Error::InvalidOption(format!(
            "limit must be an integer from 1 to {MAX_LIMIT}, got {}",
            options.limit
        )));
    }
    if options.offset < 0 {
        return Err(Error::InvalidOption(format!("offset must be an integer >= 0, got {}", options.offset)));
    }
    if options.cursor.is_some() && options.offset != 0 {
        return Err(Error::InvalidOption(
            "give either a cursor or an offset, not both: the cursor already says where the page starts".into(),
        ));
    }
    Ok(())
}

/// Reads one page of `query`: its text and its rows' cells, in [`RowSets`].
pub fn read(conn: &Connection, query: Query<'_>, options: &PageOptions<'_>) -> Result<Vec<(String, Vec<f64>)>> {
    check(options)?;
    let after = options.cursor.map(|text| Cursor::decode(text, &query)).transpose()?;
    if options.with_count {
        // The page and its count see the same snapshot, even with another process writing.
        in_one_snapshot(conn, || render(conn, query, options, after))
    } else {
        render(conn, query, options, after)
    }
}

fn render(
    conn: &Connection,
    query: Query<'_>,
    options: &PageOptions<'_>,
    after: Option<Cursor>,
) -> Result<Vec<(String, Vec<f64>)>> {
    let mut sets = RowSets::new(head(options));
    let events = write_events(&mut sets, conn, query, options, after)?;
    let total = match options.with_count {
        true => Some(events.known_total(options, after).map_or_else(|| count(conn, query), Ok)?),
        false => None,
    };
    Ok(finish(sets, &query, options, after, &events, total))
}

/// The start of a page's text, its rows to follow.
pub(crate) fn head(options: &PageOptions<'_>) -> String {
    let mut head = String::with_capacity(ROW_BYTES * (options.limit.min(1000) as usize + 1));
    head.push_str("{\"events\":[");
    head
}

/// Closes a page's rows and writes the rest: `total` is the query's count when the page
/// reports one (`withCount`), `after` the cursor it started from.
pub(crate) fn finish(
    sets: RowSets,
    query: &Query<'_>,
    options: &PageOptions<'_>,
    after: Option<Cursor>,
    events: &Events,
    total: Option<i64>,
) -> Vec<(String, Vec<f64>)> {
    let passed = after.map_or(options.offset, |c| c.passed);
    let mut tail = String::with_capacity(256);
    let out = &mut tail;
    out.push_str(",\"totalCount\":");
    match total {
        Some(total) => out.push_str(itoa::Buffer::new().format(total)),
        None => out.push_str("null"),
    }
    match events.last.filter(|_| events.more) {
        Some(last) => {
            let next = passed + options.limit;
            out.push_str(",\"hasMore\":true,\"nextOffset\":");
            out.push_str(itoa::Buffer::new().format(next));
            out.push_str(",\"nextCursor\":\"");
            out.push_str(&Cursor { passed: next, ..last }.encode(query));
            out.push_str("\"}");
        }
        None => out.push_str(",\"hasMore\":false,\"nextOffset\":null,\"nextCursor\":null}"),
    }
    sets.finish(&tail)
}

/// The rows of a page, as its read takes them (`limit + 1` at most, see the module).
#[derive(Clone, Copy, Default)]
pub(crate) struct Events {
    rows: i64,
    /// Whether a further row exists.
    more: bool,
    /// The key of the last row written, when the page is full.
    last: Option<Cursor>,
}

impl Events {
    /// Writes `row` into the page, unless the page is full: then it only says that more rows
    /// follow, and false tells the read to stop.
    pub(crate) fn take(&mut self, sets: &mut RowSets, row: &impl Values, limit: i64) -> Result<bool> {
        if self.rows == limit {
            self.more = true;
            return Ok(false);
        }
        sets.push(row)?;
        self.rows += 1;
        if self.rows == limit {
            self.last = Some(Cursor::at(row)?);
        }
        Ok(true)
    }

    /// The query's total when the page tells it without counting: a last page reached by
    /// offset holds the rest of the result. Not one after a cursor: rows can appear before a
    /// cursor (an event stored with an older datetime), so the rows it has passed are no exact
    /// count.
    pub(crate) fn known_total(&self, options: &PageOptions<'_>, after: Option<Cursor>) -> Option<i64> {
        (!self.more && after.is_none() && (self.rows > 0 || options.offset == 0)).then_some(options.offset + self.rows)
    }
}

/// Writes up to `limit` rows.
fn write_events(
    sets: &mut RowSets,
    conn: &Connection,
    query: Query<'_>,
    options: &PageOptions<'_>,
    after: Option<Cursor>,
) -> Result<Events> {
    let sql = query.sql();
    let mut stmt = conn.cached(if after.is_some() { &sql.after } else { &sql.first })?;
    query.bind(&mut stmt)?;
    match after {
        Some(key) => {
            stmt.bind(3, key.datetime)?;
            stmt.bind(4, key.id)?;
        }
        None => stmt.bind(6, options.offset)?,
    }
    stmt.bind(5, options.limit + 1)?;
    let mut rows = stmt.rows();
    let mut events = Events::default();
    while let Some(row) = rows.next()? {
        if !events.take(sets, &row, options.limit)? {
            break;
        }
    }
    Ok(events)
}

fn count(conn: &Connection, query: Query<'_>) -> Result<i64> {
    let mut stmt = conn.cached(&query.sql().count)?;
    query.bind(&mut stmt)?;
    Ok(stmt.integers()?.map_or(0, |[total]| total))
}

/// Runs `read` inside one read transaction, unless the connection is in one already.
fn in_one_snapshot<T>(conn: &Connection, read: impl FnOnce() -> Result<T>) -> Result<T> {
    if !conn.is_autocommit() {
        return read();
    }
    conn.cached("BEGIN")?.execute(|_| Ok(()))?;
    let result = read();
    // A read transaction has nothing to undo: COMMIT ends it whether the read failed or not.
    let ended = conn.cached("COMMIT").and_then(|mut s| s.execute(|_| Ok(())));
    let value = result?;
    ended?;
    Ok(value)
}

/// The plan SQLite picks for a query's first pages, or with `keyset` for the pages after a
/// cursor: `EXPLAIN QUERY PLAN`'s detail lines. For the docs and the tests, which check that
/// a keyset page starts with an index seek.
pub fn query_plan(conn: &Connection, query: Query<'_>, keyset: bool) -> Result<Vec<String>> {
    let sql = query.sql();
    let text = format!("EXPLAIN QUERY PLAN {}", if keyset { &sql.after } else { &sql.first });
    let mut stmt = conn.prepare(&text)?;
    let mut rows = stmt.raw_query();
    let mut details = Vec::new();
    while let Some(row) = rows.next()? {
        details.push(row.get(3)?);
    }
    Ok(details)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Config, Store, MEMORY};
    use serde_json::Value;
    use std::collections::HashMap;

    /// Events `1..=n`: correlation `c{i % 2}`, user `u{i % 3}`, cmd `go`, datetime `i / 4` (so
    /// four events share each datetime), each after the first a child of event 1.
    fn store_with(n: usize, indexes: &[&str]) -> Store {
        let mut config = Config::new(MEMORY);
        config.indexes = indexes.iter().map(|k| (k.to_string(), true)).collect::<HashMap<_, _>>();
        let mut store = Store::open(config).unwrap();
        let events: Vec<String> = (1..=n)
            .map(|i| {
                let parent = if i == 1 { "null" } else { "1" };
                format!(r#"["go",{{"i":{i}}},"u{}","",1,"c{}",{parent},{{}},{}]"#, i % 3, i % 2, i / 4)
            })
            .collect();
        store.append(&format!("[{}]", events.join(","))).unwrap();
        store
    }

    fn options(limit: i64) -> PageOptions<'static> {
        PageOptions { limit, offset: 0, cursor: None, with_count: true }
    }

    fn page(store: &Store, query: Query<'_>, options: &PageOptions<'_>) -> Value {
        let sets = read(store.conn(), query, options).unwrap();
        assert_eq!(sets.len(), 1, "a page of small rows is one set");
        let (text, cells) = &sets[0];
        let mut page: Value = serde_json::from_str(text).unwrap();
        page["ids"] = cells.chunks(10).map(|row| row[0] as i64).collect();
        page
    }

    fn ids(page: &Value) -> Vec<i64> {
        page["ids"].as_array().unwrap().iter().map(|id| id.as_i64().unwrap()).collect()
    }

    /// Every id of a query, walked by offset and by cursor; both walks must agree.
    fn walk(store: &Store, query: Query<'_>, limit: i64) -> Vec<i64> {
        let (mut by_offset, mut by_cursor) = (Vec::new(), Vec::new());
        let mut opts = options(limit);
        loop {
            let p = page(store, query, &opts);
            by_offset.extend(ids(&p));
            match p["nextOffset"].as_i64() {
                Some(next) => opts.offset = next,
                None => break,
            }
        }
        let mut cursor: Option<String> = None;
        loop {
            let opts = PageOptions { cursor: cursor.as_deref(), ..options(limit) };
            let p = page(store, query, &opts);
            by_cursor.extend(ids(&p));
            match p["nextCursor"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => break,
            }
        }
        assert_eq!(by_offset, by_cursor, "{query:?}");
        by_offset
    }

    #[test]
    fn pages_follow_each_querys_order_with_ties_broken_by_id() {
        let store = store_with(30, &[]);
        let even: Vec<i64> = (1..=30).filter(|i| i % 2 == 0).collect();
        assert_eq!(walk(&store, Query::Correlation("c0"), 4), even);
        assert_eq!(walk(&store, Query::Children(1), 7), (2..=30).collect::<Vec<_>>());
        // Newest first: datetime descending, then id descending among equal datetimes.
        let mut newest: Vec<i64> = (1..=30).filter(|i| i % 3 == 1).collect();
        newest.sort_by_key(|&i| std::cmp::Reverse((i / 4, i)));
        assert_eq!(walk(&store, Query::User("u1"), 3), newest);
        assert_eq!(walk(&store, Query::Cmd("go"), 5), (1..=30).rev().collect::<Vec<_>>());
        // Inclusive bounds: datetimes 2..=3 are ids 8..=15.
        assert_eq!(walk(&store, Query::TimeRange(2.0, 3.0), 3), (8..=15).rev().collect::<Vec<_>>());
        assert_eq!(walk(&store, Query::Cmd("nothing"), 5), Vec::<i64>::new());
    }

    #[test]
    fn a_page_reports_its_total_and_where_the_next_starts() {
        let store = store_with(10, &[]);
        let first = page(&store, Query::Children(1), &options(4));
        assert_eq!(ids(&first), [2, 3, 4, 5]);
        assert_eq!((first["totalCount"].as_i64(), first["hasMore"].as_bool()), (Some(9), Some(true)));
        assert_eq!(first["nextOffset"], 4);
        let last = page(&store, Query::Children(1), &PageOptions { offset: 8, ..options(4) });
        assert_eq!(ids(&last), [10]);
        assert_eq!(
            (last["hasMore"].as_bool(), last["nextOffset"].is_null(), last["nextCursor"].is_null()),
            (Some(false), true, true)
        );
        // A page that ends exactly at the last row has no more: the extra row is what says so.
        let exact = page(&store, Query::Children(1), &PageOptions { offset: 5, ..options(4) });
        assert_eq!((ids(&exact), exact["hasMore"].as_bool()), (vec![7, 8, 9, 10], Some(false)));
        // The total is the same whether counted or taken from a last page, and past the end.
        for offset in [0, 5, 8, 9, 20] {
            let p =
                page(&store, Query::Children(1), &PageOptions { offset, ..options(if offset == 0 { 100 } else { 4 }) });
            assert_eq!(p["totalCount"], 9, "offset {offset}");
        }
        let uncounted = page(&store, Query::Children(1), &PageOptions { with_count: false, ..options(4) });
        assert!(uncounted["totalCount"].is_null());
        assert_eq!(uncounted["hasMore"], true);
        // Along a walk by cursor, nextOffset still counts the rows passed.
        let cursor = first["nextCursor"].as_str().unwrap();
        let second = page(&store, Query::Children(1), &PageOptions { cursor: Some(cursor), ..options(4) });
        assert_eq!((ids(&second), second["nextOffset"].as_i64()), (vec![6, 7, 8, 9], Some(8)));
    }

    #[test]
    fn cursors_of_other_queries_and_malformed_cursors_are_refused() {
        let store = store_with(10, &[]);
        let by_user = page(&store, Query::User("u1"), &options(1));
        let cursor = by_user["nextCursor"].as_str().unwrap().to_string();
        let refuse = |query: Query<'_>, cursor: &str, offset: i64| {
            let opts = PageOptions { cursor: Some(cursor), offset, ..options(2) };
            read(store.conn(), query, &opts).unwrap_err()
        };
        for other in [Query::User("u2"), Query::Cmd("u1"), Query::Correlation("u1"), Query::TimeRange(0.0, 9.0)] {
            let err = refuse(other, &cursor, 0);
            assert_eq!(err.code(), "ERR_INVALID_OPTION");
            assert!(err.to_string().contains("another query") || err.to_string().contains("malformed"), "{err}");
        }
        for bad in ["", "x", "0_0_0", &cursor[1..], &format!("{cursor}_1"), &cursor.replace('_', "-")] {
            assert_eq!(refuse(Query::User("u1"), bad, 0).code(), "ERR_INVALID_OPTION", "{bad}");
        }
        assert!(refuse(Query::User("u1"), &cursor, 3).to_string().contains("not both"));
        for limit in [0, MAX_LIMIT + 1] {
            assert_eq!(
                read(store.conn(), Query::User("u1"), &options(limit)).unwrap_err().code(),
                "ERR_INVALID_OPTION"
            );
        }
    }

    #[test]
    fn an_edited_cursor_only_narrows_its_query() {
        let store = store_with(40, &[]);
        let range = Query::TimeRange(2.0, 5.0);
        let first = page(&store, range, &options(3));
        let cursor = first["nextCursor"].as_str().unwrap().to_string();
        let parts: Vec<&str> = cursor.split('_').collect();
        let edited = |passed: &str, datetime: &str, id: &str| format!("{}_{passed}_{datetime}_{id}", parts[0]);
        let refuse = |text: String| {
            let opts = PageOptions { cursor: Some(&text), ..options(3) };
            let err = read(store.conn(), range, &opts).unwrap_err();
            assert_eq!(err.code(), "ERR_INVALID_OPTION", "{text}");
            assert!(err.to_string().contains("out of range"), "{text}: {err}");
        };
        // Datetimes past either end of the range (here past the log's newest), or not a number.
        for datetime in ["5.5", "9", "1e300", "inf", "1.9", "-inf", "NaN"] {
            refuse(edited(parts[1], datetime, parts[3]));
        }
        // A count that would make nextOffset wrap, or pass JavaScript's safe integers.
        for passed in [i64::MAX.to_string(), (MAX_PASSED + 1).to_string()] {
            refuse(edited(&passed, parts[2], parts[3]));
        }
        refuse(edited(parts[1], parts[2], &(MAX_SAFE_INTEGER + 1).to_string()));
        // Inside the range, an edited cursor is a narrower page of the same query.
        let narrowed = edited(&MAX_PASSED.to_string(), "5", "21");
        let p = page(&store, range, &PageOptions { cursor: Some(&narrowed), ..options(3) });
        assert_eq!((ids(&p), p["nextOffset"].as_i64()), (vec![20, 19, 18], Some(MAX_PASSED + 3)));
        // Every other query keeps its filter whatever the cursor says.
        let by_user = page(&store, Query::User("u1"), &options(2));
        let user_parts: Vec<String> = by_user["nextCursor"].as_str().unwrap().split('_').map(str::to_string).collect();
        let far = format!("{}_0_1e300_{MAX_SAFE_INTEGER}", user_parts[0]);
        let p = page(&store, Query::User("u1"), &PageOptions { cursor: Some(&far), ..options(100) });
        assert!(ids(&p).iter().all(|id| id % 3 == 1), "{:?}", ids(&p));
    }

    #[test]
    fn a_cursor_page_starts_with_an_index_seek() {
        let store = store_with(1, &["user_datetime", "datetime", "cmd"]);
        let plan = |query: Query<'_>| query_plan(store.conn(), query, true).unwrap().join(" | ");
        let seeks = [
            (Query::Correlation("c"), "idx_correlation_id (correlation_id=? AND rowid>?)"),
            (Query::Children(1), "idx_causation_id (causation_id=? AND rowid>?)"),
            (Query::User("u"), "idx_composite_user_datetime (user=? AND "),
            (Query::TimeRange(0.0, 1.0), "idx_datetime (datetime>? AND datetime<?)"),
        ];
        for (query, expected) in seeks {
            let plan = plan(query);
            assert!(plan.starts_with("SEARCH queue USING INDEX ") && plan.contains(expected), "{query:?}: {plan}");
            assert!(!plan.contains("TEMP B-TREE"), "{query:?} sorts: {plan}");
        }
    }
}
