//! Many rows on their way to JavaScript (a page, a stream batch, a replay batch), as two parts
//! that cross together: `cells`, ten `f64` a row in [`COLUMNS`] order (a `Float64Array` there),
//! and `text`, one JSON array of the values that are not numbers. A cell holding a number is
//! the number (an integer column's value as JavaScript's `JSON.parse` would read its text); any
//! other cell is a NaN whose low 32 bits are the index of its value in the array of `text`.
//! SQLite stores no NaN, so no number reads as one.
//!
//! Parsing a page's numbers out of JSON text costs JavaScript more than reading them from a
//! typed array, and so does parsing the same user, command and correlation id once a row: the
//! text holds a plain string seen recently in the set (and `null`) once, referred to by every
//! cell that holds it. `data` and `metadata` are entries of their own in every row, as each row gets
//! objects of its own. They are checked to be exactly one JSON value each, as
//! [`crate::row::write_values`] checks them, with the same errors: a row that is not JSON is
//! [`Error::CorruptRow`], one whose text would be longer than a string may be is
//! [`Error::RowTooLarge`]. `lib/rows.js` (`rowsOf`) builds the rows of both parts.

use crate::error::{Error, Result};
use crate::pieces::Limits;
use crate::row::{self, Cell, Values};
use crate::schema::COLUMNS;

/// A quiet NaN, its low 32 bits free for an index into the text's array.
const REFERENCE: u64 = 0x7ff8_0000_0000_0000;

/// A set of rows in the two parts described above.
#[derive(Debug)]
pub struct RowSet {
    /// Ten cells a row.
    pub cells: Vec<f64>,
    /// What the set's reader wrote before the array of values (`[`, or `{"events":[` for a
    /// page), then the values, comma-separated, the array still open.
    pub text: String,
    /// Values in the text's array.
    values: u32,
    /// Plain strings written recently, two a set, found by a hash of their bytes.
    recent: [[Recent; 2]; SETS],
    /// The plain string each column held last, if remembered.
    last: [Recent; COLUMNS.len()],
    /// Where `null` is, once a cell holds it.
    null: Option<u32>,
    pub rows: usize,
}

/// Where a set stood before a row, to take the row back.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    text: usize,
    cells: usize,
    values: u32,
}

/// The text a row is expected to take: a set's text made with room for `n` such rows gets
/// cells for `n` rows too (see [`RowSet::new`]), so that neither grows as the rows come.
pub const ROW_BYTES: usize = 128;

impl RowSet {
    /// A set whose text starts with `head`, which opens the array of values; its cells have
    /// room for as many rows as the text (see [`ROW_BYTES`]).
    pub fn new(head: String) -> RowSet {
        let cells = Vec::with_capacity(head.capacity() / ROW_BYTES * COLUMNS.len());
        let (recent, last) = ([[Recent::EMPTY; 2]; SETS], [Recent::EMPTY; COLUMNS.len()]);
        RowSet { cells, text: head, values: 0, recent, last, null: None, rows: 0 }
    }

    /// What the set holds, in bytes, text and cells together: what a batch is bounded by.
    pub fn bytes(&self) -> usize {
        self.text.len() + self.cells.len() * 8
    }

    pub fn mark(&self) -> Mark {
        Mark { text: self.text.len(), cells: self.cells.len(), values: self.values }
    }

    /// Takes back every row appended since `mark`.
    pub fn rollback(&mut self, mark: Mark) {
        self.text.truncate(mark.text);
        self.cells.truncate(mark.cells);
        if self.values != mark.values {
            self.values = mark.values;
            let remembered = self.recent.iter_mut().flatten().chain(&mut self.last);
            for recent in remembered.filter(|r| r.at >= mark.values) {
                *recent = Recent::EMPTY;
            }
            self.null = self.null.filter(|at| *at < mark.values);
        }
        self.rows = self.rows.min(mark.cells / COLUMNS.len());
    }

