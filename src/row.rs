//! Stored rows on their way to JavaScript. Rows cross as JSON text that JavaScript parses once,
//! which for many rows is cheaper than building each object field by field through N-API; a
//! single row read by id crosses as its values instead (`rowById` in `src/lib.rs`), read by
//! [`cells`] as the text reads them, so that both agree on every value and every error.
//! `data` and `metadata` are already JSON text in the file, so they are spliced in (or handed
//! over) as they are, never parsed into values in Rust; but each is first scanned to be exactly
//! one JSON value (see [`crate::json`]): a file written by another program may hold anything
//! there, and text such as `{"a":2},"x",null,{},999` spliced in as it is would turn one row
//! into several.

use rusqlite::types::ValueRef;

use crate::error::{Error, Result};
use crate::json;
use crate::schema::COLUMNS;
use crate::statement::Row;

/// A row as the renderer reads it: its values by column index, in [`COLUMNS`] order. SQLite's
/// rows and PostgreSQL's (`crate::pg::read`) render through the same code, so the two backends
/// send the same text for the same row.
pub trait Values {
    fn value(&self, index: usize) -> Result<ValueRef<'_>>;
}

impl Values for Row<'_> {
    #[inline(always)]
    fn value(&self, index: usize) -> Result<ValueRef<'_>> {
        // The index is below `COLUMNS.len()`.
        Row::value(self, index as std::ffi::c_int)
    }
}

/// `SELECT` list matching [`write_values`] and [`cells`].
pub fn select_list() -> String {
    COLUMNS.join(", ")
}

/// What each column, in [`COLUMNS`] order, holds: JSON text (`data`, `metadata`), with what a
/// NULL reads as, or anything else. A NULL `metadata` reads as `{}`, as EventLite reads it.
pub(crate) const JSON_COLUMNS: [Option<(&str, Cell<'static>)>; 10] = {
    const EMPTY_OBJECT: Cell<'static> = Cell::Json(b"{}");
    [None, None, None, None, None, None, Some(("data", Cell::Null)), None, None, Some(("metadata", EMPTY_OBJECT))]
};

/// One stored value as a row hands it to JavaScript.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    Null,
    Integer(i64),
    /// Always finite: SQLite stores no NaN, and an infinity reads as null, as JSON has none.
    Real(f64),
    /// Stored text (or a blob's bytes) of a column that does not hold JSON, not necessarily
    /// UTF-8: bytes that are not read as U+FFFD.
    Text(&'a [u8]),
    /// The text of a `data` or `metadata` value, JSON unless another program wrote it wrong
    /// (see [`write_values`] and [`cells`]). Bytes that are not UTF-8 read as U+FFFD.
    Json(&'a [u8]),
}

impl Cell<'_> {
    /// The bytes of its text, or none for a number or a null.
    fn text_len(&self) -> usize {
        match self {
            Cell::Text(text) | Cell::Json(text) => text.len(),
            _ => 0,
        }
    }
}

/// A value of a column that does not hold JSON.
#[inline(always)]
pub(crate) fn plain(value: ValueRef<'_>) -> Cell<'_> {
    match value {
        ValueRef::Null => Cell::Null,
        ValueRef::Integer(n) => Cell::Integer(n),
        ValueRef::Real(f) if f.is_finite() => Cell::Real(f),
        ValueRef::Real(_) => Cell::Null,
        ValueRef::Text(bytes) | ValueRef::Blob(bytes) => Cell::Text(bytes),
    }
}

/// A value of a JSON column, as stored: its text; a number as it is (a number stored by hand
/// is JSON too); `null`, the column's NULL, for a NULL or text of only white space.
#[inline(always)]
fn stored_json<'a>(value: ValueRef<'a>, null: Cell<'static>) -> Cell<'a> {
    match value {
        ValueRef::Text(text) | ValueRef::Blob(text)
            if text.iter().all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r')) =>
        {
            null
        }
        ValueRef::Text(text) | ValueRef::Blob(text) => Cell::Json(text),
        ValueRef::Null => null,
        other => plain(other),
    }
}

/// A value of a JSON column, once its text is checked to be exactly one JSON value, and whether
/// that text is known to be ASCII: the scan learns it on the way, so rendering need not look
/// again.
#[inline(always)]
pub(crate) fn checked_json<'a>(
    value: ValueRef<'a>,
    null: Cell<'static>,
) -> std::result::Result<(Cell<'a>, bool), json::Invalid> {
    match value {
        ValueRef::Text(text) | ValueRef::Blob(text) => Ok(match json::whole(text)? {
            None => (null, false),
            Some(scanned) => (Cell::Json(text), scanned.ascii),
        }),
        _ => Ok((stored_json(value, null), false)),
    }
}

/// The error of a row whose JSON column `column` is not JSON.
pub(crate) fn corrupt(row: &impl Values, column: &'static str, invalid: json::Invalid) -> Error {
    Error::CorruptRow {
        id: row.value(0).and_then(|id| Ok(id.as_i64()?)).unwrap_or_default(),
        column,
        at: invalid.at,
        what: invalid.what,
    }
}

/// More than the text of a row's numbers, nulls, quotes and commas can be.
const FRAMING: usize = 512;

/// A row's ten values, selected with [`select_list`], for handing over one by one to
/// JavaScript, which parses `data` and `metadata` itself: so their text is not checked here,
/// and a row whose text [`write_values`] refuses as [`Error::CorruptRow`] is one JavaScript
/// cannot parse (the caller then asks [`write_values`] for the error). A row that
/// [`write_values`] refuses as [`Error::RowTooLarge`] is refused here too: text grows at most
/// sixfold as JSON (`\u0001`), and the rest of a row is a few hundred bytes, so only a row near
/// a sixth of the limit is rendered to measure it.
pub fn cells<'r>(row: &'r Row<'_>, limit: usize) -> Result<[Cell<'r>; COLUMNS.len()]> {
    let mut cells = [Cell::Null; COLUMNS.len()];
    let mut bytes = 0usize;
    for ((i, column), cell) in (0..).zip(JSON_COLUMNS).zip(cells.iter_mut()) {
        let value = row.value(i)?;
        *cell = match column {
            None => plain(value),
            Some((_, null)) => stored_json(value, null),
        };
        bytes += cell.text_len();
    }
    if bytes.saturating_mul(6).saturating_add(FRAMING) > limit {
        write_values(&mut String::new(), row, limit)?;
    }
    Ok(cells)
}

