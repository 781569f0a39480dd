//! Stored rows on their way to JavaScript. Rows cross as JSON text that JavaScript parses
//! once, which for many rows is cheaper than building each object field by field through
//! N-API. `data` and `metadata` are already JSON text in the file, so they are spliced in as
//! they are, never parsed in Rust. A single row read by id crosses as its values instead
//! (`rowById` in `src/lib.rs`), read as [`Cell`]s as the text is, so that both agree on every value.

use std::ffi::c_int;

use rusqlite::types::ValueRef;

use crate::error::Result;
use crate::schema::COLUMNS;
use crate::statement::Row;

/// `SELECT` list matching [`cell`] and [`write_values`].
pub fn select_list() -> String {
    COLUMNS.join(", ")
}

/// Whether each column, in [`COLUMNS`] order, holds JSON text already (`data`, `metadata`).
const IS_JSON: [bool; 10] = [false, false, false, false, false, false, true, false, false, true];

/// One stored value as a row hands it to JavaScript.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    Null,
    Integer(i64),
    /// Always finite: SQLite stores no NaN, and an infinity reads as null, as JSON has none.
    Real(f64),
    /// Stored text (or a blob's bytes) of a column that is not JSON, not necessarily UTF-8:
    /// invalid bytes read as U+FFFD.
    Text(&'a [u8]),
    /// The JSON text of a `data` or `metadata` value, which JavaScript parses.
    Json(&'a str),
    /// A `data` or `metadata` value that is not UTF-8, so not JSON: it reads as a string of
    /// its text, invalid bytes as U+FFFD.
    NotJson(&'a [u8]),
}

/// Column `column` (from 0) of a row selected with [`select_list`].
#[inline(always)]
pub fn cell<'r>(row: &'r Row<'_>, column: usize) -> Result<Cell<'r>> {
    Ok(read(row.value(column as c_int)?, IS_JSON[column]))
}

/// A stored value. Text of a JSON column (`data`, `metadata`) was written by this library or
/// by EventLite as `JSON.stringify` output and is JSON as it is, or null when blank. A number
/// in a JSON column, stored by hand, stays a number.
#[inline(always)]
fn read(value: ValueRef<'_>, is_json: bool) -> Cell<'_> {
    match value {
        ValueRef::Null => Cell::Null,
        ValueRef::Integer(n) => Cell::Integer(n),
        ValueRef::Real(f) if f.is_finite() => Cell::Real(f),
        ValueRef::Real(_) => Cell::Null,
        ValueRef::Text(bytes) | ValueRef::Blob(bytes) if !is_json => Cell::Text(bytes),
        // ASCII, as nearly every stored text is, is UTF-8 without a check; blank ASCII is
        // white space as `str::trim` sees it.
        ValueRef::Text(bytes) | ValueRef::Blob(bytes) if bytes.is_ascii() => {
            if bytes.iter().all(|&b| b.is_ascii_whitespace() || b == 0x0b) {
                Cell::Null
            } else {
                // SAFETY: ASCII is valid UTF-8.
                Cell::Json(unsafe { std::str::from_utf8_unchecked(bytes) })
            }
        }
        ValueRef::Text(bytes) | ValueRef::Blob(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) if !text.trim().is_empty() => Cell::Json(text),
            Ok(_) => Cell::Null,
            Err(_) => Cell::NotJson(bytes),
        },
    }
}

/// Appends one row's ten values, selected with [`select_list`], comma-separated and without
/// keys. Every read of rows sends them this way, in a flat JSON array (one row, or many one
/// after another): JavaScript parses a flat array of values faster than the same rows as
/// objects (docs/performance.md), then builds each row with one object literal
/// (`lib/rows.js`): the keys are known, so there is no point sending them.
pub fn write_values(out: &mut String, row: &Row<'_>) -> Result<()> {
    for column in 0..COLUMNS.len() {
        if column > 0 {
            out.push(',');
        }
        write_cell(out, cell(row, column)?);
    }
    Ok(())
}

/// One value as JSON: text becomes a JSON string; numbers and JSON text stay as they are.
fn write_cell(out: &mut String, cell: Cell<'_>) {
    match cell {
        Cell::Null => out.push_str("null"),
        Cell::Integer(n) => out.push_str(itoa::Buffer::new().format(n)),
        Cell::Real(f) => out.push_str(ryu::Buffer::new().format_finite(f)),
        Cell::Text(bytes) => write_text(out, bytes),
        Cell::Json(text) => out.push_str(text),
        Cell::NotJson(bytes) => write_lossy(out, bytes),
    }
}

/// Bytes that stop the fast path of [`write_text`]: those JSON escapes, and non-ASCII.
static SLOW: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = b < 0x20 || b == b'"' as usize || b == b'\\' as usize || b >= 0x80;
        b += 1;
    }
    table
};