    /// Appends one row, selected with [`row::select_list`]; nothing of it when it cannot be
    /// read, or when its values would add more than `limit` bytes to the text. Returns the
    /// row's id (its first value, read anyway), so that a reader keeping it need not ask
    /// SQLite for it again.
    pub fn push(&mut self, row: &impl Values, limit: usize) -> Result<Option<i64>> {
        let mark = self.mark();
        match self.write(row, limit) {
            Ok(id) => {
                self.rows += 1;
                Ok(id)
            }
            Err(err) => {
                self.rollback(mark);
                Err(err)
            }
        }
    }

    fn write(&mut self, row: &impl Values, limit: usize) -> Result<Option<i64>> {
        let start = self.text.len();
        let mut id = None;
        let too_large = || Ok::<_, Error>(Error::RowTooLarge { id: row.value(0)?.as_i64()?, limit });
        for (i, column) in (0..).zip(row::JSON_COLUMNS) {
            let value = row.value(i)?;
            let (cell, ascii) = match column {
                None => (row::plain(value), false),
                Some((name, null)) => {
                    if row::outgrows(value, limit.saturating_sub(self.text.len() - start)) {
                        return Err(too_large()?);
                    }
                    row::checked_json(value, null).map_err(|invalid| row::corrupt(row, name, invalid))?
                }
            };
            let cell = match cell {
                Cell::Integer(n) => {
                    if i == 0 {
                        id = Some(n);
                    }
                    n as f64
                }
                Cell::Real(f) => f,
                Cell::Null => reference(self.null_at()),
                Cell::Text(bytes) => reference(self.string_at(i, bytes)),
                Cell::Json(text) => {
                    let at = self.entry();
                    if ascii {
                        // SAFETY: the scan found every byte ASCII, so valid UTF-8.
                        self.text.push_str(unsafe { std::str::from_utf8_unchecked(text) });
                    } else {
                        row::write_cell(&mut self.text, cell);
                    }
                    reference(at)
                }
            };
            self.cells.push(cell);
        }
        if self.text.len() - start > limit {
            return Err(too_large()?);
        }
        Ok(id)
    }

    /// Starts a new value in the text's array and returns its index.
    fn entry(&mut self) -> u32 {
        if self.values > 0 {
            self.text.push(',');
        }
        self.values += 1;
        self.values - 1
    }

    fn null_at(&mut self) -> u32 {
        if let Some(at) = self.null {
            return at;
        }
        let at = self.entry();
        self.text.push_str("null");
        self.null = Some(at);
        at
    }

    /// The index of a plain string: one written recently, or a new value. Only strings written
    /// as they are (ASCII with nothing to escape) are remembered, so that the text holds their
    /// bytes to compare with. Inlined into its one caller, where a call cost more than the
    /// usual lookup that follows.
    #[inline(always)]
    fn string_at(&mut self, column: usize, bytes: &[u8]) -> u32 {
        // Most often the column holds what it held in the row before (the command, the
        // correlation id of a page): that one is compared first, without hashing.
        let last = self.last[column];
        if (last.hash >> 32) as usize == bytes.len() && self.holds(&last, bytes) {
            return last.at;
        }
        let (set, hash) = set_of(bytes);
        let found = self.recent[set].iter().position(|slot| slot.hash == hash && self.holds(slot, bytes));
        let ways = &mut self.recent[set];
        if let Some(way) = found {
            // The one found first next time.
            ways.swap(0, way);
            self.last[column] = ways[0];
            return ways[0].at;
        }
        let at = self.entry();
        let start = self.text.len() + 1;
        row::write_cell(&mut self.text, Cell::Text(bytes));
        if self.text.len() == start + bytes.len() + 1 {
            if let Ok(start) = u32::try_from(start) {
                let ways = &mut self.recent[set];
                ways[1] = ways[0];
                ways[0] = Recent { at, start, hash };
                self.last[column] = ways[0];
            }
        }
        at
    }