/// The columns that hold JSON text, which a row carries as parsed values.
pub fn json_columns() -> impl Iterator<Item = &'static str> {
    COLUMNS.into_iter().zip(JSON_COLUMNS).filter_map(|(column, json)| json.map(|_| column))
}

/// Appends one row's ten values, selected with [`select_list`], comma-separated and without
/// keys. Reads send rows this way, in a flat JSON array (one row, or many one after another),
/// except pages and the batches of streams and replays, which send them as [`crate::rowset`]
/// sets: JavaScript parses a flat array of values about a third faster than the same rows as
/// objects, then builds each row with one object literal (`lib/rows.js`): the keys are known,
/// so there is no point sending them. A `data` or `metadata` that is not JSON is
/// [`Error::CorruptRow`]; a row whose text would be longer than `limit` bytes is
/// [`Error::RowTooLarge`], found before a value that alone makes it so is even scanned. `out`
/// may then hold part of the row.
pub fn write_values(out: &mut String, row: &impl Values, limit: usize) -> Result<()> {
    let start = out.len();
    let too_large = || Ok::<_, Error>(Error::RowTooLarge { id: row.value(0)?.as_i64()?, limit });
    for (i, column) in (0..).zip(JSON_COLUMNS) {
        if i > 0 {
            out.push(',');
        }
        let value = row.value(i)?;
        let cell = match column {
            None => plain(value),
            Some((name, null)) => {
                if outgrows(value, limit.saturating_sub(out.len() - start)) {
                    return Err(too_large()?);
                }
                match checked_json(value, null).map_err(|invalid| corrupt(row, name, invalid))? {
                    (Cell::Json(text), true) => {
                        // SAFETY: the scan found every byte ASCII, so valid UTF-8.
                        out.push_str(unsafe { std::str::from_utf8_unchecked(text) });
                        continue;
                    }
                    (cell, _) => cell,
                }
            }
        };
        write_cell(out, cell);
    }
    if out.len() - start > limit {
        return Err(too_large()?);
    }
    Ok(())
}