/// Appends stored text as a JSON string literal. Most stored strings (commands, users, ids)
/// are plain ASCII: one pass over the bytes proves it, and they are copied as they are,
/// without UTF-8 validation or escaping.
fn write_text(out: &mut String, bytes: &[u8]) {
    if !bytes.iter().any(|&b| SLOW[b as usize]) {
        out.push('"');
        // SAFETY: no byte is 0x80 or above: ASCII, so valid UTF-8.
        out.push_str(unsafe { std::str::from_utf8_unchecked(bytes) });
        out.push('"');
        return;
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => write_string(out, text),
        Err(_) => write_lossy(out, bytes),
    }
}

/// Appends text that is not UTF-8 as a JSON string literal, invalid bytes as U+FFFD.
pub fn write_lossy(out: &mut String, bytes: &[u8]) {
    write_string(out, &String::from_utf8_lossy(bytes));
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
    fn json_columns_read_as_json_text_numbers_or_null() {
        let json = |bytes: &'static [u8]| read(ValueRef::Text(bytes), true);
        assert_eq!(json(br#" {"a":1} "#), Cell::Json(r#" {"a":1} "#));
        assert_eq!(json("\"é\"".as_bytes()), Cell::Json("\"é\""));
        assert_eq!(json(b"{\xff}"), Cell::NotJson(b"{\xff}"));
        let mut out = String::new();
        write_cell(&mut out, json(b"{\xff}"));
        assert_eq!(out, "\"{\u{fffd}}\"", "text that is not UTF-8 reads as a string of it");
        assert_eq!(read(ValueRef::Integer(5), true), Cell::Integer(5));
        assert_eq!(read(ValueRef::Real(f64::INFINITY), false), Cell::Null);
        assert_eq!(read(ValueRef::Null, true), Cell::Null);
        // Blank is what `str::trim` leaves nothing of, in ASCII (checked byte by byte) or not.
        for b in 0..0x80u8 {
            let text = [b' ', b, b'\n'];
            let blank = std::str::from_utf8(&text).unwrap().trim().is_empty();
            assert_eq!(read(ValueRef::Text(&text), true) == Cell::Null, blank, "byte {b:#x}");
        }
        assert_eq!(json("\u{a0}\u{2028}".as_bytes()), Cell::Null);
    }

    #[test]
    fn json_columns_are_data_and_metadata() {
        for (is_json, column) in IS_JSON.iter().zip(COLUMNS) {
            assert_eq!(*is_json, matches!(column, "data" | "metadata"), "{column}");
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
        write_values(&mut flat, &rows.next().unwrap().unwrap()).unwrap();
        flat.push(']');
        let values: Vec<serde_json::Value> = serde_json::from_str(&flat).unwrap();
        let expected = serde_json::json!([1, 1, 5, "u\"", null, "go", {"a": [1, 2]}, "c", null, null]);
        assert_eq!(serde_json::Value::Array(values), expected, "the values, in column order");
    }
}