    /// Whether `slot` holds `bytes`.
    #[inline(always)]
    fn holds(&self, slot: &Recent, bytes: &[u8]) -> bool {
        let start = slot.start as usize;
        self.text.as_bytes().get(start..start + bytes.len()).is_some_and(|held| same(held, bytes))
    }

    /// The two parts: the text with its array closed and `tail` after it, and the cells.
    pub fn finish(mut self, tail: &str) -> (String, Vec<f64>) {
        self.text.push(']');
        self.text.push_str(tail);
        (self.text, self.cells)
    }
}

/// The cell of a value that is the `at`-th of the text's array.
fn reference(at: u32) -> f64 {
    f64::from_bits(REFERENCE | u64::from(at))
}

/// The rows of a read that returns them all in one call (a page), in as many sets as they
/// need: a set ends once it holds [`Limits::batch`] bytes, or when the next row would make its
/// text longer than a string may be, as [`crate::pieces::Pieces`] ends a piece.
pub struct RowSets {
    sets: Vec<RowSet>,
    limits: Limits,
}

impl RowSets {
    /// Sets whose first starts with `head`; each further one starts with `[`.
    pub fn new(head: String) -> RowSets {
        RowSets::within(head, Limits::current())
    }

    pub fn within(head: String, limits: Limits) -> RowSets {
        RowSets { sets: vec![RowSet::new(head)], limits }
    }

    fn last(&mut self) -> &mut RowSet {
        let at = self.sets.len() - 1;
        &mut self.sets[at]
    }

    pub fn push(&mut self, row: &impl Values) -> Result<()> {
        let limits = self.limits;
        if self.last().rows > 0 && self.last().bytes() >= limits.batch {
            self.sets.push(RowSet::new(String::from("[")));
        }
        let set = self.last();
        let mark = set.mark();
        set.push(row, limits.row)?;
        if set.rows > 1 && set.text.len() > limits.row {
            set.rollback(mark);
            self.sets.push(RowSet::new(String::from("[")));
            self.last().push(row, limits.row)?;
        }
        Ok(())
    }

    /// The sets' parts, in order; `tail` closes the first's text (after its array).
    pub fn finish(self, tail: &str) -> Vec<(String, Vec<f64>)> {
        let mut sets = self.sets.into_iter();
        let first = sets.next().map(|set| set.finish(tail));
        first.into_iter().chain(sets.map(|set| set.finish(""))).collect()
    }
}

/// How many sets of two plain strings a row set remembers. A hash table of every string would
/// cost about what writing them out does; the values a set repeats (a page's correlation id, a
/// few users and commands) are few, and one forgotten is only written again.
const SETS: usize = 32;

/// A plain string written as the `at`-th value, its bytes at `start..` of the text, and its
/// hash (see [`set_of`]): a different hash is a different string, an equal one is compared.
#[derive(Debug, Clone, Copy)]
struct Recent {
    at: u32,
    start: u32,
    hash: u64,
}

impl Recent {
    /// A slot that holds nothing: its bytes, if any, are compared before it is used.
    const EMPTY: Recent = Recent { at: 0, start: u32::MAX, hash: u64::MAX };
}

/// The first and the last eight bytes of `bytes` as words (the same bytes when there are fewer
/// than nine; fewer than eight fill the low bytes of one word).
#[inline(always)]
fn ends(bytes: &[u8]) -> (u64, u64) {
    match (bytes.first_chunk::<8>(), bytes.last_chunk::<8>()) {
        (Some(head), Some(tail)) => (u64::from_le_bytes(*head), u64::from_le_bytes(*tail)),
        _ => {
            let word = bytes.iter().rev().fold(0, |word, &b| word << 8 | u64::from(b));
            (word, word)
        }
    }
}

