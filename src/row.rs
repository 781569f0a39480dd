//! Rendering stored rows as JSON text. A row crosses to JavaScript as text and is parsed there
//! once, which is cheaper than building the object field by field through N-API. `data` and
//! `metadata` are already JSON text in the file, so they are spliced in as they are, never
//! parsed into values in Rust; but each is first scanned to be exactly one JSON value (see
//! [`crate::json`]): a file written by another program may hold anything there, and text such
//! as `{"a":2},"x",null,{},999` spliced in as it is would turn one row into several.

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
    fn value(&self, index: usize) -> Result<ValueRef<'_>> {
        // The index is below `COLUMNS.len()`.
        Row::value(self, index as std::ffi::c_int)
    }
}

/// `SELECT` list matching [`write_values`].
pub fn select_list() -> String {
    COLUMNS.join(", ")
}

/// What each column, in [`COLUMNS`] order, holds: JSON text (`data`, `metadata`), with what a
/// NULL reads as, or anything else. A NULL `metadata` reads as `{}`, as EventLite reads it.
const JSON_COLUMNS: [Option<(&str, &str)>; 10] =
    [None, None, None, None, None, None, Some(("data", "null")), None, None, Some(("metadata", "{}"))];

/// The columns that hold JSON text, which a row carries as parsed values.
pub fn json_columns() -> impl Iterator<Item = &'static str> {
    COLUMNS.into_iter().zip(JSON_COLUMNS).filter_map(|(column, json)| json.map(|_| column))
}

/// Appends one row's ten values, selected with [`select_list`], comma-separated and without
/// keys. Every read sends rows this way, in a flat JSON array (one row, or many one after
/// another): JavaScript parses a flat array of values about a third faster than the same rows as
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
        match column {
            None => write_value(out, value),
            Some((name, null)) => {
                if outgrows(value, limit.saturating_sub(out.len() - start)) {
                    return Err(too_large()?);
                }
                write_json(out, value, null).map_err(|invalid| Error::CorruptRow {
                    id: row.value(0).and_then(|id| Ok(id.as_i64()?)).unwrap_or_default(),
                    column: name,
                    at: invalid.at,
                    what: invalid.what,
                })?
            }
        }
    }
    if out.len() - start > limit {
        return Err(too_large()?);
    }
    Ok(())
}

/// Whether a JSON column's value renders to more than `room` bytes: its text, unless it is only
/// white space (which renders as a NULL does). Looked at only when the text is that long.
fn outgrows(value: ValueRef<'_>, room: usize) -> bool {
    match value {
        ValueRef::Text(bytes) | ValueRef::Blob(bytes) if bytes.len() > room => {
            bytes.iter().any(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        }
        _ => false,
    }
}

/// One column's value as JSON: text becomes a JSON string; numbers stay numbers.
fn write_value(out: &mut String, value: ValueRef<'_>) {
    match value {
        ValueRef::Null => out.push_str("null"),
        ValueRef::Integer(n) => out.push_str(itoa::Buffer::new().format(n)),
        ValueRef::Real(f) => write_real(out, f),
        ValueRef::Text(bytes) | ValueRef::Blob(bytes) => write_text(out, bytes),
    }
}

/// A JSON column's value: its text as it is, once checked to be one JSON value; a number as it
/// is (a number stored by hand is JSON too); `null` for a NULL or text of only white space.
/// Non-UTF-8 bytes (inside strings: anywhere else the scan refuses them) become U+FFFD, as
/// every SQLite driver of JavaScript decodes them.
fn write_json(out: &mut String, value: ValueRef<'_>, null: &str) -> std::result::Result<(), json::Invalid> {
    let bytes = match value {
        ValueRef::Text(bytes) | ValueRef::Blob(bytes) => bytes,
        ValueRef::Null => {
            out.push_str(null);
            return Ok(());
        }
        other => {
            write_value(out, other);
            return Ok(());
        }
    };
    match json::whole(bytes)? {
        None => out.push_str(null),
        // SAFETY: every byte is ASCII, so valid UTF-8.
        Some(scanned) if scanned.ascii => out.push_str(unsafe { std::str::from_utf8_unchecked(bytes) }),
        Some(_) => out.push_str(&String::from_utf8_lossy(bytes)),
    }
    Ok(())
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

fn write_real(out: &mut String, f: f64) {
    if f.is_finite() {
        out.push_str(ryu::Buffer::new().format_finite(f));
    } else {
        out.push_str("null");
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
        let mut flat = String::from("[");
        write_values(&mut flat, &rows.next().unwrap().unwrap(), limit)?;
        flat.push(']');
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