/// Whether a JSON column's value renders to more than `room` bytes: its text, unless it is only
/// white space (which renders as a NULL does). Looked at only when the text is that long.
pub(crate) fn outgrows(value: ValueRef<'_>, room: usize) -> bool {
    match value {
        ValueRef::Text(bytes) | ValueRef::Blob(bytes) if bytes.len() > room => {
            bytes.iter().any(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        }
        _ => false,
    }
}

/// One value as JSON: text becomes a JSON string; numbers and JSON text stay as they are,
/// with U+FFFD for bytes that are not UTF-8.
#[inline(always)]
pub(crate) fn write_cell(out: &mut String, cell: Cell<'_>) {
    match cell {
        Cell::Null => out.push_str("null"),
        Cell::Integer(n) => out.push_str(itoa::Buffer::new().format(n)),
        Cell::Real(f) => out.push_str(ryu::Buffer::new().format_finite(f)),
        Cell::Text(text) => write_text(out, text),
        // SAFETY: every byte is ASCII, so valid UTF-8.
        Cell::Json(text) if text.is_ascii() => out.push_str(unsafe { std::str::from_utf8_unchecked(text) }),
        Cell::Json(text) => out.push_str(&String::from_utf8_lossy(text)),
    }
}

/// Appends stored text as a JSON string literal. Most stored strings (commands, users, ids)
/// are plain ASCII: one pass over the bytes proves it, and they are copied as they are,
/// without UTF-8 validation or escaping.
fn write_text(out: &mut String, bytes: &[u8]) {
    if !bytes.iter().any(|&b| json::STOP[b as usize]) {
        out.push('"');
        // SAFETY: no byte is 0x80 or above: ASCII, so valid UTF-8.
        out.push_str(unsafe { std::str::from_utf8_unchecked(bytes) });
        out.push('"');
        return;
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => write_string(out, text),
        Err(_) => write_string(out, &String::from_utf8_lossy(bytes)),
    }
}

/// Appends `s` as a JSON string literal.
pub fn write_string(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, &b) in s.as_bytes().iter().enumerate() {
        let escape: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x00..=0x1f => "",
            _ => continue,
        };
        // Every byte matched above is ASCII, so `i` is a char boundary.
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 0xf) as usize] as char);
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stored text as a row renders it.
    fn quoted(bytes: &[u8]) -> String {
        let mut out = String::new();
        write_text(&mut out, bytes);
        out
    }

    #[test]
    fn json_columns_are_data_and_metadata() {
        for (json, column) in JSON_COLUMNS.iter().zip(COLUMNS) {
            assert_eq!(json.map(|(name, _)| name), Some(column).filter(|c| matches!(*c, "data" | "metadata")));
        }
    }

    #[test]
    fn strings_escape_exactly_as_json_requires() {
        for s in ["", "plain", "quote \" back \\ slash", "tab\tnl\ncr\r", "\u{0}\u{1f}", "é 😀 \u{2028}", "\u{7f}"] {
            let text = quoted(s.as_bytes());
            let back: String = serde_json::from_str(&text).unwrap();
            assert_eq!(back, s);
        }
        assert_eq!(quoted(b"\x01"), "\"\\u0001\"");
    }

    #[test]
    fn text_that_is_not_utf8_renders_with_replacement_characters() {
        let back: String = serde_json::from_str(&quoted(b"a\xffb\"")).unwrap();
        assert_eq!(back, "a\u{fffd}b\"");
    }

    #[test]
    fn rows_render_as_flat_values_with_data_spliced() {
        let conn = crate::connection::Connection::new(rusqlite::Connection::open_in_memory().unwrap());
        crate::schema::ensure_table(&conn).unwrap();
        conn.execute(
            "INSERT INTO queue (datetime, user, ip, cmd, data, correlation_id, metadata)
             VALUES (5, 'u\"', NULL, 'go', '{\"a\":[1,2]}', 'c', NULL)",
            [],
        )
        .unwrap();
        let sql: &'static str = format!("SELECT {} FROM queue", select_list()).leak();
        let mut stmt = conn.cached(sql).unwrap();
        let mut rows = stmt.rows();
        let mut flat = String::from("[");
        write_values(&mut flat, &rows.next().unwrap().unwrap(), usize::MAX).unwrap();
        flat.push(']');
        let values: Vec<serde_json::Value> = serde_json::from_str(&flat).unwrap();
        let expected = serde_json::json!([1, 1, 5, "u\"", null, "go", {"a": [1, 2]}, "c", null, {}]);
        assert_eq!(serde_json::Value::Array(values), expected, "the values, in column order; NULL metadata is {{}}");
    }

    /// The values of a row holding `data` and `metadata` as stored, or the error reading it.
    fn render(data: rusqlite::types::Value, metadata: rusqlite::types::Value) -> Result<Vec<serde_json::Value>> {
        render_within(data, metadata, usize::MAX)
    }

    fn render_within(
        data: rusqlite::types::Value,
        metadata: rusqlite::types::Value,
        limit: usize,
    ) -> Result<Vec<serde_json::Value>> {
        let conn = crate::connection::Connection::new(rusqlite::Connection::open_in_memory().unwrap());
        crate::schema::ensure_table(&conn).unwrap();
        conn.execute(
            "INSERT INTO queue (id, datetime, cmd, data, metadata) VALUES (7, 1, 'go', ?1, ?2)",
            rusqlite::params![data, metadata],
        )
        .unwrap();
        let sql: &'static str = format!("SELECT {} FROM queue", select_list()).leak();
        let mut stmt = conn.cached(sql).unwrap();
        let mut rows = stmt.rows();
        let row = rows.next().unwrap().unwrap();
        let mut flat = String::from("[");
        let as_text = write_values(&mut flat, &row, limit);
        flat.push(']');
        // The same row handed over value by value, each value parsed as JavaScript parses it,
        // reads the same; a row too large as text is too large this way too, and a row whose
        // text is corrupt has a value that does not parse.
        let as_values = cells(&row, limit).map(|cells| {
            cells.map(|cell| {
                let mut text = String::new();
                write_cell(&mut text, cell);
                serde_json::from_str::<serde_json::Value>(&text).ok()
            })
        });
        match (&as_text, &as_values) {
            (Ok(()), Ok(values)) => {
                let values: Vec<_> = values.iter().map(|value| value.clone().expect("parses")).collect();
                assert_eq!(serde_json::from_str::<Vec<serde_json::Value>>(&flat).unwrap(), values);
            }
            (Err(Error::CorruptRow { .. }), Ok(values)) => assert!(values.contains(&None), "{values:?}"),
            (Err(text), Err(values)) => assert_eq!((text.code(), text.row_id()), (values.code(), values.row_id())),
            _ => panic!("as text {as_text:?}, as values {as_values:?}"),
        }
        as_text?;
        Ok(serde_json::from_str(&flat).expect("whatever is stored, a rendered row is JSON"))
    }

    #[test]
    fn stored_text_that_is_not_one_json_value_is_a_corrupt_row_never_more_values() {
        use rusqlite::types::Value::{Blob, Integer, Null, Real, Text};
        let text = |s: &str| Text(s.into());
        for (data, metadata) in [
            (text(r#"{"amount":2},"acct",null,{}, 999"#), text("{}")),
            (text("hello world"), text("{}")),
            (text(r#"{"a":1}"#), text("{} {}")),
            (text("[1,"), Null),
            (text("\"tab\tinside\""), Null),
            (Blob(b"{\"a\":\xff}".to_vec()), Null),
        ] {
            let err = render(data.clone(), metadata).unwrap_err();
            assert_eq!(err.code(), "ERR_CORRUPT_ROW", "{data:?}");
            assert_eq!(err.row_id(), Some(7));
            assert!(err.to_string().starts_with("event 7 cannot be read"), "{err}");
        }
        let values = |data, metadata| {
            let values = render(data, metadata).unwrap();
            [values[6].clone(), values[9].clone()]
        };
        assert_eq!(values(Null, Null), [serde_json::Value::Null, serde_json::json!({})]);
        assert_eq!(values(text(" "), text("")), [serde_json::Value::Null, serde_json::json!({})]);
        assert_eq!(values(Integer(5), Real(1.5)), [serde_json::json!(5), serde_json::json!(1.5)]);
        let pretty = values(text(" {\n \"a\" : [1, \"é\"]\n} "), Blob(b"{\"b\":\"\xffx\"}".to_vec()));
        assert_eq!(pretty, [serde_json::json!({"a": [1, "é"]}), serde_json::json!({"b": "\u{fffd}x"})]);
    }

    #[test]
    fn a_row_longer_than_the_limit_is_too_large_and_blank_text_does_not_count() {
        use rusqlite::types::Value::Text;
        let long = Text(format!("\"{}\"", "a".repeat(200)));
        for (data, metadata) in [(long.clone(), Text("{}".into())), (Text("{}".into()), long.clone())] {
            let err = render_within(data, metadata, 150).unwrap_err();
            assert_eq!((err.code(), err.row_id()), ("ERR_ROW_TOO_LARGE", Some(7)));
        }
        assert!(render_within(long, Text("{}".into()), 300).is_ok());
        let blank = render_within(Text(" ".repeat(1000)), Text("\n".repeat(1000)), 150).unwrap();
        assert_eq!((&blank[6], &blank[9]), (&serde_json::Value::Null, &serde_json::json!({})));
    }
}