/// The set of `bytes` among [`SETS`], and the hash a slot compares first: 32 bits of a hash of
/// their length and first and last eight bytes, with the length above them.
#[inline(always)]
fn set_of(bytes: &[u8]) -> (usize, u64) {
    let n = bytes.len();
    let (head, tail) = ends(bytes);
    let hash = (head ^ tail.rotate_left(29) ^ n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
    ((hash as usize) % SETS, hash | (n as u64) << 32)
}

/// Whether two strings of the same length are equal: a short one a byte at a time, one of up
/// to 16 bytes by its first and last eight, without a call.
#[inline(always)]
fn same(a: &[u8], b: &[u8]) -> bool {
    match a.len() {
        0..8 => a.iter().zip(b).all(|(x, y)| x == y),
        8..=16 => ends(a) == ends(b),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::Connection;
    use rusqlite::types::Value;
    use serde_json::{json, Value as Json};

    /// The rows of a set as JavaScript builds them: each cell its number, or the value it
    /// refers to.
    fn decode(text: &str, cells: &[f64]) -> Vec<Vec<Json>> {
        let values: Vec<Json> = serde_json::from_str(text).unwrap();
        let cell = |c: &f64| {
            if c.is_nan() {
                values[(c.to_bits() & 0xffff_ffff) as usize].clone()
            } else {
                json!(c)
            }
        };
        cells.chunks(COLUMNS.len()).map(|row| row.iter().map(cell).collect()).collect()
    }

    fn table(rows: &[[Value; 4]]) -> Connection {
        let conn = Connection::new(rusqlite::Connection::open_in_memory().unwrap());
        crate::schema::ensure_table(&conn).unwrap();
        for [user, cmd, data, metadata] in rows {
            conn.execute(
                "INSERT INTO queue (datetime, user, cmd, data, metadata) VALUES (5, ?1, ?2, ?3, ?4)",
                rusqlite::params![user, cmd, data, metadata],
            )
            .unwrap();
        }
        conn
    }

    /// Every row of `conn` in one set, and each row rendered as text the old way.
    fn both(conn: &Connection, limit: usize) -> (Result<()>, RowSet, Vec<Vec<Json>>) {
        let sql: &'static str = format!("SELECT {} FROM queue ORDER BY id", row::select_list()).leak();
        let mut stmt = conn.cached(sql).unwrap();
        let mut rows = stmt.rows();
        let mut set = RowSet::new(String::from("["));
        let mut texts = Vec::new();
        let mut result = Ok(());
        while let Some(r) = rows.next().unwrap() {
            let mut text = String::from("[");
            if row::write_values(&mut text, &r, usize::MAX).is_ok() {
                texts.push(serde_json::from_str(&(text + "]")).unwrap());
            }
            result = set.push(&r, limit).map(drop);
            if result.is_err() {
                break;
            }
        }
        (result, set, texts)
    }

    #[test]
    fn a_set_reads_as_the_same_values_as_the_rows_text() {
        let text = |s: &str| Value::Text(s.into());
        let conn = table(&[
            [text("u1"), text("go"), text(r#"{"a":[1,"é"]}"#), Value::Null],
            [text("u2"), text("go"), Value::Integer(7), text("{}")],
            [text("u1"), Value::Integer(3), Value::Null, Value::Real(1.5)],
            [Value::Blob(b"x\xffy".to_vec()), text("q\"\n"), text(" "), text("")],
        ]);
        conn.execute("UPDATE queue SET version = 2.5, ip = 'h' WHERE id = 2", []).unwrap();
        let (result, set, texts) = both(&conn, usize::MAX);
        result.unwrap();
        assert_eq!(set.rows, 4);
        let (text, cells) = set.finish("");
        // A cell is a float, as in JavaScript.
        let float = |value: Json| value.as_f64().map_or(value.clone(), |f| json!(f));
        let floats = |rows: Vec<Vec<Json>>| -> Vec<Vec<Json>> {
            rows.into_iter().map(|row| row.into_iter().map(float).collect()).collect()
        };
        assert_eq!(floats(decode(&text, &cells)), floats(texts));
        assert_eq!(text.matches("\"u1\"").count(), 1, "a string is sent once: {text}");
        assert_eq!(text.matches("{}").count(), 3, "each row has a metadata of its own: {text}");
    }

    #[test]
    fn strings_are_the_same_only_when_every_byte_is() {
        for n in 0..40 {
            let a: Vec<u8> = (0..n as u8).map(|k| b'a' + k % 26).collect();
            assert!(same(&a, &a.clone()), "{n} bytes");
            assert_eq!(set_of(&a), set_of(&a.clone()));
            for at in 0..n {
                let mut b = a.clone();
                b[at] = b'#';
                assert!(!same(&a, &b), "{n} bytes, differing at {at}");
            }
        }
    }

    #[test]
    fn the_strings_a_page_repeats_are_sent_once() {
        let text = |s: String| Value::Text(s);
        let rows: Vec<[Value; 4]> = (0..100)
            .map(|k| {
                [
                    text(format!("user{}", k % 10)),
                    text("logEvent".into()),
                    text(format!("{{\"i\":{k}}}")),
                    text("{}".into()),
                ]
            })
            .collect();
        let conn = table(&rows);
        let (result, set, texts) = both(&conn, usize::MAX);
        result.unwrap();
        let (text, cells) = set.finish("");
        assert_eq!(decode(&text, &cells).len(), texts.len());
        for repeated in (0..10).map(|k| format!("\"user{k}\"")).chain(["\"logEvent\"".into()]) {
            assert_eq!(text.matches(&repeated).count(), 1, "{repeated} is sent once: {text}");
        }
    }

    #[test]
    fn a_row_that_cannot_be_read_leaves_nothing_behind() {
        let text = |s: &str| Value::Text(s.into());
        let conn = table(&[
            [text("u1"), text("go"), text("{}"), text("{}")],
            [text("new"), text("other"), text("{} {}"), text("{}")],
        ]);
        let (result, set, _) = both(&conn, usize::MAX);
        let err = result.unwrap_err();
        assert_eq!((err.code(), err.row_id()), ("ERR_CORRUPT_ROW", Some(2)));
        let (written, cells) = set.finish("");
        assert!(!written.contains("new"), "{written}");
        assert_eq!(decode(&written, &cells).len(), 1);

        let long = text(&format!("\"{}\"", "a".repeat(200)));
        let conn =
            table(&[[text("u"), text("go"), text("{}"), text("{}")], [text("u"), text("go"), long, Value::Null]]);
        let (result, set, _) = both(&conn, 150);
        let err = result.unwrap_err();
        assert_eq!((err.code(), err.row_id()), ("ERR_ROW_TOO_LARGE", Some(2)));
        assert_eq!(set.rows, 1);
    }

    #[test]
    fn sets_end_at_a_batch_and_before_a_row_that_would_overfill_a_string() {
        let conn = table(&[]);
        for size in [400, 400, 900, 10] {
            let data = format!("\"{}\"", "x".repeat(size - 2));
            conn.execute("INSERT INTO queue (datetime, cmd, data) VALUES (1, 'go', ?1)", [data]).unwrap();
        }
        let sql: &'static str = format!("SELECT {} FROM queue ORDER BY id", row::select_list()).leak();
        let mut stmt = conn.cached(sql).unwrap();
        let mut rows = stmt.rows();
        let mut sets = RowSets::within(String::from("{\"events\":["), Limits { batch: 1 << 20, row: 1000 });
        while let Some(r) = rows.next().unwrap() {
            sets.push(&r).unwrap();
        }
        let parts = sets.finish(",\"more\":1}");
        let ids: Vec<Vec<f64>> = parts.iter().map(|(_, cells)| cells.chunks(10).map(|row| row[0]).collect()).collect();
        assert_eq!(ids, [vec![1.0, 2.0], vec![3.0, 4.0]]);
        let first: Json = serde_json::from_str(&parts[0].0).unwrap();
        assert_eq!(first["more"], json!(1));
        assert_eq!(decode(&parts[1].0, &parts[1].1)[1][6], json!("xxxxxxxx"));
    }
}
