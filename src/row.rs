//! Rendering stored rows as JSON text. A row crosses to JavaScript as text and is parsed there
//! once, which is cheaper than building the object field by field through N-API. `data` and
//! `metadata` are already JSON text in the file, so they are spliced in as they are, never
//! parsed in Rust.

use rusqlite::types::ValueRef;

use crate::error::Result;
use crate::schema::COLUMNS;
use crate::statement::Row;

/// `SELECT` list matching [`write_values`].
pub fn select_list() -> String {
    COLUMNS.join(", ")
}

/// Whether each column, in [`COLUMNS`] order, holds JSON text already (`data`, `metadata`).
const IS_JSON: [bool; 10] = [false, false, false, false, false, false, true, false, false, true];

/// Appends one row's ten values, selected with [`select_list`], comma-separated and without
/// keys. Every read sends rows this way, in a flat JSON array (one row, or many one after
/// another): JavaScript parses a flat array of values faster than the same rows as objects
/// (docs/performance.md), then builds each row with one object literal (`lib/rows.js`): the keys are known,
/// so there is no point sending them.
pub fn write_values(out: &mut String, row: &Row<'_>) -> Result<()> {
    for (i, is_json) in (0..).zip(IS_JSON) {
        if i > 0 {
            out.push(',');
        }
        write_value(out, row.value(i)?, is_json);
    }
    Ok(())
}

/// One column's value as JSON. Text of a JSON column (`data`, `metadata`) was written by this
/// library or by EventLite as `JSON.stringify` output and goes in verbatim; other text becomes
/// a JSON string; numbers stay numbers (a number stored by hand is valid JSON as it is).
fn write_value(out: &mut String, value: ValueRef<'_>, is_json: bool) {
    match value {
        ValueRef::Null => out.push_str("null"),
        ValueRef::Integer(n) => out.push_str(itoa::Buffer::new().format(n)),
        ValueRef::Real(f) => write_real(out, f),
        ValueRef::Text(bytes) | ValueRef::Blob(bytes) if !is_json => write_text(out, bytes),
        ValueRef::Text(bytes) | ValueRef::Blob(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) if !text.trim().is_empty() => out.push_str(text),
            Ok(_) => out.push_str("null"),
            Err(_) => write_string(out, &String::from_utf8_lossy(bytes)),
        },
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
